"""Hostile files and failing disks through the command line: one line naming the path, exit 1,
nothing of the user's touched, and a bounded peak RSS where a file asks for a huge allocation.

Sizes a file states (input_size, class counts, tensor shapes, zip members) pass a budget before
anything is allocated; OS failures (read-only target, full disk, a file where a folder should be)
come out in words. Peak RSS is measured in a fresh interpreter with resource.getrusage.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.paths import DEFAULT_MODEL_DIR, SAMPLES_DIR
from tests.reliability import hostile

SAMPLE = sorted(SAMPLES_DIR.glob("*.png"))[0]
# The CLI with MLX, numpy and PIL loaded, predicting with the small default model, peaks near 50 MB:
# any allocation a hostile file asks for (the 512 MiB zip member, a 24 GB input) would cross this.
RSS_BOUND = 200 * hostile.MiB
# Loading a language model imports mlx-lm and transformers (and torch where installed): about 260 MB.
LM_RSS_BOUND = 400 * hostile.MiB


def one_line(lines: list[str] | str, path: Path | str, *phrases: str) -> str:
    lines = lines.strip().splitlines() if isinstance(lines, str) else lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    assert str(path) in lines[0], lines[0]
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


# -- sizes stated by files ------------------------------------------------------------------------


def test_huge_input_size_in_a_bundle_config_is_one_line_not_an_allocation(corpus_dir):
    bundle = hostile.bundle_with_config(corpus_dir, input_size=[100000, 100000])
    before = hostile.tree_snapshot(bundle)
    rc, out, err, peak = hostile.run_measured("predict", "--model", str(bundle), str(SAMPLE))
    assert rc == 1 and out == ""
    one_line(err, bundle / "config.json", "input_size", "16,384")
    assert peak < RSS_BOUND, peak
    assert hostile.tree_snapshot(bundle) == before


def test_input_size_beyond_available_memory_meets_the_memory_guard(corpus_dir, capsys, monkeypatch):
    """Plausible per side (12000x12000) but more than this machine has: the guard says so, in numbers."""
    bundle = hostile.bundle_with_config(corpus_dir, input_size=[12000, 12000])
    monkeypatch.setenv("MQS_MEMORY_GUARD", "1")
    monkeypatch.setattr("engine.core.budgets.available_memory_bytes", lambda: 2 * 1024**3)
    rc = main(["predict", "--model", str(bundle), str(SAMPLE)])
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, bundle / "config.json", "12000x12000x1 input", "of memory but only 2.0 GB")


@pytest.mark.parametrize("count", ["100000000000000000000", "1000001"])
def test_huge_class_count_is_one_line_not_an_overflow(count, corpus_dir, capsys):
    out_dir = corpus_dir / "imported"
    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    rc = main(
        ["import", "--arch", "small_cnn", "--weights", str(weights), "--num-classes", count, "--out", str(out_dir)]
    )
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, weights, "the class count is", "between 1 and 1,000,000")
    assert not out_dir.exists()


def test_zip_bomb_keras_is_refused_before_inflating(corpus_dir):
    bomb = hostile.zip_bomb_keras(corpus_dir)
    assert bomb.stat().st_size < 4 * hostile.MiB
    out_dir = corpus_dir / "bundle"
    rc, out, err, peak = hostile.run_measured("import", "--weights", str(bomb), "--out", str(out_dir))
    assert rc == 1
    one_line(err, bomb, "model.weights.h5", "512.0 MB", "zip bomb")
    assert peak < RSS_BOUND, peak  # the 512 MiB member was never read
    assert not out_dir.exists()
    assert sorted(p.name for p in corpus_dir.iterdir()) == ["bomb.keras"]


def test_keras_archive_without_weights_names_what_is_missing(corpus_dir, capsys):
    path = hostile.keras_without_weights(corpus_dir)
    rc = main(["import", "--weights", str(path), "--out", str(corpus_dir / "b")])
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, path, "no model.weights.h5")


SAFETENSORS = {
    # An 8-byte header length of 2^40 (the shape of the 44-byte GGUF crash, in safetensors).
    "header_length_2_40": (dict(claimed=2**40), "header claims 1024.0 GB but the file holds"),
    "offsets_past_the_end": (
        dict(header={"head.bias": {"dtype": "F32", "shape": [10], "data_offsets": [0, 4000]}}),
        "lies at bytes 0..4000 but the data section holds 16",
    ),
    "shape_overflows": (
        dict(header={"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 16]}}),
        "claims about 10^37 elements",
    ),
    "shape_disagrees_with_bytes": (
        dict(header={"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}),
        "needs 12 bytes but is given 16",
    ),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS))
def test_hostile_safetensors_header_is_one_line_before_mlx_reads_it(case, corpus_dir):
    spec, phrase = SAFETENSORS[case]
    weights = hostile.safetensors_with_header(corpus_dir, f"{case}.safetensors", **spec)
    bundle = hostile.bundle_with_weights(corpus_dir, weights)
    rc, out, err, peak = hostile.run_measured("info", "--model", str(bundle))
    assert rc == 1, err  # not 139 (a segfault) nor a MemoryError
    one_line(err, bundle / "model.safetensors", phrase)
    assert peak < RSS_BOUND


def test_safetensors_gate_accepts_what_safetensors_writes(corpus_dir):
    """The producer's own writer (safetensors.numpy) with mixed dtypes passes the gate and reads back."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    from engine.core.native_gate import check_safetensors

    tensors = {
        "a": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones((4,), dtype=np.float16),
        "c": np.zeros((2, 2, 2), dtype=np.int64),
        "empty": np.zeros((0, 5), dtype=np.float32),
    }
    p = corpus_dir / "mixed.safetensors"
    save_file(tensors, str(p), metadata={"format": "np"})
    assert check_safetensors(p) == sum(t.nbytes for t in tensors.values())
    assert {k: v.tolist() for k, v in load_file(str(p)).items()} == {k: v.tolist() for k, v in tensors.items()}


