"""The encoder writes, byte for byte, what the codec wrote before it was made fast (issue 18).

``tests/fixtures/codec/`` holds containers made by the earlier encoder for fixed inputs
(``tests.codec_fixtures``): the shipped weights on real test images, one to 64 per container,
with chosen and given labels; small seeded models of every architecture on noise. They must
still decode to their inputs, and encoding those inputs today must give the same bytes.

Data decodes only with the same floating point results, so on a CPU of another architecture
(or other versions of torch, numpy or constriction) both checks may fail together; there the
first one says so.
"""

from __future__ import annotations

import pytest
import torch

from model.codec import compress, decompress
from model.codec.container import unpack
from model.codec.range_coder import weights_hash
from model.network.pixelcnn import PixelCNN
from tests.codec_fixtures import CASES, FIXTURES, case_images, case_model

_models: dict[str, PixelCNN] = {}


def case(name: str) -> tuple[PixelCNN, torch.Tensor, bytes]:
    spec = CASES[name]
    model = _models.setdefault(spec.model, case_model(spec.model))
    data = (FIXTURES / f"{name}.bin").read_bytes()
    if unpack(data)[0].weights != weights_hash(model):
        pytest.fail(f"{name}: the weights changed since the fixture was made (see tests.codec_fixtures)")
    return model, case_images(spec, model), data


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixtures_still_decode(name: str) -> None:
    model, images, data = case(name)
    decoded = decompress(model, data)
    assert torch.equal(decoded, images), "this platform computes other probabilities than the fixtures' maker"


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_encoder_writes_the_same_bytes_as_before(name: str) -> None:
    model, images, data = case(name)
    assert compress(model, images, CASES[name].labels) == data
