//! The softmax family in burn tensor ops, for any backend: the core's formulas, evaluated on the
//! logits' own device, with the analytic gradient attached to the graph (autodiff never
//! differentiates through them).
//!
//! With `z' = z + τ·log π`, `p = softmax(z')`, `t' = (1 − ε)·t + ε/K`, `a_k = w_k·α_k` and sample
//! weights `s_i` (see [`longtail::SoftmaxLoss`]):
//!
//! ```text
//! c_ik = s_i · a_k · t'_ik · (1 − p_ik)^γ
//! ℓ_i  = Σ_k c_ik · (−log p_ik)
//! h_ik = c_ik · (1 − γ·p_ik·log p_ik / (1 − p_ik))       (h = c when γ = 0)
//! ∂ℓ_i/∂z_ij = (Σ_k h_ik)·p_ij − h_ij
//! L = Σ_i ℓ_i / D,   D = Σ_i s_i·w_{y_i} (labels), Σ_i s_i (probabilities), 1 for `Sum`
//! ```
//!
//! Validation differs from the core's in how much it says, not in what it accepts: labels are
//! read back (`B` integers) and checked on the host, and one read-back of three scalars per call
//! (the loss sum, `D`, and a violation count of the probability targets and sample weights)
//! turns a NaN, an infinity, a negative weight or target, or a probability row off 1 into an
//! error naming the tensor (the CPU path names the row and class). `-inf` logits, which the core
//! accepts as class masks, are rejected here.

use burn::tensor::{Tensor, TensorData};
use longtail::{Loss, Reduction, SoftmaxLoss};

use crate::op::{attach, check_dtype};
use crate::targets::{TargetKind, read_labels};
use crate::{Element, Error, Result, Targets};

fn f64_of<F: Element>(x: F) -> f64 {
    burn::tensor::ElementConversion::elem::<f64>(x)
}

/// A class vector `[K]` as a `[1, K]` tensor on the device, in the loss's float type.
fn class_row<F: Element>(values: &[F], device: &burn::tensor::Device) -> Tensor<2> {
    Tensor::<2>::from_data(TensorData::new(values.to_vec(), [1, values.len()]), (device, F::DTYPE))
}

/// The loss as a `[1]` tensor on the logits' device, its analytic gradient attached.
pub(crate) fn softmax_forward<F: Element>(
    loss: &SoftmaxLoss<F>,
    logits: Tensor<2>,
    targets: &Targets,
) -> Result<Tensor<1>> {
    let device = logits.device();
    let [batch, classes] = logits.dims();
    if batch == 0 {
        return Err(longtail::Error::EmptyBatch.into());
    }
    if classes == 0 {
        return Err(longtail::Error::NoClasses.into());
    }
    let z = logits.clone().detach();
    // Targets t [B, K], and each row's class weight w_{y_i} for the mean's denominator.
    let (t, labels_one_hot) = match &targets.kind {
        TargetKind::Labels(l) => {
            let labels = read_labels(l)?;
            if labels.len() != batch {
                return Err(shape_error("labels", vec![batch], vec![labels.len()]));
            }
            if let Some((row, &label)) = labels.iter().enumerate().find(|&(_, &y)| y >= classes) {
                return Err(longtail::Error::LabelOutOfRange { row, label, classes }.into());
            }
            let one_hot = l.clone().one_hot::<2>(classes).float().cast(F::DTYPE);
            (one_hot, true)
        }
        TargetKind::MultiHot(_) => unreachable!("multi-hot targets take the host path"),
        TargetKind::Probs(p) => {
            check_dtype::<F>(p.dtype(), "probs")?;
            if p.dims() != [batch, classes] {
                return Err(shape_error("targets", vec![batch, classes], p.dims().to_vec()));
            }
            (p.clone().detach(), false)
        }
    };
    let s = match &targets.sample_weights {
        Some(w) => {
            check_dtype::<F>(w.dtype(), "sample_weights")?;
            if w.dims() != [batch] {
                return Err(shape_error("sample_weights", vec![batch], w.dims().to_vec()));
            }
            Some(w.clone().detach().reshape([batch, 1]))
        }
        None => None,
    };

    let z_adj = match loss.logit_adjustment() {
        Some(adjustment) => z + class_row(adjustment, &device),
        None => z,
    };
    let x = z_adj.clone() - z_adj.max_dim(1);
    let lse = x.clone().exp().sum_dim(1).log();
    let log_p = x - lse;
    let p = log_p.clone().exp();

    let epsilon = f64_of(loss.label_smoothing());
    let t_smooth = if epsilon > 0.0 {
        t.clone().mul_scalar(1.0 - epsilon).add_scalar(epsilon / classes as f64)
    } else {
        t.clone()
    };
    let class_factor: Option<Vec<F>> = match (loss.class_weights(), loss.alpha()) {
        (Some(w), Some(a)) => Some(w.iter().zip(a).map(|(&w, &a)| w * a).collect()),
        (Some(w), None) => Some(w.to_vec()),
        (None, Some(a)) => Some(a.to_vec()),
        (None, None) => None,
    };
    let mut c = t_smooth;
    if let Some(a) = &class_factor {
        c = c * class_row(a, &device);
    }
    if let Some(s) = &s {
        c = c * s.clone();
    }
    let gamma = f64_of(loss.gamma());
    let h = if gamma == 0.0 {
        c
    } else {
        let tiny = f64_of(F::min_positive_value());
        let q = p.clone().neg().add_scalar(1.0).clamp_min(tiny);
        let modulated = c * q.clone().powf_scalar(gamma);
        // 1 − γ·p·log p / (1 − p)
        let factor = (p.clone() * log_p.clone() / q).mul_scalar(-gamma).add_scalar(1.0);
        // The loss uses the modulated coefficient; the gradient its product with the factor.
        let loss_sum = (modulated.clone() * log_p.clone().neg()).sum();
        return finish::<F>(loss, logits, (t, labels_one_hot), s, p, modulated * factor, loss_sum);
    };
    let loss_sum = (h.clone() * log_p.neg()).sum();
    finish::<F>(loss, logits, (t, labels_one_hot), s, p, h, loss_sum)
}

