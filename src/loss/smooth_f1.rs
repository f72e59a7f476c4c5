//! Smooth-F1-weighted softmax cross-entropy: one-vs-rest terms weighted by the batch's soft F1.

use super::results::{check_row_losses, finish_gradient, overflow, reduced_loss};
use core::marker::PhantomData;

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::contract::Loss;
use super::f1_stats::F1Stats;
use super::softmax_loss::SoftmaxLoss;
use super::targets::{TargetKind, Targets};
use super::validate::{OutputShape, output_shapes};
use crate::error::check_shape;
use crate::float::{ExpArgs, exponent_of, lane_sum, ldexp, ln_1p_unit, pow2, scale_exponent, split_scale};
use crate::rows::{RowVisitor, visit_rows};
use crate::simd::{Kernel, dispatch};
use crate::softmax::{RowLse, row_lse};
use crate::{Float, Result};

/// Which F1 a [`SmoothF1Loss`] weights by.
///
/// # Example
///
/// ```
/// use longtail::{F1Average, SmoothF1Loss};
/// assert_eq!(SmoothF1Loss::<f32>::micro_f1().average(), F1Average::Micro);
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
/// [`loss_into`](Loss::loss_into)).
///
/// # Example
///
/// ```
/// use longtail::{Loss, SmoothF1Loss};
/// use ndarray::array;
///
/// let logits = array![[2.0_f32, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]];
/// let labels = [0, 2, 1];
/// let (value, grad) = SmoothF1Loss::macro_f1().loss_and_grad(&logits, &labels)?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系" (class imbalance: weights and
/// modified losses), kexue.fm/archives/7708 (2020); the macro form is the same derivation per class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SmoothF1Loss<F> {
    average: F1Average,
    reduction: Reduction,
    float: PhantomData<fn() -> F>,
}

