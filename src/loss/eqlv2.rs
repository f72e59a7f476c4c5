//! Equalization loss v2: one-vs-rest BCE whose positive and negative terms are weighted per class by
//! the accumulated ratio of positive to negative gradients.

use ndarray::{ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{Batch, Decision, Logistic, for_rows};
use super::contract::Loss;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::sigmoid::per_sample_result;
use super::targets::Targets;
use super::validate::{OutputShape, output_shapes};
use crate::error::check_shape;
use crate::float::pow2;
use crate::{Error, Float, Result};

/// The accumulated gradient statistics of an [`EqlV2Loss`], per class `k`: the magnitudes of the
/// weighted gradients of the positive terms, `P_k = Σ |∂ℓ/∂s| over positives`, and of the negative
/// ones, `Q_k`, and the number of batch statistics added.
///
/// A batch's statistics come from [`EqlV2Loss::gradient_stats`]; they are sums, so a data-parallel
/// trainer all-reduces each worker's batch statistics ([`merge`](Self::merge), or
/// [`from_parts`](Self::from_parts) on summed arrays) and merges the result into the running
/// state, as the reference all-reduces `pos_grad` and `neg_grad` before adding them. Sums are kept
/// in `f64`; a sum that would overflow is an error.
///
/// # Update order
///
/// The reference collects a batch's gradients **after** its loss, with the weights that loss
/// used: build the loss from the state, compute it, then
/// [`update`](Self::update) the state with the same loss and batch. Until the first update every
/// weight is 1.
///
/// # Example
///
/// ```
/// use longtail::loss::EqlV2State;
/// use longtail::EqlV2Loss;
/// use ndarray::array;
///
/// let state = EqlV2State::new(2)?;
/// let loss = EqlV2Loss::new(&state);
/// // Two workers: their batch statistics, merged, are the global batch's.
/// let mut global = loss.gradient_stats(&array![[1.0_f64, -1.0]], &[0])?;
/// global.merge(&loss.gradient_stats(&array![[0.0, 2.0]], &[1])?)?;
/// let mut running = state.clone();
/// running.merge(&global)?;
/// assert_eq!(running.batches(), 2);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Tan, X. Lu, G. Zhang, C. Yin, Q. Li, "Equalization Loss v2: A New Gradient Balance Approach
/// for Long-tailed Object Detection", CVPR 2021, arXiv:2012.08548 (§3.2, the accumulated gradient
/// ratio); the authors' `eqlv2.py` (`collect_grad`).
#[derive(Debug, Clone, PartialEq)]
pub struct EqlV2State {
    positive: Vec<f64>,
    negative: Vec<f64>,
    batches: u64,
}

impl EqlV2State {
    /// A state over `classes` classes with nothing collected: every weight 1. The identity of
    /// [`merge`](Self::merge).
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] if `classes` is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(EqlV2State::new(2)?.positive(), &[0.0, 0.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn new(classes: usize) -> Result<Self> {
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        Ok(Self { positive: vec![0.0; classes], negative: vec![0.0; classes], batches: 0 })
    }

    /// A state from its sums and the number of batch statistics they add up, e.g. after an
    /// all-reduce.
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] for empty sums; [`Error::ShapeMismatch`] (`"negative"`) if the two
    /// differ in length; [`Error::InvalidParameter`] (`"positive"`, `"negative"`) for a negative or
    /// non-finite sum.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    ///
    /// let state = EqlV2State::from_parts(vec![1.0, 0.5], vec![2.0, 10.0], 3)?;
    /// let ratio = state.ratio();
    /// assert!((ratio[0] - 0.5).abs() < 1e-9 && (ratio[1] - 0.05).abs() < 1e-9);
    /// assert!(EqlV2State::from_parts(vec![-1.0], vec![1.0], 1).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn from_parts(positive: Vec<f64>, negative: Vec<f64>, batches: u64) -> Result<Self> {
        if positive.is_empty() {
            return Err(Error::NoClasses);
        }
        check_shape("negative", &[positive.len()], &[negative.len()])?;
        check_sums("positive", &positive)?;
        check_sums("negative", &negative)?;
        Ok(Self { positive, negative, batches })
    }

    /// Collects the gradient statistics of a batch under `loss` (built from this state before the
    /// step) and adds them: `self.merge(&loss.gradient_stats(logits, targets)?)`.
    ///
    /// # Errors
    ///
    /// As [`EqlV2Loss::gradient_stats`] and [`merge`](Self::merge); the state is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    /// use ndarray::array;
    ///
    /// let mut state = EqlV2State::new(2)?;
    /// let loss = EqlV2Loss::new(&state);
    /// state.update(&loss, &array![[0.0_f64, 0.0]], &[0])?;
    /// assert_eq!((state.positive(), state.negative()), (&[0.5, 0.0][..], &[0.0, 0.5][..]));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`EqlV2State`].
    pub fn update<'t, F: Float + 't>(
        &mut self,
        loss: &EqlV2Loss<F>,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<()> {
        let batch = loss.gradient_stats(logits, targets)?;
        self.merge(&batch)
    }

    /// Adds `other`'s sums and batch count.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"state"`) for a different number of classes;
    /// [`Error::InvalidParameter`] (`"positive"`, `"negative"`, `"batches"`) if a sum would
    /// overflow. The state is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    ///
    /// let mut a = EqlV2State::from_parts(vec![1.0], vec![3.0], 1)?;
    /// a.merge(&EqlV2State::from_parts(vec![2.0], vec![5.0], 1)?)?;
    /// assert_eq!((a.positive(), a.negative(), a.batches()), (&[3.0][..], &[8.0][..], 2));
    /// let huge = EqlV2State::from_parts(vec![f64::MAX], vec![0.0], 1)?;
    /// let mut overflowing = huge.clone();
    /// assert!(overflowing.merge(&huge).is_err());
    /// assert_eq!(overflowing, huge);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`EqlV2State`].
    pub fn merge(&mut self, other: &EqlV2State) -> Result<()> {
        check_shape("state", &[self.classes()], &[other.classes()])?;
        let add = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect::<Vec<f64>>();
        let (positive, negative) =
            (add(&self.positive, &other.positive), add(&self.negative, &other.negative));
        check_sums("positive", &positive)?;
        check_sums("negative", &negative)?;
        let Some(batches) = self.batches.checked_add(other.batches) else {
            return Err(Error::InvalidParameter {
                name: "batches",
                index: None,
                value: self.batches as f64 + other.batches as f64,
                expected: "a count that fits in u64",
            });
        };
        *self = Self { positive, negative, batches };
        Ok(())
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::EqlV2State::new(3)?.classes(), 3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn classes(&self) -> usize {
        self.positive.len()
    }

    /// The accumulated positive gradient magnitudes `P_k`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::EqlV2State::new(1)?.positive(), &[0.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn positive(&self) -> &[f64] {
        &self.positive
    }

    /// The accumulated negative gradient magnitudes `Q_k`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::EqlV2State::new(1)?.negative(), &[0.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn negative(&self) -> &[f64] {
        &self.negative
    }

    /// The number of batch statistics added (0: nothing collected, every weight 1).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::EqlV2State::new(1)?.batches(), 0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// The gradient ratio `g_k = P_k / (Q_k + 10⁻¹⁰)` (the reference's `pos_neg`).
    ///
    /// # Example
    ///
    /// ```
    /// let state = longtail::loss::EqlV2State::from_parts(vec![1.0], vec![4.0], 1)?;
    /// assert_eq!(state.ratio(), vec![1.0 / (4.0 + 1e-10)]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn ratio(&self) -> Vec<f64> {
        self.positive.iter().zip(&self.negative).map(|(&p, &q)| p / (q + 1e-10)).collect()
    }
}

