//! The smooth-F1-weighted losses (binary, and softmax macro/micro) and their mergeable statistics:
//! gradients (F1 held constant) against finite differences, the formula written out, merging,
//! f32/f64 agreement, stability as p → 1, the F1 = 0 reduction to positive-only cross-entropy,
//! and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{
    BinarySmoothF1Loss, BinaryTargets, Error, F1Average, F1Stats, Float, Loss, Reduction, SigmoidLoss,
    SmoothF1Loss, SoftmaxLoss, Targets,
};
use ndarray::{Array1, Array2, Axis, array, s};
use proptest::prelude::*;

/// One multi-class problem.
#[derive(Debug)]
struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    probs: Option<Array2<f64>>,
    weights: Option<Vec<f64>>,
}

impl Problem {
    fn random(rng: &mut Rng, batch: usize, classes: usize, probs: bool, weighted: bool) -> Self {
        let mut weights = rng.positive(batch, 0.2, 2.0);
        weights[0] = 0.0;
        Self {
            logits: rng.logits(batch, classes, 2.0),
            labels: rng.labels(batch, classes),
            probs: probs.then(|| rng.probs(batch, classes)),
            weights: weighted.then_some(weights),
        }
    }

    fn with_targets<F: Float, R>(&self, f: impl FnOnce(Targets<'_, F>) -> R) -> R {
        let probs = self.probs.as_ref().map(|p| p.mapv(F::from_f64));
        let weights: Option<Vec<F>> =
            self.weights.as_ref().map(|w| w.iter().map(|&v| F::from_f64(v)).collect());
        let targets = match &probs {
            Some(p) => Targets::probs(p),
            None => Targets::labels(&self.labels),
        };
        match &weights {
            Some(w) => f(targets.with_sample_weights(w)),
            None => f(targets),
        }
    }

    fn target(&self, i: usize, k: usize) -> f64 {
        self.probs.as_ref().map_or(f64::from(u8::from(self.labels[i] == k)), |p| p[[i, k]])
    }

    fn weight(&self, i: usize) -> f64 {
        self.weights.as_ref().map_or(1.0, |w| w[i])
    }

    /// The loss with the statistics fixed, in `F`, widened to f64.
    fn run<F: Float>(&self, loss: SmoothF1Loss<f64>, z: &Array2<f64>, stats: &F1Stats) -> (f64, Array2<f64>) {
        let z = z.mapv(F::from_f64);
        let mut grad = Array2::zeros(z.raw_dim());
        let loss = match loss.average() {
            F1Average::Macro => SmoothF1Loss::<F>::macro_f1(),
            F1Average::Micro => SmoothF1Loss::<F>::micro_f1(),
        }
        .with_reduction(loss.reduction());
        let value =
            self.with_targets(|t| loss.loss_and_grad_with_stats_into(&z, t, stats, &mut grad)).unwrap();
        (value.as_f64(), grad.mapv(F::as_f64))
    }

    /// The formula written out plainly in f64, statistics included.
    fn reference(&self, average: F1Average, reduction: Reduction) -> f64 {
        let (b, k) = self.logits.dim();
        let p: Vec<Vec<f64>> = (0..b)
            .map(|i| {
                let sum: f64 = (0..k).map(|c| self.logits[[i, c]].exp()).sum();
                (0..k).map(|c| self.logits[[i, c]].exp() / sum).collect()
            })
            .collect();
        let w: f64 = (0..b).map(|i| self.weight(i)).sum();
        let tp = |c: usize| (0..b).map(|i| self.weight(i) * self.target(i, c) * p[i][c]).sum::<f64>();
        let mass = |c: usize| (0..b).map(|i| self.weight(i) * (self.target(i, c) + p[i][c])).sum::<f64>();
        let micro = 2.0 * (0..k).map(tp).sum::<f64>() / (0..k).map(mass).sum::<f64>();
        let mut total = 0.0;
        for (i, p_i) in p.iter().enumerate() {
            for (c, &p_ic) in p_i.iter().enumerate() {
                let (f1, scale) = match average {
                    F1Average::Macro => (2.0 * tp(c) / mass(c), 2.0 * w / (k as f64 * mass(c))),
                    F1Average::Micro => (micro, 1.0),
                };
                let y = self.target(i, c);
                total -= self.weight(i)
                    * scale
                    * (y * (1.0 - f1 / 2.0) * p_ic.ln() + (1.0 - y) * (f1 / 2.0) * (1.0 - p_ic).ln());
            }
        }
        if reduction == Reduction::Mean { total / w } else { total }
    }
}

fn loss_for<F: Float>(average: F1Average, reduction: Reduction) -> SmoothF1Loss<F> {
    let loss = match average {
        F1Average::Macro => SmoothF1Loss::macro_f1(),
        F1Average::Micro => SmoothF1Loss::micro_f1(),
    };
    loss.with_reduction(reduction)
}

/// Every option combination: macro/micro, labels/probabilities, sample weights, mean/sum.
fn softmax_combinations() -> Vec<(F1Average, bool, bool, Reduction)> {
    let mut all = Vec::new();
    for average in [F1Average::Macro, F1Average::Micro] {
        for probs in [false, true] {
            for weighted in [false, true] {
                for reduction in [Reduction::Mean, Reduction::Sum] {
                    all.push((average, probs, weighted, reduction));
                }
            }
        }
    }
    all
}

#[test]
fn softmax_gradients_match_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(301);
    for (average, probs, weighted, reduction) in softmax_combinations() {
        let p = Problem::random(&mut rng, 7, 4, probs, weighted);
        let loss = loss_for(average, reduction);
        let stats = p.with_targets(|t| loss.stats(&p.logits, t)).unwrap();
        let (value, grad) = p.run::<f64>(loss, &p.logits, &stats);
        let numeric = numeric_grad(&p.logits, |z| p.run::<f64>(loss, z, &stats).0);
        let err = relative_error(&grad, &numeric);
        let case = format!("{average:?}, probs {probs}, weighted {weighted}, {reduction:?}");
        assert!(err <= 1e-6, "{case}: gradient relative error {err:e}");
        let expected = p.reference(average, reduction);
        assert!(relative(value, expected) <= 1e-12, "{case}: {value} vs {expected}");
        let local = p.with_targets(|t| loss.loss_and_grad(&p.logits, t)).unwrap();
        assert_eq!(local, (value, grad), "{case}: the local call is the call with local statistics");
        assert_eq!(p.with_targets(|t| loss.loss(&p.logits, t)).unwrap(), value);
    }
}

