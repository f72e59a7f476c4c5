//! Post-hoc decisions from trained logits: logit adjustment for the balanced error, prior shift by
//! Bayes' rule, `τ` tuning on validation data, and threshold moving for a binary score.
//!
//! Every multi-class call adds a per-class offset `o` to the logits and takes the argmax:
//!
//! | call | offset `o_k` | for |
//! |---|---|---|
//! | [`predict`] | `0` | accuracy (the training prior) |
//! | [`predict_adjusted`] | `−τ·log π_k` | balanced error (`τ = 1`), Menon et al. 2020 |
//! | [`predict_prior_shifted`] | `log π'_k − log π_k` | a known or estimated target prior `π'` |
//!
//! Argmax ties go to the **lowest class index** (as `numpy.argmax`). `-inf` logits are legal masks
//! (a row that is all `-inf` has no prediction: an error); NaN and `+inf` logits are errors, and
//! a finite logit that the offset pushes out of range is an [`Error::Overflow`].

use ndarray::{Array2, ArrayRef1, ArrayRef2, ArrayView1};

use crate::Labels;
use crate::error::check_shape;
use crate::metrics::ConfusionMatrix;
use crate::rows::for_each_row;
use crate::softmax::check_logits;
use crate::{Error, Float, Prior, Result};

/// Adjusted logits `z_ik − τ·log π_k`, whose argmax is [`predict_adjusted`].
///
/// # Errors
///
/// See [`adjusted_logits_into`].
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::adjusted_logits;
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[900.0, 100.0])?;
/// let adjusted = adjusted_logits(&array![[1.0_f64, 0.0]], &prior, 1.0)?;
/// assert!((adjusted[[0, 0]] - (1.0 - 0.9f64.ln())).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
pub fn adjusted_logits<F: Float>(logits: &ArrayRef2<F>, prior: &Prior, tau: F) -> Result<Array2<F>> {
    let mut out = Array2::zeros(logits.raw_dim());
    adjusted_logits_into(logits, prior, tau, &mut out)?;
    Ok(out)
}

/// [`adjusted_logits`] into a caller's `[B, K]` buffer, overwriting it.
///
/// # Errors
///
/// In this order: [`Error::EmptyBatch`], [`Error::NoClasses`];
/// [`Error::ShapeMismatch`] (`"prior"`, then `"out"`); [`Error::InvalidParameter`]
/// (`"tau"` not finite or overflowing, `"prior"` with a zero count while `τ ≠ 0`);
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::Overflow`]
/// (`"logit + adjustment"`) for a finite one that the adjustment pushes out of range.
/// On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::adjusted_logits_into;
/// use ndarray::{array, Array2};
///
/// let prior = Prior::from_counts(&[1.0, 1.0])?;
/// let mut out = Array2::zeros((1, 2));
/// adjusted_logits_into(&array![[2.0_f32, f32::NEG_INFINITY]], &prior, 1.0, &mut out)?;
/// assert_eq!(out[[0, 1]], f32::NEG_INFINITY); // a mask stays a mask
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314.
pub fn adjusted_logits_into<F: Float>(
    logits: &ArrayRef2<F>,
    prior: &Prior,
    tau: F,
    out: &mut ArrayRef2<F>,
) -> Result<()> {
    check_batch(logits, &[("prior", prior)])?;
    check_shape("out", logits.shape(), out.shape())?;
    let offset = adjustment(prior, tau)?;
    offset_into(logits, &offset, out)
}

/// The plain argmax of each row: the prediction for accuracy under the training prior.
///
/// # Errors
///
/// See [`predict_into`].
///
/// # Example
///
/// ```
/// use longtail::adjust::predict;
/// use ndarray::array;
///
/// let logits = array![[0.1_f64, 2.0, 2.0], [f64::NEG_INFINITY, -1.0, -3.0]];
/// assert_eq!(predict(&logits)?, vec![1, 1]); // a tie goes to the lowest index
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// NumPy `numpy.argmax` (ties to the first index).
pub fn predict<F: Float>(logits: &ArrayRef2<F>) -> Result<Vec<usize>> {
    let mut out = vec![0; logits.nrows()];
    predict_into(logits, &mut out)?;
    Ok(out)
}

/// [`predict`] into a caller's buffer of length `B`, overwriting it.
///
/// # Errors
///
/// [`Error::EmptyBatch`], [`Error::NoClasses`], [`Error::ShapeMismatch`] (`"out"`),
/// [`Error::NonFiniteLogit`] for a NaN or `+inf` logit, [`Error::FullyMasked`] for a row
/// whose every logit is `-inf`. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::adjust::predict_into;
/// use ndarray::array;
///
/// let mut out = [9; 2];
/// predict_into(&array![[1.0_f32, 3.0], [0.0, -1.0]], &mut out)?;
/// assert_eq!(out, [1, 0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// NumPy `numpy.argmax`.
pub fn predict_into<F: Float>(logits: &ArrayRef2<F>, out: &mut [usize]) -> Result<()> {
    check_batch(logits, &[])?;
    argmax_into(logits, &vec![F::zero(); logits.ncols()], out)
}

