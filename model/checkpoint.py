"""Weights files: one safetensors file, config and training facts in its header metadata.

Nothing is unpickled on load. The header's ``__metadata__`` holds string values:
``format`` (``FORMAT``), ``config`` (the ``PixelCNNConfig`` as JSON), ``tensors_sha256``
(a checksum of the tensors, so a flipped byte is caught), and whatever training
facts ``save`` was given (JSON-encoded when they are not strings).

The facts ``model.export`` records, and the only ones ``public_facts`` passes on (the service
shows them at ``GET /model``), are in ``FACTS``: figures, counts, the hardware, the
hyperparameters (``settings``) and the sha256, epochs and steps of the weights a run started
from (``started_from``). Paths and command lines are not facts about the weights: a file may
hold them, but they are never shown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.network.pixelcnn import PixelCNN, PixelCNNConfig

FORMAT = "pixelcnn-weights/1"
DEFAULT_WEIGHTS = "weights/pixelcnn-gated-fmnist.safetensors"  # the shipped file, from the repository root
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A weights file is missing, truncated, corrupted or not one of ours."""


# Fact name -> what it holds: "number", "text", "numbers" (a dict of numbers, e.g. per class),
# or a tuple of the keys of a dict to keep (each a number, bool or text).
HYPERPARAMETERS = (
    "batch_size",
    "bf16",
    "ema_decay",
    "epochs",
    "grad_clip",
    "grow_to",
    "init_sha256",
    "lr",
    "max_steps",
    "min_lr_ratio",
    "seed",
    "train_limit",
    "validation_fraction",
    "warmup_steps",
)
FACTS: dict[str, str | tuple[str, ...]] = {
    "data": "text",
    "data_sha256": "text",
    "epochs": "number",
    "steps": "number",
    "epochs_total": "number",
    "steps_total": "number",
    "train_images": "number",
    "wall_hours": "number",
    "hardware": "text",
    "validation_bits_per_dim": "number",
    "test_bits_per_dim": "number",
    "validation_bits_per_dim_per_class": "numbers",
    "test_bits_per_dim_per_class": "numbers",
    "started_from": ("sha256", "epochs", "steps"),
    "settings": HYPERPARAMETERS,
}
# An absolute, home-relative or dot-relative path anywhere in a text, or a Windows drive.
_PATH = re.compile(r"(^|[\s\"'=:(,])(/\w|~/|\.\.?/|[A-Za-z]:\\)")


def _plain(value: Any) -> bool:
    """A number, a bool, None, or a short text that names no path."""
    if isinstance(value, str):
        return len(value) <= 200 and not _PATH.search(value)
    return value is None or isinstance(value, bool | int | float)


def public_facts(metadata: dict[str, str]) -> dict[str, Any]:
    """The training facts of a weights file's metadata that may be shown: ``FACTS`` only.

    Unknown keys, dict keys not listed, values of the wrong kind and any text that holds a
    path are dropped, whatever the file holds.
    """
    out: dict[str, Any] = {}
    for key, kind in FACTS.items():
        if key not in metadata:
            continue
        try:
            value = json.loads(metadata[key])
        except ValueError:
            value = metadata[key]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if (kind == "number" and number) or (kind == "text" and isinstance(value, str) and _plain(value)):
            out[key] = value
        elif kind == "numbers" and isinstance(value, dict):
            numbers = {str(k): v for k, v in value.items() if isinstance(v, int | float) and _plain(str(k))}
            out[key] = numbers
        elif isinstance(kind, tuple) and isinstance(value, dict):
            out[key] = {k: value[k] for k in kind if k in value and _plain(value[k])}
    return out


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        # Writers may create private files (0600); a weights file should be readable like any
        # other file (a container's non-root user reads it), so apply the usual umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes, dtypes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def save(model: PixelCNN, path: str | Path, **metadata: Any) -> None:
    """Write ``model``'s weights and config (plus ``metadata``) atomically to ``path``."""
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "config": model.config.to_json(), "tensors_sha256": tensors_digest(tensors)}
    for key, value in metadata.items():
        header[key] = value if isinstance(value, str) else json.dumps(value)
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The header metadata of a weights file, without reading the tensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with open(path, "rb") as f:
            size_bytes = f.read(8)
            if len(size_bytes) < 8:
                raise CheckpointError(f"{path}: too short to be a safetensors file")
            size = int.from_bytes(size_bytes, "little")
            if size > 100_000_000 or size > path.stat().st_size - 8:
                raise CheckpointError(f"{path}: not a safetensors file (bad header length)")
            header = json.loads(f.read(size))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header)") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a safetensors file, but not a {FORMAT} weights file")
    return {str(k): str(v) for k, v in metadata.items()}


def load(path: str | Path) -> PixelCNN:
    """Rebuild the model stored at ``path``, in eval mode on the CPU."""
    path = Path(path)
    metadata = read_metadata(path)
    try:
        config = PixelCNNConfig.from_json(metadata["config"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid model config in header ({exc})") from exc
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or corrupted weights ({exc})") from exc
    if tensors_digest(tensors) != metadata.get("tensors_sha256"):
        raise CheckpointError(f"{path}: corrupted weights (the tensors' checksum does not match)")
    model = PixelCNN(config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored config ({exc})") from exc
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinity")
    model.eval()
    log.info("loaded %s (sha256 %s)", path, file_sha256(path))
    return model
