//! LDAM: label-distribution-aware margins, larger for rarer classes, on scaled logits.

use ndarray::ArrayRef2;

use super::Reduction;
use super::class_values::ClassValues;
use super::few_classes::FewMargins;
use super::hard_labels::{LabelledBatch, MarginRow, TwoClassForm};
use super::kernel::{one_hot_row, shifted_exp};
use super::short_rows::{Finished, one_hot_group};
use super::targets::Targets;
use super::two_classes::LabelMargins;
use super::validate::OutputShape;
use super::validate::class_vector;
use crate::group::{GROUP, Group, Lanes};
use crate::{Error, Float, Result};

/// The LDAM loss (Cao et al. 2019): cross-entropy on `s·(z − m_y e_y)` with per-class margins
/// `m_k = C·n_k^{−1/4}`, with the exact gradient with respect to the raw logits `z`.
///
/// For logits `z` (`[B, K]`), hard labels `y_i` and training-set class counts `n_k`, row `i` costs
///
/// ```text
/// m_k  = max_margin · (min_j n_j / n_k)^{1/4}          so that max_k m_k = max_margin (0.5 default)
/// z'   = s·(z_i − m_y e_y)                              s: scale (30 default), y = y_i
/// ℓ_i  = s_i·w_y · (lse(z') − z'_y)
/// ```
///
/// exactly as LDAM-DRW's `LDAMLoss` (`F.cross_entropy(s * where(onehot, x − m_y, x), weight=w)`).
///
/// **The head.** The defaults (`s = 30`, largest margin 0.5) assume normalised (cosine) logits in
/// `[−1, 1]`, the paper's `NormedLinear` head: [`CosineHead`](crate::CosineHead) computes them and
/// their backward pass. On a plain linear head's unbounded logits the scale multiplies logits that
/// are already large and the margins are small beside them; there the defaults train worse than
/// cross-entropy. With a linear head, set [`with_scale`](Self::with_scale) to 1 and a margin on
/// the scale of the logits, or use logit adjustment.
/// Class weights `w` (DRW: deferred re-weighting, e.g. effective-number weights from a later
/// epoch) and sample weights `s_i` follow PyTorch's weighted mean: `Mean` divides by
/// `Σ_i s_i·w_{y_i}` (0 if that is 0), `Sum` does not divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂z_i = s·s_i·w_y·(softmax(z') − e_y)`, by the chain rule through the scale.
///
/// # Numerics
///
/// The same stable kernel as [`SoftmaxLoss`](crate::SoftmaxLoss) on the scaled logits; a finite
/// logit that overflows once scaled is an error, `-inf` masks a class.
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
///   or a finite logit whose scaled value overflows; [`Error::MaskedTarget`] for a `-inf` label
///   logit in a row that counts.
///
/// # Example
///
/// ```
/// use longtail::{Loss, LdamLoss};
/// use ndarray::array;
///
/// let counts = [1000.0_f64, 100.0, 10.0];
/// let loss = LdamLoss::new(&counts)?;
/// assert!((loss.margins()[2] - 0.5).abs() < 1e-15); // the rarest class gets the largest margin
/// let (value, grad) = loss.loss_and_grad(&array![[2.0, 0.5, 0.1], [0.1, 0.2, 1.0]], &[0, 2])?;
/// assert!(value > 0.0 && grad.iter().all(|g| g.is_finite()));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - K. Cao, C. Wei, A. Gaidon, N. Arechiga, T. Ma, "Learning Imbalanced Datasets with
///   Label-Distribution-Aware Margin Loss", NeurIPS 2019, arXiv:1906.07413.
/// - Reference implementation: `kaidic/LDAM-DRW`, `losses.py` (`LDAMLoss`).
#[derive(Debug, Clone, PartialEq)]
pub struct LdamLoss<F> {
    /// `(min n / n_k)^{1/4}`, the margins for `max_margin = 1`.
    unit_margins: Vec<f64>,
    max_margin: F,
    margins: Vec<F>,
    scale: F,
    class_weights: Option<Vec<F>>,
    pub(super) reduction: Reduction,
}

