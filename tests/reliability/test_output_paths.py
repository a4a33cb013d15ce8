"""`--out` never destroys what the app didn't write (issue 20, first item).

Each case builds the user's files itself: a folder holding a document and a subfolder, the
current folder, the folder holding the input model, a regular file, the input bundle itself.
Every refusal is one line naming the path, exit 1, and every user file is still there, byte
for byte. A folder this app wrote is replaced only with --overwrite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.core.fileio import MARKER, OutputExists, check_output_dir
from engine.core.paths import DEFAULT_LM_DIR, DEFAULT_MODEL_DIR


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([*argv])
    out, err = capsys.readouterr()
    return rc, out, err


def user_folder(root: Path) -> tuple[Path, dict[Path, bytes]]:
    """A folder as a user has one: a document and a subfolder with a photo."""
    folder = root / "photos ü"
    (folder / "2024").mkdir(parents=True)
    files = {folder / "thesis.docx": b"PK\x03\x04 my thesis", folder / "2024" / "beach.jpg": b"\xff\xd8\xff jpeg"}
    for path, data in files.items():
        path.write_bytes(data)
    return folder, files


def assert_untouched(files: dict[Path, bytes]) -> None:
    for path, data in files.items():
        assert path.read_bytes() == data, path


def assert_one_line(err: str, path: Path, phrase: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(path) in lines[0] and phrase in lines[0], lines[0]


def copy_default(root: Path) -> Path:
    model = root / "models" / "my model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    return model


QUANTIZE = ("quantize", "--model", "default", "--recipe", "int8")


def test_quantize_refuses_a_folder_of_user_files(tmp_path, capsys):
    folder, files = user_folder(tmp_path)
    rc, out, err = run(capsys, *QUANTIZE, "--out", str(folder))
    assert rc == 1 and out == ""
    assert_one_line(err, folder, "holds files this app did not write (2024/, thesis.docx)")
    assert_untouched(files)
    assert sorted(p.name for p in folder.iterdir()) == ["2024", "thesis.docx"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no hidden sibling left behind"


def test_quantize_refuses_the_current_folder(tmp_path, capsys, monkeypatch):
    folder, files = user_folder(tmp_path)
    monkeypatch.chdir(folder)
    rc, _, err = run(capsys, *QUANTIZE, "--out", ".")
    assert rc == 1
    assert_one_line(err, folder.resolve(), "is the current folder")
    assert_untouched(files)


def test_quantize_refuses_the_folder_holding_its_input(tmp_path, capsys):
    model = copy_default(tmp_path)
    marker = model.parent / "notes.txt"
    marker.write_text("mine")
    before = {p: p.read_bytes() for p in model.parent.rglob("*") if p.is_file()}
    rc, _, err = run(capsys, "quantize", "--model", str(model), "--recipe", "int8", "--out", str(model.parent))
    assert rc == 1
    assert_one_line(err, model.parent, "holds the input (my model)")
    assert_untouched(before)


def test_quantize_refuses_its_own_input(tmp_path, capsys):
    model = copy_default(tmp_path)
    before = {p: p.read_bytes() for p in model.iterdir()}
    rc, _, err = run(capsys, "quantize", "--model", str(model), "--recipe", "int8", "--out", str(model), "--overwrite")
    assert rc == 1
    assert_one_line(err, model, "is the input model")
    assert_untouched(before)


def test_quantize_refuses_a_regular_file(tmp_path, capsys):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF-1.7 user file")
    rc, _, err = run(capsys, *QUANTIZE, "--out", str(target))
    assert rc == 1
    assert_one_line(err, target, "is a file, not a folder")
    assert target.read_bytes() == b"%PDF-1.7 user file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.pdf"]


def test_an_app_folder_is_replaced_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "variant"
    assert run(capsys, *QUANTIZE, "--out", str(out))[0] == 0
    assert (out / MARKER).is_file()
    first = (out / "model.safetensors").read_bytes()
    rc, _, err = run(capsys, "quantize", "--model", "default", "--recipe", "int4", "--out", str(out))
    assert rc == 1
    assert_one_line(err, out, "pass --overwrite to replace it")
    assert (out / "model.safetensors").read_bytes() == first
    rc, _, err = run(capsys, "quantize", "--model", "default", "--recipe", "int4", "--out", str(out), "--overwrite")
    assert rc == 0, err
    assert (out / "model.safetensors").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["variant"], "nothing moved aside is left"


def test_an_empty_folder_is_filled(tmp_path, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert run(capsys, *QUANTIZE, "--out", str(out))[0] == 0
    assert (out / "config.json").is_file()


def test_import_refuses_the_folder_holding_the_checkpoint(tmp_path, capsys):
    from tests.reliability import corpus

    folder, files = user_folder(tmp_path)
    ckpt = folder / "weights.safetensors"
    shutil.copy(corpus.default_weights_path(), ckpt)
    files[ckpt] = ckpt.read_bytes()
    rc, _, err = run(capsys, "import", "--arch", "resnet18", "--weights", str(ckpt), "--out", str(folder))
    assert rc == 1
    assert_one_line(err, folder, "holds the input (weights.safetensors)")
    assert_untouched(files)


def test_sweep_refuses_a_folder_of_user_files(tmp_path, capsys):
    folder, files = user_folder(tmp_path)
    rc, _, err = run(capsys, "sweep", "--model", "default", "--recipes", "fp32", "--out", str(folder), "--limit", "8")
    assert rc == 1
    assert_one_line(err, folder, "holds files this app did not write")
    assert_untouched(files)
    assert sorted(p.name for p in folder.iterdir()) == ["2024", "thesis.docx"]


def test_language_model_quantize_refuses_a_folder_of_user_files(tmp_path, capsys):
    folder, files = user_folder(tmp_path)
    rc, _, err = run(capsys, "quantize", "--model", str(DEFAULT_LM_DIR), "--recipe", "int4", "--out", str(folder))
    assert rc == 1
    assert_one_line(err, folder, "holds files this app did not write")
    assert_untouched(files)


def test_a_bundle_from_before_the_marker_counts_as_the_apps(tmp_path):
    old = copy_default(tmp_path)
    assert sorted(p.name for p in old.iterdir()) == ["config.json", "model.safetensors"]
    with pytest.raises(OutputExists):
        check_output_dir(old)
    assert check_output_dir(old, overwrite=True) == old.resolve()
    (old / "extra.txt").write_text("a user's file makes it the user's")
    with pytest.raises(Exception, match="did not write"):
        check_output_dir(old, overwrite=True)