/// Post-hoc logit adjustment: `argmax_k z_ik − τ·log π_k`. With `τ = 1` and the training prior
/// this is the Bayes-optimal decision for the balanced error (Menon et al. 2020).
///
/// # Errors
///
/// See [`predict_adjusted_into`].
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::{predict, predict_adjusted};
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[990.0, 10.0])?;
/// let logits = array![[2.0_f64, 0.0]]; // class 0 wins by 2 nats; its prior by log 99 ≈ 4.6
/// assert_eq!(predict(&logits)?, vec![0]);
/// assert_eq!(predict_adjusted(&logits, &prior, 1.0)?, vec![1]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
pub fn predict_adjusted<F: Float>(logits: &ArrayRef2<F>, prior: &Prior, tau: F) -> Result<Vec<usize>> {
    let mut out = vec![0; logits.nrows()];
    predict_adjusted_into(logits, prior, tau, &mut out)?;
    Ok(out)
}

/// [`predict_adjusted`] into a caller's buffer of length `B`, overwriting it.
///
/// # Errors
///
/// The errors of [`adjusted_logits_into`] (with `out` of length `B`), and
/// [`Error::FullyMasked`] for a row whose every logit is `-inf`. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::predict_adjusted_into;
/// use ndarray::array;
///
/// let mut out = [0; 1];
/// let prior = Prior::from_counts(&[3.0, 1.0])?;
/// predict_adjusted_into(&array![[0.5_f32, 0.0]], &prior, 1.0, &mut out)?;
/// assert_eq!(out, [1]); // 0.5 − log 0.75 < 0 − log 0.25
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314.
pub fn predict_adjusted_into<F: Float>(
    logits: &ArrayRef2<F>,
    prior: &Prior,
    tau: F,
    out: &mut [usize],
) -> Result<()> {
    check_batch(logits, &[("prior", prior)])?;
    check_shape("out", &[logits.nrows()], &[out.len()])?;
    argmax_into(logits, &adjustment(prior, tau)?, out)
}

/// Prior shift by Bayes' rule: logits of a model trained under `π` (`train`) turned into logits
/// for a target prior `π'` (`target`): `z_ik − log π_k + log π'_k`. Their softmax is the
/// posterior under `π'` when the model's softmax is calibrated under `π`.
///
/// # Errors
///
/// See [`prior_shifted_logits_into`].
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::prior_shifted_logits;
/// use ndarray::array;
///
/// let train = Prior::from_counts(&[0.8, 0.2])?;
/// let target = Prior::from_counts(&[0.5, 0.5])?;
/// let shifted = prior_shifted_logits(&array![[0.0_f64, 0.0]], &train, &target)?;
/// assert!((shifted[[0, 1]] - shifted[[0, 0]] - 4f64.ln()).abs() < 1e-15);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// M. Saerens, P. Latinne, C. Decaestecker, "Adjusting the Outputs of a Classifier to New a Priori
/// Probabilities: A Simple Procedure", Neural Computation 14(1), 2002.
pub fn prior_shifted_logits<F: Float>(
    logits: &ArrayRef2<F>,
    train: &Prior,
    target: &Prior,
) -> Result<Array2<F>> {
    let mut out = Array2::zeros(logits.raw_dim());
    prior_shifted_logits_into(logits, train, target, &mut out)?;
    Ok(out)
}

/// [`prior_shifted_logits`] into a caller's `[B, K]` buffer, overwriting it.
///
/// # Errors
///
/// In this order: [`Error::EmptyBatch`], [`Error::NoClasses`];
/// [`Error::ShapeMismatch`] (`"train_prior"`, `"target_prior"`, then `"out"`);
/// [`Error::InvalidParameter`] (`"train_prior"` or `"target_prior"`, with the class) for a
/// zero count; [`Error::NonFiniteLogit`] for a NaN or `+inf` logit; [`Error::Overflow`]
/// (`"logit + adjustment"`) for a finite one that the shift pushes out of range. On error `out` is
/// untouched.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::prior_shifted_logits_into;
/// use ndarray::{array, Array2};
///
/// let prior = Prior::from_counts(&[2.0, 1.0])?;
/// let mut out = Array2::zeros((1, 2));
/// prior_shifted_logits_into(&array![[0.3_f64, 0.1]], &prior, &prior, &mut out)?;
/// assert_eq!(out, array![[0.3, 0.1]]); // no shift
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Saerens et al. 2002.
pub fn prior_shifted_logits_into<F: Float>(
    logits: &ArrayRef2<F>,
    train: &Prior,
    target: &Prior,
    out: &mut ArrayRef2<F>,
) -> Result<()> {
    check_shifted(logits, train, target)?;
    check_shape("out", logits.shape(), out.shape())?;
    offset_into(logits, &shift(train, target)?, out)
}

