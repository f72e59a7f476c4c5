//! Every loss of the core as a candle op: the fused kernel reads candle's CPU storage in place,
//! and the backward pass is the analytic gradient kept from the forward pass.

use std::cell::RefCell;
use std::marker::PhantomData;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};
use longtail::ndarray::{ArrayRef1, ArrayRef2, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use longtail::Loss;

use crate::read::{self, CandleFloat};
use crate::targets::{TargetKind, TensorTargets};

/// Every loss of the crate as a candle op.
///
/// Implemented for every core loss over `[B, K]` logits (and for references and boxes of them,
/// so a `Box<dyn Loss<F>>` works too). A binary model's sigmoid losses take `[B, 1]` logits with
/// `[B, 1]` multi-hot targets. `forward` returns a tensor whose `backward()` gives the
/// core's exact gradient `dL/dz`, scaled by the incoming gradient.
///
/// - The logits are a `[B, K]` tensor of the loss's float type (`f32` or `f64`) on the CPU
///   device. Contiguous logits and targets are read in place, with no copy; others are made
///   contiguous first (one copy, by [`Tensor::contiguous`]).
/// - Candle tensors carry their float type at run time, so the loss names it at compile time
///   (`SoftmaxLoss::<f32>::cross_entropy()`); logits of another type are an error.
/// - Loss and gradient are computed together, once, in the forward pass; the gradient is kept
///   for the backward pass, which only scales it (and not even that when the incoming gradient
///   is 1, as it is for `loss.backward()`). When the logits track no gradient (evaluation), no
///   gradient is kept and the result is a plain tensor.
///
/// # Errors
///
/// - A tensor on another device than the CPU: the core's kernels read host memory. Move the
///   logits with `.to_device(&Device::Cpu)` (candle's own ops remain available on the GPU).
/// - Logits that are not `[B, K]` or not of the loss's float type; labels that are not a `[B]`
///   tensor of `u32` or `i64` (a negative `i64` label names its row); probability, multi-hot or
///   weight tensors of another shape rank or float type.
/// - Every error of the core loss (shape mismatch, a label out of range, a NaN logit, a bad
///   probability row, a target kind the loss does not take, ...), as
///   [`candle_core::Error::Wrapped`] holding the core's [`longtail::Error`]: its message is the
///   core's (candle boxes it as `dyn Display`, so it cannot be downcast).
///
/// # Example
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use longtail::SoftmaxLoss;
/// use longtail_candle::CandleLoss;
///
/// let dev = Device::Cpu;
/// let logits = Var::new(&[[2.0_f32, 0.1, -1.0], [0.2, 1.1, 0.4]], &dev)?;
/// let labels = Tensor::new(&[0_u32, 2], &dev)?;
/// let loss = SoftmaxLoss::<f32>::logit_adjusted(&[1000.0, 100.0, 10.0]).map_err(candle_core::Error::wrap)?;
/// let value = loss.forward(logits.as_tensor(), &labels)?;
/// let grads = value.backward()?;
/// let grad = grads.get(logits.as_tensor()).expect("the logits' gradient");
/// assert_eq!(grad.dims(), &[2, 3]);
///
/// // Bad input is the core's error, as candle's error (with a backtrace if `RUST_BACKTRACE` is set).
/// let err = loss.forward(logits.as_tensor(), &Tensor::new(&[0_u32, 3], &dev)?).unwrap_err();
/// assert!(err.to_string().starts_with("label 3 at row 1 is not a class index 0..3"));
/// # Ok::<(), candle_core::Error>(())
/// ```
///
/// # References
///
/// candle's `candle_nn::ops::SoftmaxLastDim` (a custom op reading contiguous CPU storage in place).
pub trait CandleLoss<F: CandleFloat> {
    /// The reduced loss `L` (a scalar tensor); `backward()` through it gives `dL/dz`.
    ///
    /// # Errors
    ///
    /// See [`CandleLoss`].
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use longtail::SoftmaxLoss;
    /// use longtail_candle::CandleLoss;
    ///
    /// let dev = Device::Cpu;
    /// let logits = Tensor::new(&[[0.0_f64, 0.0]], &dev)?;
    /// let value = SoftmaxLoss::<f64>::cross_entropy().forward(&logits, &Tensor::new(&[1_i64], &dev)?)?;
    /// assert!((value.to_scalar::<f64>()? - std::f64::consts::LN_2).abs() < 1e-15);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    fn forward<'t>(&self, logits: &Tensor, targets: impl Into<TensorTargets<'t>>) -> Result<Tensor>;

    /// Every row's loss `ℓ_i` (a `[B]` tensor, unreduced and unweighted by the mean's
    /// denominator); `backward()` through any function of it gives `Σ_i (∂f/∂ℓ_i)·dℓ_i/dz_i`.
    ///
    /// # Errors
    ///
    /// See [`CandleLoss`].
    ///
    /// # Example
    ///
    /// ```
    /// use candle_core::{Device, Tensor};
    /// use longtail::SoftmaxLoss;
    /// use longtail_candle::CandleLoss;
    ///
    /// let dev = Device::Cpu;
    /// let logits = Tensor::new(&[[0.0_f32, 0.0], [9.0, -9.0]], &dev)?;
    /// let losses = SoftmaxLoss::<f32>::cross_entropy().forward_per_sample(&logits, &Tensor::new(&[1_u32, 0], &dev)?)?;
    /// assert_eq!(losses.dims(), &[2]);
    /// # Ok::<(), candle_core::Error>(())
    /// ```
    fn forward_per_sample<'t>(
        &self,
        logits: &Tensor,
        targets: impl Into<TensorTargets<'t>>,
    ) -> Result<Tensor>;
}

