"""Pure-Python header checks in front of native parsers (MLX's safetensors reader, zip + h5py, PIL).

A native reader trusts the sizes a file states: a safetensors header length of 2^40, a zip member
that inflates a thousandfold, an image header claiming 64 M 16-bit pixels. These checks read the
header with the standard library only, compare every stated size with the file's real size and
with a memory budget (:mod:`engine.core.budgets`), and raise one-line :class:`UserError` naming the file
before any native call sees it. (GGUF has its own gate in ``engine.llm``.)
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

from engine.core.budgets import check_bytes, check_tensor_shape
from engine.core.errors import UserError
from engine.core.memory_guard import human

# The safetensors format caps its JSON header at 100 MB.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
# A zip member may inflate at most this much (weights compress ~1.1x; a bomb ~1000x).
MAX_ZIP_RATIO = 100
ZIP_RATIO_FLOOR = 1024 * 1024  # members below 1 MiB are never bombs worth refusing
# Decoded bytes per pixel of PIL modes (what img.load() allocates).
PIL_MODE_BYTES = {
    "1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "La": 2, "RGB": 3, "YCbCr": 3, "LAB": 3, "HSV": 3,
    "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4,
    "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2,
}  # fmt: skip
# Turning 16-bit/32-bit pixels into 8-bit works through a copy and a uint8 result besides PIL's own.
_WIDE_MODE_OVERHEAD = 2.0


def check_safetensors(path: str | Path) -> int:
    """Check a .safetensors file's header against its size; returns the bytes its tensors hold.

    Raises:
        UserError: a header length or tensor offsets beyond the file, a header that is not JSON,
            unknown dtypes, or shapes that disagree with their byte ranges.
    """
    path = Path(path)
    size = path.stat().st_size
    if size < 8:
        raise UserError("weights file is empty or truncated (under 8 bytes)", path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n == 0 or n > size - 8:
            raise UserError(
                f"safetensors header claims {human(n)} but the file holds {human(size)}: truncated or corrupt", path
            )
        if n > MAX_SAFETENSORS_HEADER:
            raise UserError(f"safetensors header is {human(n)}, over the format's 100 MB limit", path)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError("safetensors header is not valid JSON: truncated or corrupt", path) from None
    if not isinstance(header, dict):
        raise UserError("safetensors header is not a JSON object: corrupt", path)
    data_len = size - 8 - n
    total = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
            raise UserError(f"safetensors entry '{name}' has no shape: corrupt", path)
        itemsize = SAFETENSORS_ITEMSIZE.get(info.get("dtype"))
        if itemsize is None:
            raise UserError(f"tensor '{name}' has an unknown dtype {info.get('dtype')!r}", path)
        nbytes = check_tensor_shape(name, info["shape"], itemsize, path)
        offsets = info.get("data_offsets")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
            raise UserError(f"tensor '{name}' has no valid data_offsets: corrupt", path)
        begin, end = offsets
        if not 0 <= begin <= end <= data_len:
            raise UserError(
                f"tensor '{name}' lies at bytes {begin}..{end} but the data section holds {data_len}: truncated or corrupt",
                path,
            )
        if end - begin != nbytes and info.get("dtype") != "F4":
            raise UserError(
                f"tensor '{name}' {info['shape']} {info['dtype']} needs {nbytes} bytes but is given {end - begin}",
                path,
            )
        total += end - begin
    return total


def check_zip_member(archive: zipfile.ZipFile, member: str, where: str | Path, factor: float = 1.0) -> int:
    """Check one member's stated size and compression ratio before it is read; returns its size.

    Raises:
        UserError: the member is missing, inflates implausibly (a zip bomb) or does not fit in memory.
    """
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise UserError(f"the archive has no '{member}'", where) from None
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > ZIP_RATIO_FLOOR and ratio > MAX_ZIP_RATIO:
        raise UserError(
            f"'{member}' would inflate from {human(info.compress_size)} to {human(info.file_size)} "
            f"({ratio:.0f}x): refused as a zip bomb",
            where,
        )
    check_bytes(info.file_size, f"'{member}' ({human(info.file_size)} unpacked)", where, factor)
    return info.file_size


def read_zip_member(archive: zipfile.ZipFile, member: str, where: str | Path, factor: float = 1.0) -> bytes:
    """The member's bytes, read in pieces and never past the size the gate accepted."""
    limit = check_zip_member(archive, member, where, factor)
    parts, read = [], 0
    with archive.open(member) as f:
        while chunk := f.read(1024 * 1024):
            read += len(chunk)
            if read > limit:
                raise UserError(f"'{member}' inflates past the size its header states: corrupt", where)
            parts.append(chunk)
    return b"".join(parts)