fn check_sums(name: &'static str, sums: &[f64]) -> Result<()> {
    match sums.iter().position(|&v| !(v.is_finite() && v >= 0.0)) {
        Some(k) => {
            Err(Error::InvalidParameter { name, index: Some(k), value: sums[k], expected: "finite and >= 0" })
        }
        None => Ok(()),
    }
}

/// Equalization loss v2 (Tan et al. 2021) over `[B, K]` logits as `B·K` one-vs-rest decisions,
/// with the gradient with respect to the logits (the weights, from the running state, constant).
///
/// From an [`EqlV2State`] with gradient ratio `g_k = P_k / (Q_k + 10⁻¹⁰)`, each class gets
///
/// ```text
/// f(x)  = 1 / (1 + e^{−γ (x − μ)})                  the mapping function
/// q_k   = f(g_k)                                    weight of the negatives of class k
/// r_k   = 1 + α (1 − q_k)                           weight of the positives of class k
/// ℓ_ik  = s_i · (y_ik r_k + (1 − y_ik) q_k) · BCE(s_ik, y_ik)
/// ```
///
/// (every weight 1 while the state has collected nothing). A rare class, whose positives have
/// seen far less gradient than its negatives (`g_k` small), has its negatives suppressed
/// (`q_k → 0`) and its positives raised (`r_k → 1 + α`). After each step the state collects the
/// weighted gradient magnitudes of the step's positives and negatives ([`EqlV2State::update`]);
/// the defaults are the authors' (`γ = 12`, `μ = 0.8`, `α = 4`).
///
/// `Mean` (the default) divides `Σ ℓ` by `Σ_i s_i` (`B` without weights, the reference's `n_i`:
/// a per-row sum over the classes, then the mean over rows), `Sum` does not divide. Targets: hard
/// labels (one-hot rows, as the reference), multi-hot rows or probability rows in `[0, 1]`.
///
/// The reference's classifier has a background column (negative weight always 1, no gradient
/// statistics); here every column is a class. A background class is a column whose weights the
/// caller wants at 1: keep it out of the `K` logits and add its BCE separately.
///
/// # Gradient
///
/// `∂ℓ_ik/∂s_ik = s_i·w_ik·(σ(s_ik) − y_ik)` with `w_ik = y_ik r_k + (1 − y_ik) q_k` held constant:
/// the weights come from the state, not from this batch's logits. The state collects
/// `Σ_i s_i·y_ik·w_ik·|σ − y|` and `Σ_i s_i·(1 − y_ik)·w_ik·|σ − y|` (the reference's
/// `collect_grad`; `s_i = 1` there).
///
/// # Numerics
///
/// `BCE = softplus(−s)·y + softplus(s)·(1 − y)`, exact over the float's range. The weights are
/// computed in `f64` when the loss is built. A `-inf` logit is a certain negative.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each call checks, in this order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::ShapeMismatch`]: `state` (the classes the loss was built for) not of length `K`;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B` or `targets` not `[B, K]`, an output
///   buffer of the wrong shape, `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`];
/// - [`Error::LabelOutOfRange`] for a label `≥ K`; [`Error::TargetOutOfRange`] for a probability
///   target outside `[0, 1]` or a multi-hot entry other than 0 or 1;
/// - the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
///   [`Error::MaskedTarget`] for `-inf` on a positive of a row that counts.
///
/// # Example: a training step
///
/// ```
/// use longtail::loss::EqlV2State;
/// use longtail::{EqlV2Loss, Loss};
/// use ndarray::{array, Array2};
///
/// let mut state = EqlV2State::new(3)?;
/// let mut logits = array![[1.0_f64, -1.0, -2.0], [0.5, -0.5, -1.0], [-1.0, 1.0, -2.0]];
/// let labels = [0, 0, 1];
/// let mut grad = Array2::zeros(logits.raw_dim());
/// for _ in 0..3 {
///     let loss = EqlV2Loss::new(&state); // γ = 12, μ = 0.8, α = 4
///     let value = loss.loss_and_grad_into(&logits, &labels, &mut grad)?;
///     state.update(&loss, &logits, &labels)?; // after the loss, with its weights
///     assert!(value > 0.0);
///     logits.zip_mut_with(&grad, |z, &g| *z -= 0.5 * g);
/// }
/// // Class 2 never had a positive: its negatives are switched off, its positives raised.
/// let loss = EqlV2Loss::<f64>::new(&state);
/// assert!(loss.negative_weights()[2] < 1e-3 && loss.positive_weights()[2] > 4.9);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - J. Tan, X. Lu, G. Zhang, C. Yin, Q. Li, "Equalization Loss v2: A New Gradient Balance
///   Approach for Long-tailed Object Detection", CVPR 2021, arXiv:2012.08548.
/// - Reference implementation: tztztztztz/eqlv2, `mmdet/models/losses/eqlv2.py` (`EQLv2`).
#[derive(Debug, Clone, PartialEq)]
pub struct EqlV2Loss<F> {
    ratio: Option<Vec<f64>>,
    gamma: F,
    mu: F,
    alpha: F,
    positive_weights: Vec<F>,
    negative_weights: Vec<F>,
    reduction: Reduction,
}

