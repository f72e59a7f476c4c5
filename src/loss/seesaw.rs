//! Seesaw loss: softmax cross-entropy whose negative logits are shifted by a mitigation factor from
//! the cumulative class counts and a compensation factor from the probabilities.

use ndarray::ArrayRef2;

use super::Reduction;
use super::hard_labels::{LabelledBatch, MarginRow, exact_ce};
use super::kernel::{one_hot_row, shifted_exp};
use super::targets::{Labels, Targets};
use super::validate::{OutputShape, check_labels};
use crate::error::check_shape;
use crate::float::ExpArgs;
use crate::softmax::row_lse;
use crate::{Error, Float, Result};

/// The cumulative class counts `N_k` of a [`SeesawLoss`]: the running state the user owns and
/// updates with each batch's labels.
///
/// The counts are integers, added with overflow checks. They merge by addition, so a
/// data-parallel trainer either counts every worker's labels (the global batch) on each worker, or
/// counts the local batch into a fresh state, all-reduces it ([`merge`](Self::merge), or
/// [`from_counts`](Self::from_counts) on summed arrays) and merges the result into the running
/// state, as mmdet's `SeesawLoss` does with its `cum_samples` buffer.
///
/// # Update order
///
/// The paper and mmdet's `SeesawLoss` count the batch's labels **before** the loss of the same
/// step: `state.update(&labels)`, then build the loss from the state and compute it.
///
/// # Example
///
/// ```
/// use longtail::loss::SeesawState;
///
/// let mut worker_a = SeesawState::new(3)?;
/// let mut worker_b = SeesawState::new(3)?;
/// worker_a.update(&[0, 0, 1])?;
/// worker_b.update(&[2, 0])?;
/// worker_a.merge(&worker_b)?;
/// assert_eq!(worker_a.counts(), &[3, 1, 1]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Wang et al., "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021,
/// arXiv:2008.10032 (§3.1, "the accumulated number of training samples"); mmdet
/// `mmdet/models/losses/seesaw_loss.py` (`cum_samples`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeesawState {
    counts: Vec<u64>,
}

impl SeesawState {
    /// A state over `classes` classes with nothing counted, the identity of [`merge`](Self::merge).
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] if `classes` is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// assert_eq!(SeesawState::new(2)?.counts(), &[0, 0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn new(classes: usize) -> Result<Self> {
        if classes == 0 {
            return Err(Error::NoClasses);
        }
        Ok(Self { counts: vec![0; classes] })
    }

    /// A state from counts `N_k`, e.g. after an all-reduce.
    ///
    /// # Errors
    ///
    /// [`Error::NoClasses`] if `counts` is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// assert_eq!(SeesawState::from_counts(vec![5, 0, 2])?.classes(), 3);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn from_counts(counts: Vec<u64>) -> Result<Self> {
        if counts.is_empty() {
            return Err(Error::NoClasses);
        }
        Ok(Self { counts })
    }

    /// Counts a batch of hard labels.
    ///
    /// # Errors
    ///
    /// [`Error::LabelOutOfRange`] for a label `≥ K`; [`Error::Overflow`] (`"seesaw counts"`, the
    /// class) if a count would overflow `u64`. The state is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    ///
    /// let mut state = SeesawState::new(2)?;
    /// state.update(&[1, 1, 0])?;
    /// assert!(state.update(&[2]).is_err());
    /// assert_eq!(state.counts(), &[1, 2]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SeesawState`].
    pub fn update<'a>(&mut self, labels: impl Into<Labels<'a>>) -> Result<()> {
        let labels = labels.into();
        let labels = labels.view();
        let classes = self.counts.len();
        check_labels(&labels, classes)?;
        let mut batch = vec![0_u64; classes];
        labels.iter().for_each(|&y| batch[y] += 1);
        self.add(&batch)
    }

    /// Adds `other`'s counts: afterwards `self` has counted both streams.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] (`"state"`) for a different number of classes;
    /// [`Error::Overflow`] (`"seesaw counts"`, the class) if a count would overflow `u64`. The
    /// state is then unchanged.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    ///
    /// let mut a = SeesawState::from_counts(vec![1, u64::MAX])?;
    /// assert!(a.merge(&SeesawState::from_counts(vec![0, 1])?).is_err());
    /// a.merge(&SeesawState::from_counts(vec![2, 0])?)?;
    /// assert_eq!(a.counts(), &[3, u64::MAX]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`SeesawState`].
    pub fn merge(&mut self, other: &SeesawState) -> Result<()> {
        check_shape("state", &[self.counts.len()], &[other.counts.len()])?;
        self.add(&other.counts)
    }

    /// The number of classes `K`.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(longtail::loss::SeesawState::new(4)?.classes(), 4);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// The cumulative counts `N_k`.
    ///
    /// # Example
    ///
    /// ```
    /// let mut state = longtail::loss::SeesawState::new(2)?;
    /// state.update(&[1_u32][..])?;
    /// assert_eq!(state.counts(), &[0, 1]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Adds `batch` (length `K`) to the counts, all or nothing.
    fn add(&mut self, batch: &[u64]) -> Result<()> {
        let mut sums = self.counts.clone();
        for (k, (sum, &n)) in sums.iter_mut().zip(batch).enumerate() {
            *sum = sum.checked_add(n).ok_or(Error::Overflow {
                what: "seesaw counts",
                row: None,
                class: Some(k),
                value: Some(*sum as f64),
            })?;
        }
        self.counts = sums;
        Ok(())
    }
}

