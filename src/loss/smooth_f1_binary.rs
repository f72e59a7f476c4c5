//! Smooth-F1-weighted binary cross-entropy: positives and negatives weighted by the batch's soft F1.

use core::marker::PhantomData;

use ndarray::{Array1, ArrayRef1, ArrayRef2};

use super::Reduction;
use super::binary_rows::{
    Batch, Decision, Logistic, binary_weight_exponent, for_rows, for_sigmoid_blocks, with_slice_mut,
};
use super::binary_targets::BinaryTargets;
use super::contract::Loss;
use super::f1_stats::F1Stats;
use super::one_vs_rest::LabelSets::MultiHotOnly;
use super::one_vs_rest::{self, Decisions, per_sample_over, reduced_over};
use super::sigmoid::per_sample_result;
use super::targets::Targets;
use super::validate::output_shapes;
use crate::error::check_shape;
use crate::float::{LANES, lane_sum, pow2};
use crate::simd::{Kernel, dispatch};
use crate::{Error, Float, Result};

/// Binary cross-entropy weighted by the batch's soft F1 (Su 2020), with the exact gradient with
/// respect to the logits (F1 held constant).
///
/// Over `[B, K]` logits ([`Loss`]) the loss is taken over the `B·K` one-vs-rest decisions with one
/// pooled F1 (the micro F1 of the decisions; for a per-class F1 see
/// [`SmoothF1Loss`](crate::SmoothF1Loss)); a binary model's `[B]` logits take the `binary_*`
/// calls, with targets `y ∈ [0, 1]` and optional sample weights `s_i` ([`BinaryTargets`]). With
/// `σ` the logistic function, over the decisions `i`:
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
/// `Mean` (default) divides `Σ_i ℓ_i` by the local total weight of the decisions (`Σ_i s_i` for
/// `[B]`, `K·Σ_i s_i` for `[B, K]`; 0 if that is 0), `Sum` does not divide. The per-sample losses
/// hold F1 at its batch value: they are the terms of the `Sum`.
///
/// # Gradient
///
/// `∂ℓ_i/∂s_i = s_i·[(1 − y_i)(F1/2)·σ(s_i) − y_i(1 − F1/2)·σ(−s_i)]`.
///
/// # Numerics
///
/// `−log σ(s) = softplus(−s)` and `−log(1 − σ(s)) = softplus(s)`, exact for `|s|` up to `1e4` in
/// `f32`. The batch F1 is an `f64` (as [`F1Stats`] reports it), so an F1 below `f64`'s smallest
/// subnormal counts as 0. A `-inf` logit is a certain negative; on a positive target it is an
/// error.
///
/// # Errors
///
/// Each call validates the batch (and the statistics) before writing anything (see
/// [`Loss::loss_into`] and [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into)).
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
/// let f1 = loss.binary_stats(&logits, &targets)?.f1()[0];
/// let (value, grad) = loss.binary_loss_and_grad(&logits, &targets)?;
/// assert!(f1 > 0.5 && value > 0.0 && grad[0] < 0.0 && grad[1] > 0.0);
/// # Ok::<(), longtail::Error>(())
/// ```
///
/// # References
///
/// J. Su, "再谈类别不平衡问题：调节权重与魔改Loss的对比联系" (class imbalance: weights and
/// modified losses), kexue.fm/archives/7708 (2020).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BinarySmoothF1Loss<F> {
    reduction: Reduction,
    float: PhantomData<fn() -> F>,
}

impl<F: Float> BinarySmoothF1Loss<F> {
    /// The loss, mean over the batch.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, Loss, Reduction};
    /// assert_eq!(BinarySmoothF1Loss::<f32>::new().reduction(), Reduction::Mean);
    /// ```
    ///
    /// # References
    ///
    /// J. Su, kexue.fm/archives/7708 (2020).
    pub fn new() -> Self {
        Self { reduction: Reduction::Mean, float: PhantomData }
    }

