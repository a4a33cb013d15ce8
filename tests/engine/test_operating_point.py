"""Operating points chosen on validation data: exactness against brute force, targets met."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from engine.core.errors import UserError
from engine.measure.evaluate.operating_point import (
    OperatingPointSpec,
    fit_macro_f1,
    fit_sensitivity,
    optimize_thresholds,
)


def _data(seed, n, k, bias=0.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    logits[:, 0] += bias  # a miscalibrated model that over-predicts class 0
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_binary_thresholds_reach_the_brute_force_optimum():
    y, p = _data(0, 150, 2, bias=1.0)
    t, value = optimize_thresholds(y, p)
    ours = f1_score(y, (p / t).argmax(1), average="macro")
    # Every distinct decision on p_1: predict positive when p_1 >= t for each observed value.
    best = max(f1_score(y, (p[:, 1] >= t).astype(int), average="macro") for t in np.r_[np.unique(p[:, 1]), 1.1])
    assert ours == pytest.approx(best, abs=1e-12)
    assert value == pytest.approx(ours, abs=1e-12)


def test_multiclass_thresholds_improve_validation_and_transfer_to_test():
    y_val, p_val = _data(1, 600, 4, bias=1.5)
    y_test, p_test = _data(2, 600, 4, bias=1.5)
    point = fit_macro_f1(y_val, p_val, list("abcd"))
    base_val = f1_score(y_val, p_val.argmax(1), average="macro")
    assert point.adopted and point.cv_value > point.val_baseline
    assert point.val_baseline == pytest.approx(base_val)
    assert point.val_value == pytest.approx(f1_score(y_val, point.predict(p_val), average="macro"), abs=1e-12)
    assert point.val_value > base_val + 0.02
    # The bias is systematic, so thresholds fitted on validation data help on test data too.
    assert f1_score(y_test, point.predict(p_test), average="macro") > f1_score(
        y_test, p_test.argmax(1), average="macro"
    )
    # No single coordinate can still improve (coordinate-wise optimum).
    t = np.asarray(point.thresholds)
    for c in range(4):
        for factor in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0):
            trial = t.copy()
            trial[c] *= factor
            assert f1_score(y_val, (p_val / trial).argmax(1), average="macro") <= point.val_value + 1e-12


def test_thresholds_that_do_not_survive_cross_validation_are_not_adopted():
    # An unbiased model: fitted thresholds only chase validation noise.
    y_val, p_val = _data(5, 300, 5)
    fitted, value = optimize_thresholds(y_val, p_val)
    assert value > f1_score(y_val, p_val.argmax(1), average="macro")  # they do "help" on validation
    point = fit_macro_f1(y_val, p_val, list("abcde"))
    assert not point.adopted and point.cv_value <= point.val_baseline
    assert point.thresholds == (1.0,) * 5 and np.array_equal(point.predict(p_val), p_val.argmax(1))


def test_sensitivity_target_is_met_with_the_largest_threshold():
    y, p = _data(3, 500, 3)
    point = fit_sensitivity(y, p, ["a", "b", "mel"], 2, 0.95)
    pred = point.predict(p)
    recall = recall_score(y == 2, pred == 2)
    assert recall >= 0.95 and point.val_value == pytest.approx(recall)
    # Any higher threshold drops below the target.
    higher = p[:, 2][p[:, 2] > point.threshold].min()
    raised = replace(point, threshold=float(higher))
    assert recall_score(y == 2, raised.predict(p) == 2) < 0.95
    # Images below the threshold get the most probable other class.
    low = p[:, 2] < point.threshold
    assert np.array_equal(pred[low], p[low][:, :2].argmax(1))


def test_spec_parsing_and_errors():
    assert OperatingPointSpec.parse("macro_f1").objective == "macro_f1"
    spec = OperatingPointSpec.parse("sensitivity:mel=0.9")
    assert (spec.objective, spec.target_class, spec.target) == ("sensitivity", "mel", 0.9)
    assert OperatingPointSpec.parse("mel=0.8").target == 0.8
    with pytest.raises(UserError, match="sensitivity:CLASS=TARGET"):
        OperatingPointSpec.parse("nonsense")
    with pytest.raises(UserError, match="not a number"):
        OperatingPointSpec.parse("mel=high")
    y, p = _data(4, 50, 3)
    with pytest.raises(UserError, match="no class 'zzz'"):
        OperatingPointSpec.parse("zzz=0.9").fit(y, p, ["a", "b", "c"])
    with pytest.raises(UserError, match=r"\(0, 1\]"):
        fit_sensitivity(y, p, ["a", "b", "c"], 0, 1.5)
