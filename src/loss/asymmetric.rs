//! The asymmetric loss (ASL) for multi-label classification: focusing and probability shifting
//! that differ between positives and negatives.

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{Logistic, for_rows};
use super::contract::Loss;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::sigmoid::per_sample_result;
use super::targets::{RowKind, TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, output_shapes, unsupported};
use crate::float::pow2;
use crate::simd::{Kernel, dispatch};
use crate::{Error, Float, Result};

/// The asymmetric loss, ASL (Ridnik et al. 2021), over `[B, K]` logits as `B·K` one-vs-rest
/// decisions, with the exact gradient with respect to the logits.
///
/// With `p = σ(s)` for a logit `s`, its target `y ∈ {0, 1}`, focusing exponents `γ+`, `γ−` and the
/// probability margin (clip) `m ∈ [0, 1)`, each decision costs
///
/// ```text
/// p_m   = max(p − m, 0)                                  shifted probability of a negative
/// ℓ     = s_i · (−y (1 − p)^{γ+} log p − (1 − y) p_m^{γ−} log(1 − p_m))
/// ```
///
/// (`s_i` the row's sample weight): positives are focused gently (`γ+ = 0` by default), negatives
/// strongly (`γ− = 4`), and a negative whose `p ≤ m` (an easy one) is dropped altogether, as is a
/// mislabelled negative's pull shrunk. This is the authors' `AsymmetricLoss` with the paper's
/// settings (`gamma_pos=0, gamma_neg=4, clip=0.05`); `γ+ = γ− = m = 0` is BCE. Reductions as
/// [`SigmoidLoss`](crate::SigmoidLoss): `Mean` (the default) divides `Σ ℓ` by `K·Σ_i s_i` (`B·K`
/// without weights), `Sum` does not divide; the authors' `AsymmetricLoss` returns the sum, so
/// `with_reduction(Reduction::Sum)` matches it.
///
/// Targets: hard labels (one-hot rows) or multi-hot rows; the loss is defined on label sets, so
/// probability targets are an error.
///
/// # Gradient
///
/// The exact derivative of `ℓ`:
///
/// ```text
/// positive: ∂ℓ/∂s = −(1 − p)^{γ+} (γ+ p (−log p) + (1 − p))
/// negative: ∂ℓ/∂s = p (1 − p) p_m^{γ−} (γ− (−log(1 − p_m)) / p_m + 1 / (1 − p_m))   (0 if p ≤ m)
/// ```
///
/// The authors' code by default computes the focusing weights with autograd off
/// (`disable_torch_grad_focal_loss`), so its backward pass treats `(1 − p)^{γ+}` and `p_m^{γ−}`
/// as constants; that is a surrogate, not the gradient of the loss it reports. Here the gradient is
/// the loss's own, as the authors' code computes with that flag off.
///
/// # Numerics
///
/// `−log p = softplus(−s)` and `−log(1 − p) = softplus(s)`, exact for `|s|` up to the float's
/// range (the authors clamp `p` at `1e-8` inside the log, which caps a positive's loss near 18.4
/// and zeroes its gradient below `s ≈ −18.4`); `−log(1 − p_m)` by `ln_1p` for `p_m ≤ 1/2`, else
/// as `−log(σ(−s) + m)` (no `1 − p` rounded near `p = 1`); the focusing factors as `exp(γ·log)`.
/// Sample weights are scaled by a power of two before they multiply, so a weighted mean never
/// overflows where its value does not. A `-inf` logit is a certain negative (loss and gradient
/// 0); on a positive it is an error.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each call checks, in this order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::UnsupportedTargets`]: probability targets;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B` or `targets` not `[B, K]`, an output
///   buffer of the wrong shape, `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`]: a negative or non-finite sample weight;
/// - [`Error::LabelOutOfRange`] for a label `≥ K`; [`Error::TargetOutOfRange`] for a multi-hot
///   entry other than 0 or 1;
/// - then the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or
///   `+inf`, [`Error::MaskedTarget`] for `-inf` on a positive of a row that counts;
/// - [`Error::Overflow`] (`"loss"`, `"gradient"`; `"loss"` naming the row for the per-sample
///   calls) for a result beyond the float's range.
///
/// # Example
///
/// ```
/// use longtail::{AsymmetricLoss, Loss, SigmoidLoss, Targets};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, -3.0, 0.5], [-1.0, 1.5, -4.0]];
/// let labels = array![[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]];
/// let asl = AsymmetricLoss::new(); // γ+ = 0, γ− = 4, m = 0.05
/// let (value, grad) = asl.loss_and_grad(&logits, Targets::multi_hot(&labels))?;
/// // The easy negatives (−3.0, −4.0: p below the margin) cost nothing and get no gradient.
/// assert_eq!((grad[[0, 1]], grad[[1, 2]]), (0.0, 0.0));
/// let bce = SigmoidLoss::bce().loss(&logits, Targets::multi_hot(&labels))?;
/// assert!(value < bce);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - T. Ridnik, E. Ben-Baruch, N. Zamir, A. Noy, I. Friedman, M. Protter, L. Zelnik-Manor,
///   "Asymmetric Loss For Multi-Label Classification", ICCV 2021, arXiv:2009.14119.
/// - Reference implementation: Alibaba-MIIL/ASL, `src/loss_functions/losses.py`
///   (`AsymmetricLoss`); also timm `timm/loss/asymmetric_loss.py`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AsymmetricLoss<F> {
    gamma_pos: F,
    gamma_neg: F,
    clip: F,
    reduction: Reduction,
}

