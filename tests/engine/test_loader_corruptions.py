"""The decode-ahead loader (overlap, order, skips, cancel, errors) and the corruptions."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from engine.core.errors import Cancelled, UserError
from engine.image.data.corruptions import (
    CORRUPTION_NAMES,
    PARAMETERS,
    Corruption,
    blur_sigma,
    parse_corruptions,
    parse_severities,
)
from engine.image.data.datasets import open_dataset
from engine.image.data.loader import DecodeAhead
from engine.image.data.preprocess import Preprocessing
from tests.evaluation_helpers import image_folder

PREP = Preprocessing(input_size=(16, 16), channels=3, mean=(0.5,), std=(0.25,))


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "decode-ahead"]


def test_decode_ahead_yields_the_synchronous_batches(tmp_path):
    ds = open_dataset(image_folder(tmp_path, per_class=5))
    ahead = list(DecodeAhead(ds, PREP, batch_size=4, prefetch=2))
    sync = list(DecodeAhead(ds, PREP, batch_size=4, prefetch=0))
    assert [b.end for b in ahead] == [4, 8, 12, 15]
    for a, s in zip(ahead, sync, strict=True):
        assert np.array_equal(a.x, s.x) and np.array_equal(a.indices, s.indices)
    # Each row is the file decoded and normalised on its own.
    ref = PREP.normalize(np.stack([PREP.image_to_uint8(Image.open(ds.paths[i]).convert("RGB")) for i in range(4)]))
    assert np.allclose(ahead[0].x, ref)
    assert not _decode_threads()


def test_decoding_overlaps_the_consumer(tmp_path):
    ds = open_dataset(image_folder(tmp_path, per_class=4))
    second_batch_decoding = threading.Event()

    def transform(img, index):
        if index >= 4:
            second_batch_decoding.set()
        return img

    loader = DecodeAhead(ds, PREP, batch_size=4, transform=transform, prefetch=1)
    for i, _batch in enumerate(loader):
        if i == 0:
            # While this consumer holds batch 0, the background thread decodes batch 1.
            assert second_batch_decoding.wait(timeout=10)
    assert not _decode_threads()


def test_cancel_stops_the_thread_and_errors_propagate(tmp_path):
    ds = open_dataset(image_folder(tmp_path, per_class=6))
    seen = []
    with pytest.raises(Cancelled):
        for b in DecodeAhead(ds, PREP, batch_size=2, prefetch=2, should_stop=lambda: len(seen) >= 2):
            seen.append(b)
    assert len(seen) == 2 and not _decode_threads()

    def broken(img, index):
        if index == 5:
            raise RuntimeError("decoder bug")
        return img

    with pytest.raises(RuntimeError, match="decoder bug"):
        list(DecodeAhead(ds, PREP, batch_size=2, transform=broken))
    assert not _decode_threads()
    # Leaving early (break) also stops the thread.
    for _ in DecodeAhead(ds, PREP, batch_size=2, prefetch=3):
        break
    assert not _decode_threads()
    with pytest.raises(UserError, match="batch size"):
        DecodeAhead(ds, PREP, batch_size=0)


def test_worker_pool_gives_the_same_batches(tmp_path):
    ds = open_dataset(image_folder(tmp_path, per_class=5))
    one = list(DecodeAhead(ds, PREP, batch_size=6, workers=1))
    three = list(DecodeAhead(ds, PREP, batch_size=6, workers=3))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(one, three, strict=True))


def test_loader_and_corruptions_never_import_mlx():
    code = (
        "import sys, engine.image.data.loader, engine.image.data.corruptions, engine.image.data.sources;"
        "print(any(m == 'mlx' or m.startswith('mlx.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- corruptions ---------------------------------------------------------------------------------------


def _natural(h=32, w=32, c=3, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 4.0) * np.cos(yy / 5.0)
    img = np.stack([base + rng.normal(0, 5, (h, w)) for _ in range(c)], axis=-1)
    return img.clip(0, 255).astype(np.uint8)


def test_corruptions_are_seeded_and_grow_with_severity():
    img = _natural()
    for name in CORRUPTION_NAMES:
        errors = []
        for sev in (1, 3, 5):
            c = Corruption(name, sev, seed=4)
            out = c(img, 7)
            assert out.shape == img.shape and out.dtype == np.uint8
            assert np.array_equal(out, Corruption(name, sev, seed=4)(img, 7))
            errors.append(np.abs(out.astype(float) - img).mean())
        assert errors[0] < errors[1] < errors[2], name
    noise = Corruption("gaussian_noise", 2, seed=4)
    assert not np.array_equal(noise(img, 1), noise(img, 2))
    assert not np.array_equal(noise(img, 1), Corruption("gaussian_noise", 2, seed=5)(img, 1))


def test_noise_statistics_and_hand_computed_corruptions():
    flat = np.full((64, 64, 1), 128, np.uint8)
    out = Corruption("noise", 1)(flat, 0).astype(float)
    assert np.std(out) == pytest.approx(0.08 * 255, rel=0.08)
    img = _natural(c=1)
    x = img.astype(np.float32) / 255
    expected = np.clip(((x - x.mean()) * 0.2 + x.mean()) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(Corruption("contrast", 3)(img, 0), expected)
    expected = np.clip((x + 0.3) * 255 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(Corruption("brightness", 3)(img, 0), expected)
    gray_rgb = np.full((4, 4, 3), 100, np.uint8)  # HSV value of a gray pixel is its level
    assert np.abs(Corruption("brightness", 2)(gray_rgb, 0).astype(int) - (100 + 51)).max() <= 1


def test_jpeg_and_blur_match_independent_references():
    img = _natural()
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=PARAMETERS["jpeg_compression"][2])
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    assert np.array_equal(Corruption("jpeg", 3)(img, 0), ref)
    for sev in (1, 5):
        sigma = blur_sigma(32, sev)
        ref = gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)
        out = Corruption("blur", sev)(img, 0)
        assert np.abs(out.astype(int) - np.clip(ref + 0.5, 0, 255).astype(int)).max() <= 1


def test_corruption_names_and_severities_parse():
    assert parse_corruptions("noise, jpeg") == ("gaussian_noise", "jpeg_compression")
    assert parse_corruptions("all") == CORRUPTION_NAMES
    assert parse_severities("5,1,3") == (1, 3, 5)
    with pytest.raises(UserError, match="unknown corruption 'fog'"):
        parse_corruptions("fog")
    with pytest.raises(UserError, match="1..5"):
        parse_severities("0,6")
    with pytest.raises(UserError, match="1..5"):
        Corruption("contrast", 9)
