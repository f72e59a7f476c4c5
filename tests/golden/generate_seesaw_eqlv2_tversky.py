#!/usr/bin/env python3
"""Golden reference values for the Seesaw, EQL v2 and Tversky losses.

What it computes
----------------
Every case runs in float64 on CPU and records the loss and the gradient of
``loss.sum()`` with respect to the logits ``z`` (torch autograd).  The two
stateful losses run a sequence of steps on one loss object, so the running
state and the order of its update are part of what is checked.

* ``seesaw``: a line-by-line port of ``seesaw_ce_loss`` and of the counting in
  ``SeesawLoss.forward`` from mmdet (``mmdet/models/losses/seesaw_loss.py``;
  Wang et al., CVPR 2021).  Changes: CPU instead of ``.cuda()``; the
  objectness branch (two extra logits and their cross-entropy) is left out, so
  every logit is a foreground class and ``cum_samples`` has ``K`` entries
  (as in mmpretrain's ``SeesawLoss``, which is the same without that branch);
  ``weight_reduce_loss`` is inlined (``loss * label_weights``, then
  ``mean``/``sum``/``none``); ``cum_samples`` is float64 (the reference's
  buffer is float32, whose count ratios carry float32 rounding).  Each step counts its labels into
  ``cum_samples`` *before* the loss, as the reference does.
* ``eqlv2``: a line-by-line port of ``EQLv2`` from the authors' repository
  (``tztztztztz/eqlv2``, ``mmdet/models/losses/eqlv2.py``; Tan et al.,
  CVPR 2021).  Changes: no background column (the reference's last logit is
  the background, with negative weight 1 and no gradient statistics; here every
  column is a class, so the ``[:-1]`` slices and ``cat([..., ones(1)])`` are
  dropped); no ``dist.all_reduce`` (one process).  The first step uses weights
  1, each step collects its gradient statistics *after* the loss.  Its
  reduction is ``sum / n_i`` ("mean"); "none" records the per-row sums of
  ``cls_loss * weight``.
* ``tversky``: a line-by-line port of ``TverskyLoss`` (with ``DiceLoss.forward``
  and ``soft_tversky_score``) from segmentation_models_pytorch
  (``segmentation_models_pytorch/losses/{tversky,dice,_functional}.py``) for
  ``[B, K]`` logits with no spatial axes, modes "multiclass" (softmax, hard
  labels) and "multilabel" (sigmoid, multi-hot targets); ``log_loss=False``,
  ``classes=None``, ``ignore_index=None``.

The script prints a Rust source file
(``tests/golden/seesaw_eqlv2_tversky_values.rs``) to stdout.  Inputs come from
``numpy.random.default_rng(20261207)``, so the output is deterministic.

Regenerate with (from the crate root)::

    pip install numpy torch && python3 tests/golden/generate_seesaw_eqlv2_tversky.py > tests/golden/seesaw_eqlv2_tversky_values.rs

Generated with torch 2.15.0 (CPU, float64), numpy 2.4.6, Python 3.11.7.
"""

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
SEED = 20261207
CASES = []