    /// Sets how the batch is reduced (mean by default).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::{BinarySmoothF1Loss, Loss, Reduction};
    /// assert_eq!(BinarySmoothF1Loss::<f64>::new().with_reduction(Reduction::Sum).reduction(), Reduction::Sum);
    /// ```
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The batch statistics of `[B, K]` logits' one-vs-rest decisions (one pooled class):
    /// `Σ s y σ(s)`, `Σ s (y + σ(s))` and `Σ s` over the decisions.
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`].
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let stats = BinarySmoothF1Loss::new().stats(&array![[0.0_f32, 0.0]], &[0])?;
    /// assert_eq!((stats.true_positive(), stats.mass(), stats.weight()), (&[0.5][..], &[2.0][..], 2.0));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn stats<'t>(&self, logits: &ArrayRef2<F>, targets: impl Into<Targets<'t, F>>) -> Result<F1Stats>
    where
        F: 't,
    {
        let targets = targets.into();
        one_vs_rest::check_batch(logits, &targets, &[], MultiHotOnly, None)?;
        public_stats(&Decisions::of_batch(logits, &targets))
    }

    /// The reduced loss of `[B, K]` logits with F1 from (merged) one-class `stats`; its gradient
    /// overwrites `grad_out` (`[B, K]`).
    ///
    /// # Errors
    ///
    /// As [`Loss::loss_into`], and [`Error::ShapeMismatch`](crate::Error::ShapeMismatch)
    /// (`"stats"`) unless `stats` has one class.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::{array, Array2};
    ///
    /// let loss = BinarySmoothF1Loss::new();
    /// let logits = array![[1.0_f64, -1.0]];
    /// let mut stats = loss.stats(&array![[0.5, 2.0]], &[1])?; // another worker's batch
    /// stats.merge(&loss.stats(&logits, &[0])?)?;
    /// let mut grad = Array2::zeros((1, 2));
    /// loss.loss_and_grad_with_stats_into(&logits, &[0], &stats, &mut grad)?;
    /// assert!(grad[[0, 0]] < 0.0 && grad[[0, 1]] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn loss_and_grad_with_stats_into<'t>(
        &self,
        logits: &ArrayRef2<F>,
        targets: impl Into<Targets<'t, F>>,
        stats: &F1Stats,
        grad_out: &mut ArrayRef2<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        one_vs_rest::check_batch(
            logits,
            &targets,
            &output_shapes(logits, None, Some(grad_out)),
            MultiHotOnly,
            None,
        )?;
        check_shape("stats", &[1], &[stats.classes()])?;
        reduced_over(logits, &targets, Some(grad_out), |d, grads| self.reduced(d, stats.f1()[0], grads))
    }

    /// The batch statistics of a binary model's `[B]` logits (one class): `Σ s y σ(s)`,
    /// `Σ s (y + σ(s))` and `Σ s`.
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into), but for the output.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let stats = BinarySmoothF1Loss::new().binary_stats(&array![0.0_f32, 0.0], &[1.0, 0.0])?;
    /// assert_eq!((stats.true_positive(), stats.mass(), stats.weight()), (&[0.5][..], &[2.0][..], 2.0));
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn binary_stats<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<F1Stats>
    where
        F: 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[])?;
        public_stats(&Decisions::of_binary(logits, &targets))
    }

    /// The reduced loss of a binary model's `[B]` logits (F1 from the batch) and its gradient, in
    /// a new `[B]` array.
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into).
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let (loss, grad) = BinarySmoothF1Loss::new().binary_loss_and_grad(&array![1.0_f64, -1.0], &[1.0, 0.0])?;
    /// assert!(loss > 0.0 && grad[0] < 0.0 && grad[1] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn binary_loss_and_grad<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<(F, Array1<F>)>
    where
        F: 't,
    {
        let mut grad = Array1::zeros(logits.len());
        let loss = self.binary_loss_and_grad_into(logits, targets, &mut grad)?;
        Ok((loss, grad))
    }

    /// The reduced loss of a binary model's `[B]` logits with F1 from the batch; its gradient
    /// overwrites `grad_out` (`[B]`).
    ///
    /// # Errors
    ///
    /// Those of [`SigmoidLoss::binary_loss_and_grad_into`](crate::SigmoidLoss::binary_loss_and_grad_into),
    /// in the same order.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::{array, Array1};
    ///
    /// let mut grad = Array1::from_elem(2, f32::NAN); // overwritten
    /// BinarySmoothF1Loss::new().binary_loss_and_grad_into(&array![0.5_f32, 0.5], &[1.0, 0.0], &mut grad)?;
    /// assert!(grad[0] < 0.0 && grad[1] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn binary_loss_and_grad_into<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
        grad_out: &mut ArrayRef1<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        targets.check_targets(logits.view(), &[("grad_out", &[logits.len()], grad_out.shape())])?;
        let decisions = Decisions::of_binary(logits, &targets);
        let f1 = local_f1(&decisions);
        with_slice_mut(grad_out, |grad| self.reduced(&decisions, f1, Some(grad)))
    }

    /// The reduced loss of a binary model's `[B]` logits with F1 from (merged) one-class `stats`;
    /// its gradient overwrites `grad_out` (`[B]`).
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into), and
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) (`"stats"`) unless `stats` has one
    /// class.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::{array, Array1};
    ///
    /// let loss = BinarySmoothF1Loss::new();
    /// let logits = array![1.0_f64, -1.0];
    /// let mut stats = loss.binary_stats(&array![0.5, 2.0], &[0.0, 1.0])?; // another worker's batch
    /// stats.merge(&loss.binary_stats(&logits, &[1.0, 0.0])?)?;
    /// let mut grad = Array1::zeros(2);
    /// loss.binary_loss_and_grad_with_stats_into(&logits, &[1.0, 0.0], &stats, &mut grad)?;
    /// assert!(grad[0] < 0.0 && grad[1] > 0.0);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn binary_loss_and_grad_with_stats_into<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
        stats: &F1Stats,
        grad_out: &mut ArrayRef1<F>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        targets.check(logits.view(), &[("grad_out", &[logits.len()], grad_out.shape())])?;
        check_shape("stats", &[1], &[stats.classes()])?;
        let decisions = Decisions::of_binary(logits, &targets);
        with_slice_mut(grad_out, |grad| self.reduced(&decisions, stats.f1()[0], Some(grad)))
    }

    /// The reduced loss of a binary model's `[B]` logits alone, F1 from the batch.
    ///
    /// # Errors
    ///
    /// As [`binary_loss_and_grad_into`](Self::binary_loss_and_grad_into), but for the `grad_out`
    /// shape.
    ///
    /// # Example
    ///
    /// ```
    /// use longtail::BinarySmoothF1Loss;
    /// use ndarray::array;
    ///
    /// let good = BinarySmoothF1Loss::new().binary_loss(&array![4.0_f64, -4.0], &[1.0, 0.0])?;
    /// let bad = BinarySmoothF1Loss::new().binary_loss(&array![-4.0_f64, 4.0], &[1.0, 0.0])?;
    /// assert!(good < bad);
    /// # Ok::<(), longtail::Error>(())
    /// ```
    ///
    /// # References
    ///
    /// See [`BinarySmoothF1Loss`].
    pub fn binary_loss<'t>(
        &self,
        logits: &ArrayRef1<F>,
        targets: impl Into<BinaryTargets<'t, F>>,
    ) -> Result<F>
    where
        F: 't,
    {
        let targets = targets.into();
        targets.check_targets(logits.view(), &[])?;
        let decisions = Decisions::of_binary(logits, &targets);
        let f1 = local_f1(&decisions);
        self.reduced(&decisions, f1, None)
    }

    /// The reduced loss of validated decisions with batch F1 `f1`, `scale·∂ℓ/∂s` into `grads`;
    /// [`Error::Overflow`] for a result beyond the float's range.
    fn reduced(&self, decisions: &Decisions<F>, f1: f64, grads: Option<&mut [F]>) -> Result<F> {
        one_vs_rest::reduce(decisions, self.reduction, 1.0, grads, |grads, scale| {
            sum(decisions, f1, None, grads, scale)
        })
    }
}

