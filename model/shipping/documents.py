"""The README's and the model card's figures, written from the shipped file's measured figures.

Each figure a document states about the shipped file sits between two markers,
``<!-- ship:NAME -->`` and ``<!-- /ship:NAME -->`` (invisible in rendered Markdown), and is
rewritten from a figures record (``model.shipping.figures.measure``); the prose around them is
hand-written and stays. The model card's lineage table keeps every earlier shipped file's
figures as history.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from model.shipping.figures import ShipError

Record = dict[str, Any]


def replace_blocks(text: str, blocks: dict[str, str], document: str) -> str:
    """``text`` with the body of each ``ship:NAME`` block replaced by ``blocks[NAME]``."""
    for name, body in blocks.items():
        pattern = re.compile(rf"(<!-- ship:{name} -->)(.*?)(<!-- /ship:{name} -->)", re.DOTALL)
        if len(pattern.findall(text)) != 1:
            raise ShipError(f"{document}: expected one block <!-- ship:{name} --> ... <!-- /ship:{name} -->")
        start, end = pattern.search(text).span(2)  # type: ignore[union-attr]  # found once above
        text = text[:start] + body + text[end:]
    return text


def _short(sha256: str | None) -> str:
    return f"`{sha256[:8]}`" if sha256 else "n/a"


def _training_row(record: Record) -> str:
    facts = record.get("facts", {})
    settings = facts.get("settings", {})
    start = facts.get("started_from") or {}
    started = f"{_short(start.get('sha256'))} ({start.get('steps', '?'):,} steps)" if start else "random init"
    steps = facts.get("steps")
    epochs = facts.get("epochs")
    lr = settings.get("lr")
    schedule = (
        f"peak lr {lr:g}, {settings.get('warmup_steps')} warm-up steps, batch {settings.get('batch_size')}"
        if lr is not None
        else "n/a"
    )
    return (
        f"| {_short(record['sha256'])} | {record['arch']} | {started} | "
        f"{steps if steps is None else f'{steps:,}'} ({epochs} epochs) | {schedule} | "
        f"{record['test_bits_per_dim']:.4f} | {record['fidelity']:.3f} | {record['fid']:.1f} |"
    )


def card_blocks(current: Record, history: list[Record], curves: bool) -> dict[str, str]:
    """The model card's blocks for the shipped file ``current`` and the files before it."""
    before = history[0] if history else None
    pct = round(100 * current["fidelity"], 1)
    headline = (
        f"**Test {current['test_bits_per_dim']:.3f} bits/dim** on all {current['test_images']:,} "
        f"Fashion-MNIST test images with their labels, and samples that a judge classifier recognises "
        f"{pct:g}% of the time (FID {current['fid']:.0f})"
    )
    mb = current["bytes"] / 1e6
    identity = "\n".join(
        [
            "",
            "| | |",
            "| --- | --- |",
            f"| parameters | {current['parameters']:,} |",
            f"| file | {mb:.1f} MB safetensors (loads without unpickling), sha256 `{current['sha256']}` "
            f"(tensors sha256 `{current['tensors_sha256'][:8]}...`, also in the header) |",
            f"| validation | **{current['validation_bits_per_dim']:.3f} bits/dim** "
            "(EMA weights, with labels) |",
            f"| test | **{current['test_bits_per_dim']:.3f} bits/dim** on all {current['test_images']:,} "
            "test images, with labels |",
            "",
        ]
    )
    rows = ["", "| class | validation | test | test, the file before |", "| --- | --- | --- | --- |"]
    for name, test in current["test_per_class"].items():
        old = f"{before['test_per_class'][name]:.3f}" if before else "n/a"
        rows.append(f"| {name} | {current['validation_per_class'][name]:.3f} | {test:.3f} | {old} |")
    judge = current["judge"]
    quality = [
        "",
        f"The judge classifies {100 * judge['test_accuracy']:.1f}% of the test images correctly.",
        "",
        "| samples | class fidelity | FID (judge features) | bits/dim of the samples |",
        "| --- | --- | --- | --- |",
        f"| real validation images (scale) | {judge['real_fidelity']:.3f} | {judge['real_fid']:.1f} | |",
        f"| temperature 1.0 | **{current['fidelity']:.3f}** | **{current['fid']:.0f}** | "
        f"{current['sample_bits_per_dim']:.3f} |",
    ]
    if before:
        quality.append(
            f"| the file before, temperature 1.0 | {before['fidelity']:.3f} | {before['fid']:.0f} | "
            f"{before['sample_bits_per_dim']:.3f} |"
        )
    per_class = ", ".join(f"{name} {value:.2f}" for name, value in current["fidelity_per_class"].items())
    quality += ["", f"Per class at temperature 1.0: {per_class}.", ""]
    lineage = [
        "",
        "| file (sha256) | architecture | started from | steps | schedule | test bits/dim | fidelity | FID |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        _training_row(current),
        *(_training_row(record) for record in history),
        "",
    ]
    stem = "pixelcnn-gated-fmnist"
    pictures = [
        "",
        f"- `{stem}-samples.png`: samples at temperature 1.0, one row per class "
        f"({', '.join(current['test_per_class'])}), seeds 0-99.",
        f"- `{stem}-completions.png`: the first six test images (left), their bottom halves (second "
        "column), and four completions of the top half each with `particles=16` and the true label.",
    ]
    if curves:
        pictures.append(
            f"- `{stem}-curves.png`: the last training run's bits/dim on training batches and on the "
            "validation images after each epoch."
        )
    return {
        "headline": headline,
        "identity": identity,
        "per-class": "\n".join(rows) + "\n",
        "quality": "\n".join(quality),
        "lineage": "\n".join(lineage),
        "pictures": "\n".join(pictures) + "\n",
    }


def readme_blocks(current: Record, history: list[Record]) -> dict[str, str]:
    """The README's sentences about the shipped file."""
    compression = current["compression"]
    before = history[0] if history else None
    against = (
        f" (the file before: {before['test_bits_per_dim']:.3f}, {before['fidelity']:.3f} and "
        f"{before['fid']:.0f})"
        if before
        else ""
    )
    return {
        "evaluate": f"`test: {current['test_images']} images, {current['test_bits_per_dim']:.4f} bits/dim`",
        "figures": (
            f"test {current['test_bits_per_dim']:.3f} bits/dim, class fidelity {current['fidelity']:.3f}, "
            f"FID {current['fid']:.0f}{against}"
        ),
        "compression": (
            f"{compression['container_bits_per_dim']:.3f} bits/dim in containers of "
            f"{compression['container']} on the first {compression['images']:,} test images "
            "(model ideal under the guessed labels "
            f"{compression['ideal_bits_per_dim']:.3f})"
        ),
    }


def rewrite_documents(root: Path, current: Record, history: list[Record], curves: bool) -> None:
    """Rewrite the figure blocks of ``README.md`` and ``weights/README.md`` under ``root``."""
    for path, blocks in (
        (root / "README.md", readme_blocks(current, history)),
        (root / "weights" / "README.md", card_blocks(current, history, curves)),
    ):
        path.write_text(replace_blocks(path.read_text(), blocks, str(path.relative_to(root))))
