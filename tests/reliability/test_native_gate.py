"""The pure-Python header gates against files their producers wrote (h5py, zipfile, PIL, onnx).

Each gate must pass every well-formed file the producer writes and refuse the damaged ones the
way the producer's own reader would, before that native reader runs.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from engine.cli import main
from engine.core.errors import UserError
from engine.core.native_gate import check_hdf5, check_image_header, check_onnx, decoded_image_bytes, read_zip_member

h5py = pytest.importorskip("h5py")


@pytest.mark.parametrize("libver", ["earliest", "v110", "latest"])  # superblock versions 0, 2/3
def test_hdf5_gate_passes_what_h5py_writes_and_refuses_what_h5py_cannot_open(libver, corpus_dir):
    p = corpus_dir / f"{libver}.h5"
    with h5py.File(p, "w", libver=(libver, "latest")) as f:
        f["dense/kernel"] = np.arange(20000, dtype=np.float32).reshape(100, 200)
        f.attrs["model_config"] = "{}"
    check_hdf5(p, p)
    check_hdf5(p.read_bytes(), p)
    data = p.read_bytes()
    for cut in (len(data) // 2, len(data) - 1):
        t = corpus_dir / "truncated.h5"
        t.write_bytes(data[:cut])
        with pytest.raises(OSError):
            h5py.File(t, "r").close()  # the producer's reader refuses it too
        with pytest.raises(UserError, match=f"ends at byte {len(data):,} but it holds {cut:,}: truncated"):
            check_hdf5(t, t)


def test_hdf5_gate_refuses_a_file_without_the_signature(corpus_dir):
    p = corpus_dir / "weights.h5"
    p.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(UserError, match="no HDF5 signature"):
        check_hdf5(p, p)


def test_truncated_h5_import_is_one_line(corpus_dir, capsys):
    p = corpus_dir / "model.h5"
    with h5py.File(p, "w") as f:
        f["w"] = np.zeros((256, 256), dtype=np.float32)
    p.write_bytes(p.read_bytes()[:50_000])
    rc = main(["import", "--weights", str(p), "--out", str(corpus_dir / "b")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and str(p) in err[0] and "truncated" in err[0], err


def test_zip_member_reads_what_zipfile_wrote_and_refuses_a_bomb(corpus_dir):
    p = corpus_dir / "a.zip"
    payload = np.random.default_rng(0).integers(0, 255, 300_000, dtype=np.uint8).tobytes()
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("weights.bin", payload)
        z.writestr("zeros.bin", bytes(64 * 1024 * 1024))
    with zipfile.ZipFile(p) as z:
        assert read_zip_member(z, "weights.bin", p) == payload
        with pytest.raises(UserError, match=r"'zeros.bin' would inflate from .* \(\d+x\): refused as a zip bomb"):
            read_zip_member(z, "zeros.bin", p)
        with pytest.raises(UserError, match="the archive has no 'missing.h5'"):
            read_zip_member(z, "missing.h5", p)


def test_zip_member_over_the_memory_budget(corpus_dir, monkeypatch):
    p = corpus_dir / "b.zip"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("weights.bin", bytes(2 * 1024 * 1024))
    monkeypatch.setenv("MQS_MEMORY_GUARD", "1")
    monkeypatch.setattr("engine.core.budgets.available_memory_bytes", lambda: 1024 * 1024)
    with zipfile.ZipFile(p) as z, pytest.raises(UserError, match="needs about 2.0 MB of memory but only 1.0 MB"):
        read_zip_member(z, "weights.bin", p)


@pytest.mark.parametrize(
    "mode, dtype, channels",
    [("L", np.uint8, None), ("RGB", np.uint8, 3), ("RGBA", np.uint8, 4), ("I;16", np.uint16, None)],
)
def test_image_gate_predicts_what_pil_allocates(mode, dtype, channels, corpus_dir):
    """The decoded size from the header matches the array PIL decodes (16-bit: plus the 8-bit conversion)."""
    from PIL import Image

    shape = (300, 400) if channels is None else (300, 400, channels)
    arr = np.zeros(shape, dtype=dtype)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    with Image.open(io.BytesIO(buf.getvalue())) as img:
        assert img.mode == mode and img.size == (400, 300)
        predicted = decoded_image_bytes(img.size, img.mode)
        decoded = np.asarray(img).nbytes
    assert predicted == decoded * (2 if mode == "I;16" else 1)
    check_image_header((400, 300), mode, "x.png", max_pixels=120_000)
    with pytest.raises(UserError, match="image is 400x300 pixels, over the 119,999-pixel limit"):
        check_image_header((400, 300), mode, "x.png", max_pixels=119_999)


def test_onnx_gate_reads_the_size_only(corpus_dir, monkeypatch):
    p = corpus_dir / "m.onnx"
    p.write_bytes(bytes(3 * 1024 * 1024))
    check_onnx(p)
    monkeypatch.setenv("MQS_MEMORY_GUARD", "1")
    monkeypatch.setattr("engine.core.budgets.available_memory_bytes", lambda: 4 * 1024 * 1024)
    with pytest.raises(UserError, match="importing this 3.0 MB ONNX model needs about 9.9 MB"):
        check_onnx(p)


@pytest.mark.parametrize("shape", [(7, 5), (1500, 1900)])
def test_wide_images_scale_to_8_bits_as_the_numpy_reference(shape):
    """The banded conversion equals the whole-array float64 formula it replaced, bit for bit."""
    from PIL import Image

    from engine.image.data.images import _to_8bit_rgb_or_l

    rng = np.random.default_rng(0)
    for img in (
        Image.fromarray(rng.integers(300, 60000, shape, dtype=np.uint16)),
        Image.fromarray(rng.random(shape).astype(np.float32)),
    ):
        a = np.asarray(img, dtype=np.float64)
        reference = ((a - a.min()) / (a.max() - a.min()) * 255.0).round().astype(np.uint8)
        out = _to_8bit_rgb_or_l(img)
        assert out.mode == "L" and np.array_equal(np.asarray(out), reference)