impl<F: Float> Default for AsymmetricLoss<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<F: Float> AsymmetricLoss<F> {
    /// ASL with the paper's settings: `γ+ = 0`, `γ− = 4`, `m = 0.05`, mean over the decisions.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    ///
    /// let asl = AsymmetricLoss::<f32>::new();
    /// assert_eq!((asl.gamma_pos(), asl.gamma_neg(), asl.clip()), (0.0, 4.0, 0.05));
    /// ```
    ///
    /// # References
    ///
    /// T. Ridnik et al., ICCV 2021, arXiv:2009.14119 (§3, and the repository's `train.py`).
    pub fn new() -> Self {
        Self {
            gamma_pos: F::zero(),
            gamma_neg: F::from_f64(4.0),
            clip: F::from_f64(0.05),
            reduction: Reduction::Mean,
        }
    }

    /// Sets the focusing exponents `γ+ ≥ 0` of the positives and `γ− ≥ 0` of the negatives.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma_pos"`, `"gamma_neg"`) for a negative or non-finite
    /// exponent, or one above `ε/MIN_POSITIVE` (`1e31` in `f32`, `1e292` in `f64`), the bound of
    /// the focal losses: `γ` times a focusing term's derivative then stays within the range.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    ///
    /// let asl = AsymmetricLoss::<f64>::new().with_gammas(1.0, 4.0)?; // the class's defaults
    /// assert_eq!(asl.gamma_pos(), 1.0);
    /// assert!(AsymmetricLoss::<f64>::new().with_gammas(0.0, -1.0).is_err());
    /// assert!(AsymmetricLoss::<f32>::new().with_gammas(0.0, 1e32).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T. Ridnik et al., ICCV 2021, arXiv:2009.14119 (§3.1, asymmetric focusing).
    pub fn with_gammas(mut self, gamma_pos: F, gamma_neg: F) -> Result<Self> {
        for (name, gamma) in [("gamma_pos", gamma_pos), ("gamma_neg", gamma_neg)] {
            if !(gamma.is_finite() && gamma >= F::zero() && gamma <= super::softmax_loss::gamma_bound()) {
                return Err(invalid(name, gamma, "in [0, eps / MIN_POSITIVE] (1e31 in f32, 1e292 in f64)"));
            }
        }
        (self.gamma_pos, self.gamma_neg) = (gamma_pos, gamma_neg);
        Ok(self)
    }