#[test]
fn softmax_f32_agrees_with_f64() {
    let mut rng = Rng::new(303);
    for (average, probs, weighted, reduction) in softmax_combinations() {
        let mut p = Problem::random(&mut rng, 7, 4, probs, weighted);
        p.logits.mapv_inplace(|v| f64::from(v as f32));
        let loss = loss_for(average, reduction);
        let stats = p.with_targets(|t| loss.stats(&p.logits, t)).unwrap();
        let loss32 = loss_for::<f32>(average, reduction);
        let stats32 = p.with_targets(|t| loss32.stats(&p.logits.mapv(|v| v as f32), t)).unwrap();
        let (l64, g64) = p.run::<f64>(loss, &p.logits, &stats);
        let (l32, g32) = p.run::<f32>(loss, &p.logits, &stats32);
        assert!(relative(l32, l64) <= 1e-5 && relative_error(&g32, &g64) <= 1e-5, "{l32} vs {l64}");
    }
}

#[test]
fn statistics_of_parts_merge_into_the_statistics_of_the_whole() {
    let mut rng = Rng::new(307);
    let p = Problem::random(&mut rng, 9, 4, true, true);
    let loss = SmoothF1Loss::macro_f1();
    let whole = p.with_targets(|t| loss.stats(&p.logits, t)).unwrap();
    let weights = p.weights.as_ref().unwrap();
    let probs = p.probs.as_ref().unwrap();
    let mut merged = F1Stats::new(4);
    for range in [0..4, 4..9] {
        let part =
            Targets::probs(probs.slice(s![range.clone(), ..])).with_sample_weights(&weights[range.clone()]);
        merged.merge(&loss.stats(&p.logits.slice(s![range, ..]), part).unwrap()).unwrap();
    }
    assert!(relative(merged.weight(), whole.weight()) <= 1e-15);
    for k in 0..4 {
        assert!(relative(merged.true_positive()[k], whole.true_positive()[k]) <= 1e-14);
        assert!(relative(merged.mass()[k], whole.mass()[k]) <= 1e-14);
    }
    let rebuilt =
        F1Stats::from_parts(whole.true_positive().to_vec(), whole.mass().to_vec(), whole.weight()).unwrap();
    assert_eq!(rebuilt, whole);
}

