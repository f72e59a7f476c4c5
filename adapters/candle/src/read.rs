//! Candle tensors as the core's arrays: checks, and views of contiguous CPU storage in place.

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor, WithDType, bail};
use longtail::Targets;
use longtail::ndarray::{ArrayView1, ArrayView2};

use crate::targets::TargetKind;

/// The float types a loss runs in, in the core and in candle: `f32` and `f64`.
pub trait CandleFloat: longtail::Float + WithDType {}

impl CandleFloat for f32 {}
impl CandleFloat for f64 {}

/// A tensor on another device is an error: the core reads host memory.
pub(crate) fn check_cpu(what: &str, tensor: &Tensor) -> Result<()> {
    if !tensor.device().is_cpu() {
        bail!(
            "longtail-candle runs on the CPU device; the {what} are on {:?}: move them with `.to_device(&Device::Cpu)`",
            tensor.device().location()
        );
    }
    Ok(())
}

pub(crate) fn check_dtype<F: WithDType>(what: &str, tensor: &Tensor) -> Result<()> {
    if tensor.dtype() != F::DTYPE {
        bail!("the loss runs in {:?}, the {what} are {:?}", F::DTYPE, tensor.dtype());
    }
    Ok(())
}

pub(crate) fn check_rank(what: &str, tensor: &Tensor, rank: usize, shape: &str) -> Result<()> {
    if tensor.rank() != rank {
        bail!("the {what} must be a {shape} tensor, got shape {:?}", tensor.dims());
    }
    Ok(())
}

/// Labels are a `[B]` tensor of `u32` or `i64`.
pub(crate) fn check_labels(what: &str, tensor: &Tensor) -> Result<()> {
    if !matches!(tensor.dtype(), DType::U32 | DType::I64) {
        bail!("the {what} must be u32 or i64, got {:?}", tensor.dtype());
    }
    check_rank(what, tensor, 1, "[B]")
}

/// The contiguous part of a storage that a layout describes, in place.
fn slice<'s, T: WithDType>(storage: &'s CpuStorage, layout: &Layout) -> Result<&'s [T]> {
    let data = T::cpu_storage_as_slice(storage)?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("longtail-candle reads contiguous tensors only, got strides {:?}", layout.stride()),
    }
}

/// A `[B, K]` view of contiguous storage, in place.
pub(crate) fn view2<'s, F: CandleFloat>(
    storage: &'s CpuStorage,
    layout: &Layout,
) -> Result<ArrayView2<'s, F>> {
    let (rows, cols) = layout.shape().dims2()?;
    ArrayView2::from_shape((rows, cols), slice::<F>(storage, layout)?).map_err(candle_core::Error::wrap)
}

/// A `[B]` view of contiguous storage, in place.
pub(crate) fn view1<'s, F: CandleFloat>(
    storage: &'s CpuStorage,
    layout: &Layout,
) -> Result<ArrayView1<'s, F>> {
    let rows = layout.shape().dims1()?;
    ArrayView1::from_shape(rows, slice::<F>(storage, layout)?).map_err(candle_core::Error::wrap)
}

/// `i64` labels as class indices; a negative label is an error naming its row.
fn convert_i64(labels: &[i64], out: &mut Vec<usize>) -> Result<()> {
    out.clear();
    out.reserve(labels.len());
    for (row, &label) in labels.iter().enumerate() {
        match usize::try_from(label) {
            Ok(label) => out.push(label),
            Err(_) => bail!("label {label} at row {row} is not a class index"),
        }
    }
    Ok(())
}

/// Labels as the core takes them: `u32` in place, `i64` converted into `converted`.
fn core_labels<'s>(
    (storage, layout): (&'s CpuStorage, &Layout),
    converted: &'s mut Vec<usize>,
) -> Result<longtail::Labels<'s>> {
    match storage {
        CpuStorage::U32(_) => Ok(ArrayView1::from(slice::<u32>(storage, layout)?).into()),
        CpuStorage::I64(_) => {
            convert_i64(slice::<i64>(storage, layout)?, converted)?;
            Ok(ArrayView1::from(&converted[..]).into())
        }
        _ => bail!("the labels must be u32 or i64"),
    }
}

/// The core's targets over candle's storage: rows of `F` and `u32` labels in place.
pub(crate) fn core_targets<'s, F: CandleFloat>(
    kind: TargetKind,
    targets: (&'s CpuStorage, &'s Layout),
    weights: Option<(&'s CpuStorage, &'s Layout)>,
    converted: &'s mut Vec<usize>,
) -> Result<Targets<'s, F>> {
    let core = match kind {
        TargetKind::Labels => Targets::labels(core_labels(targets, converted)?),
        TargetKind::Probs => Targets::probs(view2::<F>(targets.0, targets.1)?),
        TargetKind::MultiHot => Targets::multi_hot(view2::<F>(targets.0, targets.1)?),
    };
    Ok(match weights {
        Some((weights, layout)) => core.with_sample_weights(view1::<F>(weights, layout)?),
        None => core,
    })
}

/// A CPU tensor's contiguous data, read in place by `f` (a non-contiguous tensor is copied
/// first).
pub(crate) fn with_slice<T: WithDType, R>(
    what: &str,
    tensor: &Tensor,
    f: impl FnOnce(&[T]) -> Result<R>,
) -> Result<R> {
    check_cpu(what, tensor)?;
    check_dtype::<T>(what, tensor)?;
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice::<T>(cpu, layout)?),
        _ => bail!("the {what} are not in host memory"),
    }
}

/// A `[B]` label tensor (`u32` or `i64`) as class indices.
pub(crate) fn labels(what: &str, tensor: &Tensor) -> Result<Vec<usize>> {
    check_cpu(what, tensor)?;
    check_labels(what, tensor)?;
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => match cpu {
            CpuStorage::U32(_) => Ok(slice::<u32>(cpu, layout)?.iter().map(|&l| l as usize).collect()),
            _ => {
                let mut converted = Vec::new();
                convert_i64(slice::<i64>(cpu, layout)?, &mut converted)?;
                Ok(converted)
            }
        },
        _ => bail!("the {what} are not in host memory"),
    }
}