# --------------------------------------------------------------------------
# Ports of the reference implementations
# --------------------------------------------------------------------------
def seesaw_ce_loss(cls_score, labels, label_weights, cum_samples, num_classes, p, q, eps, reduction="mean"):
    assert cls_score.size(-1) == num_classes
    assert len(cum_samples) == num_classes

    onehot_labels = F.one_hot(labels, num_classes)
    seesaw_weights = cls_score.new_ones(onehot_labels.size())

    # mitigation factor
    if p > 0:
        sample_ratio_matrix = cum_samples[None, :].clamp(min=1) / cum_samples[:, None].clamp(min=1)
        index = (sample_ratio_matrix < 1.0).float()
        sample_weights = sample_ratio_matrix.pow(p) * index + (1 - index)
        mitigation_factor = sample_weights[labels.long(), :]
        seesaw_weights = seesaw_weights * mitigation_factor

    # compensation factor
    if q > 0:
        scores = F.softmax(cls_score.detach(), dim=1)
        self_scores = scores[torch.arange(0, len(scores)).long(), labels.long()]
        score_matrix = scores / self_scores[:, None].clamp(min=eps)
        index = (score_matrix > 1.0).float()
        compensation_factor = score_matrix.pow(q) * index + (1 - index)
        seesaw_weights = seesaw_weights * compensation_factor

    cls_score = cls_score + (seesaw_weights.log() * (1 - onehot_labels))

    loss = F.cross_entropy(cls_score, labels, weight=None, reduction="none")

    # weight_reduce_loss(loss, weight=label_weights, reduction=reduction, avg_factor=None)
    if label_weights is not None:
        loss = loss * label_weights.float()
    if reduction == "mean":
        loss = loss.mean()
    elif reduction == "sum":
        loss = loss.sum()
    return loss


class SeesawLoss:
    """mmdet's SeesawLoss without the objectness branch."""

    def __init__(self, p=0.8, q=2.0, num_classes=1203, eps=1e-2, reduction="mean"):
        self.p = p
        self.q = q
        self.num_classes = num_classes
        self.eps = eps
        self.reduction = reduction
        # cumulative samples for each category
        self.cum_samples = torch.zeros(self.num_classes, dtype=torch.float64)

    def forward(self, cls_score, labels, label_weights):
        # accumulate the samples for each category
        unique_labels = labels.unique()
        for u_l in unique_labels:
            inds_ = labels == u_l.item()
            self.cum_samples[u_l] += inds_.sum()
        return seesaw_ce_loss(
            cls_score, labels, label_weights, self.cum_samples[: self.num_classes],
            self.num_classes, self.p, self.q, self.eps, self.reduction,
        )


class EQLv2:
    """The authors' EQLv2 without the background column and all_reduce."""

    def __init__(self, num_classes, gamma=12, mu=0.8, alpha=4.0, reduction="mean"):
        self.num_classes = num_classes
        self.gamma = gamma
        self.mu = mu
        self.alpha = alpha
        self.reduction = reduction
        self._pos_grad = None
        self._neg_grad = None
        self.pos_neg = None

        def _func(x, gamma, mu):
            return 1 / (1 + torch.exp(-gamma * (x - mu)))

        self.map_func = lambda x: _func(x, self.gamma, self.mu)

    def forward(self, cls_score, label, target=None):
        self.n_i, self.n_c = cls_score.size()

        def expand_label(pred, gt_classes):
            target = pred.new_zeros(self.n_i, self.n_c)
            target[torch.arange(self.n_i), gt_classes] = 1
            return target

        if target is None:
            target = expand_label(cls_score, label)

        pos_w, neg_w = self.get_weight(cls_score)

        weight = pos_w * target + neg_w * (1 - target)

        cls_loss = F.binary_cross_entropy_with_logits(cls_score, target, reduction="none")
        if self.reduction == "none":
            out = torch.sum(cls_loss * weight, dim=1)
        elif self.reduction == "sum":
            out = torch.sum(cls_loss * weight)
        else:
            out = torch.sum(cls_loss * weight) / self.n_i

        self.collect_grad(cls_score.detach(), target.detach(), weight.detach())
        return out

    def collect_grad(self, cls_score, target, weight):
        prob = torch.sigmoid(cls_score)
        grad = target * (prob - 1) + (1 - target) * prob
        grad = torch.abs(grad)

        pos_grad = torch.sum(grad * target * weight, dim=0)
        neg_grad = torch.sum(grad * (1 - target) * weight, dim=0)

        self._pos_grad += pos_grad
        self._neg_grad += neg_grad
        self.pos_neg = self._pos_grad / (self._neg_grad + 1e-10)

    def get_weight(self, cls_score):
        # we do not have information about pos grad and neg grad at beginning
        if self._pos_grad is None:
            self._pos_grad = cls_score.new_zeros(self.num_classes)
            self._neg_grad = cls_score.new_zeros(self.num_classes)
            neg_w = cls_score.new_ones((self.n_i, self.n_c))
            pos_w = cls_score.new_ones((self.n_i, self.n_c))
        else:
            neg_w = self.map_func(self.pos_neg)
            pos_w = 1 + self.alpha * (1 - neg_w)
            neg_w = neg_w.view(1, -1).expand(self.n_i, self.n_c)
            pos_w = pos_w.view(1, -1).expand(self.n_i, self.n_c)
        return pos_w, neg_w


