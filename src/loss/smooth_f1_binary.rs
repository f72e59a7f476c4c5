//! Smooth-F1-weighted binary cross-entropy: positives and negatives weighted by the batch's soft F1.

use ndarray::{Array1, ArrayRef1};

use super::Reduction;
use super::binary_rows::{Logistic, contiguous, for_rows, for_sigmoids, with_slice_mut};
use super::binary_targets::BinaryTargets;
use super::f1_stats::F1Stats;
use crate::error::check_shape;
use crate::float::{LANES, lane_sum};
use crate::simd::{Kernel, dispatch};
use crate::{Float, Result};

/// Binary cross-entropy weighted by the batch's soft F1 (Su 2020), with the exact gradient with
/// respect to the logits (F1 held constant).
///
/// Logits `s` are `[B]`, targets `y ∈ [0, 1]` with optional sample weights `s_i`
/// ([`BinaryTargets`]). With `σ` the logistic function:
///
/// ```text
/// F1  = 2·Σ_i s_i y_i σ(s_i) / Σ_i s_i (y_i + σ(s_i))        over the batch (0 if the sum is 0)
/// ℓ_i = −s_i·[ y_i (1 − F1/2) log σ(s_i) + (1 − y_i) (F1/2) log(1 − σ(s_i)) ]
/// ```
///
/// The weights come from the gradient of `−F1`: `∂F1/∂p_i = (2/S)(y_i − F1/2)`, with
/// `S = Σ(y + p)`, so a positive pulls with weight `1 − F1/2` and a negative with `F1/2` (Su's
/// derivation, which drops the per-sample factor `p(1 − p)` of the sigmoid). While the batch F1 is
/// low the negatives barely count, so a rare positive class is not drowned. `F1` is a constant of the gradient (no gradient
/// flows through it). It comes from the local batch, or from merged [`F1Stats`] (one class) in a
/// data-parallel trainer ([`loss_and_grad_with_stats_into`](Self::loss_and_grad_with_stats_into)).
/// `Mean` (default) divides `Σ_i ℓ_i` by the local `Σ_i s_i` (0 if that is 0), `Sum` does not
/// divide.
///
/// # Gradient
///
/// `∂ℓ_i/∂s_i = s_i·[(1 − y_i)(F1/2)·σ(s_i) − y_i(1 − F1/2)·σ(−s_i)]`.
///
/// # Numerics
///
/// `−log σ(s) = softplus(−s)` and `−log(1 − σ(s)) = softplus(s)`, exact for `|s|` up to `1e4` in
/// `f32`. A `-inf` logit is a certain negative; on a positive target it is an error.
///
/// # Errors
///
/// Each call validates the batch (and the statistics) before writing anything (see
/// [`loss_and_grad_into`](Self::loss_and_grad_into)).
///
/// # Example
///
/// ```
/// use longtail::BinarySmoothF1Loss;
/// use ndarray::array;
///
/// let logits = array![2.0_f64, -1.0, -3.0, 0.5];
/// let targets = [1.0, 0.0, 0.0, 1.0];
/// let loss = BinarySmoothF1Loss::new();
/// let f1 = loss.stats(&logits, &targets)?.f1()[0];
/// let (value, grad) = loss.loss_and_grad(&logits, &targets)?;
/// assert!(f1 > 0.5 && value > 0.0 && grad[0] < 0.0 && grad[1] > 0.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系" (class imbalance: weights and
/// modified losses), kexue.fm/archives/7708 (2020).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BinarySmoothF1Loss {
    reduction: Reduction,
}

