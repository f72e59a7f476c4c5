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
use crate::float::{ExpArgs, LANES, exp_nonpos, ln_1p_unit, pow_unit};
use crate::softmax::{RowLse, row_lse};

use super::softmax_loss::one_hot;

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

/// The focal factors for a class with probability `p`, `1 − p`, `log(1 − p)` (`log_q`, evaluated
/// for `γ > 0` only) and `log p`: `m = (1 − p)^γ`, the factor of the loss term, and
/// `g = m (1 − γ p log p / (1 − p))`, the factor of its gradient.
///
/// For `γ > 16`, `m = e^{γ log(1 − p)}` from a `log(1 − p)` taken without rounding `1 − p` first
/// ([`RowLse::log_one_minus_p`](crate::softmax::RowLse::log_one_minus_p)): a rounded `1 − p`
/// raised to a large `γ` would carry `γ` times its rounding error. `log p / (1 − p) → −1` as
/// `p → 1`, so `0 < γ < 1` keeps a finite gradient there.
#[inline(always)]
pub(super) fn focal_factors<F: Float, const FMA: bool>(
    p: F,
    one_minus_p: F,
    log_q: impl FnOnce(F) -> F,
    lp: F,
    gamma: F,
) -> (F, F) {
    if gamma == F::zero() {
        return (F::one(), F::one());
    }
    // Up to γ = 16 a rounded `1 − p` costs at most 16 ulp. Beyond, `m` comes from the logarithm;
    // and since the kernel's exponentials flush to 0 a little below the smallest normal number
    // while a large `γ` still sees such a `p` (`γ·p` need not be small), `p` from `log p`.
    if gamma <= F::from_f64(POW_GAMMA_MAX) {
        return pow_focal_factors::<F, FMA>(p, one_minus_p, lp, gamma);
    }
    let p = if p < F::min_positive_value() && lp > F::neg_infinity() { lp.exp() } else { p };
    focal_gradient_factor((gamma * log_q(p)).exp(), p, one_minus_p, lp, gamma)
}

/// The largest `γ` for which [`focal_factors`] raises the rounded `1 − p` (at most 16 ulp).
pub(super) const POW_GAMMA_MAX: f64 = 16.0;

/// [`focal_factors`] for `0 < γ ≤ 16`: `m = (1 − p)^γ` from the rounded `1 − p`, by
/// [`pow_unit`], branch-free so that the rows of a group vectorise; for `γ = 2`, the usual choice,
/// `(1 − p)²` rounded once (exact to half an ulp, and a multiplication where `pow_unit` is a
/// chain of dependent steps that the short rows would wait on).
#[inline(always)]
pub(super) fn pow_focal_factors<F: Float, const FMA: bool>(p: F, one_minus_p: F, lp: F, gamma: F) -> (F, F) {
    let m = if gamma == F::from_f64(2.0) {
        one_minus_p * one_minus_p
    } else {
        pow_unit::<F, FMA>(one_minus_p, gamma)
    };
    focal_gradient_factor(m, p, one_minus_p, lp, gamma)
}

/// `(m, m (1 − γ p log p / (1 − p)))`.
#[inline(always)]
fn focal_gradient_factor<F: Float>(m: F, p: F, one_minus_p: F, lp: F, gamma: F) -> (F, F) {
    // (Each select picks values computed before it, so that the rows of a group vectorise.)
    let ratio = lp / one_minus_p;
    let log_ratio = if one_minus_p > F::zero() { ratio } else { -F::one() };
    // p = 0 only where log p = -inf: the product's limit is 0, not NaN.
    let product = p * log_ratio;
    let p_log_ratio = if p > F::zero() { product } else { F::zero() };
    (m, m * (F::one() - gamma * p_log_ratio))
}