impl<F: Float> Loss<F> for BinarySmoothF1Loss<F> {
    /// The reduced loss over the `B·K` one-vs-rest decisions of `[B, K]` logits with their pooled
    /// F1 from the batch, the gradient (F1 held constant) into `grad_out` if given.
    ///
    /// # Errors
    ///
    /// Those of [`SigmoidLoss`](crate::SigmoidLoss)'s [`loss_into`](Loss::loss_into), in the
    /// same order.
    fn loss_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<F> {
        let outputs = output_shapes(logits, None, grad_out.as_deref());
        one_vs_rest::check_targets(logits, targets, &outputs, MultiHotOnly)?;
        reduced_over(logits, targets, grad_out, |d, grads| self.reduced(d, local_f1(d), grads))
    }

    /// Every row's loss `ℓ_i = Σ_k ℓ_ik` with F1 at its batch value (a batch statistic, held
    /// constant) and, if `grad_out` is given, its gradient: the terms of [`Reduction::Sum`].
    ///
    /// # Errors
    ///
    /// As [`loss_into`](Self::loss_into).
    fn per_sample_into(
        &self,
        logits: &ArrayRef2<F>,
        targets: &Targets<'_, F>,
        losses_out: &mut ArrayRef1<F>,
        grad_out: Option<&mut ArrayRef2<F>>,
    ) -> Result<()> {
        let outputs = output_shapes(logits, Some(losses_out), grad_out.as_deref());
        one_vs_rest::check_targets(logits, targets, &outputs, MultiHotOnly)?;
        let mut grads_finite = true;
        per_sample_over(logits, targets, losses_out, grad_out, |d, losses, grads| {
            grads_finite = sum(d, local_f1(d), Some(losses), grads, (F::one(), 0))?.1;
            Ok(())
        })?;
        per_sample_result(losses_out, grads_finite)
    }

