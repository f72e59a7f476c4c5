//! Checks of a loss's parameters and of a batch against a loss, all done before anything is written.

use ndarray::{ArrayRef1, ArrayRef2, ArrayView1};

use super::class_values::ClassValues;
use super::softmax_loss::{SoftmaxLoss, one_hot};
use super::targets::{RowKind, TargetKind, Targets};
use crate::error::check_shape;
use crate::float::BLOCK;
use crate::simd::{Kernel, dispatch};
use crate::softmax::check_logits;
use crate::{Error, Float, Result};

/// Copies a per-class parameter after checking every entry (finite, and `valid`).
pub(super) fn class_vector<'a, F: Float>(
    name: &'static str,
    values: impl Into<ClassValues<'a, F>>,
    expected: &'static str,
    valid: impl Fn(F) -> bool,
) -> Result<Vec<F>> {
    let values = values.into().0;
    match values.iter().position(|&v| !(v.is_finite() && valid(v))) {
        Some(i) => Err(Error::InvalidParameter { name, index: Some(i), value: values[i].as_f64(), expected }),
        None => Ok(values.to_vec()),
    }
}

/// A caller's output buffer for the shape checks: `(name, expected shape, shape)`.
pub(super) type OutputShape<'s> = (&'static str, &'s [usize], &'s [usize]);

/// The shapes of the optional output buffers of a call on `logits`, `losses_out` (`[B]`) before
/// `grad_out` (`[B, K]`); a buffer not given is listed with the shape it would need, so it passes.
pub(super) fn output_shapes<'s, F>(
    logits: &'s ArrayRef2<F>,
    losses_out: Option<&'s ArrayRef1<F>>,
    grad_out: Option<&'s ArrayRef2<F>>,
) -> [OutputShape<'s>; 2] {
    let rows = &logits.shape()[..1];
    [
        ("losses_out", rows, losses_out.map_or(rows, |l| l.shape())),
        ("grad_out", logits.shape(), grad_out.map_or(logits.shape(), |g| g.shape())),
    ]
}

/// [`Error::UnsupportedTargets`] for `loss` given targets of a kind it does not take.
pub(super) fn unsupported<F>(
    loss: &'static str,
    expected: &'static str,
    targets: &TargetKind<'_, F>,
) -> Error {
    Error::UnsupportedTargets { loss, expected, found: targets.name() }
}

/// `(B, K)` of a `[B, K]` batch: [`Error::EmptyBatch`] for `B = 0`, then
/// [`Error::NoClasses`] for `K = 0`.
pub(super) fn batch_dims<F>(logits: &ArrayRef2<F>) -> Result<(usize, usize)> {
    match logits.dim() {
        (0, _) => Err(Error::EmptyBatch),
        (_, 0) => Err(Error::NoClasses),
        dims => Ok(dims),
    }
}

/// Per-sample weights, if any: `[B]` ([`Error::ShapeMismatch`]), each finite and `≥ 0`
/// ([`Error::InvalidSampleWeight`] names the first row that is not).
/// `Err(LabelOutOfRange)` for the first label `≥ classes`. A contiguous batch is first checked by
/// its largest label, in a loop that vectorises; only a bad batch is searched for the row.
pub(super) fn check_labels(labels: &ArrayRef1<usize>, classes: usize) -> Result<()> {
    // An `|` of comparisons, which vectorises (a `max` of `usize` does not in AVX2); the culprit
    // is searched for only when there is one.
    let out_of_range = |y: &usize| *y >= classes;
    let any_bad = match labels.as_slice() {
        Some(labels) => labels.iter().fold(false, |bad, y| bad | out_of_range(y)),
        None => labels.iter().fold(false, |bad, y| bad | out_of_range(y)),
    };
    if !any_bad {
        return Ok(());
    }
    let row = labels.iter().position(out_of_range).expect("a label is out of range");
    Err(Error::LabelOutOfRange { row, label: labels[row], classes })
}

pub(super) fn check_sample_weights<F: Float>(
    weights: Option<&ArrayView1<'_, F>>,
    batch: usize,
) -> Result<()> {
    let Some(weights) = weights else { return Ok(()) };
    check_shape("sample_weights", &[batch], weights.shape())?;
    match weights.iter().position(|&w| !(w.is_finite() && w >= F::zero())) {
        Some(row) => Err(Error::InvalidSampleWeight { row, value: weights[row].as_f64() }),
        None => Ok(()),
    }
}

impl<F: Float> SoftmaxLoss<F> {
    /// Validates a batch in the order documented on
    /// [`Loss::loss_into`](super::Loss::loss_into) for [`SoftmaxLoss`], the logits last.
    /// `loss` names the loss for errors; `outputs` holds the caller's output buffers as `(name, expected shape, shape)`. Returns the
    /// sum of each probability row, which the kernel needs and the check has just computed (empty
    /// for labels).
    pub(super) fn check_batch(
        &self,
        loss: &'static str,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<Vec<F>> {
        let prob_sums = self.check_targets(loss, logits, targets, outputs)?;
        self.check_logits(logits, targets)?;
        Ok(prob_sums)
    }

    /// The logits' part of [`check_batch`](Self::check_batch), in one pass of its own.
    pub(super) fn check_logits(&self, logits: &ArrayRef2<F>, targets: &Targets<F>) -> Result<()> {
        let classes = logits.ncols();
        check_logits(logits, self.adjustment.as_deref(), |row, class| {
            self.masks_target(targets, classes, row, class)
        })
    }

