"""Dataset layouts, built here as tiny synthetic fixtures: HAM10000, MedMNIST, CIFAR, patterns, splits."""

from __future__ import annotations

import csv
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import UserError
from engine.image.data.datasets import open_dataset
from engine.image.data.preprocess import Preprocessing
from engine.image.data.safe_pickle import safe_load
from engine.image.data.splits import stratified_split

RGB16 = Preprocessing(input_size=(16, 16), channels=3)


def _png(path: Path, value: int, size=(20, 20), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(np.full(shape, value, dtype=np.uint8), mode=mode).save(path)


# -- HAM10000 -----------------------------------------------------------------------------------


def make_ham(root: Path, lesions_per_class=(6, 4, 3), images_per_lesion=(1, 3)) -> dict[str, str]:
    """metadata CSV + two image folders; returns image_id -> lesion_id."""
    rng = np.random.default_rng(0)
    rows, lesion_of = [], {}
    classes = ["bkl", "mel", "nv"]
    n = 0
    for ci, count in enumerate(lesions_per_class):
        for li in range(count):
            lesion = f"HAM_{ci}{li:05d}"
            for _ in range(int(rng.integers(images_per_lesion[0], images_per_lesion[1] + 1))):
                image_id = f"ISIC_{n:07d}"
                folder = "HAM10000_images_part_1" if n % 2 else "HAM10000_images_part_2"
                _png(root / folder / f"{image_id}.jpg", 40 * ci)  # HAM10000 ships JPEGs
                rows.append([lesion, image_id, classes[ci], "histo", "50.0", "male", "back"])
                lesion_of[image_id] = lesion
                n += 1
    with open(root / "HAM10000_metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"])
        w.writerows(rows)
    return lesion_of


def test_ham10000_split_keeps_every_lesion_on_one_side(tmp_path):
    lesion_of = make_ham(tmp_path)
    full = open_dataset(tmp_path)
    assert full.class_names == ["bkl", "mel", "nv"] and len(full) == len(lesion_of)
    assert open_dataset(tmp_path / "HAM10000_metadata.csv").class_names == full.class_names
    parts = {s: open_dataset(tmp_path, split=s, seed=3) for s in ("train", "val", "test")}
    ids = {s: {Path(p).stem for p in d.paths} for s, d in parts.items()}
    assert sum(len(v) for v in ids.values()) == len(lesion_of)
    lesions = {s: {lesion_of[i] for i in v} for s, v in ids.items()}
    assert not (lesions["train"] & lesions["test"]) and not (lesions["train"] & lesions["val"])
    assert not (lesions["val"] & lesions["test"])
    # Stratified: every class has lesions in train and test.
    for s in ("train", "test"):
        assert set(parts[s].labels.tolist()) == {0, 1, 2}
    # Seeded: the same seed gives the same split, another seed another one.
    assert {Path(p).stem for p in open_dataset(tmp_path, split="test", seed=3).paths} == ids["test"]
    assert any(
        {Path(p).stem for p in open_dataset(tmp_path, split="test", seed=s).paths} != ids["test"] for s in range(4, 9)
    )


def test_ham10000_lists_missing_images_and_refuses_bad_csv(tmp_path):
    make_ham(tmp_path, lesions_per_class=(2, 2, 2))
    with open(tmp_path / "HAM10000_metadata.csv", "a", newline="") as f:
        csv.writer(f).writerow(["HAM_9", "ISIC_9999999", "nv", "histo", "1", "f", "arm"])
    ds = open_dataset(tmp_path)
    assert any("ISIC_9999999" in who and "no image file" in why for who, why in ds.skipped)
    bad = tmp_path / "other" / "meta.csv"
    bad.parent.mkdir()
    bad.write_text("image,label\na,b\n")
    with pytest.raises(UserError, match="image_id, lesion_id, dx"):
        open_dataset(bad)


# -- MedMNIST ---------------------------------------------------------------------------------------


def make_medmnist(path: Path, size=28, rgb=False, k=4, n=(40, 12, 20), label_shape="column"):
    rng = np.random.default_rng(1)
    arrays = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        shape = (count, size, size, 3) if rgb else (count, size, size)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        labels = rng.integers(0, k, count).astype(np.uint8)
        arrays[f"{split}_labels"] = labels[:, None] if label_shape == "column" else labels
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.mark.parametrize("size,rgb", [(28, False), (64, True)])
def test_medmnist_npz_any_size_gray_or_rgb(tmp_path, size, rgb):
    arrays = make_medmnist(tmp_path / "derma.npz", size=size, rgb=rgb)
    test = open_dataset(tmp_path / "derma.npz")  # default: the test split
    assert test.split == "test" and len(test) == 20 and test.name.endswith(":test")
    assert np.array_equal(test.labels, arrays["test_labels"][:, 0])
    val = open_dataset(tmp_path / "derma.npz", split="val")
    assert np.array_equal(val.images, arrays["val_images"])
    assert len(open_dataset(tmp_path / "derma.npz", split="all")) == 72
    x = test.load_uint8(0, RGB16)  # grayscale -> RGB as the model needs
    assert x.shape == (16, 16, 3) and x.dtype == np.uint8
    if not rgb:
        assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2])


def test_medmnist_class_count_spans_all_splits(tmp_path):
    arrays = make_medmnist(tmp_path / "m.npz", k=3, label_shape="flat")
    arrays["train_labels"][0] = 6  # a class that only the training split has
    np.savez(tmp_path / "m.npz", **arrays)
    assert open_dataset(tmp_path / "m.npz").class_names == [str(i) for i in range(7)]


