"""Bounded fuzzing (hypothesis) of the importers and dataset readers: random bytes and
mutated valid files either load or raise UserError, never another exception, never hang.

Each target runs a handful of examples with a deadline; the whole file takes a few seconds.
"""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.errors import UserError
from tests.reliability import corpus

FUZZ = settings(
    max_examples=12,
    deadline=3000,
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def mutate(data: bytes, cut: float, flips: list[tuple[float, int]]) -> bytes:
    """Truncate to a fraction of the file and overwrite a few bytes at relative positions."""
    out = bytearray(data[: max(1, int(len(data) * cut))])
    for where, value in flips:
        out[min(len(out) - 1, int(where * len(out)))] = value
    return bytes(out)


mutations = st.tuples(
    st.floats(0.0, 1.0),
    st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
)
random_bytes = st.binary(min_size=0, max_size=2048)


def loads_or_user_error(fn, path: Path) -> None:
    try:
        fn(path)
    except UserError as exc:
        assert "\n" not in str(exc).strip(), str(exc)


def _write(folder: Path, name: str, data: bytes) -> Path:
    p = folder / name
    p.write_bytes(data)
    return p


# -- valid seeds -----------------------------------------------------------------------------


def _npz_state_dict() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, **{"conv1.weight": rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "fc.bias": np.zeros(3)})
    return buf.getvalue()


def _pth_state_dict() -> bytes:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"conv1.weight": torch.zeros(4, 1, 3, 3), "fc.bias": torch.ones(3)}, buf)
    return buf.getvalue()


def _onnx_model() -> bytes:
    pytest.importorskip("onnx")
    from tests.gui.test_models_import import tiny_onnx

    with tempfile.TemporaryDirectory() as d:
        return tiny_onnx(Path(d) / "m.onnx").read_bytes()


def _npz_dataset() -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, images=rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), labels=np.array([0, 1, 2, 0, 1, 2]))
    return buf.getvalue()


def _import(arch: str | None):
    from engine.image.importers.dispatch import import_file

    return lambda p: import_file(p, arch=arch)


def _open_dataset(p: Path):
    from engine.image.data.datasets import open_dataset

    ds = open_dataset(p, split="all")
    if ds.paths is None:
        assert ds.images.dtype == np.uint8 and len(ds.images) == len(ds.labels)


SEEDS = {
    ".safetensors": (lambda: corpus.default_weights_path().read_bytes(), _import("small_cnn")),
    ".npz": (_npz_state_dict, _import("small_cnn")),
    ".pth": (_pth_state_dict, _import("small_cnn")),
    ".onnx": (_onnx_model, _import(None)),
}


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_mutated_checkpoints(suffix):
    seed_bytes, load = SEEDS[suffix][0](), SEEDS[suffix][1]
    with tempfile.TemporaryDirectory() as d:

        @FUZZ
        @given(mutations)
        def run(m):
            loads_or_user_error(load, _write(Path(d), f"model{suffix}", mutate(seed_bytes, *m)))

        run()


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pth", ".onnx", ".keras", ".h5"])
def test_random_bytes_into_importers(suffix):
    if suffix in (".pth",):
        pytest.importorskip("torch")
    arch = "small_cnn" if suffix in (".safetensors", ".npz", ".pth") else None
    with tempfile.TemporaryDirectory() as d:

        @FUZZ
        @given(random_bytes)
        def run(data):
            loads_or_user_error(_import(arch), _write(Path(d), f"model{suffix}", data))

        run()


def test_mutated_npz_dataset():
    seed_bytes = _npz_dataset()
    with tempfile.TemporaryDirectory() as d:

        @FUZZ
        @given(mutations)
        def run(m):
            loads_or_user_error(_open_dataset, _write(Path(d), "data.npz", mutate(seed_bytes, *m)))

        run()


def test_random_ham10000_csv():
    header = b"lesion_id,image_id,dx\n"
    with tempfile.TemporaryDirectory() as d:

        @FUZZ
        @given(st.binary(max_size=400), st.text(max_size=200))
        def run(data, text):
            loads_or_user_error(_open_dataset, _write(Path(d), "meta.csv", header + data + text.encode("utf-8")))

        run()


def test_mutated_cifar_batch():
    rng = np.random.default_rng(0)
    batch = pickle.dumps(
        {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2
    )
    meta = pickle.dumps({b"label_names": [b"a", b"b", b"c", b"d"]}, protocol=2)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d) / "cifar-10-batches-py"
        folder.mkdir()
        (folder / "batches.meta").write_bytes(meta)

        @FUZZ
        @given(mutations)
        def run(m):
            (folder / "test_batch").write_bytes(mutate(batch, *m))
            loads_or_user_error(_open_dataset, folder)

        run()


def test_random_files_in_a_class_folder_dataset():
    """Junk named like images in class folders: listed as skipped while iterating, never raised."""
    from engine.image.data.datasets import open_dataset
    from engine.image.data.preprocess import Preprocessing

    prep = Preprocessing(input_size=(8, 8), channels=1)
    with tempfile.TemporaryDirectory() as d:
        root = corpus.class_folders(Path(d) / "ds", {"a": 1, "b": 1})

        @FUZZ
        @given(random_bytes)
        def run(data):
            (root / "b" / "junk.png").write_bytes(data)
            ds = open_dataset(root, split="all")
            seen = sum(len(y) for _, y, _ in ds.batches(prep, 4))
            assert seen + len(ds.skipped) == 3

        run()
