//! Binary cross-entropy with logits and the sigmoid focal loss, over `[B]` logit batches.

use ndarray::{Array1, ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{Batch, Decision, Logistic, for_rows, with_slice_mut};
use super::binary_targets::BinaryTargets;
use super::class_values::ClassValues;
use super::contract::Loss;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::targets::Targets;
use super::validate::{batch_dims, class_vector, output_shapes};
use crate::error::check_shape;
use crate::float::{exp_nonpos, ln_normal, pow2};
use crate::{Error, Float, Result};

/// Binary cross-entropy with logits and sigmoid focal loss, with the exact gradient with respect to
/// the logits.
///
/// Logits `s` are `[B]`, targets `y ∈ [0, 1]` (hard or soft, see [`BinaryTargets`]). With
/// `σ` the logistic function and `p = σ(s)`, row `i` costs
///
/// ```text
/// ce_i  = −v·y log σ(s) − (1 − y) log σ(−s) = v·y·softplus(−s) + (1 − y)·softplus(s)
/// p_t   = y·p + (1 − y)(1 − p)                       so 1 − p_t = y σ(−s) + (1 − y) σ(s)
/// α_t   = α y + (1 − α)(1 − y)                        (1 without α)
/// ℓ_i   = s_i · α_t · (1 − p_t)^γ · ce_i              s_i: sample weight, γ = 0: plain BCE
/// ```
///
/// with `v` the positive weight of the decision's class ([`with_pos_weight`](Self::with_pos_weight),
/// PyTorch's `pos_weight`; 1 without it).
///
/// These are torchvision's `sigmoid_focal_loss` semantics (its `alpha < 0`, no weighting, is
/// `None` here). The batch is reduced by [`Reduction`]: `Mean` (the default, as torchvision's
/// `reduction="mean"`) divides `Σ_i ℓ_i` by `Σ_i s_i` (`B` without weights; `α` does not enter it),
/// `Sum` does not divide.
///
/// # Gradient
///
/// `∂ce/∂s = (1 − y)σ(s) − v·yσ(−s)` (`= σ(s) − y` for `v = 1`, without cancellation), and with `q = 1 − p_t`,
/// `∂ℓ/∂s = α_t q^γ (∂ce/∂s + γ·ce·(∂q/∂s)/q)`; `(∂q/∂s)/q` is `−σ(s)` for `y = 1`, `σ(−s)` for
/// `y = 0` and `(1 − 2y)σ(s)σ(−s)/q` otherwise (where `q ≥ min(y, 1 − y)`), so it stays finite.
///
/// # Numerics
///
/// `softplus(x) = max(x, 0) + ln_1p(e^{−|x|})`: never `log(sigmoid(s))`, exact for `|s|` up to the
/// float's range (`1e4` in `f32` gives loss 0 or `1e4`, never inf or NaN). The modulating factor is
/// `exp(γ·log q)` with `log q = −softplus(±s)` for hard targets, so `0 < γ < 1` keeps a finite
/// gradient as `p_t → 1`. A `-inf` logit is a certain negative (loss and gradient 0); on a positive
/// target it is an error. `e^{−|s|}` (and `q^γ`) flush to 0 a little below the smallest normal
/// number, so `σ(−|s|)` is 0 beyond `|s| ≈ 87.7` in `f32` (`708.75` in `f64`). Rows are
/// computed by a branch-free loop that vectorises (AVX2+FMA when the CPU has them); row losses are
/// summed in `F` over blocks of 256 and the block sums in `f64`.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each call validates the targets and weights
/// before writing anything, and the logits in the pass that reads them (see
/// [`loss_into`](Loss::loss_into)): on an error an `_into` buffer may hold partial rows.
///
/// # Example
///
/// ```
/// use longtail::{Loss, SigmoidLoss};
/// use ndarray::array;
///
/// // Three classes, one-vs-rest: each logit is a binary decision against its one-hot target.
/// let logits = array![[3.0_f32, -2.0, 0.5], [-1e4, 0.2, 1.0]];
/// let (focal, grad) = SigmoidLoss::focal(2.0)?.loss_and_grad(&logits, &[0, 2])?;
/// let bce = SigmoidLoss::bce().loss(&logits, &[0, 2])?;
/// assert!(focal < bce && grad.iter().all(|g| g.is_finite()));
///
/// // A binary model's `[B]` logits take the `binary_*` calls, with soft targets in [0, 1].
/// let scores = array![3.0_f32, -2.0, 0.5, -1e4];
/// let bce = SigmoidLoss::bce().binary_loss(&scores, &[1.0, 0.0, 0.8, 0.0])?;
/// assert!(bce > 0.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
/// - torchvision `torchvision.ops.sigmoid_focal_loss`; PyTorch
///   `torch.nn.functional.binary_cross_entropy_with_logits`.
#[derive(Debug, Clone, PartialEq)]
pub struct SigmoidLoss<F> {
    gamma: F,
    alpha: Option<F>,
    pos_weight: Option<Vec<F>>,
    reduction: Reduction,
}

impl<F: Float> Default for SigmoidLoss<F> {
    fn default() -> Self {
        Self::bce()
    }
}

impl<F: Float> SigmoidLoss<F> {
    /// Binary cross-entropy with logits, `ℓ_i = softplus(s_i) − y_i s_i`, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = SigmoidLoss::bce().binary_loss_and_grad(&array![0.0_f64], &[1.0])?;
    /// assert!((loss - 2f64.ln()).abs() < 1e-15);
    /// assert_eq!(grad[0], -0.5); // σ(s) − y
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// PyTorch `torch.nn.functional.binary_cross_entropy_with_logits`; optax
    /// `sigmoid_binary_cross_entropy`.
    pub fn bce() -> Self {
        Self { gamma: F::zero(), alpha: None, pos_weight: None, reduction: Reduction::Mean }
    }

    /// Sigmoid focal loss with exponent `γ ≥ 0` and no class balance, mean over the batch, as
    /// [`SoftmaxLoss::focal`](crate::SoftmaxLoss::focal); torchvision's defaults are
    /// `focal(2.0)?.with_alpha(0.25)?`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a negative or non-finite `γ`, or one above
    /// `ε/MIN_POSITIVE` (`1e31` in `f32`, `1e292` in `f64`), where the exponential's flush to 0
    /// below the smallest normal number would change `(1 − p_t)^γ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    ///
    /// let focal = SigmoidLoss::<f32>::focal(2.0)?.with_alpha(0.25)?;
    /// assert_eq!((focal.gamma(), focal.alpha()), (2.0, Some(0.25)));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002;
    /// torchvision `torchvision.ops.sigmoid_focal_loss`.
    pub fn focal(gamma: F) -> Result<Self> {
        Self::bce().with_focal(gamma)
    }

    /// Sets the focal exponent `γ ≥ 0`; `γ = 0` is no modulation.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a negative or non-finite `γ`, or one above
    /// `ε/MIN_POSITIVE` (`1e31` in `f32`, `1e292` in `f64`), where the exponential's flush to 0
    /// below the smallest normal number would change `(1 − p_t)^γ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    ///
    /// assert_eq!(SigmoidLoss::<f64>::bce().with_focal(0.5)?.gamma(), 0.5);
    /// assert!(SigmoidLoss::<f64>::bce().with_focal(f64::NAN).is_err());
    /// assert!(SigmoidLoss::<f64>::bce().with_focal(1e300).is_err()); // above ε/MIN_POSITIVE
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
    pub fn with_focal(mut self, gamma: F) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= F::zero() && gamma <= super::softmax_loss::gamma_bound()) {
            return Err(invalid("gamma", gamma, "in [0, eps / MIN_POSITIVE] (1e31 in f32, 1e292 in f64)"));
        }
        self.gamma = gamma;
        Ok(self)
    }

    /// Sets the class balance `α ∈ [0, 1]`: positives weighted `α`, negatives `1 − α` (unset, as
    /// torchvision's `alpha < 0`, weighs both 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"alpha"`) for `α` outside `[0, 1]`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    ///
    /// assert_eq!(SigmoidLoss::<f32>::bce().with_alpha(0.75)?.alpha(), Some(0.75));
    /// assert!(SigmoidLoss::<f32>::bce().with_alpha(1.5).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv:1708.02002.
    pub fn with_alpha(mut self, alpha: F) -> Result<Self> {
        if !(alpha >= F::zero() && alpha <= F::one()) {
            return Err(invalid("alpha", alpha, "in [0, 1]"));
        }
        self.alpha = Some(alpha);
        Ok(self)
    }

    /// Weights the positive part of every decision of class `k` by `v_k ≥ 0`, as PyTorch's
    /// `binary_cross_entropy_with_logits(pos_weight=)`: `ce = −v_k·y log σ(s) − (1 − y) log σ(−s)`.
    /// `v_k = n_neg/n_pos` (the class's negatives over its positives) balances a rare label; the
    /// mean's divisor is unchanged.
    ///
    /// Over `[B, K]` logits `v` has one entry per class (length `K`); the `binary_*` calls on a
    /// binary model's `[B]` logits take one entry (length 1). The length is checked on each call.
    /// With focal modulation, `(1 − p_t)^γ` multiplies the weighted `ce`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"pos_weight"`) for a negative or non-finite entry.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, SigmoidLoss};
    /// use ndarray::array;
    ///
    /// // Class 1 has 9 negatives for each positive: weight its positives by 9.
    /// let loss = SigmoidLoss::bce().with_pos_weight(&[1.0, 9.0])?;
    /// let logits = array![[0.0_f64, 0.0]];
    /// let value = loss.loss(&logits, &array![[0.0, 1.0]])?; // probability (soft) targets
    /// assert!((value - (2f64.ln() + 9.0 * 2f64.ln()) / 2.0).abs() < 1e-15);
    ///
    /// // A binary model: one value.
    /// let binary = SigmoidLoss::bce().with_pos_weight(&[3.0])?;
    /// assert!((binary.binary_loss(&array![0.0_f64], &[1.0])? - 3.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// PyTorch `torch.nn.functional.binary_cross_entropy_with_logits` (`pos_weight=`).
    pub fn with_pos_weight<'w>(mut self, pos_weight: impl Into<ClassValues<'w, F>>) -> Result<Self>
    where
        F: 'w,
    {
        let values = class_vector("pos_weight", pos_weight.into(), "finite and >= 0", |v| v >= F::zero())?;
        self.pos_weight = Some(values);
        Ok(self)
    }

    /// The positive weights `v`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// assert_eq!(SigmoidLoss::<f32>::bce().with_pos_weight(&[2.0])?.pos_weight(), Some(&[2.0][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn pos_weight(&self) -> Option<&[F]> {
        self.pos_weight.as_deref()
    }

    /// [`Error::ShapeMismatch`] (`"pos_weight"`) unless the positive weights (if any) have
    /// `classes` entries.
    fn check_pos_weight(&self, classes: usize) -> Result<()> {
        match &self.pos_weight {
            Some(v) => check_shape("pos_weight", &[classes], &[v.len()]),
            None => Ok(()),
        }
    }

    /// The checks of a binary call, in order: [`Error::EmptyBatch`], the positive weights'
    /// length (1), then the targets (the kernel checks the logits as it reads them).
    fn check_binary(
        &self,
        logits: &ArrayRef1<F>,
        targets: &BinaryTargets<'_, F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<()> {
        if logits.is_empty() {
            return Err(Error::EmptyBatch);
        }
        self.check_pos_weight(1)?;
        targets.check_targets(logits.view(), outputs)
    }

    /// The checks of a `[B, K]` call: [`Error::EmptyBatch`], [`Error::NoClasses`], the positive
    /// weights' length (`K`), then the targets (the kernel checks the logits as it reads them).
    fn check_batch(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        outputs: &[super::validate::OutputShape<'_>],
    ) -> Result<()> {
        let (_, classes) = batch_dims(logits)?;
        self.check_pos_weight(classes)?;
        one_vs_rest::check_targets(logits, targets, outputs, MultiHotOnly)
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, SigmoidLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![0.0_f64, 0.0];
    /// let sum = SigmoidLoss::bce().with_reduction(Reduction::Sum).binary_loss(&logits, &[1.0, 0.0])?;
    /// assert!((sum - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The focal exponent `γ` (0 for plain BCE).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// assert_eq!(SigmoidLoss::<f64>::bce().gamma(), 0.0);
    /// ```
    pub fn gamma(&self) -> F {
        self.gamma
    }

    /// The class balance `α`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// assert_eq!(SigmoidLoss::<f64>::bce().alpha(), None);
    /// ```
    pub fn alpha(&self) -> Option<F> {
        self.alpha
    }

    /// The reduced loss of a binary model's `[B]` logits and its gradient, in a new `[B]` array.
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = SigmoidLoss::focal(2.0)?.binary_loss_and_grad(&array![1.0_f64, -1.0], &[0.0, 0.0])?;
    /// assert!(loss > 0.0 && grad[0] > 0.0 && grad[1] > 0.0); // both push towards negative
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SigmoidLoss`].
    pub fn binary_loss_and_grad<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<(F, Array1<F>)>
    where
        F: 't,
    {
        let mut grad = Array1::zeros(logits.len());
        let loss = self.binary_loss_and_grad_into(logits, targets, &mut grad)?;
        Ok((loss, grad))
    }

    /// The reduced loss of a binary model's `[B]` logits; its gradient overwrites `grad_out`
    /// (`[B]`).
    ///
    /// # Errors
    ///
    /// Checked in this order:
    /// - [`Error::EmptyBatch`]: `B = 0`;
    /// - [`Error::ShapeMismatch`]: `pos_weight` not of length 1; `targets` or `grad_out` not of
    ///   length `B`, then `sample_weights`;
    /// - [`Error::InvalidSampleWeight`]: a negative or non-finite sample weight;
    /// - [`Error::TargetOutOfRange`]: a target outside `[0, 1]` (or NaN);
    /// - [`Error::NonFiniteLogit`] for a NaN or `+inf` logit, [`Error::MaskedTarget`] for a
    ///   `-inf` logit on a row with `y > 0` and `s > 0`, the first in order;
    /// - [`Error::Overflow`] (`"loss"`, `"gradient"`; `"loss"` naming the row for
    ///   [`per_sample_loss`](Self::per_sample_loss)) for a result beyond the float's range. Sample
    ///   weights are scaled by a power of two before they multiply, so a weighted mean never
    ///   overflows where its value does not.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// use ndarray::{array, Array1};
    ///
    /// let mut grad = Array1::from_elem(2, f32::NAN); // overwritten, not accumulated into
    /// let loss = SigmoidLoss::bce().binary_loss_and_grad_into(&array![2.0_f32, -2.0], &[1.0, 0.0], &mut grad)?;
    /// assert!(loss < 0.2 && grad[0] < 0.0 && grad[1] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SigmoidLoss`].
    pub fn binary_loss_and_grad_into<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
        grad_out: &mut ArrayRef1<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check_binary(logits, &targets, &[("grad_out", &[logits.len()], grad_out.shape())])?;
        let decisions = Decisions::of_binary(logits, &targets);
        with_slice_mut(grad_out, |grad| self.reduced(&decisions, Some(grad)))
    }

    /// The reduced loss of a binary model's `[B]` logits alone.
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into), but for the `grad_out`
    /// shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::SigmoidLoss;
    /// use ndarray::array;
    ///
    /// let loss = SigmoidLoss::bce().binary_loss(&array![1e4_f32, -1e4], &[0.0, 1.0])?;
    /// assert_eq!(loss, 1e4); // exact, far beyond where σ rounds to 0 or 1
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SigmoidLoss`].
    pub fn binary_loss<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check_binary(logits, &targets, &[])?;
        self.reduced(&Decisions::of_binary(logits, &targets), None)
    }

    /// Every row's loss `ℓ_i` of a binary model's `[B]` logits, unreduced (sample weights
    /// applied).
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into), but for the `grad_out`
    /// shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, SigmoidLoss};
    /// use ndarray::array;
    ///
    /// let logits = array![0.3_f64, -1.2, 2.0];
    /// let targets = [1.0, 0.2, 0.0];
    /// let focal = SigmoidLoss::focal(2.0)?.with_alpha(0.25)?;
    /// let losses = focal.binary_per_sample_loss(&logits, &targets)?;
    /// let sum = focal.with_reduction(Reduction::Sum).binary_loss(&logits, &targets)?;
    /// assert!((losses.sum() - sum).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SigmoidLoss`].
    pub fn binary_per_sample_loss<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<Array1<F>>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check_binary(logits, &targets, &[])?;
        let mut losses = vec![F::zero(); logits.len()];
        // Each row's `w·α_t·q^γ·ce` is a product whose partial products shrink: unscaled weights
        // overflow only where the row's loss does.
        self.sum(&Decisions::of_binary(logits, &targets), Some(&mut losses), None, (F::one(), 0))?;
        match losses.iter().position(|v| !v.is_finite()) {
            Some(row) => Err(Error::Overflow { what: "loss", row: Some(row), class: None, value: None }),
            None => Ok(Array1::from(losses)),
        }
    }

    /// The reduced loss of validated decisions, `scale·∂ℓ/∂s` into `grads` if given: the mean
    /// divides by their total weight.
    fn reduced(&self, decisions: &Decisions<F>, grads: Option<&mut [F]>) -> Result<F> {
        one_vs_rest::reduce(decisions, self.reduction, 1.0, grads, |grads, scale| {
            self.sum(decisions, None, grads, scale)
        })
    }

    /// `Σ ℓ` of decisions whose targets and weights are validated, in `f64`, and whether every
    /// gradient entry is finite; each `ℓ` into `losses` and `scale·∂ℓ/∂s` into `grads` if given;
    /// the first bad logit's error (see [`for_rows`]).
    fn sum(
        &self,
        decisions: &Decisions<F>,
        losses: Option<&mut [F]>,
        grads: Option<&mut [F]>,
        (scale, weight_exp): (F, i32),
    ) -> Result<(f64, bool)> {
        let scale = (scale, pow2::<F>(-weight_exp));
        let one = F::one();
        let (alpha, gamma) = (self.alpha.map_or((one, one), |a| (a, one - a)), self.gamma);
        // The positive weights have one entry per class (validated).
        let batch = Batch::of(decisions, self.pos_weight.as_deref());
        // One kernel per combination of the constant parameters, so that each compiles without
        // the terms it does not have.
        macro_rules! run {
            ($focal:literal, $square:literal) => {
                if self.alpha.is_some() {
                    for_rows(
                        batch,
                        losses,
                        grads,
                        scale,
                        SigmoidRow::<F, $focal, $square, true> { alpha, gamma },
                    )
                } else {
                    for_rows(
                        batch,
                        losses,
                        grads,
                        scale,
                        SigmoidRow::<F, $focal, $square, false> { alpha, gamma },
                    )
                }
            };
        }
        if gamma == F::zero() {
            run!(false, false)
        } else if gamma == F::from_f64(2.0) {
            run!(true, true)
        } else {
            run!(true, false)
        }
    }

    /// One decision's loss and slope. Inlined into the kernel: called, it would run without the
    /// kernel's instruction set (and `FMA`'s fused multiply-adds in software).
    #[inline(always)]
    fn row<const FMA: bool, const FOCAL: bool, const SQUARE: bool, const ALPHA: bool, const SOFT: bool>(
        alpha: (F, F),
        gamma: F,
        s: F,
        y: F,
        w: F,
        v: F,
    ) -> (F, F) {
        let (zero, one) = (F::zero(), F::one());
        let Logistic { softplus_pos, softplus_neg, sigmoid_pos: sig_pos, sigmoid_neg: sig_neg } =
            Logistic::of::<FMA>(s);
        // `v` multiplies `y·softplus(−s)`: a subnormal `v` then rounds once (`v = 1` exactly).
        let ce = v * (y * softplus_neg) + (one - y) * softplus_pos;
        let d_ce = (one - y) * sig_pos - v * (y * sig_neg);
        // Without α, `y + (1 − y)` rounds to exactly 1 for every y in [0, 1]: `α_t = 1` as a
        // constant, which the compiler drops.
        // The sample weight multiplies last: a subnormal (or huge) weight then rounds once, and a
        // product overflows only where the row's value does.
        let a_t = if ALPHA { alpha.0 * y + alpha.1 * (one - y) } else { one };
        if !FOCAL {
            return (w * (a_t * ce), w * (a_t * d_ce));
        }
        // log q and (∂q/∂s)/q for q = 1 − p_t: with `SOFT`, the soft-target values are computed
        // for every row and the hard ones selected. `q ≥ min(y, 1 − y)` mathematically; the clamps
        // only keep `ln` in its domain (a subnormal soft target) and `log q ≤ 0` against rounding.
        // For `γ = 2` (`SQUARE`), `q²` rounded once, without the logarithm and the exponential.
        let soft = if SOFT {
            let q = y * sig_neg + (one - y) * sig_pos;
            let ratio = (one - y - y) * sig_pos * sig_neg / q;
            if SQUARE {
                (q, ratio)
            } else {
                let ln_q = ln_normal::<F, FMA>(if q > F::min_positive_value() {
                    q
                } else {
                    F::min_positive_value()
                });
                (if ln_q < zero { ln_q } else { zero }, ratio)
            }
        } else if SQUARE {
            (sig_pos, sig_neg)
        } else {
            (-softplus_neg, sig_neg)
        };
        // `q_term`: `q` for `SQUARE`, else `log q`.
        let (q_term, ratio) = if y == one {
            (if SQUARE { sig_neg } else { -softplus_pos }, -sig_pos)
        } else if y == zero {
            (if SQUARE { sig_pos } else { -softplus_neg }, sig_neg)
        } else {
            soft
        };
        let modulation = if SQUARE { q_term * q_term } else { exp_nonpos::<F, FMA>(gamma * q_term) };
        // `ce·ratio` first: `γ·ce` alone may overflow where `ratio` is 0 (a logit near the range's end).
        let factor = a_t * modulation;
        (w * (factor * ce), w * (factor * (d_ce + gamma * (ce * ratio))))
    }
}

