//! The softmax loss family: one fused loss with orthogonal options.

use super::results::{check_row_losses, finish_gradient, reduced_loss};
use ndarray::{ArrayRef1, ArrayRef2, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use super::Reduction;
use super::class_values::ClassValues;
use super::contract::Loss;
use super::few_classes::{self, FEW_CLASSES, FewClassRows};
use super::kernel::{
    ClassFactors, RowMass, Targets as RowTargets, dense_row, one_hot_row, plain_dense_row, shifted_exp,
};
use super::short_rows::{Finished, GroupTargets, one_hot_group, plain_dense_group};
use super::targets::{TargetKind, Targets};
use super::two_classes::{LabelMargins, TwoClassRows};
use super::validate::{class_vector, output_shapes};
use crate::float::{exponent_of, ldexp, pow2, scale_exponent, split_scale, weight_exponent};
use crate::group::{GROUP, Group, RowMap, SHORT_ROW, group_lse, transpose_rows};
use crate::rows::{CHUNK, PARALLEL_MIN, RowVisitor, sum_chunks, visit_rows};
use crate::simd::Kernel;
use crate::softmax::{RowLse, abs_max, check_rows};
use crate::{Error, Float, Result};

/// Softmax cross-entropy and its imbalance-aware variants, with the exact gradient with respect to
/// the logits, in one pass over the batch.
///
/// Logits `z` are `[B, K]`; targets are hard labels `y_i` or probability rows `t_i`
/// (see [`Targets`]). With every option set, row `i` of the batch costs
///
/// ```text
/// p_i   = softmax(z_i + τ·log(π / Σ_j π_j))            logit adjustment (prior π, temperature τ)
/// t'_ik = (1 − ε)·t_ik + ε/K                           label smoothing; t_i = e_{y_i} for hard labels
/// a_k   = w_k · α_k                                     class weights w, focal α (1 where unset)
/// ℓ_i   = s_i · Σ_k a_k · t'_ik · (1 − p_ik)^γ · (−log p_ik)     s_i: sample weight, γ: focal
/// ```
///
/// and the batch loss is reduced by [`Reduction`]:
///
/// - `Mean` (default): `L = Σ_i ℓ_i / D`, with `D = Σ_i s_i·w_{y_i}` for hard labels and
///   `D = Σ_i s_i` for probability targets. This is PyTorch's `cross_entropy` convention, also
///   with label smoothing: there `ℓ_i = s_i·[(1 − ε)·w_y·(−log p_y) + (ε/K)·Σ_k w_k·(−log p_k)]` and
///   `D` still counts `w_{y_i}` only. Class weights `w` enter `D`; focal `α` does not (it reweights
///   the terms, as in Lin et al.). If `D = 0` (every row ignored) the loss is 0 and the gradient 0.
/// - `Sum`: `L = Σ_i ℓ_i`.
///
/// The per-sample calls return every `ℓ_i` and `∂ℓ_i/∂z_i`, unreduced.
///
/// The classic losses are special cases, each with a named constructor:
///
/// | constructor | row loss |
/// |---|---|
/// | [`cross_entropy`](Self::cross_entropy) | `lse(z) − z_y` |
/// | [`logit_adjusted`](Self::logit_adjusted) | CE on `z + τ·log π`, `τ = 1` |
/// | [`class_weighted`](Self::class_weighted) | `w_y · CE`, mean divides by `Σ w_{y_i}` |
/// | [`focal`](Self::focal) | `−α_y (1 − p_y)^γ log p_y` |
///
/// and the `with_*` setters combine them freely: every combination is computed by the same kernel.
///
/// # Gradient
///
/// With `h_ik = s_i·a_k·t'_ik·(1 − p_ik)^γ·(1 − γ·p_ik·log p_ik / (1 − p_ik))` and `H_i = Σ_k h_ik`,
/// `∂ℓ_i/∂z_ij = H_i·p_ij − h_ij`; for a hard label without smoothing this is the per-row scalar
/// `h_iy` times `p_i − e_{y_i}`. The mean's gradient is that divided by `D`. Logit adjustment is a
/// constant shift of the logits, so the gradient is with respect to the caller's `z`.
///
/// # Numerics
///
/// Per-row max shift; `log p` of a near-certain class via `ln_1p` (no rounding to 0); `1 − p` via
/// `−expm1(log p)`; for `0 < γ < 1` the factor `log p / (1 − p) → −1` keeps the gradient finite as
/// `p → 1`; focal uses the model's `p`, never `exp(−weighted CE)`. `-inf` logits mask classes.
/// Per-row losses are summed in `f64`.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`] for a parameter out of its domain. Each call
/// validates the batch first (see [`loss_into`](Loss::loss_into)).
///
/// # Example
///
/// ```
/// use longtail::{Loss, SoftmaxLoss};
/// use ndarray::array;
///
/// let logits = array![[2.0_f32, 0.5, -1.0], [0.1, 0.2, 3.0]];
/// let labels = [0, 2];
/// let counts = [900.0, 90.0, 10.0];
/// // Logit adjustment for the long tail, focal modulation on top, per-class weights too.
/// let loss = SoftmaxLoss::logit_adjusted(&counts)?
///     .with_focal(2.0)?
///     .with_class_weights(&[0.5, 1.0, 2.0])?;
/// let (value, grad) = loss.loss_and_grad(&logits, &labels)?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
/// - T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
/// - C. Szegedy et al., "Rethinking the Inception Architecture" (label smoothing), arXiv:1512.00567.
/// - PyTorch `torch.nn.functional.cross_entropy` (the weighted-mean and smoothing conventions).
#[derive(Debug, Clone, PartialEq)]
pub struct SoftmaxLoss<F> {
    pub(super) adjustment: Option<Vec<F>>,
    pub(super) class_weights: Option<Vec<F>>,
    pub(super) alpha: Option<Vec<F>>,
    pub(super) gamma: F,
    pub(super) label_smoothing: F,
    pub(super) reduction: Reduction,
    /// The class weights and class factors, scaled into range (`None` without either).
    pub(super) scaled: Option<ScaledClasses<F>>,
}

/// The class weights `w_k` and class factors `a_k = w_k·α_k`, each scaled by a power of two that
/// brings its maximum into `[1, 2)` (or, below `2^−60`, up to `[2^−60, 2^−59)`; see
/// `float::scale_exponent`): the kernel multiplies them by sample weights scaled the same way, so
/// no product overflows or underflows, and the reduction puts the powers of two back. Scaling by a
/// power of two is exact, so ordinary weights give the results of the unscaled formulas bit for
/// bit. Weights whose ratios exceed the float's range (a product of a sample and a class weight
/// more than `2^126` below the batch's largest, in `f32`) lose the small ones.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ScaledClasses<F> {
    /// `w_k·2^−weight_exp` (1 where unset).
    pub weights: Vec<F>,
    /// `w_k·α_k·2^−factor_exp`.
    pub factors: Vec<F>,
    pub weight_exp: i32,
    pub factor_exp: i32,
}

