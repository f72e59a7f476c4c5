#!/usr/bin/env python3
"""Golden reference values for the sigmoid, ZLPR and LDAM losses, from peer implementations.

What it computes
----------------
Every case runs in float64 on CPU and records the loss and the gradient of
``loss.sum()`` with respect to the logits ``z`` (torch autograd):

* ``bce``: ``torch.nn.functional.binary_cross_entropy_with_logits(z, y,
  weight=s, reduction=...)``.  Weighted cases use ``reduction="sum"`` or
  ``"none"``: torch's weighted ``"mean"`` divides by ``B`` where longtail
  divides by ``sum(s)``, and the two agree without weights.
* ``focal``: ``torchvision.ops.sigmoid_focal_loss(z, y, alpha, gamma,
  reduction)``; ``alpha=-1`` (no weighting) is ``None`` in longtail.
* ``zlpr``: a line-by-line port of the author's
  ``multilabel_categorical_crossentropy`` (J. Su, kexue.fm/archives/7359;
  bert4keras ``backend.py``), with its ``1e12`` masking and the appended zero
  logit, mean over the batch.  With a label prior it is given
  ``z + tau * log(pi / (1 - pi))`` and the gradient is still taken w.r.t. ``z``.
* ``ldam``: a port of ``LDAMLoss`` from kaidic/LDAM-DRW ``losses.py`` (the
  CUDA tensors made CPU float64; ``reduction`` passed through to
  ``F.cross_entropy``, whose default ``"mean"`` the original uses):
  ``m = 1/sqrt(sqrt(n))``, ``m *= max_m / max(m)``,
  ``output = where(onehot, z - m_y, z)``,
  ``F.cross_entropy(s * output, y, weight=w, reduction=...)``.

The script prints a Rust source file (``tests/golden/losses_values.rs``) to
stdout.  Inputs come from ``numpy.random.default_rng(20261121)``, so the output
is deterministic.

Regenerate with (from the crate root)::

    pip install numpy torch torchvision && python3 tests/golden/generate_losses.py > tests/golden/losses_values.rs

Generated with torch 2.15.0, torchvision 0.29.2 (CPU, float64), numpy 2.4.6, Python 3.11.7.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import sigmoid_focal_loss

torch.set_default_dtype(torch.float64)
SEED = 20261121
CASES = []


# --------------------------------------------------------------------------
# Ports of the reference implementations
# --------------------------------------------------------------------------
def multilabel_categorical_crossentropy(y_true, y_pred):
    """J. Su's ZLPR loss, as published (Keras backend ported to torch)."""
    y_pred = (1 - 2 * y_true) * y_pred
    y_pred_neg = y_pred - y_true * 1e12
    y_pred_pos = y_pred - (1 - y_true) * 1e12
    zeros = torch.zeros_like(y_pred[..., :1])
    y_pred_neg = torch.cat([y_pred_neg, zeros], dim=-1)
    y_pred_pos = torch.cat([y_pred_pos, zeros], dim=-1)
    neg_loss = torch.logsumexp(y_pred_neg, dim=-1)
    pos_loss = torch.logsumexp(y_pred_pos, dim=-1)
    return neg_loss + pos_loss


class LDAMLoss(torch.nn.Module):
    """kaidic/LDAM-DRW losses.py, on CPU in float64 (reduction passed through)."""

    def __init__(self, cls_num_list, max_m=0.5, weight=None, s=30, reduction="mean"):
        super().__init__()
        m_list = 1.0 / np.sqrt(np.sqrt(cls_num_list))
        m_list = m_list * (max_m / np.max(m_list))
        self.m_list = torch.tensor(m_list)
        assert s > 0
        self.s = s
        self.weight = weight
        self.reduction = reduction

    def forward(self, x, target):
        index = torch.zeros_like(x, dtype=torch.uint8)
        index.scatter_(1, target.data.view(-1, 1), 1)
        index_float = index.type(torch.float64)
        batch_m = torch.matmul(self.m_list[None, :], index_float.transpose(0, 1))
        batch_m = batch_m.view((-1, 1))
        x_m = x - batch_m
        output = torch.where(index.bool(), x_m, x)
        return F.cross_entropy(self.s * output, target, weight=self.weight, reduction=self.reduction)


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------
def record(name, kind, z, zt, loss, reduction, **fields):
    loss.sum().backward()
    loss_v = loss.detach().numpy().reshape(-1)
    grad_v = zt.grad.detach().numpy().reshape(-1)
    assert np.all(np.isfinite(loss_v)) and np.all(np.isfinite(grad_v)), name
    z = np.asarray(z)
    CASES.append(dict(name=name, kind=kind, batch=z.shape[0], classes=1 if z.ndim == 1 else z.shape[1],
                      logits=z.reshape(-1), reduction=reduction, loss=loss_v, grad=grad_v, **fields))


