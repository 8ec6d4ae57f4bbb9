"""Weights files: one safetensors file, config and training facts in its header metadata.

Nothing is unpickled on load. The header's ``__metadata__`` holds string values:
``format`` (``FORMAT``), ``config`` (the ``PixelCNNConfig`` as JSON), ``tensors_sha256``
(a checksum of the tensors, so a flipped byte is caught), and whatever training
facts ``save`` was given (JSON-encoded when they are not strings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from model.network import PixelCNN, PixelCNNConfig

FORMAT = "pixelcnn-weights/1"
log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A weights file is missing, truncated, corrupted or not one of ours."""


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
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
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