impl<F: Float> ScaledClasses<F> {
    /// From the class weights and `α` (either may be unset; lengths are checked on each call, so
    /// the shorter one is used here).
    fn new(weights: Option<&[F]>, alpha: Option<&[F]>) -> Option<Self> {
        let k = match (weights, alpha) {
            (None, None) => return None,
            (Some(w), None) => w.len(),
            (None, Some(a)) => a.len(),
            (Some(w), Some(a)) => w.len().min(a.len()),
        };
        let value = |v: Option<&[F]>, j: usize| v.map_or(1.0, |v| v[j].as_f64());
        // Each value as `m·2^e`, `m ∈ [1, 2)`; a product's mantissas multiply in f64 (no overflow).
        let split = |v: f64| {
            let e = exponent_of(v);
            (ldexp(v, -e), e)
        };
        let max_w = (0..k).fold(0.0_f64, |m, j| m.max(value(weights, j)));
        let weight_exp = if weights.is_some() { weight_exponent::<F>(exponent_of(max_w)) } else { 0 };
        let products: Vec<(f64, i32)> = (0..k)
            .map(|j| {
                let ((mw, ew), (ma, ea)) = (split(value(weights, j)), split(value(alpha, j)));
                (mw * ma, ew + ea)
            })
            .collect();
        let max_exp = products.iter().filter(|(m, _)| *m > 0.0).map(|&(m, e)| e + exponent_of(m)).max();
        let factor_exp = max_exp.map_or(0, weight_exponent::<F>);
        Some(Self {
            weights: (0..k).map(|j| F::from_f64(ldexp(value(weights, j), -weight_exp))).collect(),
            factors: products.iter().map(|&(m, e)| F::from_f64(ldexp(m, e - factor_exp))).collect(),
            weight_exp,
            factor_exp,
        })
    }
}

impl<F: Float> Default for SoftmaxLoss<F> {
    fn default() -> Self {
        Self::cross_entropy()
    }
}

impl<F: Float> SoftmaxLoss<F> {
    /// Softmax cross-entropy, `ℓ_i = lse(z_i) − z_{i,y_i}`, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let (loss, grad) = SoftmaxLoss::cross_entropy().loss_and_grad(&array![[0.0_f64, 0.0]], &[1])?;
    /// assert!((loss - 2f64.ln()).abs() < 1e-15);
    /// assert_eq!(grad.row(0).to_vec(), vec![0.5, -0.5]); // softmax(z) − e_y
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// PyTorch `torch.nn.functional.cross_entropy`; optax `softmax_cross_entropy_with_integer_labels`.
    pub fn cross_entropy() -> Self {
        Self {
            adjustment: None,
            class_weights: None,
            alpha: None,
            gamma: F::zero(),
            label_smoothing: F::zero(),
            reduction: Reduction::Mean,
            scaled: None,
        }
    }

