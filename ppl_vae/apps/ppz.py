"""The ``.ppz`` container of ``ppl_vae.apps.compression``: a checked binary header, then the coder's words.

Layout (integers little-endian; ``varint`` is LEB128, so small numbers take one byte)::

    magic  b"\\x89PPZ"           4 bytes (the high byte catches text-mode mangling, as in PNG)
    version                     uint16 (FORMAT_VERSION)
    header length L             uint32
    header (L bytes)            model weights sha256 (32 bytes), data digest (16), payload digest (16),
                                latent bits (1), then varints: alphabet, initial words, batch size,
                                payload words, ndim, shape..., number of batch runs, (size, count)...,
                                then dtype and likelihood name (a length byte and ASCII each)
    header digest               16 bytes, over everything before it
    payload                     the ANS coder's uint32 words

Digests are sha256, truncated to 16 bytes where they guard against corruption only. ``unpack``
raises a one-line ``PpzError`` for anything else: not a .ppz file, another version, a truncated or
corrupted header or payload. It never returns what it has not verified.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

from ppl_vae.registry import ConfigError

MAGIC = b"\x89PPZ"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<4sHI")
_DIGEST = 16
_MAX_HEADER = 1 << 20


def digest(data: bytes) -> str:
    """The corruption check of ``data``: the first 16 bytes of its sha256, as hex."""
    return hashlib.sha256(data).digest()[:_DIGEST].hex()


class PpzError(ConfigError):
    """A .ppz file that cannot be decoded (one line: what is wrong)."""


@dataclass
class Header:
    model: str
    likelihood: str
    dtype: str
    shape: Tuple[int, ...]
    latent_bits: int
    batch_size: int
    alphabet: int
    initial_words: int
    data_digest: str
    batches: list = field(default_factory=list)  # [[size, count], ...]: the batch sizes, run-length encoded
    payload_words: int = 0
    payload_digest: str = ""

    def check(self) -> "Header":
        """Itself, after a one-line error for values that cannot come from ``compress``."""
        ok = (
            len(self.shape) >= 2
            and min(self.shape) >= 0
            and 1 <= self.latent_bits <= 16
            and self.batch_size >= 1
            and self.alphabet >= 2
            and all(size >= 1 and count >= 1 for size, count in self.batches)
        )
        try:
            ok = ok and np.dtype(self.dtype).kind in "biuf"
        except TypeError:
            ok = False
        if not ok:
            raise PpzError("the .ppz header holds values out of range: the file is corrupted")
        return self


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PpzError("the .ppz header is corrupted (it ends early)")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise PpzError("the .ppz header is corrupted (a number is too long)")

    def text(self) -> str:
        try:
            return self.take(self.take(1)[0]).decode("ascii")
        except UnicodeDecodeError:
            raise PpzError("the .ppz header is corrupted (a name is not ASCII)") from None


def _text(value: str) -> bytes:
    raw = value.encode("ascii")[:255]
    return bytes([len(raw)]) + raw


def _encode_header(h: Header) -> bytes:
    body = bytes.fromhex(h.model) + bytes.fromhex(h.data_digest) + bytes.fromhex(h.payload_digest) + bytes([h.latent_bits])
    numbers: List[int] = [h.alphabet, h.initial_words, h.batch_size, h.payload_words, len(h.shape), *h.shape, len(h.batches)]
    for size, count in h.batches:
        numbers += [size, count]
    return body + b"".join(_varint(v) for v in numbers) + _text(h.dtype) + _text(h.likelihood)


def _decode_header(body: bytes) -> Header:
    r = _Reader(body)
    model, data_sha, payload_sha = r.take(32).hex(), r.take(_DIGEST).hex(), r.take(_DIGEST).hex()
    latent_bits = r.take(1)[0]
    alphabet, initial, batch_size, payload_words, ndim = (r.varint() for _ in range(5))
    if ndim > 32:
        raise PpzError("the .ppz header is corrupted (too many dimensions)")
    shape = tuple(r.varint() for _ in range(ndim))
    n_runs = r.varint()
    if n_runs > len(body):
        raise PpzError("the .ppz header is corrupted (too many batches)")
    batches = [[r.varint(), r.varint()] for _ in range(n_runs)]
    dtype, likelihood = r.text(), r.text()
    if r.pos != len(body):
        raise PpzError("the .ppz header is corrupted (bytes left over)")
    return Header(
        model, likelihood, dtype, shape, latent_bits, batch_size, alphabet, initial, data_sha, batches, payload_words, payload_sha
    ).check()


def pack(header: Header, words: np.ndarray) -> bytes:
    """The bytes of a .ppz file: ``header`` (payload length and digest filled in) and ``words``."""
    payload = np.ascontiguousarray(words, dtype="<u4").tobytes()
    header.payload_words = len(words)
    header.payload_digest = digest(payload)
    body = _encode_header(header)
    head = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(body)) + body
    return head + hashlib.sha256(head).digest()[:_DIGEST] + payload


def unpack(data: bytes) -> Tuple[Header, np.ndarray]:
    """The header and the coder's words of a .ppz file, both verified against their digests."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PpzError(f"decompression takes the bytes of a .ppz file, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _PREFIX.size or data[:4] != MAGIC:
        raise PpzError("not a .ppz file (it does not start with the .ppz magic bytes)")
    _, version, length = _PREFIX.unpack_from(data)
    if version != FORMAT_VERSION:
        raise PpzError(f"this .ppz file has format version {version}; this ppl-vae reads version {FORMAT_VERSION}")
    end = _PREFIX.size + length
    if length > _MAX_HEADER:
        raise PpzError("the .ppz header is corrupted (its length is implausible)")
    if len(data) < end + _DIGEST:
        raise PpzError(f"the .ppz file is truncated: {len(data)} bytes, but its header alone needs {end + _DIGEST}")
    if hashlib.sha256(data[:end]).digest()[:_DIGEST] != data[end : end + _DIGEST]:
        raise PpzError("the .ppz header is corrupted (its checksum does not match)")
    header = _decode_header(data[_PREFIX.size : end])
    payload = data[end + _DIGEST :]
    expected = 4 * header.payload_words
    if len(payload) < expected:
        raise PpzError(f"the .ppz file is truncated: {len(payload)} of {expected} payload bytes")
    if len(payload) > expected:
        raise PpzError(f"the .ppz file has {len(payload) - expected} bytes after its payload: it is corrupted")
    if digest(payload) != header.payload_digest:
        raise PpzError("the .ppz payload is corrupted (its checksum does not match)")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    if len(words) and words[-1] == 0:
        raise PpzError("the .ppz payload is corrupted (it ends in a zero word)")
    return header, words