/// `log Σ_j e^{v_j}` over `v`, shifted by the max.
/// Strided logits, probability targets and gradient (transposed views) give the contiguous results
/// bit for bit.
#[test]
fn strided_batches_match_contiguous_ones() {
    let mut rng = Rng::new(317);
    for average in [F1Average::Macro, F1Average::Micro] {
        let (logits, probs) = (rng.logits(6, 11, 2.0), rng.probs(6, 11));
        let (logits_t, probs_t) =
            (logits.t().as_standard_layout().into_owned(), probs.t().as_standard_layout().into_owned());
        let loss = loss_for(average, Reduction::Mean);
        let (value, grad) = loss.loss_and_grad(&logits, Targets::probs(&probs)).unwrap();
        let mut strided_grad = Array2::zeros((11, 6));
        let mut strided_grad = strided_grad.view_mut().reversed_axes();
        let strided =
            loss.loss_and_grad_into(&logits_t.t(), Targets::probs(probs_t.t()), &mut strided_grad).unwrap();
        assert_eq!(strided.to_bits(), value.to_bits());
        assert!(strided_grad.iter().zip(&grad).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

fn lse(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// p_k → 1 on a negative class: −log(1 − p_k) stays exact where 1 − p_k underflows (f32, gap 200),
/// against the plain formula with `log(1 − p_k) = lse_{j≠k}(z) − lse(z)`.
#[test]
fn log_one_minus_p_is_exact_as_p_tends_to_one() {
    // Row 0 is confidently wrong: class 0 has p ≈ 1 − 2e^−200, but the label is 1.
    let z = array![[0.0_f64, -200.0, -200.0], [-200.0, 0.0, -200.0], [0.0, -200.0, -200.0]];
    let labels = [1, 1, 0];
    for average in [F1Average::Macro, F1Average::Micro] {
        let loss = loss_for(average, Reduction::Sum);
        let stats = loss.stats(&z, &labels).unwrap();
        let mut expected = 0.0;
        for (i, &y) in labels.iter().enumerate() {
            let row = z.row(i);
            let all = lse(row.iter().copied());
            for k in 0..3 {
                let (f1, c) = match average {
                    F1Average::Macro => (stats.f1()[k], 2.0 * 3.0 / (3.0 * stats.mass()[k])),
                    F1Average::Micro => (stats.micro_f1(), 1.0),
                };
                let rest = lse(row.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, &v)| v));
                expected -=
                    if k == y { c * (1.0 - f1 / 2.0) * (row[k] - all) } else { c * f1 / 2.0 * (rest - all) };
            }
        }
        assert!(stats.f1()[0] > 0.5, "class 0 has a soft F1, so its negatives weigh");
        let (l64, g64) = loss.loss_and_grad(&z, &labels).unwrap();
        assert!(relative(l64, expected) <= 1e-14, "{average:?}: {l64} vs {expected}");
        let (l32, g32) =
            loss_for::<f32>(average, Reduction::Sum).loss_and_grad(&z.mapv(|v| v as f32), &labels).unwrap();
        assert!(relative(f64::from(l32), l64) <= 1e-6, "{l32} vs {l64}");
        assert!(
            g64.iter().all(|g| g.is_finite()) && relative_error(&g32.mapv(f64::from), &g64) <= 1e-6,
            "{g32} vs {g64}"
        );
        let fixed = |z: &Array2<f64>| {
            let mut grad = Array2::zeros((3, 3));
            loss.loss_and_grad_with_stats_into(z, &labels, &stats, &mut grad).unwrap()
        };
        let err = relative_error(&g64, &numeric_grad(&z, fixed));
        assert!(err <= 1e-6, "{average:?}: gradient relative error {err:e}");
    }
}

/// A confidently right batch: the gradient stays finite and tiny, no 0/0.
#[test]
fn near_certain_rows_have_finite_gradients() {
    let z = array![[60.0_f32, -60.0, -60.0], [-60.0, 60.0, 0.0]];
    for loss in [SmoothF1Loss::macro_f1(), SmoothF1Loss::micro_f1()] {
        let (value, grad) = loss.loss_and_grad(&z, &[0, 1]).unwrap();
        assert!(
            value.is_finite() && value >= 0.0 && grad.iter().all(|g| g.is_finite() && g.abs() < 1e-20),
            "{grad}"
        );
    }
}

#[test]
fn masked_classes_have_zero_gradient() {
    let z = array![[1.0_f64, f64::NEG_INFINITY, 0.0], [0.0, 2.0, 1.0]];
    let (value, grad) = SmoothF1Loss::macro_f1().loss_and_grad(&z, &[0, 1]).unwrap();
    assert!(value.is_finite() && grad[[0, 1]] == 0.0);
    let ignored = Targets::labels(&[1, 1]).with_sample_weights(&[0.0, 1.0]);
    assert!(SmoothF1Loss::micro_f1().loss(&z, ignored).is_ok());
}

#[test]
fn a_batch_whose_weights_are_all_zero_has_loss_and_gradient_zero() {
    let targets = Targets::labels(&[0, 1]).with_sample_weights(&[0.0, 0.0]);
    let (l, g) =
        SmoothF1Loss::macro_f1().loss_and_grad(&array![[1.0_f32, 0.0], [0.0, 1.0]], targets).unwrap();
    assert_eq!((l, g.sum()), (0.0, 0.0));
    let targets = BinaryTargets::new(&[1.0, 0.0]).with_sample_weights(&[0.0, 0.0]);
    let (l, g) = BinarySmoothF1Loss::new().binary_loss_and_grad(&array![1.0_f32, 0.0], targets).unwrap();
    assert_eq!((l, g.sum()), (0.0, 0.0));
}

// ---- binary ----

struct Binary {
    logits: Array1<f64>,
    targets: Array1<f64>,
    weights: Option<Array1<f64>>,
}

impl Binary {
    fn random(rng: &mut Rng, n: usize, soft: bool, weighted: bool) -> Self {
        let mut weights = Array1::from(rng.positive(n, 0.2, 2.0));
        weights[0] = 0.0;
        Self {
            logits: Array1::from_shape_simple_fn(n, || 3.0 * rng.normal()),
            targets: Array1::from_shape_simple_fn(
                n,
                || if soft { rng.uniform() } else { rng.below(2) as f64 },
            ),
            weights: weighted.then_some(weights),
        }
    }

    fn with_targets<F: Float, R>(&self, f: impl FnOnce(BinaryTargets<'_, F>) -> R) -> R {
        let y = self.targets.mapv(F::from_f64);
        let w = self.weights.as_ref().map(|w| w.mapv(F::from_f64));
        match &w {
            Some(w) => f(BinaryTargets::new(&y).with_sample_weights(w)),
            None => f(BinaryTargets::new(&y)),
        }
    }

    fn run<F: Float>(
        &self,
        loss: BinarySmoothF1Loss<f64>,
        z: &Array1<f64>,
        stats: &F1Stats,
    ) -> (f64, Array1<f64>) {
        let z = z.mapv(F::from_f64);
        let mut grad = Array1::zeros(z.len());
        let loss = BinarySmoothF1Loss::<F>::new().with_reduction(loss.reduction());
        let value = self
            .with_targets(|t| loss.binary_loss_and_grad_with_stats_into(&z, t, stats, &mut grad))
            .unwrap();
        (value.as_f64(), grad.mapv(F::as_f64))
    }

    fn reference(&self, reduction: Reduction) -> f64 {
        let w = |i: usize| self.weights.as_ref().map_or(1.0, |w| w[i]);
        let sig = |s: f64| 1.0 / (1.0 + (-s).exp());
        let n = self.logits.len();
        let tp: f64 = (0..n).map(|i| w(i) * self.targets[i] * sig(self.logits[i])).sum();
        let mass: f64 = (0..n).map(|i| w(i) * (self.targets[i] + sig(self.logits[i]))).sum();
        let f1 = 2.0 * tp / mass;
        let total: f64 = (0..n)
            .map(|i| {
                let (y, p) = (self.targets[i], sig(self.logits[i]));
                -w(i) * (y * (1.0 - f1 / 2.0) * p.ln() + (1.0 - y) * (f1 / 2.0) * (1.0 - p).ln())
            })
            .sum();
        if reduction == Reduction::Mean { total / (0..n).map(w).sum::<f64>() } else { total }
    }
}

#[test]
fn binary_gradients_match_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(311);
    for soft in [false, true] {
        for weighted in [false, true] {
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let b = Binary::random(&mut rng, 9, soft, weighted);
                let loss = BinarySmoothF1Loss::new().with_reduction(reduction);
                let stats = b.with_targets(|t| loss.binary_stats(&b.logits, t)).unwrap();
                let (value, grad) = b.run::<f64>(loss, &b.logits, &stats);
                let column = |v: &Array1<f64>| v.clone().insert_axis(Axis(1));
                let numeric = numeric_grad(&column(&b.logits), |z| {
                    b.run::<f64>(loss, &z.column(0).to_owned(), &stats).0
                });
                let err = relative_error(&column(&grad), &numeric);
                assert!(err <= 1e-6, "soft {soft}, weighted {weighted}, {reduction:?}: {err:e}");
                let expected = b.reference(reduction);
                assert!(relative(value, expected) <= 1e-12, "{value} vs {expected}");
                assert_eq!(
                    b.with_targets(|t| loss.binary_loss_and_grad(&b.logits, t)).unwrap(),
                    (value, grad)
                );
                assert_eq!(b.with_targets(|t| loss.binary_loss(&b.logits, t)).unwrap(), value);

                let z32 = b.logits.mapv(|v| v as f32);
                let loss32 = BinarySmoothF1Loss::<f32>::new().with_reduction(reduction);
                let stats32 = b.with_targets(|t| loss32.binary_stats(&z32, t)).unwrap();
                let (l32, g32) = b.run::<f32>(loss, &b.logits.mapv(|v| f64::from(v as f32)), &stats32);
                let (l64, g64) = b.run::<f64>(loss, &b.logits.mapv(|v| f64::from(v as f32)), &stats);
                assert!(relative(l32, l64) <= 1e-5 && relative_error(&column(&g32), &column(&g64)) <= 1e-5);
            }
        }
    }
}

#[test]
fn binary_is_exact_for_logits_of_magnitude_1e4_in_f32() {
    let loss = BinarySmoothF1Loss::new().with_reduction(Reduction::Sum);
    let logits = array![1e4_f32, -1e4, -1e4, 1e4];
    let targets = [1.0, 0.0, 1.0, 0.0];
    let stats = loss.binary_stats(&logits, &targets).unwrap();
    assert_eq!(stats.f1(), vec![0.5]); // 2·1 / (2 + 2)
    let (value, grad) = loss.binary_loss_and_grad(&logits, &targets).unwrap();
    // The two wrong rows: 0.75·1e4 (positive weight 1 − F1/2) and 0.25·1e4 (negative weight F1/2).
    assert_eq!(value, 1e4);
    assert_eq!(grad.to_vec(), vec![0.0, 0.0, -0.75, 0.25]);
}

// ---- errors ----

const SENTINEL: f64 = 7.0;

#[test]
fn every_error_variant_and_trigger_writes_nothing() {
    // Multi-class: the statistics' shape, and the cross-entropy checks it shares.
    let z = mat::<f64>(&[&[0.0, 1.0], &[1.0, 0.0]]);
    let mut grad = Array2::from_elem((2, 2), SENTINEL);
    let loss = SmoothF1Loss::macro_f1();
    let err = loss.loss_and_grad_with_stats_into(&z, &[0, 1], &F1Stats::new(3), &mut grad).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "stats", expected: vec![2], found: vec![3] });
    let cases: [(Array2<f64>, Targets<'_, f64>, Error); 4] = [
        (Array2::zeros((0, 2)), Targets::labels(&[]), Error::EmptyBatch),
        (z.clone(), Targets::labels(&[0, 2]), Error::LabelOutOfRange { row: 1, label: 2, classes: 2 }),
        (
            mat(&[&[0.0, f64::NAN]]),
            Targets::labels(&[0]),
            Error::NonFiniteLogit { row: 0, class: 1, value: f64::NAN },
        ),
        (mat(&[&[0.0, f64::NEG_INFINITY]]), Targets::labels(&[1]), Error::MaskedTarget { row: 0, class: 1 }),
    ];
    for (logits, targets, expected) in cases {
        let mut grad = Array2::from_elem(logits.raw_dim(), SENTINEL);
        let errors = [
            loss.loss(&logits, targets.clone()).unwrap_err(),
            loss.stats(&logits, targets.clone()).unwrap_err(),
            loss.loss_and_grad(&logits, targets.clone()).unwrap_err(),
            loss.loss_and_grad_into(&logits, targets.clone(), &mut grad).unwrap_err(),
            loss.loss_and_grad_with_stats_into(&logits, targets, &F1Stats::new(2), &mut grad).unwrap_err(),
        ];
        assert!(errors.iter().all(|e| format!("{e:?}") == format!("{expected:?}")), "{errors:?}");
        assert!(grad.iter().all(|&g| g == SENTINEL));
    }
    assert!(grad.iter().all(|&g| g == SENTINEL));

    // Binary: the statistics' shape, and the binary target checks.
    let binary = BinarySmoothF1Loss::new();
    let mut grad = Array1::from_elem(2, SENTINEL);
    let err = binary
        .binary_loss_and_grad_with_stats_into(&array![0.0, 1.0], &[1.0, 0.0], &F1Stats::new(2), &mut grad)
        .unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "stats", expected: vec![1], found: vec![2] });
    let bad_targets = [1.0, 2.0];
    let cases: [(Array1<f64>, BinaryTargets<'_, f64>, Error); 3] = [
        (array![], BinaryTargets::new(&[]), Error::EmptyBatch),
        (
            array![0.0, 1.0],
            BinaryTargets::new(&bad_targets),
            Error::TargetOutOfRange { row: 1, class: 0, value: 2.0, expected: "in [0, 1]" },
        ),
        (
            array![f64::NEG_INFINITY, 1.0],
            BinaryTargets::new(&[1.0, 0.0]),
            Error::MaskedTarget { row: 0, class: 0 },
        ),
    ];
    for (logits, targets, expected) in cases {
        let mut grad = Array1::from_elem(logits.len(), SENTINEL);
        let errors = [
            binary.binary_loss(&logits, targets.clone()).unwrap_err(),
            binary.binary_stats(&logits, targets.clone()).unwrap_err(),
            binary.binary_loss_and_grad(&logits, targets.clone()).unwrap_err(),
            binary.binary_loss_and_grad_into(&logits, targets.clone(), &mut grad).unwrap_err(),
            binary
                .binary_loss_and_grad_with_stats_into(&logits, targets, &F1Stats::new(1), &mut grad)
                .unwrap_err(),
        ];
        assert!(errors.iter().all(|e| *e == expected), "{errors:?}");
        assert!(grad.iter().all(|&g| g == SENTINEL));
    }
}

