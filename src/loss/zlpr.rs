//! ZLPR: the multi-label loss that ranks positives above an implicit zero logit and negatives below.

use ndarray::{Array1, Array2, ArrayRef2, ArrayView1};

use super::Reduction;
use super::multi_label_targets::MultiLabelTargets;
use super::validate::{batch_dims, check_sample_weights, class_vector};
use crate::error::check_shape;
use crate::rows::for_each_row;
use crate::softmax::check_logits;
use crate::{Float, LossError, Result};

/// The ZLPR multi-label loss ("zero-bounded log-sum-exp & pairwise rank-based"), with the exact
/// gradient with respect to the logits.
///
/// Logits `s` are `[B, K]`; targets are multi-hot `[B, K]` with entries exactly 0 or 1 (any number
/// of positives per row, none or all included) and optional sample weights `s_i`
/// ([`MultiLabelTargets`]). With `P_i` the positive classes of row `i` and `s' = s + a` (`a` the
/// optional label-prior adjustment, else 0), row `i` costs
///
/// ```text
/// ℓ_i = s_i·[ log(1 + Σ_{j∉P_i} e^{s'_j}) + log(1 + Σ_{j∈P_i} e^{−s'_j}) ]
/// ```
///
/// Each term is a log-sum-exp that includes an implicit logit 0, so a row without positives (or
/// without negatives) simply has an empty sum: no `1e12` masking. The loss pushes positives above
/// 0 and negatives below it, so the labels are decoded by the threshold `s_j > 0`
/// ([`decode`](Self::decode)). `Mean` (default) divides `Σ_i ℓ_i` by `Σ_i s_i` (`B` without weights;
/// 0 if that is 0), `Sum` does not divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂s_j = s_i·e^{s'_j} / (1 + Σ_{k∉P} e^{s'_k})` for a negative `j`, and
/// `−s_i·e^{−s'_j} / (1 + Σ_{k∈P} e^{−s'_k})` for a positive `j`: each half is a softmax over its
/// classes and the implicit zero.
///
/// # Numerics
///
/// Both halves are shifted by their own maximum (the implicit 0 included) and use `ln_1p` of the
/// sum without its largest term, so a well-separated row keeps its tiny loss instead of rounding it
/// to 0. A `-inf` logit on a negative class is a certain negative (zero loss and gradient); on a
/// positive class of a row that counts it is an error.
///
/// # Errors
///
/// Builders return [`LossError::InvalidParameter`]; each call validates the batch before writing
/// anything (see [`loss_and_grad_into`](Self::loss_and_grad_into)).
///
/// # Example
///
/// ```
/// use longtail::ZlprLoss;
/// use ndarray::array;
///
/// let logits = array![[3.0_f64, -2.0, 0.5], [-1.0, -4.0, -3.0]];
/// let targets = array![[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]; // the second row has no label
/// let (loss, grad) = ZlprLoss::new().loss_and_grad(&logits, &targets)?;
/// assert!(loss > 0.0 && grad[[0, 2]] < 0.0 && grad[[1, 0]] > 0.0);
/// assert_eq!(ZlprLoss::decode(&logits)?, array![[true, false, true], [false, false, false]]);
/// # Ok::<(), longtail::LossError>(())
/// ```
///
/// # References
///
/// - J. Su, M. Zhu, A. Murtadha, S. Pan, B. Wen, Y. Liu, "ZLPR: A Novel Loss for Multi-label
///   Classification", arXiv:2208.02955 (2022); J. Su, "将“softmax+交叉熵”推广到多标签分类问题",
///   kexue.fm/archives/7359 (the reference `multilabel_categorical_crossentropy`).
/// - A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314
///   (the label-prior adjustment).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ZlprLoss<F> {
    adjustment: Option<Vec<F>>,
    reduction: Reduction,
}

