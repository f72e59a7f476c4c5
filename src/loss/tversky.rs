//! The Tversky loss: one minus the soft Tversky index of each class, over the batch.

use super::results::{check_row_losses, finish_gradient, reduced_loss};
use core::marker::PhantomData;

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::sigmoids;
use super::contract::Loss;
use super::one_vs_rest::{self, LabelSets::MultiHotOnly};
use super::smooth_f1::{SoftmaxSums, local_stats, target_row};
use super::softmax_loss::SoftmaxLoss;
use super::targets::Targets;
use super::tversky_stats::TverskyStats;
use super::validate::{OutputShape, batch_dims, output_shapes};
use crate::error::check_shape;
use crate::float::{ExpArgs, exponent_of, lane_sum, ldexp, pow2, scale_exponent, split_scale};
use crate::rows::visit_rows;
use crate::simd::{Kernel, dispatch};
use crate::softmax::row_lse;
use crate::{Error, Float, Result};

/// How a [`TverskyLoss`] turns logits into soft predictions (segmentation_models_pytorch's modes).
///
/// # Example
///
/// ```
/// use longtail::{TverskyLoss, TverskyMode};
/// assert_eq!(TverskyLoss::<f32>::multilabel().mode(), TverskyMode::Multilabel);
/// ```
///
/// # References
///
/// segmentation_models_pytorch, `losses/constants.py` (`MULTICLASS_MODE`, `MULTILABEL_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TverskyMode {
    /// `p = softmax(z)` over the `K` classes; hard labels or probability rows.
    Multiclass,
    /// `p = σ(z)` per class; hard labels (one-hot), multi-hot rows or probability rows in `[0, 1]`.
    Multilabel,
}

/// The Tversky loss (Salehi et al. 2017): one minus the soft Tversky index of each class over the
/// batch, averaged over the classes, with its exact gradient with respect to the logits.
///
/// With soft predictions `p` (`softmax(z)` or `σ(z)`, see [`TverskyMode`]), targets `y` and
/// sample weights `s_i`, the batch statistics ([`TverskyStats`]) and the loss are
///
/// ```text
/// TP_k = Σ_i s_i y_ik p_ik,   FP_k = Σ_i s_i (1 − y_ik) p_ik,   FN_k = Σ_i s_i y_ik (1 − p_ik)
/// TI_k = (TP_k + smooth) / max(TP_k + α·FP_k + β·FN_k + smooth, ε)
/// L    = ( (1/K)·Σ_k [Σ_i s_i y_ik > 0]·(1 − TI_k) )^γ
/// ```
///
/// as segmentation_models_pytorch's `TverskyLoss` on `[B, K]` logits (defaults `α = β = 1/2`,
/// `smooth = 0`, `ε = 10⁻⁷`, `γ = 1`): `α` weighs the false positives, `β` the false negatives, a
/// class absent from the batch's targets contributes 0 but still counts in the mean over `K`, and
/// `γ` is its focal exponent on the mean. `α = β = 1/2` is the soft Dice (F1) loss (smp's
/// `DiceLoss`; [`dice`](Self::dice)); `α = β = 1` the soft Jaccard. Unlike smp there is no
/// `log_loss`, `classes` or `ignore_index` (a zero sample weight ignores a row), and sample weights
/// are taken. On a long-tailed batch every class weighs `1/K` whatever its frequency, and
/// `β > α` trades false positives for recall.
///
/// # Reductions and per-sample losses
///
/// `L` is a statistic of the whole batch, not a mean of row losses. `Mean` (the default) is `L`,
/// `Sum` is `W·L` (`W = Σ_i s_i`). The per-sample losses hold the statistics at their batch
/// values: `ℓ_i = s_i·L + W·Σ_k ∂L/∂p_ik·p_ik − s_i·c` with `c = Σ_k (∂L/∂TP_k·TP_k + ∂L/∂P_k·P_k)`
/// (`P_k = TP_k + FP_k`), the first-order share of row `i`: they add up to `Sum`, and their
/// gradients `∂ℓ_i/∂z_i = W·∂L/∂z_i` are `Sum`'s. A batch with `W = 0` has loss 0, gradient 0.
///
/// # Gradient
///
/// Exact: `∂L/∂p_ik = s_i·(a_k y_ik + b_k)` with `a_k = ∂L/∂TP_k`, `b_k = ∂L/∂P_k` from the batch
/// statistics, through the softmax (`∂L/∂z_ij = p_ij (g_ij − Σ_k p_ik g_ik)`) or the sigmoid
/// (`p(1 − p)`). Where `ε` clamps the denominator, its derivative is 0 (as `clamp_min`).
/// With statistics merged from other workers
/// ([`loss_and_grad_with_stats_into`](Self::loss_and_grad_with_stats_into)) the value is the
/// global `L` and the gradient is that of the global `L` with respect to the local rows (sum it
/// across workers).
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each call checks the batch as
/// [`SoftmaxLoss`]'s cross-entropy does in the multiclass mode (multi-hot targets are
/// [`Error::UnsupportedTargets`]), and as [`SigmoidLoss`](crate::SigmoidLoss) does in the
/// multilabel mode, in the same order ([`Error::EmptyBatch`], [`Error::NoClasses`],
/// [`Error::ShapeMismatch`], [`Error::InvalidSampleWeight`], [`Error::LabelOutOfRange`],
/// [`Error::InvalidTarget`] / [`Error::TargetSum`] / [`Error::TargetOutOfRange`],
/// [`Error::NonFiniteLogit`], [`Error::MaskedTarget`]); the `_with_stats` call then
/// [`Error::ShapeMismatch`] (`"stats"`) unless the statistics have `K` classes.
///
/// # Example
///
/// ```
/// use longtail::{Loss, TverskyLoss};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 1.5, 0.0]];
/// let labels = [0, 2, 1];
/// let loss = TverskyLoss::multiclass().with_weights(0.3, 0.7)?; // recall-leaning
/// let (value, grad) = loss.loss_and_grad(&logits, &labels)?;
/// assert!(value > 0.0 && value < 1.0 && grad[[1, 2]] < 0.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - S. S. M. Salehi, D. Erdogmus, A. Gholipour, "Tversky loss function for image segmentation
///   using 3D fully convolutional deep networks", MLMI 2017, arXiv:1706.05721.
/// - F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net", 3DV 2016, arXiv:1606.04797 (soft Dice).
/// - N. Abraham, N. M. Khan, "A Novel Focal Tversky loss function", ISBI 2019, arXiv:1810.07842.
/// - Reference implementation: segmentation_models_pytorch `losses/tversky.py` (`TverskyLoss`),
///   `losses/dice.py`, `losses/_functional.py` (`soft_tversky_score`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TverskyLoss<F> {
    mode: TverskyMode,
    alpha: f64,
    beta: f64,
    smooth: f64,
    eps: f64,
    gamma: f64,
    reduction: Reduction,
    float: PhantomData<fn() -> F>,
}

