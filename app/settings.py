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

    weights: str = Field(
        str(DEFAULT_WEIGHTS),
        description="the models to serve: a weights file, several (comma-separated), or a directory "
        "of them; a model is named by its file's stem",
    )
    default_model: str | None = Field(
        None, description="the model of requests that name none (default: the first by name)"
    )
    max_loaded_models: int = Field(
        4, ge=1, description="most models in memory at once (least recently used leave first)"
    )
    classifier: Path | None = Field(
        DEFAULT_CLASSIFIER,
        description="the classifier whose guesses label /compress's images (fast); empty for the "
        "fewest-bits label (a forward pass per class)",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads per batch: every batch of the compiled loops (sampling, completion "
        "and upscaling with a gated grayscale network), and other work of 8 or more images (smaller "
        "batches of torch steps run on one)",
    )
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
    max_batch_delay_ms: float = Field(5.0, ge=0, description="how long to wait for more requests")
    max_queue: int = Field(256, ge=1, description="most images waiting; more get 503 at once")
    request_timeout_s: float = Field(120.0, gt=0, description="longest wait before a 503")

    # Hosting for others (app.security).
    api_keys_file: Path | None = Field(
        None, description="name:scope:sha256 lines; set, every model, job and metrics route needs a key"
    )
    rate_images_per_min: int | None = Field(
        None, ge=1, description="most images of work per client (key, or address) per minute"
    )
    rate_limit_storage: str = Field(
        "memory://", description="where rate limits count: memory://, or redis://host:port shared by replicas"
    )
    max_queued_per_client: int | None = Field(
        None, ge=1, description="most images one client may have queued"
    )
    cors_origins: str | None = Field(
        None, description="comma-separated origins whose pages may call the API (CORS); none by default"
    )

    # Durable jobs (app.durable): Prefer: respond-async.
    job_store: str = Field(
        "sqlite:///state/jobs.sqlite3",
        description="the jobs' database: sqlite:///relative.sqlite3, sqlite:////absolute.sqlite3, or "
        "postgresql://user@host:port/db shared by several processes or replicas",
    )
    job_ttl_s: float = Field(3600.0, gt=0, description="how long a finished job's result is kept")
    max_stored_jobs: int = Field(1000, ge=1, description="most jobs stored at once; more get 503")
    max_stored_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="most bytes the stored jobs hold")
    job_lease_s: float = Field(
        10.0, gt=0, description="a running job whose process is silent this long is run again elsewhere"
    )
    job_concurrency: int = Field(
        8, ge=1, description="stored jobs run at once (the worker batches them like concurrent requests)"
    )
    callback_hosts: str | None = Field(
        None, description="comma-separated hosts (host or host:port) a job's callback_url may name"
    )
    callback_secret: str | None = Field(None, description="the HMAC-SHA256 key that signs callbacks")

    @property
    def allowed_origins(self) -> frozenset[str]:
        listed = (self.cors_origins or "").split(",")
        return frozenset(origin.strip().rstrip("/") for origin in listed if origin.strip())

    @field_validator("weights", mode="before")
    @classmethod
    def _path_is_text(cls, value: object) -> object:
        return str(value) if isinstance(value, Path) else value

    @field_validator(
        "classifier",
        "default_model",
        "api_keys_file",
        "cors_origins",
        "callback_hosts",
        "callback_secret",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value


@lru_cache
def get_settings() -> Settings:
    return Settings()
