"""The code's shape: subpackages by concern, short modules, one-way imports, a README map that
matches the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "app")
MAX_LINES = 300


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of ``model`` and ``app`` (a package is its __init__)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports, at any depth of its code."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out & known


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def test_model_is_split_into_subpackages_with_few_top_level_modules() -> None:
    top = ROOT / "model"
    subpackages = [d.name for d in top.iterdir() if (d / "__init__.py").is_file()]
    assert len(subpackages) >= 3, subpackages
    loose = [p.name for p in top.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    assert len(loose) <= 8, loose


def test_no_module_is_longer_than_about_300_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules().values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_model_never_imports_the_service() -> None:
    graph = import_graph()
    offenders = {
        name: sorted(t for t in targets if t.split(".")[0] == "app") for name, targets in graph.items()
    }
    assert not {k: v for k, v in offenders.items() if k.split(".")[0] == "model" and v}


def test_there_are_no_import_cycles() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_the_public_api_is_importable_from_model() -> None:
    import model

    for name in ("load", "save", "PixelCNN", "PixelCNNConfig", "generate", "complete", "log_likelihood"):
        assert hasattr(model, name), name
    for name in (
        "compress",
        "decompress",
        "load_fashion_mnist",
        "FASHION_CLASSES",
        "open_source",
        "CheckpointError",
    ):
        assert hasattr(model, name), name
    assert set(model.__all__) <= set(dir(model))


def readme_map() -> set[str]:
    """The files that README's "Code map" block lists, as paths from the repository root."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Code map\n.*?```text\n(.*?)```", text, re.S)
    assert block, "README.md has no '## Code map' section with a text block"
    listed: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, name) of the open folders
    for line in block.group(1).splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        name = line.split()[0]
        while folders and folders[-1][0] >= indent:
            folders.pop()
        if name.endswith("/"):
            folders.append((indent, name.rstrip("/")))
        else:
            listed.add("/".join([*(f for _, f in folders), name]))
    return listed


def test_the_readme_code_map_matches_the_tree() -> None:
    tree = {str(p.relative_to(ROOT)) for p in modules().values()}
    listed = readme_map()
    assert listed == tree, {
        "missing from README": sorted(tree - listed),
        "not in the tree": sorted(listed - tree),
    }
