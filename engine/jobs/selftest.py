"""A self-test for installs and frozen app bundles: is MLX loadable, and does the model answer right?

``SelfTestJob`` loads the shipped default model, classifies the shipped sample
digits in one batch and checks every answer against the digit in the file
name. It also finds the libmlx the process actually loaded and, on macOS, the
``mlx.metallib`` beside it: MLX looks for its Metal kernels next to the loaded
library, so a bundle that puts them elsewhere fails with "Failed to load the
default metallib" on first GPU use.
"""

from __future__ import annotations

import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import engine
from engine.core import paths

SAMPLE_NAME = re.compile(r"digit_(\d+)\.png$")
METALLIB = "mlx.metallib"


def loaded_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (Linux and macOS; [] elsewhere)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
                found = {line.split(None, 5)[5].strip() for line in f if len(line.split(None, 5)) == 6}
        except OSError:
            return []
        return sorted(p for p in found if p.startswith("/"))
    if sys.platform == "darwin":
        import ctypes

        dyld = ctypes.CDLL("/usr/lib/libSystem.B.dylib")
        dyld._dyld_image_count.restype = ctypes.c_uint32
        dyld._dyld_get_image_name.restype = ctypes.c_char_p
        dyld._dyld_get_image_name.argtypes = [ctypes.c_uint32]
        names = (dyld._dyld_get_image_name(i) for i in range(dyld._dyld_image_count()))
        return [n.decode("utf-8", "replace") for n in names if n]
    return []


def loaded_libmlx() -> Path | None:
    """The libmlx shared library MLX runs on (``import mlx.core`` first)."""
    for lib in loaded_libraries():
        name = Path(lib).name
        if name.startswith("libmlx.") or name == "libmlx.so":
            return Path(lib)
    return None


def colocated_metallib(libmlx: Path) -> Path | None:
    """The metallib MLX would load for ``libmlx``: beside it, or in a Resources folder beside it."""
    for candidate in (libmlx.parent / METALLIB, libmlx.parent / "Resources" / METALLIB):
        if candidate.is_file():  # follows symbolic links, as Metal does
            return candidate
    return None


@dataclass(frozen=True)
class RuntimeInfo:
    app_version: str
    mlx_version: str
    device: str
    python: str
    platform: str
    frozen: bool
    libmlx: str | None
    metallib: str | None
    needs_metallib: bool
    problem: str | None  # what makes this install unable to run MLX, if anything


def runtime_info(needs_metallib: bool | None = None) -> RuntimeInfo:
    """Where MLX was loaded from and whether its Metal kernels sit where it will look for them."""
    import mlx.core as mx

    device = mx.default_device()
    device_name = getattr(device.type, "name", str(device))
    libmlx = loaded_libmlx()
    metallib = colocated_metallib(libmlx) if libmlx else None
    if needs_metallib is None:
        needs_metallib = sys.platform == "darwin"
    problem = None
    if needs_metallib and libmlx is None:
        problem = "cannot tell which libmlx this process loaded"
    elif needs_metallib and metallib is None:
        problem = f"{METALLIB} is not next to the loaded {libmlx}; Metal kernels would fail to load"
    return RuntimeInfo(
        app_version=engine.__version__,
        mlx_version=mx.__version__,
        device=device_name,
        python=platform.python_version(),
        platform=platform.platform(),
        frozen=bool(getattr(sys, "frozen", False)),
        libmlx=str(libmlx) if libmlx else None,
        metallib=str(metallib) if metallib else None,
        needs_metallib=needs_metallib,
        problem=problem,
    )


@dataclass(frozen=True)
class SampleResult:
    file: str
    expected: str
    predicted: str
    probability: float

    @property
    def correct(self) -> bool:
        return self.expected == self.predicted


@dataclass(frozen=True)
class SelfTestReport:
    runtime: RuntimeInfo
    model: str = ""
    params: int = 0
    load_seconds: float = 0.0
    predict_seconds: float = 0.0
    samples: tuple[SampleResult, ...] = ()
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.runtime.problem is None
            and bool(self.samples)
            and all(s.correct for s in self.samples)
        )

    def lines(self) -> list[str]:
        """The human-readable report, one fact a line."""
        rt = self.runtime
        out = [
            f"MLX Quant Studio {rt.app_version} self-test ({'frozen bundle' if rt.frozen else 'source'}, "
            f"Python {rt.python}, {rt.platform})",
            f"MLX {rt.mlx_version} on {rt.device}; libmlx: {rt.libmlx or 'not found'}",
        ]
        if rt.needs_metallib or rt.metallib:
            out.append(f"metallib: {rt.metallib or 'MISSING next to libmlx'}")
        if rt.problem:
            out.append(f"PROBLEM: {rt.problem}")
        if self.model:
            out.append(f"default model {self.model} ({self.params:,} parameters) loaded in {self.load_seconds:.3f} s")
        for s in self.samples:
            mark = "ok" if s.correct else f"WRONG, expected {s.expected}"
            out.append(f"  {s.file} -> {s.predicted} ({100 * s.probability:.1f}%) {mark}")
        if self.samples:
            n, good = len(self.samples), sum(s.correct for s in self.samples)
            out.append(
                f"{good}/{n} samples correct; one batch of {n} in {1000 * self.predict_seconds:.1f} ms "
                f"({1000 * self.predict_seconds / n:.2f} ms/image, decode included)"
            )
        if self.error:
            out.append(f"ERROR: {self.error}")
        out.append("selftest passed" if self.passed else "selftest FAILED")
        return out


def default_samples() -> tuple[str, ...]:
    return tuple(str(p) for p in sorted(paths.SAMPLES_DIR.glob("digit_*.png")))


@dataclass(frozen=True)
class SelfTestJob:
    """Load the default model and classify the sample digits; failures land in the report."""

    device: str | None = None  # "cpu" or "gpu"; None keeps MLX's default
    samples: tuple[str, ...] = ()
    title: str = "Self-test"

    def run(self, ctx, ws) -> SelfTestReport:
        import mlx.core as mx

        from engine.image.model_card import model_card
        from engine.jobs.image import PredictJob

        if self.device:
            mx.set_default_device(mx.cpu if self.device == "cpu" else mx.gpu)
        runtime = runtime_info()
        samples = self.samples or default_samples()
        try:
            ctx.progress(0.0, "loading the default model")
            ws.forget(paths.DEFAULT_MODEL_DIR)  # time a real load, not the app's cached copy
            t0 = time.perf_counter()
            bundle = ws.bundle(paths.DEFAULT_MODEL_DIR)
            params = model_card(bundle).params
            load_s = time.perf_counter() - t0
            ctx.check()
            ctx.progress(0.5, f"classifying {len(samples)} sample images")
            t1 = time.perf_counter()
            outcome = PredictJob((str(paths.DEFAULT_MODEL_DIR),), samples, None, 1).run(ctx, ws)
            predict_s = time.perf_counter() - t1
        except Exception as exc:  # the report says what broke; the caller decides the exit code
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return SelfTestReport(runtime, error=f"{type(exc).__name__}: {first}")
        results = []
        for path, preds in zip(outcome.inputs, outcome.predictions, strict=True):
            top = preds[0][0]
            m = SAMPLE_NAME.search(Path(path).name)
            results.append(SampleResult(Path(path).name, m.group(1) if m else "?", top.label, top.probability))
        ctx.progress(1.0, "self-test done")
        return SelfTestReport(runtime, bundle.name, params, load_s, predict_s, tuple(results))