    /// Sets the probability margin `m ∈ [0, 1)` of the negatives (the authors' `clip`); 0 turns
    /// the shift off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"clip"`) for `m` outside `[0, 1)`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    ///
    /// assert_eq!(AsymmetricLoss::<f32>::new().with_clip(0.0)?.clip(), 0.0);
    /// assert!(AsymmetricLoss::<f32>::new().with_clip(1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T. Ridnik et al., ICCV 2021, arXiv:2009.14119 (§3.2, asymmetric probability shifting).
    pub fn with_clip(mut self, clip: F) -> Result<Self> {
        if !(clip >= F::zero() && clip < F::one()) {
            return Err(invalid("clip", clip, "in [0, 1)"));
        }
        self.clip = clip;
        Ok(self)
    }

    /// Sets how the decisions are reduced (mean by default; the authors' code sums).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{AsymmetricLoss, Loss, Reduction};
    /// assert_eq!(AsymmetricLoss::<f64>::new().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The positives' focusing exponent `γ+`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    /// assert_eq!(AsymmetricLoss::<f64>::new().gamma_pos(), 0.0);
    /// ```
    pub fn gamma_pos(&self) -> F {
        self.gamma_pos
    }

    /// The negatives' focusing exponent `γ−`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    /// assert_eq!(AsymmetricLoss::<f64>::new().gamma_neg(), 4.0);
    /// ```
    pub fn gamma_neg(&self) -> F {
        self.gamma_neg
    }

    /// The negatives' probability margin `m`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    /// assert_eq!(AsymmetricLoss::<f64>::new().clip(), 0.05);
    /// ```
    pub fn clip(&self) -> F {
        self.clip
    }

