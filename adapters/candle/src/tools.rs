//! Priors, post-hoc adjustment and metrics from candle tensors: the core's functions, reading the
//! tensors in place.

use candle_core::{DType, Result, Tensor, bail};
use longtail::ndarray::{Array2, ArrayRef2, ArrayView2};
use longtail::prior::PriorEstimator;
use longtail::{ConfusionMatrix, F1Stats, Prior, SmoothF1Loss};

use crate::read::{self, CandleFloat};
use crate::targets::TensorTargets;

fn core<T>(result: longtail::Result<T>) -> Result<T> {
    result.map_err(candle_core::Error::wrap)
}

/// Runs `f` on a `[B, K]` float tensor (`f32` or `f64`) viewed in place.
fn with_rows<R>(
    what: &str,
    tensor: &Tensor,
    f32_fn: impl FnOnce(ArrayView2<'_, f32>) -> Result<R>,
    f64_fn: impl FnOnce(ArrayView2<'_, f64>) -> Result<R>,
) -> Result<R> {
    read::check_rank(what, tensor, 2, "[B, K]")?;
    let (rows, cols) = tensor.dims2()?;
    fn view<F: CandleFloat>(data: &[F], shape: (usize, usize)) -> Result<ArrayView2<'_, F>> {
        ArrayView2::from_shape(shape, data).map_err(candle_core::Error::wrap)
    }
    match tensor.dtype() {
        DType::F32 => read::with_slice::<f32, R>(what, tensor, |data| f32_fn(view(data, (rows, cols))?)),
        DType::F64 => read::with_slice::<f64, R>(what, tensor, |data| f64_fn(view(data, (rows, cols))?)),
        other => bail!("the {what} must be f32 or f64, got {other:?}"),
    }
}

/// The class prior of a `[B]` label tensor (`u32` or `i64`) over `classes` classes:
/// [`Prior::from_labels`].
///
/// # Errors
///
/// A tensor off the CPU, not `[B]` or not of an index type; a negative label; and
/// [`Prior::from_labels`]'s errors (a label out of range, no labels), as candle's error.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let labels = Tensor::new(&[0_u32, 0, 0, 1], &Device::Cpu)?;
/// let prior = longtail_candle::prior_from_labels(&labels, 2)?;
/// assert_eq!(prior.counts(), &[3.0, 1.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`Prior`].
pub fn prior_from_labels(labels: &Tensor, classes: usize) -> Result<Prior> {
    core(Prior::from_labels(&read::labels("labels", labels)?, classes))
}

/// The class prior of `[B, K]` probability targets (`f32` or `f64`): [`Prior::from_probs`].
///
/// # Errors
///
/// A tensor off the CPU or not a `[B, K]` float tensor, and [`Prior::from_probs`]'s errors, as
/// candle's error.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let probs = Tensor::new(&[[0.75_f32, 0.25], [0.25, 0.75]], &Device::Cpu)?;
/// assert_eq!(longtail_candle::prior_from_probs(&probs)?.counts(), &[1.0, 1.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`Prior`].
pub fn prior_from_probs(probs: &Tensor) -> Result<Prior> {
    with_rows("probability targets", probs, |p| core(Prior::from_probs(&p)), |p| core(Prior::from_probs(&p)))
}

/// Adds a batch's `[B]` label tensor to a streaming prior estimate:
/// [`PriorEstimator::update`]. Estimators of data-parallel replicas merge with
/// [`PriorEstimator::merge`].
///
/// # Errors
///
/// As [`prior_from_labels`], and [`PriorEstimator::update`]'s errors.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// use longtail::prior::PriorEstimator;
///
/// let mut estimator = PriorEstimator::new(3).map_err(candle_core::Error::wrap)?;
/// longtail_candle::update_prior(&mut estimator, &Tensor::new(&[2_i64, 2, 0], &Device::Cpu)?)?;
/// assert_eq!(estimator.counts(), &[1.0, 0.0, 2.0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`PriorEstimator`].
pub fn update_prior(estimator: &mut PriorEstimator, labels: &Tensor) -> Result<()> {
    core(estimator.update(&read::labels("labels", labels)?))
}

/// Post-hoc logit adjustment `z_k − τ·log π_k` of a `[B, K]` logits tensor (`f32` or `f64`),
/// a new tensor: [`longtail::adjust::adjusted_logits`].
///
/// # Errors
///
/// A tensor off the CPU or not a `[B, K]` float tensor, and the core's errors (`K` not the
/// prior's class count, a bad `τ`), as candle's error.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let prior = longtail::Prior::from_counts(&[99.0, 1.0]).map_err(candle_core::Error::wrap)?;
/// let logits = Tensor::new(&[[2.0_f64, 0.0]], &Device::Cpu)?;
/// let adjusted = longtail_candle::adjusted_logits(&logits, &prior, 1.0)?;
/// assert!(adjusted.argmax(1)?.to_vec1::<u32>()? == vec![1]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
pub fn adjusted_logits(logits: &Tensor, prior: &Prior, tau: f64) -> Result<Tensor> {
    let device = logits.device().clone();
    with_rows(
        "logits",
        logits,
        |z| {
            let adjusted = core(longtail::adjust::adjusted_logits(&z, prior, tau as f32))?;
            Tensor::from_vec(adjusted.into_raw_vec_and_offset().0, z.dim(), &device)
        },
        |z| {
            let adjusted = core(longtail::adjust::adjusted_logits(&z, prior, tau))?;
            Tensor::from_vec(adjusted.into_raw_vec_and_offset().0, z.dim(), &device)
        },
    )
}

/// The post-hoc adjusted prediction `argmax_k z_k − τ·log π_k` of each row, a `[B]` `u32`
/// tensor: [`longtail::adjust::predict_adjusted`].
///
/// # Errors
///
/// As [`adjusted_logits`].
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let prior = longtail::Prior::from_counts(&[99.0, 1.0]).map_err(candle_core::Error::wrap)?;
/// let logits = Tensor::new(&[[2.0_f32, 0.0], [9.0, 0.0]], &Device::Cpu)?;
/// let predicted = longtail_candle::predict_adjusted(&logits, &prior, 1.0)?;
/// assert_eq!(predicted.to_vec1::<u32>()?, vec![1, 0]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// A. K. Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, arXiv:2007.07314.
pub fn predict_adjusted(logits: &Tensor, prior: &Prior, tau: f64) -> Result<Tensor> {
    let predictions = with_rows(
        "logits",
        logits,
        |z| core(longtail::adjust::predict_adjusted(&z, prior, tau as f32)),
        |z| core(longtail::adjust::predict_adjusted(&z, prior, tau)),
    )?;
    index_tensor(predictions, logits)
}

fn index_tensor(predictions: Vec<usize>, like: &Tensor) -> Result<Tensor> {
    let predictions: Vec<u32> = predictions
        .into_iter()
        .map(|p| u32::try_from(p).map_err(candle_core::Error::wrap))
        .collect::<Result<_>>()?;
    let rows = predictions.len();
    Tensor::from_vec(predictions, rows, like.device())
}

/// The confusion matrix of a `[B, K]` logits tensor's predictions (`argmax`, or the post-hoc
/// adjusted `argmax_k z_k − τ·log π_k` when `adjust` is `Some((prior, τ))`) against a `[B]` label
/// tensor (`u32` or `i64`); `K` classes. Confusion matrices of data-parallel replicas merge with
/// [`ConfusionMatrix::merge`].
///
/// # Errors
///
/// A tensor off the CPU or of the wrong shape or type; the core's errors (a label out of range,
/// a NaN logit, a prior over another class count), as candle's error.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2.0_f32, 0.0], [0.0, 1.0], [3.0, 0.0]], &dev)?;
/// let labels = Tensor::new(&[0_u32, 1, 1], &dev)?;
/// let confusion = longtail_candle::confusion_matrix(&logits, &labels, None)?;
/// assert_eq!(confusion.balanced_accuracy(), 0.75);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`ConfusionMatrix`].
pub fn confusion_matrix(
    logits: &Tensor,
    labels: &Tensor,
    adjust: Option<(&Prior, f64)>,
) -> Result<ConfusionMatrix> {
    read::check_rank("logits", logits, 2, "[B, K]")?;
    let (_, classes) = logits.dims2()?;
    let predictions = with_rows(
        "logits",
        logits,
        |z| match adjust {
            Some((prior, tau)) => core(longtail::adjust::predict_adjusted(&z, prior, tau as f32)),
            None => core(longtail::adjust::predict(&z)),
        },
        |z| match adjust {
            Some((prior, tau)) => core(longtail::adjust::predict_adjusted(&z, prior, tau)),
            None => core(longtail::adjust::predict(&z)),
        },
    )?;
    core(ConfusionMatrix::new(&read::labels("labels", labels)?, &predictions, classes))
}

/// The balanced accuracy (mean per-class recall) of a `[B, K]` logits tensor's `argmax`
/// predictions against a `[B]` label tensor: [`ConfusionMatrix::balanced_accuracy`].
///
/// # Errors
///
/// As [`confusion_matrix`].
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[2.0_f64, 0.0], [0.0, 1.0], [3.0, 0.0]], &dev)?;
/// let labels = Tensor::new(&[0_i64, 1, 1], &dev)?;
/// assert_eq!(longtail_candle::balanced_accuracy(&logits, &labels)?, 0.75);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// scikit-learn `sklearn.metrics.balanced_accuracy_score`.
pub fn balanced_accuracy(logits: &Tensor, labels: &Tensor) -> Result<f64> {
    Ok(confusion_matrix(logits, labels, None)?.balanced_accuracy())
}

