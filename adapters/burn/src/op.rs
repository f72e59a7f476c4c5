//! The loss as an autodiff op: the core's fused forward computes the loss and its gradient, and
//! the gradient, kept as the op's state, is the backward.
//!
//! Which path a call takes depends on where the logits live:
//!
//! 1. On a CPU backend (Flex, NdArray), with or without autodiff: the core kernel reads the
//!    logits (and probability targets) in place; the gradient is written into a fresh array that
//!    becomes the backend's tensor without a copy; a [`Backward`] impl holds it as state and
//!    returns it, scaled by the incoming gradient, in the backward pass.
//! 2. Anywhere else (a GPU backend, or a CPU tensor whose layout cannot be viewed): the softmax
//!    family runs as burn tensor ops on the tensor's own device ([`crate::tensor_ops`]); the
//!    other losses read the logits back to the host, run the core kernel there and send the
//!    gradient back. Both attach their analytic gradient `G` to the graph through the linear term
//!    `Σ (z − sg(z))·sg(G)`, which is exactly 0 in the forward and has gradient `G` in the
//!    backward: autodiff never differentiates through the loss's formula.

use core::any::Any;

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Backend, BackendTypes, Scalar};
use burn::tensor::{Shape, Tensor, TensorData};
use burn_dispatch::{DispatchKindConversion, DispatchTensor};
use longtail::SoftmaxLoss;
use longtail::ndarray::{Array1, Array2, ArrayView2};

use crate::host::{HostBackend, array_to_data, data_to_array};
use crate::targets::{TargetKind, read_labels};
use crate::{Element, Error, Loss, Result, Targets};

/// Which kind of `[B, K]` float targets a held tensor is.
#[derive(Clone, Copy)]
enum Dense {
    Probs,
    MultiHot,
}

/// How a loss call computes: the default picks the fastest path for the logits' backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ComputePath {
    /// The core kernel in place on a CPU backend, else [`TensorOps`](Self::TensorOps) for the
    /// softmax family and [`Host`](Self::Host) for the other losses.
    #[default]
    Auto,
    /// The softmax family's formulas as burn tensor ops on the logits' device (any backend).
    /// Other losses fall back to [`Host`](Self::Host).
    TensorOps,
    /// Read the logits back to the host, run the core kernel there, send the gradient back.
    Host,
}

/// The backward of a core loss: its analytic gradient, computed in the forward.
#[derive(Debug)]
struct CoreLossBackward;

impl<B: HostBackend> Backward<B, 1> for CoreLossBackward {
    /// `dL/dz` for the batch, `[B, K]`.
    type State = B::FloatTensorPrimitive;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let upstream = grads.consume::<B>(&ops.node);
        let Some(parent) = parent else { return };
        let grad = match B::read_scalar(&upstream) {
            // `loss.backward()` seeds 1: the state is the gradient as it is.
            Some(1.0) => ops.state,
            Some(u) => B::float_mul_scalar(ops.state, Scalar::Float(u)),
            None => B::float_mul(ops.state, B::float_reshape(upstream, Shape::new([1, 1]))),
        };
        grads.register::<B>(parent.id, grad);
    }
}

/// Probability targets held for the call: a CPU primitive read in place, or a host copy.
enum Held<B: Backend, F> {
    Primitive(B::FloatTensorPrimitive),
    Owned(Array2<F>),
}

/// The targets on the host: labels and sample weights copied (`B` values each), probability
/// targets read in place when they sit on the logits' CPU backend.
struct HostTargets<B: Backend, F> {
    labels: Option<Vec<usize>>,
    probs: Option<(Dense, Held<B, F>)>,
    weights: Option<Array1<F>>,
}