/// The argmax of [`prior_shifted_logits`]: the Bayes decision under the target prior.
///
/// # Errors
///
/// See [`predict_prior_shifted_into`].
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::predict_prior_shifted;
/// use ndarray::array;
///
/// let train = Prior::from_counts(&[0.5, 0.5])?;
/// let target = Prior::from_counts(&[0.95, 0.05])?;
/// assert_eq!(predict_prior_shifted(&array![[0.0_f64, 1.0]], &train, &target)?, vec![0]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Saerens et al. 2002.
pub fn predict_prior_shifted<F: Float>(
    logits: &ArrayRef2<F>,
    train: &Prior,
    target: &Prior,
) -> Result<Vec<usize>> {
    let mut out = vec![0; logits.nrows()];
    predict_prior_shifted_into(logits, train, target, &mut out)?;
    Ok(out)
}

/// [`predict_prior_shifted`] into a caller's buffer of length `B`, overwriting it.
///
/// # Errors
///
/// The errors of [`prior_shifted_logits_into`] (with `out` of length `B`), and
/// [`Error::FullyMasked`] for a row whose every logit is `-inf`. On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::predict_prior_shifted_into;
/// use ndarray::array;
///
/// let (train, target) = (Prior::from_counts(&[1.0, 1.0])?, Prior::from_counts(&[1.0, 9.0])?);
/// let mut out = [0; 1];
/// predict_prior_shifted_into(&array![[1.0_f32, 0.0]], &train, &target, &mut out)?;
/// assert_eq!(out, [1]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Saerens et al. 2002.
pub fn predict_prior_shifted_into<F: Float>(
    logits: &ArrayRef2<F>,
    train: &Prior,
    target: &Prior,
    out: &mut [usize],
) -> Result<()> {
    check_shifted(logits, train, target)?;
    check_shape("out", &[logits.nrows()], &[out.len()])?;
    argmax_into(logits, &shift(train, target)?, out)
}

/// The `τ` grid [`tune_tau`] is usually given: `0, 0.1, 0.2, …, 3.0` (31 values, `1.0` among them).
///
/// `τ = 0` is no adjustment, `τ = 1` the Bayes-consistent one for the balanced error, and values
/// above 1 correct more strongly, as an overconfident model's logits need. Beyond 3 the rare
/// classes win almost every row.
///
/// # Example
///
/// ```
/// use longtail::adjust::default_tau_grid;
///
/// let grid = default_tau_grid::<f32>();
/// assert_eq!((grid.len(), grid[0], grid[10], grid[30]), (31, 0.0, 1.0, 3.0));
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314 (their Figure 2 sweeps `τ` over a similar range).
pub fn default_tau_grid<F: Float>() -> Vec<F> {
    (0..=30).map(|i| F::from_f64(f64::from(i) / 10.0)).collect()
}

/// What [`tune_tau_for`] scores each `τ` of the grid by.
///
/// # Example
///
/// ```
/// use longtail::adjust::TauCriterion;
///
/// assert_eq!(TauCriterion::default(), TauCriterion::BalancedLogLoss);
/// assert!(TauCriterion::BalancedLogLoss.lower_is_better());
/// assert!(!TauCriterion::BalancedAccuracy.lower_is_better());
/// ```
///
/// # References
///
/// T. Gneiting, A. E. Raftery, "Strictly Proper Scoring Rules, Prediction, and Estimation",
/// JASA 102(477), 2007 (the log-loss as a proper scoring rule); Menon et al. 2020.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TauCriterion {
    /// The balanced log-loss of the prior-corrected softmax ([`balanced_log_loss`]), minimised: a
    /// smooth, convex function of `τ`, so that a small validation set still ranks nearby `τ`.
    #[default]
    BalancedLogLoss,
    /// The balanced accuracy of [`predict_adjusted`], maximised: the target metric itself, but a
    /// step function of `τ` on a finite validation set (it moves in steps of `1/(n_k·K)`).
    BalancedAccuracy,
}

impl TauCriterion {
    /// Whether a lower score is better (a loss) rather than a higher one (a metric).
    pub fn lower_is_better(self) -> bool {
        matches!(self, Self::BalancedLogLoss)
    }
}

