"""A folder of image files as a data set, laid out as torchvision's ``ImageFolder`` expects.

- ``FOLDER/<class>/...``: each first-level subfolder is a class named by the folder, classes
  in sorted order; files are found at any depth below it.
- ``FOLDER/*.png``: images directly in a folder without subfolders: no classes.
- ``FOLDER/train/`` and ``FOLDER/test/``, and nothing else: the two splits, each laid out as
  above (the test split's classes must be among the training split's).

Every file is read by ``model.pictures`` (every format and mode the service accepts) and
becomes grayscale, or RGB for a colour data set. Hidden files (".name") are ignored; any other
file that is not a readable image stops the load with its name, unless ``skip_bad_files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from model.data.arrays import DatasetError, Split
from model.pictures import ImageError, image_size_of, read_training_image

MAX_TRAINING_PIXELS = 64_000_000  # per file: a large photo is fine, a decompression bomb is not


@dataclass
class FolderScan:
    """The files of a folder, each with its class, before any pixel is decoded."""

    files: list[tuple[Path, int]] = field(default_factory=list)  # (path, class index)
    sizes: set[tuple[int, int]] = field(default_factory=set)  # (width, height) seen
    skipped: list[str] = field(default_factory=list)  # "name: reason" of files left out


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _hidden_part(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not _hidden_part(p, folder))


def _shown(path: Path, root: Path) -> str:
    return str(path.relative_to(root.parent))


def _scan(
    folder: Path, root: Path, names: list[str] | None, skip_bad: bool, read_sizes: bool, scan: FolderScan
) -> None:
    """Add the files of one split folder to ``scan``; ``names`` are the known class names (the
    training split's, for a test split), or None to take them from ``folder``'s subfolders.
    ``read_sizes``: read each file's size from its header (to choose the size of the data)."""
    classes = _subfolders(folder)
    entries: list[tuple[Path, str | None, bool]]  # (directory, class name, recursive)
    if classes:
        entries = [(c, c.name, True) for c in classes]
        loose = _files(folder, recursive=False)
        scan.skipped += [f"{_shown(p, root)}: not in a class folder" for p in loose]
    else:
        entries = [(folder, None, False)]
    known = names if names is not None else [c.name for c in classes]
    for directory, class_name, recursive in entries:
        if class_name is not None and class_name not in known:
            raise DatasetError(
                f"{_shown(directory, root)}: class {class_name!r} is not among the training classes "
                f"({', '.join(known)})"
            )
        index = 0 if class_name is None else known.index(class_name)
        found = 0
        for path in _files(directory, recursive):
            if read_sizes:
                try:
                    scan.sizes.add(image_size_of(path.read_bytes(), _shown(path, root), MAX_TRAINING_PIXELS))
                except (ImageError, OSError) as exc:
                    _leave_out(path, root, exc, skip_bad, scan)
                    continue
            scan.files.append((path, index))
            found += 1
        if found == 0 and class_name is not None:
            raise DatasetError(f"{_shown(directory, root)}: class {class_name!r} has no images")


def _leave_out(path: Path, root: Path, exc: Exception, skip_bad: bool, scan: FolderScan) -> None:
    """An unreadable file: the load stops, or with ``skip_bad`` the file is listed as skipped."""
    if not skip_bad:
        raise DatasetError(f"{exc} (--skip-bad-files leaves unreadable files out)") from None
    scan.skipped.append(f"{_shown(path, root)}: {exc}")


def scan_folder(
    folder: Path, skip_bad: bool, read_sizes: bool
) -> tuple[FolderScan, FolderScan | None, tuple[str, ...] | None]:
    """(training files, test files or None, class names or None). With ``read_sizes`` every
    file's size is read from its header, and a file that is not an image raises
    ``DatasetError`` (or is skipped) here; without it (the size is given) that happens when
    the file is decoded, and each file is read once."""
    subfolders = _subfolders(folder)
    split_layout = {p.name for p in subfolders} == {"train", "test"}
    train_dir = folder / "train" if split_layout else folder
    classes = _subfolders(train_dir)
    names = tuple(c.name for c in classes) if classes else None
    train = FolderScan()
    _scan(train_dir, folder, None, skip_bad, read_sizes, train)
    test = None
    if split_layout:
        test = FolderScan()
        if names is None and _subfolders(folder / "test"):
            raise DatasetError(f"{folder.name}/test: has class folders but {folder.name}/train has none")
        _scan(folder / "test", folder, list(names) if names else None, skip_bad, read_sizes, test)
    return train, test, names


def decode_folder(
    scan: FolderScan, root: Path, size: int, colours: int, skip_bad: bool, progress: bool
) -> Split:
    """Decode every scanned file to ``(N, colours, size, size)`` uint8 (centre-cropped,
    resized; ``colours`` 1 is grayscale, 3 is RGB)."""
    images, labels = [], []
    for path, index in tqdm(scan.files, desc=f"reading {root.name}", disable=not progress, unit="img"):
        try:
            images.append(
                read_training_image(path.read_bytes(), _shown(path, root), size, MAX_TRAINING_PIXELS, colours)
            )
        except (ImageError, OSError) as exc:
            _leave_out(path, root, exc, skip_bad, scan)
            continue
        labels.append(index)
    stacked = np.stack(images) if images else np.zeros((0, colours, size, size), np.uint8)
    return Split(torch.from_numpy(stacked), torch.tensor(labels, dtype=torch.int64))