    /// Logit-adjusted cross-entropy with `τ = 1`: CE on `z + log π`.
    ///
    /// `prior` holds class counts or probabilities (any positive scale: a constant shift of the
    /// logits cancels). See [`with_logit_adjustment`](Self::with_logit_adjustment).
    ///
    /// This is also the **Balanced Softmax** loss (Ren et al. 2020), which writes the class-prior
    /// softmax as `p_y = n_y e^{z_y} / Σ_k n_k e^{z_k}`: that is `softmax(z + log n)_y`, and
    /// `log n` differs from `log π` by a constant per row, so `−log p_y` is this loss.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"prior"`) for an entry that is zero, negative or not
    /// finite.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[1.0_f64, 1.0]];
    /// // The frequent class 0 must win by log(9) to be as likely as the rare class 1.
    /// let la = SoftmaxLoss::logit_adjusted(&[900.0, 100.0])?;
    /// let ce = SoftmaxLoss::cross_entropy();
    /// let shifted = array![[1.0 + 0.9f64.ln(), 1.0 + 0.1f64.ln()]];
    /// assert!((la.loss(&logits, &[1])? - ce.loss(&shifted, &[1])?).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    /// - J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi, H. Li, "Balanced Meta-Softmax for
    ///   Long-Tailed Visual Recognition", NeurIPS 2020, arXiv:2007.10740 (Balanced Softmax, Eq. 4).
    pub fn logit_adjusted<'p>(prior: impl Into<ClassValues<'p, F>>) -> Result<Self>
    where
        F: 'p,
    {
        Self::cross_entropy().with_logit_adjustment(prior, F::one())
    }

    /// Class-weighted cross-entropy: `ℓ_i = w_{y_i}·CE_i`, and the mean divides by `Σ_i w_{y_i}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"class_weights"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[0.0_f64, 0.0], [0.0, 0.0]];
    /// let loss = SoftmaxLoss::class_weighted(&[1.0, 3.0])?.loss(&logits, &[0, 1])?;
    /// // Both rows cost ln 2; the weighted mean of equal values is that value.
    /// assert!((loss - 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// PyTorch `torch.nn.functional.cross_entropy` (`weight=`); G. King, L. Zeng, "Logistic
    /// Regression in Rare Events Data", Political Analysis 9(2), 2001.
    pub fn class_weighted<'w>(weights: impl Into<ClassValues<'w, F>>) -> Result<Self>
    where
        F: 'w,
    {
        Self::cross_entropy().with_class_weights(weights)
    }

    /// Focal loss: `ℓ_i = −(1 − p_y)^γ log p_y`; `γ = 0` is cross-entropy.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a negative or non-finite `γ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[3.0_f64, 0.0]];
    /// let focal = SoftmaxLoss::focal(2.0)?.loss(&logits, &[0])?;
    /// let ce = SoftmaxLoss::cross_entropy().loss(&logits, &[0])?;
    /// let p = 1.0 / (1.0 + (-3f64).exp());
    /// assert!((focal - (1.0 - p).powi(2) * ce).abs() < 1e-15); // easy examples are down-weighted
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
    pub fn focal(gamma: F) -> Result<Self> {
        Self::cross_entropy().with_focal(gamma)
    }

    /// Adds logit adjustment: the softmax is taken of `z + τ·log(π / Σ_j π_j)`.
    ///
    /// `prior` holds class counts or probabilities; it must have `K` entries (checked on each call).
    /// `τ = 0` turns the adjustment off: the prior is then not kept, so any non-negative prior of
    /// any length is accepted. A negative `τ` is legal.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`]: `"tau"` if `τ` is not finite, or so large that some
    /// `τ·log(π_k/Σπ)` overflows the float type; `"prior"` for an entry that is negative or not
    /// finite, or zero while `τ ≠ 0` (smooth zero counts first, e.g. add 1).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    ///
    /// let loss = SoftmaxLoss::<f64>::cross_entropy().with_logit_adjustment(&[3.0, 1.0], 2.0)?;
    /// let adjust = loss.logit_adjustment().unwrap();
    /// assert!((adjust[0] - 2.0 * 0.75f64.ln()).abs() < 1e-15);
    /// assert!(SoftmaxLoss::<f64>::cross_entropy().with_logit_adjustment(&[3.0, 0.0], 1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn with_logit_adjustment<'p>(mut self, prior: impl Into<ClassValues<'p, F>>, tau: F) -> Result<Self>
    where
        F: 'p,
    {
        let prior = prior.into();
        let prior = prior.view();
        if !tau.is_finite() {
            return Err(invalid("tau", None, tau, "a finite number"));
        }
        let positive = tau != F::zero();
        let expected = if positive {
            "finite and > 0 when tau != 0 (smooth zero counts first)"
        } else {
            "finite and >= 0"
        };
        let prior =
            class_vector("prior", prior, expected, |v| v > F::zero() || (!positive && v == F::zero()))?;
        self.adjustment = positive.then(|| {
            // log Σπ as log max + log Σ(π/max): no overflow for any finite counts.
            let max = prior.iter().fold(0.0_f64, |m, v| m.max(v.as_f64()));
            let log_sum = max.ln() + prior.iter().map(|v| v.as_f64() / max).sum::<f64>().ln();
            let tau = tau.as_f64();
            prior.iter().map(|v| F::from_f64(tau * (v.as_f64().ln() - log_sum))).collect::<Vec<F>>()
        });
        if self.adjustment.as_ref().is_some_and(|a| a.iter().any(|v| !v.is_finite())) {
            return Err(invalid("tau", None, tau, "small enough that tau * log(prior) is finite"));
        }
        Ok(self)
    }

    /// Replaces the class weights in place (length `K`), e.g. with the epoch's weights of a
    /// [`DeferredReweighting`](crate::prior::DeferredReweighting) schedule, without rebuilding the
    /// loss. On an error the loss is unchanged.
    ///
    /// # Errors
    ///
    /// As [`with_class_weights`](Self::with_class_weights).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::prior::{ClassWeights, DeferredReweighting};
    /// use longtail::{Loss, Prior, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// // Deferred re-weighting: plain cross-entropy until epoch 2, then inverse-frequency weights.
    /// let prior = Prior::from_counts(&[90.0, 10.0])?;
    /// let drw = DeferredReweighting::new(2, ClassWeights::inverse_frequency(), &prior)?;
    /// let mut loss = SoftmaxLoss::cross_entropy();
    /// let logits = array![[2.0_f32, 0.0], [0.0, 1.0]];
    /// for epoch in 0..4 {
    ///     loss.set_class_weights(&drw.weights_at(epoch))?;
    ///     let (value, _) = loss.loss_and_grad(&logits, &[0, 1])?;
    ///     assert!(value > 0.0);
    /// }
    /// assert_eq!(loss.class_weights(), Some(&drw.weights_at::<f32>(3).to_vec()[..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., NeurIPS 2019, arXiv:1906.07413 (deferred re-weighting, §3.3).
    pub fn set_class_weights<'w>(&mut self, weights: impl Into<ClassValues<'w, F>>) -> Result<()>
    where
        F: 'w,
    {
        *self = self.clone().with_class_weights(weights)?;
        Ok(())
    }

    /// Adds class weights `w` (length `K`): row `i`'s loss is scaled by `w_{y_i}` (by `w_k` per
    /// term for smoothed or probability targets), and the mean divides by `Σ_i s_i·w_{y_i}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"class_weights"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[0.0_f32, 1.0], [2.0, 0.0]];
    /// let (sum, _) = SoftmaxLoss::cross_entropy()
    ///     .with_class_weights(&[2.0, 0.0])?
    ///     .with_reduction(longtail::Reduction::Sum)
    ///     .loss_and_grad(&logits, &[0, 1])?;
    /// let ce0 = SoftmaxLoss::cross_entropy().loss(&logits.slice(ndarray::s![..1, ..]), &[0])?;
    /// assert!((sum - 2.0 * ce0).abs() < 1e-6); // class 1 has weight 0
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// PyTorch `torch.nn.functional.cross_entropy` (`weight=`).
    pub fn with_class_weights<'w>(mut self, weights: impl Into<ClassValues<'w, F>>) -> Result<Self>
    where
        F: 'w,
    {
        self.class_weights =
            Some(class_vector("class_weights", weights, "finite and >= 0", |v| v >= F::zero())?);
        self.scaled = ScaledClasses::new(self.class_weights.as_deref(), self.alpha.as_deref());
        Ok(self)
    }

    /// Adds focal modulation `(1 − p_k)^γ` to every term; `γ = 0` is no modulation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a negative or non-finite `γ`, or one above
    /// `ε/MIN_POSITIVE` of the float type (`1e31` in `f32`, `1e292` in `f64`): the kernel's
    /// exponentials flush to 0 below the smallest normal number, and beyond that bound the
    /// flushed `p` would change `(1 − p)^γ` by more than the float's precision.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    ///
    /// assert_eq!(SoftmaxLoss::<f32>::cross_entropy().with_focal(0.5)?.gamma(), 0.5);
    /// assert!(SoftmaxLoss::<f32>::cross_entropy().with_focal(1e32).is_err());
    /// assert!(SoftmaxLoss::<f32>::cross_entropy().with_focal(-1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
    pub fn with_focal(mut self, gamma: F) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= F::zero() && gamma <= gamma_bound()) {
            return Err(invalid(
                "gamma",
                None,
                gamma,
                "in [0, eps / MIN_POSITIVE] (1e31 in f32, 1e292 in f64)",
            ));
        }
        self.gamma = gamma;
        Ok(self)
    }

    /// Adds focal `α` (length `K`): term `k` is scaled by `α_k`, and unlike class weights `α` does
    /// not enter the mean's denominator.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"alpha"`) for a negative or non-finite entry.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[0.0_f64, 0.0], [0.0, 0.0]];
    /// let loss = SoftmaxLoss::focal(2.0)?.with_alpha(&[0.25, 0.75])?.loss(&logits, &[0, 1])?;
    /// // Mean over the two rows of α_y · (1/2)² · ln 2.
    /// assert!((loss - 0.5 * 0.25 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
    pub fn with_alpha<'a>(mut self, alpha: impl Into<ClassValues<'a, F>>) -> Result<Self>
    where
        F: 'a,
    {
        self.alpha = Some(class_vector("alpha", alpha, "finite and >= 0", |v| v >= F::zero())?);
        self.scaled = ScaledClasses::new(self.class_weights.as_deref(), self.alpha.as_deref());
        Ok(self)
    }

    /// Adds label smoothing: targets become `(1 − ε)·t + ε/K`, for hard labels and probability
    /// targets alike.
    ///
    /// Every class then carries target mass, so a masked (`-inf`) logit in a row that counts is an
    /// error ([`Error::MaskedTarget`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"label_smoothing"`) unless `0 ≤ ε < 1`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[2.0_f64, 0.0]];
    /// let smoothed = SoftmaxLoss::cross_entropy().with_label_smoothing(0.2)?;
    /// let soft = array![[0.9, 0.1]]; // (1 − 0.2)·e_0 + 0.2/2
    /// assert!((smoothed.loss(&logits, &[0])? - SoftmaxLoss::cross_entropy().loss(&logits, &soft)?).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// C. Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016,
    /// arXiv:1512.00567.
    pub fn with_label_smoothing(mut self, epsilon: F) -> Result<Self> {
        if !(epsilon >= F::zero() && epsilon < F::one()) {
            return Err(invalid("label_smoothing", None, epsilon, "in [0, 1)"));
        }
        self.label_smoothing = epsilon;
        Ok(self)
    }

    /// Sets how [`loss_and_grad`](Self::loss_and_grad) reduces the batch (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![[0.0_f64, 0.0], [0.0, 0.0]];
    /// let sum = SoftmaxLoss::cross_entropy().with_reduction(Reduction::Sum).loss(&logits, &[0, 1])?;
    /// assert!((sum - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The logit adjustment `τ·log(π / Σπ)`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    /// assert!(SoftmaxLoss::<f32>::cross_entropy().logit_adjustment().is_none());
    /// ```
    pub fn logit_adjustment(&self) -> Option<&[F]> {
        self.adjustment.as_deref()
    }

    /// The class weights `w`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    /// let loss = SoftmaxLoss::class_weighted(&[1.0_f32, 4.0])?;
    /// assert_eq!(loss.class_weights(), Some(&[1.0, 4.0][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn class_weights(&self) -> Option<&[F]> {
        self.class_weights.as_deref()
    }

    /// The focal `α`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    /// assert!(SoftmaxLoss::<f64>::focal(2.0)?.alpha().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn alpha(&self) -> Option<&[F]> {
        self.alpha.as_deref()
    }

    /// The focal exponent `γ` (0 without focal modulation).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    /// assert_eq!(SoftmaxLoss::<f64>::cross_entropy().gamma(), 0.0);
    /// ```
    pub fn gamma(&self) -> F {
        self.gamma
    }

    /// The label smoothing `ε`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SoftmaxLoss;
    /// assert_eq!(SoftmaxLoss::<f64>::cross_entropy().label_smoothing(), 0.0);
    /// ```
    pub fn label_smoothing(&self) -> F {
        self.label_smoothing
    }

    /// The scaled class weight `w_k·2^−weight_exp` (1 without class weights).
    #[inline]
    fn class_weight(&self, k: usize) -> F {
        self.scaled.as_ref().map_or(F::one(), |s| s.weights[k])
    }

    /// The scaled class factor `a_k·2^−factor_exp` of term `k`, `a_k = w_k·α_k`.
    #[inline]
    pub(super) fn class_factor(&self, k: usize) -> F {
        self.scaled.as_ref().map_or(F::one(), |s| s.factors[k])
    }

    /// Whether the class factor `w_k·α_k` is positive (exactly, whatever its scaled value).
    #[inline]
    pub(super) fn class_factor_positive(&self, k: usize) -> bool {
        self.class_weights.as_ref().is_none_or(|w| w[k] > F::zero())
            && self.alpha.as_ref().is_none_or(|a| a[k] > F::zero())
    }

    /// The exponents `(weight_exp, factor_exp)` of the scaled class weights and factors.
    fn class_exps(&self) -> (i32, i32) {
        self.scaled.as_ref().map_or((0, 0), |s| (s.weight_exp, s.factor_exp))
    }

    /// Whether the rows of `targets` take the one-hot path: hard labels without smoothing.
    fn one_hot_path(&self, targets: &Targets<F>) -> bool {
        self.label_smoothing == F::zero() && matches!(targets.kind, TargetKind::Labels(_))
    }

    /// Whether contiguous rows of `classes` classes and `targets` run through [`FewClassRows`]:
    /// one-hot rows of 3 to [`FEW_CLASSES`] classes whose labels are contiguous.
    fn few_class_path(&self, targets: &Targets<F>, classes: usize) -> bool {
        let contiguous = matches!(&targets.kind, TargetKind::Labels(y) if y.as_slice().is_some());
        self.one_hot_path(targets) && contiguous && (3..=FEW_CLASSES).contains(&classes)
    }

    /// Label smoothing over `classes` classes.
    pub(super) fn smoothing(&self, classes: usize) -> Smoothing<F> {
        let eps = self.label_smoothing;
        Smoothing { keep: F::one() - eps, spread: eps / F::from_f64(classes as f64) }
    }

    /// The mean's denominator `D` (`Σ_i s_i·w_{y_i}` for hard labels, `Σ_i s_i` for
    /// probabilities) in terms of the scaled weights: `Σ_i s'_i·w'_{y_i}` or `Σ_i s'_i`, with
    /// `s' = s·inv_s` and `w'` the scaled class weights.
    fn mean_denominator(&self, targets: &Targets<F>, inv_s: F) -> f64 {
        let rows = 0..targets.len();
        let unweighted = targets.sample_weights.is_none()
            && (self.class_weights.is_none() || matches!(targets.kind, TargetKind::Rows(..)));
        if unweighted {
            // A sum of ones, exact.
            return targets.len() as f64;
        }
        match &targets.kind {
            TargetKind::Labels(labels) => rows
                .zip(labels)
                .map(|(i, &y)| (targets.sample_weight(i) * inv_s * self.class_weight(y)).as_f64())
                .sum(),
            TargetKind::Rows(..) => rows.map(|i| (targets.sample_weight(i) * inv_s).as_f64()).sum(),
        }
    }

    /// The reduced loss of a validated batch (`prob_sums` from the check), the gradient into
    /// `grad_out` if given.
    ///
    /// The kernel sees sample weights `s' = s·2^−e_s` and the scaled class factors (see
    /// [`ScaledClasses`]); the powers of two come back here, in `f64`: a weighted mean does not
    /// depend on the weights' scale, and only a result beyond the float's range is an error.
    fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        prob_sums: &[F],
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        let sample_exp = sample_exponent(targets);
        let inv_s = pow2::<F>(-sample_exp);
        let (weight_exp, factor_exp) = self.class_exps();
        let (divisor, exp) = match self.reduction {
            Reduction::Sum => (1.0, sample_exp + factor_exp),
            Reduction::Mean => {
                let weight_exp = if matches!(targets.kind, TargetKind::Rows(..)) { 0 } else { weight_exp };
                (self.mean_denominator(targets, inv_s), factor_exp - weight_exp)
            }
        };
        if divisor == 0.0 {
            // No row counts, and the kernel does not run: the logits are checked on their own.
            self.check_logits(logits, targets)?;
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return Ok(F::zero());
        }
        let (scale, k) = split_scale::<F>(divisor.recip(), exp);
        let mut grad_out = grad_out;
        let total = self.rows(logits, targets, prob_sums, grad_out.as_deref_mut(), None, scale, inv_s, 0)?;
        let loss = reduced_loss::<F>(total, divisor, exp)?;
        finish_gradient(grad_out, k)?;
        Ok(loss)
    }

    /// Every row's loss into `losses_out` and its gradient into `grad_out` if given, of a
    /// validated batch; [`Error::Overflow`] (`"loss"`, naming the row) for a row loss beyond the
    /// float's range.
    fn per_sample(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        prob_sums: &[F],
        grad_out: Option<&mut ArrayRef2<F>>,
        losses_out: &mut ArrayRef1<F>,
    ) -> Result<()> {
        let sample_exp = sample_exponent(targets);
        let exp = sample_exp + self.class_exps().1;
        let (scale, k) = split_scale::<F>(1.0, exp);
        let mut grad_out = grad_out;
        let grad = grad_out.as_deref_mut();
        self.rows(logits, targets, prob_sums, grad, Some(losses_out), scale, pow2::<F>(-sample_exp), exp)?;
        check_row_losses(losses_out)?;
        finish_gradient(grad_out, k)?;
        Ok(())
    }

    /// Runs the kernel over a batch whose targets are validated (`prob_sums`: the sum of each
    /// probability row, from the check): `scale·∂ℓ_i/∂z_i` into row `i` of `grad_out` (or a
    /// scratch row), `ℓ_i·2^loss_exp` into `losses_out[i]` if given; returns `Σ_i ℓ_i`, summed in
    /// `f64`. Sample weights are multiplied by `inv_s`, an exact power of two. Each chunk checks
    /// its logits before it reads them; the error of the first chunk that fails is returned, so
    /// it names the first bad logit in row-major order, and the rows before it are written.
    ///
    /// The rows are cut into chunks whose size depends on `K` alone; each chunk's sum starts at 0
    /// and the chunk sums are added in order. With the `rayon` feature, batches of at least
    /// [`PARALLEL_MIN`] elements run their chunks in parallel: the result is bit-identical to
    /// one thread's, for any number of threads.
    #[allow(clippy::too_many_arguments)] // the batch, its outputs and the scaling, all needed
    fn rows(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        prob_sums: &[F],
        grad_out: Option<&mut ArrayRef2<F>>,
        losses_out: Option<&mut ArrayRef1<F>>,
        scale: F,
        inv_s: F,
        loss_exp: i32,
    ) -> Result<f64> {
        let (batch, classes) = logits.dim();
        // Rows per chunk: `CHUNK / K`, at least 1.
        let chunk = (CHUNK / classes).max(1);
        let adjust_max = abs_max(self.adjustment.as_deref());
        let mut grads = grad_out.map(|g| g.axis_chunks_iter_mut(Axis(0), chunk));
        let mut losses = losses_out.map(|l| l.axis_chunks_iter_mut(Axis(0), chunk));
        let chunks = logits.axis_chunks_iter(Axis(0), chunk).enumerate().map(|(c, logits)| Chunk {
            loss: self,
            targets,
            prob_sums,
            first: c * chunk,
            logits,
            adjust_max,
            grad: grads.as_mut().and_then(Iterator::next),
            losses: losses.as_mut().and_then(Iterator::next),
            scale,
            inv_s,
            loss_exp,
        });
        // Two classes of hard labels take their closed form, and contiguous rows of 3 to
        // `FEW_CLASSES` `FewClassRows`, which run faster on AVX-512 (f64 4096×2 CE 5.9 → 3.1
        // ns/elem, f32 2.1 → 1.4; f64 4096×3 4.0 → 2.9, f32 4096×5 2.0 → 1.7); the other rows of
        // 2 to 7 classes are slower there.
        let two_classes = classes == 2 && self.one_hot_path(targets);
        let few_classes = logits.as_slice().is_some() && self.few_class_path(targets, classes);
        let wide = wide_rows(classes) || two_classes || few_classes;
        sum_chunks(chunks, batch * classes >= PARALLEL_MIN && batch > chunk, wide)
    }
}

