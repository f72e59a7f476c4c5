#!/usr/bin/env python3
"""Golden reference values for the VS, Poly-1, positive-weighted BCE and asymmetric losses.

What it computes
----------------
Every case runs in float64 on CPU and records the loss and the gradient of
``loss.sum()`` with respect to the logits ``z`` (torch autograd):

* ``vs``: a line-by-line port of ``VSLoss`` from the authors' VS-Loss
  repository (``loss.py``; Kini et al., NeurIPS 2021).  The original builds
  ``torch.cuda.FloatTensor`` (float32) tensors; here they are CPU float64, and
  ``reduction`` is passed through to ``F.cross_entropy`` (the original uses
  its default ``"mean"``).  ``Delta_list = (1/n)^gamma / min((1/n)^gamma)``
  divides the logits, ``iota_list = tau * log(n / sum(n))`` is added.
* ``poly1``: the paper's ``poly1_cross_entropy`` (Leng et al., ICLR 2022,
  Listing 1, TensorFlow) ported to torch: ``pt = sum(onehot * softmax(z'))``,
  ``CE + epsilon * (1 - pt)`` per row.  With class weights each row is scaled
  by ``w_y`` and ``"mean"`` divides by ``sum_i w_{y_i}`` (PyTorch's weighted
  mean); with logit adjustment ``z' = z + tau * log(pi / sum(pi))`` in both
  terms, the gradient still taken w.r.t. ``z``.
* ``bce_pos_weight``: ``torch.nn.functional.binary_cross_entropy_with_logits(
  z, y, weight=s, pos_weight=v, reduction=...)`` over ``[B, K]`` (``v`` of
  length ``K``) and over ``[B]`` (``v`` of length 1).  Weighted cases use
  ``"sum"`` or ``"none"``: torch's weighted ``"mean"`` divides by the element
  count where longtail divides by the weights' sum.
* ``asl``: a line-by-line port of ``AsymmetricLoss`` from Alibaba-MIIL/ASL
  (``src/loss_functions/losses.py``; Ridnik et al., ICCV 2021) with
  ``disable_torch_grad_focal_loss=False``, so that autograd differentiates the
  focusing weights too (the exact gradient of the loss; the default ``True``
  detaches them).  The original returns ``-loss.sum()``; ``reduction`` selects
  that sum, its mean over the ``B*K`` decisions, or per-row sums (``"none"``).
  Logits stay where the ``eps=1e-8`` clamp inside its logs is inactive.

The script prints a Rust source file (``tests/golden/longtail_values.rs``) to
stdout.  Inputs come from ``numpy.random.default_rng(20261207)``, so the output
is deterministic.

Regenerate with (from the crate root)::

    pip install numpy torch && python3 tests/golden/generate_longtail.py > tests/golden/longtail_values.rs

Generated with torch 2.15.0 (CPU, float64), numpy 2.4.6, Python 3.11.7.
"""

import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
SEED = 20261207
CASES = []


# --------------------------------------------------------------------------
# Ports of the reference implementations
# --------------------------------------------------------------------------
class VSLoss(nn.Module):
    """The authors' VSLoss (VS-Loss repository, loss.py), CPU float64, reduction passed through."""

    def __init__(self, cls_num_list, gamma=0.3, tau=1.0, weight=None, reduction="mean"):
        super(VSLoss, self).__init__()

        cls_probs = [cls_num / sum(cls_num_list) for cls_num in cls_num_list]
        temp = (1.0 / np.array(cls_num_list)) ** gamma
        temp = temp / np.min(temp)

        iota_list = tau * np.log(cls_probs)
        Delta_list = temp

        self.iota_list = torch.tensor(iota_list)
        self.Delta_list = torch.tensor(Delta_list)
        self.weight = weight
        self.reduction = reduction

    def forward(self, x, target):
        output = x / self.Delta_list + self.iota_list

        return F.cross_entropy(output, target, weight=self.weight, reduction=self.reduction)