impl<F: Float> LdamLoss<F> {
    /// LDAM with the paper's defaults: `max_margin = 0.5`, scale `s = 30`, from class counts `n_k`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"counts"`) for a count that is not finite and `> 0`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    ///
    /// let loss = LdamLoss::new(&[16.0_f64, 1.0])?;
    /// assert_eq!(loss.margins(), &[0.25, 0.5]); // (1/16)^(1/4) = 1/2
    /// assert_eq!(loss.scale(), 30.0);
    /// assert!(LdamLoss::new(&[16.0_f64, 0.0]).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., "Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
    /// NeurIPS 2019, arXiv:1906.07413.
    pub fn new<'c>(counts: impl Into<ClassValues<'c, F>>) -> Result<Self>
    where
        F: 'c,
    {
        let counts = class_vector("counts", counts.into().view(), "finite and > 0", |v| v > F::zero())?;
        let min = counts.iter().fold(f64::INFINITY, |m, v| m.min(v.as_f64()));
        let unit_margins = counts.iter().map(|n| (min / n.as_f64()).sqrt().sqrt()).collect();
        let loss = Self {
            unit_margins,
            max_margin: F::zero(),
            margins: Vec::new(),
            scale: F::from_f64(30.0),
            class_weights: None,
            reduction: Reduction::Mean,
        };
        loss.with_max_margin(F::from_f64(0.5))
    }

    /// Sets the largest margin `C·(min n)^{−1/4}` (the paper's `max_m`, 0.5 by default); 0 turns
    /// the margins off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"max_margin"`) for a negative or non-finite value.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    ///
    /// let loss = LdamLoss::new(&[16.0_f64, 1.0])?.with_max_margin(1.0)?;
    /// assert_eq!(loss.margins(), &[0.5, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., NeurIPS 2019, arXiv:1906.07413 (Eq. 13 and §4).
    pub fn with_max_margin(mut self, max_margin: F) -> Result<Self> {
        if !(max_margin.is_finite() && max_margin >= F::zero()) {
            return Err(invalid("max_margin", max_margin, "finite and >= 0"));
        }
        self.max_margin = max_margin;
        self.margins = self.unit_margins.iter().map(|&u| F::from_f64(u * max_margin.as_f64())).collect();
        Ok(self)
    }

    /// Sets the logit scale `s > 0` (30 by default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"scale"`) unless `s` is finite and `> 0`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    ///
    /// assert_eq!(LdamLoss::new(&[2.0_f32, 1.0])?.with_scale(1.0)?.scale(), 1.0);
    /// assert!(LdamLoss::new(&[2.0_f32, 1.0])?.with_scale(0.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., NeurIPS 2019, arXiv:1906.07413; `kaidic/LDAM-DRW` `losses.py` (`s=30`).
    pub fn with_scale(mut self, scale: F) -> Result<Self> {
        if !(scale.is_finite() && scale > F::zero()) {
            return Err(invalid("scale", scale, "finite and > 0"));
        }
        self.scale = scale;
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
    /// use longtail::{LdamLoss, Prior};
    ///
    /// // LDAM-DRW: margins throughout, effective-number weights from epoch 160 on.
    /// let prior = Prior::from_counts(&[500.0, 50.0, 5.0])?;
    /// let drw = DeferredReweighting::new(160, ClassWeights::effective_number(0.9999)?, &prior)?;
    /// let mut loss = LdamLoss::new(&prior)?;
    /// loss.set_class_weights(&drw.weights_at::<f64>(200))?;
    /// assert!(loss.class_weights().unwrap()[2] > loss.class_weights().unwrap()[0]);
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

    /// Adds class weights `w` (length `K`), as DRW does after its first stage: row `i` is scaled by
    /// `w_{y_i}`, and the mean divides by `Σ_i s_i·w_{y_i}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"class_weights"`) for a negative or non-finite weight.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    ///
    /// let loss = LdamLoss::new(&[100.0_f64, 1.0])?.with_class_weights(&[0.1, 1.9])?;
    /// assert_eq!(loss.class_weights(), Some(&[0.1, 1.9][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// K. Cao et al., NeurIPS 2019, arXiv:1906.07413 (deferred re-weighting, §3.3).
    pub fn with_class_weights<'w>(mut self, weights: impl Into<ClassValues<'w, F>>) -> Result<Self>
    where
        F: 'w,
    {
        self.class_weights =
            Some(class_vector("class_weights", weights.into(), "finite and >= 0", |v| v >= F::zero())?);
        Ok(self)
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{LdamLoss, Loss, Reduction};
    /// let loss = LdamLoss::new(&[2.0_f64, 1.0])?.with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The per-class margins `m_k`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    /// assert_eq!(LdamLoss::new(&[5.0_f64, 5.0])?.margins(), &[0.5, 0.5]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn margins(&self) -> &[F] {
        &self.margins
    }

    /// The largest margin.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    /// assert_eq!(LdamLoss::new(&[5.0_f64, 1.0])?.max_margin(), 0.5);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn max_margin(&self) -> F {
        self.max_margin
    }

    /// The logit scale `s`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    /// assert_eq!(LdamLoss::new(&[5.0_f32, 1.0])?.scale(), 30.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn scale(&self) -> F {
        self.scale
    }

    /// The class weights `w`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::LdamLoss;
    /// assert!(LdamLoss::new(&[5.0_f32, 1.0])?.class_weights().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn class_weights(&self) -> Option<&[F]> {
        self.class_weights.as_deref()
    }

    /// `s·(z_k − m_y [k = y])`: the margin is subtracted before scaling, as in LDAM-DRW.
    #[inline(always)]
    fn scaled(&self, z: F, k: usize, y: usize) -> F {
        if k == y { self.scale * (z - self.margins[y]) } else { self.scale * z }
    }
}