impl<B: HostBackend, F: Element> HostTargets<B, F> {
    fn read(targets: &Targets) -> Result<Self>
    where
        DispatchTensor: CpuConversions<B>,
    {
        let (labels, probs) = match &targets.kind {
            TargetKind::Labels(l) => (Some(read_labels(l)?), None),
            TargetKind::Probs(p) | TargetKind::MultiHot(p) => {
                let (dense, name) = dense_kind(&targets.kind);
                check_dtype::<F>(p.dtype(), name)?;
                let held = match host_primitive::<B>(p) {
                    Some(prim) if B::view::<F>(&prim).is_some() => Held::Primitive(prim),
                    _ => Held::Owned(data_to_array(p.to_data(), name)?),
                };
                (None, Some((dense, held)))
            }
        };
        let weights = match &targets.sample_weights {
            Some(w) => {
                check_dtype::<F>(w.dtype(), "sample_weights")?;
                let data = w.to_data();
                Some(Array1::from(data.try_into_vec::<F>().map_err(|e| Error::Read(format!("{e:?}")))?))
            }
            None => None,
        };
        Ok(Self { labels, probs, weights })
    }

    /// The core's targets, borrowing from `self`.
    fn core(&self) -> longtail::Targets<'_, F> {
        let targets = match (&self.labels, &self.probs) {
            (Some(labels), _) => longtail::Targets::labels(&labels[..]),
            (None, Some((dense, held))) => {
                let view = match held {
                    Held::Primitive(p) => B::view::<F>(p).expect("checked when the targets were read"),
                    Held::Owned(a) => a.view(),
                };
                dense_targets(*dense, view)
            }
            (None, None) => unreachable!("targets are labels or dense rows"),
        };
        match &self.weights {
            Some(w) => targets.with_sample_weights(w),
            None => targets,
        }
    }
}

/// A float tensor of `Autodiff<B, C>`: the inner primitive and its graph node.
type AutodiffPrimitive<B, C> = <Autodiff<B, C> as BackendTypes>::FloatTensorPrimitive;

/// The kind and the argument name of dense `[B, K]` targets.
fn dense_kind(kind: &TargetKind) -> (Dense, &'static str) {
    match kind {
        TargetKind::MultiHot(_) => (Dense::MultiHot, "multi_hot"),
        _ => (Dense::Probs, "probs"),
    }
}

