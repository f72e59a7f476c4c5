#!/usr/bin/env python3
"""Golden reference values for the metrics and class weights, computed with scikit-learn.

What it computes
----------------
For each metric case (hard labels ``y_true``, predictions ``y_pred``, ``K``
classes, some of them absent from one side or both):

* ``confusion_matrix(y_true, y_pred, labels=range(K))``
* ``accuracy_score(y_true, y_pred)``
* ``balanced_accuracy_score(y_true, y_pred)`` (default ``adjusted=False``: the
  mean recall over the classes present in ``y_true``)
* ``f1_score(y_true, y_pred, average="macro")`` (default ``labels=None``: the
  classes present in ``y_true`` or ``y_pred``; default ``zero_division``)
* ``precision_recall_fscore_support(y_true, y_pred, labels=range(K),
  average=None, zero_division=np.nan)``: per-class values, NaN (emitted as
  ``None``) where undefined.

For each class-weight case: ``compute_class_weight("balanced",
classes=np.arange(K), y=y)``, i.e. ``n / (K * n_k)``.

The script prints a Rust source file (``tests/golden/sklearn_values.rs``) to
stdout.  Random inputs come from ``numpy.random.default_rng(20241121)``, so the
output is deterministic.

Regenerate with (from the crate root)::

    pip install numpy scikit-learn && python3 tests/golden/generate_sklearn.py > tests/golden/sklearn_values.rs

Generated with scikit-learn 1.9.1, numpy 2.4.6, Python 3.11.7.
"""
import sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.utils.class_weight import compute_class_weight

SEED = 20241121
METRICS = []
WEIGHTS = []


def metric_case(name, y_true, y_pred, K):
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    labels = np.arange(K)
    with warnings.catch_warnings():
        # Absent classes make sklearn warn ("y_pred contains classes not in y_true", ill-defined
        # precision): the warnings are the point of these cases.
        warnings.simplefilter("ignore")
        cm = confusion_matrix(y_true, y_pred, labels=labels)
        precision, recall, f1, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=None, zero_division=np.nan
        )
        METRICS.append(dict(
            name=name, classes=K, labels=list(y_true), predictions=list(y_pred),
            confusion=cm.reshape(-1).tolist(),
            accuracy=accuracy_score(y_true, y_pred),
            balanced_accuracy=balanced_accuracy_score(y_true, y_pred),
            macro_f1=f1_score(y_true, y_pred, average="macro"),
            precision=list(precision), recall=list(recall), f1=list(f1),
        ))


def weight_case(name, y, K):
    y = np.asarray(y, dtype=int)
    w = compute_class_weight("balanced", classes=np.arange(K), y=y)
    WEIGHTS.append(dict(name=name, classes=K, labels=list(y), weights=list(w)))


def main():
    rng = np.random.default_rng(SEED)

    metric_case("every_class_present", [0, 0, 1, 1, 2, 2, 2], [0, 1, 1, 1, 2, 0, 2], 3)
    metric_case("class_3_absent_from_both", [0, 1, 2, 0, 1, 2, 2], [0, 2, 2, 0, 1, 1, 2], 4)
    metric_case("class_4_only_predicted_class_3_never_predicted",
                [0, 0, 1, 1, 2, 3, 3, 2], [0, 4, 1, 1, 2, 0, 1, 4], 5)
    metric_case("class_0_only_predicted", [1, 1, 2, 2, 2], [0, 1, 2, 0, 2], 3)
    metric_case("all_correct", [2, 0, 1, 2], [2, 0, 1, 2], 3)
    metric_case("all_wrong", [0, 1, 1], [1, 0, 0], 2)
    metric_case("single_class", [0, 0, 0], [0, 0, 0], 1)

    # Long-tailed labels over 8 classes (class 7 never drawn), noisy predictions.
    K = 8
    p = np.array([0.4, 0.25, 0.15, 0.1, 0.05, 0.03, 0.02, 0.0])
    y = rng.choice(K, size=60, p=p)
    pred = np.where(rng.uniform(size=60) < 0.6, y, rng.integers(0, K - 1, size=60))
    metric_case("random_long_tail_k8_n60", y, pred, K)

    weight_case("balanced_three_classes", [0, 0, 0, 1, 1, 2], 3)
    weight_case("long_tail_five_classes",
                [0] * 50 + [1] * 20 + [2] * 7 + [3] * 2 + [4], 5)
    weight_case("random_long_tail_k8_n60", y[y < 7], 7)

    emit()