/// Whether rows of `classes` classes run on AVX-512 where the CPU has it: long rows from 128
/// classes (below, a row's 16-lane loops leave too much to their scalar tails), and short rows
/// (grouped eight at a time) of 8 to 16 classes, where it measured faster (f32 4096×16 CE 12 %;
/// groups of 3 and 5 classes were 8–10 % slower, so those stay on AVX2).
pub(super) fn wide_rows(classes: usize) -> bool {
    classes >= 128 || (8..=SHORT_ROW).contains(&classes)
}

/// The exponent `e_s` that scales the sample weights into range (their maximum times `2^−e_s` in
/// `[1, 2)`, see [`scale_exponent`]); 0 without weights.
fn sample_exponent<F: Float>(targets: &Targets<F>) -> i32 {
    targets
        .sample_weights
        .as_ref()
        .map_or(0, |w| scale_exponent::<F>(w.iter().fold(0.0_f64, |m, &v| m.max(v.as_f64()))))
}

impl<F: Float> Loss<F> for SoftmaxLoss<F> {
    /// The reduced loss, the gradient into `grad_out` if given.
    ///
    /// # Errors
    ///
    /// Checked in this order:
    /// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
    /// - [`Error::ShapeMismatch`]: `prior`, `class_weights` or `alpha` not of length `K`;
    /// - [`Error::UnsupportedTargets`]: multi-hot targets;
    /// - [`Error::ShapeMismatch`]: `labels` not of length `B`, `targets` not `[B, K]`; an output
    ///   buffer of the wrong shape (`losses_out` `[B]`, `grad_out` `[B, K]`); `sample_weights` not
    ///   of length `B`;
    /// - [`Error::InvalidSampleWeight`]: a negative or non-finite sample weight;
    /// - [`Error::LabelOutOfRange`]: a label `≥ K`;
    /// - [`Error::InvalidTarget`], [`Error::TargetSum`]: a probability target that is
    ///   negative or non-finite, or a row that does not sum to 1 within `√ε`;
    /// - then the logits, which the kernel checks as it reads them (so `grad_out` may hold the
    ///   rows before the error), the first offending one in row-major order:
    ///   [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::Overflow`]
    ///   (`"logit + adjustment"`) for a finite one that the logit adjustment pushes out of range;
    ///   [`Error::MaskedTarget`] for a `-inf` logit whose class has target mass in a row that
    ///   counts (positive sample weight and class factor `w_k·α_k`). Any other `-inf` masks its
    ///   class;
    /// - [`Error::Overflow`] (`"loss"`, `"gradient"`; `"loss"` naming the row for the per-sample
    ///   calls) for a result beyond the float's range. Weights are scaled by powers of two before
    ///   they multiply, so a weighted mean never overflows where its value does not.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        let sums = self.check_targets(
            "SoftmaxLoss",
            logits,
            targets,
            &output_shapes(logits, None, grad_out.as_deref()),
        )?;
        self.reduced(logits, targets, &sums, grad_out)
    }

    /// Every row's loss and, if `grad_out` is given, its gradient.
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
        let outputs = output_shapes(logits, Some(losses_out), grad_out.as_deref());
        let sums = self.check_targets("SoftmaxLoss", logits, targets, &outputs)?;
        self.per_sample(logits, targets, &sums, grad_out, losses_out)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// A chunk of consecutive rows of a validated batch, from row `first` on, and its outputs.
