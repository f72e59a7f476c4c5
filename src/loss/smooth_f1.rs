//! Smooth-F1-weighted softmax cross-entropy: one-vs-rest terms weighted by the batch's soft F1.

use ndarray::{Array2, ArrayRef2};

use super::Reduction;
use super::f1_stats::F1Stats;
use super::softmax_loss::SoftmaxLoss;
use super::targets::{TargetKind, Targets};
use crate::error::check_shape;
use crate::rows::for_each_row;
use crate::softmax::{RowLse, exp_shift_in_place};
use crate::{Float, Result};

/// Which F1 a [`SmoothF1Loss`] weights by.
///
/// # Example
///
/// ```
/// use longtail::{F1Average, SmoothF1Loss};
/// assert_eq!(SmoothF1Loss::micro_f1().average(), F1Average::Micro);
/// ```
///
/// # References
///
/// J. Su, kexue.fm/archives/7708 (2020).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum F1Average {
    /// One soft `F1_k` and scale `c_k = 2W/(K·S_k)` per class (macro-F1).
    Macro,
    /// One pooled soft F1 for every class, scale 1 (micro-F1).
    Micro,
}

/// Softmax cross-entropy in one-vs-rest form, weighted by the batch's soft F1 (macro or micro),
/// with the exact gradient with respect to the logits (F1 and scales held constant).
///
/// Logits `z` are `[B, K]`, `p = softmax(z)`; targets are hard labels or probability rows `y_i`
/// with optional sample weights `s_i` ([`Targets`]). From the batch statistics ([`F1Stats`]:
/// `S_k = Σ_i s_i (y_ik + p_ik)`, `W = Σ_i s_i`):
///
/// ```text
/// Macro:  F1_k = 2·Σ_i s_i y_ik p_ik / S_k,      c_k = 2W / (K·S_k)     (both 0 where S_k = 0)
/// Micro:  F1_k = F1 = 2·Σ_k Σ_i s_i y_ik p_ik / Σ_k S_k,   c_k = 1
/// ℓ_i = −s_i·Σ_k c_k·[ y_ik (1 − F1_k/2) log p_ik + (1 − y_ik) (F1_k/2) log(1 − p_ik) ]
/// ```
///
/// This is the binary smooth-F1 weighting ([`BinarySmoothF1Loss`](crate::BinarySmoothF1Loss))
/// applied to each class against the rest. For macro-F1, `∂(F1_k/K)/∂p_ik = (2/(K·S_k))·(y_ik − F1_k/2)`:
/// each class carries the factor `2/(K·S_k)`, and `c_k` keeps it relative to a balanced class
/// (`S_k = 2W/K` gives `c_k = 1`), so a rare class (small `S_k`) weighs more and the mean's scale
/// matches cross-entropy. For micro-F1 the pooled denominator `Σ_k S_k = 2W` is the same for every class,
/// so `c_k = 1`: the micro form is the binary form over all `B·K` one-vs-rest decisions.
///
/// F1 and `c` are constants of the gradient. They come from the local batch, or from merged
/// statistics in a data-parallel trainer ([`loss_and_grad_with_stats_into`](Self::loss_and_grad_with_stats_into)).
/// `Mean` (default) divides `Σ_i ℓ_i` by the local `Σ_i s_i` (0 if that is 0), `Sum` does not.
///
/// # Gradient
///
/// With `a_k = s_i c_k y_k (1 − F1_k/2)` and `b_k = s_i c_k (1 − y_k) F1_k/2`,
/// `∂ℓ_i/∂z_j = Σ_k a_k (p_j − δ_jk) + Σ_k b_k (p_j − q^{(k)}_j)`, where `q^{(k)}` is the softmax
/// over the classes other than `k` (`q^{(k)}_k = 0`), since `−log(1 − p_k) = lse(z) − lse_{j≠k}(z)`.
///
/// # Numerics
///
/// `log p` from the split log-sum-exp; `log(1 − p_k)` as `ln_1p(−p_k)` for every class but the
/// row's argmax (where `p_k ≤ 1/2`), and as `lse_{j≠k*}(z) − lse(z)` for the argmax, so it keeps its
/// accuracy as `p_k → 1` (no cancellation, no `log 0`). `-inf` logits mask classes; a row with a
/// single unmasked class has no "rest" and its negative term is taken as 0.
///
/// # Errors
///
/// Each call validates the batch (and the statistics) before writing anything (see
/// [`loss_and_grad_into`](Self::loss_and_grad_into)).
///
/// # Example
///
/// ```
/// use longtail::SmoothF1Loss;
/// use ndarray::array;
///
/// let logits = array![[2.0_f32, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]];
/// let labels = [0, 2, 1];
/// let (value, grad) = SmoothF1Loss::macro_f1().loss_and_grad(&logits, &labels)?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::LossError>(())
/// ```
///
/// # References
///
/// J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系" (class imbalance: weights and
/// modified losses), kexue.fm/archives/7708 (2020); the macro form is the same derivation per class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothF1Loss {
    average: F1Average,
    reduction: Reduction,
}

