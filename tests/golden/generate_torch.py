#!/usr/bin/env python3
"""Golden reference values for softmax cross-entropy, computed with PyTorch.

What it computes
----------------
Each case is one call to ``torch.nn.functional.cross_entropy`` on CPU in
float64 (``weight=``, ``label_smoothing=``, ``reduction=``, ``ignore_index=``
and probability targets are all passed straight through to torch), plus the
gradient of ``loss.sum()`` with respect to the logits ``z`` obtained from
autograd.  For the logit-adjustment cases torch is given
``z + tau * log(pi / sum(pi))`` and the gradient is still taken w.r.t. ``z``.

The script prints a Rust source file (``tests/golden/torch_values.rs``) to
stdout, holding a ``CASES`` table.  All inputs come from
``numpy.random.default_rng(20240611)``, so the output is deterministic.

Regenerate with (from the crate root)::

    pip install numpy torch && python3 tests/golden/generate_torch.py > tests/golden/torch_values.rs

Generated with torch 2.15.0 (CPU, float64), numpy 2.4.6, Python 3.11.7.

Torch semantics (each one is re-derived below in ``reference()`` by an
independent NumPy formula and asserted to agree to ~1e-12 with torch)
-----------------------------------------------------------------
Let ``p_i = softmax(z_i)`` (after any logit adjustment), ``K`` classes,
``eps = label_smoothing``, ``w`` the class weights (all ones if absent) and
``s_i`` the sample weight (0 for a row whose label is ``ignore_index``, else 1).
Every case is ``l_i = -sum_k c_ik * log p_ik`` with

* hard labels:  ``c_ik = s_i * ((1 - eps) * w_{y_i} * [k == y_i] + (eps / K) * w_k)``
* probabilities ``q``: ``c_ik = w_k * ((1 - eps) * q_ik + eps / K)``

and reduction
* ``"none"``: ``l_i`` (ignored rows give 0),
* ``"sum"``:  ``sum_i l_i``,
* ``"mean"``: ``sum_i l_i / D`` with ``D = sum_i s_i * w_{y_i}`` for hard labels
  (so the smoothing term is ALSO divided by the label-weight sum, not by B and
  not by sum_k w_k) and ``D = B`` for probability targets (weights or not).

The gradient is ``dl_i/dz_ij = (sum_k c_ik) * p_ij - c_ij`` (divided by ``D``
for "mean").
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
SEED = 20240611
IGNORE = -100


# --------------------------------------------------------------------------
# Independent reference formula (see module docstring).
# --------------------------------------------------------------------------
def reference(z, labels, probs, w, s, eps, reduction):
    z = np.asarray(z, dtype=np.float64)
    B, K = z.shape
    m = z.max(axis=1, keepdims=True)
    logp = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    w = np.ones(K) if w is None else np.asarray(w)
    s = np.ones(B) if s is None else np.asarray(s)
    c = np.zeros((B, K))
    if probs is not None:
        c = w[None, :] * ((1 - eps) * np.asarray(probs) + eps / K)
        denom = float(B)
    else:
        for i, y in enumerate(labels):
            c[i] = s[i] * (eps / K) * w
            c[i, y] += s[i] * (1 - eps) * w[y]
        denom = float(sum(s[i] * w[y] for i, y in enumerate(labels)))
    per = -(c * logp).sum(axis=1)
    grad = c.sum(axis=1, keepdims=True) * p - c
    if reduction == "none":
        return per, grad
    if reduction == "sum":
        return np.array([per.sum()]), grad
    return np.array([per.sum() / denom]), grad / denom


# --------------------------------------------------------------------------
# Case construction
# --------------------------------------------------------------------------
CASES = []


def run(name, z, labels=None, probs=None, class_weights=None, ignore_rows=(),
        label_smoothing=0.0, prior=None, tau=None, reduction="mean"):
    z = np.asarray(z, dtype=np.float64)
    B, K = z.shape
    zt = torch.tensor(z, requires_grad=True)
    inp = zt
    if prior is not None:
        pr = np.asarray(prior, dtype=np.float64)
        inp = zt + tau * torch.log(torch.tensor(pr / pr.sum()))
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    if class_weights is not None:
        kwargs["weight"] = torch.tensor(np.asarray(class_weights, dtype=np.float64))
    sample_weights = None
    if probs is not None:
        target = torch.tensor(np.asarray(probs, dtype=np.float64))
    else:
        t = np.array(labels, dtype=np.int64)
        if ignore_rows:
            t[list(ignore_rows)] = IGNORE
            sample_weights = [0.0 if i in ignore_rows else 1.0 for i in range(B)]
        target = torch.tensor(t)
        kwargs["ignore_index"] = IGNORE
    loss = F.cross_entropy(inp, target, **kwargs)
    loss.sum().backward()
    loss_v = loss.detach().numpy().reshape(-1)
    grad_v = zt.grad.detach().numpy()

    # Cross-check against the explicit formula.
    adj = inp.detach().numpy()
    ref_l, ref_g = reference(adj, labels, probs, class_weights, sample_weights,
                             label_smoothing, reduction)
    assert np.allclose(loss_v, ref_l, rtol=1e-12, atol=1e-13), (name, loss_v, ref_l)
    assert np.allclose(grad_v, ref_g, rtol=1e-10, atol=1e-13), (name, grad_v, ref_g)
    assert np.all(np.isfinite(loss_v)) and np.all(np.isfinite(grad_v)), name

    CASES.append(dict(
        name=name, batch=B, classes=K, logits=z.reshape(-1),
        labels=None if labels is None else [int(y) for y in labels],
        probs=None if probs is None else np.asarray(probs).reshape(-1),
        class_weights=class_weights, sample_weights=sample_weights,
        label_smoothing=float(label_smoothing),
        prior_tau=None if prior is None else (list(prior), float(tau)),
        reduction=reduction, loss=loss_v, grad=grad_v.reshape(-1),
    ))


def make_logits(rng, B, K):
    z = rng.normal(0.0, 2.0, size=(B, K))
    return z


def make_labels(rng, z):
    """Random labels, plus planted saturated rows."""
    B, K = z.shape
    y = rng.integers(0, K, size=B)
    # Row 0: label is the argmax with a confident margin.
    y[0] = 1 % K
    z[0, y[0]] = 8.0
    if B > 1 and K > 1:
        # Row 1: label sits at a very negative logit (large loss), and another
        # class is very large.
        y[1] = 0
        z[1, 0] = -8.0
        z[1, K - 1] = 8.0
    return y


def main():
    rng = np.random.default_rng(SEED)

    # Base data for cases 1-8, 12, 13.
    B, K = 6, 5
    zA = make_logits(rng, B, K)
    yA = make_labels(rng, zA)
    yA[3], yA[4] = 3, 4  # make every class appear as a label
    wA = np.round(rng.uniform(0.2, 3.0, size=K), 6)  # short decimal, exact in Rust as given
    wA = [float(x) for x in wA]

    run("plain_mean", zA, labels=yA, reduction="mean")
    run("plain_sum", zA, labels=yA, reduction="sum")
    run("plain_none", zA, labels=yA, reduction="none")
    run("class_weights_mean", zA, labels=yA, class_weights=wA, reduction="mean")
    run("class_weights_none", zA, labels=yA, class_weights=wA, reduction="none")
    run("smoothing_0.1_mean", zA, labels=yA, label_smoothing=0.1, reduction="mean")
    run("smoothing_0.2_class_weights_mean", zA, labels=yA, class_weights=wA,
        label_smoothing=0.2, reduction="mean")
    run("smoothing_0.2_class_weights_none", zA, labels=yA, class_weights=wA,
        label_smoothing=0.2, reduction="none")

    # Probability targets.
    Bp, Kp = 5, 4
    zP = make_logits(rng, Bp, Kp)
    zP[0, 2] = 8.0
    zP[3, 1] = -8.0
    q = rng.dirichlet(np.ones(Kp), size=Bp)
    q = q / q.sum(axis=1, keepdims=True)
    wP = [float(x) for x in np.round(rng.uniform(0.2, 3.0, size=Kp), 6)]
    run("probs_mean", zP, probs=q, reduction="mean")
    run("probs_class_weights_mean", zP, probs=q, class_weights=wP, reduction="mean")
    run("probs_sum", zP, probs=q, reduction="sum")

    # ignore_index (rows 2 and 4 ignored; real labels kept in the Rust table).
    run("ignore_two_rows_class_weights_mean", zA, labels=yA, class_weights=wA,
        ignore_rows=(2, 4), reduction="mean")
    run("ignore_two_rows_smoothing_0.1_mean", zA, labels=yA, ignore_rows=(2, 4),
        label_smoothing=0.1, reduction="mean")

    # Logit adjustment.
    prior = [500.0, 120.0, 40.0, 9.0, 3.0]
    Bl, Kl = 7, 5
    zL = make_logits(rng, Bl, Kl)
    yL = make_labels(rng, zL)
    yL[2], yL[3] = 4, 3  # make sure tail classes appear
    wL = [float(x) for x in np.round(rng.uniform(0.2, 3.0, size=Kl), 6)]
    run("logit_adjust_tau_1_mean", zL, labels=yL, prior=prior, tau=1.0,
        reduction="mean")
    run("logit_adjust_tau_1.5_class_weights_mean", zL, labels=yL, prior=prior,
        tau=1.5, class_weights=wL, reduction="mean")

    # Larger case.
    zB = make_logits(rng, 16, 10)
    yB = make_labels(rng, zB)
    zB[5, 3] = 9.0
    wB = [float(x) for x in np.round(rng.uniform(0.2, 3.0, size=10), 6)]
    run("large_b16_k10_class_weights_smoothing_0.05_mean", zB, labels=yB,
        class_weights=wB, label_smoothing=0.05, reduction="mean")

    # Single class.
    zS = make_logits(rng, 4, 1)
    run("single_class_mean", zS, labels=[0, 0, 0, 0], reduction="mean")

    emit()


# --------------------------------------------------------------------------
# Rust emission
# --------------------------------------------------------------------------
def f(x):
    r = repr(float(x))
    assert "nan" not in r and "inf" not in r, r
    assert "." in r or "e" in r, r
    return r


def farr(xs):
    return "&[" + ", ".join(f(x) for x in xs) + "]"


HEADER = """\
/// One PyTorch `cross_entropy` call and its result.
pub struct Case {
    /// What the case exercises.
    pub name: &'static str,
    /// Batch size B.
    pub batch: usize,
    /// Number of classes K.
    pub classes: usize,
    /// Logits, row-major `[B, K]`.
    pub logits: &'static [f64],
    /// Hard labels (length B), or `None` for probability targets.
    pub labels: Option<&'static [usize]>,
    /// Probability targets, row-major `[B, K]`, or `None` for hard labels.
    pub probs: Option<&'static [f64]>,
    /// `weight=` (per-class), if any.
    pub class_weights: Option<&'static [f64]>,
    /// Per-row weights: 0.0 where the row's label was `ignore_index`, 1.0 elsewhere; `None` if no row is ignored.
    pub sample_weights: Option<&'static [f64]>,
    /// `label_smoothing=`.
    pub label_smoothing: f64,
    /// Prior `π` (unnormalised counts) and `τ` when the logits passed to torch were `z + τ·log(π/Σπ)`; else `None`.
    pub prior_tau: Option<(&'static [f64], f64)>,
    /// "mean", "sum" or "none".
    pub reduction: &'static str,
    /// The loss: one value for mean/sum, B values for none.
    pub loss: &'static [f64],
    /// Gradient of the sum of `loss` entries w.r.t. the (unadjusted) logits `z`, row-major `[B, K]`.
    pub grad: &'static [f64],
}
"""


def opt(v):
    return "None" if v is None else "Some(" + v + ")"


def emit():
    version = torch.__version__.split("+")[0]
    out = [f"// @generated by tests/golden/generate_torch.py (torch {version}, float64). Do not edit.\n"]
    out.append(HEADER)
    out.append("pub const CASES: &[Case] = &[\n")
    for c in CASES:
        assert len(c["logits"]) == c["batch"] * c["classes"]
        assert len(c["grad"]) == c["batch"] * c["classes"]
        out.append("    Case {\n")
        out.append(f"        name: \"{c['name']}\",\n")
        out.append(f"        batch: {c['batch']},\n")
        out.append(f"        classes: {c['classes']},\n")
        out.append(f"        logits: {farr(c['logits'])},\n")
        labels = None if c["labels"] is None else "&[" + ", ".join(str(y) for y in c["labels"]) + "]"
        out.append(f"        labels: {opt(labels)},\n")
        out.append(f"        probs: {opt(None if c['probs'] is None else farr(c['probs']))},\n")
        cw = c["class_weights"]
        out.append(f"        class_weights: {opt(None if cw is None else farr(cw))},\n")
        sw = c["sample_weights"]
        out.append(f"        sample_weights: {opt(None if sw is None else farr(sw))},\n")
        out.append(f"        label_smoothing: {f(c['label_smoothing'])},\n")
        pt = c["prior_tau"]
        out.append(f"        prior_tau: {opt(None if pt is None else '(' + farr(pt[0]) + ', ' + f(pt[1]) + ')')},\n")
        out.append(f"        reduction: \"{c['reduction']}\",\n")
        out.append(f"        loss: {farr(c['loss'])},\n")
        out.append(f"        grad: {farr(c['grad'])},\n")
        out.append("    },\n")
    out.append("];\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
