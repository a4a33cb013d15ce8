"""The bad-input corpus through the command line: exit 1, one line naming the file, no traceback.

Every file lives under a folder whose name has a space and non-ASCII letters. Most cases
run ``engine.cli.main`` in-process (fast); the pickle payload and a bomb also go through a
real ``main.py`` subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.image.data.images import load_image
from tests.reliability import corpus

ROOT = Path(__file__).resolve().parents[2]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_naming(err: str, path: Path, phrase: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert str(path) in lines[0], lines[0]
    assert phrase in lines[0], lines[0]


def no_tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp" in p.name]


@pytest.mark.parametrize("case", sorted(corpus.BAD_IMAGES))
def test_bad_image_predict(case, corpus_dir, capsys):
    make, phrase = corpus.BAD_IMAGES[case]
    path = make(corpus_dir)
    rc, out, err = run_main(capsys, "predict", "--model", "default", str(path))
    assert rc == 1 and out == ""
    assert_one_line_naming(err, path, phrase)


@pytest.mark.parametrize("case", sorted(corpus.UNUSUAL_IMAGES))
def test_unusual_image_is_predicted_like_the_plain_one(case, corpus_dir, capsys):
    plain = corpus.digit_png(corpus_dir / "plain.png")
    path = corpus.UNUSUAL_IMAGES[case](corpus_dir)
    rc, out, err = run_main(capsys, "predict", "--model", "default", "--json", str(plain), str(path))
    assert rc == 0, err
    import json

    preds = json.loads(out)["predictions"]
    assert preds[1]["input"] == str(path)
    top_plain, top_odd = preds[0]["top_k"][0], preds[1]["top_k"][0]
    assert top_odd["label"] == top_plain["label"] == "1"
    assert abs(top_odd["probability"] - top_plain["probability"]) < 0.02


@pytest.mark.parametrize(
    "case, tolerance",
    [("png16", 0), ("palette_png", 0), ("rgba_png", 0), ("cmyk_jpeg", 3), ("exif_rotated_jpeg", 3)],
)
def test_unusual_image_decodes_to_the_display_pixels(case, tolerance, corpus_dir):
    """Independent reference: the digit array every file was made from (EXIF rotation applied)."""
    img = load_image(corpus.UNUSUAL_IMAGES[case](corpus_dir))
    assert img.size == (28, 28)
    grey = np.asarray(img.convert("L"), dtype=np.int16)
    diff = np.abs(grey - corpus.DIGIT.astype(np.int16))
    # JPEG smears the bar's edges a little; the bulk must match and the bar must be upright.
    assert np.percentile(diff, 95) <= tolerance, np.percentile(diff, 95)
    assert grey[4:24, 12:16].mean() > 200 and grey[12:16, 4:10].mean() < 50


def test_exif_rotation_is_applied_not_ignored(corpus_dir):
    """Without honouring orientation 6 the bar would lie horizontally."""
    from PIL import Image

    path = corpus.exif_rotated_jpeg(corpus_dir)
    with Image.open(path) as raw:
        stored = np.asarray(raw.convert("L"), dtype=np.int16)
    assert stored[12:16, 4:24].mean() > 200  # stored sideways
    shown = np.asarray(load_image(path).convert("L"), dtype=np.int16)
    assert shown[4:24, 12:16].mean() > 200  # displayed upright


CHECKPOINTS = {
    "truncated_safetensors": (corpus.truncated_safetensors, ("--arch", "small_cnn"), "truncated or corrupt"),
    "empty_safetensors": (corpus.empty_safetensors, ("--arch", "small_cnn"), "empty"),
    "garbage_safetensors": (corpus.garbage_safetensors, ("--arch", "small_cnn"), "corrupt"),
    "wrong_architecture": (lambda d: corpus.default_weights_path(), ("--arch", "resnet18"), "do not fit"),
    "class_count_mismatch": (lambda d: corpus.default_weights_path(), ("--arch", "small_cnn", "--num-classes", "5"),
                             "wrong shape head"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_bad_checkpoint_import(case, corpus_dir, capsys):
    make, extra, phrase = CHECKPOINTS[case]
    path = make(corpus_dir)
    out_dir = corpus_dir / "bundle ü"
    rc, out, err = run_main(capsys, "import", "--weights", str(path), *extra, "--out", str(out_dir))
    assert rc == 1
    assert_one_line_naming(err, path, phrase)
    assert not out_dir.exists()
    assert no_tmp_leftovers(corpus_dir) == []


def test_good_import_and_predict_through_odd_paths(corpus_dir, capsys):
    out_dir = corpus_dir / "bundle ü 数据"
    rc, out, err = run_main(
        capsys, "import", "--arch", "small_cnn", "--weights", str(corpus.default_weights_path()), "--out", str(out_dir)
    )
    assert rc == 0, err
    image = corpus.digit_png(corpus_dir / "chiffre un é.png")
    rc, out, err = run_main(capsys, "predict", "--model", str(out_dir), str(image))
    assert rc == 0, err
    assert out.startswith(f"{image}: 1 ")


def test_bundle_with_truncated_weights(corpus_dir, capsys):
    import shutil

    bundle = corpus_dir / "kaputt ü"
    shutil.copytree(corpus.default_weights_path().parent, bundle)
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    rc, out, err = run_main(capsys, "info", "--model", str(bundle))
    assert rc == 1
    assert_one_line_naming(err, weights, "truncated or corrupt")


def test_bundle_with_empty_config(corpus_dir, capsys):
    import shutil

    bundle = corpus_dir / "leer ü"
    shutil.copytree(corpus.default_weights_path().parent, bundle)
    (bundle / "config.json").write_bytes(b"")
    rc, out, err = run_main(capsys, "info", "--model", str(bundle))
    assert rc == 1
    assert_one_line_naming(err, bundle / "config.json", "not valid JSON")


def test_dataset_with_an_empty_class(corpus_dir, capsys):
    data = corpus.class_folders(corpus_dir / "données", {str(i): (0 if i == 7 else 1) for i in range(10)})
    rc, out, err = run_main(capsys, "evaluate", "--model", "default", "--data", str(data))
    assert rc == 1
    assert_one_line_naming(err, data / "7", "holds no images")


def test_dataset_class_count_mismatch(corpus_dir, capsys):
    data = corpus.class_folders(corpus_dir / "drei klassen", {"a": 1, "b": 1, "c": 1})
    rc, out, err = run_main(capsys, "evaluate", "--model", "default", "--data", str(data))
    assert rc == 1
    assert_one_line_naming(err, Path("drei klassen"), "has 10 classes")
    assert "has 3" in err


def test_empty_npz_and_empty_dataset_folder(corpus_dir, capsys):
    empty_npz = corpus_dir / "leer.npz"
    empty_npz.write_bytes(b"")
    rc, out, err = run_main(capsys, "evaluate", "--model", "default", "--data", str(empty_npz))
    assert rc == 1
    assert_one_line_naming(err, empty_npz, "npz")
    folder = corpus_dir / "nichts"
    folder.mkdir()
    rc, out, err = run_main(capsys, "evaluate", "--model", "default", "--data", str(folder))
    assert rc == 1
    assert_one_line_naming(err, folder, "no class subfolders")


def test_unreadable_file_in_a_dataset_is_skipped_and_listed(corpus_dir, capsys):
    data = corpus.class_folders(corpus_dir / "zehn", {str(i): 1 for i in range(10)})
    bad = corpus.text_named_png(data / "3")
    rc, out, err = run_main(capsys, "evaluate", "--model", "default", "--data", str(data))
    assert rc == 0, err
    assert str(bad) in out + err and "Traceback" not in err


def _subprocess(*argv: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MQS_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *argv], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )


@pytest.mark.parametrize("maker", ["pickle_payload_pth", "pickle_payload_torch_zip"])
def test_pickle_payload_never_executes(maker, corpus_dir, tmp_path):
    pytest.importorskip("torch")
    sentinel = tmp_path / "payload-ran"
    path = getattr(corpus, maker)(corpus_dir, sentinel)
    # test_payload_is_live shows a plain unpickle of the same file would create the sentinel.
    out_dir = corpus_dir / "bundle"
    r = _subprocess(
        "import", "--arch", "small_cnn", "--weights", str(path), "--out", str(out_dir), data_dir=tmp_path / "data"
    )
    assert r.returncode == 1
    assert not sentinel.exists(), "the pickle payload ran"
    assert_one_line_naming(r.stderr, path, "refused to unpickle")
    assert not out_dir.exists()


def test_payload_is_live(corpus_dir, tmp_path):
    """The corpus' payload really executes under a plain unpickler, so the test above can fail."""
    import pickle

    sentinel = tmp_path / "payload-ran"
    pickle.loads(corpus.pickle_payload_pth(corpus_dir, sentinel).read_bytes())
    assert sentinel.exists()


def test_bomb_through_a_real_process(corpus_dir, tmp_path):
    path = corpus.bomb_png(corpus_dir)
    r = _subprocess("predict", "--model", "default", str(path), data_dir=tmp_path / "data")
    assert r.returncode == 1
    assert_one_line_naming(r.stderr, path, "large")