impl<F: Float> EqlV2Loss<F> {
    /// EQL v2 with the authors' defaults (`γ = 12`, `μ = 0.8`, `α = 4`) from the statistics of
    /// `state`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    ///
    /// let loss = EqlV2Loss::<f32>::new(&EqlV2State::new(2)?);
    /// assert_eq!((loss.gamma(), loss.mu(), loss.alpha()), (12.0, 0.8, 4.0));
    /// assert_eq!(loss.negative_weights(), &[1.0, 1.0]); // nothing collected yet
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Tan et al., CVPR 2021, arXiv:2012.08548; the authors' `EQLv2` (`gamma=12, mu=0.8,
    /// alpha=4.0`).
    pub fn new(state: &EqlV2State) -> Self {
        let mut loss = Self {
            ratio: None,
            gamma: F::from_f64(12.0),
            mu: F::from_f64(0.8),
            alpha: F::from_f64(4.0),
            positive_weights: Vec::new(),
            negative_weights: Vec::new(),
            reduction: Reduction::Mean,
        };
        loss.set_state(state);
        loss
    }

    /// Takes the statistics of `state` (e.g. after the previous step's
    /// [`EqlV2State::update`]), keeping the parameters.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    ///
    /// let mut loss = EqlV2Loss::<f64>::new(&EqlV2State::new(1)?);
    /// loss.set_state(&EqlV2State::from_parts(vec![0.8], vec![1.0], 1)?);
    /// assert!((loss.negative_weights()[0] - 0.5).abs() < 1e-9); // f(μ) = 1/2
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn set_state(&mut self, state: &EqlV2State) {
        self.ratio = (state.batches() > 0).then(|| state.ratio());
        self.update_weights(state.classes());
    }

