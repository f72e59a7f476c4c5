//! Pairwise logit adjustment: softmax cross-entropy with a margin for every (label, class) pair.

use ndarray::{Array2, ArrayRef2, ArrayView2};

use super::Reduction;
use super::class_values::ClassValues;
use super::hard_labels::{LabelledBatch, MarginRow, TwoClassForm};
use super::kernel::{one_hot_row, shifted_exp};
use super::targets::Targets;
use super::two_classes::LabelMargins;
use super::validate::OutputShape;
use super::validate::class_vector;
use crate::error::check_shape;
use crate::group::{GROUP, Lanes, SHORT_ROW, transpose_rows};
use crate::{Error, Float, Result};

/// Pairwise logit adjustment: cross-entropy with a margin `Δ_{yk}` between the label `y` and every
/// other class `k`, with the exact gradient with respect to the logits.
///
/// For logits `z` (`[B, K]`), hard labels `y_i` and a `K×K` margin matrix `Δ`, row `i` costs
///
/// ```text
/// ℓ_i = s_i·w_{y_i} · log[1 + Σ_{k≠y} e^{Δ_{yk}} e^{z_k − z_y}]      (y = y_i)
///     = s_i·w_{y_i} · CE(z_i + Δ_{y_i,·})                           (the diagonal Δ_{yy} is ignored)
/// ```
///
/// A positive `Δ_{yk}` asks the label to beat class `k` by that margin. Logit adjustment (Menon et
/// al.) is the case `Δ_{yk} = τ·log(π_k/π_y)` ([`from_prior`](Self::from_prior)), and agrees with
/// [`SoftmaxLoss::logit_adjusted`](crate::SoftmaxLoss::logit_adjusted) up to rounding. Class weights
/// `w` and sample weights `s` follow PyTorch's weighted mean: `Mean` divides `Σ_i ℓ_i` by
/// `Σ_i s_i·w_{y_i}` (0 if that is 0), `Sum` does not divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂z_i = s_i·w_{y_i}·(softmax(z_i + Δ_{y_i,·}) − e_{y_i})`: the margins shift the logits.
///
/// # Numerics
///
/// Computed as a stable log-sum-exp of `z + Δ_{y,·}` (per-row max, `ln_1p` of the split sum), by the
/// same kernel as [`SoftmaxLoss`](crate::SoftmaxLoss); `-inf` logits mask classes.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`] or [`Error::ShapeMismatch`]. Each
/// [`Loss`](crate::Loss) call checks, in this order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::ShapeMismatch`]: `class_weights` not of length `K`, `margins` not `K×K`;
/// - [`Error::UnsupportedTargets`]: probability or multi-hot targets;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B`, an output buffer of the wrong shape,
///   `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`], then [`Error::LabelOutOfRange`];
/// - the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
///   or a logit that overflows once the margin is added; [`Error::MaskedTarget`] for a `-inf`
///   label logit in a row that counts.
///
/// # Example
///
/// ```
/// use longtail::{Loss, PairwiseMarginLoss};
/// use ndarray::array;
///
/// // Class 1 must beat class 0 by 2; no other pair has a margin.
/// let loss = PairwiseMarginLoss::new(&array![[0.0_f64, 0.0], [2.0, 0.0]])?;
/// let logits = array![[0.0, 1.0]];
/// let value = loss.loss(&logits, &[1])?;
/// assert!((value - (1.0 + (2.0_f64 - 1.0).exp()).ln()).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314
///   (the pairwise margin loss, their Eq. 11).
#[derive(Debug, Clone, PartialEq)]
pub struct PairwiseMarginLoss<F> {
    /// `Δ`, row-major, diagonal 0.
    margins: Vec<F>,
    /// `max |Δ|`, which bounds the validation of the logits.
    max_abs_margin: F,
    classes: usize,
    class_weights: Option<Vec<F>>,
    pub(super) reduction: Reduction,
}