/// The smooth-F1 statistics of a batch of candle logits (`Σ s y p`, `Σ s (y + p)` per class and
/// `Σ s`): [`SmoothF1Loss::stats`]. Statistics of data-parallel replicas merge with
/// [`F1Stats::merge`].
///
/// # Errors
///
/// As [`CandleLoss::forward`](crate::CandleLoss::forward), for the core's `stats`; the logits
/// must be of the loss's float type.
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor};
/// use longtail::SmoothF1Loss;
/// let dev = Device::Cpu;
/// let logits = Tensor::new(&[[0.0_f64, 0.0]], &dev)?;
/// let stats = longtail_candle::f1_stats(&SmoothF1Loss::<f64>::macro_f1(), &logits, &Tensor::new(&[1_u32], &dev)?)?;
/// assert_eq!(stats.true_positive(), &[0.0, 0.5]);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`SmoothF1Loss`].
pub fn f1_stats<'t, F: CandleFloat>(
    loss: &SmoothF1Loss<F>,
    logits: &Tensor,
    targets: impl Into<TensorTargets<'t>>,
) -> Result<F1Stats> {
    crate::op::with_batch(logits, targets.into(), |z: &ArrayRef2<F>, t: &longtail::Targets<'_, F>| {
        core(loss.stats(z, t.clone()))
    })
}