#[test]
fn statistics_reject_inconsistent_parts_and_merges() {
    let err = F1Stats::from_parts(vec![1.0, 1.0], vec![4.0], 1.0).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "mass", expected: vec![2], found: vec![1] });
    let err = F1Stats::from_parts(vec![1.0], vec![f64::NAN], 1.0).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "mass", index: Some(0), .. }), "{err:?}");
    for tp in [-1.0, 2.5, f64::INFINITY] {
        let err = F1Stats::from_parts(vec![0.0, tp], vec![4.0, 4.0], 1.0).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "true_positive", index: Some(1), .. }),
            "{err:?}"
        );
    }
    let err = F1Stats::from_parts(vec![1.0], vec![4.0], -1.0).unwrap_err();
    assert_eq!(err.to_string(), "weight is -1; expected finite and >= 0");
    let mut stats = F1Stats::from_parts(vec![1.0], vec![4.0], 2.0).unwrap();
    let before = stats.clone();
    let err = stats.merge(&F1Stats::new(2)).unwrap_err();
    assert_eq!(err, Error::ShapeMismatch { name: "stats", expected: vec![1], found: vec![2] });
    assert_eq!(stats, before);
}

// ---- properties ----

fn problem() -> impl Strategy<Value = Problem> {
    (1..7usize, 1..6usize, any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
        |(b, k, seed, probs, weighted)| {
            let mut rng = Rng::new(seed);
            Problem::random(&mut rng, b, k, probs, weighted)
        },
    )
}

