//! The fused softmax kernel: one row's loss and its gradient with respect to the logits.
//!
//! Every loss of the softmax family is, per row,
//! `ℓ = −Σ_k c_k (1 − p_k)^γ log p_k` with `p = softmax(z + adjust)` and coefficients `c_k ≥ 0`.
//! Its gradient is `∂ℓ/∂z_j = H p_j − h_j` with `h_k = c_k (1 − p_k)^γ (1 − γ p_k log p_k / (1 − p_k))`
//! and `H = Σ_k h_k`; for one target class it is the per-row scalar `h_y` times `p − e_y`.
//! The exponentials are computed once, into the gradient row, and reused for the loss: a row
//! costs one read of the logits, a pass that writes `e^{z'_k − m}` ([`shifted_exp`], or
//! [`group_lse`](crate::group::group_lse) for short rows) and a pass that scales it in cache.
//! Everything here is `#[inline(always)]`, to be compiled inside a [`crate::simd::Kernel`].

use crate::Float;
use crate::float::{ExpArgs, LANES, lane_sum};
use crate::softmax::{RowLse, row_lse};

/// Writes `e^{z'_k − m}` (`z' = z + adjust`) into `out` and returns the row's log-sum-exp parts.
#[inline(always)]
pub(crate) fn shifted_exp<F: Float, const FMA: bool>(
    z: &[F],
    adjust: Option<&[F]>,
    out: &mut [F],
) -> Option<RowLse<F>> {
    match adjust {
        Some(adjust) => row_lse::<F, FMA>(out, ExpArgs::Adjusted(z, adjust)),
        None => row_lse::<F, FMA>(out, ExpArgs::Logits(z)),
    }
}

/// The focal factors for a class with probability `p`, `1 − p` and `log p`: `m = (1 − p)^γ`, the
/// factor of the loss term, and `g = m (1 − γ p log p / (1 − p))`, the factor of its gradient.
/// `log p / (1 − p) → −1` as `p → 1`, so `0 < γ < 1` keeps a finite gradient there.
#[inline(always)]
pub(super) fn focal_factors<F: Float>(p: F, one_minus_p: F, lp: F, gamma: F) -> (F, F) {
    if gamma == F::zero() {
        return (F::one(), F::one());
    }
    let m = one_minus_p.powf(gamma);
    let log_ratio = if one_minus_p > F::zero() { lp / one_minus_p } else { -F::one() };
    // p = 0 only where log p = -inf: the product's limit is 0, not NaN.
    let p_log_ratio = if p > F::zero() { p * log_ratio } else { F::zero() };
    (m, m * (F::one() - gamma * p_log_ratio))
}

/// One row with a single target class `label` of coefficient `c ≥ 0`, whose `grad` holds the
/// exponentials of [`shifted_exp`] and `lse` their parts: returns `ℓ = −c (1 − p_y)^γ log p_y` and
/// writes `scale · ∂ℓ/∂z` into `grad`. A row with `c = 0` contributes nothing, even when its label
/// is masked (`log p_y = -inf`).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the row's data and the loss's parameters, all needed
pub(crate) fn one_hot_row<F: Float>(
    lse: Option<RowLse<F>>,
    z: &[F],
    adjust: Option<&[F]>,
    label: usize,
    c: F,
    gamma: F,
    scale: F,
    grad: &mut [F],
) -> F {
    let Some(lse) = lse.filter(|_| c > F::zero()) else {
        grad.fill(F::zero());
        return F::zero();
    };
    let z_label = adjust.map_or(z[label], |a| z[label] + a[label]);
    let lp = (z_label - lse.max) - lse.ln_total;
    let e_label = grad[label];
    let one_minus_p = lse.one_minus_p(label, e_label);
    let (m, g) = focal_factors(e_label * lse.inv_total, one_minus_p, lp, gamma);
    let factor = scale * c * g;
    let p_factor = factor * lse.inv_total;
    for v in grad.iter_mut() {
        *v *= p_factor;
    }
    // factor · (p_y − 1), exact near p_y = 1.
    grad[label] = -factor * one_minus_p;
    -(c * m * lp)
}

/// One row with a coefficient `coef(k) ≥ 0` on every class, `grad` and `lse` as for
/// [`one_hot_row`]: returns `ℓ = −Σ_k c_k (1 − p_k)^γ log p_k` and writes `scale · ∂ℓ/∂z` into `grad`. The terms `h_k` are recomputed in the second pass
/// rather than stored, so the row needs no scratch.
#[inline(always)]
pub(crate) fn dense_row<F: Float>(
    lse: Option<RowLse<F>>,
    z: &[F],
    adjust: Option<&[F]>,
    coef: impl Fn(usize) -> F,
    gamma: F,
    scale: F,
    grad: &mut [F],
) -> F {
    let Some(lse) = lse else {
        grad.fill(F::zero());
        return F::zero();
    };
    // Class k's loss term and h_k; a class without target mass contributes nothing, even when
    // masked (log p = -inf).
    let term = |k: usize, e_k: F| {
        let c = coef(k);
        if c > F::zero() {
            let zk = adjust.map_or(z[k], |a| z[k] + a[k]);
            let lp = (zk - lse.max) - lse.ln_total;
            let (m, g) = focal_factors(e_k * lse.inv_total, lse.one_minus_p(k, e_k), lp, gamma);
            (c * m * lp, c * g)
        } else {
            (F::zero(), F::zero())
        }
    };
    let mut loss = F::zero();
    let mut h_total = F::zero();
    for (k, &e_k) in grad.iter().enumerate() {
        let (l, h) = term(k, e_k);
        loss -= l;
        h_total += h;
    }
    let p_factor = h_total * lse.inv_total;
    for (k, v) in grad.iter_mut().enumerate() {
        // Without focal modulation h_k = c_k.
        let h = if gamma == F::zero() { coef(k) } else { term(k, *v).1 };
        *v = scale * (p_factor * *v - h);
    }
    loss
}