def soft_tversky_score(output, target, alpha, beta, smooth=0.0, eps=1e-7, dims=None):
    assert output.size() == target.size()
    if dims is not None:
        intersection = torch.sum(output * target, dim=dims)  # TP
        fp = torch.sum(output * (1.0 - target), dim=dims)
        fn = torch.sum((1 - output) * target, dim=dims)
    else:
        intersection = torch.sum(output * target)  # TP
        fp = torch.sum(output * (1.0 - target))
        fn = torch.sum((1 - output) * target)

    tversky_score = (intersection + smooth) / (intersection + alpha * fp + beta * fn + smooth).clamp_min(eps)
    return tversky_score


def tversky_loss(y_pred, y_true, mode, smooth=0.0, eps=1e-7, alpha=0.5, beta=0.5, gamma=1.0):
    """DiceLoss.forward with TverskyLoss's compute_score and aggregate_loss."""
    assert y_true.size(0) == y_pred.size(0)
    if mode == "multiclass":
        y_pred = y_pred.log_softmax(dim=1).exp()
    else:
        y_pred = F.logsigmoid(y_pred).exp()

    bs = y_true.size(0)
    num_classes = y_pred.size(1)
    dims = (0, 2)

    if mode == "multiclass":
        y_true = y_true.view(bs, -1)
        y_pred = y_pred.view(bs, num_classes, -1)
        y_true = F.one_hot(y_true, num_classes)  # N,H*W -> N,H*W, C
        y_true = y_true.permute(0, 2, 1)  # H, C, H*W

    if mode == "multilabel":
        y_true = y_true.view(bs, num_classes, -1)
        y_pred = y_pred.view(bs, num_classes, -1)

    scores = soft_tversky_score(y_pred, y_true.type_as(y_pred), alpha, beta, smooth=smooth, eps=eps, dims=dims)
    loss = 1.0 - scores

    mask = y_true.sum(dims) > 0
    loss *= mask.to(loss.dtype)

    return loss.mean() ** gamma


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------
def record(name, kind, steps, **fields):
    CASES.append(dict(name=name, kind=kind, steps=steps, **fields))


def step_record(z, labels, targets, weights, loss):
    zt = torch.tensor(z, requires_grad=True)
    value = loss(zt)
    value.sum().backward()
    return dict(
        logits=z.ravel().tolist(), labels=list(labels), targets=[] if targets is None else targets.ravel().tolist(),
        weights=None if weights is None else list(weights),
        loss=np.atleast_1d(value.detach().numpy()).tolist(), grad=zt.grad.numpy().ravel().tolist(),
    )


def seesaw(name, rng, batches, classes, label_draws, p=0.8, q=2.0, eps=1e-2, reduction="mean", weighted=False, scale=2.0):
    ref = SeesawLoss(p=p, q=q, num_classes=classes, eps=eps, reduction=reduction)
    steps = []
    for labels in label_draws:
        z = rng.normal(0.0, scale, (len(labels), classes))
        # Multiples of 1/8, exact in float32: the reference casts label_weights with .float().
        w = np.round(rng.uniform(0.0, 2.0, len(labels)) * 8) / 8 if weighted else None
        lab = torch.tensor(labels)
        wt = None if w is None else torch.tensor(w)
        steps.append(step_record(z, labels, None, w, lambda zt: ref.forward(zt, lab, wt)))
        steps[-1]["state"] = [int(c) for c in ref.cum_samples.tolist()]
    record(name, "seesaw", steps, classes=classes, params=[p, q, eps], reduction=reduction)