class AsymmetricLoss(nn.Module):
    """Alibaba-MIIL/ASL AsymmetricLoss (losses.py), with a reduction added after its -loss."""

    def __init__(self, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8, disable_torch_grad_focal_loss=True,
                 reduction="sum"):
        super(AsymmetricLoss, self).__init__()

        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.disable_torch_grad_focal_loss = disable_torch_grad_focal_loss
        self.eps = eps
        self.reduction = reduction

    def forward(self, x, y):
        """"
        Parameters
        ----------
        x: input logits
        y: targets (multi-label binarized vector)
        """

        # Calculating Probabilities
        x_sigmoid = torch.sigmoid(x)
        xs_pos = x_sigmoid
        xs_neg = 1 - x_sigmoid

        # Asymmetric Clipping
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)

        # Basic CE calculation
        los_pos = y * torch.log(xs_pos.clamp(min=self.eps))
        los_neg = (1 - y) * torch.log(xs_neg.clamp(min=self.eps))
        loss = los_pos + los_neg

        # Asymmetric Focusing
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(False)
            pt0 = xs_pos * y
            pt1 = xs_neg * (1 - y)  # pt = p if t > 0 else 1-p
            pt = pt0 + pt1
            one_sided_gamma = self.gamma_pos * y + self.gamma_neg * (1 - y)
            one_sided_w = torch.pow(1 - pt, one_sided_gamma)
            if self.disable_torch_grad_focal_loss:
                torch.set_grad_enabled(True)
            loss *= one_sided_w

        loss = -loss
        return {"sum": loss.sum(), "mean": loss.mean(), "none": loss.sum(dim=1)}[self.reduction]


def poly1_cross_entropy(logits, labels, epsilon):
    """Leng et al. 2022, Listing 1 (TensorFlow), in torch: per-row Poly-1."""
    num_classes = logits.shape[-1]
    labels_onehot = F.one_hot(labels, num_classes).to(logits.dtype)
    pt = torch.sum(labels_onehot * F.softmax(logits, dim=-1), dim=-1)
    CE = F.cross_entropy(logits, labels, reduction="none")
    Poly1 = CE + epsilon * (1 - pt)
    return Poly1


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