impl SmoothF1Loss {
    /// Weighted by the per-class soft F1 (macro), mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{F1Average, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::macro_f1().average(), F1Average::Macro);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn macro_f1() -> Self {
        Self { average: F1Average::Macro, reduction: Reduction::Mean }
    }

    /// Weighted by the pooled soft F1 (micro), mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::micro_f1().reduction(), Reduction::Mean);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn micro_f1() -> Self {
        Self { average: F1Average::Micro, reduction: Reduction::Mean }
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::macro_f1().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Macro or micro.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{F1Average, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::macro_f1().average(), F1Average::Macro);
    /// ```
    pub fn average(&self) -> F1Average {
        self.average
    }

    /// The reduction of the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::macro_f1().reduction(), Reduction::Mean);
    /// ```
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The batch statistics: per class `Σ s y p` and `Σ s (y + p)`, and `Σ s`.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the output and statistics.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let stats = SmoothF1Loss::macro_f1().stats(&array![[0.0_f64, 0.0]], &[1])?;
    /// assert_eq!((stats.true_positive(), stats.mass(), stats.weight()), (&[0.0, 0.5][..], &[0.5, 1.5][..], 1.0));
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn stats<'t, F>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<F1Stats>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &[])?;
        Ok(local_stats(logits, &targets))
    }

    /// The reduced loss and its gradient (F1 from the local batch), in a new `[B, K]` array.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = SmoothF1Loss::micro_f1().loss_and_grad(&array![[1.0_f64, 0.0], [0.0, 1.0]], &[0, 0])?;
    /// assert!(loss > 0.0 && grad[[1, 0]] < 0.0);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn loss_and_grad<'t, F>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<(F, Array2<F>)>
    where
        F: Float + 't,
    {
        let mut grad = Array2::zeros(logits.raw_dim());
        let loss = self.loss_and_grad_into(logits, targets, &mut grad)?;
        Ok((loss, grad))
    }

    /// The reduced loss with F1 from the local batch; its gradient overwrites `grad_out`
    /// (`[B, K]`).
    ///
    /// # Errors
    ///
    /// Those of [`SoftmaxLoss::loss_and_grad_into`] for cross-entropy, in the same order
    /// ([`LossError::EmptyBatch`](crate::LossError::EmptyBatch),
    /// [`LossError::NoClasses`](crate::LossError::NoClasses),
    /// [`LossError::ShapeMismatch`](crate::LossError::ShapeMismatch),
    /// [`LossError::InvalidSampleWeight`](crate::LossError::InvalidSampleWeight),
    /// [`LossError::LabelOutOfRange`](crate::LossError::LabelOutOfRange),
    /// [`LossError::InvalidTarget`](crate::LossError::InvalidTarget),
    /// [`LossError::TargetSum`](crate::LossError::TargetSum),
    /// [`LossError::NonFiniteLogit`](crate::LossError::NonFiniteLogit),
    /// [`LossError::MaskedTarget`](crate::LossError::MaskedTarget)); then, with statistics,
    /// [`LossError::ShapeMismatch`](crate::LossError::ShapeMismatch) (`"stats"`) unless they
    /// have `K` classes.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SmoothF1Loss;
    /// use ndarray::{array, Array2};
    ///
    /// let mut grad = Array2::from_elem((2, 2), f32::NAN); // overwritten
    /// SmoothF1Loss::macro_f1().loss_and_grad_into(&array![[0.0_f32, 1.0], [2.0, 0.0]], &[1, 0], &mut grad)?;
    /// assert!(grad[[0, 1]] < 0.0 && grad[[1, 0]] < 0.0);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn loss_and_grad_into<'t, F>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &[("grad_out", logits.shape(), grad_out.shape())])?;
        let stats = local_stats(logits, &targets);
        Ok(self.reduced(logits, &targets, &stats, Some(grad_out)))
    }

    /// The reduced loss with F1 and scales from (merged) `stats`; its gradient overwrites
    /// `grad_out` (`[B, K]`).
    ///
    /// With the local batch's own statistics this is
    /// [`loss_and_grad_into`](Self::loss_and_grad_into).
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), and
    /// [`LossError::ShapeMismatch`](crate::LossError::ShapeMismatch) (`"stats"`) unless `stats`
    /// has `K` classes.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{F1Stats, SmoothF1Loss};
    /// use ndarray::{array, Array2};
    ///
    /// let logits = array![[1.0_f64, 0.0, -1.0]];
    /// let loss = SmoothF1Loss::macro_f1();
    /// // The statistics of the global batch, here from another worker merged with ours.
    /// let mut stats = loss.stats(&array![[0.0, 2.0, 0.0], [0.5, 0.0, 1.0]], &[1, 2])?;
    /// stats.merge(&loss.stats(&logits, &[0])?)?;
    /// let mut grad = Array2::zeros((1, 3));
    /// let value = loss.loss_and_grad_with_stats_into(&logits, &[0], &stats, &mut grad)?;
    /// assert!(value > 0.0 && grad[[0, 0]] < 0.0);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn loss_and_grad_with_stats_into<'t, F>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        stats: &F1Stats,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &[("grad_out", logits.shape(), grad_out.shape())])?;
        check_shape("stats", &[logits.ncols()], &[stats.classes()])?;
        Ok(self.reduced(logits, &targets, stats, Some(grad_out)))
    }

    /// The reduced loss alone, F1 from the local batch.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let confident = SmoothF1Loss::macro_f1().loss(&array![[9.0_f64, 0.0], [0.0, 9.0]], &[0, 1])?;
    /// let unsure = SmoothF1Loss::macro_f1().loss(&array![[1.0_f64, 0.0], [0.0, 1.0]], &[0, 1])?;
    /// assert!(confident < unsure);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn loss<'t, F>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &[])?;
        let stats = local_stats(logits, &targets);
        Ok(self.reduced(logits, &targets, &stats, None))
    }

    /// Per class, the coefficients `c_k (1 − F1_k/2)` of the positive term and `c_k F1_k/2` of the
    /// negative one.
    fn coefficients<F: Float>(&self, stats: &F1Stats) -> Vec<(F, F)> {
        let k = stats.classes() as f64;
        let micro = stats.micro_f1();
        let f1 = stats.f1();
        stats
            .mass()
            .iter()
            .zip(f1)
            .map(|(&mass, f1_k)| {
                let (f1, c) = match self.average {
                    F1Average::Macro => {
                        (f1_k, if mass > 0.0 { 2.0 * stats.weight() / (k * mass) } else { 0.0 })
                    }
                    F1Average::Micro => (micro, 1.0),
                };
                (F::from_f64(c * (1.0 - f1 / 2.0)), F::from_f64(c * f1 / 2.0))
            })
            .collect()
    }

    /// The reduced loss of a validated batch, `scale·∂ℓ/∂z` into `grad_out` if given.
    fn reduced<F: Float>(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        stats: &F1Stats,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> F {
        let divisor = match self.reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => (0..targets.len()).map(|i| targets.sample_weight(i).as_f64()).sum(),
        };
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return F::zero();
        }
        let scale = F::from_f64(divisor.recip());
        let coefficients = self.coefficients::<F>(stats);
        let mut scratch = vec![F::zero(); logits.ncols()];
        let mut total = 0.0_f64;
        for_each_row(logits, grad_out, |i, z, grad| {
            let s = targets.sample_weight(i);
            let (a, b) = match &targets.kind {
                TargetKind::Labels(labels) => {
                    let y = labels[i];
                    let one_hot = move |k: usize| if k == y { F::one() } else { F::zero() };
                    row(z, &coefficients, s, one_hot, scale, grad, &mut scratch)
                }
                TargetKind::Probs(probs) => {
                    let t = probs.row(i);
                    row(z, &coefficients, s, |k| t[k], scale, grad, &mut scratch)
                }
            };
            total += a.as_f64() + b.as_f64();
        });
        F::from_f64(total / divisor)
    }
}