struct Chunk<'a, 't, F> {
    loss: &'a SoftmaxLoss<F>,
    targets: &'a Targets<'t, F>,
    prob_sums: &'a [F],
    first: usize,
    logits: ArrayView2<'a, F>,
    /// `max |a_k|` of the logit adjustment, for the logit check.
    adjust_max: Option<F>,
    grad: Option<ArrayViewMut2<'a, F>>,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    inv_s: F,
    loss_exp: i32,
}

impl<F: Float> Kernel for Chunk<'_, '_, F> {
    type Output = Result<f64>;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> Result<f64> {
        let Chunk {
            loss,
            targets,
            prob_sums,
            first,
            logits,
            adjust_max,
            mut grad,
            losses,
            scale,
            inv_s,
            loss_exp,
        } = self;
        let classes = logits.ncols();
        // The chunk's logits, checked just before the kernel reads them again, from cache.
        let adjust = loss.adjustment.as_deref();
        let masked_target = |row, class| loss.masks_target(targets, classes, row, class);
        check_rows::<F, FMA>(logits.view(), first, adjust, adjust_max, masked_target)?;
        let mut rows = ChunkRows::<F, FMA> {
            loss,
            targets,
            prob_sums,
            first,
            losses,
            scale,
            inv_s,
            loss_exp,
            smoothing: loss.smoothing(logits.ncols()),
            one_hot_path: loss.one_hot_path(targets),
            few_class_path: loss.few_class_path(targets, classes),
            plain_dense: loss.gamma == F::zero() && loss.class_weights.is_none() && loss.alpha.is_none(),
            probs: match &targets.kind {
                TargetKind::Rows(probs, _) => probs.as_slice(),
                TargetKind::Labels(_) => None,
            },
            total: 0.0,
        };
        // Two classes of hard labels in closed form, unless a row overflows there.
        if let (TargetKind::Labels(labels), true) = (&targets.kind, classes == 2 && rows.one_hot_path) {
            let pair = |v: &[F]| [v[0], v[1]];
            let two = TwoClassRows {
                logits: logits.view(),
                adjust: loss.adjustment.as_deref().map(pair),
                labels,
                sample_weights: targets.sample_weights.as_deref(),
                first,
                weight_scale: inv_s,
                loss_exp,
                class_factors: (loss.class_weights.is_some() || loss.alpha.is_some())
                    .then(|| [loss.class_factor(0), loss.class_factor(1)]),
                coefficients: None,
                gamma: loss.gamma,
                poly: F::zero(),
                transform: None,
                scale,
            };
            let losses = rows.losses.as_mut().map(|l| l.view_mut());
            if let Some(total) = two.run::<FMA>(losses, grad.as_mut().map(|g| g.view_mut())) {
                return Ok(total);
            }
        }
        // Short contiguous rows go in groups, one vector lane per row; the rest one at a time.
        match (logits.as_slice(), grad.as_mut().map(|g| g.as_slice_mut())) {
            (Some(z), None) if classes <= SHORT_ROW => rows.short_rows(z, classes, None),
            (Some(z), Some(Some(out))) if classes <= SHORT_ROW => rows.short_rows(z, classes, Some(out)),
            _ => visit_rows(&logits, grad.as_deref_mut(), &mut rows),
        }
        Ok(rows.total)
    }
}