def f(x):
    r = repr(float(x))
    assert "nan" not in r and "inf" not in r, r
    assert "." in r or "e" in r, r
    return r


def farr(xs):
    return "&[" + ", ".join(f(x) for x in xs) + "]"


def oarr(xs):
    return "&[" + ", ".join("None" if np.isnan(x) else "Some(" + f(x) + ")" for x in xs) + "]"


def uarr(xs):
    return "&[" + ", ".join(str(int(x)) for x in xs) + "]"


HEADER = """\
/// One set of labels and predictions and scikit-learn's scores of it.
pub struct MetricCase {
    /// What the case exercises.
    pub name: &'static str,
    /// The number of classes K (`labels=range(K)`).
    pub classes: usize,
    /// `y_true`.
    pub labels: &'static [usize],
    /// `y_pred`.
    pub predictions: &'static [usize],
    /// `confusion_matrix(y_true, y_pred, labels=range(K))`, row-major `[K, K]`.
    pub confusion: &'static [u64],
    /// `accuracy_score`.
    pub accuracy: f64,
    /// `balanced_accuracy_score`.
    pub balanced_accuracy: f64,
    /// `f1_score(average="macro")`.
    pub macro_f1: f64,
    /// Per-class precision (`zero_division=np.nan`; NaN is `None`).
    pub precision: &'static [Option<f64>],
    /// Per-class recall (`zero_division=np.nan`; NaN is `None`).
    pub recall: &'static [Option<f64>],
    /// Per-class F1 (`zero_division=np.nan`; NaN is `None`).
    pub f1: &'static [Option<f64>],
}

/// `compute_class_weight("balanced", classes=range(K), y=labels)`.
pub struct WeightCase {
    /// What the case exercises.
    pub name: &'static str,
    /// The number of classes K.
    pub classes: usize,
    /// `y`.
    pub labels: &'static [usize],
    /// The weights, one per class.
    pub weights: &'static [f64],
}
"""


def emit():
    out = [f"// @generated by tests/golden/generate_sklearn.py (scikit-learn {sklearn.__version__}). Do not edit.\n"]
    out.append(HEADER)
    out.append("pub const METRIC_CASES: &[MetricCase] = &[\n")
    for c in METRICS:
        out.append("    MetricCase {\n")
        out.append(f"        name: \"{c['name']}\",\n")
        out.append(f"        classes: {c['classes']},\n")
        out.append(f"        labels: {uarr(c['labels'])},\n")
        out.append(f"        predictions: {uarr(c['predictions'])},\n")
        out.append(f"        confusion: {uarr(c['confusion'])},\n")
        out.append(f"        accuracy: {f(c['accuracy'])},\n")
        out.append(f"        balanced_accuracy: {f(c['balanced_accuracy'])},\n")
        out.append(f"        macro_f1: {f(c['macro_f1'])},\n")
        out.append(f"        precision: {oarr(c['precision'])},\n")
        out.append(f"        recall: {oarr(c['recall'])},\n")
        out.append(f"        f1: {oarr(c['f1'])},\n")
        out.append("    },\n")
    out.append("];\n\n")
    out.append("pub const WEIGHT_CASES: &[WeightCase] = &[\n")
    for c in WEIGHTS:
        out.append("    WeightCase {\n")
        out.append(f"        name: \"{c['name']}\",\n")
        out.append(f"        classes: {c['classes']},\n")
        out.append(f"        labels: {uarr(c['labels'])},\n")
        out.append(f"        weights: {farr(c['weights'])},\n")
        out.append("    },\n")
    out.append("];\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
