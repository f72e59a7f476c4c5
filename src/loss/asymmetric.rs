//! The asymmetric loss (ASL) for multi-label classification: focusing and probability shifting
//! that differ between positives and negatives.

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{Batch, Decision, Logistic, for_rows};
use super::contract::Loss;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::sigmoid::per_sample_result;
use super::targets::{RowKind, TargetKind, Targets};
use super::validate::{OutputShape, batch_dims, output_shapes, unsupported};
use crate::float::{exp_nonpos, ln_compensated, ln_normal, pow2};
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
/// Rows are computed by a branch-free loop that vectorises (AVX-512 or AVX2+FMA where the CPU has
/// them), with the crate's exponential and logarithm (within 1 ulp in f32, 2 in f64); a row whose
/// arguments leave their domain (subnormal) is computed again in `f64` with the platform's.
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
        one_vs_rest::check_targets(logits, targets, outputs, MultiHotOnly)
    }

    /// The reduced loss of validated decisions, `scale·∂ℓ/∂s` into `grads` if given:
    /// [`Error::Overflow`] for a result beyond the float's range.
    fn reduced(&self, decisions: &Decisions<F>, grads: Option<&mut [F]>) -> Result<F> {
        one_vs_rest::reduce(decisions, self.reduction, 1.0, grads, |grads, scale| {
            self.sum(decisions, None, grads, scale)
        })
    }

    /// `Σ ℓ` of decisions whose targets and weights are validated, in `f64`, the weights seen
    /// times `2^−weight_exp`, and whether every gradient entry is finite; each `ℓ` into `losses`
    /// and `scale·∂ℓ/∂s` into `grads` if given; the first bad logit's error (see [`for_rows`]).
    fn sum(
        &self,
        decisions: &Decisions<F>,
        losses: Option<&mut [F]>,
        grads: Option<&mut [F]>,
        (scale, weight_exp): (F, i32),
    ) -> Result<(f64, bool)> {
        let scale = (scale, pow2::<F>(-weight_exp));
        let batch = Batch::of(decisions, None);
        if self.clip == F::zero() {
            for_rows(
                batch,
                losses,
                grads,
                scale,
                AsymmetricRow::<F, false> { loss: *self, wide: self.wide() },
            )
        } else {
            for_rows(batch, losses, grads, scale, AsymmetricRow::<F, true> { loss: *self, wide: self.wide() })
        }
    }

    /// [`decision`](Self::decision) without a branch, for the vectorised kernel (`CLIP`: whether
    /// `m > 0`), the exponentials and logarithms the crate's own: both targets' formulas are
    /// computed and one selected, through a single exponential for the focusing factor and (with
    /// `m > 0`) a single logarithm for `−log(1 − p_m)`. Where `p − m` cancels or an argument of
    /// those would be subnormal (a subnormal `p_m` or `σ(−s)`), `(NaN, NaN)`: the kernel then
    /// takes the row from [`decision`](Self::decision) in `f64`.
    #[inline(always)]
    fn decision_vec<const FMA: bool, const CLIP: bool>(&self, s: F, y: F, w: F) -> (F, F) {
        let (zero, one, tiny) = (F::zero(), F::one(), F::min_positive_value());
        let Logistic { softplus_pos, softplus_neg, sigmoid_pos: p, sigmoid_neg: q } = Logistic::of::<FMA>(s);
        let (m, gamma_neg) = (self.clip, self.gamma_neg);
        let positive = y == one;
        // With `m > 0`: p_m = p − m, and −log(1 − p_m) as `ln_1p(−p_m)` for p_m ≤ 1/2, else
        // `ln(σ(−s) + m)` (its arguments clamped into the domains where the other is selected).
        let shifted = p - m;
        let (log_shifted, lost) = if CLIP {
            let half = F::from_f64(0.5);
            let small = if shifted <= half { shifted } else { half };
            let (u, c) = if shifted <= half {
                let u = one - small;
                (u, (-small) - (u - one))
            } else {
                (q + m, zero)
            };
            let u = if u > tiny { u } else { tiny };
            let lost = -ln_compensated::<F, FMA>(u, c);
            (
                ln_normal::<F, FMA>(if shifted > tiny { shifted } else { tiny }),
                if lost > zero { lost } else { zero },
            )
        } else {
            (zero, zero)
        };
        // (1 − p)^{γ+} = e^{−γ+·softplus(s)}; p^{γ−} = e^{−γ−·softplus(−s)}; p_m^{γ−} = e^{γ−·log p_m}.
        let exponent = if positive {
            -(self.gamma_pos * softplus_pos)
        } else if CLIP {
            gamma_neg * log_shifted
        } else {
            -(gamma_neg * softplus_neg)
        };
        let focus = exp_nonpos::<F, FMA>(exponent);
        let (value, slope) = if positive {
            // `p·softplus(−s) ≤ 1/e` first: `γ+` times it stays finite.
            (focus * softplus_neg, -(focus * (self.gamma_pos * (p * softplus_neg) + q)))
        } else if CLIP {
            let slope = p * (focus * (gamma_neg * (q * lost / shifted) + q / (q + m)));
            let dropped = shifted <= zero;
            (if dropped { zero } else { focus * lost }, if dropped { zero } else { slope })
        } else {
            (focus * softplus_pos, focus * (gamma_neg * (q * softplus_pos) + p))
        };
        // Rows computed again in `f64`, all rare: where `p_m = p − m` cancels (the focusing factor
        // `p_m^γ` would carry the rounding of `p` times `γ·p/p_m > 8`), a subnormal `p_m`, or a
        // subnormal `σ(−s)`, whose lost digits `σ(−s) + m` and `σ(−s)/(σ(−s) + m)` need when `m`
        // is small (`s` beyond ~87 in f32).
        let refine = CLIP
            && !positive
            && shifted > zero
            && (shifted < tiny
                || (gamma_neg + one) * p > F::from_f64(8.0) * shifted
                || (shifted > F::from_f64(0.5) && q < tiny));
        if refine { (F::nan(), F::nan()) } else { (w * value, w * slope) }
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

    /// `(ℓ, ∂ℓ/∂s)` of one decision with logit `s`, target `y ∈ {0, 1}` and weight `w`, with the
    /// platform's `exp`, `ln` and `ln_1p`.
    fn decision(&self, s: F, y: F, w: F) -> (F, F) {
        let (zero, one) = (F::zero(), F::one());
        let Logistic { softplus_pos, softplus_neg, sigmoid_pos: p, sigmoid_neg: q } =
            Logistic::of::<false>(s);
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

/// [`AsymmetricLoss`]'s formula for one decision (`CLIP`: whether `m > 0`), and the same loss in
/// `f64` for the rows it leaves.
#[derive(Debug, Clone, Copy)]
struct AsymmetricRow<F, const CLIP: bool> {
    loss: AsymmetricLoss<F>,
    wide: AsymmetricLoss<f64>,
}

impl<F: Float, const CLIP: bool> Decision<F> for AsymmetricRow<F, CLIP> {
    #[inline(always)]
    fn row<const FMA: bool, const SOFT: bool>(self, s: F, y: F, w: F, _: F) -> (F, F) {
        self.loss.decision_vec::<FMA, CLIP>(s, y, w)
    }

    fn exact(self, s: F, y: F, w: F, _: F) -> (f64, f64) {
        self.wide.decision(s.as_f64(), y.as_f64(), w.as_f64())
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
            grads_finite = self.sum(d, Some(losses), grads, (F::one(), 0))?.1;
            Ok(())
        })?;
        per_sample_result(losses_out, grads_finite)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