impl<F: Float> MarginRow<F> for LdamLoss<F> {
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>> {
        let params = [("counts", &[self.margins.len()][..])];
        LabelledBatch::new("LdamLoss", logits, targets, self.class_weights.as_deref(), &params, outputs)
    }

    #[inline(always)]
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()> {
        // |s·(z − m)| ≤ s·(|z| + max |m|), also after rounding (which is monotone).
        let max_margin = self.margins.iter().fold(F::zero(), |m, &v| m.max(v.abs()));
        let fits = |max_abs: F| (self.scale.abs() * (max_abs + max_margin)).is_finite();
        batch.check_logits(logits, first, "scale * (logit - margin)", fits, |row, class, z| {
            self.scaled(z, class, batch.labels[row])
        })
    }

    /// CE on the scaled, margin-shifted logits (in `scratch`) with coefficient `c`; the kernel's
    /// gradient is with respect to `z'`, times `s` for `z`.
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
        scratch.iter_mut().zip(z).for_each(|(out, &zk)| *out = self.scale * zk);
        scratch[y] = self.scaled(z[y], y, y);
        let lse = shifted_exp::<F, FMA>(scratch, None, grad);
        one_hot_row::<F, FMA>(lse, scratch, None, y, c, F::zero(), scale * self.scale, grad)
    }

    fn logit(&self, z: F, y: usize, k: usize) -> F {
        self.scaled(z, k, y)
    }

    const GROUPED: bool = true;

    fn few_class_form<const K: usize>(&self) -> Option<FewMargins<F, K>> {
        Some(FewMargins {
            margins: LabelMargins {
                scales: [self.scale; K],
                margins: core::array::from_fn(|k| self.margins[k]),
            },
            adjust: [F::zero(); K],
            gradient_scale: self.scale,
            slopes: None,
        })
    }

    fn two_class_form(&self) -> Option<TwoClassForm<F>> {
        Some(TwoClassForm {
            slopes: [self.scale; 2],
            poly: F::zero(),
            margins: Some(LabelMargins {
                scales: [self.scale; 2],
                margins: [self.margins[0], self.margins[1]],
            }),
            adjust: None,
        })
    }

    #[inline(always)]
    fn group_logits(&self, columns: &mut [Lanes<F>], labels: &[usize; GROUP]) {
        for (k, (col, &m)) in columns.iter_mut().zip(&self.margins).enumerate() {
            // `s·(z − 0)` is `s·z` exactly, also for `-inf` and `-0`.
            col.iter_mut()
                .zip(labels)
                .for_each(|(v, &y)| *v = self.scale * (*v - if y == k { m } else { F::zero() }));
        }
    }

    #[inline(always)]
    fn finish_group<const FMA: bool>(
        &self,
        group: &Group<F>,
        labels: &[usize; GROUP],
        c: &Lanes<F>,
        scale: F,
    ) -> Finished<F> {
        one_hot_group::<F, FMA>(group, labels, c, F::zero(), &[scale * self.scale; GROUP])
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