/// The kernel's state over the rows of a [`Chunk`].
struct ChunkRows<'a, 't, F, const FMA: bool> {
    loss: &'a SoftmaxLoss<F>,
    targets: &'a Targets<'t, F>,
    /// The sum of each probability row of the whole batch (empty for labels).
    prob_sums: &'a [F],
    first: usize,
    losses: Option<ArrayViewMut1<'a, F>>,
    scale: F,
    /// The sample weights' scale `2^−e_s`, and the exponent that turns a row's loss into `ℓ_i`.
    inv_s: F,
    loss_exp: i32,
    smoothing: Smoothing<F>,
    one_hot_path: bool,
    /// Whether rows go through [`FewClassRows`] (see [`SoftmaxLoss::few_class_path`]).
    few_class_path: bool,
    /// Dense rows need neither focal factors nor class factors.
    plain_dense: bool,
    /// The probability targets of the whole batch, if contiguous and row-major.
    probs: Option<&'a [F]>,
    /// `Σ ℓ_i` of the rows so far.
    total: f64,
}

impl<F: Float, const FMA: bool> ChunkRows<'_, '_, F, FMA> {
    /// Every row of `z` (`K = classes ≤ SHORT_ROW`, row-major) into `out` (same layout) if given:
    /// one-hot rows of 3 to [`FEW_CLASSES`] classes with contiguous labels by
    /// [`few_class_rows`](Self::few_class_rows), the rest [grouped](Self::grouped_rows).
    #[inline(always)]
    fn short_rows(&mut self, z: &[F], classes: usize, out: Option<&mut [F]>) {
        if self.few_class_path {
            match classes {
                3 => return self.few_class_rows::<3>(z, out),
                4 => return self.few_class_rows::<4>(z, out),
                5 => return self.few_class_rows::<5>(z, out),
                6 => return self.few_class_rows::<6>(z, out),
                7 => return self.few_class_rows::<7>(z, out),
                _ => {}
            }
        }
        self.grouped_rows(z, classes, out)
    }