impl<F: Float> ZlprLoss<F> {
    /// The ZLPR loss without adjustment, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// // One positive at logit 0 and one negative at logit 0: ln 2 + ln 2.
    /// let loss = ZlprLoss::new().loss(&array![[0.0_f64, 0.0]], &array![[1.0, 0.0]])?;
    /// assert!((loss - 2.0 * 2f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
    pub fn new() -> Self {
        Self { adjustment: None, reduction: Reduction::Mean }
    }

    /// Adds a label-prior adjustment: training uses `s_j + τ·log(π_j / (1 − π_j))`, where `π_j` is
    /// label `j`'s positive rate (the fraction of training rows that carry it).
    ///
    /// This is logit adjustment (Menon et al.) applied to each label's binary decision against the
    /// implicit zero: a rare label (`π_j < 1/2`) gets a negative offset, so the model must raise
    /// its raw logit `s_j` further to call it positive. At inference decode the raw logits,
    /// `s_j > 0` ([`decode`](Self::decode)): that is the balanced decision. `τ = 0` turns the
    /// adjustment off; a negative `τ` is legal.
    ///
    /// # Errors
    ///
    /// [`LossError::InvalidParameter`]: `"prior"` for a rate not in the open interval `(0, 1)`;
    /// `"tau"` if `τ` is not finite, or some `τ·log(π_j/(1 − π_j))` overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let loss = ZlprLoss::new().with_label_prior(&[0.5_f64, 0.2], 1.0)?;
    /// let adjust = loss.logit_adjustment().unwrap();
    /// assert_eq!(adjust[0], 0.0);
    /// assert!((adjust[1] - 0.25f64.ln()).abs() < 1e-15);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
    pub fn with_label_prior<'p>(mut self, prior: impl Into<ArrayView1<'p, F>>, tau: F) -> Result<Self>
    where
        F: 'p,
    {
        if !tau.is_finite() {
            return Err(invalid("tau", tau, "a finite number"));
        }
        let prior = class_vector("prior", prior.into(), "in the open interval (0, 1)", |v| {
            v > F::zero() && v < F::one()
        })?;
        let tau64 = tau.as_f64();
        let adjustment: Vec<F> = prior
            .iter()
            .map(|p| {
                let p = p.as_f64();
                F::from_f64(tau64 * (p.ln() - (-p).ln_1p()))
            })
            .collect();
        if adjustment.iter().any(|v| !v.is_finite()) {
            return Err(invalid("tau", tau, "small enough that tau * log(prior / (1 - prior)) is finite"));
        }
        self.adjustment = (tau != F::zero()).then_some(adjustment);
        Ok(self)
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, ZlprLoss};
    /// assert_eq!(ZlprLoss::<f32>::new().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The per-class logit adjustment `τ·log(π/(1 − π))`, if any.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// assert!(ZlprLoss::<f64>::new().logit_adjustment().is_none());
    /// ```
    pub fn logit_adjustment(&self) -> Option<&[F]> {
        self.adjustment.as_deref()
    }

    /// The reduction of the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{Reduction, ZlprLoss};
    /// assert_eq!(ZlprLoss::<f64>::new().reduction(), Reduction::Mean);
    /// ```
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The predicted label set of every row: `s_ij > 0`, on the raw (unadjusted) logits.
    ///
    /// # Errors
    ///
    /// [`LossError::NonFiniteLogit`] for a NaN logit (`±inf` decode as expected).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let labels = ZlprLoss::decode(&array![[0.1_f32, 0.0, -3.0, f32::INFINITY]])?;
    /// assert_eq!(labels, array![[true, false, false, true]]);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Su et al., "ZLPR: A Novel Loss for Multi-label Classification", arXiv:2208.02955.
    pub fn decode(logits: &ArrayRef2<F>) -> Result<Array2<bool>> {
        if let Some(((row, class), v)) = logits.indexed_iter().find(|(_, v)| v.is_nan()) {
            return Err(LossError::NonFiniteLogit { row, class, value: v.as_f64() });
        }
        Ok(logits.mapv(|v| v > F::zero()))
    }

    /// The reduced loss and its gradient with respect to the logits, in a new `[B, K]` array.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = ZlprLoss::new().loss_and_grad(&array![[0.0_f32, 0.0]], &array![[1.0, 1.0]])?;
    /// assert!((loss - 3f32.ln()).abs() < 1e-6);
    /// assert!((grad[[0, 0]] + 1.0 / 3.0).abs() < 1e-6);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`ZlprLoss`].
    pub fn loss_and_grad<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<MultiLabelTargets<'t, F>>,
    ) -> Result<(F, Array2<F>)>
    where
        F: 't,
    {
        let mut grad = Array2::zeros(logits.raw_dim());
        let loss = self.loss_and_grad_into(logits, targets, &mut grad)?;
        Ok((loss, grad))
    }

    /// The reduced loss; its gradient with respect to the logits overwrites `grad_out` (`[B, K]`).
    ///
    /// # Errors
    ///
    /// Checked in this order, all before anything is written:
    /// - [`LossError::EmptyBatch`], [`LossError::NoClasses`]: `B = 0` or `K = 0`;
    /// - [`LossError::ShapeMismatch`]: the label prior not of length `K` (`"prior"`), `targets` or
    ///   `grad_out` not `[B, K]`, `sample_weights` not of length `B`;
    /// - [`LossError::InvalidSampleWeight`]: a negative or non-finite sample weight;
    /// - [`LossError::TargetOutOfRange`]: a target that is not exactly 0 or 1;
    /// - the first offending logit in row-major order: [`LossError::NonFiniteLogit`] for NaN or
    ///   `+inf`, or a logit that overflows once adjusted; [`LossError::MaskedTarget`] for a `-inf`
    ///   logit on a positive class of a row that counts.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::{array, Array2};
    ///
    /// let mut grad = Array2::from_elem((1, 3), f64::NAN); // overwritten
    /// let loss = ZlprLoss::new().loss_and_grad_into(&array![[5.0, -5.0, -5.0]], &array![[1.0, 0.0, 0.0]], &mut grad)?;
    /// assert!(loss < 0.03 && grad[[0, 0]] < 0.0); // ln(1 + 2e^-5) + ln(1 + e^-5)
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`ZlprLoss`].
    pub fn loss_and_grad_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<MultiLabelTargets<'t, F>>,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &[("grad_out", logits.shape(), grad_out.shape())])?;
        Ok(self.reduced(logits, &targets, Some(grad_out)))
    }

    /// The reduced loss alone.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// // Far on the right side of zero: the loss keeps its tiny value, e^-40 + e^-40.
    /// let loss = ZlprLoss::new().loss(&array![[40.0_f64, -40.0]], &array![[1.0, 0.0]])?;
    /// assert!((loss / (2.0 * (-40f64).exp()) - 1.0).abs() < 1e-15);
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`ZlprLoss`].
    pub fn loss<'t>(&self, logits: &ArrayRef2<F>, targets: impl Into<MultiLabelTargets<'t, F>>) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &[])?;
        Ok(self.reduced(logits, &targets, None))
    }

    /// Every row's loss `ℓ_i`, unreduced (sample weights applied).
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::ZlprLoss;
    /// use ndarray::array;
    ///
    /// let losses = ZlprLoss::new().per_sample_loss(&array![[2.0_f64, -1.0], [-2.0, 1.0]], &array![[1.0, 0.0], [1.0, 0.0]])?;
    /// assert!(losses[1] > losses[0]); // the second row is wrong on both labels
    /// # Ok::<(), longtail::LossError>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`ZlprLoss`].
    pub fn per_sample_loss<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<MultiLabelTargets<'t, F>>,
    ) -> Result<Array1<F>>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &[])?;
        let mut losses = Array1::zeros(logits.nrows());
        for_each_row(logits, None, |i, s, grad| {
            let w = targets.sample_weight(i);
            losses[i] = w * self.row(s, targets.multi_hot.row(i), w, grad);
        });
        Ok(losses)
    }

    fn check(
        &self,
        logits: &ArrayRef2<F>,
        targets: &MultiLabelTargets<F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<()> {
        let (batch, classes) = batch_dims(logits)?;
        if let Some(a) = &self.adjustment {
            check_shape("prior", &[classes], &[a.len()])?;
        }
        let multi_hot = &targets.multi_hot;
        check_shape("targets", logits.shape(), multi_hot.shape())?;
        for &(name, expected, found) in outputs {
            check_shape(name, expected, found)?;
        }
        check_sample_weights(targets.sample_weights.as_ref(), batch)?;
        if let Some(((row, class), &t)) =
            multi_hot.indexed_iter().find(|(_, t)| !(**t == F::zero() || **t == F::one()))
        {
            return Err(LossError::TargetOutOfRange { row, class, value: t.as_f64(), expected: "0 or 1" });
        }
        check_logits(logits, self.adjustment.as_deref(), |row, class| {
            multi_hot[[row, class]] == F::one() && targets.sample_weight(row) > F::zero()
        })
    }

    fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        targets: &MultiLabelTargets<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> F {
        let divisor = match self.reduction {
            Reduction::Mean => (0..targets.len()).map(|i| targets.sample_weight(i).as_f64()).sum(),
            Reduction::Sum => 1.0,
        };
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return F::zero();
        }
        let scale = F::from_f64(divisor.recip());
        let mut total = 0.0_f64;
        for_each_row(logits, grad_out, |i, s, grad| {
            let w = targets.sample_weight(i);
            total += (w * self.row(s, targets.multi_hot.row(i), w * scale, grad)).as_f64();
        });
        F::from_f64(total / divisor)
    }

    /// One validated row: returns `ℓ` and writes `factor·∂ℓ/∂s` into `grad`.
    fn row(&self, s: &[F], t: ArrayView1<'_, F>, factor: F, grad: &mut [F]) -> F {
        // A zero weight ignores the row, even one whose positive class is masked.
        if factor == F::zero() {
            grad.fill(F::zero());
            return F::zero();
        }
        // v_j = s'_j on negatives, −s'_j on positives: each half is lse(0, v) over its classes.
        let mut halves = [Half::new(), Half::new()];
        for (j, (g, &sj)) in grad.iter_mut().zip(s).enumerate() {
            let sj = self.adjustment.as_ref().map_or(sj, |a| sj + a[j]);
            let positive = t[j] == F::one();
            *g = if positive { -sj } else { sj };
            halves[usize::from(positive)].see(j, *g);
        }
        for (j, g) in grad.iter_mut().enumerate() {
            *g = (*g - halves[usize::from(t[j] == F::one())].max).exp();
        }
        let mut loss = F::zero();
        for (side, half) in halves.iter_mut().enumerate() {
            // The sum without its largest term: the implicit zero's e^{−m}, unless it is the max.
            let mut rest = if half.argmax.is_some() { (-half.max).exp() } else { F::zero() };
            for (j, &e) in grad.iter().enumerate() {
                if usize::from(t[j] == F::one()) == side && Some(j) != half.argmax {
                    rest += e;
                }
            }
            loss += half.max + rest.ln_1p();
            half.inv_total = (F::one() + rest).recip();
        }
        for (j, g) in grad.iter_mut().enumerate() {
            let positive = t[j] == F::one();
            let scaled = factor * halves[usize::from(positive)].inv_total;
            *g = if positive { -scaled * *g } else { scaled * *g };
        }
        loss
    }
}

/// One half of a ZLPR row: the max of its values and the implicit 0, and where it is.
struct Half<F> {
    max: F,
    /// The first class at the max, or `None` when the implicit 0 is the max.
    argmax: Option<usize>,
    inv_total: F,
}

impl<F: Float> Half<F> {
    fn new() -> Self {
        Self { max: F::zero(), argmax: None, inv_total: F::one() }
    }

    fn see(&mut self, j: usize, v: F) {
        if v > self.max {
            self.max = v;
            self.argmax = Some(j);
        }
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> LossError {
    LossError::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