/// One row with a single target class `label` of coefficient `c ≥ 0`, whose `grad` holds the
/// exponentials of [`shifted_exp`] and `lse` their parts: returns `ℓ = −c (1 − p_y)^γ log p_y` and
/// writes `scale · ∂ℓ/∂z` into `grad`. A row with `c = 0` contributes nothing, even when its label
/// is masked (`log p_y = -inf`).
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the row's data and the loss's parameters, all needed
pub(crate) fn one_hot_row<F: Float, const FMA: bool>(
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
    let p = e_label * lse.inv_total;
    let (m, g) = focal_factors::<F, FMA>(p, one_minus_p, |p| lse.log_one_minus_p(label, p), lp, gamma);
    let factor = scale * c * g;
    let p_factor = factor * lse.inv_total;
    for v in grad.iter_mut() {
        *v *= p_factor;
    }
    // factor · (p_y − 1), exact near p_y = 1.
    grad[label] = -factor * one_minus_p;
    -(c * m * lp)
}

/// The class factors `a_k = w_k·α_k` of [`dense_row`]: class weights and focal `α`, each 1 where
/// unset.
#[derive(Clone, Copy)]
pub(crate) struct ClassFactors<'a, F> {
    pub weights: Option<&'a [F]>,
    pub alpha: Option<&'a [F]>,
}

/// One row with target mass on every class, `grad` and `lse` as for [`one_hot_row`]: returns
/// `ℓ = −Σ_k c_k (1 − p_k)^γ log p_k` with `c_k = a_k·s·(keep·t_k + spread)` and writes
/// `scale · ∂ℓ/∂z` into `grad`.
///
/// Two vectorised passes: one sums the loss terms and `H = Σ h_k`, the other writes
/// `scale·(H p_k − h_k)`, recomputing `h_k` rather than storing it, so the row needs no scratch.
/// The lanes take `1 − p_k` as it comes, and `(1 − p)^γ` as `e^{γ ln_1p(−p)}`, which is accurate
/// for `p ≤ 1/2`: that holds for every class but the argmax, which the lanes see with `e = 0`. The
/// argmax and a hard label (whose `t` the lanes see as 0) then get their exact terms instead.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the row's data and the loss's parameters, all needed
pub(crate) fn dense_row<F: Float, const FMA: bool>(
    lse: Option<RowLse<F>>,
    z: &[F],
    adjust: Option<&[F]>,
    mass: RowMass<'_, F>,
    factors: ClassFactors<'_, F>,
    gamma: F,
    scale: F,
    grad: &mut [F],
) -> F {
    let Some(lse) = lse else {
        grad.fill(F::zero());
        return F::zero();
    };
    let RowMass { s, keep, spread, targets } = mass;
    let (t, label) = match targets {
        Targets::Probs(t, _) => (Some(t), None),
        Targets::Label(y) => (None, Some(y)),
    };
    let columns = Columns { z, adjust, t, weights: factors.weights, alpha: factors.alpha };
    let terms = Terms { lse, base: s * spread, on_target: s * keep, gamma };
    if gamma == F::zero() {
        dense_passes::<F, Unmodulated, FMA>(&terms, &columns, label, scale, grad)
    } else if gamma == F::from_f64(2.0) {
        dense_passes::<F, Squared, FMA>(&terms, &columns, label, scale, grad)
    } else {
        dense_passes::<F, Powered<FMA>, FMA>(&terms, &columns, label, scale, grad)
    }
}