impl<F: Float> PairwiseMarginLoss<F> {
    /// The loss with margin matrix `Δ` (`K×K`, row = label, column = other class); the diagonal is
    /// ignored (set to 0).
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"margins"`) if `Δ` is not square;
    /// [`Error::InvalidParameter`] (`"margins"`, index `y·K + k` row-major) for a non-finite
    /// off-diagonal entry.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::PairwiseMarginLoss;
    /// use ndarray::array;
    ///
    /// let loss = PairwiseMarginLoss::new(&array![[f32::NAN, 1.0], [-1.0, 5.0]])?;
    /// assert_eq!(loss.margins(), array![[0.0, 1.0], [-1.0, 0.0]]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn new<'m>(margins: impl Into<ArrayView2<'m, F>>) -> Result<Self>
    where
        F: 'm,
    {
        let margins = margins.into();
        let k = margins.nrows();
        check_shape("margins", &[k, k], margins.shape())?;
        if let Some(((y, c), &v)) = margins.indexed_iter().find(|&((y, c), v)| y != c && !v.is_finite()) {
            let expected = "finite off the diagonal";
            return Err(Error::InvalidParameter {
                name: "margins",
                index: Some(y * k + c),
                value: v.as_f64(),
                expected,
            });
        }
        let margins: Vec<F> =
            margins.indexed_iter().map(|((y, c), &v)| if y == c { F::zero() } else { v }).collect();
        let max_abs_margin = margins.iter().fold(F::zero(), |m, &v| m.max(v.abs()));
        Ok(Self { margins, max_abs_margin, classes: k, class_weights: None, reduction: Reduction::Mean })
    }

    /// Logit adjustment as pairwise margins: `Δ_{yk} = τ·log(π_k/π_y)`.
    ///
    /// `prior` holds class counts or probabilities (any positive scale). The loss then equals
    /// [`SoftmaxLoss::cross_entropy().with_logit_adjustment(prior, τ)`](crate::SoftmaxLoss::with_logit_adjustment).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`]: `"prior"` for an entry that is not finite and `> 0`; `"tau"`
    /// if `τ` is not finite or some `τ·log(π_k/π_y)` overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, PairwiseMarginLoss, SoftmaxLoss};
    /// use ndarray::array;
    ///
    /// let counts = [900.0, 90.0, 10.0];
    /// let logits = array![[1.0_f64, 0.5, 0.2], [0.0, 0.3, 2.0]];
    /// let pairwise = PairwiseMarginLoss::from_prior(&counts, 1.0)?.loss(&logits, &[2, 0])?;
    /// let adjusted = SoftmaxLoss::logit_adjusted(&counts)?.loss(&logits, &[2, 0])?;
    /// assert!((pairwise - adjusted).abs() < 1e-14);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn from_prior<'p>(prior: impl Into<ClassValues<'p, F>>, tau: F) -> Result<Self>
    where
        F: 'p,
    {
        if !tau.is_finite() {
            return Err(Error::InvalidParameter {
                name: "tau",
                index: None,
                value: tau.as_f64(),
                expected: "a finite number",
            });
        }
        let prior = class_vector("prior", prior.into(), "finite and > 0", |v| v > F::zero())?;
        let log_prior: Vec<f64> = prior.iter().map(|v| v.as_f64().ln()).collect();
        let k = prior.len();
        let margins =
            Array2::from_shape_fn((k, k), |(y, c)| F::from_f64(tau.as_f64() * (log_prior[c] - log_prior[y])));
        if margins.iter().any(|v| !v.is_finite()) {
            let expected = "small enough that tau * log(prior ratio) is finite";
            return Err(Error::InvalidParameter { name: "tau", index: None, value: tau.as_f64(), expected });
        }
        Self::new(&margins)
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
    /// use longtail::PairwiseMarginLoss;
    /// use ndarray::array;
    ///
    /// let loss = PairwiseMarginLoss::from_prior(&[3.0_f32, 1.0], 1.0)?.with_class_weights(&[1.0, 3.0])?;
    /// assert_eq!(loss.class_weights(), Some(&[1.0, 3.0][..]));
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

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Loss, PairwiseMarginLoss, Reduction};
    /// use ndarray::array;
    ///
    /// let loss = PairwiseMarginLoss::new(&array![[0.0_f64, 1.0], [1.0, 0.0]])?.with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The margin matrix `Δ` (diagonal 0), as a new `K×K` array.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::PairwiseMarginLoss;
    ///
    /// let loss = PairwiseMarginLoss::from_prior(&[1.0_f64, 2.0], 1.0)?;
    /// assert!((loss.margins()[[0, 1]] - 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn margins(&self) -> Array2<F> {
        let k = self.classes;
        Array2::from_shape_fn((k, k), |(y, c)| self.margins[y * k + c])
    }

    /// The class weights `w`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::PairwiseMarginLoss;
    /// assert!(PairwiseMarginLoss::from_prior(&[1.0_f64, 2.0], 1.0)?.class_weights().is_none());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn class_weights(&self) -> Option<&[F]> {
        self.class_weights.as_deref()
    }
}