# -- OS-level failures --------------------------------------------------------------------------


def _quantize(out: Path) -> list[str]:
    return ["quantize", "--model", "default", "--recipe", "int8", "--out", str(out)]


def test_read_only_target_is_one_line_in_words(tmp_path, capsys, monkeypatch):
    """A read-only tmpfs when this runs as root; otherwise the same errno injected at mkdir."""
    mount = tmp_path / "read-only disk"
    with hostile.tmpfs(mount, read_only=True) as mounted:
        if not mounted:
            real_mkdir = Path.mkdir

            def read_only_mkdir(self, *a, **kw):
                if self.is_relative_to(mount):
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
                return real_mkdir(self, *a, **kw)

            monkeypatch.setattr(Path, "mkdir", read_only_mkdir)
        before = hostile.tree_snapshot(DEFAULT_MODEL_DIR)
        rc = main(_quantize(mount / "q"))
        _, err = capsys.readouterr()
        assert rc == 1
        one_line(err, mount / "q", "the file system is read-only while writing")
        assert not (mount / "q").exists() and not any(p.name.startswith(".q.") for p in mount.iterdir())
    assert hostile.tree_snapshot(DEFAULT_MODEL_DIR) == before


def test_full_disk_names_the_file_being_written(tmp_path):
    """A real 64 KiB tmpfs (root only): MLX's '[write] Unable to write N bytes' becomes words and a path."""
    mount = tmp_path / "small disk"
    with hostile.tmpfs(mount, size="64k") as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root; test_injected_enospc covers the message")
        keep = mount / "thesis.docx"
        keep.write_bytes(b"the user's own file")
        rc, out, err, _ = hostile.run_measured(*_quantize(mount / "q"))
        assert rc == 1, err
        one_line(err, mount / "q" / "model.safetensors", "no space left on device while writing")
        assert [p.name for p in mount.iterdir()] == ["thesis.docx"] and keep.read_bytes() == b"the user's own file"


def test_injected_enospc_is_one_line_and_leaves_nothing(corpus_dir, capsys, monkeypatch):
    import mlx.core as mx

    def full_disk(path, arrays, metadata=None):
        Path(path).write_bytes(b"\0" * 100)  # a partial file, as a full disk leaves it
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(mx, "save_safetensors", full_disk)
    keep = corpus_dir / "notes.txt"
    keep.write_text("mine")
    rc = main(_quantize(corpus_dir / "q"))
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, corpus_dir / "q" / "model.safetensors", "no space left on device while writing")
    assert sorted(p.name for p in corpus_dir.iterdir()) == ["notes.txt"] and keep.read_text() == "mine"


def test_mlx_write_failure_without_errno_is_named(corpus_dir, capsys, monkeypatch):
    import mlx.core as mx

    def failed_write(path, arrays, metadata=None):
        raise RuntimeError("[write] Unable to write 20629 bytes to file.")

    monkeypatch.setattr(mx, "save_safetensors", failed_write)
    rc = main(_quantize(corpus_dir / "q"))
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, corpus_dir / "q", "while writing")
    assert "20629" not in err and list(corpus_dir.iterdir()) == []


def test_a_file_used_as_a_parent_folder(corpus_dir, capsys):
    blocker = corpus_dir / "report.pdf"
    blocker.write_bytes(b"%PDF-1.7 the user's report")
    rc = main(_quantize(blocker / "sub" / "q"))
    _, err = capsys.readouterr()
    assert rc == 1
    one_line(err, blocker, "a file stands where a folder is needed")
    assert blocker.read_bytes() == b"%PDF-1.7 the user's report"


def test_results_database_disk_error_is_named():
    import sqlite3

    from engine.core.oserrors import as_user_error

    msg = str(as_user_error(sqlite3.OperationalError("disk I/O error"), "/data/results.sqlite3"))
    assert "\n" not in msg and "input/output error" in msg and "results database /data/results.sqlite3" in msg
    full = str(as_user_error(sqlite3.OperationalError("database or disk is full"), "/data/results.sqlite3"))
    assert full.startswith("no space left on device while writing the results database")
    assert as_user_error(sqlite3.OperationalError("no such table: runs")) is None  # a bug stays a bug


def test_safetensors_gate_accepts_every_dtype_mlx_writes(corpus_dir):
    import mlx.core as mx

    from engine.core.native_gate import check_safetensors

    dtypes = (mx.bfloat16, mx.float16, mx.float32, mx.uint32, mx.int8, mx.uint8, mx.int64, mx.bool_, mx.complex64)
    arrays = {str(d): mx.ones((3, 5), dtype=d) for d in dtypes}
    p = corpus_dir / "mlx.safetensors"
    mx.save_safetensors(str(p), arrays, metadata={"format": "mlx"})
    assert check_safetensors(p) == sum(a.nbytes for a in arrays.values())
    assert sorted(mx.load(str(p))) == sorted(arrays)


def test_language_model_folder_with_a_hostile_header_is_one_line(corpus_dir):
    import shutil

    from engine.core.paths import DEFAULT_LM_DIR

    folder = corpus_dir / "lm"
    shutil.copytree(DEFAULT_LM_DIR, folder)
    weights = folder / "model.safetensors"
    hostile.safetensors_with_header(folder, "model.safetensors", claimed=2**40)
    rc, out, err, peak = hostile.run_measured("info", "--model", str(folder))
    assert rc == 1, err
    one_line(err, weights, "header claims 1024.0 GB")
    assert peak < LM_RSS_BOUND, peak
