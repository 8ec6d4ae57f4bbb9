"""The encoder writes, byte for byte, what the codec wrote before it was made fast (issue 18).

``tests/fixtures/codec/`` holds containers made by the earlier encoder for fixed inputs
(``tests.codec_fixtures``): the shipped weights on real test images, one to 64 per container,
with chosen and given labels; small seeded models of every architecture on noise. They must
still decode to their inputs, and encoding those inputs today must give the same bytes.

Coded bytes follow the machine's floating point rounding. On a machine that computes other
logits than the fixtures' maker (``platform.json``), the stored bytes cannot decode there, so
today's encoder is compared with the reference encoder run on this machine (from the
repository's git history) instead, and what it wrote must decode.
"""

from __future__ import annotations

import json

import pytest
import torch

from model.codec import compress, decompress
from model.codec.container import unpack
from model.codec.range_coder import weights_hash
from model.network.pixelcnn import PixelCNN
from tests.codec_fixtures import (
    CASES,
    FIXTURES,
    PLATFORM_FILE,
    SHIPPED_WEIGHTS,
    case_images,
    case_model,
    platform_probe,
    write_with_reference_encoder,
)

_models: dict[str, PixelCNN] = {}


@pytest.fixture(scope="module")
def expected_bytes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each case's reference bytes for this machine: the stored fixture where this machine
    computes the maker's logits, else what the reference encoder writes here."""
    probes = json.loads((FIXTURES / PLATFORM_FILE).read_text())
    stored, live = {}, []
    for name, spec in CASES.items():
        model = _models.setdefault(spec.model, case_model(spec.model))
        data = (FIXTURES / f"{name}.bin").read_bytes()
        if unpack(data)[0].weights != weights_hash(model):
            pytest.fail(f"{name}: the weights changed since the fixture was made (see tests.codec_fixtures)")
        if probes.get(spec.model) == platform_probe(model):
            stored[name] = data
        else:
            live.append(name)
    if live:
        out = tmp_path_factory.mktemp("reference-codec")
        write_with_reference_encoder(live, SHIPPED_WEIGHTS, out)
        stored.update({name: (out / f"{name}.bin").read_bytes() for name in live})
    return stored


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixtures_still_decode(name: str, expected_bytes: dict[str, bytes]) -> None:
    model = _models[CASES[name].model]
    decoded = decompress(model, expected_bytes[name])
    assert torch.equal(decoded, case_images(CASES[name], model))


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_encoder_writes_the_same_bytes_as_before(name: str, expected_bytes: dict[str, bytes]) -> None:
    model = _models[CASES[name].model]
    assert compress(model, case_images(CASES[name], model), CASES[name].labels) == expected_bytes[name]


def test_the_platform_record_names_every_case_model() -> None:
    probes = json.loads((FIXTURES / PLATFORM_FILE).read_text())
    assert {spec.model for spec in CASES.values()} <= set(probes)
    assert all(len(digest) == 64 for digest in probes.values())
