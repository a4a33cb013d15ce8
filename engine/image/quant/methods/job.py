"""The calibrated branch of QuantizeJob: calibration images, memory guard, then the method.

Kept here so that the job itself has one call site for every method but RTN.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.memory_guard import check_memory
from engine.image.quant.calibration import DEFAULT_CALIBRATION, load_calibration
from engine.image.quant.methods.run import (
    MethodReport,
    MethodSettings,
    check_method,
    memory_estimate,
    quantize_with_method,
)
from engine.image.quant.recipes import Recipe


@dataclass(frozen=True)
class CalibratedQuantization:
    qconfig: dict
    report: MethodReport

    def source_fields(self) -> dict:
        """What the bundle's ``source`` records about the method."""
        r = self.report
        return {"method": r.method, "calibration": r.calib_name, "calibration_size": r.calib_size}

    def metrics(self) -> dict[str, float]:
        r = self.report
        return {"quantization_seconds": r.seconds, "quantization_peak_memory_bytes": float(r.peak_memory_bytes)}

    def settings(self) -> dict:
        return self.report.to_dict()


def quantize_calibrated(
    work,
    source,
    recipe: Recipe,
    method: str,
    calib: str | None,
    calib_size: int,
    ctx,
    settings: MethodSettings | None = None,
) -> CalibratedQuantization:
    """Quantize ``work.model`` (a fresh float copy of ``source``) with a calibrated method.

    Args:
        work: the bundle whose model is quantized in place.
        source: the float bundle (its preprocessing prepares the calibration images).
        recipe: the storage plan.
        method: a calibrated method of METHODS.
        calib: any folder or .npz of images (labels optional) or a dataset name; None: the
            default validation split.
        calib_size: how many calibration images (a seeded random subset).
        ctx: the job context (progress, cancellation).
        settings: method settings (defaults when None).

    Raises:
        UserError: unknown method, unreadable calibration data, not enough memory.
        Cancelled: the job was cancelled.
    """
    check_method(method)
    data = calib or DEFAULT_CALIBRATION
    ctx.progress(0.0, f"loading calibration images ({data}, {calib_size})")
    images = load_calibration(source, data, limit=calib_size, should_stop=ctx.should_stop)
    check_memory(memory_estimate(work.model, images.x), 1.0, f"quantize with {method}", source.path)
    ctx.check()
    qconfig, report = quantize_with_method(
        work.model,
        recipe,
        method,
        images.x,
        images.name,
        settings,
        ctx.scaled(0.05, 0.9),
        ctx.should_stop,
        source.input_shape(),
    )
    return CalibratedQuantization(qconfig, report)