/// The Seesaw loss (Wang et al. 2021): softmax cross-entropy in which every negative class `j` of
/// a sample of class `y` has its logit raised by `log(M_yj·C_yj)`, with the gradient with respect
/// to the logits (the factors held constant, as in the reference).
///
/// For logits `z` (`[B, K]`), hard labels `y_i`, the cumulative counts `N_k` of a
/// [`SeesawState`] and `σ = softmax(z)`:
///
/// ```text
/// M_yj = (N_j / N_y)^p  if N_j < N_y, else 1      mitigation: fewer pushes on rarer classes (N clamped at ≥ 1)
/// C_yj = (σ_j / max(σ_y, ε))^q  if > 1, else 1     compensation: restores the penalty on a class misclassified as j
/// z'_j = z_j + log(M_yj·C_yj)  for j ≠ y,   z'_y = z_y
/// ℓ_i  = s_i·(lse(z') − z'_y)
/// ```
///
/// exactly as mmdet's `seesaw_ce_loss` (defaults `p = 0.8`, `q = 2`, `ε = 0.01`). `p = 0` turns
/// the mitigation off, `q = 0` the compensation; both off is cross-entropy. `Mean` (the default)
/// divides by `Σ_i s_i` (`B` without weights; 0 if that is 0), `Sum` does not divide; mmdet's
/// weighted mean divides by `B` whatever the weights.
///
/// mmdet's `SeesawLoss` classifier also has an objectness pair of logits (foreground or
/// background, a second cross-entropy) for detection; that is not part of this loss, which is the
/// classification term on the foreground classes (`K` logits, labels `0..K`), as mmpretrain's
/// `SeesawLoss` for classification has it.
///
/// # Gradient
///
/// `∂ℓ_i/∂z_ik = s_i·(softmax(z')_k − [k = y])`. `M` and `C` are constants of the gradient: `C` is
/// computed from the detached probabilities in the reference (`cls_score.detach()`), and `M` from
/// the counts. This is the gradient the reference trains with, not the total derivative of `ℓ`.
///
/// # Numerics
///
/// `log M_yj = p·min(0, log N_j − log N_y)` and `log C_yj = q·max(0, log σ_j − max(log σ_y, log ε))`
/// from the row's log-softmax, so no ratio of small probabilities is formed; `z'_j ≤ z_j + q·log(1/ε)`.
/// `-inf` logits mask classes.
///
/// # Errors
///
/// Builders return [`Error::InvalidParameter`]. Each [`Loss`](crate::Loss) call checks, in this
/// order:
/// - [`Error::EmptyBatch`], [`Error::NoClasses`]: `B = 0` or `K = 0`;
/// - [`Error::ShapeMismatch`]: `counts` (the state the loss was built from) not of length `K`;
/// - [`Error::UnsupportedTargets`]: probability or multi-hot targets;
/// - [`Error::ShapeMismatch`]: `labels` not of length `B`, an output buffer of the wrong shape,
///   `sample_weights` not of length `B`;
/// - [`Error::InvalidSampleWeight`], then [`Error::LabelOutOfRange`];
/// - the first offending logit in row-major order: [`Error::NonFiniteLogit`] for NaN or `+inf`,
///   or a finite logit whose `z'` may overflow; [`Error::MaskedTarget`] for a `-inf` label logit
///   in a row that counts.
///
/// # Example: a training step
///
/// ```
/// use longtail::loss::SeesawState;
/// use longtail::{Loss, SeesawLoss};
/// use ndarray::{array, Array2};
///
/// let mut state = SeesawState::new(3)?;
/// let mut logits = array![[2.0_f64, 0.5, -1.0], [0.1, 0.2, 3.0], [1.0, 0.0, 0.0]];
/// let labels = [0, 2, 0];
/// let mut grad = Array2::zeros(logits.raw_dim());
/// for _ in 0..3 {
///     state.update(&labels)?; // count the batch first, as the paper and mmdet do
///     let loss = SeesawLoss::new(&state); // p = 0.8, q = 2, ε = 0.01
///     let value = loss.loss_and_grad_into(&logits, &labels, &mut grad)?;
///     assert!(value > 0.0);
///     logits.zip_mut_with(&grad, |z, &g| *z -= 0.5 * g);
/// }
/// assert_eq!(state.counts(), &[6, 0, 3]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// - J. Wang, W. Zhang, Y. Zang, Y. Cao, J. Pang, T. Gong, K. Chen, Z. Liu, C. C. Loy, D. Lin,
///   "Seesaw Loss for Long-Tailed Instance Segmentation", CVPR 2021, arXiv:2008.10032.
/// - Reference implementation: mmdet `mmdet/models/losses/seesaw_loss.py` (`seesaw_ce_loss`,
///   `SeesawLoss`); mmpretrain `mmpretrain/models/losses/seesaw_loss.py` (the same, without the
///   objectness branch).
#[derive(Debug, Clone, PartialEq)]
pub struct SeesawLoss<F> {
    /// `log max(N_k, 1)`.
    log_counts: Vec<F>,
    p: F,
    q: F,
    eps: F,
    log_eps: F,
    pub(super) reduction: Reduction,
}

