"""The evaluation suite job: variants, agreement, corruptions, operating point, storage, cancel."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from engine.core.errors import Cancelled, UserError
from engine.image.bundle import load_bundle
from engine.image.data.corruptions import Corruption
from engine.image.data.datasets import open_dataset
from engine.image.evaluation import evaluate_bundle
from engine.jobs.evaluation_suite import EvaluationSettings, EvaluationSuiteJob
from engine.jobs.image import QuantizeJob
from engine.measure.evaluate.operating_point import OperatingPointSpec
from engine.measure.evaluate.rows import RowTable
from engine.measure.results import ResultsStore
from engine.runtime import JobContext, Workspace

LIMIT = 48


@pytest.fixture(scope="module")
def int4_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "int4"
    QuantizeJob("default", "int4", str(out), store=False).run(
        JobContext(), Workspace(ResultsStore(out.parent / "r.db"))
    )
    return str(out)


def test_suite_rows_agreement_corruptions_thresholds_and_store(int4_path, tmp_path):
    store = ResultsStore(tmp_path / "results.db")
    ws = Workspace(store)
    settings = EvaluationSettings(
        data="default",
        limit=LIMIT,
        batch_size=16,
        bootstrap=20,
        corruptions=("gaussian_noise", "contrast"),
        severities=(1, 5),
        operating_point=OperatingPointSpec("macro_f1"),
        thresholds_from="default-val",
    )
    fractions = []
    out = EvaluationSuiteJob(("default", int4_path), settings).run(
        JobContext(progress=lambda f, m: fractions.append(f)), ws
    )
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    ref, var = out.variants
    assert ref.agreement is None and var.agreement is not None
    t_ref, t_var = RowTable(ref.name, ref.rows), RowTable(var.name, var.rows)
    # Clean metrics agree with scikit-learn on the stored probabilities.
    y, p = var.result.y_true, var.result.probs
    assert t_var.get("accuracy") == pytest.approx(accuracy_score(y, p.argmax(1)), abs=1e-9)
    assert t_var.get("flip_rate") == pytest.approx(np.mean(p.argmax(1) != ref.result.probs.argmax(1)))
    assert t_var.get("delta_macro_f1") == pytest.approx(t_var.get("macro_f1") - t_ref.get("macro_f1"))
    assert not t_ref.has("flip_rate")
    # Corrupted passes equal a direct evaluation with the same corruption.
    bundle = load_bundle("default")
    direct = evaluate_bundle(bundle, open_dataset("default"), 16, LIMIT, transform=Corruption("gaussian_noise", 5))
    assert t_ref.get("accuracy@gaussian_noise:5") == pytest.approx(direct.report.accuracy)
    curves = t_ref.robustness("accuracy")
    assert set(curves) == {"gaussian_noise", "contrast"} and set(curves["contrast"]) == {0, 1, 5}
    assert curves["gaussian_noise"][5] <= curves["gaussian_noise"][0]
    assert t_var.has("flip_rate@contrast:5") and t_var.has("delta_accuracy@gaussian_noise:1")
    # Operating point: thresholds fitted on validation data, scored on the test predictions.
    op = var.operating_point
    assert len(t_var.per_class("threshold")) == 10
    pred = op.predict(p)
    assert t_var.get("macro_f1@operating_point") == pytest.approx(f1_score(y, pred, average="macro", labels=range(10)))
    assert op.val_value >= op.val_baseline
    # Bootstrap intervals bracket the point estimate.
    assert t_ref.get("accuracy_ci_low") <= t_ref.get("accuracy") <= t_ref.get("accuracy_ci_high")
    # Each variant is one stored run whose rows rebuild the same table.
    records = store.list(full=True)
    assert [r.kind for r in records] == ["evaluate", "evaluate"]
    stored = RowTable.from_record(var.name, records[1].metrics, records[1].per_class)
    assert np.array_equal(stored.confusion(), t_var.confusion())
    assert stored.get("accuracy@contrast:5") == pytest.approx(t_var.get("accuracy@contrast:5"))
    assert records[1].settings["reference"] == "default"


def test_suite_cancels_between_batches():
    calls = []

    def progress(fraction, message):
        calls.append(fraction)

    ctx = JobContext(progress=progress, should_stop=lambda: len(calls) > 1)
    with pytest.raises(Cancelled):
        EvaluationSuiteJob(("default",), EvaluationSettings(limit=64, batch_size=8), store=False).run(ctx, Workspace())


def test_settings_are_checked():
    with pytest.raises(UserError, match="validation data"):
        EvaluationSettings(operating_point=OperatingPointSpec()).validate()
    with pytest.raises(UserError, match="unknown corruption"):
        EvaluationSettings(corruptions=("fog",)).validate()
    with pytest.raises(UserError, match="other data than the test data"):
        EvaluationSettings(data="x", split="test", thresholds_from="x", thresholds_split="test").val_source()
    assert EvaluationSettings(data="x", split="test", thresholds_from="val").val_source() == ("x", "val")


def test_plain_evaluate_job_stores_the_full_metric_rows(tmp_path):
    from engine.jobs.image import EvaluateJob

    store = ResultsStore(tmp_path / "r.db")
    out = EvaluateJob("default", limit=30, batch_size=15).run(JobContext(), Workspace(store))
    (record,) = store.list(full=True)
    t = RowTable.from_record(record.model_name, record.metrics, record.per_class)
    assert t.confusion().sum() == 30
    assert t.get("accuracy") == pytest.approx(out.result.report.accuracy)
    assert 0 <= t.get("ece_uniform") <= 1 and t.has("roc_auc") and t.get("images_per_s") > 0