    /// Every one-hot row of `z` (`K` classes, row-major, contiguous labels) by
    /// [`FewClassRows`], a block at a time, into `out` (same layout) if given.
    // Unoptimised builds do not share stack slots between inlined calls: there, out of line, the
    // instantiations for each `K` do not add up in one frame (which overflowed 2 MiB threads).
    #[cfg_attr(debug_assertions, inline(never))]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn few_class_rows<const K: usize>(&mut self, z: &[F], out: Option<&mut [F]>) {
        let (loss, targets) = (self.loss, self.targets);
        let TargetKind::Labels(labels) = &targets.kind else { unreachable!("one-hot rows have labels") };
        let labels = labels.as_slice().unwrap_or_default();
        let adjust = loss.adjustment.as_deref().map_or([F::zero(); K], |a| core::array::from_fn(|k| a[k]));
        let (mut c, mut values) = ([F::zero(); few_classes::BLOCK], [F::zero(); few_classes::BLOCK]);
        few_classes::for_blocks::<F, K>(
            z,
            out,
            #[inline(always)]
            |start: usize, z: &[F], out: Option<&mut [F]>| {
                let (n, i0) = (z.len() / K, self.first + start);
                let (labels, c) = (&labels[i0..i0 + n], &mut c[..n]);
                match &targets.sample_weights {
                    Some(w) => c.iter_mut().zip(i0..).for_each(|(c, i)| *c = w[i] * self.inv_s),
                    None => c.fill(F::one()),
                }
                if loss.class_weights.is_some() || loss.alpha.is_some() {
                    c.iter_mut().zip(labels).for_each(|(c, &y)| *c *= loss.class_factor(y));
                }
                let few = FewClassRows::<F, K> {
                    z,
                    labels,
                    c,
                    adjust,
                    margins: LabelMargins { scales: [F::one(); K], margins: [F::zero(); K] },
                    gamma: loss.gamma,
                    scale: self.scale,
                };
                few.run::<FMA, false>(&mut values[..n], out);
                self.add_losses(start, &values[..n], z, K);
            },
        );
    }

    /// Adds the losses of `values.len()` rows from row `first` of the chunk (logits `z`, `K =
    /// classes`): summed at once in the common case (nothing to store, and finite losses; a sum
    /// that is not finite says otherwise, and the rows are then recorded one by one).
    #[inline(always)]
    fn add_losses(&mut self, first: usize, values: &[F], z: &[F], classes: usize) {
        let before = self.total;
        if self.losses.is_none() {
            values.iter().for_each(|v| self.total += v.as_f64());
        }
        if self.losses.is_some() || !self.total.is_finite() {
            self.total = before;
            for (r, &value) in values.iter().enumerate() {
                self.record(first + r, value, &z[r * classes..][..classes]);
            }
        }
    }

    /// Every row of `z` (`K = classes ≤ SHORT_ROW`, row-major), [`GROUP`] rows at a time (the last
    /// group padded), into `out` (same layout) if given.
    #[inline(always)]
    fn grouped_rows(&mut self, z: &[F], classes: usize, mut out: Option<&mut [F]>) {
        let adjust = self.loss.adjustment.as_deref();
        let span = GROUP * classes;
        let mut group = Group::new();
        for (g, z) in z.chunks(span).enumerate() {
            let (first, rows) = (g * GROUP, z.len() / classes);
            let out = out.as_deref_mut().map(|out| &mut out[g * span..g * span + z.len()]);
            group_lse::<F, FMA>(z, classes, adjust, &mut group);
            if let Some(done) = self.finish_group(first, rows, &mut group) {
                if let Some(out) = out {
                    done.write(&group, out);
                }
                self.add_losses(first, &done.loss[..rows], z, classes);
                continue;
            }
            // Rows the grouped finishers do not cover are finished one at a time.
            let mut scratch = [F::zero(); GROUP * SHORT_ROW];
            let out = out.unwrap_or(&mut scratch[..z.len()]);
            group.write_rows(RowMap::Copy, out);
            for (r, (z, out)) in z.chunks_exact(classes).zip(out.chunks_exact_mut(classes)).enumerate() {
                let value = self.row(first + r, group.lse(r), z, out);
                self.record(first + r, value, z);
            }
        }
    }

    /// Finishes a [`Group`] of `rows` rows from row `first` of the chunk in its transposed layout
    /// (lanes past `rows` are padding), if a grouped finisher covers the loss: one-hot rows, and
    /// dense rows without class or focal factors.
    #[inline(always)]
    fn finish_group(&self, first: usize, rows: usize, group: &mut Group<F>) -> Option<Finished<F>> {
        let (loss, targets, scale) = (self.loss, self.targets, self.scale);
        let start = self.first + first;
        // Padding lanes have weight 0 and label 0.
        let mut s = [F::zero(); GROUP];
        match &targets.sample_weights {
            Some(w) => s[..rows].iter_mut().zip(start..).for_each(|(s, i)| *s = w[i] * self.inv_s),
            None => s[..rows].fill(F::one()),
        }
        let Smoothing { keep, spread } = self.smoothing;
        match &targets.kind {
            TargetKind::Labels(labels) => {
                let mut y = [0; GROUP];
                match labels.as_slice() {
                    Some(labels) => y[..rows].copy_from_slice(&labels[start..start + rows]),
                    None => y[..rows].iter_mut().zip(start..).for_each(|(y, i)| *y = labels[i]),
                }
                if self.one_hot_path {
                    let mut c = s;
                    if loss.class_weights.is_some() || loss.alpha.is_some() {
                        c.iter_mut().zip(&y).for_each(|(c, &y)| *c *= loss.class_factor(y));
                    }
                    Some(one_hot_group::<F, FMA>(group, &y, &c, loss.gamma, &[scale; GROUP]))
                } else if self.plain_dense {
                    Some(plain_dense_group(group, &s, (keep, spread), GroupTargets::Labels(&y), scale))
                } else {
                    None
                }
            }
            TargetKind::Rows(probs, _) if self.plain_dense => {
                // Transposed, as the group. Rows that are not contiguous are finished one at a
                // time, as `row` does.
                let k = group.classes;
                let mut t = [[F::zero(); GROUP]; SHORT_ROW];
                match self.probs {
                    Some(probs) => transpose_rows(&probs[start * k..(start + rows) * k], None, &mut t[..k]),
                    None => {
                        for r in 0..rows {
                            let t_row = probs.row(start + r);
                            let t_row = t_row.to_slice()?;
                            t.iter_mut().zip(t_row).for_each(|(col, &v)| col[r] = v);
                        }
                    }
                }
                let mut sums = [F::one(); GROUP];
                sums[..rows].copy_from_slice(&self.prob_sums[start..start + rows]);
                let t = GroupTargets::Probs(&t[..k], sums);
                Some(plain_dense_group(group, &s, (keep, spread), t, scale))
            }
            TargetKind::Rows(..) => None,
        }
    }

    /// Records row `i`'s loss (logits `z`): a value that is not finite is recomputed by
    /// [`exact_loss`](Self::exact_loss).
    #[inline(always)]
    fn record(&mut self, i: usize, value: F, z: &[F]) {
        let value = if value.is_finite() { value.as_f64() } else { self.exact_loss(i, z) };
        if let Some(losses) = self.losses.as_mut() {
            losses[i] = F::from_f64(if self.loss_exp == 0 { value } else { ldexp(value, self.loss_exp) });
        }
        self.total += value;
    }

    /// Row `i`'s loss `Σ_k c_k (1 − p_k)^γ (−log p_k)` recomputed in `f64` for a row whose kernel
    /// value is not finite: logits so far apart that `z_k − max z` overflows the float type
    /// (`±3e38` in `f32`), times a small target mass. The differences are halved, so that none
    /// overflows in `f64` either, and `(1 − p)^γ` is `e^{γ log(1 − p)}`; a loss that is still
    /// beyond `f64` comes back infinite, and the caller reports the overflow.
    #[cold]
    #[inline(never)]
    fn exact_loss(&self, i: usize, z: &[F]) -> f64 {
        let (loss, targets) = (self.loss, self.targets);
        let row = self.first + i;
        let adjust = loss.adjustment.as_deref();
        let z: Vec<f64> =
            z.iter().enumerate().map(|(k, &v)| adjust.map_or(v, |a| v + a[k]).as_f64()).collect();
        let Some(argmax) = (0..z.len()).filter(|&k| z[k] > f64::NEG_INFINITY).fold(
            None,
            |best: Option<usize>, k| match best {
                Some(b) if z[b] >= z[k] => Some(b),
                _ => Some(k),
            },
        ) else {
            return 0.0;
        };
        let max = z[argmax];
        let half: Vec<f64> = z.iter().map(|&v| v / 2.0 - max / 2.0).collect();
        let rest: f64 = (0..z.len()).filter(|&k| k != argmax).map(|k| (2.0 * half[k]).exp()).sum();
        let ln_total = rest.ln_1p();
        let s = (targets.sample_weight(row) * self.inv_s).as_f64();
        let Smoothing { keep, spread } = self.smoothing;
        let mass = |k: usize| -> f64 {
            let t = match &targets.kind {
                TargetKind::Labels(labels) if self.one_hot_path => {
                    return if labels[row] == k {
                        (targets.sample_weight(row) * self.inv_s * loss.class_factor(k)).as_f64()
                    } else {
                        0.0
                    };
                }
                TargetKind::Labels(labels) => one_hot::<F>(labels[row] == k),
                TargetKind::Rows(probs, _) => probs[[row, k]],
            };
            s * loss.class_factor(k).as_f64() * (keep * t + spread).as_f64()
        };
        let gamma = loss.gamma.as_f64();
        let mut total_half = 0.0;
        for (k, &half_k) in half.iter().enumerate() {
            let c = mass(k);
            if c <= 0.0 {
                continue;
            }
            let lp_half = half_k - ln_total / 2.0;
            let m = if gamma == 0.0 {
                1.0
            } else {
                let log_q = if k == argmax { rest.ln() - ln_total } else { (-(2.0 * lp_half).exp()).ln_1p() };
                (gamma * log_q).exp()
            };
            total_half += c * m * -lp_half;
        }
        2.0 * total_half
    }

    /// Row `i` of the chunk, whose `grad` holds the exponentials of the row and `lse` their parts:
    /// returns `ℓ_i`.
    #[inline(always)]
    fn row(&self, i: usize, lse: Option<RowLse<F>>, z: &[F], grad: &mut [F]) -> F {
        let (loss, targets, scale) = (self.loss, self.targets, self.scale);
        let (adjust, gamma) = (loss.adjustment.as_deref(), loss.gamma);
        let row = self.first + i;
        let s = targets.sample_weight(row) * self.inv_s;
        match &targets.kind {
            TargetKind::Labels(labels) if self.one_hot_path => {
                let y = labels[row];
                one_hot_row::<F, FMA>(lse, z, adjust, y, s * loss.class_factor(y), gamma, scale, grad)
            }
            kind => {
                let copy; // of a strided probability row
                let row_targets = match kind {
                    TargetKind::Labels(labels) => RowTargets::Label(labels[row]),
                    TargetKind::Rows(probs, _) => {
                        let t = probs.row(row);
                        let t = match t.to_slice() {
                            Some(t) => t,
                            None => {
                                copy = t.to_vec();
                                &copy
                            }
                        };
                        RowTargets::Probs(t, self.prob_sums[row])
                    }
                };
                self.dense(lse, z, s, row_targets, grad)
            }
        }
    }
}