fn close(a: &(f64, Array2<f64>), b: &(f64, Array2<f64>), tol: f64) -> bool {
    relative(a.0, b.0) <= tol && (&a.1 - &b.1).iter().all(|d| d.abs() <= tol)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// F1 fixed at 0: the negatives vanish and each class's positive weight is c_k; with c_k = 1
    /// (micro, or macro with S_k = 2W/K) the loss is cross-entropy, the positive-only CE.
    #[test]
    fn with_f1_fixed_at_zero_the_loss_is_positive_only_cross_entropy(p in problem(), sum in any::<bool>()) {
        let k = p.logits.ncols();
        let reduction = if sum { Reduction::Sum } else { Reduction::Mean };
        let w = (0..p.logits.nrows()).map(|i| p.weight(i)).sum::<f64>().max(1.0);
        let zero_f1 = F1Stats::from_parts(vec![0.0; k], vec![2.0 * w / k as f64; k], w).unwrap();
        let ce = p.with_targets(|t| SoftmaxLoss::cross_entropy().with_reduction(reduction).loss_and_grad(&p.logits, t)).unwrap();
        for average in [F1Average::Macro, F1Average::Micro] {
            let f1 = p.run::<f64>(loss_for(average, reduction), &p.logits, &zero_f1);
            prop_assert!(close(&f1, &ce, 1e-12), "{:?}: {:?} vs {:?}", average, f1, ce);
        }
    }

    #[test]
    fn binary_with_f1_fixed_at_zero_is_bce_on_the_positives_only(seed: u64, n in 1..9usize, soft: bool) {
        let mut rng = Rng::new(seed);
        let b = Binary::random(&mut rng, n, soft, false);
        let zero_f1 = F1Stats::from_parts(vec![0.0], vec![1.0], 1.0).unwrap();
        let sum = BinarySmoothF1Loss::new().with_reduction(Reduction::Sum);
        let (value, grad) = b.run::<f64>(sum, &b.logits, &zero_f1);
        // Positive-only BCE: target 1, each row weighted by its positive mass y_i.
        let ones = Array1::ones(n);
        let bce = SigmoidLoss::bce().with_reduction(Reduction::Sum);
        let (expected, expected_grad) = bce.binary_loss_and_grad(&b.logits, BinaryTargets::new(&ones).with_sample_weights(&b.targets)).unwrap();
        prop_assert!(relative(value, expected) <= 1e-13 && (&grad - &expected_grad).iter().all(|d| d.abs() <= 1e-13));
    }

    #[test]
    fn losses_are_non_negative(p in problem(), scale in 0.1..30.0f64) {
        let logits = &p.logits * scale;
        for loss in [SmoothF1Loss::macro_f1(), SmoothF1Loss::micro_f1()] {
            prop_assert!(p.with_targets(|t| loss.loss(&logits, t)).unwrap() >= 0.0);
        }
        let row = logits.row(0).to_owned();
        let y: Array1<f64> = (0..row.len()).map(|k| p.target(0, k)).collect();
        prop_assert!(BinarySmoothF1Loss::new().binary_loss(&row, &y).unwrap() >= 0.0);
    }
}