/// Dense rows as the core's targets of their kind.
fn dense_targets<F: Element>(dense: Dense, view: ArrayView2<'_, F>) -> longtail::Targets<'_, F> {
    match dense {
        Dense::Probs => longtail::Targets::probs(view),
        Dense::MultiHot => longtail::Targets::multi_hot(view),
    }
}

/// The dispatch conversions a CPU backend needs: plain, and under both autodiff checkpointing
/// strategies.
pub(crate) trait CpuConversions<B: Backend>:
    DispatchKindConversion<B>
    + DispatchKindConversion<Autodiff<B, NoCheckpointing>>
    + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>
{
}

impl<B: Backend, T> CpuConversions<B> for T where
    T: DispatchKindConversion<B>
        + DispatchKindConversion<Autodiff<B, NoCheckpointing>>
        + DispatchKindConversion<Autodiff<B, BalancedCheckpointing>>
{
}

/// A float tensor's primitive on backend `B` (autodiff or not), sharing its storage.
fn host_primitive<B: Backend>(tensor: &Tensor<2>) -> Option<B::FloatTensorPrimitive>
where
    DispatchTensor: CpuConversions<B>,
{
    if let Ok(p) = tensor.clone().try_into_primitive::<B>() {
        return Some(p);
    }
    if let Ok(p) = tensor.clone().try_into_primitive::<Autodiff<B, NoCheckpointing>>() {
        return Some(p.into_primitive());
    }
    tensor.clone().try_into_primitive::<Autodiff<B, BalancedCheckpointing>>().ok().map(|p| p.into_primitive())
}

pub(crate) fn check_dtype<F: Element>(found: burn::tensor::DType, tensor: &'static str) -> Result<()> {
    if found == F::DTYPE { Ok(()) } else { Err(Error::DType { tensor, expected: F::DTYPE, found }) }
}

/// The core loss in place on CPU backend `B`, or `Ok(None)` if the logits are not `B`'s (or
/// not viewable in place).
fn on_host_backend<B: HostBackend, F: Element, L: Loss<F>>(
    loss: &L,
    logits: &Tensor<2>,
    targets: &Targets,
) -> Result<Option<Tensor<1>>>
where
    DispatchTensor: CpuConversions<B>,
{
    if let Ok(prim) = logits.clone().try_into_primitive::<B>() {
        let Some(view) = B::view::<F>(&prim) else { return Ok(None) };
        let host = HostTargets::<B, F>::read(targets)?;
        let value = loss.loss_into(&view, &host.core(), None)?;
        return Ok(Some(Tensor::from_primitive::<B>(B::scalar(value))));
    }
    macro_rules! tracked {
        ($strategy:ty) => {
            if let Ok(ad) = logits.clone().try_into_primitive::<Autodiff<B, $strategy>>() {
                if B::view::<F>(ad.primitive()).is_none() {
                    return Ok(None);
                }
                let out = tracked::<B, $strategy, F, L>(loss, ad, targets)?;
                return Ok(Some(Tensor::from_primitive::<Autodiff<B, $strategy>>(out)));
            }
        };
    }
    tracked!(NoCheckpointing);
    tracked!(BalancedCheckpointing);
    Ok(None)
}

/// The fused forward of an autodiff tensor: the loss, with the gradient as the backward's state
/// when the logits are tracked.
fn tracked<B: HostBackend, C: CheckpointStrategy, F: Element, L: Loss<F>>(
    loss: &L,
    logits: AutodiffPrimitive<B, C>,
    targets: &Targets,
) -> Result<AutodiffPrimitive<B, C>>
where
    DispatchTensor: CpuConversions<B>,
{
    let host = HostTargets::<B, F>::read(targets)?;
    let (primitive, node) = logits.into_parts();
    let view = B::view::<F>(&primitive).expect("checked by the caller");
    match CoreLossBackward.prepare::<C>([node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let mut grad = Array2::<F>::zeros(view.raw_dim());
            let value = loss.loss_into(&view, &host.core(), Some(&mut grad))?;
            Ok(prep.finish(B::from_array(grad), B::scalar(value)))
        }
        OpsKind::UnTracked(prep) => {
            let value = loss.loss_into(&view, &host.core(), None)?;
            Ok(prep.finish(B::scalar(value)))
        }
    }
}

/// Attaches the analytic gradient `grad` of `value` with respect to `logits` to the graph:
/// `value + Σ (z − sg(z))·sg(G)`, exactly `value` in the forward, gradient `G` in the backward.
pub(crate) fn attach(value: Tensor<1>, logits: Tensor<2>, grad: Tensor<2>) -> Tensor<1> {
    if !logits.is_tracked() {
        return value;
    }
    let zero = (logits.clone() - logits.detach()) * grad;
    value + zero.sum()
}

/// The host round trip: logits (and targets) copied to the host, the core kernel there, the
/// gradient copied back to the logits' device.
fn on_host_copy<F: Element, L: Loss<F>>(loss: &L, logits: Tensor<2>, targets: &Targets) -> Result<Tensor<1>> {
    let device = logits.device();
    let z = data_to_array::<F>(logits.to_data(), "logits")?;
    let (labels, probs, weights) = host_copy_targets::<F>(targets)?;
    let core = match (&labels, &probs) {
        (Some(l), _) => longtail::Targets::labels(&l[..]),
        (None, Some((dense, p))) => dense_targets(*dense, p.view()),
        (None, None) => unreachable!("targets are labels or dense rows"),
    };
    let core = match &weights {
        Some(w) => core.with_sample_weights(w),
        None => core,
    };
    let track = logits.is_tracked();
    let mut grad = if track { Array2::zeros(z.raw_dim()) } else { Array2::zeros((0, 0)) };
    let value = loss.loss_into(&z, &core, track.then_some(&mut grad))?;
    let value_t = Tensor::<1>::from_data(TensorData::new(vec![value], [1]), (&device, F::DTYPE));
    if !track {
        return Ok(value_t);
    }
    let grad_t = Tensor::<2>::from_data(array_to_data(grad), (&device, F::DTYPE));
    Ok(attach(value_t, logits, grad_t))
}

type HostCopy<F> = (Option<Vec<usize>>, Option<(Dense, Array2<F>)>, Option<Array1<F>>);

fn host_copy_targets<F: Element>(targets: &Targets) -> Result<HostCopy<F>> {
    let (labels, probs) = match &targets.kind {
        TargetKind::Labels(l) => (Some(read_labels(l)?), None),
        TargetKind::Probs(p) | TargetKind::MultiHot(p) => {
            let (dense, name) = dense_kind(&targets.kind);
            check_dtype::<F>(p.dtype(), name)?;
            (None, Some((dense, data_to_array::<F>(p.to_data(), name)?)))
        }
    };
    let weights = match &targets.sample_weights {
        Some(w) => {
            check_dtype::<F>(w.dtype(), "sample_weights")?;
            Some(Array1::from(w.to_data().try_into_vec::<F>().map_err(|e| Error::Read(format!("{e:?}")))?))
        }
        None => None,
    };
    Ok((labels, probs, weights))
}

/// One loss call: the path by [`ComputePath`], the loss as a `[1]` tensor on the logits' device.
pub(crate) fn forward<F: Element, L: Loss<F> + 'static>(
    loss: &L,
    logits: Tensor<2>,
    targets: &Targets,
    path: ComputePath,
) -> Result<Tensor<1>> {
    check_dtype::<F>(logits.dtype(), "logits")?;
    if path == ComputePath::Auto {
        #[cfg(feature = "flex")]
        if let Some(out) = on_host_backend::<burn::backend::Flex, F, L>(loss, &logits, targets)? {
            return Ok(out);
        }
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        if let Some(out) = on_host_backend::<burn::backend::NdArray, F, L>(loss, &logits, targets)? {
            return Ok(out);
        }
    }
    // Multi-hot targets are not the softmax family's: the core names the error on the host path.
    if path != ComputePath::Host
        && !matches!(targets.kind, TargetKind::MultiHot(_))
        && let Some(softmax) = (loss as &dyn Any).downcast_ref::<SoftmaxLoss<F>>()
    {
        return crate::tensor_ops::softmax_forward(softmax, logits, targets);
    }
    on_host_copy(loss, logits, targets)
}

/// Runs `f` on the logits as a host view: in place on a CPU backend, else on a host copy.
///
/// # Errors
///
/// [`Error::DType`] if the logits are not `F`; [`Error::Read`] if they cannot be read back.
pub(crate) fn with_host_logits<F: Element, R>(
    logits: &Tensor<2>,
    f: impl FnOnce(&ArrayView2<'_, F>) -> R,
) -> Result<R> {
    check_dtype::<F>(logits.dtype(), "logits")?;
    #[cfg(feature = "flex")]
    if let Some(p) = host_primitive::<burn::backend::Flex>(logits)
        && let Some(view) = <burn::backend::Flex as HostBackend>::view::<F>(&p)
    {
        return Ok(f(&view));
    }
    #[cfg(feature = "ndarray")]
    #[allow(deprecated)]
    if let Some(p) = host_primitive::<burn::backend::NdArray>(logits)
        && let Some(view) = <burn::backend::NdArray as HostBackend>::view::<F>(&p)
    {
        return Ok(f(&view));
    }
    let copy = data_to_array::<F>(logits.to_data(), "logits")?;
    Ok(f(&copy.view()))
}