    /// Validates a batch in the documented order.
    fn check(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<()> {
        batch_dims(logits)?;
        if let TargetKind::Rows(_, RowKind::Probs) = &targets.kind {
            return Err(unsupported("AsymmetricLoss", "hard labels or multi-hot targets", &targets.kind));
        }
        one_vs_rest::check_batch(logits, targets, outputs, MultiHotOnly, None)
    }

    /// The reduced loss of validated decisions, `scale·∂ℓ/∂s` into `grads` if given:
    /// [`Error::Overflow`] for a result beyond the float's range.
    fn reduced(&self, decisions: &Decisions<F>, grads: Option<&mut [F]>) -> Result<F> {
        one_vs_rest::reduce(decisions, self.reduction, 1.0, grads, |grads, scale| {
            self.sum(decisions, None, grads, scale)
        })
    }

    /// `Σ ℓ` of validated decisions, in `f64`, the weights seen times `2^−weight_exp`, and whether
    /// every gradient entry is finite; each `ℓ` into `losses` and `scale·∂ℓ/∂s` into `grads` if
    /// given.
    fn sum(
        &self,
        decisions: &Decisions<F>,
        losses: Option<&mut [F]>,
        grads: Option<&mut [F]>,
        (scale, weight_exp): (F, i32),
    ) -> (f64, bool) {
        struct Rows<'a, F: Float> {
            loss: AsymmetricLoss<F>,
            decisions: &'a Decisions<'a, F>,
            losses: Option<&'a mut [F]>,
            grads: Option<&'a mut [F]>,
            scale: (F, F),
        }
        impl<F: Float> Kernel for Rows<'_, F> {
            type Output = (f64, bool);
            #[inline(always)]
            fn run<const FMA: bool>(self) -> (f64, bool) {
                let Rows { loss, decisions, losses, grads, scale } = self;
                let row = |s, y, w, _| loss.decision::<FMA>(s, y, w);
                // A decision whose value is not finite in `F` (a large weight times a large
                // logit) again in `f64`.
                let (f, wide) = (|v: F| v.as_f64(), loss.wide());
                let exact = |s, y, w, _| wide.decision::<false>(f(s), f(y), f(w));
                let weights = decisions.weights.as_deref();
                let (logits, targets) = (&decisions.logits, &decisions.targets);
                for_rows(logits, targets, weights, None, losses, grads, scale, row, exact)
            }
        }
        let scale = (scale, pow2::<F>(-weight_exp));
        dispatch(Rows { loss: *self, decisions, losses, grads, scale })
    }

    /// The same loss in `f64`.
    fn wide(&self) -> AsymmetricLoss<f64> {
        AsymmetricLoss {
            gamma_pos: self.gamma_pos.as_f64(),
            gamma_neg: self.gamma_neg.as_f64(),
            clip: self.clip.as_f64(),
            reduction: self.reduction,
        }
    }

    /// `(ℓ, ∂ℓ/∂s)` of one decision with logit `s`, target `y ∈ {0, 1}` and weight `w`.
    #[inline(always)]
    fn decision<const FMA: bool>(&self, s: F, y: F, w: F) -> (F, F) {
        let (zero, one) = (F::zero(), F::one());
        let Logistic { softplus_pos, softplus_neg, sigmoid_pos: p, sigmoid_neg: q } = Logistic::of::<FMA>(s);
        if y == one {
            // (1 − p)^{γ+} = e^{−γ+·softplus(s)}; −log p = softplus(−s).
            let focus = if self.gamma_pos == zero { one } else { (-self.gamma_pos * softplus_pos).exp() };
            let value = focus * softplus_neg;
            // `p·softplus(−s) ≤ 1/e` first: `γ+` times it stays finite.
            return (w * value, -w * (focus * (self.gamma_pos * (p * softplus_neg) + q)));
        }
        if self.clip == zero {
            // p_m = p: p^{γ−} = e^{−γ−·softplus(−s)}, −log(1 − p) = softplus(s), and
            // p(1 − p)·p^{γ−}·(γ− L / p + 1/(1 − p)) = p^{γ−}·(γ− (1 − p) L + p).
            let focus = if self.gamma_neg == zero { one } else { (-self.gamma_neg * softplus_neg).exp() };
            let value = focus * softplus_pos;
            return (w * value, w * (focus * (self.gamma_neg * (q * softplus_pos) + p)));
        }
        let shifted = p - self.clip;
        if shifted <= zero {
            return (zero, zero);
        }
        // −log(1 − p_m) ≥ 0, with 1 − p_m = σ(−s) + m exact where p_m is not small.
        let half = F::from_f64(0.5);
        let lost = if shifted <= half { -(-shifted).ln_1p() } else { -(q + self.clip).ln() };
        let focus = if self.gamma_neg == zero { one } else { (self.gamma_neg * shifted.ln()).exp() };
        // `q·lost/p_m` and `q/(q + m)` are at most about `−log m` and 1: no inf·0 at the extremes.
        let slope = p * (focus * (self.gamma_neg * (q * lost / shifted) + q / (q + self.clip)));
        (w * (focus * lost), w * slope)
    }
}

impl<F: Float> Loss<F> for AsymmetricLoss<F> {
    /// The reduced loss over the `B·K` one-vs-rest decisions of `[B, K]` logits, the gradient into
    /// `grad_out` if given.
    ///
    /// # Errors
    ///
    /// As listed on [`AsymmetricLoss`].
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        self.check(logits, targets, &output_shapes(logits, None, grad_out.as_deref()))?;
        reduced_over(logits, targets, grad_out, |d, grads| self.reduced(d, grads))
    }

    /// Every row's loss `ℓ_i = Σ_k ℓ_ik` over its `K` decisions and, if `grad_out` is given, its
    /// gradient.
    ///
    /// # Errors
    ///
    /// As listed on [`AsymmetricLoss`].
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        self.check(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
        // A row's `w·Σ_k ℓ_ik`, unscaled weights: it overflows only where the row's value does.
        let mut grads_finite = true;
        per_sample_over(logits, targets, losses_out, grad_out, |d, losses, grads| {
            grads_finite = self.sum(d, Some(losses), grads, (F::one(), 0)).1;
        });
        per_sample_result(losses_out, grads_finite)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
