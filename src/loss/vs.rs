//! Vector-scaling (VS) loss: a multiplicative and an additive logit adjustment from the class counts.

use ndarray::ArrayRef2;

use super::Reduction;
use super::class_values::ClassValues;
use super::few_classes::FewMargins;
use super::hard_labels::{LabelledBatch, MarginRow, TwoClassForm};
use super::kernel::{one_hot_row, shifted_exp};
use super::targets::Targets;
use super::two_classes::LabelMargins;
use super::validate::OutputShape;
use super::validate::class_vector;
use crate::group::{GROUP, Lanes};
use crate::{Error, Float, Result};

/// The vector-scaling loss (Kini et al. 2021): cross-entropy on `Δ_k·z_k + ι_k`, a per-class scale
/// and a per-class shift of the logits from the training-set class counts, with the exact gradient
/// with respect to the raw logits `z`.
///
/// For logits `z` (`[B, K]`), hard labels `y_i` and class counts `n_k` (prior `π_k = n_k / Σ n`),
/// row `i` costs
///
/// ```text
/// Δ_k  = (n_k / max_j n_j)^γ                  multiplicative: 1 for the largest class, < 1 for rarer ones
/// ι_k  = τ·log π_k                            additive: logit adjustment
/// z'_k = Δ_k·z_k + ι_k
/// ℓ_i  = s_i·w_y · (lse(z') − z'_y)            y = y_i
/// ```
///
/// exactly as the authors' `VSLoss` (`F.cross_entropy(x / Delta_list + iota_list, weight=w)`,
/// whose `Delta_list = (n_max/n_k)^γ` divides the logits, so its reciprocal is the `Δ_k` here).
/// `γ = 0` is logit adjustment ([`SoftmaxLoss::with_logit_adjustment`](crate::SoftmaxLoss::with_logit_adjustment)
/// with the same `τ`), `τ = 0` the multiplicative CDT loss (Ye et al. 2020) with `Δ_k = (n_k/n_max)^γ`.
/// The defaults are the authors' (`γ = 0.3`, `τ = 1`).
///
/// Class weights `w` (e.g. DRW) and sample weights `s_i` follow PyTorch's weighted mean: `Mean`
/// divides by `Σ_i s_i·w_{y_i}` (0 if that is 0), `Sum` does not divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂z_ik = s_i·w_y·Δ_k·(softmax(z')_k − [k = y])`, the chain rule through the scale.
///
/// # Numerics
///
/// `Δ` and `ι` are computed in `f64` when the loss is built. The row is the stable kernel of
/// [`SoftmaxLoss`](crate::SoftmaxLoss) on `z'`; a finite logit whose `z'` overflows is an error,
/// `-inf` masks a class.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each [`Loss`](crate::Loss) call checks, in this
/// order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::ShapeMismatch`]: `class_weights` or `counts` not of length `K`;
/// - [`Error::UnsupportedTargets`]: probability or multi-hot targets;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B`, an output buffer of the wrong shape,
///   `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`], then [`Error::LabelOutOfRange`];
/// - the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
///   or a finite logit whose `z'` overflows; [`Error::MaskedTarget`] for a `-inf` label logit in
///   a row that counts.
///
/// # Example
///
/// ```
/// use longtail::{Loss, Prior, VsLoss};
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[1000.0, 100.0, 10.0])?;
/// let loss = VsLoss::new(&prior)?; // γ = 0.3, τ = 1
/// assert_eq!(loss.scales()[0], 1.0); // the largest class keeps its logits' scale
/// assert!(loss.scales()[2] < loss.scales()[1]); // rarer classes are scaled down more
/// let (value, grad) = loss.loss_and_grad(&array![[2.0_f64, 0.5, 0.1], [0.1, 0.2, 1.0]], &[0, 2])?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - G. R. Kini, O. Paraskevas, S. Oymak, C. Thrampoulidis, "Label-Imbalanced and Group-Sensitive
///   Classification under Overparameterization", NeurIPS 2021, arXiv:2103.01550.
/// - Reference implementation: the authors' VS-Loss repository, `loss.py` (`VSLoss`).
/// - H.-J. Ye, H.-Y. Chen, D.-C. Zhan, W.-L. Chao, "Identifying and Compensating for Feature
///   Deviation in Imbalanced Deep Learning", arXiv:2001.01385 (CDT).
#[derive(Debug, Clone, PartialEq)]
pub struct VsLoss<F> {
    /// The class counts `n_k`, kept to recompute `Δ` and `ι` when `γ` or `τ` change.
    counts: Vec<f64>,
    gamma: F,
    tau: F,
    scales: Vec<F>,
    adjustments: Vec<F>,
    class_weights: Option<Vec<F>>,
    pub(super) reduction: Reduction,
}