impl<F: Float> MarginRow<F> for PairwiseMarginLoss<F> {
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>> {
        let params = [("margins", &[self.classes, self.classes][..])];
        LabelledBatch::new(
            "PairwiseMarginLoss",
            logits,
            targets,
            self.class_weights.as_deref(),
            &params,
            outputs,
        )
    }

    #[inline(always)]
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()> {
        // |z + Δ| ≤ |z| + max |Δ|, also after rounding (which is monotone).
        let fits = |max_abs: F| (max_abs + self.max_abs_margin).is_finite();
        batch.check_logits(logits, first, "logit + margin", fits, |row, class, z| {
            z + self.margins[batch.labels[row] * self.classes + class]
        })
    }

    /// CE on `z + Δ_{y,·}` with coefficient `c`, `scale·∂ℓ/∂z` into `grad`.
    #[inline(always)]
    fn row<const FMA: bool>(&self, z: &[F], y: usize, c: F, scale: F, grad: &mut [F], _: &mut [F]) -> F {
        let k = self.classes;
        let margins = &self.margins[y * k..(y + 1) * k];
        let lse = shifted_exp::<F, FMA>(z, Some(margins), grad);
        one_hot_row::<F, FMA>(lse, z, Some(margins), y, c, F::zero(), scale, grad)
    }

    fn logit(&self, z: F, y: usize, k: usize) -> F {
        z + self.margins[y * self.classes + k]
    }

    const GROUPED: bool = true;

    fn two_class_form(&self) -> Option<TwoClassForm<F>> {
        // `z'_k = z_k + Δ_{y,k}` (`Δ_{yy} = 0`) has the margin `z_other − (z_y − Δ_{y,other})`.
        let (m0, m1) = (self.margins[1], self.margins[2]);
        let margins = LabelMargins { scales: [F::one(); 2], margins: [m0, m1] };
        Some(TwoClassForm { slopes: [F::one(); 2], poly: F::zero(), margins: Some(margins), adjust: None })
    }

    #[inline(always)]
    fn group_logits(&self, columns: &mut [Lanes<F>], labels: &[usize; GROUP]) {
        // Each lane's row of margins `M[y, ·]`, transposed as the logits are.
        let k = self.classes;
        let mut rows = [F::zero(); GROUP * SHORT_ROW];
        for (row, &y) in rows.chunks_exact_mut(k).zip(labels) {
            row.copy_from_slice(&self.margins[y * k..(y + 1) * k]);
        }
        let mut margins = [[F::zero(); GROUP]; SHORT_ROW];
        transpose_rows(&rows[..GROUP * k], None, &mut margins[..k]);
        for (col, m) in columns.iter_mut().zip(&margins) {
            col.iter_mut().zip(m).for_each(|(v, &m)| *v += m);
        }
    }
}