    /// Sets the mapping function's slope `γ > 0` and centre `μ` (12 and 0.8 by default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"gamma"`) for a `γ` that is not finite and `> 0`,
    /// (`"mu"`) for a non-finite `μ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    ///
    /// let state = EqlV2State::new(2)?;
    /// assert_eq!(EqlV2Loss::<f64>::new(&state).with_mapping(6.0, 0.5)?.mu(), 0.5);
    /// assert!(EqlV2Loss::<f64>::new(&state).with_mapping(0.0, 0.5).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Tan et al., CVPR 2021, arXiv:2012.08548 (eq. 7, the mapping function).
    pub fn with_mapping(mut self, gamma: F, mu: F) -> Result<Self> {
        if !(gamma.is_finite() && gamma > F::zero()) {
            return Err(invalid("gamma", gamma, "finite and > 0"));
        }
        if !mu.is_finite() {
            return Err(invalid("mu", mu, "finite"));
        }
        (self.gamma, self.mu) = (gamma, mu);
        self.update_weights(self.negative_weights.len());
        Ok(self)
    }

    /// Sets the positives' extra weight `α ≥ 0` (4 by default): `r_k = 1 + α (1 − q_k)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"alpha"`) for a negative or non-finite `α`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    ///
    /// let state = EqlV2State::from_parts(vec![0.0], vec![1.0], 1)?;
    /// let loss = EqlV2Loss::<f64>::new(&state).with_alpha(0.0)?;
    /// assert_eq!(loss.positive_weights(), &[1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Tan et al., CVPR 2021, arXiv:2012.08548 (eq. 6).
    pub fn with_alpha(mut self, alpha: F) -> Result<Self> {
        if !(alpha.is_finite() && alpha >= F::zero()) {
            return Err(invalid("alpha", alpha, "finite and >= 0"));
        }
        self.alpha = alpha;
        self.update_weights(self.negative_weights.len());
        Ok(self)
    }