/// The passes of [`dense_row`], with the focal modulation `M`.
///
/// The lanes sum every class but the argmax `k*` (its run is summed class by class without it),
/// so that `Σ_{k≠k*} h_k` is known without cancellation: the argmax's gradient entry is then
/// `p_{k*}·Σ_{k≠k*} h_k − h_{k*}·(1 − p_{k*})`, which `H p_{k*} − h_{k*}` would round away as
/// `p_{k*} → 1`, and its exact loss term is added to the others instead of replacing a lane value.
#[inline(always)]
fn dense_passes<F: Float, M: Modulation, const FMA: bool>(
    terms: &Terms<F>,
    columns: &Columns<'_, F>,
    label: Option<usize>,
    scale: F,
    grad: &mut [F],
) -> F {
    let argmax = terms.lse.argmax;
    let e_max = core::mem::replace(&mut grad[argmax], F::zero());
    let (zeros, ones) = ([F::zero(); LANES], [F::one(); LANES]);
    let mut acc: Acc<F> = ([F::zero(); LANES], [F::zero(); LANES]);
    let (full, n) = (grad.len() / LANES, grad.len());
    let argmax_run = argmax / LANES;
    for run in 0..full {
        if run != argmax_run {
            terms.sum_run::<M>(
                &grad[run * LANES..][..LANES],
                columns.run(run, LANES, &zeros, &ones),
                &mut acc,
            );
        }
    }
    if argmax_run != full {
        terms.sum_run::<M>(&grad[full * LANES..], columns.run(full, n % LANES, &zeros, &ones), &mut acc);
    }
    // The argmax's run, without the argmax.
    for k in (argmax_run * LANES..n.min((argmax_run + 1) * LANES)).filter(|&k| k != argmax) {
        let (z, t, a) = columns.at(k, None);
        let (l, h) = terms.lanes::<M>(grad[k], z, t, a);
        acc.0[k % LANES] += l;
        acc.1[k % LANES] += h;
    }
    let mut loss = acc.0.iter().fold(F::zero(), |sum, &l| sum + l);
    let mut h_rest = acc.1.iter().fold(F::zero(), |sum, &h| sum + h);
    // The label (a hard label's `t` the lanes saw as 0): its exact term replaces the lanes'.
    let hard_label = label;
    let label = label.filter(|&y| y != argmax);
    let mut label_fix = (F::zero(), F::zero());
    if let Some(y) = label {
        let e = grad[y];
        let (z, t, a) = columns.at(y, Some(y));
        let (l, h) = terms.exact::<FMA>(y, e, z, t, a);
        let (lane_l, lane_h) = terms.lanes::<M>(e, z, columns.at(y, None).1, a);
        loss += l - lane_l;
        h_rest += h - lane_h;
        label_fix = (e, h);
    }
    let (z, t, a) = columns.at(argmax, hard_label);
    let (l_max, h_max) = terms.exact::<FMA>(argmax, e_max, z, t, a);
    loss += l_max;
    let p_factor = (h_rest + h_max) * terms.lse.inv_total;
    for run in 0..full {
        let g = &mut grad[run * LANES..][..LANES];
        terms.write_run::<M>(g, columns.run(run, LANES, &zeros, &ones), p_factor, scale);
    }
    let g = &mut grad[full * LANES..];
    terms.write_run::<M>(g, columns.run(full, n % LANES, &zeros, &ones), p_factor, scale);
    if let Some(y) = label {
        grad[y] = scale * (p_factor * label_fix.0 - label_fix.1);
    }
    let (p_max, q_max) = (e_max * terms.lse.inv_total, terms.lse.one_minus_p(argmax, e_max));
    grad[argmax] = scale * (p_max * h_rest - h_max * q_max);
    -loss
}

/// The lanes' `(1 − p)^γ` and its gradient factor, as [`focal_factors`] for `p ≤ 1/2`.
trait Modulation {
    /// `(m, g)` of a class with probability `p ≤ 1/2` and `log p = lp`.
    fn factors<F: Float>(p: F, lp: F, gamma: F) -> (F, F);
}

/// `γ = 0`: no modulation.
struct Unmodulated;

impl Modulation for Unmodulated {
    #[inline(always)]
    fn factors<F: Float>(_: F, _: F, _: F) -> (F, F) {
        (F::one(), F::one())
    }
}

/// `γ = 2`, the usual choice: `m = (1 − p)²` (rounded once, as by `powf`) and
/// `g = (1 − p)·((1 − p) − 2 p log p)`, without a division or a logarithm.
struct Squared;

impl Modulation for Squared {
    #[inline(always)]
    fn factors<F: Float>(p: F, lp: F, _: F) -> (F, F) {
        let q = F::one() - p;
        (q * q, q * (q - (p + p) * lp))
    }
}

/// Any `γ`: `m = e^{γ ln_1p(−p)}`, `g = m (1 − γ p log p / (1 − p))`.
struct Powered<const FMA: bool>;