impl<F: Float, const FMA: bool> ChunkRows<'_, '_, F, FMA> {
    /// A row with target mass on every class, of weight `s`, `grad` and `lse` as for
    /// [`row`](Self::row).
    #[inline(always)]
    fn dense(&self, lse: Option<RowLse<F>>, z: &[F], s: F, targets: RowTargets<'_, F>, grad: &mut [F]) -> F {
        let (loss, scale) = (self.loss, self.scale);
        let (adjust, mass) = (loss.adjustment.as_deref(), self.smoothing.row_mass(s, targets));
        if self.plain_dense {
            return plain_dense_row(lse, z, adjust, mass, scale, grad);
        }
        let factors = ClassFactors { weights: loss.scaled.as_ref().map(|s| &s.factors[..]), alpha: None };
        dense_row::<F, FMA>(lse, z, adjust, mass, factors, loss.gamma, scale, grad)
    }
}

impl<F: Float, const FMA: bool> RowVisitor<F> for ChunkRows<'_, '_, F, FMA> {
    #[inline(always)]
    fn visit(&mut self, i: usize, z: &[F], grad: &mut [F]) {
        let lse = shifted_exp::<F, FMA>(z, self.loss.adjustment.as_deref(), grad);
        let value = self.row(i, lse, z, grad);
        self.record(i, value, z);
    }
}

fn invalid<F: Float>(name: &'static str, index: Option<usize>, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index, value: value.as_f64(), expected }
}

/// The largest focal `γ` (`ε/MIN_POSITIVE`): the kernels' exponentials flush to 0 below the
/// smallest normal number, and up to this `γ` the flush changes `γ·log(1 − p)` by at most `ε`.
pub(crate) fn gamma_bound<F: Float>() -> F {
    F::epsilon() / F::min_positive_value()
}

/// The hard-label target mass: 1 on the label, 0 elsewhere.
#[inline]
pub(super) fn one_hot<F: Float>(is_label: bool) -> F {
    if is_label { F::one() } else { F::zero() }
}

/// Label smoothing: the target mass `t_k` becomes `keep·t_k + spread`, with `keep = 1 − ε` and
/// `spread = ε/K`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Smoothing<F> {
    keep: F,
    spread: F,
}

impl<F: Float> Smoothing<F> {
    /// The spread `ε/K` every class gets.
    #[inline]
    pub(super) fn spread(&self) -> F {
        self.spread
    }

    /// The target mass of a row of weight `s`, for [`plain_dense_row`] and [`dense_row`].
    #[inline(always)]
    fn row_mass<'a>(&self, s: F, targets: RowTargets<'a, F>) -> RowMass<'a, F> {
        RowMass { s, keep: self.keep, spread: self.spread, targets }
    }
}
