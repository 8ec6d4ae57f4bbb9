"""What the README tells a new user agrees with the code: the serving settings and their
defaults, the list of HTTP routes, the defaults of each route's fields, and curl examples
that work from a fresh clone (quiet but failing loudly, uploading only shipped files)."""

from __future__ import annotations

import re
import shlex
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from app.main import create_app
from app.settings import DEFAULT_WEIGHTS, Settings
from model.inference import downscale

ROOT = Path(__file__).resolve().parents[1]
RAW_README = (ROOT / "README.md").read_text()
# Without its code blocks, whose shell comments would read as headings.
README = re.sub(r"^```.*?^```", "", (ROOT / "README.md").read_text(), flags=re.M | re.S)


def section(title: str) -> str:
    """The README text under a heading, up to the next heading of the same or a higher level."""
    heading = re.search(rf"^(#+) {re.escape(title)}$", README, re.M)
    assert heading, f"README has no section {title!r}"
    rest = README[heading.end() :]
    end = re.search(rf"^#{{1,{len(heading.group(1))}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def settings_table() -> dict[str, str]:
    """``PIXELCNN_X`` -> the default cell of README's serving-settings table."""
    rows = re.findall(
        r"^\| `(PIXELCNN_\w+)` \| ([^|]+) \|", section("Serving settings (environment variables)"), re.M
    )
    return {name: default.strip() for name, default in rows}


def shown(value: Any) -> str:
    """A default as README's table writes it."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and value.startswith(str(ROOT)):  # a file the project ships
        value = Path(value)
    if isinstance(value, Path):
        return f"`{value.relative_to(ROOT)}`"
    return str(value)


def test_the_settings_table_lists_every_setting_with_its_real_default() -> None:
    table = settings_table()
    fields = {f"PIXELCNN_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert set(table) == set(fields), {
        "missing": set(fields) - set(table),
        "unknown": set(table) - set(fields),
    }
    for name, field in fields.items():
        if field.default is None:  # a computed default, said in words ("all cores")
            assert table[name] and not table[name][0].isdigit(), name
        else:
            assert table[name] == shown(field.default), (
                f"{name}: README {table[name]}, server {field.default}"
            )
    assert Path(Settings().weights) == DEFAULT_WEIGHTS


def api_section() -> str:
    return section("The HTTP API")


def test_every_route_is_in_the_readme_api_list() -> None:
    spec = create_app(Settings()).openapi()
    routes = [(method.upper(), path) for path, item in spec["paths"].items() for method in item]
    listed = api_section()
    missing = [f"{m} {p}" for m, p in routes if not re.search(rf"`{m} {re.escape(p)}`", listed)]
    assert not missing, missing


def form_defaults(path: str) -> dict[str, Any]:
    spec = create_app(Settings()).openapi()
    body = spec["paths"][path]["post"]["requestBody"]["content"]
    schema = next(iter(body.values()))["schema"]
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return {name: prop["default"] for name, prop in schema["properties"].items() if "default" in prop}


@pytest.mark.parametrize("path", ["/generate", "/complete"])
def test_the_readme_gives_each_fields_default(path: str) -> None:
    entry = re.search(rf"^- `POST {path}`.*?(?=^- |\Z)", api_section(), re.M | re.S)
    assert entry, path
    text = " ".join(entry.group(0).split())
    defaults = form_defaults(path)
    where = {name: text.find(f"`{name}`") for name in defaults}
    for name, default in defaults.items():
        assert where[name] >= 0, f"{path}: README does not mention `{name}`"
        if default is None:
            continue
        # What README says about a field runs up to the next field it mentions.
        after = [at for at in where.values() if at > where[name]]
        about = text[where[name] : min(after, default=len(text))]
        value = shown(default).strip("`")
        assert f"(default {value}" in about, f"{path}: README does not give `{name}`'s default {value}"


def shell_commands() -> list[list[str]]:
    """Every command in README's shell code blocks, as words: continuation lines joined,
    comments dropped, split at ``&&``, ``;``, ``|`` and the like."""
    commands: list[list[str]] = []
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", RAW_README, re.M | re.S)
    for block in (text for language, text in blocks if language in ("bash", "sh", "shell", "")):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            command: list[str] = []
            for word in lexer:
                if word and set(word) <= set("&|;()<>"):
                    commands.append(command)
                    command = []
                else:
                    command.append(word)
            commands.append(command)
    return [c for c in commands if c]


def curl_commands() -> list[list[str]]:
    found = [c[c.index("curl") + 1 :] for c in shell_commands() if "curl" in c]
    assert len(found) >= 6, "README's curl examples were not found"
    return found


def uploads(args: list[str]) -> list[str]:
    """The local files a curl command sends: ``-F name=@file`` (or ``<file``), ``-d @file``,
    ``-T file``."""
    files = []
    for flag, value in pairwise(args):
        if flag in ("-F", "--form") and (m := re.match(r"[^=]*=[@<]([^;]+)", value)):
            files.append(m.group(1))
        elif flag in ("-d", "--data", "--data-binary", "--data-raw") and value.startswith("@"):
            files.append(value[1:])
        elif flag in ("-T", "--upload-file"):
            files.append(value)
    return files


def test_every_curl_example_is_quiet_but_fails_loudly() -> None:
    """``-sS``: no progress meter, but errors shown; ``--fail-with-body`` (or ``-f``): an error
    answer is a failing exit status, not an image file that holds JSON."""
    for args in curl_commands():
        short = {letter for a in args if re.fullmatch(r"-[A-Za-z]+", a) for letter in a[1:]}
        long = {a.split("=")[0] for a in args if a.startswith("--")}
        shown = " ".join(["curl", *args])
        assert ("s" in short or "--silent" in long) and ("S" in short or "--show-error" in long), (
            f"README: use curl -sS: {shown}"
        )
        assert {"--fail-with-body", "--fail"} & long or "f" in short, (
            f"README: use curl --fail-with-body: {shown}"
        )


def test_every_file_a_curl_example_uploads_ships_with_the_repository() -> None:
    """From a fresh clone, each upload is a file in the repository or the output (``-o``) of an
    earlier example."""
    written: set[str] = set()
    routes: set[str] = set()
    for args in curl_commands():
        for path in uploads(args):
            assert not Path(path).is_absolute() and ".." not in Path(path).parts, path
            assert path in written or (ROOT / path).is_file(), (
                f"README uploads {path!r}, which neither ships nor is written by an earlier example"
            )
        written.update(value for flag, value in pairwise(args) if flag in ("-o", "--output"))
        routes.update(re.findall(r"localhost:\d+(/\w+)", " ".join(args)))
    assert {"/generate", "/complete", "/likelihood", "/upscale", "/compress", "/decompress"} <= routes


def test_every_picture_the_readme_shows_exists() -> None:
    pictures = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)|<img src=\"([^\"]+)\"", RAW_README)
    paths = [a or b for a, b in pictures]
    assert paths
    missing = [p for p in paths if not (ROOT / p).is_file()]
    assert not missing, missing


def test_the_small_sample_image_is_the_large_one_shrunk_by_4() -> None:
    """README: docs/small7x7.png is docs/test-image-0.png with each pixel a 4x4 block's mean."""
    large = torch.from_numpy(np.array(Image.open(ROOT / "docs/test-image-0.png").convert("L")))
    small = np.array(Image.open(ROOT / "docs/small7x7.png").convert("L"))
    assert large.shape == (28, 28) and small.shape == (7, 7)
    assert (downscale(large[None], 4)[0].numpy() == small).all()