def vs(name, z, labels, counts, gamma=0.3, tau=1.0, class_weights=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    w = None if class_weights is None else torch.tensor(class_weights)
    loss = VSLoss(counts, gamma=gamma, tau=tau, weight=w, reduction=reduction)(zt, torch.tensor(labels))
    record(name, "vs", z, zt, loss, reduction, labels=[int(v) for v in labels], counts=list(counts),
           gamma=gamma, tau=tau, class_weights=class_weights)


def poly1(name, z, labels, epsilon, class_weights=None, prior=None, tau=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    inp = zt
    if prior is not None:
        p = np.asarray(prior)
        inp = zt + tau * torch.tensor(np.log(p / p.sum()))
    y = torch.tensor(labels)
    per = poly1_cross_entropy(inp, y, epsilon)
    if class_weights is not None:
        wy = torch.tensor(class_weights)[y]
        per = wy * per
        denom = wy.sum()
    else:
        denom = torch.tensor(float(len(labels)))
    loss = {"mean": per.sum() / denom, "sum": per.sum(), "none": per}[reduction]
    record(name, "poly1", z, zt, loss, reduction, labels=[int(v) for v in labels], epsilon=epsilon,
           class_weights=class_weights, prior_tau=None if prior is None else (list(prior), tau))


def bce_pos_weight(name, z, y, pos_weight, weights=None, reduction="mean"):
    zt = torch.tensor(z, requires_grad=True)
    w = None if weights is None else torch.tensor(weights)
    if w is not None and np.asarray(z).ndim == 2:
        w = w[:, None]  # one weight per row, broadcast over its K decisions
    loss = F.binary_cross_entropy_with_logits(zt, torch.tensor(y), weight=w,
                                              pos_weight=torch.tensor(pos_weight), reduction=reduction)
    if reduction == "none" and np.asarray(z).ndim == 2:
        loss = loss.sum(dim=1)  # longtail's per-sample loss sums a row's K decisions
    record(name, "bce_pos_weight", z, zt, loss, reduction, targets=np.asarray(y).reshape(-1),
           sample_weights=weights, pos_weight=list(pos_weight))


def asl(name, z, y, gamma_pos, gamma_neg, clip, reduction="sum"):
    zt = torch.tensor(z, requires_grad=True)
    loss = AsymmetricLoss(gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip, disable_torch_grad_focal_loss=False,
                          reduction=reduction)(zt, torch.tensor(y))
    record(name, "asl", z, zt, loss, reduction, targets=np.asarray(y).reshape(-1), asl=(gamma_pos, gamma_neg, clip))


def short(rng, lo, hi, n):
    """Decimals short enough to be exact as written in Rust."""
    return [float(v) for v in np.round(rng.uniform(lo, hi, size=n), 6)]


def main():
    rng = np.random.default_rng(SEED)

    # VS: long-tailed counts, every class a label somewhere.
    counts = [2000.0, 600.0, 150.0, 40.0, 7.0]
    B, K = 8, 5
    z = rng.normal(0.0, 2.0, size=(B, K))
    y = rng.integers(0, K, size=B)
    y[:5] = [0, 1, 2, 3, 4]
    cw = short(rng, 0.2, 3.0, K)
    vs("vs_default_mean", z, y, counts)
    vs("vs_gamma_0.2_tau_1.5_class_weights_mean", z, y, counts, gamma=0.2, tau=1.5, class_weights=cw)
    vs("vs_gamma_0.5_tau_0.5_class_weights_sum", z, y, counts, gamma=0.5, tau=0.5, class_weights=cw,
       reduction="sum")
    vs("vs_gamma_0_tau_1_none", z, y, counts, gamma=0.0, tau=1.0, reduction="none")
    vs("vs_gamma_0.3_tau_0_mean", z * 10.0, y, counts, gamma=0.3, tau=0.0)

    # Poly-1: eps in {-1, 1, 2}; a confident row planted.
    z = rng.normal(0.0, 2.0, size=(B, K))
    z[5, y[5]] = 12.0
    prior = [500.0, 200.0, 60.0, 15.0, 3.0]
    poly1("poly1_eps_1_mean", z, y, 1.0)
    poly1("poly1_eps_2_sum", z, y, 2.0, reduction="sum")
    poly1("poly1_eps_-1_none", z, y, -1.0, reduction="none")
    poly1("poly1_eps_1_class_weights_mean", z, y, 1.0, class_weights=cw)
    poly1("poly1_eps_2_logit_adjusted_tau_1_class_weights_mean", z, y, 2.0, class_weights=cw, prior=prior,
          tau=1.0)
    poly1("poly1_eps_0.5_logit_adjusted_tau_0.7_none", z, y, 0.5, prior=prior, tau=0.7, reduction="none")

    # BCE with pos_weight over [B, K]: multi-hot and soft targets, saturated logits planted.
    B, K = 6, 4
    z = rng.normal(0.0, 3.0, size=(B, K))
    z[0, 0], z[0, 1], z[1, 2], z[1, 3] = 30.0, -30.0, 1e4, -1e4
    hard = rng.integers(0, 2, size=(B, K)).astype(np.float64)
    hard[0, 0], hard[0, 1], hard[1, 2], hard[1, 3] = 1.0, 1.0, 0.0, 0.0
    soft = np.array(short(rng, 0.0, 1.0, B * K)).reshape(B, K)
    pw = short(rng, 0.5, 9.0, K)
    sw = short(rng, 0.2, 2.0, B)
    bce_pos_weight("bce_pos_weight_multi_hot_mean", z, hard, pw)
    bce_pos_weight("bce_pos_weight_soft_mean", z, soft, pw)
    bce_pos_weight("bce_pos_weight_multi_hot_weighted_sum", z, hard, pw, sw, reduction="sum")
    bce_pos_weight("bce_pos_weight_soft_weighted_none", z, soft, pw, sw, reduction="none")

    # BCE with pos_weight over a binary model's [B] logits: one value.
    zb = rng.normal(0.0, 3.0, size=9)
    zb[0], zb[1] = 40.0, -40.0
    yb = rng.integers(0, 2, size=9).astype(np.float64)
    yb[0], yb[1] = 0.0, 1.0
    sb = np.array(short(rng, 0.0, 1.0, 9))
    bce_pos_weight("bce_pos_weight_binary_hard_mean", zb, yb, [4.0])
    bce_pos_weight("bce_pos_weight_binary_soft_sum", zb, sb, [0.25], reduction="sum")

    # ASL over [B, K] multi-hot targets: easy negatives (p <= clip) planted; |z| < 15 keeps the
    # reference's eps clamp inactive.
    B, K = 6, 5
    z = np.clip(rng.normal(0.0, 3.0, size=(B, K)), -14.0, 14.0)
    y = rng.integers(0, 2, size=(B, K)).astype(np.float64)
    z[0, 0], y[0, 0] = -4.0, 0.0
    z[0, 1], y[0, 1] = -6.0, 0.0
    z[1, 0], y[1, 0] = 9.0, 0.0
    z[1, 1], y[1, 1] = -9.0, 1.0
    asl("asl_paper_sum", z, y, 0.0, 4.0, 0.05)
    asl("asl_class_defaults_mean", z, y, 1.0, 4.0, 0.05, reduction="mean")
    asl("asl_gamma_pos_2_gamma_neg_3_clip_0_none", z, y, 2.0, 3.0, 0.0, reduction="none")
    # (gamma_neg < 1 would make autograd of pow(0, gamma) at an easy negative NaN in the reference.)
    asl("asl_gamma_pos_0.5_gamma_neg_1.5_clip_0.2_sum", z, y, 0.5, 1.5, 0.2)
    asl("asl_gamma_0_clip_0.1_mean", z, y, 0.0, 0.0, 0.1, reduction="mean")

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
/// One reference loss call and its result.
pub struct Case {
    /// What the case exercises.
    pub name: &'static str,
    /// "vs", "poly1", "bce_pos_weight" or "asl".
    pub kind: &'static str,
    /// Batch size B.
    pub batch: usize,
    /// Number of classes K (1 for a binary model's `[B]` logits).
    pub classes: usize,
    /// Logits, row-major `[B, K]`.
    pub logits: &'static [f64],
    /// Hard labels (vs, poly1); empty for bce_pos_weight.
    pub labels: &'static [usize],
    /// Targets, row-major (bce_pos_weight, asl); empty otherwise.
    pub targets: &'static [f64],
    /// Per-row weights (bce_pos_weight), if any.
    pub sample_weights: Option<&'static [f64]>,
    /// VS class counts, `gamma` and `tau`.
    pub vs: Option<(&'static [f64], f64, f64)>,
    /// Poly-1 `epsilon`.
    pub epsilon: f64,
    /// Class weights (vs, poly1), if any.
    pub class_weights: Option<&'static [f64]>,
    /// Poly-1 logit adjustment: prior and `tau`, if any.
    pub prior_tau: Option<(&'static [f64], f64)>,
    /// `pos_weight=` (bce_pos_weight): K values, or 1 for `[B]` logits.
    pub pos_weight: Option<&'static [f64]>,
    /// ASL `gamma_pos`, `gamma_neg` and `clip`.
    pub asl: Option<(f64, f64, f64)>,
    /// "mean", "sum" or "none".
    pub reduction: &'static str,
    /// The loss: one value for mean/sum, B values for none.
    pub loss: &'static [f64],
    /// Gradient of the sum of `loss` entries w.r.t. the logits, row-major.
    pub grad: &'static [f64],
}
"""


def emit():
    torch_version = torch.__version__.split("+")[0]
    out = [f"// @generated by tests/golden/generate_longtail.py (torch {torch_version}, float64). Do not edit.\n",
           HEADER, "pub const CASES: &[Case] = &[\n"]
    for c in CASES:
        out.append("    Case {\n")
        out.append(f"        name: \"{c['name']}\",\n")
        out.append(f"        kind: \"{c['kind']}\",\n")
        out.append(f"        batch: {c['batch']},\n")
        out.append(f"        classes: {c['classes']},\n")
        out.append(f"        logits: {farr(c['logits'])},\n")
        out.append("        labels: &[" + ", ".join(str(v) for v in c.get("labels", [])) + "],\n")
        out.append(f"        targets: {farr(c.get('targets', []))},\n")
        sw = c.get("sample_weights")
        out.append(f"        sample_weights: {opt(None if sw is None else farr(sw))},\n")
        vs_v = None if c["kind"] != "vs" else f"({farr(c['counts'])}, {f(c['gamma'])}, {f(c['tau'])})"
        out.append(f"        vs: {opt(vs_v)},\n")
        out.append(f"        epsilon: {f(c.get('epsilon', 0.0))},\n")
        cw = c.get("class_weights")
        out.append(f"        class_weights: {opt(None if cw is None else farr(cw))},\n")
        pt = c.get("prior_tau")
        out.append(f"        prior_tau: {opt(None if pt is None else '(' + farr(pt[0]) + ', ' + f(pt[1]) + ')')},\n")
        pw = c.get("pos_weight")
        out.append(f"        pos_weight: {opt(None if pw is None else farr(pw))},\n")
        a = c.get("asl")
        out.append(f"        asl: {opt(None if a is None else '(' + ', '.join(f(v) for v in a) + ')')},\n")
        out.append(f"        reduction: \"{c['reduction']}\",\n")
        out.append(f"        loss: {farr(c['loss'])},\n")
        out.append(f"        grad: {farr(c['grad'])},\n")
        out.append("    },\n")
    out.append("];\n")
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