    fn reduction(&self) -> Reduction {
        self.reduction
    }
}

/// `Σ ℓ` of decisions whose targets and weights are validated, with F1 `f1`, in `f64`, the
/// weights seen times `2^−weight_exp`, and whether every gradient entry is finite: each `ℓ` into
/// `losses` and `scale·∂ℓ/∂s` into `grads` if given; the first bad logit's error (see
/// [`for_rows`]).
fn sum<F: Float>(
    decisions: &Decisions<F>,
    f1: f64,
    losses: Option<&mut [F]>,
    grads: Option<&mut [F]>,
    (scale, weight_exp): (F, i32),
) -> Result<(f64, bool)> {
    let row = F1Row { positive: F::from_f64(1.0 - f1 / 2.0), negative: F::from_f64(f1 / 2.0) };
    let scale = (scale, pow2::<F>(-weight_exp));
    for_rows(Batch::of(decisions, None), losses, grads, scale, row)
}

/// One decision's loss and slope: positives weighted `positive`, negatives `negative`.
#[derive(Debug, Clone, Copy)]
struct F1Row<F> {
    positive: F,
    negative: F,
}

impl<F: Float> F1Row<F> {
    /// `(ℓ, ∂ℓ/∂s)` of logit `s`, target `y` and weight `w`.
    #[inline(always)]
    fn row<const FMA: bool>(self, s: F, y: F, w: F) -> (F, F) {
        let (pos, neg) = (self.positive * y, self.negative * (F::one() - y));
        let l = Logistic::of::<FMA>(s);
        // The sample weight multiplies last: a subnormal weight then rounds once.
        (w * (pos * l.softplus_neg + neg * l.softplus_pos), w * (neg * l.sigmoid_pos - pos * l.sigmoid_neg))
    }
}

