"""What the README tells a new user agrees with the code: the serving settings and their
defaults, the list of HTTP routes, and the defaults of each route's fields."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.main import create_app
from app.settings import DEFAULT_WEIGHTS, Settings

ROOT = Path(__file__).resolve().parents[1]
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
    assert Settings().weights == DEFAULT_WEIGHTS


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