/// The result of a `τ` search ([`tune_tau`], [`tune_tau_for`], [`tune_tau_by`]): the best `τ`,
/// its score, and the score of every `τ` of the grid.
///
/// Of several `τ` with the best score (equal within a relative `10⁻⁹`, which absorbs rounding),
/// the one closest to `1` (the Bayes-consistent value) wins, then the first in the grid.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::{tune_tau_for, TauCriterion};
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[1.0, 1.0])?; // every τ predicts the same
/// let search = tune_tau_for(&array![[1.0_f32, 0.0]], &[0], &prior, &[0.0, 1.0, 2.0], TauCriterion::BalancedAccuracy)?;
/// assert_eq!((search.tau, search.score), (1.0, 1.0)); // a tie: τ = 1 wins
/// assert_eq!(search.curve, vec![(0.0, 1.0), (1.0, 1.0), (2.0, 1.0)]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314.
#[derive(Debug, Clone, PartialEq)]
pub struct TauSearch<F> {
    /// The `τ` with the best score (ties: the closest to 1, then the first in the grid).
    pub tau: F,
    /// Its score: the lowest loss or the highest metric of the grid, up to a tie.
    pub score: f64,
    /// `(τ, score)` for every `τ` of the grid, in the grid's order.
    pub curve: Vec<(F, f64)>,
}

impl<F: Float> TauSearch<F> {
    /// Picks the best point of a scored grid: of the scores within [`TIE`] (relative) of the best,
    /// the one whose `τ` is closest to 1, then the first in the grid.
    fn best_of(curve: Vec<(F, f64)>, lower_is_better: bool) -> Result<Self> {
        let scores = curve.iter().map(|p| p.1);
        let best = if lower_is_better {
            scores.fold(f64::INFINITY, f64::min)
        } else {
            scores.fold(f64::NEG_INFINITY, f64::max)
        };
        let tied = |score: f64| (score - best).abs() <= TIE * best.abs();
        let distance = |tau: F| (tau.as_f64() - 1.0).abs();
        let mut chosen: Option<(F, f64)> = None;
        for &(tau, score) in curve.iter().filter(|p| tied(p.1)) {
            if chosen.is_none_or(|(t, _)| distance(tau) < distance(t)) {
                chosen = Some((tau, score));
            }
        }
        let (tau, score) = chosen.ok_or_else(empty_grid)?;
        Ok(Self { tau, score, curve })
    }
}

/// Scores this close to the best, relative to it, are tied: the log-loss of `τ` that give the same
/// posterior (any `τ` under a uniform prior) differs only by rounding.
const TIE: f64 = 1e-9;

/// The balanced log-loss of the prior-corrected softmax, `p_τ = softmax(z − τ·log π)`: the mean
/// over the classes present in `labels` of each class's mean `−log p_τ(y_i | x_i)`,
///
/// `L(τ) = (1/|C|) Σ_{k ∈ C} (1/n_k) Σ_{i: y_i = k} [lse(z_i − τ·log π) − z_{i,y_i} + τ·log π_{y_i}]`.
///
/// If the model's softmax is the posterior under the training prior `π`, then `p_1` is the
/// posterior under the uniform prior, which minimises this proper scoring rule on a balanced
/// population; so the `τ` minimising `L` estimates how far the model is from calibrated. `L` is
/// convex in `τ` (a log-sum-exp of functions affine in `τ`). Averaging per class makes the
/// criterion balanced whatever the validation set's class frequencies. Computed in `f64`.
///
/// # Errors
///
/// The errors of [`tune_tau_for`] for the grid `[τ]` (a non-finite `τ` is `"taus"`, index 0).
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::balanced_log_loss;
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[1.0, 1.0])?;
/// let loss = balanced_log_loss(&array![[0.0_f64, 0.0]], &[1], &prior, 1.0)?;
/// assert!((loss - 2f64.ln()).abs() < 1e-15); // a uniform guess over two classes
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314 (`softmax(z − log π)` as the balanced posterior);
/// Gneiting & Raftery 2007 (proper scoring rules).
pub fn balanced_log_loss<'a, F: Float>(
    logits: &ArrayRef2<F>,
    labels: impl Into<Labels<'a>>,
    prior: &Prior,
    tau: F,
) -> Result<f64> {
    let labels = labels.into();
    let labels = labels.view();
    let offsets = check_validation(logits, labels, prior, std::slice::from_ref(&tau))?;
    Ok(log_losses(logits, labels, &offsets)?[0])
}

