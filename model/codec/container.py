"""The codec's container: a 13-byte header, then the payload.

Format 2, for ``N`` grayscale images of ``H x H`` pixels (integers unsigned, little-endian);
format 3 is the same for colour (RGB) images, whose pixels are coded a colour at a time:

======  ==========================================================================
bytes   field
======  ==========================================================================
1       magic ``b"P"``
1       format version: 2 for grayscale, 3 for colour (the only difference)
2       weights hash: the first 2 bytes of ``tensors_digest(model.state_dict())``
1       image size ``H`` (1..255)
1       ``levels - 1`` (levels 2..256)
2       ``N``, the number of images (0..65535)
1       CRC-8 of the bytes above, checked before decoding starts
4       CRC-32 of those bytes, the payload, the labels and the images, checked after
        decoding
rest    payload: the range coder's uint32 words as big-endian bytes (labels first, then
        the pixels in raster order, in colour each pixel's red, green and blue in turn,
        ``BATCH`` images side by side: images 0..31, then 32..63, ...), less the
        trailing bytes the decoder does not need; the decoder pads the payload with
        ``0xFF`` bytes to whole words
======  ==========================================================================

Every byte is worth 0.01 bits/dim on a 28x28 image, so nothing is stored that the rest
implies: the payload runs to the end of the data, and its length is the data's. Every
header field has a fixed place, so the CRC-8 catches every corrupted header byte (a CRC of
degree 8 detects every error burst of up to 8 bits in a message of fixed length) before a
damaged image count can start a long decode. (A variable-length count would save a byte
but lose that: a flipped continuation bit moves the CRC-8.) The CRC-32 catches damage
anywhere else, data cut short or extended, and a decoder that computed other probabilities
than the encoder (other pixels). The weights hash is short because it only has to make the
error message clear: data decoded with other weights also fails the CRC-32.

The colour count lives in the version byte rather than in a field of its own, so grayscale
containers stay byte for byte what format 2 always wrote, a colour one costs no extra byte,
and a reader of format 2 alone refuses colour data at once. A colour model's weights hash
differs from a grayscale one's too, but only by chance (1 in 65536 agree), and its error
would name the weights, not the colours: the version byte names them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

MAGIC = b"P"
VERSION = 2  # grayscale; the format this codec always wrote
COLOUR_VERSION = 3  # format 2 for colour (RGB) images
VERSIONS = {VERSION: 1, COLOUR_VERSION: 3}  # format version -> channels of its images
HASH_BYTES = 2
MAX_IMAGES = 0xFFFF
BATCH = 32  # images coded side by side; part of the format, since decoding repeats the shapes
WORD_BYTES = 4
PAD_BYTE = 0xFF  # what the decoder appends to the trimmed payload
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
    channels: int = 1  # colours a pixel: 1 (grayscale, format 2) or 3 (RGB, format 3)

    @property
    def version(self) -> int:
        """The format version byte, which also says the colour count."""
        for version, channels in VERSIONS.items():
            if channels == self.channels:
                return version
        raise CodecError(f"the format holds grayscale or RGB images (1 or 3 channels), not {self.channels}")

    def pack(self) -> bytes:
        """The header bytes that the CRC-8 covers."""
        version = self.version
        if not 1 <= self.size <= 255:
            raise CodecError(f"format {version} holds images of 1..255 pixels a side, not {self.size}")
        if not 0 <= self.count <= MAX_IMAGES:
            raise CodecError(f"format {version} holds at most {MAX_IMAGES} images, not {self.count}")
        fields = bytes([version, *self.weights, self.size, self.levels - 1])
        return MAGIC + fields + self.count.to_bytes(2, "little")

    def checksum(self, payload: bytes, labels: bytes, images: bytes) -> int:
        """The CRC-32 stored in the container: over the header, payload, labels and pixels."""
        crc = zlib.crc32(self.pack())
        for part in (payload, labels, images):
            crc = zlib.crc32(part, crc)
        return crc


def pack(header: Header, checksum: int, payload: bytes) -> bytes:
    """The whole container: header fields, CRC-8, CRC-32, payload."""
    head = header.pack()
    return head + bytes([crc8(head)]) + checksum.to_bytes(4, "little") + payload


def padded(payload: bytes) -> bytes:
    """The decoder's input: the payload padded with ``PAD_BYTE`` to whole big-endian words."""
    return payload + bytes([PAD_BYTE]) * (-len(payload) % WORD_BYTES)


def unpack(data: bytes) -> tuple[Header, int, bytes]:
    """Parse a container into (header, CRC-32, payload); checks all but the CRC-32."""
    if len(data) < HEADER_BYTES:
        raise CodecError(f"data too short for compressed images ({len(data)} bytes): truncated?")
    if data[: len(MAGIC)] != MAGIC:
        raise CodecError("not compressed image data (bad magic bytes)")
    version = data[len(MAGIC)]
    if version not in VERSIONS:
        if data[:3] == b"Px\x01":
            raise CodecError(
                "format 1 data (written by an earlier release); this codec reads formats 2 and 3"
            )
        raise CodecError(f"unsupported format version {version} (this codec reads versions 2 and 3)")
    if crc8(data[:_HEAD]) != data[_HEAD]:
        raise CodecError("corrupted header (its checksum does not match)")
    at = len(MAGIC) + 1
    weights = data[at : at + HASH_BYTES]
    size, levels = data[at + HASH_BYTES], data[at + HASH_BYTES + 1] + 1
    count = int.from_bytes(data[_HEAD - 2 : _HEAD], "little")
    checksum = int.from_bytes(data[_HEAD + 1 : HEADER_BYTES], "little")
    return Header(weights, size, levels, count, VERSIONS[version]), checksum, data[HEADER_BYTES:]
