//! Poly-1: cross-entropy plus `ε·(1 − p_y)`, the first polynomial term of its Taylor expansion.

use ndarray::ArrayRef2;

use super::Reduction;
use super::class_values::ClassValues;
use super::hard_labels::{LabelledBatch, MarginRow, TwoClassForm, exact_ce};
use super::kernel::{one_hot_row, shifted_exp};
use super::short_rows::{Finished, label_parts, one_hot_group};
use super::softmax_loss::SoftmaxLoss;
use super::targets::Targets;
use super::validate::OutputShape;
use super::validate::class_vector;
use crate::group::{GROUP, Group, Lanes};
use crate::{Error, Float, Result};

/// The Poly-1 loss (Leng et al. 2022): cross-entropy with its leading polynomial coefficient
/// raised by `ε`, optionally logit-adjusted and class-weighted, with the exact gradient with
/// respect to the logits.
///
/// For logits `z` (`[B, K]`), hard labels `y_i` and `p = softmax(z')`, row `i` costs
///
/// ```text
/// z'  = z + τ·log π                  (without logit adjustment, z' = z)
/// ℓ_i = s_i·w_y · (−log p_y + ε·(1 − p_y))           y = y_i
/// ```
///
/// as the paper's `poly1_cross_entropy` (`CE + epsilon * (1 - pt)`). Cross-entropy is
/// `Σ_j (1 − p_y)^j / j`; Poly-1 changes the first coefficient from 1 to `1 + ε`. `ε > 0` (the
/// paper's ImageNet choice is 2) pushes harder on confident rows, `ε < 0` softer; `ε = 0` is
/// cross-entropy. `ε ≥ −1` keeps the loss a decreasing function of `p_y`. Logit adjustment makes
/// `p` the adjusted softmax (Menon et al.), in both terms. Class weights `w` and sample weights
/// `s_i` follow PyTorch's weighted mean: `Mean` divides by `Σ_i s_i·w_{y_i}` (0 if that is 0),
/// `Sum` does not divide.
///
/// # Gradient
///
/// `∂(1 − p_y)/∂z = p_y·(p − e_y)`, so `∂ℓ_i/∂z_i = s_i·w_y·(1 + ε·p_y)·(p − e_y)`: the
/// cross-entropy gradient scaled per row.
///
/// # Numerics
///
/// The stable kernel of [`SoftmaxLoss`](crate::SoftmaxLoss) (per-row max shift, `ln_1p`); `1 − p_y`
/// is computed without cancellation from the same exponentials. A finite logit that overflows once
/// adjusted is an error, `-inf` masks a class.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each [`Loss`](crate::Loss) call checks, in this
/// order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::ShapeMismatch`]: `class_weights` or `prior` not of length `K`;
/// - [`Error::UnsupportedTargets`]: probability or multi-hot targets;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B`, an output buffer of the wrong shape,
///   `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`], then [`Error::LabelOutOfRange`];
/// - the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
///   or a finite logit that overflows once adjusted; [`Error::MaskedTarget`] for a `-inf` label
///   logit in a row that counts.
///
/// # Example
///
/// ```
/// use longtail::{Loss, Poly1Loss, Prior, SoftmaxLoss};
/// use ndarray::array;
///
/// let logits = array![[2.0_f64, 0.5, -1.0], [0.1, 0.2, 3.0]];
/// let poly = Poly1Loss::new(2.0)?;
/// let ce = SoftmaxLoss::cross_entropy();
/// assert!(poly.loss(&logits, &[0, 2])? > ce.loss(&logits, &[0, 2])?);
///
/// // Composed with logit adjustment and class weights for a long-tailed problem.
/// let prior = Prior::from_counts(&[900.0, 90.0, 10.0])?;
/// let loss = Poly1Loss::new(1.0)?.with_logit_adjustment(&prior, 1.0)?.with_class_weights(&[0.5, 1.0, 2.0])?;
/// let (value, grad) = loss.loss_and_grad(&logits, &[0, 2])?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - Z. Leng, M. Tan, C. Liu, E. D. Cubuk, X. Shi, S. Cheng, D. Anguelov, "PolyLoss: A Polynomial
///   Expansion Perspective of Classification Loss Functions", ICLR 2022, arXiv:2204.12511
///   (`poly1_cross_entropy`, their Listing 1).
/// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
#[derive(Debug, Clone, PartialEq)]
pub struct Poly1Loss<F> {
    epsilon: F,
    adjustment: Option<Vec<F>>,
    class_weights: Option<Vec<F>>,
    pub(super) reduction: Reduction,
}

