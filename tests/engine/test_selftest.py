"""The self-test job: it passes on the shipped model and fails when an answer or MLX's files are wrong."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from engine.core import paths
from engine.jobs.selftest import METALLIB, SelfTestJob, colocated_metallib, loaded_libmlx, runtime_info
from engine.runtime import JobContext, Workspace


def test_selftest_classifies_every_shipped_sample():
    report = SelfTestJob().run(JobContext(), Workspace())
    assert report.passed, report.lines()
    names = sorted(s.file for s in report.samples)
    assert names == sorted(p.name for p in paths.SAMPLES_DIR.glob("digit_*.png")) and len(names) == 10
    assert report.model == "default-small-cnn" and report.params == 95_274
    assert report.lines()[-1] == "selftest passed"


def test_selftest_fails_when_a_sample_is_misclassified(tmp_path):
    # A "3" filed under the name of an 8: the label check must catch it.
    wrong = tmp_path / "digit_8.png"
    shutil.copy(paths.SAMPLES_DIR / "digit_3.png", wrong)
    report = SelfTestJob(samples=(str(paths.SAMPLES_DIR / "digit_1.png"), str(wrong))).run(JobContext(), Workspace())
    assert not report.passed
    bad = [s for s in report.samples if not s.correct]
    assert [(s.file, s.expected, s.predicted) for s in bad] == [("digit_8.png", "8", "3")]
    assert any("WRONG, expected 8" in line for line in report.lines())
    assert report.lines()[-1] == "selftest FAILED"


def test_selftest_reports_an_unreadable_sample_instead_of_raising(tmp_path):
    broken = tmp_path / "digit_4.png"
    broken.write_bytes(b"not a png")
    report = SelfTestJob(samples=(str(broken),)).run(JobContext(), Workspace())
    assert not report.passed and report.error and "digit_4.png" in report.error


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reference path is Linux's wheel layout")
def test_finds_the_libmlx_this_process_loaded():
    import mlx.core as mx

    lib = loaded_libmlx()
    assert lib is not None
    assert lib.resolve() == (Path(mx.__file__).parent / "lib" / "libmlx.so").resolve()


def test_metallib_must_sit_beside_the_loaded_libmlx(tmp_path):
    lib_dir = tmp_path / "mlx" / "lib"
    lib_dir.mkdir(parents=True)
    (lib_dir / "libmlx.dylib").write_bytes(b"")
    (lib_dir / METALLIB).write_bytes(b"kernels")
    assert colocated_metallib(lib_dir / "libmlx.dylib") == lib_dir / METALLIB
    # The frozen app's top-level link to libmlx needs its own link to the metallib.
    (tmp_path / "libmlx.dylib").symlink_to("mlx/lib/libmlx.dylib")
    assert colocated_metallib(tmp_path / "libmlx.dylib") is None
    (tmp_path / METALLIB).symlink_to("mlx/lib/" + METALLIB)
    assert colocated_metallib(tmp_path / "libmlx.dylib") == tmp_path / METALLIB
    # A dangling link does not count.
    (lib_dir / METALLIB).unlink()
    assert colocated_metallib(tmp_path / "libmlx.dylib") is None


def test_runtime_info_names_a_missing_metallib_as_the_problem():
    info = runtime_info(needs_metallib=True)
    if info.metallib is None:
        assert info.problem and METALLIB in info.problem
    else:  # an install that has its Metal kernels in place
        assert info.problem is None
    assert runtime_info(needs_metallib=False).problem is None