impl BinarySmoothF1Loss {
    /// The loss, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, Reduction};
    /// assert_eq!(BinarySmoothF1Loss::new().reduction(), Reduction::Mean);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn new() -> Self {
        Self { reduction: Reduction::Mean }
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, Reduction};
    /// assert_eq!(BinarySmoothF1Loss::new().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The reduction of the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, Reduction};
    /// assert_eq!(BinarySmoothF1Loss::default().reduction(), Reduction::Mean);
    /// ```
    pub fn reduction(&self) -> Reduction {
        self.reduction
    }

    /// The batch statistics (one class): `Σ s y σ(s)`, `Σ s (y + σ(s))` and `Σ s`.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the output and statistics.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let stats = BinarySmoothF1Loss::new().stats(&array![0.0_f32, 0.0], &[1.0, 0.0])?;
    /// assert_eq!((stats.true_positive(), stats.mass(), stats.weight()), (&[0.5][..], &[2.0][..], 2.0));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn stats<'t, F>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<F1Stats>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[])?;
        Ok(local_stats(logits, &targets))
    }

    /// The reduced loss and its gradient (F1 from the local batch), in a new `[B]` array.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = BinarySmoothF1Loss::new().loss_and_grad(&array![1.0_f32, -1.0], &[1.0, 0.0])?;
    /// assert!(loss > 0.0 && grad[0] < 0.0 && grad[1] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn loss_and_grad<'t, F>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<(F, Array1<F>)>
    where
        F: Float + 't,
    {
        let mut grad = Array1::zeros(logits.len());
        let loss = self.loss_and_grad_into(logits, targets, &mut grad)?;
        Ok((loss, grad))
    }

    /// The reduced loss with F1 from the local batch; its gradient overwrites `grad_out` (`[B]`).
    ///
    /// # Errors
    ///
    /// Checked in this order, all before anything is written:
    /// - [`Error::EmptyBatch`](crate::Error::EmptyBatch): `B = 0`;
    /// - [`Error::ShapeMismatch`](crate::Error::ShapeMismatch): `targets` or `grad_out`
    ///   not of length `B`, then `sample_weights`;
    /// - [`Error::InvalidSampleWeight`](crate::Error::InvalidSampleWeight);
    /// - [`Error::TargetOutOfRange`](crate::Error::TargetOutOfRange): a target outside `[0, 1]`;
    /// - [`Error::NonFiniteLogit`](crate::Error::NonFiniteLogit) for NaN or `+inf`,
    ///   [`Error::MaskedTarget`](crate::Error::MaskedTarget) for `-inf` on a row with
    ///   `y > 0` and `s > 0`;
    /// - with statistics: [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
    ///   (`"stats"`) unless they have one class.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::{array, Array1};
    ///
    /// let mut grad = Array1::from_elem(2, f64::NAN); // overwritten
    /// BinarySmoothF1Loss::new().loss_and_grad_into(&array![0.0, 0.0], &[1.0, 0.0], &mut grad)?;
    /// // F1 = 2·0.5 / 2 = 0.5: positives weigh 0.75, negatives 0.25; mean over 2 rows.
    /// assert_eq!(grad.to_vec(), vec![-0.75 * 0.5 / 2.0, 0.25 * 0.5 / 2.0]);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn loss_and_grad_into<'t, F>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
        grad_out: &mut ArrayRef1<F>,
    ) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[("grad_out", &[logits.len()], grad_out.shape())])?;
        let f1 = local_stats(logits, &targets).f1()[0];
        Ok(self.reduced(logits, &targets, f1, Some(grad_out)))
    }

    /// The reduced loss with F1 from (merged) `stats`; its gradient overwrites `grad_out` (`[B]`).
    ///
    /// With the local batch's own statistics this is
    /// [`loss_and_grad_into`](Self::loss_and_grad_into).
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), and
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`"stats"`) unless `stats`
    /// has one class.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, F1Stats};
    /// use ndarray::{array, Array1};
    ///
    /// let (logits, targets) = (array![0.0_f64, 2.0], [1.0, 0.0]);
    /// // F1 fixed at 0 by the statistics: only the positives count.
    /// let stats = F1Stats::from_parts(vec![0.0], vec![1.0], 1.0)?;
    /// let mut grad = Array1::zeros(2);
    /// BinarySmoothF1Loss::new().loss_and_grad_with_stats_into(&logits, &targets, &stats, &mut grad)?;
    /// assert_eq!(grad[1], 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn loss_and_grad_with_stats_into<'t, F>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
        stats: &F1Stats,
        grad_out: &mut ArrayRef1<F>,
    ) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[("grad_out", &[logits.len()], grad_out.shape())])?;
        check_shape("stats", &[1], &[stats.classes()])?;
        Ok(self.reduced(logits, &targets, stats.f1()[0], Some(grad_out)))
    }

    /// The reduced loss alone, F1 from the local batch.
    ///
    /// # Errors
    ///
    /// As [`loss_and_grad_into`](Self::loss_and_grad_into), but for the `grad_out` shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let loss = BinarySmoothF1Loss::new().loss(&array![1e4_f32, -1e4], &[1.0, 0.0])?;
    /// assert_eq!(loss, 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn loss<'t, F>(&self, logits: &ArrayRef1<F>, targets: impl Into<BinaryTargets<'t, F>>) -> Result<F>
    where
        F: Float + 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[])?;
        let f1 = local_stats(logits, &targets).f1()[0];
        Ok(self.reduced(logits, &targets, f1, None))
    }

    /// The reduced loss of a validated batch for a given F1, `scale·∂ℓ/∂s` into `grad_out`.
    fn reduced<F: Float>(
        &self,
        logits: &ArrayRef1<F>,
        targets: &BinaryTargets<F>,
        f1: f64,
        grad_out: Option<&mut ArrayRef1<F>>,
    ) -> F {
        let divisor = match self.reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => targets.total_weight(),
        };
        if divisor == 0.0 {
            if let Some(grad) = grad_out {
                grad.fill(F::zero());
            }
            return F::zero();
        }
        let scale = F::from_f64(divisor.recip());
        let (negative, positive) = (F::from_f64(f1 / 2.0), F::from_f64(1.0 - f1 / 2.0));
        struct Rows<'a, F> {
            weights: (F, F),
            logits: &'a [F],
            targets: &'a [F],
            sample_weights: Option<&'a [F]>,
            grads: Option<&'a mut [F]>,
            scale: F,
        }
        impl<F: Float> Kernel for Rows<'_, F> {
            type Output = f64;
            #[inline(always)]
            fn run<const FMA: bool>(self) -> f64 {
                let Rows { weights: (positive, negative), logits, targets, sample_weights, grads, scale } =
                    self;
                let row = |s, y, w| {
                    let (pos, neg) = (w * positive * y, w * negative * (F::one() - y));
                    let l = Logistic::of::<FMA>(s);
                    (pos * l.softplus_neg + neg * l.softplus_pos, neg * l.sigmoid_pos - pos * l.sigmoid_neg)
                };
                for_rows(logits, targets, sample_weights, None, grads, (scale, F::one()), row)
            }
        }
        let (logits, y) = (contiguous(logits), contiguous(&targets.targets));
        let weights = targets.sample_weights.as_ref().map(|w| contiguous(w));
        let sum = |grads: Option<&mut [F]>| {
            let weights = weights.as_deref();
            dispatch(Rows {
                weights: (positive, negative),
                logits: &logits,
                targets: &y,
                sample_weights: weights,
                grads,
                scale,
            })
        };
        let total = match grad_out {
            Some(grad) => with_slice_mut(grad, |grad| sum(Some(grad))),
            None => sum(None),
        };
        F::from_f64(total / divisor)
    }
}