impl<const FMA: bool> Modulation for Powered<FMA> {
    #[inline(always)]
    fn factors<F: Float>(p: F, lp: F, gamma: F) -> (F, F) {
        let m = exp_nonpos::<F, FMA>(gamma * ln_1p_unit::<F, FMA>(-p));
        (m, m * (F::one() - gamma * (p * (lp / (F::one() - p)))))
    }
}

/// The lanes of the loss terms and of `h_k`.
type Acc<F> = ([F; LANES], [F; LANES]);

/// What the terms of a row of [`dense_row`] share.
struct Terms<F> {
    lse: RowLse<F>,
    /// `s·spread`, `s·keep`: the mass of class `k` is `a_k·(base + on_target·t_k)`.
    base: F,
    on_target: F,
    gamma: F,
}

impl<F: Float> Terms<F> {
    /// Class k's loss term `c m log p` and `h = c g` from `e^{z'_k − m}`, `z'_k`, `t_k` and `a_k`,
    /// for `p_k ≤ 1/2`; a class without target mass contributes nothing, even when masked
    /// (log p = -inf).
    #[inline(always)]
    fn lanes<M: Modulation>(&self, e: F, z: F, t: F, a: F) -> (F, F) {
        let c = a * (self.base + self.on_target * t);
        let lp = (z - self.lse.max) - self.lse.ln_total;
        // `z − max` of a finite logit may overflow to -inf (logits of opposite extremes): its
        // `p = 0`, and `g` takes `p·log p = 0` from a finite stand-in; the loss term stays infinite,
        // for the caller to recompute.
        let finite_lp = if lp > -F::max_value() { lp } else { -F::max_value() };
        let (m, g) = M::factors(e * self.lse.inv_total, finite_lp, self.gamma);
        if c > F::zero() { (c * m * lp, c * g) } else { (F::zero(), F::zero()) }
    }

    /// Adds the loss terms and `h_k` of a run of classes to the lanes of `acc`.
    #[inline(always)]
    fn sum_run<M: Modulation>(&self, e: &[F], c: Lanes<'_, F>, acc: &mut Acc<F>) {
        let len = e.len();
        let (z, adjust, t) = (&c.z[..len], &c.adjust[..len], &c.t[..len]);
        let (weights, alpha) = (&c.weights[..len], &c.alpha[..len]);
        for j in 0..len {
            let (l, h) = self.lanes::<M>(e[j], z[j] + adjust[j], t[j], weights[j] * alpha[j]);
            acc.0[j] += l;
            acc.1[j] += h;
        }
    }

    /// Writes `scale·(p_factor·e_k − h_k)` over the `e_k` of a run of classes.
    #[inline(always)]
    fn write_run<M: Modulation>(&self, g: &mut [F], c: Lanes<'_, F>, p_factor: F, scale: F) {
        let len = g.len();
        let (z, adjust, t) = (&c.z[..len], &c.adjust[..len], &c.t[..len]);
        let (weights, alpha) = (&c.weights[..len], &c.alpha[..len]);
        for j in 0..len {
            let h = self.lanes::<M>(g[j], z[j] + adjust[j], t[j], weights[j] * alpha[j]).1;
            g[j] = scale * (p_factor * g[j] - h);
        }
    }

    /// [`lanes`](Self::lanes) for any class `k`, by [`focal_factors`].
    #[inline(always)]
    fn exact<const FMA: bool>(&self, k: usize, e: F, z: F, t: F, a: F) -> (F, F) {
        let c = a * (self.base + self.on_target * t);
        let lp = (z - self.lse.max) - self.lse.ln_total;
        let (p, q) = (e * self.lse.inv_total, self.lse.one_minus_p(k, e));
        let (m, g) = focal_factors::<F, FMA>(p, q, |p| self.lse.log_one_minus_p(k, p), lp, self.gamma);
        if c > F::zero() { (c * m * lp, c * g) } else { (F::zero(), F::zero()) }
    }
}

/// The per-class inputs of [`dense_row`]; those that are unset are 0 (`adjust`, `t`) or 1
/// (`weights`, `alpha`) for every class.
struct Columns<'a, F> {
    z: &'a [F],
    adjust: Option<&'a [F]>,
    t: Option<&'a [F]>,
    weights: Option<&'a [F]>,
    alpha: Option<&'a [F]>,
}

