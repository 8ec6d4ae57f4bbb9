"""Which weights files a service hosts: ``PIXELCNN_WEIGHTS`` names one file, several
(comma-separated) or a directory of them (a model repository). A model is named by its file's
stem. A directory's helper files (the label classifier: another format in its header) are not
models; a ``.safetensors`` file whose header cannot be read is listed as a damaged model, so
that ``/models`` says what is wrong with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.checkpoint import FORMAT, CheckpointError, read_metadata

SUFFIX = ".safetensors"


class RepositoryError(ValueError):
    """The setting names something that is not there, or two models of one name."""


@dataclass(frozen=True)
class WeightsFile:
    """One model's file as found on disk. ``stamp`` (size, mtime in ns) tells a changed file
    cheaply; ``metadata`` is its header (None with ``error`` when the header is unreadable)."""

    name: str
    path: Path
    stamp: tuple[int, int]
    metadata: dict[str, str] | None
    error: str | None = None


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _candidates(spec: str) -> list[tuple[Path, bool]]:
    """Every file the setting names, with whether it was named on its own (not found in a
    directory): a file named on its own must be a model."""
    items = [item.strip() for item in spec.split(",") if item.strip()]
    if not items:
        raise RepositoryError("PIXELCNN_WEIGHTS is empty: name a weights file, several, or a directory")
    found: list[tuple[Path, bool]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += [
                (child, False)
                for child in sorted(path.iterdir())
                if child.suffix == SUFFIX and child.is_file() and not child.name.startswith(".")
            ]
        elif path.is_file():
            found.append((path, True))
        else:
            raise RepositoryError(f"{path}: weights file or directory not found")
    return found


def scan(spec: str) -> list[WeightsFile]:
    """The models ``spec`` names, in name order (raises RepositoryError for a missing path or a
    repeated name, and for a file named on its own that is not a PixelCNN weights file)."""
    models: dict[str, WeightsFile] = {}
    for path, named in _candidates(spec):
        try:
            metadata: dict[str, str] | None = read_metadata(path)
            error = None
        except CheckpointError as exc:
            if f"not a {FORMAT} weights file" in str(exc):  # readable, but another kind of file
                if named:
                    raise RepositoryError(str(exc)) from None
                continue  # a helper in the repository (the label classifier)
            metadata, error = None, str(exc)
        name = path.stem
        if name in models:
            raise RepositoryError(
                f"two weights files are both named {name!r} ({models[name].path} and {path}); "
                "a model's name is its file's stem, so rename one"
            )
        models[name] = WeightsFile(name, path, _stamp(path), metadata, error)
    return [models[name] for name in sorted(models)]