/// Searches a grid of `τ` for the post-hoc adjustment ([`predict_adjusted`]) on validation logits
/// and labels by the balanced log-loss of the prior-corrected softmax ([`balanced_log_loss`]),
/// and returns the best `τ` with the whole curve ([`TauSearch`]). The same as [`tune_tau_for`]
/// with [`TauCriterion::BalancedLogLoss`]; [`default_tau_grid`] is a good grid.
///
/// **Which prior.** Pass the training set's class prior, the one the model's softmax was fitted
/// to (the same `Prior` a logit-adjusted loss would be built from). For a model trained with
/// logit adjustment already, the logits target the balanced error: search a grid around 0.
///
/// **How much validation data.** The tuned `τ` is an estimate, and its spread grows as the
/// validation set shrinks, above all in the rare classes: with about 20 samples a class it can
/// land further from the best `τ` than `τ = 1` does. `τ = 1` is the Bayes-consistent choice for
/// a calibrated model and needs no data; tune when the validation set is large enough for the
/// curve to have a clear minimum, and read [`TauSearch::curve`] to see how flat it is.
///
/// # Errors
///
/// See [`tune_tau_for`].
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::{default_tau_grid, tune_tau};
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[90.0, 10.0])?;
/// let logits = array![[3.0_f64, 0.0], [2.5, 0.0], [1.5, 0.0], [0.5, 0.0]];
/// let search = tune_tau(&logits, &[0, 0, 1, 1], &prior, &default_tau_grid())?;
/// assert_eq!(search.curve.len(), 31);
/// assert!(search.tau > 0.5 && search.tau < 2.0, "{}", search.tau);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314
/// (`τ` tuned on a holdout set).
pub fn tune_tau<'a, F: Float>(
    logits: &ArrayRef2<F>,
    labels: impl Into<Labels<'a>>,
    prior: &Prior,
    taus: &[F],
) -> Result<TauSearch<F>> {
    tune_tau_for(logits, labels, prior, taus, TauCriterion::BalancedLogLoss)
}

/// [`tune_tau`] by a chosen [`TauCriterion`]: the lowest balanced log-loss or the highest
/// balanced accuracy on the validation logits and labels.
///
/// # Errors
///
/// In this order: [`Error::EmptyBatch`], [`Error::NoClasses`];
/// [`Error::ShapeMismatch`] (`"prior"`, `"labels"`); [`Error::InvalidParameter`]
/// `"taus"` for an empty grid (value 0) or a non-finite entry (with its index), `"prior"` for a
/// zero count while some `τ ≠ 0`, `"tau"` for a `τ` whose `τ·log π` overflows `F`;
/// [`Error::LabelOutOfRange`]; [`Error::NonFiniteLogit`] for a NaN or `+inf` logit;
/// [`Error::FullyMasked`] for a row whose every logit is `-inf`; for the log-loss,
/// [`Error::MaskedTarget`] if a row's label has logit `-inf` (its loss would be infinite);
/// then, `τ` by `τ`, [`Error::Overflow`] (`"logit + adjustment"`) for a finite logit that
/// overflows once adjusted, and for the log-loss [`Error::Overflow`] (`"balanced log-loss"`) for
/// a loss beyond `f64` (the per-class sums are `f64`: one whose mean would fit may overflow).
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::{tune_tau_for, TauCriterion};
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[90.0, 10.0])?;
/// let logits = array![[3.0_f32, 0.0], [2.5, 0.0], [1.5, 0.0], [0.5, 0.0]];
/// let best = tune_tau_for(&logits, &[0, 0, 1, 1], &prior, &[0.0, 1.0, 2.0], TauCriterion::BalancedAccuracy)?;
/// assert_eq!((best.tau, best.score), (1.0, 1.0));
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314.
pub fn tune_tau_for<'a, F: Float>(
    logits: &ArrayRef2<F>,
    labels: impl Into<Labels<'a>>,
    prior: &Prior,
    taus: &[F],
    criterion: TauCriterion,
) -> Result<TauSearch<F>> {
    match criterion {
        TauCriterion::BalancedAccuracy => {
            tune_tau_by(logits, labels, prior, taus, ConfusionMatrix::balanced_accuracy)
        }
        TauCriterion::BalancedLogLoss => {
            let labels = labels.into();
            let labels = labels.view();
            let offsets = check_validation(logits, labels, prior, taus)?;
            let losses = log_losses(logits, labels, &offsets)?;
            TauSearch::best_of(taus.iter().copied().zip(losses).collect(), true)
        }
    }
}