impl<F: Float> SeesawLoss<F> {
    /// The Seesaw loss with mmdet's defaults (`p = 0.8`, `q = 2`, `ε = 0.01`) from the counts of
    /// `state`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let loss = SeesawLoss::<f32>::new(&SeesawState::from_counts(vec![100, 10])?);
    /// assert_eq!((loss.p(), loss.q(), loss.eps()), (0.8, 2.0, 0.01));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Wang et al., CVPR 2021, arXiv:2008.10032; mmdet `SeesawLoss` (`p=0.8, q=2.0, eps=1e-2`).
    pub fn new(state: &SeesawState) -> Self {
        let mut loss = Self {
            log_counts: Vec::new(),
            p: F::from_f64(0.8),
            q: F::from_f64(2.0),
            eps: F::from_f64(1e-2),
            log_eps: F::from_f64(1e-2_f64.ln()),
            reduction: Reduction::Mean,
        };
        loss.set_state(state);
        loss
    }

    /// Takes the counts of `state` (e.g. after this step's [`SeesawState::update`]), keeping the
    /// parameters.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let mut state = SeesawState::new(2)?;
    /// let mut loss = SeesawLoss::<f64>::new(&state).with_p(1.0)?;
    /// state.update(&[0, 0, 0, 0, 1])?;
    /// loss.set_state(&state);
    /// assert_eq!(loss.mitigation(0, 1), Some(0.25));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn set_state(&mut self, state: &SeesawState) {
        self.log_counts = state.counts().iter().map(|&n| F::from_f64((n.max(1) as f64).ln())).collect();
    }

    /// Sets the mitigation exponent `p ≥ 0` (0.8 by default); 0 turns the mitigation off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"p"`) for a negative or non-finite `p`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let state = SeesawState::from_counts(vec![4, 1])?;
    /// assert_eq!(SeesawLoss::<f64>::new(&state).with_p(0.5)?.mitigation(0, 1), Some(0.5));
    /// assert!(SeesawLoss::<f64>::new(&state).with_p(-1.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Wang et al., CVPR 2021, arXiv:2008.10032 (§3.1, the mitigation factor).
    pub fn with_p(mut self, p: F) -> Result<Self> {
        self.p = non_negative("p", p)?;
        Ok(self)
    }

    /// Sets the compensation exponent `q ≥ 0` (2 by default); 0 turns the compensation off.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"q"`) for a negative or non-finite `q`, or one so large that
    /// `q·log(1/ε)` overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let loss = SeesawLoss::<f32>::new(&SeesawState::new(2)?).with_q(0.0)?;
    /// assert_eq!(loss.q(), 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// J. Wang et al., CVPR 2021, arXiv:2008.10032 (§3.1, the compensation factor).
    pub fn with_q(mut self, q: F) -> Result<Self> {
        let q = non_negative("q", q)?;
        if !(q * self.log_eps).is_finite() {
            return Err(invalid("q", q, "small enough that q·log(1/eps) is finite"));
        }
        self.q = q;
        Ok(self)
    }

    /// Sets the floor `ε ∈ (0, 1]` of the label's probability in the compensation ratio (0.01 by
    /// default).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidParameter`] (`"eps"`) for `ε` outside `(0, 1]`, or one so small that
    /// `q·log(1/ε)` overflows.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let state = SeesawState::new(2)?;
    /// assert_eq!(SeesawLoss::<f64>::new(&state).with_eps(1e-3)?.eps(), 1e-3);
    /// assert!(SeesawLoss::<f64>::new(&state).with_eps(0.0).is_err());
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// mmdet `seesaw_ce_loss` (`self_scores.clamp(min=eps)`).
    pub fn with_eps(mut self, eps: F) -> Result<Self> {
        if !(eps > F::zero() && eps <= F::one()) {
            return Err(invalid("eps", eps, "in (0, 1]"));
        }
        let log_eps = eps.ln();
        if !(self.q * log_eps).is_finite() {
            return Err(invalid("eps", eps, "large enough that q·log(1/eps) is finite"));
        }
        (self.eps, self.log_eps) = (eps, log_eps);
        Ok(self)
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::{Loss, Reduction, SeesawLoss};
    /// let loss = SeesawLoss::<f64>::new(&SeesawState::new(2)?).with_reduction(Reduction::Sum);
    /// assert_eq!(loss.reduction(), Reduction::Sum);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The mitigation exponent `p`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// assert_eq!(longtail::SeesawLoss::<f64>::new(&SeesawState::new(2)?).p(), 0.8);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn p(&self) -> F {
        self.p
    }

    /// The compensation exponent `q`.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// assert_eq!(longtail::SeesawLoss::<f64>::new(&SeesawState::new(2)?).q(), 2.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn q(&self) -> F {
        self.q
    }

    /// The floor `ε` of the label's probability.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// assert_eq!(longtail::SeesawLoss::<f32>::new(&SeesawState::new(2)?).eps(), 0.01);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn eps(&self) -> F {
        self.eps
    }

    /// The mitigation factor `M_yj = min(1, N_j/N_y)^p` of a sample of class `y` on class `j`
    /// (counts clamped at ≥ 1); `None` unless both are class indices.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::loss::SeesawState;
    /// use longtail::SeesawLoss;
    ///
    /// let loss = SeesawLoss::<f64>::new(&SeesawState::from_counts(vec![100, 1])?).with_p(1.0)?;
    /// assert!((loss.mitigation(0, 1).unwrap() - 0.01).abs() < 1e-15); // the head class barely pushes the tail one
    /// assert_eq!(loss.mitigation(1, 0), Some(1.0));
    /// assert_eq!(loss.mitigation(2, 0), None);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    pub fn mitigation(&self, y: usize, j: usize) -> Option<F> {
        let classes = self.log_counts.len();
        (y < classes && j < classes).then(|| self.log_mitigation(y, j).exp())
    }

    /// `log M_yj = p·min(0, log N_j − log N_y)`.
    #[inline(always)]
    fn log_mitigation(&self, y: usize, j: usize) -> F {
        self.p * (self.log_counts[j] - self.log_counts[y]).min(F::zero())
    }
}