def eqlv2(name, rng, classes, label_draws, gamma=12.0, mu=0.8, alpha=4.0, reduction="mean", multi_hot=False, scale=2.0):
    ref = EQLv2(classes, gamma=gamma, mu=mu, alpha=alpha, reduction=reduction)
    steps = []
    for labels in label_draws:
        z = rng.normal(-1.0, scale, (len(labels), classes))
        if multi_hot:
            y = (rng.uniform(size=(len(labels), classes)) < 0.3).astype(np.float64)
            y[np.arange(len(labels)), labels] = 1.0
            yt = torch.tensor(y)
        else:
            y, yt = None, None
        lab = torch.tensor(labels)
        steps.append(step_record(z, labels if not multi_hot else [], y, None, lambda zt: ref.forward(zt, lab, yt)))
        steps[-1]["state"] = ref._pos_grad.tolist() + ref._neg_grad.tolist()
    record(name, "eqlv2", steps, classes=classes, params=[gamma, mu, alpha], reduction=reduction)


def tversky(name, rng, mode, batch, classes, alpha=0.5, beta=0.5, smooth=0.0, eps=1e-7, gamma=1.0, missing=(), scale=2.0):
    z = rng.normal(0.0, scale, (batch, classes))
    if mode == "multiclass":
        present = [k for k in range(classes) if k not in missing]
        labels = [present[i % len(present)] for i in range(batch)]
        rng.shuffle(labels)
        y, yt = None, torch.tensor(labels)
    else:
        labels = []
        y = (rng.uniform(size=(batch, classes)) < 0.35).astype(np.float64)
        y[:, list(missing)] = 0.0
        yt = torch.tensor(y)
    step = step_record(z, labels, y, None, lambda zt: tversky_loss(zt, yt, mode, smooth, eps, alpha, beta, gamma))
    record(name, "tversky_" + mode, [step], classes=classes, params=[alpha, beta, smooth, eps, gamma], reduction="mean")


def main():
    rng = np.random.default_rng(SEED)
    draws = [[0, 0, 0, 1, 0, 2, 0, 1], [0, 1, 0, 0, 3, 0, 0, 4], [2, 0, 0, 1, 0, 0, 0, 0]]
    seesaw("seesaw_default_mean", rng, None, 5, draws)
    seesaw("seesaw_sum_weighted", rng, None, 5, draws, reduction="sum", weighted=True)
    seesaw("seesaw_none_weighted", rng, None, 5, draws, reduction="none", weighted=True)
    seesaw("seesaw_mitigation_only", rng, None, 4, [[0, 0, 0, 1, 3], [0, 0, 2, 0, 0]], p=1.5, q=0.0)
    seesaw("seesaw_compensation_only", rng, None, 4, [[0, 0, 0, 1, 3], [0, 0, 2, 0, 0]], p=0.0, q=1.0, scale=4.0)
    seesaw("seesaw_small_eps_confident", rng, None, 6, [[0, 1, 2, 3, 4, 5, 0, 0]], eps=1e-4, scale=6.0)
    eq_draws = [[0, 0, 1, 0, 2, 0], [0, 3, 0, 0, 1, 0], [0, 0, 0, 2, 0, 0], [1, 0, 0, 0, 0, 3]]
    eqlv2("eqlv2_default_mean", rng, 4, eq_draws)
    eqlv2("eqlv2_params_sum", rng, 4, eq_draws, gamma=6.0, mu=0.5, alpha=2.0, reduction="sum")
    eqlv2("eqlv2_none", rng, 4, eq_draws[:3], reduction="none")
    eqlv2("eqlv2_multi_hot", rng, 5, [[0, 1, 0, 2, 0], [0, 0, 3, 0, 4], [1, 0, 0, 0, 0]], multi_hot=True)
    tversky("tversky_dice_multiclass", rng, "multiclass", 9, 4)
    tversky("tversky_multiclass_fn_heavy", rng, "multiclass", 10, 5, alpha=0.3, beta=0.7, missing=(3,))
    tversky("tversky_multiclass_smooth_gamma", rng, "multiclass", 7, 3, alpha=0.7, beta=0.3, smooth=1.0, gamma=1.5)
    tversky("tversky_multilabel", rng, "multilabel", 8, 4, alpha=0.4, beta=0.6, missing=(2,))
    tversky("tversky_multilabel_smooth", rng, "multilabel", 6, 3, smooth=0.5, gamma=2.0)


