//! The asymmetric loss (ASL) for multi-label classification: focusing and probability shifting
//! that differ between positives and negatives.

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{Logistic, for_rows};
use super::contract::Loss;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::targets::{RowKind, TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, output_shapes, unsupported};
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
/// and zeroes its gradient below `s ≈ −18.4`); `−log(1 − p_m)` by `ln_1p`; the focusing factors as
/// `exp(γ·log)`. A `-inf` logit is a certain negative (loss and gradient 0); on a positive it is an
/// error.
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
///   `+inf`, [`Error::MaskedTarget`] for `-inf` on a positive of a row that counts.
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
    /// exponent.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::AsymmetricLoss;
    ///
    /// let asl = AsymmetricLoss::<f64>::new().with_gammas(1.0, 4.0)?; // the class's defaults
    /// assert_eq!(asl.gamma_pos(), 1.0);
    /// assert!(AsymmetricLoss::<f64>::new().with_gammas(0.0, -1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// T. Ridnik et al., ICCV 2021, arXiv:2009.14119 (§3.1, asymmetric focusing).
    pub fn with_gammas(mut self, gamma_pos: F, gamma_neg: F) -> Result<Self> {
        for (name, gamma) in [("gamma_pos", gamma_pos), ("gamma_neg", gamma_neg)] {
            if !(gamma.is_finite() && gamma >= F::zero()) {
                return Err(invalid(name, gamma, "finite and >= 0"));
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

    /// The reduced loss of validated decisions, `scale·∂ℓ/∂s` into `grads` if given.
    fn reduced(&self, decisions: &Decisions<F>, grads: Option<&mut [F]>) -> F {
        let divisor = match self.reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => decisions.total_weight(),
        };
        if divisor == 0.0 {
            if let Some(grads) = grads {
                grads.fill(F::zero());
            }
            return F::zero();
        }
        let total = self.sum(decisions, None, grads, F::from_f64(divisor.recip()));
        F::from_f64(total / divisor)
    }

    /// `Σ ℓ` of validated decisions, in `f64`; each `ℓ` into `losses` and `scale·∂ℓ/∂s` into
    /// `grads` if given.
    fn sum(
        &self,
        decisions: &Decisions<F>,
        losses: Option<&mut [F]>,
        grads: Option<&mut [F]>,
        scale: F,
    ) -> f64 {
        struct Rows<'a, F: Float> {
            loss: AsymmetricLoss<F>,
            decisions: &'a Decisions<'a, F>,
            losses: Option<&'a mut [F]>,
            grads: Option<&'a mut [F]>,
            scale: F,
        }
        impl<F: Float> Kernel for Rows<'_, F> {
            type Output = f64;
            #[inline(always)]
            fn run<const FMA: bool>(self) -> f64 {
                let Rows { loss, decisions, losses, grads, scale } = self;
                let row = |s, y, w, _| loss.decision::<FMA>(s, y, w);
                let weights = decisions.weights.as_deref();
                for_rows(&decisions.logits, &decisions.targets, weights, None, losses, grads, scale, row)
            }
        }
        dispatch(Rows { loss: *self, decisions, losses, grads, scale })
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
            return (w * value, -w * focus * (self.gamma_pos * p * softplus_neg + q));
        }
        if self.clip == zero {
            // p_m = p: p^{γ−} = e^{−γ−·softplus(−s)}, −log(1 − p) = softplus(s), and
            // p(1 − p)·p^{γ−}·(γ− L / p + 1/(1 − p)) = p^{γ−}·(γ− (1 − p) L + p).
            let focus = if self.gamma_neg == zero { one } else { (-self.gamma_neg * softplus_neg).exp() };
            let value = focus * softplus_pos;
            return (w * value, w * focus * (self.gamma_neg * q * softplus_pos + p));
        }
        let shifted = p - self.clip;
        if shifted <= zero {
            return (zero, zero);
        }
        let lost = -(-shifted).ln_1p(); // −log(1 − p_m) ≥ 0
        let focus = if self.gamma_neg == zero { one } else { (self.gamma_neg * shifted.ln()).exp() };
        let slope = p * q * focus * (self.gamma_neg * lost / shifted + (q + self.clip).recip());
        (w * focus * lost, w * slope)
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
        Ok(reduced_over(logits, targets, grad_out, |d, grads| self.reduced(d, grads)))
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
        per_sample_over(logits, targets, losses_out, grad_out, |d, losses, grads| {
            self.sum(d, Some(losses), grads, F::one());
        });
        Ok(())
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