    /// Sets how the batch is reduced (mean over rows by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::{EqlV2Loss, Loss, Reduction};
    /// let loss = EqlV2Loss::<f64>::new(&EqlV2State::new(2)?).with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The mapping function's slope `γ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(longtail::EqlV2Loss::<f64>::new(&EqlV2State::new(1)?).gamma(), 12.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn gamma(&self) -> F {
        self.gamma
    }

    /// The mapping function's centre `μ`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(longtail::EqlV2Loss::<f64>::new(&EqlV2State::new(1)?).mu(), 0.8);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn mu(&self) -> F {
        self.mu
    }

    /// The positives' extra weight `α`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(longtail::EqlV2Loss::<f64>::new(&EqlV2State::new(1)?).alpha(), 4.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn alpha(&self) -> F {
        self.alpha
    }

    /// The positive weights `r_k`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(longtail::EqlV2Loss::<f64>::new(&EqlV2State::new(2)?).positive_weights(), &[1.0, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn positive_weights(&self) -> &[F] {
        &self.positive_weights
    }

    /// The negative weights `q_k`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// assert_eq!(longtail::EqlV2Loss::<f64>::new(&EqlV2State::new(2)?).negative_weights(), &[1.0, 1.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn negative_weights(&self) -> &[F] {
        &self.negative_weights
    }

    /// One batch's gradient statistics under this loss's weights (`batches = 1`), to all-reduce
    /// and merge into the running state (or pass to [`EqlV2State::update`] on one worker).
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::EqlV2State;
    /// use longtail::EqlV2Loss;
    /// use ndarray::array;
    ///
    /// let loss = EqlV2Loss::<f64>::new(&EqlV2State::new(2)?);
    /// let batch = loss.gradient_stats(&array![[0.0, 0.0], [0.0, 0.0]], &[0, 0])?;
    /// assert_eq!((batch.positive(), batch.negative(), batch.batches()), (&[1.0, 0.0][..], &[0.0, 1.0][..], 1));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`EqlV2State`].
    pub fn gradient_stats<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
    ) -> Result<EqlV2State>
    where
        F: 't,
    {
        let targets = targets.into();
        self.check(logits, &targets, &[])?;
        let decisions = Decisions::of_batch(logits, &targets);
        let k = decisions.classes;
        let (mut positive, mut negative) = (vec![0.0; k], vec![0.0; k]);
        let weights = decisions.weights.as_deref();
        for (d, (&s, &y)) in decisions.logits.iter().zip(decisions.targets.iter()).enumerate() {
            let w = weights.map_or(1.0, |w| w[d].as_f64());
            if w == 0.0 || s == F::neg_infinity() {
                continue;
            }
            let (p, not_p, y) = (sigmoid(s.as_f64()), sigmoid(-s.as_f64()), y.as_f64());
            let class = d % k;
            let (r, q) = (self.positive_weights[class].as_f64(), self.negative_weights[class].as_f64());
            let weight = r * y + q * (1.0 - y);
            // |σ(s) − y| = |(1 − y)·σ(s) − y·σ(−s)|, without cancellation where σ(s) rounds to 1.
            let magnitude = ((1.0 - y) * p - y * not_p).abs() * weight * w;
            positive[class] += magnitude * y;
            negative[class] += magnitude * (1.0 - y);
        }
        EqlV2State::from_parts(positive, negative, 1)
    }

    /// Recomputes the class weights from the ratio (all 1 without one), in `f64`.
    fn update_weights(&mut self, classes: usize) {
        let (gamma, mu) = (self.gamma.as_f64(), self.mu.as_f64());
        self.negative_weights = match &self.ratio {
            Some(ratio) => {
                ratio.iter().map(|&g| F::from_f64(1.0 / (1.0 + (-gamma * (g - mu)).exp()))).collect()
            }
            None => vec![F::one(); classes],
        };
        // As the kernel computes them from q, in F.
        let (one, alpha) = (F::one(), self.alpha);
        self.positive_weights = self.negative_weights.iter().map(|&q| one + alpha * (one - q)).collect();
    }

    /// Validates a batch in the documented order.
    fn check(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<()> {
        let (_, classes) = super::validate::batch_dims(logits)?;
        check_shape("state", &[classes], &[self.negative_weights.len()])?;
        one_vs_rest::check_batch(logits, targets, outputs, MultiHotOnly, None)
    }

    /// The reduced loss of validated decisions, `scale·∂ℓ/∂s` into `grads` if given: the mean
    /// divides by the rows' total weight.
    fn reduced(&self, decisions: &Decisions<F>, grads: Option<&mut [F]>) -> Result<F> {
        let per_row = decisions.classes as f64;
        one_vs_rest::reduce(decisions, self.reduction, per_row, grads, |grads, scale| {
            self.sum(decisions, None, grads, scale)
        })
    }

    /// `Σ ℓ` of validated decisions, in `f64`, and whether every gradient entry is finite; each `ℓ`
    /// into `losses` and `scale·∂ℓ/∂s` into `grads` if given, the weights times `2^−weight_exp`.
    fn sum(
        &self,
        decisions: &Decisions<F>,
        losses: Option<&mut [F]>,
        grads: Option<&mut [F]>,
        (scale, weight_exp): (F, i32),
    ) -> Result<(f64, bool)> {
        let scale = (scale, pow2::<F>(-weight_exp));
        // Each decision's value is its class's negative weight.
        let batch = Batch::of(decisions, Some(&self.negative_weights));
        for_rows(batch, losses, grads, scale, EqlRow(self.alpha))
    }
}