/// [`SigmoidLoss`]'s formula for one decision: with the focal modulation if `FOCAL` (`q²` for
/// `SQUARE`, `γ = 2`), with the class balance `α` if `ALPHA`.
#[derive(Debug, Clone, Copy)]
struct SigmoidRow<F, const FOCAL: bool, const SQUARE: bool, const ALPHA: bool> {
    /// The class balance of positives and negatives, `(α, 1 − α)` (`(1, 1)` without `α`).
    alpha: (F, F),
    gamma: F,
}

impl<F: Float, const FOCAL: bool, const SQUARE: bool, const ALPHA: bool> Decision<F>
    for SigmoidRow<F, FOCAL, SQUARE, ALPHA>
{
    const SOFT_TARGETS: bool = FOCAL;

    #[inline(always)]
    fn row<const FMA: bool, const SOFT: bool>(self, s: F, y: F, w: F, v: F) -> (F, F) {
        SigmoidLoss::row::<FMA, FOCAL, SQUARE, ALPHA, SOFT>(self.alpha, self.gamma, s, y, w, v)
    }

    fn exact(self, s: F, y: F, w: F, v: F) -> (f64, f64) {
        let (f, (a, b)) = (|v: F| v.as_f64(), self.alpha);
        SigmoidLoss::row::<false, FOCAL, SQUARE, ALPHA, true>(
            (f(a), f(b)),
            f(self.gamma),
            f(s),
            f(y),
            f(w),
            f(v),
        )
    }
}

