"""Bad requests, catalogued: each gets a specific 4xx and a message naming the problem.
Odd but valid images are accepted and converted as the README says. Real server, tiny model."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from app.errors import ClientError
from app.main import create_app
from app.schemas import parse_label
from app.settings import Settings
from model.data import FASHION_CLASSES
from tests.conftest import random_model
from tests.server import running_server

MAX_UPLOAD = 300_000
MAX_PIXELS = 5_000_000


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    model = random_model("gated", 10, size=28, levels=256, channels=8, layers=2, seed=5)
    settings = Settings(
        max_batch_delay_ms=2,
        max_images=16,
        max_particles=8,
        max_upload_bytes=MAX_UPLOAD,
        max_image_pixels=MAX_PIXELS,
    )
    app = create_app(settings, models={"model": model})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=120) as c:
        yield c


def encode(picture: Image.Image, fmt: str = "PNG", **kwargs: Any) -> bytes:
    out = io.BytesIO()
    picture.save(out, format=fmt, **kwargs)
    return out.getvalue()


GRAY = encode(Image.new("L", (28, 28), 90))
BLACK = encode(Image.new("L", (28, 28), 0))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels: a decompression bomb's opening."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/></svg>'
TIFF = encode(Image.new("L", (28, 28), 90), "TIFF")


def upload(image: bytes | None = GRAY, **fields: Any) -> dict[str, Any]:
    files = {} if image is None else {"image": ("x.png", image, "image/png")}
    if "mask" in fields:
        files["mask"] = ("m.png", fields.pop("mask"), "image/png")
    return {"files": files, "data": {k: str(v) for k, v in fields.items()}}


BOX = {"box": "0,0,28,14"}
# (name, method, path, request kwargs, expected status, words the message must contain)
CASES: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    (
        "malformed JSON",
        "POST",
        "/generate",
        {"content": b'{"n": ', "headers": {"content-type": "application/json"}},
        422,
        "json",
    ),
    (
        "text instead of JSON",
        "POST",
        "/generate",
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
        415,
        "Content-Type: application/json",
    ),
    ("a JSON array", "POST", "/generate", {"json": [1, 2]}, 422, "body"),
    ("n = 0", "POST", "/generate", {"json": {"n": 0}}, 422, "n"),
    ("n = 10**6", "POST", "/generate", {"json": {"n": 10**6}}, 422, "less than or equal to 64"),
    ("n over the server's cap", "POST", "/generate", {"json": {"n": 17}}, 422, "at most 16"),
    ("n not a number", "POST", "/generate", {"json": {"n": "many"}}, 422, "n"),
    ("n fractional", "POST", "/generate", {"json": {"n": 1.5}}, 422, "n"),
    ("temperature 0", "POST", "/generate", {"json": {"temperature": 0}}, 422, "temperature"),
    ("temperature negative", "POST", "/generate", {"json": {"temperature": -1}}, 422, "temperature"),
    (
        "temperature NaN",
        "POST",
        "/generate",
        {"content": b'{"temperature": NaN}', "headers": {"content-type": "application/json"}},
        422,
        "temperature",
    ),
    (
        "temperature infinite",
        "POST",
        "/generate",
        {"content": b'{"temperature": Infinity}', "headers": {"content-type": "application/json"}},
        422,
        "temperature",
    ),
    ("temperature too high", "POST", "/generate", {"json": {"temperature": 11}}, 422, "temperature"),
    ("unknown label name", "POST", "/generate", {"json": {"label": "unicorn"}}, 422, "unknown label"),
    ("label 10", "POST", "/generate", {"json": {"label": 10}}, 422, "out of range"),
    ("label a superscript digit", "POST", "/generate", {"json": {"label": "\u00b2"}}, 422, "unknown label"),
    ("label a huge number", "POST", "/generate", {"json": {"label": "9" * 5000}}, 422, "label"),
    ("label -1", "POST", "/generate", {"json": {"label": -1}}, 422, "out of range"),
    ("label boolean", "POST", "/generate", {"json": {"label": True}}, 422, "label"),
    ("label a list", "POST", "/generate", {"json": {"label": [1]}}, 422, "label"),
    ("extra field", "POST", "/generate", {"json": {"n": 1, "steps": 5}}, 422, "steps"),
    ("negative seed", "POST", "/generate", {"json": {"seed": -1}}, 422, "seed"),
    ("huge seed", "POST", "/generate", {"json": {"seed": 2**32}}, 422, "seed"),
    ("seed + n past 2**32", "POST", "/generate", {"json": {"seed": 2**32 - 1, "n": 2}}, 422, "seed + n - 1"),
    ("seed not a number", "POST", "/generate", {"json": {"seed": "abc"}}, 422, "seed"),
    ("unknown format", "POST", "/generate", {"json": {"format": "gif"}}, 422, "format"),
    ("scale 0", "POST", "/generate", {"json": {"scale": 0}}, 422, "scale"),
    ("scale 100", "POST", "/generate", {"json": {"scale": 100}}, 422, "scale"),
    ("no image field", "POST", "/complete", upload(None, **BOX), 422, "image"),
    ("empty upload", "POST", "/complete", upload(b"", **BOX), 400, "empty"),
    (
        "text sent as PNG",
        "POST",
        "/complete",
        upload(b"this is not a png at all", **BOX),
        415,
        "accepted format",
    ),
    (
        "truncated PNG",
        "POST",
        "/complete",
        upload(encode(Image.effect_noise((28, 28), 60))[:120], **BOX),
        400,
        "truncated",
    ),
    (
        "decompression bomb",
        "POST",
        "/complete",
        upload(png_header_only(30_000, 30_000), **BOX),
        413,
        "pixels",
    ),
    ("EPS", "POST", "/complete", upload(EPS, **BOX), 415, "accepted format"),
    ("TIFF", "POST", "/complete", upload(TIFF, **BOX), 415, "PNG, JPEG, WebP, BMP or GIF"),
    ("SVG", "POST", "/complete", upload(SVG, **BOX), 415, "accepted format"),
    ("mask not an image", "POST", "/complete", upload(mask=b"nope"), 415, "mask"),
    ("empty mask", "POST", "/complete", upload(mask=BLACK), 422, "empty"),
    ("no region to fill", "POST", "/complete", upload(), 422, "no region to fill"),
    ("mask and box", "POST", "/complete", upload(mask=GRAY, **BOX), 422, "not both"),
    ("inverted box", "POST", "/complete", upload(box="20,20,10,10"), 422, "x0 < x1"),
    ("box outside the image", "POST", "/complete", upload(box="0,0,29,28"), 422, "<= 28"),
    ("box not numbers", "POST", "/complete", upload(box="a,b,c,d"), 422, "four integers"),
    ("box of three numbers", "POST", "/complete", upload(box="1,2,3"), 422, "four integers"),
    ("complete n = 0", "POST", "/complete", upload(n=0, **BOX), 422, "n"),
    ("complete n too large", "POST", "/complete", upload(n=1000, **BOX), 422, "at most 16"),
    ("particles 0", "POST", "/complete", upload(particles=0, **BOX), 422, "particles"),
    ("particles 10**6", "POST", "/complete", upload(particles=10**6, **BOX), 422, "at most 8"),
    ("temperature NaN form", "POST", "/complete", upload(temperature="nan", **BOX), 422, "temperature"),
    ("temperature 0 form", "POST", "/complete", upload(temperature="0", **BOX), 422, "greater than 0"),
    (
        "temperature 1e9 form",
        "POST",
        "/complete",
        upload(temperature="1e9", **BOX),
        422,
        "less than or equal to 10",
    ),
    ("temperature inf form", "POST", "/complete", upload(temperature="inf", **BOX), 422, "temperature"),
    ("label out of range form", "POST", "/complete", upload(label="12", **BOX), 422, "out of range"),
    ("image as a text field", "POST", "/complete", {"data": {"image": "abc", **BOX}}, 422, "image"),
    ("JSON to a multipart route", "POST", "/complete", {"json": {"image": "abc"}}, 422, "image"),
    (
        "body too large",
        "POST",
        "/complete",
        upload(b"\x89PNG" + b"\x00" * (MAX_UPLOAD + 10), **BOX),
        413,
        "too large",
    ),
    ("likelihood empty upload", "POST", "/likelihood", upload(b""), 400, "empty"),
    (
        "likelihood GIF garbage",
        "POST",
        "/likelihood",
        upload(b"GIF89a" + b"\x00" * 5),
        400,
        "damaged GIF",
    ),
    ("likelihood unknown label", "POST", "/likelihood", upload(label="xyz"), 422, "unknown label"),
    ("likelihood unknown format", "POST", "/likelihood", upload(format="svg"), 422, "format"),
    ("GET on a POST route", "GET", "/generate", {}, 405, "method"),
    ("unknown route", "GET", "/nothing-here", {}, 404, "not found"),
]


@pytest.mark.parametrize("name, method, path, kwargs, status, words", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_specific_4xx(
    client: httpx.Client, name: str, method: str, path: str, kwargs: dict[str, Any], status: int, words: str
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert words.lower() in text.lower(), f"{name}: {text}"


def test_the_catalogue_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_malformed_json_is_located_by_line_and_column_in_words(client: httpx.Client) -> None:
    body = b'{\n  "n": 3,\n  oops}'
    response = client.post("/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "body: not valid JSON at line 3, column 3 (expecting property name enclosed in double quotes)"
    )
    cut = client.post("/generate", content=b'{"n": ', headers={"content-type": "application/json"})
    assert cut.json()["detail"] == "body: not valid JSON at line 1, column 7 (expecting value)"


def gif_two_frames() -> bytes:
    first, second = Image.new("L", (28, 28), 50), Image.new("L", (28, 28), 200)
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def sixteen_bit() -> bytes:
    values = np.full((28, 28), 65535, dtype=np.uint16)
    values[:, :14] = 0
    return encode(Image.fromarray(values))


def bad_exif() -> bytes:
    return encode(Image.new("L", (28, 28), 140), exif=b"Exif\x00\x00XX\x00*\x00\x00\x00\x08")


def palette(transparent: bool) -> bytes:
    picture = Image.new("P", (28, 28), 1)
    picture.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    return encode(picture, transparency=0) if transparent else encode(picture)


# (name, bytes, expected gray value at the centre, expected mean within 1)
ODD: list[tuple[str, bytes, int]] = [
    ("palette", palette(False), 76),
    ("palette with transparency", palette(True), 76),
    ("CMYK JPEG", encode(Image.new("CMYK", (28, 28), (0, 0, 0, 0)), "JPEG", quality=95), 255),
    ("16-bit PNG", sixteen_bit(), 255),
    ("RGBA PNG", encode(Image.new("RGBA", (28, 28), (100, 100, 100, 255))), 100),
    ("LA PNG", encode(Image.new("LA", (28, 28), (120, 255))), 120),
    ("animated GIF, first frame", gif_two_frames(), 50),
    ("1-bit BMP", encode(Image.new("1", (28, 28), 1), "BMP"), 255),
    ("WebP", encode(Image.new("RGB", (28, 28), (80, 80, 80)), "WEBP", lossless=True), 80),
    ("grayscale JPEG", encode(Image.new("L", (28, 28), 160), "JPEG", quality=100), 160),
    ("1x1 pixel", encode(Image.new("L", (1, 1), 70)), 70),
    ("PNG with damaged EXIF", bad_exif(), 140),
    ("gray PNG with a tRNS colour key", encode(Image.new("L", (28, 28), 99), transparency=0), 99),
    ("2000x2000 pixels", encode(Image.new("L", (2000, 2000), 33)), 33),
    ("RGB 200x100, not square", encode(Image.new("RGB", (200, 100), (10, 200, 10))), 123),
]


@pytest.mark.parametrize("name, data, centre", ODD, ids=[o[0] for o in ODD])
def test_odd_but_valid_images_are_accepted_and_converted(
    client: httpx.Client, name: str, data: bytes, centre: int
) -> None:
    r = client.post(
        "/complete",
        files={"image": ("x", data, "application/octet-stream")},
        data={"box": "0,0,1,1", "n": "1", "seed": "0", "particles": "1"},
    )
    assert r.status_code == 200, f"{name}: {r.text}"
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert got.shape == (28, 28)
    assert abs(int(got[20, 20]) - centre) <= 1, f"{name}: centre {got[20, 20]}, expected {centre}"
    assert client.post("/likelihood", files={"image": ("x", data, "image/png")}).status_code == 200


def test_a_mask_of_another_size_is_resized(client: httpx.Client) -> None:
    mask = np.zeros((7, 7), dtype=np.uint8)
    mask[:, 4:] = 255  # right part of the image, at a quarter of the model's size
    r = client.post(
        "/complete",
        files={
            "image": ("x.png", GRAY, "image/png"),
            "mask": ("m.png", encode(Image.fromarray(mask)), "image/png"),
        },
        data={"n": "1", "seed": "3", "particles": "1"},
    )
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert (got[:, :14] == 90).all()
    assert (got[:, 18:] != 90).any()


def test_transparency_stays_background_when_inverting(client: httpx.Client) -> None:
    rgba = np.zeros((28, 28, 4), dtype=np.uint8)  # transparent everywhere ...
    rgba[8:20, 8:20] = (0, 0, 0, 255)  # ... but a black opaque square: dark-on-light art
    data = encode(Image.fromarray(rgba, mode="RGBA"))
    r = client.post("/likelihood", files={"image": ("x.png", data, "image/png")}, data={"invert": "true"})
    assert r.status_code == 200
    r = client.post(
        "/complete",
        files={"image": ("x.png", data, "image/png")},
        data={"box": "0,0,1,1", "n": "1", "seed": "0", "particles": "1", "invert": "true"},
    )
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    assert (got[10:18, 10:18] == 255).all() and got[25, 25] == 0


def test_a_tiny_temperature_gives_the_most_likely_pixels(client: httpx.Client) -> None:
    cold = client.post("/generate", json={"n": 1, "seed": 0, "temperature": 1e-320, "label": 1})
    colder = client.post("/generate", json={"n": 1, "seed": 5, "temperature": 1e-6, "label": 1})
    assert cold.status_code == colder.status_code == 200
    assert cold.content == colder.content  # both the argmax at every pixel, whatever the seed


def test_invert_turns_dark_on_light_into_light_on_dark(client: httpx.Client) -> None:
    r = client.post(
        "/complete",
        files={"image": ("x.png", encode(Image.new("L", (28, 28), 200)), "image/png")},
        data={"box": "0,0,1,1", "n": "1", "seed": "0", "particles": "1", "invert": "true"},
    )
    assert r.status_code == 200
    assert int(np.asarray(Image.open(io.BytesIO(r.content)))[10, 10]) == 55


@pytest.mark.parametrize(
    ("text", "index"),
    [(" 3 ", 3), ("\x1f3", 3), ("T-Shirt", 0), ("ankle_boot", 9), ("Boot", 9), ("sneakers", 7), ("-0", 0)],
)
def test_labels_as_text_are_read_as_the_commands_read_them(text: str, index: int) -> None:
    assert parse_label(text, FASHION_CLASSES) == index


@pytest.mark.parametrize("text", ["²", "٣", "--1", "+3", "3.0", "_3", "shirtz"])
def test_a_label_that_is_no_class_is_a_422_not_a_crash(text: str) -> None:
    with pytest.raises(ClientError) as error:
        parse_label(text, FASHION_CLASSES)
    assert error.value.status == 422