    /// [`check_batch`](Self::check_batch) but for the logits, which the kernel checks row by row
    /// as it reads them.
    pub(super) fn check_targets(
        &self,
        loss: &'static str,
        logits: &ArrayRef2<F>,
        targets: &Targets<F>,
        outputs: &[(&'static str, &[usize], &[usize])],
    ) -> Result<Vec<F>> {
        let (batch, classes) = batch_dims(logits)?;
        for (name, values) in
            [("prior", &self.adjustment), ("class_weights", &self.class_weights), ("alpha", &self.alpha)]
        {
            if let Some(values) = values {
                check_shape(name, &[classes], &[values.len()])?;
            }
        }
        match &targets.kind {
            TargetKind::Labels(labels) => check_shape("labels", &[batch], labels.shape())?,
            TargetKind::Rows(probs, RowKind::Probs) => {
                check_shape("targets", &[batch, classes], probs.shape())?
            }
            kind @ TargetKind::Rows(_, RowKind::MultiHot) => {
                return Err(unsupported(loss, "hard labels or probability targets", kind));
            }
        }
        for &(name, expected, found) in outputs {
            check_shape(name, expected, found)?;
        }
        check_sample_weights(targets.sample_weights.as_ref(), batch)?;
        match &targets.kind {
            TargetKind::Labels(labels) => {
                check_labels(labels, classes)?;
                Ok(Vec::new())
            }
            TargetKind::Rows(probs, _) => check_probs(probs.view()),
        }
    }

    /// Whether a `-inf` logit of `class` in `row` is an error rather than a mask: the class has
    /// target mass in a row that counts (positive sample weight and class factor `w_k·α_k`).
    #[inline]
    pub(super) fn masks_target(
        &self,
        targets: &Targets<F>,
        classes: usize,
        row: usize,
        class: usize,
    ) -> bool {
        let t = match &targets.kind {
            TargetKind::Labels(labels) => one_hot(labels[row] == class),
            TargetKind::Rows(probs, _) => probs[[row, class]],
        };
        // Each factor on its own: their product may underflow where the loss is still infinite.
        targets.sample_weight(row) > F::zero()
            && self.class_factor_positive(class)
            && (t > F::zero() || self.smoothing(classes).spread() > F::zero())
    }
}

/// Probability targets: entries finite and `≥ 0`, rows summing to 1 within `√ε`. Returns the sum
/// of each row (computed in `f64`, rounded to `F`).
fn check_probs<F: Float>(probs: ndarray::ArrayView2<'_, F>) -> Result<Vec<F>> {
    struct Check<'a, F>(ndarray::ArrayView2<'a, F>);
    impl<F: Float> Kernel for Check<'_, F> {
        type Output = Result<Vec<F>>;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> Result<Vec<F>> {
            probs_rows(self.0)
        }
    }
    dispatch(Check(probs))
}

/// [`check_probs`], compiled for the instruction set [`dispatch`] picks.
#[inline(always)]
fn probs_rows<F: Float>(probs: ndarray::ArrayView2<'_, F>) -> Result<Vec<F>> {
    let tolerance = F::epsilon().sqrt().as_f64();
    let mut sums = Vec::with_capacity(probs.nrows());
    for (row, t) in probs.rows().into_iter().enumerate() {
        // The common row passes a branch-free scan; any other is checked one entry at a time.
        if let Some(sum) = t.as_slice().and_then(|t| passing_sum(t, tolerance)) {
            sums.push(F::from_f64(sum));
            continue;
        }
        if let Some(class) = t.iter().position(|&v| !(v.is_finite() && v >= F::zero())) {
            return Err(Error::InvalidTarget { row, class, value: t[class].as_f64() });
        }
        let sum = t.iter().fold(0.0_f64, |acc, v| acc + v.as_f64());
        if (sum - 1.0).abs() > tolerance {
            return Err(Error::TargetSum { row, sum, tolerance });
        }
        sums.push(F::from_f64(sum));
    }
    Ok(sums)
}

/// `Σ t` if every entry of `t` is `≥ 0` and the sum is within `tolerance` of 1, by a branch-free
/// scan in lanes: the lanes' minimum finds a negative entry, and a NaN or `inf` one makes the sum
/// fail.
/// The sum runs in `F` lanes over blocks of [`BLOCK`], the blocks added in `f64`; its rounding
/// error stays below [`SUM_SLACK`]`·ε`, so a row that close to the tolerance fails here and gets the
/// caller's exact check.
#[inline(always)]
fn passing_sum<F: Float>(t: &[F], tolerance: f64) -> Option<f64> {
    // Two accumulators of each lane stay in registers, in f64 too.
    const LANES: usize = 16;
    let mut min = [F::zero(); LANES];
    let mut total = 0.0_f64;
    for block in t.chunks(BLOCK) {
        let mut sums = [F::zero(); LANES];
        let chunks = block.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            sums.iter_mut().zip(&mut min).zip(chunk).for_each(|((s, m), &v)| add(s, m, v));
        }
        sums.iter_mut().zip(&mut min).zip(tail).for_each(|((s, m), &v)| add(s, m, v));
        total += sums.iter().fold(0.0, |sum, &s| sum + s.as_f64());
    }
    let slack = SUM_SLACK * F::epsilon().as_f64();
    let passes = min.iter().all(|&m| m >= F::zero()) && (total - 1.0).abs() <= tolerance - slack;
    passes.then_some(total)
}

/// A bound on the rounding error of the sum of [`passing_sum`], in units of `ε`: each lane adds at
/// most `BLOCK / 16` entries, then the lanes are added (and the sum is near 1 where it matters).
const SUM_SLACK: f64 = 512.0;

/// One entry of [`passing_sum`] into its lane: the sum and the minimum.
#[inline(always)]
fn add<F: Float>(sum: &mut F, min: &mut F, v: F) {
    *sum += v;
    *min = if v < *min { v } else { *min };
}
