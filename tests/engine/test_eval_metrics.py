"""Evaluation metrics against scikit-learn / scipy (to 1e-6) and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import entropy, rankdata
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from engine.measure.evaluate.agreement import agreement, kl_divergence
from engine.measure.evaluate.calibration import brier_score, negative_log_likelihood, reliability_bins
from engine.measure.evaluate.metrics import bootstrap_intervals, compute_metrics, with_intervals
from engine.measure.evaluate.ranking import average_ranks, binary_auc, roc_auc_ovr, top_k_accuracy
from engine.measure.evaluate.rows import RowTable

TOL = 1e-6


def _probs(rng, n, k, sharp=2.0, ties=False):
    logits = rng.normal(size=(n, k)) * sharp
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    if ties:  # coarse probabilities create many ties for the ranking metrics
        p = np.round(p, 1) + 1e-9
        p /= p.sum(axis=1, keepdims=True)
    return p


def _labels_from(rng, p, noise=0.3):
    """Labels correlated with the probabilities, so metrics are far from trivial."""
    y = p.argmax(axis=1)
    flip = rng.random(len(y)) < noise
    y[flip] = rng.integers(0, p.shape[1], flip.sum())
    return y


@pytest.fixture(params=[(0, 300, 4, False), (1, 500, 7, True), (2, 80, 3, False)])
def case(request):
    seed, n, k, ties = request.param
    rng = np.random.default_rng(seed)
    p = _probs(rng, n, k, ties=ties)
    return _labels_from(rng, p), p, [f"c{i}" for i in range(k)]


def test_classification_metrics_match_sklearn(case):
    y, p, names = case
    vm = compute_metrics(y, p, names)
    pred = p.argmax(axis=1)
    labels = list(range(len(names)))
    r = vm.report
    assert np.array_equal(np.asarray(r.confusion), skm.confusion_matrix(y, pred, labels=labels))
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    assert np.allclose(r.precision, prec, atol=TOL) and np.allclose(r.recall, rec, atol=TOL)
    assert np.allclose(r.f1, f1, atol=TOL) and np.array_equal(r.support, sup)
    assert abs(r.accuracy - skm.accuracy_score(y, pred)) < TOL
    assert abs(r.balanced_accuracy - skm.balanced_accuracy_score(y, pred)) < TOL
    assert abs(r.macro_f1 - skm.f1_score(y, pred, average="macro", labels=labels, zero_division=0)) < TOL
    assert abs(r.weighted_f1 - skm.f1_score(y, pred, average="weighted", labels=labels, zero_division=0)) < TOL
    # Specificity TN / (TN + FP) from scikit-learn's one-vs-rest confusion matrices.
    mcm = skm.multilabel_confusion_matrix(y, pred, labels=labels)
    tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
    assert np.allclose(vm.specificity, tn / (tn + fp), atol=TOL)


def test_ranking_metrics_match_sklearn(case):
    y, p, names = case
    vm = compute_metrics(y, p, names, top_k=(2, 3))
    for c in range(len(names)):
        assert abs(vm.roc_auc[c] - skm.roc_auc_score(y == c, p[:, c])) < TOL
    assert abs(vm.roc_auc_macro - skm.roc_auc_score(y, p, multi_class="ovr", average="macro")) < TOL
    for k, value in vm.top_k:
        assert abs(value - skm.top_k_accuracy_score(y, p, k=k, labels=list(range(len(names))))) < TOL
    assert [k for k, _ in vm.top_k] == [k for k in (2, 3) if k < len(names)]


def test_average_ranks_match_scipy():
    v = np.array([3.0, 1.0, 3.0, 2.0, 3.0, 1.0, 0.5])
    assert np.allclose(average_ranks(v), rankdata(v))


def test_auc_of_absent_class_is_nan_and_left_out_of_the_mean():
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    y = np.array([0, 1, 0, 1])
    per_class, macro = roc_auc_ovr(y, p)
    assert math.isnan(per_class[2])
    assert macro == pytest.approx(np.mean([skm.roc_auc_score(y == 0, p[:, 0]), skm.roc_auc_score(y == 1, p[:, 1])]))
    assert math.isnan(binary_auc(np.ones(3, bool), np.arange(3.0)))


def test_calibration_matches_sklearn(case):
    y, p, names = case
    vm = compute_metrics(y, p, names, n_bins=10)
    cal = vm.calibration
    assert abs(cal.nll - skm.log_loss(y, p, labels=list(range(len(names))))) < TOL
    assert abs(cal.brier - skm.brier_score_loss(y, p, labels=list(range(len(names))))) < TOL
    conf, correct = p.max(axis=1), p.argmax(axis=1) == y
    for bins, strategy in ((cal.uniform, "uniform"), (cal.adaptive, "quantile")):
        prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy=strategy)
        nonempty = [i for i, c in enumerate(bins.count) if c]
        assert np.allclose([bins.accuracy[i] for i in nonempty], prob_true, atol=TOL)
        assert np.allclose([bins.confidence[i] for i in nonempty], prob_pred, atol=TOL)
        # ECE by hand: bin weights times |accuracy - confidence|.
        counts = np.asarray([bins.count[i] for i in nonempty])
        assert abs(bins.ece - float((counts / counts.sum() * np.abs(prob_true - prob_pred)).sum())) < TOL
    assert cal.ece_uniform == pytest.approx(cal.uniform.ece)
    assert cal.mean_confidence == pytest.approx(conf.mean())


def test_ece_hand_computed_example():
    # Two bins of [0, 1]: confidences 0.3, 0.4 (one right) and 0.8, 0.9, 1.0 (two right).
    conf = np.array([0.3, 0.4, 0.8, 0.9, 1.0])
    correct = np.array([1, 0, 1, 0, 1])
    b = reliability_bins(conf, correct, n_bins=2, strategy="uniform")
    assert b.count == (2, 3)
    expected = 2 / 5 * abs(0.5 - 0.35) + 3 / 5 * abs(2 / 3 - 0.9)
    assert b.ece == pytest.approx(expected, abs=1e-12)
    assert b.mce == pytest.approx(abs(2 / 3 - 0.9), abs=1e-12)
    # A value on the inner edge goes to the lower bin (scikit-learn's searchsorted).
    assert reliability_bins(np.array([0.5]), np.array([1]), 2).count == (1, 0)


def test_nll_and_brier_by_hand():
    p = np.array([[0.5, 0.5], [0.9, 0.1]])
    y = np.array([1, 0])
    assert negative_log_likelihood(y, p) == pytest.approx(-(np.log(0.5) + np.log(0.9)) / 2)
    assert brier_score(y, p) == pytest.approx(((0.25 + 0.25) + (0.01 + 0.01)) / 2)


def test_top_k_counts_the_true_class_among_the_k_best():
    p = np.array([[0.5, 0.3, 0.2], [0.1, 0.3, 0.6]])
    assert top_k_accuracy(np.array([2, 0]), p, 1) == 0.0
    assert top_k_accuracy(np.array([2, 1]), p, 2) == 0.5
    assert top_k_accuracy(np.array([2, 0]), p, 3) == 1.0


def test_agreement_matches_scipy_and_hand_counts():
    rng = np.random.default_rng(3)
    ref = _probs(rng, 200, 5)
    var = 0.8 * ref + 0.2 * _probs(rng, 200, 5)
    y = _labels_from(rng, ref)
    names = [str(i) for i in range(5)]
    a = agreement("ref", y, ref, var, compute_metrics(y, ref, names), compute_metrics(y, var, names))
    assert a.flip_rate == pytest.approx(np.mean(ref.argmax(1) != var.argmax(1)))
    assert a.mean_kl == pytest.approx(np.mean([entropy(r, v) for r, v in zip(ref, var, strict=True)]), abs=1e-9)
    for c in range(5):
        m = y == c
        assert a.class_flip_rate[c] == pytest.approx(np.mean(ref.argmax(1)[m] != var.argmax(1)[m]))
    deltas = {(m, c): v for m, c, v in a.deltas}
    f1_ref = skm.f1_score(y, ref.argmax(1), average=None)
    f1_var = skm.f1_score(y, var.argmax(1), average=None)
    for c in range(5):
        assert deltas[("f1", str(c))] == pytest.approx(f1_var[c] - f1_ref[c], abs=TOL)
    acc_delta = skm.accuracy_score(y, var.argmax(1)) - skm.accuracy_score(y, ref.argmax(1))
    assert deltas[("accuracy", "")] == pytest.approx(acc_delta, abs=TOL)
    assert ("n", "") not in deltas and ("support", "0") not in deltas
    assert kl_divergence(ref[:3], ref[:3]) == pytest.approx(np.zeros(3), abs=1e-12)


def test_bootstrap_intervals_are_seeded_and_close_to_the_normal_approximation():
    rng = np.random.default_rng(5)
    p = _probs(rng, 800, 3)
    y = _labels_from(rng, p, noise=0.4)
    names = ["a", "b", "c"]
    small = [bootstrap_intervals(y, p, names, 30, seed=s) for s in (11, 11, 12)]
    assert small[0] == small[1] and small[0] != small[2]
    iv1 = bootstrap_intervals(y, p, names, 300, seed=11)
    acc = next(i for i in iv1 if i.metric == "accuracy" and i.cls == "")
    point = skm.accuracy_score(y, p.argmax(1))
    half = 1.96 * math.sqrt(point * (1 - point) / len(y))
    assert acc.low < point < acc.high
    assert acc.low == pytest.approx(point - half, abs=0.012)
    assert acc.high == pytest.approx(point + half, abs=0.012)
    keys = {(i.metric, i.cls) for i in iv1}
    assert ("recall", "b") in keys and ("roc_auc_macro", "") in keys and ("n", "") not in keys


def test_long_rows_round_trip_through_row_table(case):
    y, p, names = case
    vm = compute_metrics(y, p, names)
    vm = with_intervals(vm, bootstrap_intervals(y, p, names, 20, seed=0), 20)
    rows = vm.long_rows("v")
    assert all(len(r) == 4 and r[0] == "v" for r in rows)
    t = RowTable("v", rows)
    assert t.classes() == names
    assert np.array_equal(t.confusion(), np.asarray(vm.report.confusion))
    assert t.get("accuracy") == vm.report.accuracy
    assert t.per_class("roc_auc") == dict(zip(names, vm.roc_auc, strict=True))
    rel = t.reliability("uniform")
    assert rel["count"].sum() == len(y)
    assert t.get("accuracy_ci_low") <= t.get("accuracy") <= t.get("accuracy_ci_high")
    cond = RowTable("v", vm.long_rows("v", "gaussian_noise:2", confusion=False, reliability=False))
    assert cond.robustness("accuracy")["gaussian_noise"][2] == vm.report.accuracy
    assert cond.confusion() is None