/// [`tune_tau`] maximising a metric the caller picks, read off the validation
/// [`ConfusionMatrix`] of each `τ` (e.g. `ConfusionMatrix::macro_f1`, or a closure). Ties go to
/// the `τ` closest to 1, then the first in the grid.
///
/// # Errors
///
/// The errors of [`tune_tau_for`] except [`Error::MaskedTarget`], and
/// [`Error::InvalidParameter`] (`"score"`, with the grid index) if the metric returns NaN.
///
/// # Example
///
/// ```
/// use longtail::Prior;
/// use longtail::adjust::tune_tau_by;
/// use longtail::metrics::ConfusionMatrix;
/// use ndarray::array;
///
/// let prior = Prior::from_counts(&[90.0, 10.0])?;
/// let logits = array![[3.0_f32, 0.0], [2.5, 0.0], [1.5, 0.0], [0.5, 0.0]];
/// let best = tune_tau_by(&logits, &[0, 0, 1, 1], &prior, &[0.0, 1.0], ConfusionMatrix::worst_class_recall)?;
/// assert_eq!(best.tau, 1.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Menon et al. 2020, arXiv:2007.07314.
pub fn tune_tau_by<'a, F: Float>(
    logits: &ArrayRef2<F>,
    labels: impl Into<Labels<'a>>,
    prior: &Prior,
    taus: &[F],
    score: impl Fn(&ConfusionMatrix) -> f64,
) -> Result<TauSearch<F>> {
    let labels = labels.into();
    let labels = labels.view();
    let offsets = check_validation(logits, labels, prior, taus)?;
    let classes = logits.ncols();
    let mut predictions = vec![0; logits.nrows()];
    let mut curve = Vec::with_capacity(taus.len());
    for (i, (&tau, offset)) in taus.iter().zip(&offsets).enumerate() {
        argmax_into(logits, offset, &mut predictions)?;
        let value = score(&ConfusionMatrix::new(labels, predictions.as_slice(), classes)?);
        if value.is_nan() {
            return Err(Error::InvalidParameter {
                name: "score",
                index: Some(i),
                value,
                expected: "not NaN",
            });
        }
        curve.push((tau, value));
    }
    TauSearch::best_of(curve, false)
}

/// The checks every `τ` search starts with, in the documented order; returns each `τ`'s offset
/// `−τ·log π` in `F`.
fn check_validation<F: Float>(
    logits: &ArrayRef2<F>,
    labels: ArrayView1<'_, usize>,
    prior: &Prior,
    taus: &[F],
) -> Result<Vec<Vec<F>>> {
    check_batch(logits, &[("prior", prior)])?;
    check_shape("labels", &[logits.nrows()], labels.shape())?;
    if taus.is_empty() {
        return Err(empty_grid());
    }
    if let Some(i) = taus.iter().position(|t| !t.is_finite()) {
        return Err(Error::InvalidParameter {
            name: "taus",
            index: Some(i),
            value: taus[i].as_f64(),
            expected: "finite",
        });
    }
    if taus.iter().any(|&t| t != F::zero()) {
        prior.require_positive("prior")?;
    }
    let offsets = taus.iter().map(|&tau| adjustment(prior, tau)).collect::<Result<Vec<_>>>()?;
    let classes = logits.ncols();
    if let Some(row) = labels.iter().position(|&y| y >= classes) {
        return Err(Error::LabelOutOfRange { row, label: labels[row], classes });
    }
    check_logits(logits, None, |_, _| false)?;
    if let Some(row) = logits.rows().into_iter().position(|z| z.iter().all(|&v| v == F::neg_infinity())) {
        return Err(Error::FullyMasked { row });
    }
    Ok(offsets)
}

/// How many validation rows each class has, and how many classes have any.
struct ClassCounts {
    counts: Vec<usize>,
    present: usize,
}

impl ClassCounts {
    fn new(labels: ArrayView1<'_, usize>, classes: usize) -> Self {
        let mut counts = vec![0; classes];
        labels.iter().for_each(|&y| counts[y] += 1);
        let present = counts.iter().filter(|&&n| n > 0).count();
        Self { counts, present }
    }
}

/// The balanced log-loss of each offset, after [`check_validation`]: first a masked label is an
/// error, then each offset's overflow, then the losses (summed in `f64`).
fn log_losses<F: Float>(
    logits: &ArrayRef2<F>,
    labels: ArrayView1<'_, usize>,
    offsets: &[Vec<F>],
) -> Result<Vec<f64>> {
    if let Some((row, &class)) =
        labels.iter().enumerate().find(|&(i, &y)| logits[[i, y]] == F::neg_infinity())
    {
        return Err(Error::MaskedTarget { row, class });
    }
    let per_class = ClassCounts::new(labels, logits.ncols());
    let mut sums = vec![0.0_f64; logits.ncols()];
    let mut adjusted = vec![0.0_f64; logits.ncols()];
    offsets
        .iter()
        .map(|offset| {
            check_logits(logits, Some(offset), |_, _| false)?;
            sums.fill(0.0);
            for (z, &y) in logits.rows().into_iter().zip(labels) {
                for ((a, &v), &o) in adjusted.iter_mut().zip(z).zip(offset) {
                    *a = v.as_f64() + o.as_f64();
                }
                // lse − a_y = (max − a_y) + ln(1 + Σ_{j ≠ argmax} e^{a_j − max}): the difference
                // first, so that a huge common offset cancels exactly, and `ln_1p` for the rest.
                let top = (0..adjusted.len()).fold(0, |t, j| if adjusted[j] > adjusted[t] { j } else { t });
                let max = adjusted[top];
                let rest: f64 = adjusted
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != top)
                    .map(|(_, &a)| (a - max).exp())
                    .sum();
                sums[y] += (max - adjusted[y]) + rest.ln_1p();
            }
            // Each class's mean divided by the number of classes before the sum, so that the
            // sum of the means never exceeds their mean's range.
            let present = per_class.present as f64;
            let loss: f64 = sums
                .iter()
                .zip(&per_class.counts)
                .filter(|&(_, &n)| n > 0)
                .map(|(s, &n)| s / n as f64 / present)
                .sum();
            // Every term is finite and >= 0: only a sum beyond f64 is not finite.
            if !loss.is_finite() {
                return Err(Error::Overflow {
                    what: "balanced log-loss",
                    row: None,
                    class: None,
                    value: None,
                });
            }
            Ok(loss)
        })
        .collect()
}