impl<F: Float> TverskyLoss<F> {
    /// The multiclass (softmax) loss with smp's defaults: `α = β = 1/2` (soft Dice), `smooth = 0`,
    /// `ε = 10⁻⁷`, `γ = 1`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{TverskyLoss, TverskyMode};
    /// let loss = TverskyLoss::<f64>::multiclass();
    /// assert_eq!((loss.mode(), loss.alpha(), loss.beta()), (TverskyMode::Multiclass, 0.5, 0.5));
    /// ```
    ///
    /// # References
    ///
    /// segmentation_models_pytorch `TverskyLoss(mode="multiclass")`.
    pub fn multiclass() -> Self {
        Self {
            mode: TverskyMode::Multiclass,
            alpha: 0.5,
            beta: 0.5,
            smooth: 0.0,
            eps: 1e-7,
            gamma: 1.0,
            reduction: Reduction::Mean,
            float: PhantomData,
        }
    }

    /// The multilabel (sigmoid) loss with smp's defaults.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{TverskyLoss, TverskyMode};
    /// assert_eq!(TverskyLoss::<f32>::multilabel().mode(), TverskyMode::Multilabel);
    /// ```
    ///
    /// # References
    ///
    /// segmentation_models_pytorch `TverskyLoss(mode="multilabel")`.
    pub fn multilabel() -> Self {
        Self { mode: TverskyMode::Multilabel, ..Self::multiclass() }
    }

    /// The soft Dice loss of `mode`: Tversky with `α = β = 1/2`, `1 − 2·TP/(2·TP + FP + FN)` per
    /// class (the soft F1 of [`F1Stats`](crate::F1Stats) at `smooth = 0`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{TverskyLoss, TverskyMode};
    /// assert_eq!(TverskyLoss::<f64>::dice(TverskyMode::Multiclass), TverskyLoss::multiclass());
    /// ```
    ///
    /// # References
    ///
    /// F. Milletari et al., 3DV 2016, arXiv:1606.04797; smp `DiceLoss`.
    pub fn dice(mode: TverskyMode) -> Self {
        Self { mode, ..Self::multiclass() }
    }