impl<F: Float> SmoothF1Loss<F> {
    /// Weighted by the per-class soft F1 (macro), mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{F1Average, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::<f32>::macro_f1().average(), F1Average::Macro);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn macro_f1() -> Self {
        Self { average: F1Average::Macro, reduction: Reduction::Mean, float: PhantomData }
    }

    /// Weighted by the pooled soft F1 (micro), mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::<f64>::micro_f1().reduction(), Reduction::Mean);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn micro_f1() -> Self {
        Self { average: F1Average::Micro, reduction: Reduction::Mean, float: PhantomData }
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, SmoothF1Loss};
    /// assert_eq!(SmoothF1Loss::<f64>::macro_f1().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
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
    /// assert_eq!(SmoothF1Loss::<f32>::macro_f1().average(), F1Average::Macro);
    /// ```
    pub fn average(&self) -> F1Average {
        self.average
    }

    /// The batch statistics: per class `Σ s y p` and `Σ s (y + p)`, and `Σ s`.
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let stats = SmoothF1Loss::macro_f1().stats(&array![[0.0_f64, 0.0]], &[1])?;
    /// assert_eq!((stats.true_positive(), stats.mass(), stats.weight()), (&[0.0, 0.5][..], &[0.5, 1.5][..], 1.0));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn stats<'t>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<F1Stats>
    where
        F: 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &[])?;
        let stats: F1Stats = local_stats(logits, &targets, 1.0);
        if !stats.is_finite() {
            return Err(overflow("F1 statistics", None));
        }
        Ok(stats)
    }

    /// The reduced loss with F1 and scales from (merged) `stats`; its gradient overwrites
    /// `grad_out` (`[B, K]`).
    ///
    /// With the local batch's own statistics this is
    /// [`Loss::loss_and_grad_into`].
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`], and
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`"stats"`) unless `stats`
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
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SmoothF1Loss`].
    pub fn loss_and_grad_with_stats_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        stats: &F1Stats,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        check_batch(logits, &targets, &output_shapes(logits, None, Some(grad_out)))?;
        check_shape("stats", &[logits.ncols()], &[stats.classes()])?;
        self.reduced(logits, &targets, stats, Some(grad_out))
    }

    /// Per class, the coefficients `c_k (1 − F1_k/2)` of the positive terms and `c_k F1_k/2` of
    /// the negative ones, divided by `2^e` (returned third) where the largest `c_k` is 2 or more
    /// (or tiny): `c_k = 2W/(K·S_k)` of merged statistics may lie beyond `F` (or `f64`) where the
    /// loss does not, so it is formed from the exponents of `W` and `S_k` apart.
    fn coefficients(&self, stats: &F1Stats) -> (Vec<F>, Vec<F>, i32) {
        let k = stats.classes() as f64;
        let micro = stats.micro_f1();
        let weight = stats.weight();
        // c_k as `m·2^e`, `m` within a factor 4 of 1.
        let scales: Vec<(f64, i32)> = stats
            .mass()
            .iter()
            .map(|&mass| match self.average {
                F1Average::Macro if mass > 0.0 && weight > 0.0 => {
                    let (e_w, e_m) = (exponent_of(weight), exponent_of(mass));
                    (ldexp(weight, -e_w) / ldexp(mass, -e_m) * (2.0 / k), e_w - e_m)
                }
                F1Average::Macro => (0.0, 0),
                F1Average::Micro => (1.0, 0),
            })
            .collect();
        // Scaled down where the largest c_k is 2 or more, to [1, 2), so that a kernel term `c_k·ℓ`
        // overflows only where `ℓ` does; scaled up only where it is below `2^(−e_F/2)` (`e_F` the
        // largest exponent of `F`), to that bound.
        let half = exponent_of(F::max_value().as_f64()) / 2;
        let e = match scales.iter().filter(|s| s.0 > 0.0).map(|&(m, e)| e + exponent_of(m)).max() {
            Some(e) if e > 0 => e,
            Some(e) if e < -half => e + half,
            _ => 0,
        };
        let (positive, negative) = scales
            .iter()
            .zip(stats.f1())
            .map(|(&(m, e_c), f1_k)| {
                let f1 = if self.average == F1Average::Micro { micro } else { f1_k };
                let c = ldexp(m, e_c - e);
                (F::from_f64(c * (1.0 - f1 / 2.0)), F::from_f64(c * f1 / 2.0))
            })
            .unzip();
        (positive, negative, e)
    }

    /// The reduced loss of a validated batch, `scale·∂ℓ/∂z` into `grad_out` if given.
    ///
    /// The rows see the sample weights times `2^−e_s` (see [`sample_exponent`]), which the mean
    /// does not depend on and the sum gets back in `f64`: [`Error::Overflow`] only for a result
    /// beyond the float's range.
    fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        stats: &F1Stats,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        let e_s = sample_exponent(targets);
        let inv_s = pow2::<F>(-e_s);
        let (divisor, exp) = match self.reduction {
            Reduction::Sum => (1.0, e_s),
            Reduction::Mean => {
                ((0..targets.len()).map(|i| (targets.sample_weight(i) * inv_s).as_f64()).sum(), 0)
            }
        };
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return Ok(F::zero());
        }
        let (positive, negative, e_c) = self.coefficients(stats);
        let exp = exp + e_c;
        let (scale, k) = split_scale::<F>(divisor.recip(), exp);
        let mut grad_out = grad_out;
        let rows = LossRows {
            logits,
            targets,
            positive: &positive,
            negative: &negative,
            scale,
            inv_s,
            grad: grad_out.as_deref_mut(),
            losses: None,
        };
        let loss = reduced_loss::<F>(dispatch(rows), divisor, exp)?;
        finish_gradient(grad_out, k)?;
        Ok(loss)
    }
}

