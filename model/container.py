"""The codec's container: a fixed 14-byte header, then the range coder's words.

Format 1, for ``N`` images of ``H x H`` pixels (integers unsigned, little-endian):

======  ==========================================================================
bytes   field
======  ==========================================================================
2       magic ``b"Px"``
1       format version (1)
2       weights hash: the first 2 bytes of ``tensors_digest(model.state_dict())``
1       image size ``H`` (1..255)
1       ``levels - 1`` (levels 2..256)
2       ``N``, the number of images (0..65535)
1       CRC-8 of the 9 bytes above, checked before decoding starts
4       CRC-32 of those 9 bytes, the payload, the labels and the images, checked after
        decoding
4k      payload: the range coder's uint32 words (labels first, then the pixels)
======  ==========================================================================

Every field has a fixed place, so the CRC-8 catches every corrupted header byte (a CRC of
degree 8 detects every error burst of up to 8 bits) before a damaged image count can start a
long decode. The CRC-32 catches damage anywhere else, data cut short or extended, and a
decoder that computed other probabilities than the encoder (other pixels). The weights hash
is short because it only has to make the error message clear: data decoded with other
weights also fails the CRC-32.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MAGIC = b"Px"
VERSION = 1
HASH_BYTES = 2
MAX_IMAGES = 0xFFFF
WORD_BYTES = 4
_HEAD = len(MAGIC) + 1 + HASH_BYTES + 1 + 1 + 2  # the bytes the CRC-8 covers
HEADER_BYTES = _HEAD + 1 + 4


class CodecError(ValueError):
    """Bad input to the codec: images, labels, or data that is damaged or not ours."""


def crc8(data: bytes) -> int:
    """CRC-8 with polynomial x^8 + x^2 + x + 1 (0x07), initial value 0."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@dataclass(frozen=True)
class Header:
    weights: bytes  # HASH_BYTES of the weights' digest
    size: int  # image side, pixels
    levels: int  # intensity levels of the model
    count: int  # images in the container

    def pack(self) -> bytes:
        """The 9 header bytes that the CRC-8 covers."""
        if not 1 <= self.size <= 255:
            raise CodecError(f"format {VERSION} holds images of 1..255 pixels a side, not {self.size}")
        if not 0 <= self.count <= MAX_IMAGES:
            raise CodecError(f"format {VERSION} holds at most {MAX_IMAGES} images, not {self.count}")
        fields = bytes([VERSION, *self.weights, self.size, self.levels - 1])
        return MAGIC + fields + self.count.to_bytes(2, "little")

    def checksum(self, words: bytes, labels: bytes, images: bytes) -> int:
        """The CRC-32 stored in the container: over the header, payload, labels and pixels."""
        crc = zlib.crc32(self.pack())
        for part in (words, labels, images):
            crc = zlib.crc32(part, crc)
        return crc


def pack(header: Header, checksum: int, words: bytes) -> bytes:
    """The whole container: header fields, CRC-8, CRC-32, payload."""
    head = header.pack()
    return head + bytes([crc8(head)]) + checksum.to_bytes(4, "little") + words


def unpack(data: bytes) -> tuple[Header, int, bytes]:
    """Parse a container into (header, CRC-32, payload words); checks all but the CRC-32."""
    if len(data) < HEADER_BYTES:
        raise CodecError(f"data too short for compressed images ({len(data)} bytes): truncated?")
    if data[: len(MAGIC)] != MAGIC:
        raise CodecError("not compressed image data (bad magic bytes)")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise CodecError(f"unsupported format version {version} (this codec reads version {VERSION})")
    if crc8(data[:_HEAD]) != data[_HEAD]:
        raise CodecError("corrupted header (its checksum does not match)")
    at = len(MAGIC) + 1
    weights = data[at : at + HASH_BYTES]
    size, levels = data[at + HASH_BYTES], data[at + HASH_BYTES + 1] + 1
    count = int.from_bytes(data[_HEAD - 2 : _HEAD], "little")
    checksum = int.from_bytes(data[_HEAD + 1 : HEADER_BYTES], "little")
    words = data[HEADER_BYTES:]
    if len(words) % WORD_BYTES:
        raise CodecError(f"payload of {len(words)} bytes is not whole {WORD_BYTES}-byte words: truncated?")
    return Header(weights, size, levels, count), checksum, words
