"""Classification metrics against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from engine.measure.evaluate.classification import classification_report, confusion_matrix, softmax


def test_hand_computed_three_class_example():
    # true: a a a b b c ; pred: a a b b c c
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    rep = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert rep.confusion == ((2, 1, 0), (0, 1, 1), (0, 0, 1))
    assert rep.accuracy == pytest.approx(4 / 6)
    # precision: a 2/2, b 1/2, c 1/2 ; recall: a 2/3, b 1/2, c 1/1
    assert rep.precision == pytest.approx((1.0, 0.5, 0.5))
    assert rep.recall == pytest.approx((2 / 3, 0.5, 1.0))
    f1 = (2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 * 1 / 1.5)
    assert rep.f1 == pytest.approx(f1)
    assert rep.macro_f1 == pytest.approx(sum(f1) / 3)
    assert rep.weighted_f1 == pytest.approx((3 * f1[0] + 2 * f1[1] + 1 * f1[2]) / 6)
    assert rep.balanced_accuracy == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert rep.support == (3, 2, 1)


def test_class_never_predicted_and_absent_class_score_zero():
    y_true = np.array([0, 0, 1])
    y_pred = np.array([0, 0, 0])
    rep = classification_report(y_true, y_pred, ["x", "y", "z"])
    assert rep.precision == pytest.approx((2 / 3, 0.0, 0.0))
    assert rep.recall == pytest.approx((1.0, 0.0, 0.0))
    assert rep.f1[2] == 0.0 and rep.support[2] == 0
    # balanced accuracy averages recall over classes that occur
    assert rep.balanced_accuracy == pytest.approx(0.5)
    assert rep.macro_f1 == pytest.approx((0.8 + 0 + 0) / 3)


def test_long_rows_follow_the_csv_contract():
    rep = classification_report(np.array([0, 1]), np.array([0, 0]), ["neg", "pos"])
    rows = rep.long_rows("v1")
    assert ("v1", "accuracy", "", 0.5) in rows
    assert ("v1", "recall", "pos", 0.0) in rows
    assert {r[1] for r in rows if r[2] == ""} == {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "n"}
    assert {r[1] for r in rows if r[2] != ""} == {"precision", "recall", "f1", "support"}


def test_confusion_matrix_counts_every_pair():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = confusion_matrix(t, p, 4)
    for i in range(4):
        for j in range(4):
            assert cm[i, j] == np.sum((t == i) & (p == j))


def test_softmax_rows_sum_to_one_and_are_stable():
    logits = np.array([[1000.0, 1001.0], [-5.0, 5.0]])
    p = softmax(logits)
    assert np.allclose(p.sum(1), 1.0)
    assert p[0, 1] == pytest.approx(1 / (1 + np.exp(-1)))