fn empty_grid() -> Error {
    Error::InvalidParameter { name: "taus", index: None, value: 0.0, expected: "a non-empty grid" }
}

/// The threshold moved by a prior for a binary score `s` (a logit): predict positive iff
/// `s − τ·logit(π) > 0`, i.e. iff `s > t` with `t = τ·logit(π) = τ·log(π / (1 − π))`, `π` the
/// positive class's prior. `τ = 1` is the balanced-error decision (logit adjustment for one
/// logit); `τ = 0` the plain `s > 0`.
///
/// # Errors
///
/// [`Error::InvalidParameter`]: `"positive_prior"` outside `(0, 1)`; `"tau"` not finite;
/// [`Error::Overflow`] (`"tau * logit(positive_prior)"`) for a threshold beyond `f64`.
///
/// # Example
///
/// ```
/// use longtail::adjust::{binary_threshold, predict_binary};
/// use ndarray::array;
///
/// let t = binary_threshold(0.1, 1.0)?; // 10% positives: log(1/9)
/// assert!((t + 9f64.ln()).abs() < 1e-15);
/// assert_eq!(predict_binary(&array![-3.0_f64, -1.0], t)?, vec![false, true]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314;
/// C. Elkan, "The Foundations of Cost-Sensitive Learning", IJCAI 2001 (threshold moving).
pub fn binary_threshold(positive_prior: f64, tau: f64) -> Result<f64> {
    let logit = prior_logit("positive_prior", positive_prior)?;
    if !tau.is_finite() {
        return Err(Error::InvalidParameter { name: "tau", index: None, value: tau, expected: "finite" });
    }
    let threshold = tau * logit;
    if threshold.is_infinite() {
        return Err(Error::Overflow {
            what: "tau * logit(positive_prior)",
            row: None,
            class: None,
            value: Some(tau),
        });
    }
    Ok(threshold)
}

/// The threshold of the Bayes prior shift for a binary score calibrated under the positive rate
/// `π` (`train_positive`) and deployed under `π'` (`target_positive`): predict positive iff
/// `s − logit(π) + logit(π') > 0`, i.e. iff `s > logit(π) − logit(π')`.
///
/// # Errors
///
/// [`Error::InvalidParameter`] (`"train_positive"` or `"target_positive"`) outside `(0, 1)`.
///
/// # Example
///
/// ```
/// use longtail::adjust::binary_shift_threshold;
///
/// // Trained balanced, deployed where 1% are positive: the score must beat log 99.
/// let t = binary_shift_threshold(0.5, 0.01)?;
/// assert!((t - 99f64.ln()).abs() < 1e-13);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Saerens et al. 2002; Elkan 2001.
pub fn binary_shift_threshold(train_positive: f64, target_positive: f64) -> Result<f64> {
    Ok(prior_logit("train_positive", train_positive)? - prior_logit("target_positive", target_positive)?)
}

/// Binary decisions `s_i > threshold` (a score equal to the threshold is negative).
///
/// # Errors
///
/// See [`predict_binary_into`].
///
/// # Example
///
/// ```
/// use longtail::adjust::predict_binary;
/// use ndarray::array;
///
/// assert_eq!(predict_binary(&array![0.5_f32, 0.0, f32::NEG_INFINITY], 0.0)?, vec![true, false, false]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Elkan 2001.
pub fn predict_binary<F: Float>(scores: &ArrayRef1<F>, threshold: f64) -> Result<Vec<bool>> {
    let mut out = vec![false; scores.len()];
    predict_binary_into(scores, threshold, &mut out)?;
    Ok(out)
}