/// The mean's denominator, the one read-back (loss sum, `D`, violations), the reduced loss and
/// the gradient `(Σ_k h_k)·p − h`, scaled by `1/D`.
#[allow(clippy::too_many_arguments)]
fn finish<F: Element>(
    loss: &SoftmaxLoss<F>,
    logits: Tensor<2>,
    (t, hard): (Tensor<2>, bool),
    s: Option<Tensor<2>>,
    p: Tensor<2>,
    h: Tensor<2>,
    loss_sum: Tensor<1>,
) -> Result<Tensor<1>> {
    let device = logits.device();
    let [batch, _] = logits.dims();
    let ones =
        || Tensor::<2>::from_data(TensorData::new(vec![F::one(); batch], [batch, 1]), (&device, F::DTYPE));
    let s_col = s.clone().unwrap_or_else(ones);
    let denominator = match loss.reduction() {
        Reduction::Sum => Tensor::<1>::from_data(TensorData::new(vec![F::one()], [1]), (&device, F::DTYPE)),
        Reduction::Mean if hard => match loss.class_weights() {
            Some(w) => ((t.clone() * class_row(w, &device)).sum_dim(1) * s_col).sum(),
            None => s_col.sum(),
        },
        Reduction::Mean => s_col.sum(),
    };
    // Violations: negative or non-finite sample weights (a NaN or inf makes the count NaN or
    // inf too); negative probability targets or rows off 1 by more than √ε (the core's tolerance).
    let zero = || Tensor::<1>::from_data(TensorData::new(vec![F::zero()], [1]), (&device, F::DTYPE));
    let bad_weights = match &s {
        Some(s) => s.clone().neg().clamp_min(0.0).sum() + s.clone().sum().mul_scalar(0.0),
        None => zero(),
    };
    let bad_probs = if hard {
        zero()
    } else {
        let tolerance = f64_of(F::epsilon().sqrt());
        let off = t.clone().sum_dim(1).add_scalar(-1.0).abs().add_scalar(-tolerance).clamp_min(0.0).sum();
        t.neg().clamp_min(0.0).sum() + off
    };
    let read = Tensor::cat(vec![loss_sum.clone(), denominator, bad_weights, bad_probs], 0).to_data();
    let values = read.convert::<f64>().try_into_vec::<f64>().map_err(|e| Error::Read(format!("{e:?}")))?;
    let (sum, d) = (values[0], values[1]);
    let clean = |v: f64| v.is_finite() && v == 0.0;
    if !clean(values[2]) {
        return Err(Error::Invalid { tensor: "sample_weights" });
    }
    if !clean(values[3]) {
        return Err(Error::Invalid { tensor: "probs" });
    }
    if !sum.is_finite() || !d.is_finite() {
        return Err(Error::NonFinite { tensor: "logits" });
    }
    let scale = if d > 0.0 { 1.0 / d } else { 0.0 };
    let value = loss_sum.mul_scalar(scale);
    let row_sum = h.clone().sum_dim(1);
    let grad = (row_sum * p - h).mul_scalar(scale);
    Ok(attach(value, logits, grad))
}

fn shape_error(name: &'static str, expected: Vec<usize>, found: Vec<usize>) -> Error {
    longtail::Error::ShapeMismatch { name, expected, found }.into()
}