/// EQL v2's formula for one decision, with the balance `α`.
#[derive(Debug, Clone, Copy)]
struct EqlRow<F>(F);

impl<F: Float> Decision<F> for EqlRow<F> {
    #[inline(always)]
    fn row<const FMA: bool, const SOFT: bool>(self, s: F, y: F, w: F, q: F) -> (F, F) {
        eql_row::<F, FMA>(self.0, s, y, w, q)
    }

    fn exact(self, s: F, y: F, w: F, q: F) -> (f64, f64) {
        let f = |v: F| v.as_f64();
        eql_row::<f64, false>(f(self.0), f(s), f(y), f(w), f(q))
    }
}

/// One decision's weighted BCE and its slope: the decision's value is its class's negative weight
/// `q`, the positive weight `r = 1 + α(1 − q)` (1 with `q = 1`, before any statistics).
#[inline(always)]
fn eql_row<G: Float, const FMA: bool>(alpha: G, s: G, y: G, w: G, q: G) -> (G, G) {
    let one = G::one();
    let Logistic { softplus_pos, softplus_neg, sigmoid_pos, sigmoid_neg } = Logistic::of::<FMA>(s);
    let r = one + alpha * (one - q);
    let value = y * r + (one - y) * q;
    let bce = y * softplus_neg + (one - y) * softplus_pos;
    // σ(s) − y as (1 − y)·σ(s) − y·σ(−s): no cancellation where σ(s) rounds to 1. The sample
    // weight multiplies last: a subnormal weight then rounds once.
    (w * (value * bce), w * (value * ((one - y) * sigmoid_pos - y * sigmoid_neg)))
}

impl<F: Float> Loss<F> for EqlV2Loss<F> {
    /// The reduced loss over the `B·K` one-vs-rest decisions of `[B, K]` logits, the gradient into
    /// `grad_out` if given.
    ///
    /// # Errors
    ///
    /// As listed on [`EqlV2Loss`].
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
    /// As listed on [`EqlV2Loss`].
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        self.check(logits, targets, &output_shapes(logits, Some(losses_out), grad_out.as_deref()))?;
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

/// `σ(x)` without overflow.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 { 1.0 / (1.0 + (-x).exp()) } else { x.exp() / (1.0 + x.exp()) }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