/// [`predict_binary`] into a caller's buffer of length `B`, overwriting it.
///
/// # Errors
///
/// [`Error::EmptyBatch`] for no scores; [`Error::ShapeMismatch`] (`"out"`);
/// [`Error::InvalidParameter`] (`"threshold"`) for a NaN threshold;
/// [`Error::NonFiniteLogit`] (class 0) for a NaN or `+inf` score (`-inf` is a sure negative).
/// On error `out` is untouched.
///
/// # Example
///
/// ```
/// use longtail::adjust::predict_binary_into;
/// use ndarray::array;
///
/// let mut out = [false; 2];
/// predict_binary_into(&array![1.0_f64, -1.0], -2.0, &mut out)?;
/// assert_eq!(out, [true, true]);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// Elkan 2001.
pub fn predict_binary_into<F: Float>(scores: &ArrayRef1<F>, threshold: f64, out: &mut [bool]) -> Result<()> {
    if scores.is_empty() {
        return Err(Error::EmptyBatch);
    }
    check_shape("out", scores.shape(), &[out.len()])?;
    if threshold.is_nan() {
        return Err(Error::InvalidParameter {
            name: "threshold",
            index: None,
            value: threshold,
            expected: "not NaN",
        });
    }
    if let Some(row) = scores.iter().position(|&s| s.is_nan() || s == F::infinity()) {
        return Err(Error::NonFiniteLogit { row, class: 0, value: scores[row].as_f64() });
    }
    out.iter_mut().zip(scores).for_each(|(o, s)| *o = s.as_f64() > threshold);
    Ok(())
}

/// `log(π / (1 − π))` for `π ∈ (0, 1)`, with `log(1 − π)` via `ln_1p` (no cancellation near 0).
fn prior_logit(name: &'static str, p: f64) -> Result<f64> {
    if !(p > 0.0 && p < 1.0) {
        return Err(Error::InvalidParameter { name, index: None, value: p, expected: "in (0, 1)" });
    }
    Ok(p.ln() - (-p).ln_1p())
}

/// The batch-level checks every multi-class call starts with: rows, classes, the priors' lengths.
fn check_batch<F: Float>(logits: &ArrayRef2<F>, priors: &[(&'static str, &Prior)]) -> Result<()> {
    if logits.nrows() == 0 {
        return Err(Error::EmptyBatch);
    }
    if logits.ncols() == 0 {
        return Err(Error::NoClasses);
    }
    for &(name, prior) in priors {
        check_shape(name, &[logits.ncols()], &[prior.classes()])?;
    }
    Ok(())
}

fn check_shifted<F: Float>(logits: &ArrayRef2<F>, train: &Prior, target: &Prior) -> Result<()> {
    check_batch(logits, &[("train_prior", train), ("target_prior", target)])
}

/// `−τ·log π_k` in `F` (finite: checked by `log_prior`).
fn adjustment<F: Float>(prior: &Prior, tau: F) -> Result<Vec<F>> {
    Ok(prior.log_prior(tau)?.iter().map(|&v| -v).collect())
}

/// `log π'_k − log π_k` in `F`, both priors positive.
fn shift<F: Float>(train: &Prior, target: &Prior) -> Result<Vec<F>> {
    train.require_positive("train_prior")?;
    target.require_positive("target_prior")?;
    let (log_train, log_target) = (train.log_prior_f64(1.0)?, target.log_prior_f64(1.0)?);
    Ok(log_target.iter().zip(&log_train).map(|(t, s)| F::from_f64(t - s)).collect())
}

/// Writes `z + offset` row by row, after checking every logit.
fn offset_into<F: Float>(logits: &ArrayRef2<F>, offset: &[F], out: &mut ArrayRef2<F>) -> Result<()> {
    check_logits(logits, Some(offset), |_, _| false)?;
    for_each_row(logits, Some(out), |_, z, row| {
        row.iter_mut().zip(z).zip(offset).for_each(|((o, &v), &a)| *o = v + a);
    });
    Ok(())
}

/// Writes `argmax_k z_ik + offset_k` (first index of the maximum) for every row, after checking
/// every logit and that no row is fully masked.
fn argmax_into<F: Float>(logits: &ArrayRef2<F>, offset: &[F], out: &mut [usize]) -> Result<()> {
    check_shape("out", &[logits.nrows()], &[out.len()])?;
    check_logits(logits, Some(offset), |_, _| false)?;
    if let Some(row) = logits.rows().into_iter().position(|z| z.iter().all(|&v| v == F::neg_infinity())) {
        return Err(Error::FullyMasked { row });
    }
    for (o, z) in out.iter_mut().zip(logits.rows()) {
        let mut best = (0, F::neg_infinity());
        for (k, (&v, &a)) in z.iter().zip(offset).enumerate() {
            let adjusted = v + a;
            if adjusted > best.1 {
                best = (k, adjusted);
            }
        }
        *o = best.0;
    }
    Ok(())
}