/// The smooth-F1 loss with F1 from given statistics (typically merged across data-parallel
/// replicas with [`F1Stats::merge`]) instead of the local batch, as a candle op: the core's
/// [`SmoothF1Loss::loss_and_grad_with_stats_into`], with the gradient (F1 held constant) kept for
/// `backward()`.
///
/// # Errors
///
/// As [`CandleLoss::forward`](crate::CandleLoss::forward), and statistics over another class
/// count than the logits' (the core's error).
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use longtail::SmoothF1Loss;
/// use longtail_candle::{f1_stats, smooth_f1_with_stats};
///
/// let dev = Device::Cpu;
/// let loss = SmoothF1Loss::<f64>::macro_f1();
/// let (ours, theirs) = (Var::new(&[[1.0_f64, 0.0, -1.0]], &dev)?, Tensor::new(&[[0.0_f64, 2.0, 0.0]], &dev)?);
/// let (our_labels, their_labels) = (Tensor::new(&[0_u32], &dev)?, Tensor::new(&[1_u32], &dev)?);
/// // The statistics of the global batch: another replica's merged with ours.
/// let mut stats = f1_stats(&loss, &theirs, &their_labels)?;
/// stats.merge(&f1_stats(&loss, ours.as_tensor(), &our_labels)?).map_err(candle_core::Error::wrap)?;
/// let value = smooth_f1_with_stats(&loss, &stats, ours.as_tensor(), &our_labels)?;
/// let grad = value.backward()?.remove(ours.as_tensor()).expect("a gradient");
/// assert!(grad.to_vec2::<f64>()?[0][0] < 0.0);
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// See [`SmoothF1Loss`].
pub fn smooth_f1_with_stats<'t, F: CandleFloat>(
    loss: &SmoothF1Loss<F>,
    stats: &F1Stats,
    logits: &Tensor,
    targets: impl Into<TensorTargets<'t>>,
) -> Result<Tensor> {
    crate::op::attach(logits, targets.into(), crate::op::Output::Reduced, |z, t, _, grad| match grad {
        Some(grad) => loss.loss_and_grad_with_stats_into(z, t.clone(), stats, grad),
        None => loss.loss_and_grad_with_stats_into(z, t.clone(), stats, &mut Array2::zeros(z.raw_dim())),
    })
}