impl<F: Float> VsLoss<F> {
    /// The VS loss with the authors' defaults (`γ = 0.3`, `τ = 1`) from class counts `n_k` or a
    /// [`&Prior`](crate::Prior).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"counts"`) for a count that is not finite and `> 0`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    ///
    /// let loss = VsLoss::new(&[16.0_f64, 4.0])?.with_gamma(0.5)?;
    /// assert_eq!(loss.scales(), &[1.0, 0.5]); // (4/16)^0.5
    /// assert!(VsLoss::new(&[16.0_f64, 0.0]).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// G. R. Kini et al., NeurIPS 2021, arXiv:2103.01550; the authors' `VSLoss` (`gamma=0.3`,
    /// `tau=1.0`).
    pub fn new<'c>(counts: impl Into<ClassValues<'c, F>>) -> Result<Self>
    where
        F: 'c,
    {
        let counts = class_vector("counts", counts.into(), "finite and > 0", |v| v > F::zero())?;
        let loss = Self {
            counts: counts.iter().map(|n| n.as_f64()).collect(),
            gamma: F::zero(),
            tau: F::one(),
            scales: Vec::new(),
            adjustments: Vec::new(),
            class_weights: None,
            reduction: Reduction::Mean,
        };
        loss.with_gamma(F::from_f64(0.3))
    }

    /// Sets the exponent `γ ≥ 0` of the multiplicative scales `Δ_k = (n_k/n_max)^γ` (0.3 by
    /// default); 0 turns them off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a negative or non-finite `γ`, or one so large
    /// that a scale underflows to 0 in `F`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    ///
    /// assert_eq!(VsLoss::new(&[8.0_f32, 1.0])?.with_gamma(0.0)?.scales(), &[1.0, 1.0]);
    /// assert!(VsLoss::new(&[8.0_f32, 1.0])?.with_gamma(-1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// G. R. Kini et al., NeurIPS 2021, arXiv:2103.01550 (§3, the multiplicative adjustment).
    pub fn with_gamma(mut self, gamma: F) -> Result<Self> {
        if !(gamma.is_finite() && gamma >= F::zero()) {
            return Err(invalid("gamma", gamma, "finite and >= 0"));
        }
        self.gamma = gamma;
        self.update()?;
        Ok(self)
    }

    /// Sets the weight `τ` of the additive adjustment `ι_k = τ·log π_k` (1 by default); 0 turns it
    /// off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"tau"`) for a non-finite `τ`, or one so large that an
    /// adjustment overflows in `F`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    ///
    /// assert_eq!(VsLoss::new(&[3.0_f64, 1.0])?.with_tau(0.0)?.adjustments(), &[0.0, 0.0]);
    /// assert!(VsLoss::new(&[3.0_f64, 1.0])?.with_tau(f64::NAN).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// G. R. Kini et al., NeurIPS 2021, arXiv:2103.01550 (§3, the additive adjustment).
    pub fn with_tau(mut self, tau: F) -> Result<Self> {
        if !tau.is_finite() {
            return Err(invalid("tau", tau, "finite"));
        }
        self.tau = tau;
        self.update()?;
        Ok(self)
    }

    /// Adds class weights `w` (length `K`): row `i` is scaled by `w_{y_i}`, and the mean divides by
    /// `Σ_i s_i·w_{y_i}` (the authors' `weight=`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"class_weights"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    ///
    /// let loss = VsLoss::new(&[100.0_f64, 1.0])?.with_class_weights(&[0.1, 1.9])?;
    /// assert_eq!(loss.class_weights(), Some(&[0.1, 1.9][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., NeurIPS 2019, arXiv:1906.07413 (deferred re-weighting, which the VS paper
    /// combines with its loss).
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
    /// use longtail::VsLoss;
    ///
    /// let mut loss = VsLoss::new(&[10.0_f64, 1.0])?;
    /// loss.set_class_weights(&[0.5, 1.5])?;
    /// assert!(loss.set_class_weights(&[0.5, -1.0]).is_err());
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
    /// use longtail::{Loss, Reduction, VsLoss};
    /// let loss = VsLoss::new(&[2.0_f64, 1.0])?.with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The exponent `γ` of the scales.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    /// assert_eq!(VsLoss::new(&[2.0_f64, 1.0])?.gamma(), 0.3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn gamma(&self) -> F {
        self.gamma
    }

    /// The weight `τ` of the additive adjustment.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    /// assert_eq!(VsLoss::new(&[2.0_f32, 1.0])?.tau(), 1.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn tau(&self) -> F {
        self.tau
    }

    /// The multiplicative scales `Δ_k = (n_k/n_max)^γ`, in `(0, 1]`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    /// assert_eq!(VsLoss::new(&[5.0_f64, 5.0])?.scales(), &[1.0, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn scales(&self) -> &[F] {
        &self.scales
    }

    /// The additive adjustments `ι_k = τ·log π_k`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    /// let loss = VsLoss::new(&[1.0_f64, 1.0])?;
    /// assert!((loss.adjustments()[0] - 0.5_f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn adjustments(&self) -> &[F] {
        &self.adjustments
    }

    /// The class weights `w`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::VsLoss;
    /// assert!(VsLoss::new(&[5.0_f32, 1.0])?.class_weights().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn class_weights(&self) -> Option<&[F]> {
        self.class_weights.as_deref()
    }

    /// Recomputes `Δ` and `ι` from the counts, `γ` and `τ`, in `f64`: [`Error::InvalidParameter`]
    /// (`"gamma"`) if a scale underflows to 0 in `F`, (`"tau"`) if an adjustment overflows.
    fn update(&mut self) -> Result<()> {
        let max = self.counts.iter().fold(0.0_f64, |m, &n| m.max(n));
        // log π_k = log(n_k/max) − log Σ(n/max): no overflow for any finite counts.
        let log_total = self.counts.iter().map(|&n| n / max).sum::<f64>().ln();
        let (gamma, tau) = (self.gamma.as_f64(), self.tau.as_f64());
        self.scales = self.counts.iter().map(|&n| F::from_f64((n / max).powf(gamma))).collect();
        if self.scales.iter().any(|&d| d <= F::zero() || d.is_nan()) {
            return Err(invalid("gamma", self.gamma, "small enough that every (n_k/n_max)^gamma is > 0"));
        }
        self.adjustments =
            self.counts.iter().map(|&n| F::from_f64(tau * ((n / max).ln() - log_total))).collect();
        if self.adjustments.iter().any(|a| !a.is_finite()) {
            return Err(invalid("tau", self.tau, "small enough that every tau·log(pi_k) is finite"));
        }
        Ok(())
    }

    /// `z'_k = Δ_k·z_k + ι_k`.
    #[inline(always)]
    fn transformed(&self, z: F, k: usize) -> F {
        self.scales[k] * z + self.adjustments[k]
    }
}

