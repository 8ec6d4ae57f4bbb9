"""Request and response bodies, and the parsing of labels shared by every route."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.errors import ClientError, shown
from app.settings import Settings
from model.data import class_index

SEED_LIMIT = 2**32
MAX_TEMPERATURE = 10.0
Format = Literal["png", "json"]
MODEL_FIELD = "which model (GET /models lists them); left out: the default model"
CALLBACK_FIELD = (
    "with Prefer: respond-async: a URL on an allowed host to POST the job's status to when it ends"
)
LabelInput = int | str | None


def parse_label(value: LabelInput, class_names: tuple[str, ...]) -> int | None:
    """None, an index, or one of the model's ``class_names`` (case and spacing forgiven) ->
    index or None. ``class_names`` is empty for an unconditional model."""
    listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(class_names[:20]))
    names = listed + (f", ... ({len(class_names)} classes)" if len(class_names) > 20 else "")
    num_classes = len(class_names)
    if value is None or value == "":
        return None
    if not num_classes:
        raise ClientError(422, "this model is unconditional: leave 'label' out")
    if isinstance(value, bool):
        raise ClientError(422, f"label must be null, 0..{num_classes - 1} or a class name ({names})")
    if isinstance(value, str):
        if (index := class_index(value, class_names)) is None:
            raise ClientError(
                422, f"unknown label {shown(value)}: use 0..{num_classes - 1} or one of {names}"
            )
        value = index
    if not 0 <= value < num_classes:
        raise ClientError(422, f"label {value} is out of range: use 0..{num_classes - 1} or a class name")
    return int(value)


def check_seed(seed: int | None, n: int) -> None:
    if seed is not None and not (seed >= 0 and seed + n - 1 < SEED_LIMIT):
        raise ClientError(422, f"seed must satisfy 0 <= seed and seed + n - 1 < 2**32 (n = {n}), got {seed}")


def check_particle_work(n: int, particles: int, settings: Settings) -> None:
    """The limits of a particle job (``/complete``, ``/upscale``): ``n`` results of
    ``particles`` particles each, every particle an image of work."""
    if n > settings.max_images:
        raise ClientError(422, f"n = {n} is too many: at most {settings.max_images} results per request")
    if particles > settings.max_particles:
        raise ClientError(422, f"particles = {particles} is too many: at most {settings.max_particles}")
    if n * particles > settings.max_completion_batch:
        raise ClientError(
            422, f"n * particles = {n * particles} is too many: at most {settings.max_completion_batch}"
        )


class GenerateRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"n": 8, "label": "sneaker", "temperature": 1.0, "seed": 42, "format": "json"}]
        },
    )

    n: Annotated[int, Field(ge=1, le=64, description="how many images (a server may allow fewer)")] = 16
    label: LabelInput = Field(
        None,
        description="null (drawn from each seed), a class index, or a class name (GET /model lists them)",
    )
    temperature: Annotated[float, Field(gt=0, le=MAX_TEMPERATURE, allow_inf_nan=False)] = 1.0
    seed: Annotated[int | None, Field(ge=0, lt=SEED_LIMIT)] = Field(
        None, description="image i uses seed + i; random when left out"
    )
    format: Format = "png"
    scale: Annotated[int, Field(ge=1, le=16, description="nearest-neighbour upscaling")] = 1
    model: Annotated[str | None, Field(max_length=200, description=MODEL_FIELD)] = None
    callback_url: Annotated[str | None, Field(max_length=2000, description=CALLBACK_FIELD)] = None

    @field_validator("label", mode="before")
    @classmethod
    def _label_type(cls, value: Any) -> Any:
        if isinstance(value, bool) or not (value is None or isinstance(value, int | str)):
            raise ValueError("label must be null, a class index or a class name")
        return value


class ImageResult(BaseModel):
    seed: int | None = Field(description="the seed that made this image (None when not sampled)")
    label: int | None = Field(description="its class, given or inferred (None: an unconditional model)")
    label_name: str | None
    png_base64: str
    bits_per_dim: float = Field(description="the image's negative log2-likelihood per pixel")


class ModelInfo(BaseModel):
    name: str = Field(
        description="the model's name (its weights file's stem): the 'model' field of every route"
    )
    arch: str
    config: dict[str, Any]
    parameters: int
    image_size: int = Field(description="the model's images are image_size x image_size pixels")
    image_channels: int = Field(
        1, description="1: grayscale images; 3: RGB (uploads are read, and results drawn, in colour)"
    )
    classes: list[str] | None = Field(
        description="the name of each label, in label order; None: unconditional"
    )
    upscale_factors: list[int] = Field(description="the factors /upscale enlarges by at this size")
    weights: str = Field(description="the weights file's name")
    sha256: str = Field(description="the weights file's sha256")
    test_bits_per_dim: float | None
    validation_bits_per_dim: float | None
    training: dict[str, Any] = Field(
        description="training facts: data, epochs, steps, hardware, hyperparameters (settings), the "
        "sha256, epochs and steps of the weights training started from (started_from), per-class figures"
    )


class ModelStatus(BaseModel):
    name: str
    default: bool = Field(description="requests that name no model get this one")
    loaded: bool = Field(description="in memory now (models load on first use)")
    error: str | None = Field(description="why the model cannot serve (its requests get 503), or null")
    reload_error: str | None = Field(
        description="why the last replacement of its file was refused (the weights before it keep serving)"
    )
    info: ModelInfo | None = Field(
        description="what GET /models/{name} gives; null when the file is unreadable"
    )


class ReloadReport(BaseModel):
    added: list[str] = Field(default_factory=list)
    replaced: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)
    refused: dict[str, str] = Field(
        default_factory=dict,
        description="files that failed to load, with why: the weights before them keep serving",
    )


class ImagesResponse(BaseModel):
    images: list[ImageResult]
    model: ModelInfo


class UpscaleResponse(ImagesResponse):
    factor: int = Field(description="each image's f x f blocks average to the small image")
    small_png_base64: str = Field(description="the small image every result agrees with")
    bicubic_png_base64: str = Field(description="Pillow's bicubic enlargement of it, to compare with")


class LikelihoodResponse(BaseModel):
    bits: list[list[float]] = Field(
        description="H x W array: -log2 p of each pixel given those before it (a colour pixel: its "
        "three channels' bits summed)"
    )
    channel_bits: list[list[list[float]]] | None = Field(
        None,
        description="colour models only: 3 x H x W array, -log2 p of each channel (red, green, blue) "
        "given the pixels before it and the pixel's earlier channels",
    )
    total_bits: float
    bits_per_dim: float
    label: int | None = Field(description="the label scored with; None when summed out")
    class_posterior: dict[str, float] | None = Field(
        None, description="p(class | image) for a conditional model called without a label"
    )


class ValidationIssue(BaseModel):
    loc: list[str]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every refusal: ``detail`` says what was wrong and what is accepted."""

    detail: str
    errors: list[ValidationIssue] | None = Field(None, description="per-field problems, for 422s")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the refusals a route can give, all with the ``ErrorResponse`` body."""
    meaning = {
        400: "the upload could not be decoded (empty, truncated or corrupt)",
        403: "this route is for administrators (loopback)",
        404: "not found (an unknown model: the message lists those there are)",
        409: "the weights setting names a missing path or two models of one name: nothing changed",
        413: "the body or the image is too large",
        415: "the upload is not an image in an accepted format",
        422: "a parameter is missing or out of range",
        503: "busy or not ready: retry after the Retry-After header's seconds",
    }
    return {status: {"model": ErrorResponse, "description": meaning[status]} for status in statuses}


class CompressResponse(BaseModel):
    data_base64: str
    bytes: int
    bits_per_dim: float