impl<F: CandleFloat, L: Loss<F> + ?Sized> CandleLoss<F> for L {
    fn forward<'t>(&self, logits: &Tensor, targets: impl Into<TensorTargets<'t>>) -> Result<Tensor> {
        apply(self, logits, targets.into(), false)
    }

    fn forward_per_sample<'t>(
        &self,
        logits: &Tensor,
        targets: impl Into<TensorTargets<'t>>,
    ) -> Result<Tensor> {
        apply(self, logits, targets.into(), true)
    }
}

/// The op's name in candle's errors and graph.
const NAME: &str = "longtail-loss";

/// Runs the core's loss on candle's storage and attaches the backward pass.
fn apply<F: CandleFloat, L: Loss<F> + ?Sized>(
    loss: &L,
    logits: &Tensor,
    targets: TensorTargets<'_>,
    per_sample: bool,
) -> Result<Tensor> {
    let output = if per_sample { Output::PerSample } else { Output::Reduced };
    attach(logits, targets, output, |z, t, losses, grad| match losses {
        Some(losses) => loss.per_sample_into(z, t, losses, grad).map(|()| F::zero()),
        None => loss.loss_into(z, t, grad),
    })
}

/// What a loss op returns: the reduced loss (a scalar) or every row's loss (`[B]`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Reduced,
    PerSample,
}

/// The core's kernel on candle's storage, its gradient kept for the backward pass: `kernel`
/// gets the logits, the targets, the `[B]` losses buffer (per-sample output only) and the
/// `[B, K]` gradient buffer (only if the logits track a gradient), and returns the reduced loss.
pub(crate) fn attach<F, K>(
    logits: &Tensor,
    targets: TensorTargets<'_>,
    output: Output,
    kernel: K,
) -> Result<Tensor>
where
    F: CandleFloat,
    K: FnOnce(
        &ArrayRef2<F>,
        &longtail::Targets<'_, F>,
        Option<&mut ArrayRef1<F>>,
        Option<&mut ArrayRef2<F>>,
    ) -> longtail::Result<F>,
{
    let logits = contiguous_logits::<F>(logits)?;
    let (rows, classes) = logits.dims2()?;
    let track = logits.track_op();
    let (values, grad) = with_batch(&logits, targets, |z: &ArrayRef2<F>, t: &longtail::Targets<'_, F>| {
        // The core overwrites every entry of the gradient; zeroed pages cost no pass of their own.
        let mut grad = vec![F::zero(); if track { rows * classes } else { 0 }];
        let mut view = if track {
            Some(
                ArrayViewMut2::from_shape((rows, classes), &mut grad[..])
                    .map_err(candle_core::Error::wrap)?,
            )
        } else {
            None
        };
        let values = match output {
            Output::PerSample => {
                let mut losses = vec![F::zero(); rows];
                kernel(z, t, Some(&mut ArrayViewMut1::from(&mut losses[..])), view.as_deref_mut())
                    .map_err(candle_core::Error::wrap)?;
                losses
            }
            Output::Reduced => {
                vec![kernel(z, t, None, view.as_deref_mut()).map_err(candle_core::Error::wrap)?]
            }
        };
        Ok((values, track.then_some(grad)))
    })?;
    let value = match output {
        Output::PerSample => Tensor::from_vec(values, rows, logits.device())?,
        Output::Reduced => Tensor::from_vec(values, (), logits.device())?,
    };
    match grad {
        None => Ok(value),
        Some(grad) => {
            let grad = Tensor::from_vec(grad, (rows, classes), logits.device())?;
            logits.apply_op1(Backward { value, grad })
        }
    }
}

/// `[B, K]` logits of the loss's float type on the CPU, contiguous (a copy only if they are not).
pub(crate) fn contiguous_logits<F: CandleFloat>(logits: &Tensor) -> Result<Tensor> {
    read::check_cpu("logits", logits)?;
    read::check_dtype::<F>("logits", logits)?;
    if logits.rank() != 2 {
        bail!("{NAME}: the logits must be a [B, K] tensor, got shape {:?}", logits.dims());
    }
    logits.contiguous()
}