impl<F: Float> Poly1Loss<F> {
    /// Poly-1 with coefficient `ε ∈ [−1, 1/eps]`, mean over the batch.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"epsilon"`) for `ε < −1`, non-finite, or above `1/eps` of the
    /// float type (`8.4e6` in `f32`, `4.5e15` in `f64`): beyond it the cross-entropy is below the
    /// rounding of `ε·(1 − p_y)` in the gradient's factor `1 + ε·p_y`, and that factor times a
    /// weight would leave the range where the gradient does not.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Poly1Loss};
    /// use ndarray::array;
    ///
    /// // Two equal logits: p_y = 1/2, so the loss is ln 2 + ε/2.
    /// let value = Poly1Loss::new(1.0)?.loss(&array![[0.0_f64, 0.0]], &[1])?;
    /// assert!((value - (2f64.ln() + 0.5)).abs() < 1e-15);
    /// assert!(Poly1Loss::<f64>::new(-2.0).is_err());
    /// assert!(Poly1Loss::<f32>::new(1e7).is_err()); // above 1/eps
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// Z. Leng et al., "PolyLoss", ICLR 2022, arXiv:2204.12511.
    pub fn new(epsilon: F) -> Result<Self> {
        if !(epsilon.is_finite() && epsilon >= -F::one() && epsilon <= F::epsilon().recip()) {
            return Err(Error::InvalidParameter {
                name: "epsilon",
                index: None,
                value: epsilon.as_f64(),
                expected: "in [-1, 1/eps] (8.4e6 in f32, 4.5e15 in f64)",
            });
        }
        Ok(Self { epsilon, adjustment: None, class_weights: None, reduction: Reduction::Mean })
    }

    /// Adds logit adjustment: `p = softmax(z + τ·log π)` in both terms, with `π` class counts or
    /// probabilities (a [`&Prior`](crate::Prior) or any array), as
    /// [`SoftmaxLoss::with_logit_adjustment`] (whose checks and `τ = 0` rule it shares).
    ///
    /// # Errors
    ///
    /// As [`SoftmaxLoss::with_logit_adjustment`]: [`Error::InvalidParameter`] (`"tau"`,
    /// `"prior"`).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    ///
    /// let loss = Poly1Loss::<f64>::new(1.0)?.with_logit_adjustment(&[3.0, 1.0], 1.0)?;
    /// assert!((loss.logit_adjustment().unwrap()[1] - 0.25f64.ln()).abs() < 1e-15);
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
        let adjusted = SoftmaxLoss::cross_entropy().with_logit_adjustment(prior, tau)?;
        self.adjustment = adjusted.logit_adjustment().map(<[F]>::to_vec);
        Ok(self)
    }

    /// Adds class weights `w` (length `K`): row `i` is scaled by `w_{y_i}`, and the mean divides by
    /// `Σ_i s_i·w_{y_i}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"class_weights"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    ///
    /// let loss = Poly1Loss::new(1.0_f32)?.with_class_weights(&[0.1, 1.9])?;
    /// assert_eq!(loss.class_weights(), Some(&[0.1, 1.9][..]));
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
            Some(class_vector("class_weights", weights.into(), "finite and >= 0", |v| v >= F::zero())?);
        Ok(self)
    }

    /// Replaces the class weights in place (length `K`), e.g. with the epoch's weights of a
    /// [`DeferredReweighting`](crate::prior::DeferredReweighting) schedule. On an error the loss is
    /// unchanged.
    ///
    /// # Errors
    ///
    /// As [`with_class_weights`](Self::with_class_weights).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    ///
    /// let mut loss = Poly1Loss::new(1.0_f64)?;
    /// loss.set_class_weights(&[0.5, 1.5])?;
    /// assert!(loss.set_class_weights(&[f64::NAN, 1.0]).is_err());
    /// assert_eq!(loss.class_weights(), Some(&[0.5, 1.5][..]));
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

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, Poly1Loss, Reduction};
    /// let loss = Poly1Loss::new(1.0_f64)?.with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The coefficient `ε`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    /// assert_eq!(Poly1Loss::new(2.0_f32)?.epsilon(), 2.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn epsilon(&self) -> F {
        self.epsilon
    }

    /// The logit adjustment `τ·log(π_k/Σπ)`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    /// assert!(Poly1Loss::new(2.0_f32)?.logit_adjustment().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn logit_adjustment(&self) -> Option<&[F]> {
        self.adjustment.as_deref()
    }

    /// The class weights `w`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::Poly1Loss;
    /// assert!(Poly1Loss::new(2.0_f64)?.class_weights().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn class_weights(&self) -> Option<&[F]> {
        self.class_weights.as_deref()
    }
}

