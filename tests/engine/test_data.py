"""Image decoding, preprocessing and datasets."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from engine.core.errors import UserError
from engine.image.data.datasets import open_dataset
from engine.image.data.images import load_image
from engine.image.data.preprocess import Preprocessing


def test_default_dataset_is_a_stratified_held_out_split():
    ds = open_dataset("default")
    assert len(ds) == 1000 and ds.images.shape == (1000, 28, 28)
    assert np.bincount(ds.labels).tolist() == [100] * 10
    val = open_dataset("default-val")
    assert len(val) == 500 and np.bincount(val.labels).tolist() == [50] * 10
    # No image is in both splits.
    seen = {img.tobytes() for img in ds.images}
    assert not any(img.tobytes() in seen for img in val.images)


def test_folder_dataset_and_unreadable_files_are_skipped(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_text("not an image")
    ds = open_dataset(tmp_path)
    assert ds.class_names == ["cat", "dog"] and len(ds) == 7
    prep = Preprocessing(input_size=(8, 8), channels=3)
    batches = list(ds.batches(prep, 4))
    assert sum(len(b[1]) for b in batches) == 6
    assert len(ds.skipped) == 1 and "broken.png" in ds.skipped[0][0]
    assert batches[0][0].shape == (4, 8, 8, 3) and batches[0][0].dtype == np.float32


def test_empty_folder_and_missing_path_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no class subfolders"):
        open_dataset(tmp_path)
    with pytest.raises(UserError, match="not found"):
        open_dataset(tmp_path / "missing")


def test_preprocessing_normalises_like_the_formula():
    prep = Preprocessing(input_size=(2, 2), channels=1, scale="unit", mean=(0.5,), std=(0.25,))
    img = Image.fromarray(np.array([[0, 255], [51, 102]], np.uint8))
    x = prep(img)
    expected = (np.array([[0, 255], [51, 102]], np.float32)[..., None] / 255.0 - 0.5) / 0.25
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    sym = Preprocessing(input_size=(2, 2), channels=1, scale="symmetric")
    np.testing.assert_allclose(sym(img)[0, 1, 0], 1.0)


def test_shorter_side_crop_keeps_the_centre():
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 255  # a white centre square
    prep = Preprocessing(
        input_size=(20, 20), channels=3, resize="shorter_side_crop", crop_fraction=1.0, interpolation="nearest"
    )
    out = prep.image_to_uint8(Image.fromarray(arr))
    assert out.shape == (20, 20, 3) and out.min() == 255


@pytest.mark.parametrize(
    "make,mode",
    [
        (lambda p: Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16) * 200).save(p), "L"),
        (lambda p: Image.new("P", (8, 8), 3).save(p), "RGB"),
        (lambda p: Image.new("RGBA", (8, 8), (10, 20, 30, 255)).save(p), "RGB"),
    ],
)
def test_unusual_but_valid_images_decode(tmp_path, make, mode):
    p = tmp_path / "x.png"
    make(p)
    img = load_image(p)
    assert img.mode == mode


def test_sixteen_bit_range_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "g16.png"
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(p)
    arr = np.asarray(load_image(p))
    assert arr.min() == 0 and arr.max() == 255


@pytest.mark.parametrize(
    "content,message",
    [(b"", "empty file"), (b"hello, I am text", "not an image"), (None, "truncated or corrupt")],
)
def test_bad_images_are_user_errors(tmp_path, content, message):
    p = tmp_path / "bad.png"
    if content is None:
        Image.new("RGB", (64, 64), (1, 2, 3)).save(p)
        p.write_bytes(p.read_bytes()[:60])
    else:
        p.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_image(p)