/// Checks the targets, then calls `call` once with the core's view of the batch: the logits and
/// targets read from candle's contiguous CPU storage in place (inside a candle custom op's
/// `cpu_fwd`, so under candle's own storage locks).
pub(crate) fn with_batch<F, R, C>(logits: &Tensor, targets: TensorTargets<'_>, call: C) -> Result<R>
where
    F: CandleFloat,
    C: FnOnce(&ArrayRef2<F>, &longtail::Targets<'_, F>) -> Result<R>,
{
    let logits = contiguous_logits::<F>(logits)?;
    let what = targets.kind.describe();
    read::check_cpu(what, targets.targets)?;
    match targets.kind {
        TargetKind::Labels => read::check_labels(what, targets.targets)?,
        TargetKind::Probs | TargetKind::MultiHot => {
            read::check_dtype::<F>(what, targets.targets)?;
            read::check_rank(what, targets.targets, 2, "[B, K]")?;
        }
    }
    if let Some(weights) = targets.sample_weights {
        read::check_cpu("sample weights", weights)?;
        read::check_dtype::<F>("sample weights", weights)?;
        read::check_rank("sample weights", weights, 1, "[B]")?;
    }
    let target_tensor = targets.targets.contiguous()?;
    let weights = targets.sample_weights.map(Tensor::contiguous).transpose()?;
    let reader = Reader {
        kind: targets.kind,
        call: RefCell::new(Some(call)),
        out: RefCell::new(None),
        float: PhantomData,
    };
    match &weights {
        None => logits.apply_op2_no_bwd(&target_tensor, &reader)?,
        Some(weights) => logits.apply_op3_no_bwd(&target_tensor, weights, &reader)?,
    };
    match reader.out.into_inner() {
        Some(out) => out,
        None => bail!("{NAME}: the CPU kernel did not run"),
    }
}

/// A candle custom op whose CPU forward pass hands candle's storage to the core, once.
struct Reader<F, R, C> {
    kind: TargetKind,
    call: RefCell<Option<C>>,
    out: RefCell<Option<Result<R>>>,
    float: PhantomData<F>,
}

impl<F, R, C> Reader<F, R, C>
where
    F: CandleFloat,
    C: FnOnce(&ArrayRef2<F>, &longtail::Targets<'_, F>) -> Result<R>,
{
    fn run(
        &self,
        (logits, logits_layout): (&CpuStorage, &Layout),
        targets: (&CpuStorage, &Layout),
        weights: Option<(&CpuStorage, &Layout)>,
    ) -> Result<(CpuStorage, Shape)> {
        let logits: ArrayView2<'_, F> = read::view2(logits, logits_layout)?;
        let mut converted = Vec::new();
        let core_targets = read::core_targets(self.kind, targets, weights, &mut converted)?;
        let Some(call) = self.call.borrow_mut().take() else { bail!("{NAME}: the CPU kernel ran twice") };
        *self.out.borrow_mut() = Some(call(&logits, &core_targets));
        // The result travels in `out`; candle gets an empty tensor.
        Ok((F::to_cpu_storage_owned(Vec::new()), Shape::from(0)))
    }
}

impl<F, R, C> CustomOp2 for Reader<F, R, C>
where
    F: CandleFloat,
    C: FnOnce(&ArrayRef2<F>, &longtail::Targets<'_, F>) -> Result<R>,
{
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), None)
    }
}

impl<F, R, C> CustomOp3 for Reader<F, R, C>
where
    F: CandleFloat,
    C: FnOnce(&ArrayRef2<F>, &longtail::Targets<'_, F>) -> Result<R>,
{
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        self.run((s1, l1), (s2, l2), Some((s3, l3)))
    }
}

/// The graph node: the loss value computed on candle's storage, and the gradient kept with it.
struct Backward {
    value: Tensor,
    grad: Tensor,
}

impl CustomOp1 for Backward {
    fn name(&self) -> &'static str {
        NAME
    }

    fn cpu_fwd(&self, _logits: &CpuStorage, _layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (storage, _) = self.value.storage_and_layout();
        match &*storage {
            candle_core::Storage::Cpu(values) => Ok((values.clone(), self.value.shape().clone())),
            _ => bail!("{NAME}: the loss value is not in host memory"),
        }
    }

    fn bwd(&self, _logits: &Tensor, _loss: &Tensor, grad_loss: &Tensor) -> Result<Option<Tensor>> {
        let grad = match grad_loss.rank() {
            // `loss.backward()` starts from 1: the kept gradient is the answer, shared, not copied.
            0 if grad_loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()? == 1.0 => self.grad.clone(),
            0 => self.grad.broadcast_mul(grad_loss)?,
            _ => self.grad.broadcast_mul(&grad_loss.unsqueeze(1)?)?,
        };
        Ok(Some(grad))
    }
}