/// The one-class statistics of a validated batch.
fn local_stats<F: Float>(logits: &ArrayRef1<F>, targets: &BinaryTargets<F>) -> F1Stats {
    struct Stats<'a, F>(&'a [F], &'a [F], Option<&'a [F]>);
    impl<F: Float> Kernel for Stats<'_, F> {
        type Output = F1Stats;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> F1Stats {
            let Stats(logits, targets, weights) = self;
            // Interleaved partial sums: the f64 additions do not wait on each other.
            let (mut true_positive, mut mass, mut weight) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
            for_sigmoids::<F, FMA>(logits, |i, p| {
                let (w, y, p) = (weights.map_or(1.0, |w| w[i].as_f64()), targets[i].as_f64(), p.as_f64());
                true_positive[i % LANES] += w * y * p;
                mass[i % LANES] += w * (y + p);
                weight[i % LANES] += w;
            });
            let mut stats = F1Stats::new(1);
            stats.add_sums(0, lane_sum(&true_positive), lane_sum(&mass));
            stats.add_weight(lane_sum(&weight));
            stats
        }
    }
    let (logits, y) = (contiguous(logits), contiguous(&targets.targets));
    let weights = targets.sample_weights.as_ref().map(|w| contiguous(w));
    dispatch(Stats(&logits, &y, weights.as_deref()))
}