/// [`Columns`] over a run of at most [`LANES`] classes, all of the run's length.
struct Lanes<'a, F> {
    z: &'a [F],
    adjust: &'a [F],
    t: &'a [F],
    weights: &'a [F],
    alpha: &'a [F],
}

impl<F: Float> Columns<'_, F> {
    /// Run `run` of [`LANES`] classes, `len` long (the last run may be shorter), an unset column
    /// read from `zeros` or `ones`: one loop serves every combination, and the full runs'
    /// constant length lets the compiler vectorise it.
    #[inline(always)]
    fn run<'a>(
        &'a self,
        run: usize,
        len: usize,
        zeros: &'a [F; LANES],
        ones: &'a [F; LANES],
    ) -> Lanes<'a, F> {
        let start = run * LANES;
        let part = |col: Option<&'a [F]>, fill: &'a [F; LANES]| match col {
            Some(col) => &col[start..][..len],
            None => &fill[..len],
        };
        Lanes {
            z: &self.z[start..][..len],
            adjust: part(self.adjust, zeros),
            t: part(self.t, zeros),
            weights: part(self.weights, ones),
            alpha: part(self.alpha, ones),
        }
    }

    /// `(z'_k, t_k, a_k)` as the lanes compute them, `t` the one-hot row of `label` if given.
    #[inline(always)]
    fn at(&self, k: usize, label: Option<usize>) -> (F, F, F) {
        let z = self.z[k] + self.adjust.map_or(F::zero(), |a| a[k]);
        let t = match (self.t, label) {
            (Some(t), _) => t[k],
            (None, label) => one_hot(label == Some(k)),
        };
        let a = self.weights.map_or(F::one(), |w| w[k]) * self.alpha.map_or(F::one(), |a| a[k]);
        (z, t, a)
    }
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

