"""Service settings, read from environment variables prefixed ``PIXELCNN_``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.pictures import DEFAULT_MAX_PIXELS

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "pixelcnn-gated-fmnist.safetensors"
DEFAULT_CLASSIFIER = WEIGHTS_DIR / "fmnist-classifier.safetensors"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PIXELCNN_", extra="ignore")

    weights: Path = Field(DEFAULT_WEIGHTS, description="the safetensors weights file to serve")
    classifier: Path | None = Field(
        DEFAULT_CLASSIFIER,
        description="the classifier whose guesses label /compress's images (fast); empty for the "
        "fewest-bits label (a forward pass per class)",
    )
    torch_threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    # Request limits.
    max_images: int = Field(64, ge=1, description="most images one request may ask for (n)")
    max_particles: int = Field(64, ge=1, description="most particles per completion")
    max_completion_batch: int = Field(256, ge=1, description="most n * particles in one completion")
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest request body")
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=784, description="largest decoded image, in pixels")
    # Slow clients: 408 and the connection closed beyond these.
    header_timeout_s: float = Field(30.0, gt=0, description="longest wait for a request's headers")
    body_timeout_s: float = Field(30.0, gt=0, description="longest pause while receiving a body")
    # Dynamic batching and backpressure.
    batching: bool = Field(True, description="merge queued requests into one batch")
    max_batch_size: int = Field(64, ge=1, description="most images in one merged batch")
    max_batch_delay_ms: float = Field(50.0, ge=0, description="how long to wait for more requests")
    max_queue: int = Field(256, ge=1, description="most images waiting; more get 503 at once")
    request_timeout_s: float = Field(120.0, gt=0, description="longest wait before a 503")

    @field_validator("classifier", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