impl<F: Float> Decision<F> for F1Row<F> {
    #[inline(always)]
    fn row<const FMA: bool, const SOFT: bool>(self, s: F, y: F, w: F, _: F) -> (F, F) {
        F1Row::row::<FMA>(self, s, y, w)
    }

    fn exact(self, s: F, y: F, w: F, _: F) -> (f64, f64) {
        let wide = F1Row { positive: self.positive.as_f64(), negative: self.negative.as_f64() };
        wide.row::<false>(s.as_f64(), y.as_f64(), w.as_f64())
    }
}

/// The F1 of validated decisions, from their weights scaled by a power of two: F1 is a ratio of
/// the sums, which the common factor leaves unchanged, while the sums of the weights themselves
/// could overflow `f64`, or lose the digits of subnormal weights.
fn local_f1<F: Float>(decisions: &Decisions<F>) -> f64 {
    let e = binary_weight_exponent(decisions.weights.as_deref());
    local_stats(decisions, crate::float::ldexp(1.0, -e)).f1()[0]
}

/// The one-class statistics of validated decisions as they are ([`Error::Overflow`] beyond
/// `f64`).
fn public_stats<F: Float>(decisions: &Decisions<F>) -> Result<F1Stats> {
    let stats = local_stats(decisions, 1.0);
    if !stats.is_finite() {
        return Err(Error::Overflow { what: "F1 statistics", row: None, class: None, value: None });
    }
    Ok(stats)
}

/// The one-class statistics of validated decisions, each weight times `weight_scale`.
fn local_stats<F: Float>(decisions: &Decisions<F>, weight_scale: f64) -> F1Stats {
    struct Stats<'a, F: Float>(&'a Decisions<'a, F>, f64);
    impl<F: Float> Kernel for Stats<'_, F> {
        type Output = F1Stats;
        #[inline(always)]
        fn run<const FMA: bool>(self) -> F1Stats {
            let (targets, weights) = (&self.0.targets, self.0.weights.as_deref());
            // Interleaved partial sums, lane `i mod LANES` for decision `i` (a block is a multiple
            // of `LANES` long): the f64 additions do not wait on each other, and vectorise.
            let (mut true_positive, mut mass, mut weight) = ([0.0; LANES], [0.0; LANES], [0.0; LANES]);
            for_sigmoid_blocks::<F, FMA>(&self.0.logits, |first, p| {
                let y = &targets[first..first + p.len()];
                match weights {
                    None => {
                        for (p, y) in p.chunks(LANES).zip(y.chunks(LANES)) {
                            for (j, (&p, &y)) in p.iter().zip(y).enumerate() {
                                let (y, p) = (y.as_f64(), p.as_f64());
                                true_positive[j] += y * p;
                                mass[j] += y + p;
                                weight[j] += 1.0;
                            }
                        }
                    }
                    Some(weights) => {
                        let w = &weights[first..first + p.len()];
                        for ((p, y), w) in p.chunks(LANES).zip(y.chunks(LANES)).zip(w.chunks(LANES)) {
                            for (j, ((&p, &y), &w)) in p.iter().zip(y).zip(w).enumerate() {
                                let (y, p, w) = (y.as_f64(), p.as_f64(), w.as_f64() * self.1);
                                true_positive[j] += w * y * p;
                                mass[j] += w * (y + p);
                                weight[j] += w;
                            }
                        }
                    }
                }
            });
            let mut stats = F1Stats::new(1);
            stats.add_sums(0, lane_sum(&true_positive), lane_sum(&mass));
            stats.add_weight(lane_sum(&weight));
            stats
        }
    }
    dispatch(Stats(decisions, weight_scale))
}