/// Where a row's target distribution `t` comes from: a label, or a probability row and its sum.
#[derive(Clone, Copy)]
pub(crate) enum Targets<'a, F> {
    Label(usize),
    Probs(&'a [F], F),
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
        Targets::Probs(_, sum) => sum,
    };
    let p_factor = (base * F::from_f64(n as f64) + on_target * t_sum) * lse.inv_total;
    let label = match targets {
        Targets::Label(y) => Some((y, grad[y])),
        Targets::Probs(..) => None,
    };
    let mut acc = [F::zero(); LANES];
    let step = |acc: &mut F, g: &mut F, c: F, z: F| {
        *acc += term(c, z);
        *g = scale * (p_factor * *g - c);
    };
    // Every class of a hard-label row has the mass `base`, so the lanes sum `z'_k − m` alone and
    // the loss term is `base·(Σ_k (z'_k − m) − K ln_total)`.
    let (g_factor, scaled_base) = (scale * p_factor, scale * base);
    let label_step = |acc: &mut F, g: &mut F, z: F| {
        *acc += z - max;
        *g = g_factor * *g - scaled_base;
    };
    let zs = z.chunks_exact(LANES);
    let tail = n - zs.remainder().len();
    let mut gs = grad.chunks_exact_mut(LANES);
    match (targets, adjust) {
        (Targets::Label(_), None) => {
            for (g, z) in (&mut gs).zip(zs) {
                acc.iter_mut().zip(g).zip(z).for_each(|((a, g), &z)| label_step(a, g, z));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]);
            rest.for_each(|((a, g), &z)| label_step(a, g, z));
        }
        (Targets::Label(_), Some(adjust)) => {
            for ((g, z), w) in (&mut gs).zip(zs).zip(adjust.chunks_exact(LANES)) {
                acc.iter_mut().zip(g).zip(z).zip(w).for_each(|(((a, g), &z), &w)| label_step(a, g, z + w));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]).zip(&adjust[tail..]);
            rest.for_each(|(((a, g), &z), &w)| label_step(a, g, z + w));
        }
        (Targets::Probs(t, _), None) => {
            let c = |t: F| base + on_target * t;
            for ((g, z), t) in (&mut gs).zip(zs).zip(t.chunks_exact(LANES)) {
                acc.iter_mut().zip(g).zip(z).zip(t).for_each(|(((a, g), &z), &t)| step(a, g, c(t), z));
            }
            let rest = acc.iter_mut().zip(gs.into_remainder()).zip(&z[tail..]).zip(&t[tail..]);
            rest.for_each(|(((a, g), &z), &t)| step(a, g, c(t), z));
        }
        (Targets::Probs(t, _), Some(adjust)) => {
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
    let lanes = acc.iter().fold(F::zero(), |sum, &a| sum + a);
    let mut loss = match targets {
        // A row of weight 0 contributes nothing, even when masked.
        Targets::Label(_) if base > F::zero() => base * (lanes - F::from_f64(n as f64) * ln_total),
        Targets::Label(_) => F::zero(),
        Targets::Probs(..) => lanes,
    };
    // The label's own mass: the pass above gave it `base` only.
    if let Some((y, e_y)) = label {
        let z_y = adjust.map_or(z[y], |a| z[y] + a[y]);
        loss += term(base + on_target, z_y) - term(base, z_y);
        grad[y] = scale * (p_factor * e_y - (base + on_target));
    }
    // The argmax's entry where `scale·(H p − c)` above lost too much of it to cancellation.
    let argmax = lse.argmax;
    let others = base * F::from_f64(n as f64 - 1.0);
    let (t_max, estimate) = match targets {
        Targets::Label(y) => (one_hot(y == argmax), others + if y != argmax { on_target } else { F::zero() }),
        Targets::Probs(t, sum) => (t[argmax], others + on_target * (sum - t[argmax])),
    };
    let exact = || match targets {
        Targets::Label(_) => estimate,
        Targets::Probs(t, _) => {
            others
                + on_target
                    * t.iter().enumerate().filter(|&(k, _)| k != argmax).fold(F::zero(), |s, (_, &v)| s + v)
        }
    };
    let c_max = base + on_target * t_max;
    if let Some(g) = argmax_fix(c_max, estimate, (lse.rest, lse.inv_total), exact, scale) {
        grad[argmax] = g;
    }
    -loss
}

/// The gradient entry of the argmax `k*` of a row whose classes have masses `c_k` (and
/// `H = Σ c_k`): `scale·(p_{k*}·Σ_{k≠k*} c_k − c_{k*}·(1 − p_{k*}))`, from `1/(1 + r)`, `r` and
/// `c_rest = Σ_{k≠k*} c_k` (`e_{k*} = 1`). The same value as `scale·(H p_{k*} − c_{k*})`, whose
/// two terms cancel as `p_{k*} → 1` (a soft target close to one-hot on a confident row).
#[inline(always)]
pub(crate) fn argmax_grad<F: Float>(inv_total: F, rest: F, c_max: F, c_rest: F, scale: F) -> F {
    scale * (inv_total * c_rest - c_max * (rest * inv_total))
}

/// The argmax's gradient entry by [`argmax_grad`], from its mass `c_max`, an estimate of
/// `Σ_{k≠k*} c_k` (from the row's sums: off by about `ε·c_max`) and the exact sum `rest_mass()`,
/// where the usual `scale·(H p_{k*} − c_{k*})` would carry more than about `64 ε` of relative error
/// (`Σ_{k≠k*} c_k + c_{k*}(1 − p_{k*}) < c_{k*}/32`: a confident row whose target is nearly its
/// argmax alone); `None` elsewhere, where the usual entry stands.
#[inline(always)]
pub(crate) fn argmax_fix<F: Float>(
    c_max: F,
    estimate: F,
    (rest, inv_total): (F, F),
    rest_mass: impl FnOnce() -> F,
    scale: F,
) -> Option<F> {
    let needed = estimate + c_max * (rest * inv_total) < c_max * F::from_f64(1.0 / 32.0);
    needed.then(|| argmax_grad(inv_total, rest, c_max, rest_mass(), scale))
}