/// The target mass of a row of [`plain_dense_row`], times the row's weight `s`:
/// `c_k = s·(keep·t_k + spread)`, with `t` a probability row or the one-hot row of `label`.
#[derive(Clone, Copy)]
pub(crate) struct RowMass<'a, F> {
    pub s: F,
    pub keep: F,
    pub spread: F,
    pub targets: Targets<'a, F>,
}

/// Where a row's target distribution `t` comes from.
#[derive(Clone, Copy)]
pub(crate) enum Targets<'a, F> {
    Label(usize),
    Probs(&'a [F]),
}

/// [`dense_row`] without focal modulation or class factors (`γ = 0`, `w = α = 1`), vectorised
/// (`grad` and `lse` as for [`one_hot_row`]):
/// after the exponentials, one pass sums the loss terms and writes the gradient
/// `scale·(H p_k − c_k)`, with `H = Σ c_k` known in advance.
#[inline(always)]
pub(crate) fn plain_dense_row<F: Float>(
    lse: Option<RowLse<F>>,
    z: &[F],
    adjust: Option<&[F]>,
    mass: RowMass<'_, F>,
    scale: F,
    grad: &mut [F],
) -> F {
    let Some(lse) = lse else {
        grad.fill(F::zero());
        return F::zero();
    };
    let RowMass { s, keep, spread, targets } = mass;
    let (base, on_target) = (s * spread, s * keep);
    let (max, ln_total) = (lse.max, lse.ln_total);
    // A class without target mass contributes nothing, even when masked (log p = -inf).
    let term = |c: F, z: F| if c > F::zero() { c * ((z - max) - ln_total) } else { F::zero() };
    let n = grad.len();
    let t_sum = match targets {
        Targets::Label(_) => F::one(),
        Targets::Probs(t) => lane_sum(t),
    };
    let p_factor = (base * F::from_f64(n as f64) + on_target * t_sum) * lse.inv_total;
    let label = match targets {
        Targets::Label(y) => Some((y, grad[y])),
        Targets::Probs(_) => None,
    };
    let mut acc = [F::zero(); LANES];
    let step = |acc: &mut F, g: &mut F, c: F, z: F| {
        *acc += term(c, z);
        *g = scale * (p_factor * *g - c);
    };
    let zs = z.chunks_exact(LANES);
    let tail = n - zs.remainder().len();
    let mut gs = grad.chunks_exact_mut(LANES);
    match (targets, adjust) {
        (Targets::Label(_), None) => {
            for (g, z) in (&mut gs).zip(zs) {
                acc.iter_mut().zip(g).zip(z).for_each(|((a, g), &z)| step(a, g, base, z));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]);
            rest.for_each(|((a, g), &z)| step(a, g, base, z));
        }
        (Targets::Label(_), Some(adjust)) => {
            for ((g, z), w) in (&mut gs).zip(zs).zip(adjust.chunks_exact(LANES)) {
                acc.iter_mut().zip(g).zip(z).zip(w).for_each(|(((a, g), &z), &w)| step(a, g, base, z + w));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]).zip(&adjust[tail..]);
            rest.for_each(|(((a, g), &z), &w)| step(a, g, base, z + w));
        }
        (Targets::Probs(t), None) => {
            let c = |t: F| base + on_target * t;
            for ((g, z), t) in (&mut gs).zip(zs).zip(t.chunks_exact(LANES)) {
                acc.iter_mut().zip(g).zip(z).zip(t).for_each(|(((a, g), &z), &t)| step(a, g, c(t), z));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]).zip(&t[tail..]);
            rest.for_each(|(((a, g), &z), &t)| step(a, g, c(t), z));
        }
        (Targets::Probs(t), Some(adjust)) => {
            let c = |t: F| base + on_target * t;
            for (((g, z), t), w) in
                (&mut gs).zip(zs).zip(t.chunks_exact(LANES)).zip(adjust.chunks_exact(LANES))
            {
                let lanes = acc.iter_mut().zip(g).zip(z).zip(t).zip(w);
                lanes.for_each(|((((a, g), &z), &t), &w)| step(a, g, c(t), z + w));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]).zip(&t[tail..]);
            rest.zip(&adjust[tail..]).for_each(|((((a, g), &z), &t), &w)| step(a, g, c(t), z + w));
        }
    }
    let mut loss = acc.iter().fold(F::zero(), |sum, &a| sum + a);
    // The label's own mass: the pass above gave it `base` only.
    if let Some((y, e_y)) = label {
        let z_y = adjust.map_or(z[y], |a| z[y] + a[y]);
        loss += term(base + on_target, z_y) - term(base, z_y);
        grad[y] = scale * (p_factor * e_y - (base + on_target));
    }
    -loss
}