def test_medmnist_multilabel_and_3d_are_refused(tmp_path):
    arrays = make_medmnist(tmp_path / "chest.npz")
    arrays["test_labels"] = np.zeros((20, 14), dtype=np.uint8)
    np.savez(tmp_path / "chest.npz", **arrays)
    with pytest.raises(UserError, match="multi-label"):
        open_dataset(tmp_path / "chest.npz")
    arrays = make_medmnist(tmp_path / "organ3d.npz")
    arrays["test_images"] = np.zeros((20, 28, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "organ3d.npz", **arrays)
    with pytest.raises(UserError, match="3D volumes"):
        open_dataset(tmp_path / "organ3d.npz")


# -- CIFAR -------------------------------------------------------------------------------------------


def make_cifar(root: Path, per_batch=20, protocol=2) -> None:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [n.encode() for n in names], b"num_cases_per_batch": per_batch}
    (root / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batches_from_folder_and_archive(tmp_path, protocol):
    root = tmp_path / "cifar-10-batches-py"
    make_cifar(root, protocol=protocol)
    test = open_dataset(root)
    assert len(test) == 20 and test.class_names[0] == "airplane" and test.images.shape == (20, 32, 32, 3)
    raw = pickle.loads((root / "test_batch").read_bytes())
    # Channel-major rows become HWC images.
    assert np.array_equal(test.images[3, :, :, 1], raw[b"data"][3, 1024:2048].reshape(32, 32))
    assert open_dataset(tmp_path).name == test.name  # the parent folder works too
    train, val = open_dataset(root, split="train"), open_dataset(root, split="val")
    assert len(train) + len(val) == 100 and len(val) > 0
    assert len(open_dataset(root, split="all")) == 120
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname="cifar-10-batches-py")
    from_tar = open_dataset(archive)
    assert np.array_equal(from_tar.images, test.images) and np.array_equal(from_tar.labels, test.labels)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickles_that_would_run_code_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    root = tmp_path / "cifar"
    make_cifar(root)
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": _Evil(marker)}
    (root / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(UserError, match="refused to load 'io.open'"):
        open_dataset(root)
    assert not marker.exists()
    import os

    payload = pickle.dumps(os.system)  # a bare global is refused too
    with pytest.raises(UserError, match="refused"):
        safe_load(payload, "x")
    with pytest.raises(UserError, match="truncated or corrupt"):
        safe_load(pickle.dumps({b"a": np.arange(5)})[:-7], "x")
    assert np.array_equal(safe_load(pickle.dumps({"a": np.arange(5)}), "x")["a"], np.arange(5))


# -- flat folders, class folders, splits --------------------------------------------------------


def test_filename_pattern_labels_and_unmatched_files(tmp_path):
    for i in range(6):
        _png(tmp_path / "imgs" / f"case{i:02d}_{'benign' if i % 3 else 'malignant'}.png", i * 20)
    _png(tmp_path / "imgs" / "notes.png", 0)
    ds = open_dataset(tmp_path / "imgs", label_pattern=r"_(?P<label>[a-z]+)\.png$")
    assert ds.class_names == ["benign", "malignant"]
    assert ds.class_counts().tolist() == [4, 2]
    assert len(ds.skipped) == 1 and "notes.png" in ds.skipped[0][0]
    with pytest.raises(UserError, match="named group"):
        open_dataset(tmp_path / "imgs", label_pattern=r"_([a-z]+)")
    with pytest.raises(UserError, match="not a valid regular expression"):
        open_dataset(tmp_path / "imgs", label_pattern=r"(?P<label>[a-z")


def test_class_folders_skip_unreadable_files(tmp_path):
    from engine.image.data.loader import DecodeAhead

    for c in ("benign", "malignant"):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", 50, mode="L")
    (tmp_path / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    ds = open_dataset(tmp_path)
    batches = list(DecodeAhead(ds, RGB16, batch_size=4))
    skipped = [s for b in batches for s in b.skipped]
    assert len(skipped) == 1 and "broken.png" in skipped[0][0]
    assert sum(len(b.indices) for b in batches) == 6
    assert batches[0].x.shape[1:] == (16, 16, 3)  # grayscale files fed to an RGB model


def test_stratified_split_partitions_and_keeps_proportions():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, 1000, p=[0.7, 0.2, 0.1])
    parts = stratified_split(labels, (0.6, 0.2, 0.2), seed=1)
    allidx = np.concatenate(list(parts.values()))
    assert np.array_equal(np.sort(allidx), np.arange(1000))
    for name, frac in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        counts = np.bincount(labels[parts[name]], minlength=3)
        assert np.all(np.abs(counts - frac * np.bincount(labels)) <= 1)
    assert all(np.array_equal(parts[k], stratified_split(labels, (0.6, 0.2, 0.2), seed=1)[k]) for k in parts)
    with pytest.raises(UserError, match="summing to 1"):
        stratified_split(labels, (0.5, 0.2, 0.2))


def test_unknown_split_and_missing_dataset():
    with pytest.raises(UserError, match="unknown split"):
        open_dataset("default", split="dev")
    with pytest.raises(UserError, match="dataset not found"):
        open_dataset("/nonexistent/data")
    ds = open_dataset("default", split="test", seed=0)
    assert 0 < len(ds) < 1000 and ds.name == "default:test"


def test_pickle_via_bytesio_roundtrip_of_numpy_scalars():
    data = pickle.dumps({"s": np.int64(3), "f": np.float32(2.5)}, protocol=2)
    out = safe_load(data, "mem")
    assert out["s"] == 3 and out["f"] == 2.5
    assert isinstance(io.BytesIO(data).read(), bytes)