/// One validated row: returns the positive and negative parts of `ℓ` and writes `scale·∂ℓ/∂z`
/// into `grad`; `scratch` has the row's length.
fn row<F: Float>(
    z: &[F],
    coefficients: &[(F, F)],
    s: F,
    target: impl Fn(usize) -> F,
    scale: F,
    grad: &mut [F],
    scratch: &mut [F],
) -> (F, F) {
    grad.copy_from_slice(z);
    let lse = match exp_shift_in_place(grad) {
        Some(lse) if s > F::zero() => lse,
        // An ignored row; or a fully masked one, which validation allows only when ignored.
        _ => {
            grad.fill(F::zero());
            return (F::zero(), F::zero());
        }
    };
    let (mut positive_loss, mut negative_loss) = (F::zero(), F::zero());
    // ∂ℓ/∂z_j = p_j·(A + B − V) + (p_j v_j − a_j) − b_{k*} q*_j: scratch holds p_j v_j − a_j.
    let (mut a_total, mut b_total, mut v_total) = (F::zero(), F::zero(), F::zero());
    let k_star = lse.argmax;
    for (k, h) in scratch.iter_mut().enumerate() {
        let (pos, neg) = coefficients[k];
        let y = target(k);
        let (a, b) = (s * pos * y, s * neg * (F::one() - y));
        let e = grad[k];
        let p = e * lse.inv_total;
        *h = F::zero();
        if a > F::zero() {
            positive_loss -= a * ((z[k] - lse.max) - lse.ln_total);
            a_total += a;
            *h = -a;
        }
        if b > F::zero() {
            b_total += b;
            if k != k_star {
                // p_k ≤ 1/2 off the argmax: ln_1p(−p) and 1/(1 − p) are exact.
                negative_loss -= b * (-p).ln_1p();
                let v = b / lse.one_minus_p(k, e);
                v_total += v;
                *h += p * v;
            }
        }
    }
    let common = a_total + b_total - v_total;
    for (g, &h) in grad.iter_mut().zip(scratch.iter()) {
        *g = scale * (*g * lse.inv_total * common + h);
    }
    let b_star = s * coefficients[k_star].1 * (F::one() - target(k_star));
    if b_star > F::zero() {
        negative_loss += b_star * argmax_complement(z, lse, b_star * scale, grad, scratch);
    }
    (positive_loss, negative_loss)
}

