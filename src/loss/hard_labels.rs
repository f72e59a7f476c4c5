//! The shared path of the hard-label margin losses: validating a labelled batch, and reducing rows
//! with PyTorch's weighted mean.

use ndarray::{ArrayRef2, ArrayView1};

use super::Reduction;
use super::targets::{TargetKind, Targets};
use crate::error::check_shape;
use crate::rows::for_each_row;
use crate::softmax::is_nan_or_pos_inf;
use crate::{Float, LossError, Result};

/// A validated batch of hard labels: the labels, the targets they came from, and the class weights.
pub(super) struct LabelledBatch<'t, 'w, F> {
    pub labels: ArrayView1<'t, usize>,
    pub targets: &'w Targets<'t, F>,
    pub class_weights: Option<&'w [F]>,
}

impl<'t, 'w, F: Float> LabelledBatch<'t, 'w, F> {
    /// Validates everything but the logits' values, in the documented order: [`LossError::EmptyBatch`],
    /// [`LossError::NoClasses`]; [`LossError::ShapeMismatch`] for `class_weights` and the other
    /// per-class parameters in `params` (`(name, shape)`, each axis of length `K`); [`LossError::LabelsRequired`] for
    /// probability targets; [`LossError::ShapeMismatch`] for `labels`, the `outputs` and
    /// `sample_weights`; [`LossError::InvalidSampleWeight`]; [`LossError::LabelOutOfRange`].
    pub fn new(
        loss: &'static str,
        logits: &ArrayRef2<F>,
        targets: &'w Targets<'t, F>,
        class_weights: Option<&'w [F]>,
        params: &[(&'static str, &[usize])],
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<Self> {
        let (batch, classes) = logits.dim();
        if batch == 0 {
            return Err(LossError::EmptyBatch);
        }
        if classes == 0 {
            return Err(LossError::NoClasses);
        }
        if let Some(w) = class_weights {
            check_shape("class_weights", &[classes], &[w.len()])?;
        }
        for &(name, shape) in params {
            check_shape(name, &vec![classes; shape.len()], shape)?;
        }
        let TargetKind::Labels(labels) = &targets.kind else {
            return Err(LossError::LabelsRequired { loss });
        };
        check_shape("labels", &[batch], labels.shape())?;
        for &(name, expected, found) in outputs {
            check_shape(name, expected, found)?;
        }
        if let Some(weights) = &targets.sample_weights {
            check_shape("sample_weights", &[batch], weights.shape())?;
            if let Some(row) = weights.iter().position(|&w| !(w.is_finite() && w >= F::zero())) {
                return Err(LossError::InvalidSampleWeight { row, value: weights[row].as_f64() });
            }
        }
        if let Some(row) = labels.iter().position(|&y| y >= classes) {
            return Err(LossError::LabelOutOfRange { row, label: labels[row], classes });
        }
        Ok(Self { labels: *labels, targets, class_weights })
    }

    /// The coefficient `s_i·w_{y_i}` of row `i`.
    #[inline]
    pub fn coefficient(&self, i: usize) -> F {
        let w = self.class_weights.map_or(F::one(), |w| w[self.labels[i]]);
        self.targets.sample_weight(i) * w
    }

    /// Checks the logits in row-major order: [`LossError::NonFiniteLogit`] for a NaN or `+inf`
    /// logit, or a finite one whose `transformed(row, class, z)` is not finite;
    /// [`LossError::MaskedTarget`] for a `-inf` label logit in a row that counts.
    pub fn check_logits(
        &self,
        logits: &ArrayRef2<F>,
        transformed: impl Fn(usize, usize, F) -> F,
    ) -> Result<()> {
        for (row, z) in logits.rows().into_iter().enumerate() {
            for (class, &v) in z.iter().enumerate() {
                if is_nan_or_pos_inf(v) || (v.is_finite() && !transformed(row, class, v).is_finite()) {
                    return Err(LossError::NonFiniteLogit { row, class, value: v.as_f64() });
                }
                if v == F::neg_infinity() && class == self.labels[row] && self.coefficient(row) > F::zero() {
                    return Err(LossError::MaskedTarget { row, class });
                }
            }
        }
        Ok(())
    }

    /// The reduced loss: `row(i, z_i, y_i, c_i, scale, grad_i)` returns `ℓ_i` and writes
    /// `scale·∂ℓ_i/∂z_i`; the mean divides by `Σ_i s_i·w_{y_i}` (PyTorch's weighted mean), and a
    /// zero divisor gives loss 0 and gradient 0.
    pub fn reduced(
        &self,
        logits: &ArrayRef2<F>,
        reduction: Reduction,
        grad_out: Option<&mut ArrayRef2<F>>,
        mut row: impl FnMut(usize, &[F], usize, F, F, &mut [F]) -> F,
    ) -> F {
        let divisor = match reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => (0..self.labels.len()).map(|i| self.coefficient(i).as_f64()).sum(),
        };
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return F::zero();
        }
        let scale = F::from_f64(divisor.recip());
        let mut total = 0.0_f64;
        for_each_row(logits, grad_out, |i, z, grad| {
            total += row(i, z, self.labels[i], self.coefficient(i), scale, grad).as_f64();
        });
        F::from_f64(total / divisor)
    }
}

impl<F: Float> LabelledBatch<'_, '_, F> {
    /// Every row's loss `ℓ_i` (sample and class weights applied), from `row` as in
    /// [`reduced`](Self::reduced) with scale 1.
    pub fn per_sample(
        &self,
        logits: &ArrayRef2<F>,
        mut row: impl FnMut(usize, &[F], usize, F, F, &mut [F]) -> F,
    ) -> ndarray::Array1<F> {
        let mut losses = ndarray::Array1::zeros(logits.nrows());
        for_each_row(logits, None, |i, z, grad| {
            losses[i] = row(i, z, self.labels[i], self.coefficient(i), F::one(), grad);
        });
        losses
    }
}