impl<F: Float> Loss<F> for SmoothF1Loss<F> {
    /// The reduced loss with F1 from the local batch, the gradient (F1 and scales held constant)
    /// into `grad_out` if given.
    ///
    /// # Errors
    ///
    /// Those of [`SoftmaxLoss`]'s [`loss_into`](Loss::loss_into) for cross-entropy, in the same
    /// order ([`Error::EmptyBatch`](crate::Error::EmptyBatch),
    /// [`Error::NoClasses`](crate::Error::NoClasses),
    /// [`Error::UnsupportedTargets`](crate::Error::UnsupportedTargets) for multi-hot targets,
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch),
    /// [`Error::InvalidSampleWeight`](crate::Error::InvalidSampleWeight),
    /// [`Error::LabelOutOfRange`](crate::Error::LabelOutOfRange),
    /// [`Error::InvalidTarget`](crate::Error::InvalidTarget),
    /// [`Error::TargetSum`](crate::Error::TargetSum),
    /// [`Error::NonFiniteLogit`](crate::Error::NonFiniteLogit),
    /// [`Error::MaskedTarget`](crate::Error::MaskedTarget)); then
    /// [`Error::Overflow`](crate::Error::Overflow) (`"loss"`, `"gradient"`; `"loss"` naming the
    /// row for the per-sample calls) for a result beyond the float's range. Sample weights are
    /// scaled by a power of two before they multiply, so a weighted mean never overflows where
    /// its value does not.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        check_batch(logits, targets, &output_shapes(logits, None, grad_out.as_deref()))?;
        self.reduced(logits, targets, &scaled_stats(logits, targets), grad_out)
    }

    /// Every row's share `ℓ_i` of the loss, with F1 and the scales `c_k` computed from the whole
    /// batch (a batch statistic, held constant), and its gradient: the terms of
    /// [`Reduction::Sum`], which they add up to.
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        check_batch(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        let (positive, negative, e_c) = self.coefficients(&scaled_stats(logits, targets));
        // The rows see the weights times 2^−e_s and the coefficients times 2^−e_c: the losses and
        // the gradient get both back.
        let e_s = sample_exponent(targets);
        let (scale, k) = split_scale::<F>(1.0, e_s + e_c);
        let mut grad_out = grad_out;
        dispatch(LossRows {
            logits,
            targets,
            positive: &positive,
            negative: &negative,
            scale,
            inv_s: pow2(-e_s),
            grad: grad_out.as_deref_mut(),
            losses: Some(&mut *losses_out),
        });
        if e_s + e_c != 0 {
            losses_out.mapv_inplace(|v| F::from_f64(ldexp(v.as_f64(), e_s + e_c)));
        }
        check_row_losses(losses_out)?;
        finish_gradient(grad_out, k)?;
        Ok(())
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// The exponent `e_s` that scales the sample weights into range (their maximum times `2^−e_s`,
/// see [`scale_exponent`]); 0 without weights.
fn sample_exponent<F: Float>(targets: &Targets<F>) -> i32 {
    let max = |w: &ndarray::ArrayView1<'_, F>| w.iter().fold(0.0_f64, |m, &v| m.max(v.as_f64()));
    targets.sample_weights.as_ref().map_or(0, |w| scale_exponent::<F>(max(w)))
}

/// The statistics of a validated batch from its sample weights times `2^−e_s` (see
/// [`sample_exponent`]): F1 and the scales `c_k` are ratios of the sums, which the common factor
/// leaves unchanged, while the sums of the weights themselves could overflow `f64`, or lose the
/// digits of subnormal weights.
fn scaled_stats<F: Float>(logits: &ArrayRef2<F>, targets: &Targets<F>) -> F1Stats {
    local_stats(logits, targets, ldexp(1.0, -sample_exponent(targets)))
}

/// Row `i`'s targets `y_i` as a slice: the one-hot row of its label, or its probability row
/// (copied into `buf` if strided).
#[inline(always)]
pub(super) fn target_row<'a, F: Float>(targets: &'a Targets<F>, i: usize, buf: &'a mut [F]) -> &'a [F] {
    match &targets.kind {
        TargetKind::Labels(labels) => {
            buf.fill(F::zero());
            buf[labels[i]] = F::one();
            buf
        }
        TargetKind::Rows(probs, _) => match probs.row(i).to_slice() {
            Some(row) => row,
            None => {
                buf.iter_mut().zip(probs.row(i)).for_each(|(dst, &src)| *dst = src);
                buf
            }
        },
    }
}

/// The loss rows of a validated batch, run by [`dispatch`] for the CPU's instruction set: returns
/// `Σ_i ℓ_i` (in `f64`), `scale·∂ℓ_i/∂z` into `grad` if given.
struct LossRows<'a, 't, F> {
    logits: &'a ArrayRef2<F>,
    targets: &'a Targets<'t, F>,
    positive: &'a [F],
    negative: &'a [F],
    scale: F,
    /// The sample weights' scale `2^−e_s`.
    inv_s: F,
    grad: Option<&'a mut ArrayRef2<F>>,
    losses: Option<&'a mut ArrayRef1<F>>,
}

impl<F: Float> Kernel for LossRows<'_, '_, F> {
    type Output = f64;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> f64 {
        let LossRows { logits, targets, positive, negative, scale, inv_s, grad, losses } = self;
        let k = logits.ncols();
        let mut visitor = LossVisitor::<F, FMA> {
            targets,
            positive,
            negative,
            scale,
            inv_s,
            y_buf: vec![F::zero(); k],
            scratch: vec![F::zero(); k + 2 * k.min(TERMS_BLOCK)],
            losses,
            total: 0.0,
        };
        visit_rows(logits, grad, &mut visitor);
        visitor.total
    }
}

/// [`LossRows`]' state while visiting them.
struct LossVisitor<'a, 't, F, const FMA: bool> {
    targets: &'a Targets<'t, F>,
    positive: &'a [F],
    negative: &'a [F],
    scale: F,
    inv_s: F,
    y_buf: Vec<F>,
    scratch: Vec<F>,
    losses: Option<&'a mut ArrayRef1<F>>,
    total: f64,
}

impl<F: Float, const FMA: bool> RowVisitor<F> for LossVisitor<'_, '_, F, FMA> {
    #[inline(always)]
    fn visit(&mut self, i: usize, z: &[F], grad: &mut [F]) {
        let s = self.targets.sample_weight(i) * self.inv_s;
        let y = target_row(self.targets, i, &mut self.y_buf);
        let coefficients = (self.positive, self.negative);
        let value = row::<F, FMA>(z, coefficients, s, y, self.scale, grad, &mut self.scratch);
        if let Some(losses) = self.losses.as_mut() {
            losses[i] = F::from_f64(value);
        }
        self.total += value;
    }
}

/// Classes per block of [`row`]'s terms, which are summed while in L1.
const TERMS_BLOCK: usize = 256;

/// One validated row with targets `y`: returns `ℓ` (in `f64`) and writes `scale·∂ℓ/∂z` into `grad`; `scratch`
/// holds the row's length and twice `min(K, TERMS_BLOCK)` more. Branch-free over the classes, so
/// that it vectorises.
#[inline(always)]
#[allow(clippy::too_many_arguments)] // the row, its targets and weight, the coefficients, two buffers
fn row<F: Float, const FMA: bool>(
    z: &[F],
    (positive, negative): (&[F], &[F]),
    s: F,
    y: &[F],
    scale: F,
    grad: &mut [F],
    scratch: &mut [F],
) -> f64 {
    let lse = match row_lse::<F, FMA>(grad, ExpArgs::Logits(z)) {
        Some(lse) if s > F::zero() => lse,
        // An ignored row; or a fully masked one, which validation allows only when ignored.
        _ => {
            grad.fill(F::zero());
            return 0.0;
        }
    };
    let zero = F::zero();
    // ∂ℓ/∂z_j = p_j·(A + B − V) + (p_j v_j − a_j) − b_{k*} q*_j: scratch holds p_j v_j − a_j.
    // The argmax's negative term is the complement's below: here its p reads 0, which adds
    // nothing but v_{k*} = b_{k*}, taken back after the pass.
    let k_star = lse.argmax;
    grad[k_star] = zero;
    // Per class: its loss term, and a_k + b_k − v_k; summed a block at a time.
    let (scratch, terms) = scratch.split_at_mut(z.len());
    let (loss_terms, common_terms) = terms.split_at_mut(terms.len() / 2);
    let (mut loss, mut common) = (0.0, 0.0);
    for start in (0..z.len()).step_by(TERMS_BLOCK) {
        let block = start..z.len().min(start + TERMS_BLOCK);
        let n = block.len();
        let outputs = loss_terms[..n].iter_mut().zip(&mut common_terms[..n]).zip(&mut scratch[block.clone()]);
        let inputs = grad[block.clone()].iter().zip(&z[block.clone()]).zip(&y[block.clone()]);
        let coefficients = positive[block.clone()].iter().zip(&negative[block]);
        for (((l, c), h), (((&e, &z), &y), (&pos, &neg))) in outputs.zip(inputs.zip(coefficients)) {
            let (a, b) = (s * pos * y, s * neg * (F::one() - y));
            let p = e * lse.inv_total;
            // A class without positive mass contributes nothing, even when masked (log p = -inf).
            let positive_term = if a > zero { a * ((z - lse.max) - lse.ln_total) } else { zero };
            // p ≤ 1/2 off the argmax: ln_1p(−p) and 1/(1 − p) are exact.
            *l = -positive_term - b * ln_1p_unit::<F, FMA>(-p);
            let v = b / (F::one() - p);
            *c = a + b - v;
            *h = p * v - a;
        }
        loss += lane_sum(&loss_terms[..n]).as_f64();
        common += lane_sum(&common_terms[..n]).as_f64();
    }
    let b_star = s * negative[k_star] * (F::one() - y[k_star]);
    let common = F::from_f64(common) + b_star;
    let mut loss = F::from_f64(loss);
    // The argmax's negative term. Unless `r` (the others' share) is below ε, the others'
    // softmax is `q_j = e_j / r` and `−log(1 − p_{k*}) = ln(1 + 1/r)`: the exponentials at hand
    // serve, no term that matters has flushed to 0. Else they are recomputed from the others'
    // own maximum.
    let quick = b_star > zero && lse.rest >= F::epsilon();
    // `b_{k*}·scale·q_j` as `(b_{k*}·scale)·(e_j/r)`: `e_j/r ≤ 1`, while `1/r` (up to `1/ε`)
    // times a large scale would overflow.
    let (step, inv_rest) = if quick { (b_star * scale, lse.rest.recip()) } else { (zero, zero) };
    let pass = grad.iter_mut().zip(scratch.iter());
    pass.for_each(|(g, &h)| *g = scale * (*g * lse.inv_total * common + h) - step * (*g * inv_rest));
    grad[k_star] = scale * (lse.inv_total * common + scratch[k_star]);
    if quick {
        loss += b_star * F::from_f64(lse.rest.as_f64().recip().ln_1p());
    } else if b_star > zero {
        loss += b_star * argmax_complement::<F, FMA>(z, lse, b_star * scale, grad, scratch);
    }
    if loss.is_finite() {
        return loss.as_f64();
    }
    row_loss_by_halves::<F, FMA>(z, (positive, negative), s, y, lse, scratch)
}

/// `ℓ` of a row whose loss in `F` overflowed, in `f64` from halved differences: `z_k − max` and
/// the argmax's `max − max_{j≠k*}` can exceed the range (logits near `±MAX`) where the row's
/// weighted loss, its terms times weights below 1, does not.
#[cold]
#[inline(never)]
fn row_loss_by_halves<F: Float, const FMA: bool>(
    z: &[F],
    (positive, negative): (&[F], &[F]),
    s: F,
    y: &[F],
    lse: RowLse<F>,
    scratch: &mut [F],
) -> f64 {
    let (max, ln_total) = (lse.max.as_f64(), lse.ln_total.as_f64());
    // −log p_k / 2 and −log(1 − p_k) / 2 off the argmax, where p_k ≤ 1/2.
    let mut half = 0.0;
    for k in 0..z.len() {
        let (a, b) = ((s * positive[k] * y[k]).as_f64(), (s * negative[k] * (F::one() - y[k])).as_f64());
        let minus_log_p_half = ln_total / 2.0 - (z[k].as_f64() / 2.0 - max / 2.0);
        if a > 0.0 {
            half += a * minus_log_p_half;
        }
        if b > 0.0 && k != lse.argmax {
            half -= b * (-(-2.0 * minus_log_p_half).exp()).ln_1p() / 2.0;
        }
    }
    let b_star = (s * negative[lse.argmax] * (F::one() - y[lse.argmax])).as_f64();
    if b_star > 0.0 {
        // −log(1 − p_{k*}) = (max − max_o) + ln_total − ln_total_o over the other classes.
        scratch[..z.len()].copy_from_slice(z);
        scratch[lse.argmax] = F::neg_infinity();
        if let Some(others) = row_lse::<F, FMA>(&mut scratch[..z.len()], ExpArgs::InPlace) {
            let others_max = others.max.as_f64();
            half += b_star * ((max / 2.0 - others_max / 2.0) + (ln_total - others.ln_total.as_f64()) / 2.0);
        }
    }
    2.0 * half
}

/// For the argmax class `k*`: returns `−log(1 − p_{k*}) = lse(z) − lse_{j≠k*}(z)` and subtracts
/// `factor·q_j` from `grad_j`, `q` the softmax over the other classes. Computed from the other
/// classes' own maximum, so `1 − p_{k*}` never rounds to 0. With no other unmasked class, 0.
#[inline(always)]
fn argmax_complement<F: Float, const FMA: bool>(
    z: &[F],
    lse: RowLse<F>,
    factor: F,
    grad: &mut [F],
    scratch: &mut [F],
) -> F {
    scratch.copy_from_slice(z);
    scratch[lse.argmax] = F::neg_infinity();
    let Some(others) = row_lse::<F, FMA>(scratch, ExpArgs::InPlace) else {
        return F::zero();
    };
    let step = factor * others.inv_total;
    grad.iter_mut().zip(scratch.iter()).for_each(|(g, &e)| *g -= step * e);
    (lse.max - others.max) + lse.ln_total - others.ln_total
}

/// The cross-entropy checks of [`SoftmaxLoss`]: shapes, weights, labels or probabilities, logits.
fn check_batch<F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<F>,
    outputs: &[OutputShape<'_>],
) -> Result<()> {
    SoftmaxLoss::<F>::cross_entropy().check_batch("SmoothF1Loss", logits, targets, outputs).map(drop)
}

/// Per-class sums of a batch statistic over softmax rows, accumulated row by row: the soft F1's
/// ([`F1Stats`]) and the Tversky index's ([`TverskyStats`](super::TverskyStats)).
pub(super) trait SoftmaxSums {
    /// Empty sums over `classes` classes.
    fn empty(classes: usize) -> Self;
    /// Adds a row weight `s` to `W`.
    fn add_weight(&mut self, s: f64);
    /// Adds a row of weight `s`, targets `y` and probabilities `p_k = e_k·inv_total`.
    fn add_row<F: Float>(&mut self, s: f64, y: &[F], e: &[F], inv_total: F);
}

impl SoftmaxSums for F1Stats {
    fn empty(classes: usize) -> Self {
        F1Stats::new(classes)
    }
    #[inline(always)]
    fn add_weight(&mut self, s: f64) {
        F1Stats::add_weight(self, s);
    }
    #[inline(always)]
    fn add_row<F: Float>(&mut self, s: f64, y: &[F], e: &[F], inv_total: F) {
        F1Stats::add_row(self, s, y, e, inv_total);
    }
}

/// The statistics of a validated batch, each sample weight times `weight_scale` (a power of two).
pub(super) fn local_stats<S: SoftmaxSums, F: Float>(
    logits: &ArrayRef2<F>,
    targets: &Targets<F>,
    weight_scale: f64,
) -> S {
    dispatch(StatsRows { logits, targets, weight_scale, sums: PhantomData })
}

/// The rows of [`local_stats`], run by [`dispatch`] for the CPU's instruction set.
struct StatsRows<'a, 't, F, S> {
    logits: &'a ArrayRef2<F>,
    targets: &'a Targets<'t, F>,
    weight_scale: f64,
    sums: PhantomData<fn() -> S>,
}

impl<F: Float, S: SoftmaxSums> Kernel for StatsRows<'_, '_, F, S> {
    type Output = S;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> S {
        let StatsRows { logits, targets, weight_scale, .. } = self;
        let k = logits.ncols();
        let y_buf = vec![F::zero(); k];
        let mut visitor = StatsVisitor::<F, S, FMA> { targets, weight_scale, stats: S::empty(k), y_buf };
        visit_rows(logits, None, &mut visitor);
        visitor.stats
    }
}

/// [`StatsRows`]' state while visiting them: the statistics so far.
struct StatsVisitor<'a, 't, F, S, const FMA: bool> {
    targets: &'a Targets<'t, F>,
    weight_scale: f64,
    stats: S,
    y_buf: Vec<F>,
}

impl<F: Float, S: SoftmaxSums, const FMA: bool> RowVisitor<F> for StatsVisitor<'_, '_, F, S, FMA> {
    #[inline(always)]
    fn visit(&mut self, i: usize, z: &[F], e: &mut [F]) {
        let s = self.targets.sample_weight(i).as_f64() * self.weight_scale;
        self.stats.add_weight(s);
        // A fully masked row is an ignored one (validated): it adds nothing.
        if let Some(lse) = row_lse::<F, FMA>(e, ExpArgs::Logits(z)) {
            let y = target_row(self.targets, i, &mut self.y_buf);
            self.stats.add_row(s, y, e, lse.inv_total);
        }
    }
}