def bce(name, z, y, weights=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    w = None if weights is None else torch.tensor(weights)
    loss = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), weight=w, reduction=reduction)
    record(name, "bce", z, zt, loss, reduction, targets=y, sample_weights=weights)


def focal(name, z, y, alpha, gamma, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    loss = sigmoid_focal_loss(zt, torch.tensor(y), alpha=alpha, gamma=gamma, reduction=reduction)
    record(name, "focal", z, zt, loss, reduction, targets=y, alpha=alpha, gamma=gamma)


def zlpr(name, z, y, prior=None, tau=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    inp = zt
    if prior is not None:
        p = np.asarray(prior)
        inp = zt + tau * torch.tensor(np.log(p / (1 - p)))
    per = multilabel_categorical_crossentropy(torch.tensor(y), inp)
    loss = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    record(name, "zlpr", z, zt, loss, reduction, targets=y.reshape(-1),
           prior_tau=None if prior is None else (list(prior), tau))


def ldam(name, z, labels, counts, max_m=0.5, s=30.0, class_weights=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    w = None if class_weights is None else torch.tensor(class_weights)
    loss = LDAMLoss(counts, max_m=max_m, weight=w, s=s, reduction=reduction)(zt, torch.tensor(labels))
    record(name, "ldam", z, zt, loss, reduction, labels=[int(v) for v in labels], counts=list(counts),
           max_margin=max_m, scale=s, class_weights=class_weights)


def short(rng, lo, hi, n):
    """Decimals short enough to be exact as written in Rust."""
    return [float(v) for v in np.round(rng.uniform(lo, hi, size=n), 6)]


def main():
    rng = np.random.default_rng(SEED)

    # Binary logits with saturated entries planted (±30, ±1e4).
    z = rng.normal(0.0, 3.0, size=10)
    z[0], z[1], z[2], z[3] = 30.0, -30.0, 1e4, -1e4
    hard = rng.integers(0, 2, size=10).astype(np.float64)
    hard[0], hard[1], hard[2], hard[3] = 1.0, 1.0, 0.0, 0.0
    soft = np.array(short(rng, 0.0, 1.0, 10))
    weights = short(rng, 0.2, 2.0, 10)
    bce("bce_hard_mean", z, hard)
    bce("bce_soft_mean", z, soft)
    bce("bce_hard_weighted_sum", z, hard, weights, reduction="sum")
    bce("bce_soft_weighted_none", z, soft, weights, reduction="none")

    zf = rng.normal(0.0, 2.0, size=12)
    hard_f = rng.integers(0, 2, size=12).astype(np.float64)
    soft_f = np.array(short(rng, 0.0, 1.0, 12))
    focal("focal_default_mean", zf, hard_f, 0.25, 2.0)
    focal("focal_default_sum", zf, hard_f, 0.25, 2.0, reduction="sum")
    focal("focal_no_alpha_gamma_0.5_mean", zf, hard_f, -1.0, 0.5)
    focal("focal_alpha_0.6_gamma_1_soft_none", zf, soft_f, 0.6, 1.0, reduction="none")
    focal("focal_no_alpha_gamma_0_soft_sum", zf, soft_f, -1.0, 0.0, reduction="sum")
    focal("focal_alpha_0.25_gamma_3_soft_mean", zf, soft_f, 0.25, 3.0)

    # ZLPR: rows with no positive (0) and no negative (1) planted.
    B, K = 7, 6
    zz = rng.normal(0.0, 3.0, size=(B, K))
    yz = rng.integers(0, 2, size=(B, K)).astype(np.float64)
    yz[0, :] = 0.0
    yz[1, :] = 1.0
    zz[2, 0] = 25.0
    prior = short(rng, 0.01, 0.6, K)
    zlpr("zlpr_mean", zz, yz)
    zlpr("zlpr_sum", zz, yz, reduction="sum")
    zlpr("zlpr_none", zz, yz, reduction="none")
    zlpr("zlpr_label_prior_tau_1_mean", zz, yz, prior=prior, tau=1.0)
    zlpr("zlpr_label_prior_tau_0.5_none", zz, yz, prior=prior, tau=0.5, reduction="none")

    # LDAM: long-tailed counts; logits of order 1/s as from normalised features.
    counts = [1000.0, 400.0, 120.0, 30.0, 5.0]
    B, K = 8, 5
    zl = rng.normal(0.0, 0.3, size=(B, K))
    yl = rng.integers(0, K, size=B)
    yl[:5] = [0, 1, 2, 3, 4]
    cw = short(rng, 0.2, 3.0, K)
    ldam("ldam_default_mean", zl, yl, counts)
    ldam("ldam_class_weights_mean", zl, yl, counts, class_weights=cw)
    ldam("ldam_max_m_0.3_s_10_class_weights_sum", zl, yl, counts, max_m=0.3, s=10.0, class_weights=cw,
         reduction="sum")
    ldam("ldam_s_1_none", zl * 5.0, yl, counts, s=1.0, reduction="none")

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


def opt(v):
    return "None" if v is None else "Some(" + v + ")"


HEADER = """\
/// One peer-library loss call and its result.
pub struct Case {
    /// What the case exercises.
    pub name: &'static str,
    /// "bce", "focal", "zlpr" or "ldam".
    pub kind: &'static str,
    /// Batch size B.
    pub batch: usize,
    /// Number of classes K (1 for the binary losses, whose logits are `[B]`).
    pub classes: usize,
    /// Logits, row-major `[B, K]`.
    pub logits: &'static [f64],
    /// Binary targets `[B]` (bce, focal) or multi-hot `[B, K]` (zlpr); empty for ldam.
    pub targets: &'static [f64],
    /// Per-row weights (bce), if any.
    pub sample_weights: Option<&'static [f64]>,
    /// Focal `alpha` as given to torchvision (`-1` for none) and `gamma`.
    pub alpha_gamma: Option<(f64, f64)>,
    /// ZLPR label prior and `tau`, if the logits were adjusted.
    pub prior_tau: Option<(&'static [f64], f64)>,
    /// LDAM labels, class counts, `max_m`, `s` and class weights.
    pub ldam: Option<Ldam>,
    /// "mean", "sum" or "none".
    pub reduction: &'static str,
    /// The loss: one value for mean/sum, B values for none.
    pub loss: &'static [f64],
    /// Gradient of the sum of `loss` entries w.r.t. the logits, row-major.
    pub grad: &'static [f64],
}

/// The LDAM parameters of a case.
pub struct Ldam {
    /// Hard labels (length B).
    pub labels: &'static [usize],
    /// Class counts `n_k`.
    pub counts: &'static [f64],
    /// `max_m`.
    pub max_margin: f64,
    /// `s`.
    pub scale: f64,
    /// `weight=`, if any.
    pub class_weights: Option<&'static [f64]>,
}
"""


def emit():
    torch_version = torch.__version__.split("+")[0]
    tv_version = torchvision.__version__.split("+")[0]
    out = [f"// @generated by tests/golden/generate_losses.py (torch {torch_version}, "
           f"torchvision {tv_version}, float64). Do not edit.\n", HEADER, "pub const CASES: &[Case] = &[\n"]
    for c in CASES:
        kind = c["kind"]
        out.append("    Case {\n")
        out.append(f"        name: \"{c['name']}\",\n")
        out.append(f"        kind: \"{kind}\",\n")
        out.append(f"        batch: {c['batch']},\n")
        out.append(f"        classes: {c['classes']},\n")
        out.append(f"        logits: {farr(c['logits'])},\n")
        out.append(f"        targets: {farr(c.get('targets', []))},\n")
        sw = c.get("sample_weights")
        out.append(f"        sample_weights: {opt(None if sw is None else farr(sw))},\n")
        ag = None if kind != "focal" else f"({f(c['alpha'])}, {f(c['gamma'])})"
        out.append(f"        alpha_gamma: {opt(ag)},\n")
        pt = c.get("prior_tau")
        out.append(f"        prior_tau: {opt(None if pt is None else '(' + farr(pt[0]) + ', ' + f(pt[1]) + ')')},\n")
        if kind == "ldam":
            cw = c["class_weights"]
            ldam_v = ("Ldam { labels: &[" + ", ".join(str(y) for y in c["labels"]) + "], "
                      f"counts: {farr(c['counts'])}, max_margin: {f(c['max_margin'])}, scale: {f(c['scale'])}, "
                      f"class_weights: {opt(None if cw is None else farr(cw))} }}")
        else:
            ldam_v = None
        out.append(f"        ldam: {opt(ldam_v)},\n")
        out.append(f"        reduction: \"{c['reduction']}\",\n")
        out.append(f"        loss: {farr(c['loss'])},\n")
        out.append(f"        grad: {farr(c['grad'])},\n")
        out.append("    },\n")
    out.append("];\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