impl<F: Float> MarginRow<F> for SeesawLoss<F> {
    fn check<'t, 'w>(
        &'w self,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        outputs: &[OutputShape<'_>],
    ) -> Result<LabelledBatch<'t, 'w, F>> {
        let params = [("counts", &[self.log_counts.len()][..])];
        LabelledBatch::new("SeesawLoss", logits, targets, None, &params, outputs)
    }

    #[inline(always)]
    fn check_chunk(
        &self,
        batch: &LabelledBatch<'_, '_, F>,
        logits: &ArrayRef2<F>,
        first: usize,
    ) -> Result<()> {
        // z'_j ≤ z_j + q·log(1/ε): log M ≤ 0 and log σ_j ≤ 0.
        let max_shift = -self.q * self.log_eps;
        let fits = |max_abs: F| (max_abs + max_shift).is_finite();
        batch.check_logits(logits, first, "logit + compensation", fits, |_, _, z| z + max_shift)
    }

    /// `z'` into `scratch` from the row's log-softmax (its exponentials in `grad`, overwritten
    /// next), then CE on `z'`, whose gradient with respect to `z'` is the one with respect to `z`.
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
        let Some(lse) = row_lse::<F, FMA>(grad, ExpArgs::Logits(z)).filter(|_| c > F::zero()) else {
            grad.fill(F::zero());
            return F::zero();
        };
        let log_norm = lse.max + lse.ln_total;
        let own = (z[y] - log_norm).max(self.log_eps);
        let (zero, log_own_count) = (F::zero(), self.log_counts[y]);
        // Branch-free over the classes, so that it vectorises.
        for ((out, &zj), &log_count) in scratch.iter_mut().zip(z).zip(&self.log_counts) {
            let mitigation = self.p * (log_count - log_own_count).min(zero);
            let compensation = self.q * ((zj - log_norm) - own).max(zero);
            *out = zj + mitigation + compensation;
        }
        scratch[y] = z[y];
        let lse = shifted_exp::<F, FMA>(scratch, None, grad);
        one_hot_row::<F, FMA>(lse, scratch, None, y, c, zero, scale, grad)
    }

    /// `z + log M_yk`, without the compensation, which depends on the whole row: only
    /// [`exact_loss`](Self::exact_loss), overridden, would need it.
    fn logit(&self, z: F, y: usize, k: usize) -> F {
        if k == y { z } else { z + self.log_mitigation(y, k) }
    }

    /// [`row`](Self::row) in `f64`, for a row whose value in `F` is not finite: the log-softmax
    /// and the loss from halved differences (see [`exact_ce`]).
    #[cold]
    #[inline(never)]
    fn exact_loss(&self, z: &[F], y: usize, c: F) -> f64 {
        let z: Vec<f64> = z.iter().map(|v| v.as_f64()).collect();
        let log_p = |k: usize| -> f64 { -2.0 * exact_ce(&z, k).0 };
        let own = log_p(y).max(self.log_eps.as_f64());
        let (p, q) = (self.p.as_f64(), self.q.as_f64());
        let log_counts = |k: usize| self.log_counts[k].as_f64();
        let shifted: Vec<f64> = (0..z.len())
            .map(|k| {
                let mitigation = p * (log_counts(k) - log_counts(y)).min(0.0);
                if k == y { z[k] } else { z[k] + mitigation + q * (log_p(k) - own).max(0.0) }
            })
            .collect();
        2.0 * (c.as_f64() * exact_ce(&shifted, y).0)
    }
}

fn non_negative<F: Float>(name: &'static str, value: F) -> Result<F> {
    if value.is_finite() && value >= F::zero() {
        Ok(value)
    } else {
        Err(invalid(name, value, "finite and >= 0"))
    }
}

fn invalid<F: Float>(name: &'static str, value: F, expected: &'static str) -> Error {
    Error::InvalidParameter { name, index: None, value: value.as_f64(), expected }
}