impl<F: Float> MarginRow<F> for VsLoss<F> {
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>> {
        let params = [("counts", &[self.scales.len()][..])];
        LabelledBatch::new("VsLoss", logits, targets, self.class_weights.as_deref(), &params, outputs)
    }

    #[inline(always)]
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()> {
        // |Δ z + ι| ≤ max Δ·|z| + max |ι| (Δ ≤ 1), also after rounding (which is monotone).
        let max_shift = self.adjustments.iter().fold(F::zero(), |m, &v| m.max(v.abs()));
        let fits = |max_abs: F| (max_abs + max_shift).is_finite();
        batch.check_logits(logits, first, "scale * logit + adjustment", fits, |_, class, z| {
            self.transformed(z, class)
        })
    }

    /// CE on `z'` (in `scratch`) with coefficient `c`; the kernel's gradient is with respect to
    /// `z'`, times `Δ_k` for `z_k`.
    #[inline(always)]
    fn row<const FMA: bool>(
        &self,
        z: &[F],
        y: usize,
        c: F,
        scale: F,
        grad: &mut [F],
        scratch: &mut [F],
    ) -> F {
        let columns = scratch.iter_mut().zip(z).zip(self.scales.iter().zip(&self.adjustments));
        columns.for_each(|((out, &zk), (&d, &a))| *out = d * zk + a);
        let lse = shifted_exp::<F, FMA>(scratch, None, grad);
        let value = one_hot_row::<F, FMA>(lse, scratch, None, y, c, F::zero(), scale, grad);
        self.chain_rows(grad);
        value
    }

    fn logit(&self, z: F, _: usize, k: usize) -> F {
        self.transformed(z, k)
    }

    const GROUPED: bool = true;

    fn few_class_form<const K: usize>(&self) -> Option<FewMargins<F, K>> {
        let scales = core::array::from_fn(|k| self.scales[k]);
        Some(FewMargins {
            margins: LabelMargins { scales, margins: [F::zero(); K] },
            adjust: core::array::from_fn(|k| self.adjustments[k]),
            gradient_scale: F::one(),
            slopes: Some(scales),
        })
    }

    fn two_class_form(&self) -> Option<TwoClassForm<F>> {
        let scales = [self.scales[0], self.scales[1]];
        // `Δ_k·(z − 0) + ι_k` is `Δ_k·z + ι_k` exactly.
        let margins = LabelMargins { scales, margins: [F::zero(); 2] };
        Some(TwoClassForm {
            slopes: scales,
            poly: F::zero(),
            margins: Some(margins),
            adjust: Some([self.adjustments[0], self.adjustments[1]]),
        })
    }

    #[inline(always)]
    fn group_logits(&self, columns: &mut [Lanes<F>], _: &[usize; GROUP]) {
        for ((col, &d), &a) in columns.iter_mut().zip(&self.scales).zip(&self.adjustments) {
            col.iter_mut().for_each(|v| *v = d * *v + a);
        }
    }

    /// `∂z'_k/∂z_k = Δ_k`.
    #[inline(always)]
    fn chain_rows(&self, rows: &mut [F]) {
        for row in rows.chunks_exact_mut(self.scales.len()) {
            row.iter_mut().zip(&self.scales).for_each(|(g, &d)| *g *= d);
        }
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