    /// Sets the weights `α ≥ 0` of the false positives and `β ≥ 0` of the false negatives.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"alpha"`, `"beta"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// assert_eq!(TverskyLoss::<f64>::multiclass().with_weights(0.3, 0.7)?.beta(), 0.7);
    /// assert!(TverskyLoss::<f64>::multiclass().with_weights(-0.3, 0.7).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// S. S. M. Salehi et al., MLMI 2017, arXiv:1706.05721 (eq. 3).
    pub fn with_weights(mut self, alpha: f64, beta: f64) -> Result<Self> {
        self.alpha = non_negative("alpha", alpha)?;
        self.beta = non_negative("beta", beta)?;
        Ok(self)
    }

    /// Sets the additive smoothing `smooth ≥ 0` of numerator and denominator (0 by default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"smooth"`) for a negative or non-finite value.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// assert_eq!(TverskyLoss::<f64>::multiclass().with_smooth(1.0)?.smooth(), 1.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// smp `TverskyLoss(smooth=)`.
    pub fn with_smooth(mut self, smooth: f64) -> Result<Self> {
        self.smooth = non_negative("smooth", smooth)?;
        Ok(self)
    }

    /// Sets the floor `ε > 0` of the denominator (`10⁻⁷` by default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"eps"`) for a value that is not finite and `> 0`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// assert!(TverskyLoss::<f64>::multiclass().with_eps(0.0).is_err());
    /// ```
    ///
    /// # References
    ///
    /// smp `TverskyLoss(eps=)`.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        if !(eps.is_finite() && eps > 0.0) {
            return Err(invalid("eps", eps, "finite and > 0"));
        }
        self.eps = eps;
        Ok(self)
    }

    /// Sets the focal exponent `γ ≥ 1` on the mean (1 by default). Below 1 the gradient is
    /// unbounded as the loss goes to 0.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a `γ` that is not finite and `≥ 1`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// assert_eq!(TverskyLoss::<f32>::multilabel().with_gamma(2.0)?.gamma(), 2.0);
    /// assert!(TverskyLoss::<f32>::multilabel().with_gamma(0.75).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// smp `TverskyLoss(gamma=)`; N. Abraham, N. M. Khan, ISBI 2019, arXiv:1810.07842.
    pub fn with_gamma(mut self, gamma: f64) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= 1.0) {
            return Err(invalid("gamma", gamma, "finite and >= 1"));
        }
        self.gamma = gamma;
        Ok(self)
    }

    /// Sets how the batch is reduced (`Mean`: `L`, the default; `Sum`: `W·L`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Reduction, TverskyLoss};
    /// assert_eq!(TverskyLoss::<f64>::multiclass().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// Multiclass (softmax) or multilabel (sigmoid).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{TverskyLoss, TverskyMode};
    /// assert_eq!(TverskyLoss::<f64>::multiclass().mode(), TverskyMode::Multiclass);
    /// ```
    pub fn mode(&self) -> TverskyMode {
        self.mode
    }

    /// The weight `α` of the false positives.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::TverskyLoss::<f64>::multiclass().alpha(), 0.5);
    /// ```
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The weight `β` of the false negatives.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::TverskyLoss::<f64>::multiclass().beta(), 0.5);
    /// ```
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// The smoothing.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::TverskyLoss::<f64>::multiclass().smooth(), 0.0);
    /// ```
    pub fn smooth(&self) -> f64 {
        self.smooth
    }

    /// The floor `ε` of the denominator.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::TverskyLoss::<f64>::multiclass().eps(), 1e-7);
    /// ```
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The focal exponent `γ`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::TverskyLoss::<f64>::multiclass().gamma(), 1.0);
    /// ```
    pub fn gamma(&self) -> f64 {
        self.gamma
    }

    /// The batch statistics: per class `TP`, `FP`, `FN`, and `W`.
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// use ndarray::array;
    ///
    /// let stats = TverskyLoss::multiclass().stats(&array![[0.0_f64, 0.0]], &[1])?;
    /// assert_eq!((stats.true_positive(), stats.false_positive(), stats.false_negative()), (&[0.0, 0.5][..], &[0.5, 0.0][..], &[0.0, 0.5][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`TverskyStats`].
    pub fn stats<'t>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<TverskyStats>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &[])?;
        Ok(self.local_stats(logits, &targets))
    }

    /// The reduced loss with the statistics `stats` (e.g. merged across workers); its gradient with
    /// respect to these rows overwrites `grad_out` (`[B, K]`).
    ///
    /// With the local batch's own statistics this is [`Loss::loss_and_grad_into`].
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`], and [`Error::ShapeMismatch`] (`"stats"`) unless `stats` has `K`
    /// classes.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::TverskyLoss;
    /// use ndarray::{array, Array2};
    ///
    /// let logits = array![[1.0_f64, 0.0, -1.0]];
    /// let loss = TverskyLoss::multiclass();
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
    /// See [`TverskyLoss`].
    pub fn loss_and_grad_with_stats_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        stats: &TverskyStats,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &output_shapes(logits, None, Some(grad_out)))?;
        check_shape("stats", &[logits.ncols()], &[stats.classes()])?;
        self.reduced(logits, &targets, stats, Some(grad_out))
    }

    /// Validates a batch in the documented order.
    fn check(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<()> {
        match self.mode {
            TverskyMode::Multiclass => SoftmaxLoss::<F>::cross_entropy()
                .check_batch("TverskyLoss", logits, targets, outputs)
                .map(drop),
            TverskyMode::Multilabel => {
                batch_dims(logits)?;
                one_vs_rest::check_batch(logits, targets, outputs, MultiHotOnly, None)
            }
        }
    }

    /// The statistics of a validated batch.
    fn local_stats(&self, logits: &ArrayRef2<F>, targets: &Targets<'_, F>) -> TverskyStats {
        match self.mode {
            TverskyMode::Multiclass => local_stats(logits, targets, 1.0),
            TverskyMode::Multilabel => dispatch(SigmoidStats { logits, targets }),
        }
    }

    /// Per class `a_k = ∂L/∂TP_k` and `b_k = ∂L/∂P_k`, `L`, and `c = Σ_k (a_k TP_k + b_k P_k)`.
    fn coefficients(&self, stats: &TverskyStats) -> Coefficients<F> {
        let k = stats.classes() as f64;
        let (alpha, beta, smooth, eps) = (self.alpha, self.beta, self.smooth, self.eps);
        let (tp, fp, fn_) = (stats.true_positive(), stats.false_positive(), stats.false_negative());
        let mut mean = 0.0;
        // Per class: the mask, ∂TI/∂TP and ∂TI/∂P.
        let parts: Vec<(f64, f64, f64)> = (0..stats.classes())
            .map(|c| {
                let present = if tp[c] + fn_[c] > 0.0 { 1.0 } else { 0.0 };
                let numerator = tp[c] + smooth;
                let denominator = tp[c] + alpha * fp[c] + beta * fn_[c] + smooth;
                let clamped = denominator.max(eps);
                let (through, one_minus_ti) = if denominator >= eps {
                    // TI/D (`D²` would overflow beyond 1e154); 1 − TI = (α·FP + β·FN)/D, without
                    // cancellation where TI is near 1.
                    (numerator / clamped / clamped, (alpha * fp[c] + beta * fn_[c]) / denominator)
                } else {
                    (0.0, 1.0 - numerator / clamped)
                };
                mean += present * one_minus_ti / k;
                // D = (1 − α − β)·TP + α·P + β·Y + smooth, with Y = TP + FN constant.
                (present, 1.0 / clamped - through * (1.0 - alpha - beta), -through * alpha)
            })
            .collect();
        let loss = mean.powf(self.gamma);
        let outer = if self.gamma == 1.0 { 1.0 } else { self.gamma * mean.powf(self.gamma - 1.0) };
        let (a, b): (Vec<f64>, Vec<f64>) = parts
            .iter()
            .map(|&(present, d_tp, d_p)| (-outer * present / k * d_tp, -outer * present / k * d_p))
            .unzip();
        let c = (0..stats.classes()).map(|j| a[j] * tp[j] + b[j] * (tp[j] + fp[j])).sum();
        // Passed to the rows times 2^−e, the largest in [1/2, 1): as `F` they could overflow
        // (a huge α) or lose their digits below the smallest normal number (a small L^{γ−1}).
        let max = a.iter().chain(&b).fold(0.0_f64, |m, &v| m.max(v.abs()));
        let exp = if max > 0.0 { exponent_of(max) + 1 } else { 0 };
        Coefficients {
            a: a.into_iter().map(|v| F::from_f64(ldexp(v, -exp))).collect(),
            b: b.into_iter().map(|v| F::from_f64(ldexp(v, -exp))).collect(),
            exp,
            loss,
            c,
        }
    }

    /// The reduced loss of a validated batch under `stats`, its gradient into `grad_out` if given.
    fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        stats: &TverskyStats,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        let w = stats.weight();
        let scale = match self.reduction {
            Reduction::Mean => 1.0,
            Reduction::Sum => w,
        };
        if w == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return Ok(F::zero());
        }
        let coefficients = self.coefficients(stats);
        let loss = reduced_loss::<F>(scale * coefficients.loss, 1.0, 0)?;
        if let Some(grad) = grad_out {
            let k = self.rows(logits, targets, &coefficients, scale, 0.0, Some(&mut *grad), None);
            finish_gradient(Some(grad), k)?;
        }
        Ok(loss)
    }

    /// Runs the rows: `scale·∂L/∂z_i` times `2^−k` into `grad` and `ℓ_i` into `losses`, each if
    /// given (`w` the statistics' total weight); returns `k`, for [`finish_gradient`].
    ///
    /// The rows see the sample weights times `2^−e_s` (see [`scale_exponent`]) and the coefficients
    /// times `2^−e` (see [`coefficients`](Self::coefficients)): the gradient gets `2^{e_s + e}`
    /// back in the scale, as far as `F` holds it, and the rest by `2^k`.
    #[allow(clippy::too_many_arguments)] // the batch, its coefficients and the two outputs
    fn rows(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        coefficients: &Coefficients<F>,
        scale: f64,
        w: f64,
        grad: Option<&mut ArrayRef2<F>>,
        losses: Option<&mut ArrayRef1<F>>,
    ) -> i32 {
        let max = |s: &ndarray::ArrayView1<'_, F>| s.iter().fold(0.0_f64, |m, &v| m.max(v.as_f64()));
        let max = targets.sample_weights.as_ref().map_or(1.0, max);
        let e_s = scale_exponent::<F>(max);
        let exp = e_s + coefficients.exp;
        let (factor, k) = split_scale::<F>(scale, exp);
        let (inv_s, mode) = (pow2::<F>(-e_s), self.mode);
        dispatch(Rows { mode, logits, targets, coefficients, scale: factor, inv_s, exp, w, grad, losses });
        k
    }
}

/// The statistics of a validated multilabel batch, run by [`dispatch`] for the CPU's instruction
/// set.
struct SigmoidStats<'a, 't, F> {
    logits: &'a ArrayRef2<F>,
    targets: &'a Targets<'t, F>,
}

impl<F: Float> Kernel for SigmoidStats<'_, '_, F> {
    type Output = TverskyStats;
    #[inline(always)]
    fn run<const FMA: bool>(self) -> TverskyStats {
        let SigmoidStats { logits, targets } = self;
        let mut stats = TverskyStats::new(logits.ncols());
        let mut y_buf = vec![F::zero(); logits.ncols()];
        for (i, z) in logits.rows().into_iter().enumerate() {
            let s = targets.sample_weight(i).as_f64();
            stats.add_weight(s);
            let y = target_row(targets, i, &mut y_buf);
            for (k, (&z, &y)) in z.iter().zip(y).enumerate() {
                let (p, q) = sigmoids::<F, FMA>(z);
                stats.add(k, s, y.as_f64(), (p.as_f64(), q.as_f64()));
            }
        }
        stats
    }
}

/// The per-class coefficients of a batch's gradient (see [`TverskyLoss::coefficients`]).
struct Coefficients<F> {
    /// `a_k·2^−exp`.
    a: Vec<F>,
    /// `b_k·2^−exp`.
    b: Vec<F>,
    exp: i32,
    loss: f64,
    c: f64,
}

/// The gradient rows of a validated batch, run by [`dispatch`] for the CPU's instruction set.
struct Rows<'a, 't, F> {
    mode: TverskyMode,
    logits: &'a ArrayRef2<F>,
    targets: &'a Targets<'t, F>,
    coefficients: &'a Coefficients<F>,
    scale: F,
    /// The sample weights' scale `2^−e_s`.
    inv_s: F,
    /// `e_s + e`: the slopes `∂L/∂p` are the rows' times `2^exp`.
    exp: i32,
    w: f64,
    grad: Option<&'a mut ArrayRef2<F>>,
    losses: Option<&'a mut ArrayRef1<F>>,
}

impl<F: Float> Kernel for Rows<'_, '_, F> {
    type Output = ();
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Rows { mode, logits, targets, coefficients, scale, inv_s, exp, w, grad, mut losses } = self;
        let Coefficients { a, b, loss, c, .. } = coefficients;
        let classes = logits.ncols();
        let (mut y_buf, mut slopes, mut complements) =
            (vec![F::zero(); classes], vec![F::zero(); classes], vec![F::zero(); classes]);
        let zero = F::zero();
        visit_rows(logits, grad, &mut |i: usize, z: &[F], out: &mut [F]| {
            let s = targets.sample_weight(i);
            if s == zero {
                out.fill(zero);
                if let Some(losses) = losses.as_mut() {
                    losses[i] = zero;
                }
                return;
            }
            // out: p; complements: 1 − p (multilabel), the shift's terms (multiclass); slopes: ∂L/∂p;
            // top: the largest p (multiclass).
            let mut top = zero;
            match mode {
                TverskyMode::Multiclass => match row_lse::<F, FMA>(out, ExpArgs::Logits(z)) {
                    Some(lse) => {
                        out.iter_mut().for_each(|e| *e *= lse.inv_total);
                        // The argmax's `e = 1`: its probability is `inv_total` exactly.
                        top = lse.inv_total;
                    }
                    None => out.fill(zero), // a fully masked row (validated: it has no target mass)
                },
                TverskyMode::Multilabel => {
                    for ((p, q), &z) in out.iter_mut().zip(complements.iter_mut()).zip(z) {
                        (*p, *q) = sigmoids::<F, FMA>(z);
                    }
                }
            }
            let y = target_row(targets, i, &mut y_buf);
            let scaled = s * inv_s;
            for ((g, &y), (&a, &b)) in slopes.iter_mut().zip(y).zip(a.iter().zip(b)) {
                *g = scaled * (a * y + b);
            }
            let dot: f64 = out.iter().zip(slopes.iter()).map(|(&p, &g)| (p * g).as_f64()).sum();
            if let Some(losses) = losses.as_mut() {
                let s = s.as_f64();
                losses[i] = F::from_f64(s * loss + w * ldexp(dot, exp) - s * c);
            }
            match mode {
                TverskyMode::Multiclass => {
                    // `g_j − Σ_k p_k g_k = (g_j − g_m) + Σ_{k≠m} p_k (g_m − g_k)` (`Σ p = 1`, `m`
                    // the argmax): no `1 − p_m` rounded from `p_m` near 1.
                    let g_m = slopes[out.iter().position(|&p| p == top).unwrap_or(0)];
                    let terms = complements.iter_mut().zip(out.iter().zip(slopes.iter()));
                    terms.for_each(|(t, (&p, &g))| *t = p * (g_m - g));
                    let shift = lane_sum(&complements);
                    out.iter_mut()
                        .zip(slopes.iter())
                        .for_each(|(p, &g)| *p = scale * *p * ((g - g_m) + shift));
                }
                TverskyMode::Multilabel => {
                    let rows = slopes.iter().zip(complements.iter());
                    out.iter_mut().zip(rows).for_each(|(p, (&g, &q))| *p = scale * g * *p * q);
                }
            }
        });
    }
}

impl<F: Float> Loss<F> for TverskyLoss<F> {
    /// The reduced loss with the statistics of the local batch, the exact gradient into
    /// `grad_out` if given.
    ///
    /// # Errors
    ///
    /// As listed on [`TverskyLoss`].
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        self.check(logits, targets, &output_shapes(logits, None, grad_out.as_deref()))?;
        let stats = self.local_stats(logits, targets);
        self.reduced(logits, targets, &stats, grad_out)
    }

    /// Every row's first-order share `ℓ_i` of `W·L`, the statistics held at their batch values,
    /// and its gradient `W·∂L/∂z_i`: the terms of [`Reduction::Sum`], which they add up to.
    ///
    /// # Errors
    ///
    /// As listed on [`TverskyLoss`].
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        self.check(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        let stats = self.local_stats(logits, targets);
        let w = stats.weight();
        if w == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            losses_out.fill(F::zero());
            return Ok(());
        }
        let coefficients = self.coefficients(&stats);
        let mut grad_out = grad_out;
        let k =
            self.rows(logits, targets, &coefficients, w, w, grad_out.as_deref_mut(), Some(&mut *losses_out));
        check_row_losses(losses_out)?;
        finish_gradient(grad_out, k)?;
        Ok(())
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

fn non_negative(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value >= 0.0 { Ok(value) } else { Err(invalid(name, value, "finite and >= 0")) }
}

fn invalid(name: &'static str, value: f64, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value, expected }
}