def decoded_image_bytes(size: tuple[int, int], mode: str) -> int:
    """Bytes PIL allocates to decode an image of ``size`` in ``mode``, plus the 8-bit conversion."""
    w, h = size
    per_pixel = PIL_MODE_BYTES.get(mode, 4)
    overhead = _WIDE_MODE_OVERHEAD if mode.startswith(("I", "F")) else 1.0
    return int(w * h * per_pixel * overhead)


def check_image_header(size: tuple[int, int], mode: str, where: str | Path, max_pixels: int) -> None:
    """Dimensions x channels x bit depth from an image's header, before the pixels are decoded.

    Raises:
        UserError: over ``max_pixels`` or more decoded bytes than the memory available now.
    """
    w, h = size
    if w <= 0 or h <= 0:
        raise UserError(f"image header states {w}x{h} pixels: corrupt", where)
    if w * h > max_pixels:
        raise UserError(f"image is {w}x{h} pixels, over the {max_pixels:,}-pixel limit", where)
    check_bytes(decoded_image_bytes(size, mode), f"decoding this {w}x{h} {mode} image", where)


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_UNDEFINED = {2**32 - 1, 2**64 - 1}


def check_hdf5(data: bytes | Path, where: str | Path) -> None:
    """Find the HDF5 superblock and check the end-of-file address it states against the real size.

    ``data`` is the file (a path) or its bytes (a .keras member). h5py's C library follows the
    addresses a superblock states; a truncated or forged file is refused here first.

    Raises:
        UserError: no HDF5 signature, or a superblock that claims more bytes than there are.
    """
    if isinstance(data, Path):
        size = data.stat().st_size
        with open(data, "rb") as f:
            head = f.read(4096 + 64)
    else:
        size, head = len(data), bytes(data[: 4096 + 64])
    base = next((o for o in (0, 512, 1024, 2048, 4096) if head[o : o + 8] == HDF5_SIGNATURE), None)
    if base is None:
        raise UserError("not an HDF5 file (no HDF5 signature)", where)
    version = head[base + 8] if len(head) > base + 8 else None
    if version in (0, 1):
        offsets_size = head[base + 13] if len(head) > base + 13 else 0
        start = base + 24 + (4 if version == 1 else 0)
        fields = 3  # base address, free-space address, end-of-file address
    elif version in (2, 3):
        offsets_size = head[base + 9] if len(head) > base + 9 else 0
        start = base + 12
        fields = 3  # base address, superblock extension address, end-of-file address
    else:
        raise UserError(f"HDF5 superblock version {version} is not one h5py writes: corrupt", where)
    if offsets_size not in (2, 4, 8) or len(head) < start + fields * offsets_size:
        raise UserError("HDF5 superblock is truncated or corrupt", where)
    values = [
        int.from_bytes(head[start + i * offsets_size : start + (i + 1) * offsets_size], "little") for i in range(fields)
    ]
    base_address, eof = values[0], values[2]
    if eof not in _UNDEFINED and base_address not in _UNDEFINED and base_address + eof > size:
        raise UserError(
            f"HDF5 superblock says the file ends at byte {base_address + eof:,} but it holds {size:,}: truncated",
            where,
        )


# protobuf cannot parse a message over 2 GiB; larger ONNX models keep weights as external data.
ONNX_MAX_BYTES = 2**31 - 1
# onnx.load holds the parsed model; shape inference makes a second copy; then the MLX weights.
ONNX_FACTOR = 3.3


def check_onnx(path: Path) -> None:
    """An ONNX file's size against protobuf's limit and the memory budget, before onnx parses it."""
    size = path.stat().st_size
    if size > ONNX_MAX_BYTES:
        raise UserError(f"ONNX file is {human(size)}, over protobuf's 2 GB limit for one model file", path)
    check_bytes(size, f"importing this {human(size)} ONNX model", path, ONNX_FACTOR)