# --------------------------------------------------------------------------
# Rust emission
# --------------------------------------------------------------------------
def f(x):
    r = repr(float(x))
    if r in ("inf", "-inf", "nan"):
        raise ValueError(r)
    return r if ("." in r or "e" in r) else r + ".0"


def farr(xs):
    return "&[" + ", ".join(f(x) for x in xs) + "]"


def emit():
    out = []
    out.append(f"// @generated by tests/golden/generate_seesaw_eqlv2_tversky.py (torch {torch.__version__.split('+')[0]}, float64). Do not edit.")
    out.append("""/// One step of a case: its batch and the reference's result.
pub struct Step {
    /// Logits, row-major `[B, K]`.
    pub logits: &'static [f64],
    /// Hard labels; empty for multi-hot targets.
    pub labels: &'static [usize],
    /// Multi-hot targets, row-major `[B, K]`; empty for hard labels.
    pub targets: &'static [f64],
    /// Per-row weights (seesaw), if any.
    pub sample_weights: Option<&'static [f64]>,
    /// The loss: one value for mean/sum, B values for none.
    pub loss: &'static [f64],
    /// Gradient of the sum of `loss` entries w.r.t. the logits, row-major.
    pub grad: &'static [f64],
    /// The running state after the step: seesaw counts `N_k`; eqlv2 positive then negative
    /// gradient sums (2K values); empty for tversky.
    pub state: &'static [f64],
}
/// A sequence of steps on one loss object (one step for tversky).
pub struct Case {
    /// What the case exercises.
    pub name: &'static str,
    /// "seesaw", "eqlv2", "tversky_multiclass" or "tversky_multilabel".
    pub kind: &'static str,
    /// Number of classes K.
    pub classes: usize,
    /// seesaw `[p, q, eps]`; eqlv2 `[gamma, mu, alpha]`; tversky `[alpha, beta, smooth, eps, gamma]`.
    pub params: &'static [f64],
    /// "mean", "sum" or "none".
    pub reduction: &'static str,
    /// The steps, in order.
    pub steps: &'static [Step],
}
pub const CASES: &[Case] = &[""")
    for c in CASES:
        out.append("    Case {")
        out.append(f'        name: "{c["name"]}",')
        out.append(f'        kind: "{c["kind"]}",')
        out.append(f"        classes: {c['classes']},")
        out.append(f"        params: {farr(c['params'])},")
        out.append(f'        reduction: "{c["reduction"]}",')
        out.append("        steps: &[")
        for s in c["steps"]:
            out.append("            Step {")
            out.append(f"                logits: {farr(s['logits'])},")
            out.append("                labels: &[" + ", ".join(str(v) for v in s["labels"]) + "],")
            out.append(f"                targets: {farr(s['targets'])},")
            out.append(f"                sample_weights: {'None' if s['weights'] is None else 'Some(' + farr(s['weights']) + ')'},")
            out.append(f"                loss: {farr(s['loss'])},")
            out.append(f"                grad: {farr(s['grad'])},")
            out.append(f"                state: {farr(s.get('state', []))},")
            out.append("            },")
        out.append("        ],")
        out.append("    },")
    out.append("];")
    print("\n".join(out))


if __name__ == "__main__":
    main()
    emit()
