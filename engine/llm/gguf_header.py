"""A pure-Python check of a GGUF file's header before any native or memmapping parser sees it.

Native GGUF readers trust the lengths in the header: a 44-byte file whose first key claims
2**40 bytes crashes them. This walks the header (magic, version, tensor and key/value
counts, every string and array length, every tensor's dims, type and data range) against
the file's size and raises a one-line UserError naming the file at the first thing that
does not fit. It reads the header through ``mmap``, so a large file is not read into memory.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import UserError

MAGIC = b"GGUF"
# GGUF value types -> struct format of a scalar (8 = string, 9 = array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_MAX_DIMS = 4
_MAX_NESTING = 4


@dataclass(frozen=True)
class GGUFHeader:
    """What the check learned: version, counts and where the tensor data starts."""

    version: int
    tensor_count: int
    kv_count: int
    data_offset: int
    file_size: int


class _Bad(Exception):
    pass


class _Cursor:
    def __init__(self, buf, size: int):
        self.buf, self.size, self.pos = buf, size, 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Bad(
                f"{what} ({n:,} bytes at offset {self.pos:,}) runs past the end of the file ({self.size:,} bytes)"
            )

    def scalar(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += n
        return v

    def string(self, what: str) -> bytes:
        n = self.scalar("Q", f"the length of {what}")
        self.need(n, f"{what}")
        s = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return s

    def value(self, vtype: int, what: str, depth: int = 0):
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype], what)
        if vtype == 8:
            return self.string(what)
        if vtype == 9:
            if depth >= _MAX_NESTING:
                raise _Bad(f"{what} nests arrays deeper than {_MAX_NESTING}")
            sub = self.scalar("I", f"the item type of {what}")
            count = self.scalar("Q", f"the length of {what}")
            least = struct.calcsize(_SCALARS[sub]) if sub in _SCALARS else 8 if sub in (8, 9) else None
            if least is None:
                raise _Bad(f"{what} has items of unknown type {sub}")
            self.need(count * least, f"{what} of {count:,} items")
            if sub in _SCALARS:
                self.pos += count * least
                return None
            for i in range(count):
                self.value(sub, f"item {i} of {what}", depth + 1)
            return None
        raise _Bad(f"{what} has unknown value type {vtype}")


def check_gguf_header(path: str | Path) -> GGUFHeader:
    """Validate the header of a GGUF file against its size.

    Raises:
        UserError: not a GGUF file, an unsupported version, or any count, length, tensor
            type or tensor data range that does not fit the file (one line, naming the file).
    """
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            if size < 24:
                raise UserError(f"not a GGUF file: only {size} bytes", p)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _walk(_Cursor(buf, size), GGML_QUANT_SIZES, GGMLQuantizationType)
    except _Bad as exc:
        raise UserError(f"corrupt GGUF header: {exc}", p) from None
    except OSError as exc:
        raise UserError(f"cannot read the file ({exc.strerror or exc})", p) from None


def _walk(cur: _Cursor, sizes, types) -> GGUFHeader:
    if bytes(cur.buf[0:4]) != MAGIC:
        raise _Bad(f"the file does not start with 'GGUF' (it starts with {bytes(cur.buf[0:4])!r})")
    cur.pos = 4
    version = cur.scalar("I", "the version")
    if version not in (2, 3):
        raise _Bad(f"GGUF version {version} is not supported (2 and 3 are)")
    n_tensors = cur.scalar("Q", "the tensor count")
    n_kv = cur.scalar("Q", "the key/value count")
    cur.need(n_kv * 12, f"{n_kv:,} key/value pairs")  # a key length and a value type each, at least
    alignment = 32
    for i in range(n_kv):
        key = cur.string(f"key {i}")
        what = f"the value of '{key.decode('utf-8', 'replace')}'"
        value = cur.value(cur.scalar("I", f"the type of {what}"), what)
        if key == b"general.alignment" and isinstance(value, int):
            if value <= 0 or value & (value - 1):
                raise _Bad(f"general.alignment {value} is not a power of two")
            alignment = value
    cur.need(n_tensors * 24, f"{n_tensors:,} tensor infos")
    infos = []
    for i in range(n_tensors):
        name = cur.string(f"the name of tensor {i}").decode("utf-8", "replace")
        n_dims = cur.scalar("I", f"the dimension count of '{name}'")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise _Bad(f"tensor '{name}' has {n_dims} dimensions")
        dims = [cur.scalar("Q", f"the dimensions of '{name}'") for _ in range(n_dims)]
        raw_type = cur.scalar("I", f"the type of '{name}'")
        offset = cur.scalar("Q", f"the data offset of '{name}'")
        try:
            block, type_size = sizes[types(raw_type)]
        except (ValueError, KeyError):
            raise _Bad(f"tensor '{name}' has unknown type {raw_type}") from None
        count = 1
        for d in dims:
            count *= d
        if count == 0 or dims[0] % block:
            raise _Bad(f"tensor '{name}' has shape {dims} that does not fit its type")
        infos.append((name, offset, count // block * type_size))
    data_offset = -(-cur.pos // alignment) * alignment
    for name, offset, nbytes in infos:
        if data_offset + offset + nbytes > cur.size:
            raise _Bad(
                f"tensor '{name}' ({nbytes:,} bytes at {data_offset + offset:,}) runs past the end of the file "
                f"({cur.size:,} bytes)"
            )
    return GGUFHeader(version, n_tensors, n_kv, data_offset, cur.size)