/// For the argmax class `k*`: returns `−log(1 − p_{k*}) = lse(z) − lse_{j≠k*}(z)` and subtracts
/// `factor·q_j` from `grad_j`, `q` the softmax over the other classes. Computed from the other
/// classes' own maximum, so `1 − p_{k*}` never rounds to 0. With no other unmasked class, 0.
fn argmax_complement<F: Float>(z: &[F], lse: RowLse<F>, factor: F, grad: &mut [F], scratch: &mut [F]) -> F {
    let k_star = lse.argmax;
    let others = z.iter().enumerate().filter(|&(j, _)| j != k_star).map(|(_, &v)| v);
    let max = others.fold(F::neg_infinity(), F::max);
    if max == F::neg_infinity() {
        return F::zero();
    }
    let mut total = F::zero();
    for (j, (e, &v)) in scratch.iter_mut().zip(z).enumerate() {
        *e = if j == k_star { F::zero() } else { (v - max).exp() };
        total += *e;
    }
    let step = factor / total;
    for (g, &e) in grad.iter_mut().zip(scratch.iter()) {
        *g -= step * e;
    }
    (lse.max - max) + lse.ln_total - total.ln()
}

/// The cross-entropy checks of [`SoftmaxLoss`]: shapes, weights, labels or probabilities, logits.
fn check_batch<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<F>,
    outputs: &[(&'static str, &[usize], &[usize])],
) -> Result<()> {
    SoftmaxLoss::<F>::cross_entropy().check_batch(logits, targets, outputs)
}

/// The statistics of a validated batch.
fn local_stats<F: Float>(logits: &ArrayRef2<F>, targets: &Targets<F>) -> F1Stats {
    let mut stats = F1Stats::new(logits.ncols());
    for_each_row(logits, None, |i, z, e| {
        let s = targets.sample_weight(i).as_f64();
        stats.add_weight(s);
        e.copy_from_slice(z);
        // A fully masked row is an ignored one (validated): it adds nothing.
        if let Some(lse) = exp_shift_in_place(e) {
            for (k, &e_k) in e.iter().enumerate() {
                let y = match &targets.kind {
                    TargetKind::Labels(labels) => f64::from(u8::from(labels[i] == k)),
                    TargetKind::Probs(probs) => probs[[i, k]].as_f64(),
                };
                stats.add(k, s, y, (e_k * lse.inv_total).as_f64());
            }
        }
    });
    stats
}