impl<F: Float> MarginRow<F> for Poly1Loss<F> {
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>> {
        let prior_shape = self.adjustment.as_ref().map(|a| [a.len()]);
        let params: &[(&'static str, &[usize])] = match &prior_shape {
            Some(shape) => &[("prior", &shape[..])],
            None => &[],
        };
        LabelledBatch::new("Poly1Loss", logits, targets, self.class_weights.as_deref(), params, outputs)
    }

    #[inline(always)]
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()> {
        let adjust = self.adjustment.as_deref();
        let max_shift = adjust.map_or(F::zero(), |a| a.iter().fold(F::zero(), |m, &v| m.max(v.abs())));
        let fits = |max_abs: F| (max_abs + max_shift).is_finite();
        batch.check_logits(logits, first, "logit + adjustment", fits, |_, class, z| {
            adjust.map_or(z, |a| z + a[class])
        })
    }

    /// CE through the shared kernel with its gradient scaled by `1 + ε·p_y`, plus `c·ε·(1 − p_y)`.
    #[inline(always)]
    fn row<const FMA: bool>(
        &self,
        z: &[F],
        y: usize,
        c: F,
        scale: F,
        grad: &mut [F],
        _scratch: &mut [F],
    ) -> F {
        let adjust = self.adjustment.as_deref();
        let lse = shifted_exp::<F, FMA>(z, adjust, grad);
        let Some(parts) = lse.filter(|_| c > F::zero()) else {
            grad.fill(F::zero());
            return F::zero();
        };
        let e_y = grad[y];
        let (p_y, one_minus_p) = (e_y * parts.inv_total, parts.one_minus_p(y, e_y));
        let row_scale = scale * (F::one() + self.epsilon * p_y);
        let ce = one_hot_row::<F, FMA>(lse, z, adjust, y, c, F::zero(), row_scale, grad);
        ce + c * self.epsilon * one_minus_p
    }

    fn logit(&self, z: F, _: usize, k: usize) -> F {
        self.adjustment.as_ref().map_or(z, |a| z + a[k])
    }

    const GROUPED: bool = true;

    fn two_class_form(&self) -> Option<TwoClassForm<F>> {
        Some(TwoClassForm {
            slopes: [F::one(); 2],
            poly: self.epsilon,
            margins: None,
            adjust: self.adjustment.as_deref().map(|a| [a[0], a[1]]),
        })
    }

    #[inline(always)]
    fn group_logits(&self, columns: &mut [Lanes<F>], _: &[usize; GROUP]) {
        if let Some(adjust) = &self.adjustment {
            columns.iter_mut().zip(adjust).for_each(|(col, &a)| col.iter_mut().for_each(|v| *v += a));
        }
    }

    /// As [`row`](MarginRow::row), lane by lane.
    #[inline(always)]
    fn finish_group<const FMA: bool>(
        &self,
        group: &Group<F>,
        labels: &[usize; GROUP],
        c: &Lanes<F>,
        scale: F,
    ) -> Finished<F> {
        let (e_label, one_minus_p) = label_parts(group, labels);
        let mut row_scale = [F::zero(); GROUP];
        for r in 0..GROUP {
            row_scale[r] = scale * (F::one() + self.epsilon * (e_label[r] * group.inv_total[r]));
        }
        let mut done = one_hot_group::<F, FMA>(group, labels, c, F::zero(), &row_scale);
        for r in 0..GROUP {
            // A row without a log-sum-exp, or with `c = 0`, has loss 0 (`one_hot_group`'s).
            let poly = c[r] * self.epsilon * one_minus_p[r];
            let on = c[r] > F::zero() && group.max[r] != F::neg_infinity();
            done.loss[r] += if on { poly } else { F::zero() };
        }
        done
    }

    /// `c·(CE + ε·(1 − p_y))` in `f64` (see [`MarginRow::exact_loss`]).
    #[cold]
    #[inline(never)]
    fn exact_loss(&self, z: &[F], y: usize, c: F) -> f64 {
        let z: Vec<f64> = z.iter().enumerate().map(|(k, &v)| self.logit(v, y, k).as_f64()).collect();
        let (half_nll, one_minus_p) = exact_ce(&z, y);
        let c = c.as_f64();
        2.0 * (c * half_nll) + c * self.epsilon.as_f64() * one_minus_p
    }
}
