"""The full-integer simulation as a job: calibrate on any images, score float vs simulated int8, per-tensor report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.core.errors import UserError
from engine.image.quant.calibration import DEFAULT_CALIBRATION, load_calibration
from engine.image.quant.intsim import (
    FullIntModel,
    IntCalibration,
    IntSimSettings,
    LayerError,
    calibrate_fullint,
    float_model,
    layer_errors,
    logits,
)
from engine.runtime import JobContext, Workspace


@dataclass(frozen=True)
class IntSimOutcome:
    """Float (BatchNorm folded) against the simulated full-integer model on the evaluation images.

    ``accuracy`` fields are None when the evaluation images carry no labels matching the model.
    """

    settings: IntSimSettings
    calibration: IntCalibration
    n_images: int
    float_accuracy: float | None
    int_accuracy: float | None
    agreement: float
    mean_logit_error: float
    max_logit_error: float
    layers: tuple[LayerError, ...]


@dataclass(frozen=True)
class IntSimJob:
    model: str
    data: str = "default"
    calib_data: str = DEFAULT_CALIBRATION
    settings: IntSimSettings = field(default_factory=IntSimSettings)
    limit: int | None = None
    report_images: int = 32
    batch_size: int = 32
    title: str = "Full-integer simulation"

    def run(self, ctx: JobContext, ws: Workspace) -> IntSimOutcome:
        self.settings.validate()
        bundle = ws.bundle(self.model)
        if bundle.quantization:
            raise UserError(
                f"model '{bundle.name}' is already quantized ({bundle.recipe_name}); start from a float model"
            )
        ctx.progress(0.0, f"loading {self.settings.calib} calibration images of {self.calib_data}")
        calib = load_calibration(bundle, self.calib_data, self.settings.calib, self.settings.seed, ctx.should_stop)
        cal = calibrate_fullint(
            bundle.model, calib.x, self.settings, self.batch_size, ctx.scaled(0.05, 0.3), ctx.should_stop
        )
        ctx.progress(0.3, f"evaluating on {self.data}")  # labels used where they match the model's classes
        images = load_calibration(bundle, self.data, self.limit, 0, ctx.should_stop)
        ref = logits(float_model(cal), images.x, self.batch_size, ctx.should_stop)
        sim = logits(FullIntModel(cal), images.x, self.batch_size, ctx.should_stop)
        diff = np.abs(sim - ref)
        acc = (lambda z: float(np.mean(z.argmax(1) == images.y))) if images.y is not None else (lambda z: None)
        layers = ()
        if self.report_images > 0:
            sample = images.subset(self.report_images, 0)
            layers = layer_errors(cal, sample.x, self.batch_size, ctx.scaled(0.6, 1.0, "per-tensor: "), ctx.should_stop)
        ctx.progress(1.0, "done")
        return IntSimOutcome(
            self.settings,
            cal,
            len(images),
            acc(ref),
            acc(sim),
            float(np.mean(ref.argmax(1) == sim.argmax(1))),
            float(diff.mean()),
            float(diff.max()),
            layers,
        )