impl<F: Float> Loss<F> for SigmoidLoss<F> {
    /// The reduced loss over the `B·K` one-vs-rest decisions of `[B, K]` logits, the gradient
    /// into `grad_out` if given. The mean divides by `K·Σ_i s_i` (`B·K` without weights), as
    /// PyTorch's element-wise mean.
    ///
    /// Targets: hard labels (one-hot rows), probability targets (soft, each entry in `[0, 1]`;
    /// rows need not sum to 1) or multi-hot targets. Labels and strided arrays are laid out as
    /// `B·K` contiguous values first.
    ///
    /// # Errors
    ///
    /// Checked in this order:
    /// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
    /// - [`Error::ShapeMismatch`]: `pos_weight` not of length `K`; `labels` not of length `B` or
    ///   `targets` not `[B, K]`, an output
    ///   buffer of the wrong shape, `sample_weights` not of length `B`;
    /// - [`Error::InvalidSampleWeight`]: a negative or non-finite sample weight;
    /// - [`Error::LabelOutOfRange`] for a label `≥ K`; [`Error::TargetOutOfRange`] for a
    ///   probability target outside `[0, 1]` or a multi-hot one other than 0 or 1;
    /// - then the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or
    ///   `+inf`, [`Error::MaskedTarget`] for `-inf` on a positive target of a row that counts;
    /// - [`Error::Overflow`] (`"loss"`, `"gradient"`; `"loss"` naming the row for the per-sample
    ///   calls) for a result beyond the float's range.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        self.check_batch(logits, targets, &output_shapes(logits, None, grad_out.as_deref()))?;
        reduced_over(logits, targets, grad_out, |d, grads| self.reduced(d, grads))
    }

    /// Every row's loss `ℓ_i = Σ_k ℓ_ik` over its `K` decisions and, if `grad_out` is given, its
    /// gradient.
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
        self.check_batch(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        let mut grads_finite = true;
        per_sample_over(logits, targets, losses_out, grad_out, |d, losses, grads| {
            grads_finite = self.sum(d, Some(losses), grads, (F::one(), 0))?.1;
            Ok(())
        })?;
        per_sample_result(losses_out, grads_finite)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// [`Error::Overflow`] for the first row loss (naming it) or a gradient entry that is not finite.
pub(super) fn per_sample_result<F: Float>(losses: &ArrayRef1<F>, grads_finite: bool) -> Result<()> {
    let overflow = |what, row| Error::Overflow { what, row, class: None, value: None };
    match losses.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(overflow("loss", Some(row))),
        None if !grads_finite => Err(overflow("gradient", None)),
        None => Ok(()),
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
