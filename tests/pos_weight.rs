//! `SigmoidLoss::with_pos_weight` (PyTorch's `pos_weight`): gradients against finite differences
//! over `[B, K]` and `[B]` logits for every option combination (focal γ, α, hard, soft and label
//! targets, sample weights, reductions), f32 against f64, the formula written out, unit weights as
//! no weights, and every error.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::{BinaryTargets, Error, Float, Loss, Reduction, SigmoidLoss, Targets};
use ndarray::{Array1, Array2, array};

const BATCH: usize = 6;
const CLASSES: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Labels,
    MultiHot,
    Soft,
}

#[derive(Debug, Clone, Copy)]
struct Options {
    gamma: f64,
    alpha: Option<f64>,
    kind: Kind,
    weighted: bool,
    reduction: Reduction,
}

fn combinations() -> Vec<Options> {
    let mut all = Vec::new();
    for gamma in [0.0, 0.5, 2.0] {
        for alpha in [None, Some(0.25)] {
            for kind in [Kind::Labels, Kind::MultiHot, Kind::Soft] {
                for weighted in [false, true] {
                    for reduction in [Reduction::Mean, Reduction::Sum] {
                        all.push(Options { gamma, alpha, kind, weighted, reduction });
                    }
                }
            }
        }
    }
    all
}

struct Problem {
    logits: Array2<f64>,
    labels: Vec<usize>,
    rows: Array2<f64>,
    sample_weights: Vec<f64>,
    pos_weight: Vec<f64>,
}

impl Problem {
    fn random(rng: &mut Rng, kind: Kind) -> Self {
        let mut sample_weights = rng.positive(BATCH, 0.2, 2.0);
        sample_weights[0] = 0.0;
        let labels = rng.labels(BATCH, CLASSES);
        let rows = match kind {
            Kind::Labels => {
                Array2::from_shape_fn((BATCH, CLASSES), |(i, k)| f64::from(u8::from(labels[i] == k)))
            }
            Kind::MultiHot => Array2::from_shape_simple_fn((BATCH, CLASSES), || rng.below(2) as f64),
            Kind::Soft => Array2::from_shape_simple_fn((BATCH, CLASSES), || rng.uniform()),
        };
        Self {
            logits: rng.logits(BATCH, CLASSES, 3.0),
            labels,
            rows,
            sample_weights,
            pos_weight: rng.positive(CLASSES, 0.3, 9.0),
        }
    }

    fn run<F: Float>(&self, o: Options, z: &Array2<f64>) -> (f64, Array2<f64>) {
        let z = z.mapv(F::from_f64);
        let rows = self.rows.mapv(F::from_f64);
        let weights = cast::<F>(&self.sample_weights);
        let targets = match o.kind {
            Kind::Labels => Targets::labels(&self.labels),
            Kind::MultiHot => Targets::multi_hot(&rows),
            Kind::Soft => Targets::probs(&rows),
        };
        let targets = if o.weighted { targets.with_sample_weights(&weights) } else { targets };
        let (l, g) = loss::<F>(o, &self.pos_weight).loss_and_grad(&z, targets).unwrap();
        (l.as_f64(), g.mapv(F::as_f64))
    }

    /// `s_i·α_t·q^γ·(v_k·y·softplus(−z) + (1 − y)·softplus(z))`, `q = yσ(−z) + (1 − y)σ(z)`;
    /// the mean divides by `K·Σ s_i`.
    fn reference(&self, o: Options, z: &Array2<f64>) -> f64 {
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (mut sum, mut count) = (0.0, 0.0);
        for ((i, k), &s) in z.indexed_iter() {
            let y = self.rows[[i, k]];
            let w = if o.weighted { self.sample_weights[i] } else { 1.0 };
            let alpha_t = o.alpha.map_or(1.0, |a| a * y + (1.0 - a) * (1.0 - y));
            let q = y * sigmoid(-s) + (1.0 - y) * sigmoid(s);
            let ce = self.pos_weight[k] * y * softplus(-s) + (1.0 - y) * softplus(s);
            sum += w * alpha_t * q.powf(o.gamma) * ce;
            count += w;
        }
        if o.reduction == Reduction::Mean { sum / count } else { sum }
    }
}

fn loss<F: Float>(o: Options, pos_weight: &[f64]) -> SigmoidLoss<F> {
    let loss = SigmoidLoss::focal(F::from_f64(o.gamma)).unwrap().with_reduction(o.reduction);
    let loss = match o.alpha {
        Some(a) => loss.with_alpha(F::from_f64(a)).unwrap(),
        None => loss,
    };
    loss.with_pos_weight(&cast::<F>(pos_weight)).unwrap()
}

fn cast<F: Float>(v: &[f64]) -> Vec<F> {
    v.iter().map(|&x| F::from_f64(x)).collect()
}

#[test]
fn one_vs_rest_matches_finite_differences_and_the_formula_for_every_option_combination() {
    let mut rng = Rng::new(1441);
    for o in combinations() {
        let p = Problem::random(&mut rng, o.kind);
        let (loss, grad) = p.run::<f64>(o, &p.logits);
        let numeric = numeric_grad(&p.logits, |z| p.run::<f64>(o, z).0);
        let err = relative_error(&grad, &numeric);
        assert!(err <= 1e-6, "{o:?}: gradient relative error {err:e}");
        let reference = p.reference(o, &p.logits);
        assert!(relative(loss, reference) <= 1e-12, "{o:?}: {loss} vs {reference}");
    }
}

#[test]
fn one_vs_rest_f32_agrees_with_f64() {
    let mut rng = Rng::new(1443);
    for o in combinations() {
        let p = Problem::random(&mut rng, o.kind);
        let logits = p.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = p.run::<f64>(o, &logits);
        let (l32, g32) = p.run::<f32>(o, &logits);
        assert!(relative(l32, l64) <= 1e-5, "{o:?}: {l32} vs {l64}");
        assert!(relative_error(&g32, &g64) <= 1e-5, "{o:?}: {:e}", relative_error(&g32, &g64));
    }
}

/// The binary calls on `[B]` logits with one positive weight, widened to f64.
fn binary_run<F: Float>(
    o: Options,
    z: &Array1<f64>,
    y: &[f64],
    weights: &[f64],
    v: f64,
) -> (f64, Array1<f64>) {
    let z = z.mapv(F::from_f64);
    let (y, weights) = (cast::<F>(y), cast::<F>(weights));
    let targets = BinaryTargets::new(&y);
    let targets = if o.weighted { targets.with_sample_weights(&weights) } else { targets };
    let (l, g) = loss::<F>(o, &[v]).binary_loss_and_grad(&z, targets).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

#[test]
fn binary_calls_match_finite_differences_f32_and_the_one_vs_rest_column() {
    let mut rng = Rng::new(1445);
    for o in combinations().into_iter().filter(|o| o.kind != Kind::Labels) {
        let p = Problem::random(&mut rng, o.kind);
        let z = p.logits.column(1).to_owned();
        let y = p.rows.column(1).to_vec();
        let v = p.pos_weight[1];
        let (loss, grad) = binary_run::<f64>(o, &z, &y, &p.sample_weights, v);
        let numeric = numeric_grad(&z.clone().insert_axis(ndarray::Axis(1)), |z| {
            binary_run::<f64>(o, &z.column(0).to_owned(), &y, &p.sample_weights, v).0
        });
        let err = relative_error(&grad.clone().insert_axis(ndarray::Axis(1)), &numeric);
        assert!(err <= 1e-6, "{o:?}: gradient relative error {err:e}");
        // The same decisions as a one-class [B, 1] batch.
        let column = Problem {
            logits: z.clone().insert_axis(ndarray::Axis(1)),
            labels: vec![0; BATCH],
            rows: p.rows.column(1).to_owned().insert_axis(ndarray::Axis(1)),
            sample_weights: p.sample_weights.clone(),
            pos_weight: vec![v],
        };
        let reference = column.reference(o, &column.logits);
        assert!(relative(loss, reference) <= 1e-12, "{o:?}: {loss} vs {reference}");
        let z32 = z.mapv(|v| f64::from(v as f32));
        let (l32, g32) = binary_run::<f32>(o, &z32, &y, &p.sample_weights, v);
        let (l64, g64) = binary_run::<f64>(o, &z32, &y, &p.sample_weights, v);
        assert!(relative(l32, l64) <= 1e-5 && (&g32 - &g64).iter().all(|d| d.abs() <= 1e-5), "{o:?}");
    }
}

/// Batches of many blocks of decisions, where a block starts mid-row: each decision still gets
/// its own class's positive weight (the formula written out, loss and gradient), for short and
/// long rows, f32 and f64.
#[test]
fn positive_weights_follow_their_class_across_blocks_of_decisions() {
    let mut rng = Rng::new(1451);
    for (batch, classes) in [(700, 2), (300, 3), (150, 7), (40, 300)] {
        let logits = rng.logits(batch, classes, 3.0);
        let multi_hot = Array2::from_shape_simple_fn((batch, classes), || rng.below(2) as f64);
        let pos_weight = rng.positive(classes, 0.3, 9.0);
        let n = (batch * classes) as f64;
        let softplus = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (mut expected, mut expected_grad) = (0.0, Array2::zeros((batch, classes)));
        for ((i, k), &s) in logits.indexed_iter() {
            let (y, v) = (multi_hot[[i, k]], pos_weight[k]);
            expected += (v * y * softplus(-s) + (1.0 - y) * softplus(s)) / n;
            expected_grad[[i, k]] = ((1.0 - y) * sigmoid(s) - v * y * sigmoid(-s)) / n;
        }
        fn run<F: Float>(z: &Array2<f64>, t: &Array2<f64>, v: &[f64]) -> (f64, Array2<f64>) {
            let (z, t) = (z.mapv(F::from_f64), t.mapv(F::from_f64));
            let loss = SigmoidLoss::<F>::bce().with_pos_weight(&cast::<F>(v)).unwrap();
            let (l, g) = loss.loss_and_grad(&z, Targets::multi_hot(&t)).unwrap();
            (l.as_f64(), g.mapv(F::as_f64))
        }
        for (tol, (loss, grad)) in [
            (1e-12, run::<f64>(&logits, &multi_hot, &pos_weight)),
            (1e-5, run::<f32>(&logits, &multi_hot, &pos_weight)),
        ] {
            assert!(relative(loss, expected) <= tol, "{batch}x{classes}: {loss} vs {expected}");
            let err = relative_error(&grad, &expected_grad);
            assert!(err <= tol, "{batch}x{classes}: gradient relative error {err:e}");
        }
    }
}

#[test]
fn unit_positive_weights_are_no_positive_weights_bit_for_bit() {
    let mut rng = Rng::new(1447);
    for o in combinations() {
        let p = Problem::random(&mut rng, Kind::Soft);
        let rows = p.rows.clone();
        let plain = SigmoidLoss::focal(o.gamma).unwrap().with_reduction(o.reduction);
        let plain = match o.alpha {
            Some(a) => plain.with_alpha(a).unwrap(),
            None => plain,
        };
        let weighted = plain.clone().with_pos_weight(&[1.0; CLASSES]).unwrap();
        assert_eq!(
            weighted.loss_and_grad(&p.logits, Targets::probs(&rows)).unwrap(),
            plain.loss_and_grad(&p.logits, Targets::probs(&rows)).unwrap()
        );
    }
}

#[test]
fn a_positive_weight_scales_only_the_positive_decisions_of_its_class() {
    let logits = array![[0.3_f64, -1.2, 2.0], [1.0, 0.5, -0.5]];
    let multi_hot = array![[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]];
    let per = |loss: SigmoidLoss<f64>| loss.per_sample_loss(&logits, Targets::multi_hot(&multi_hot)).unwrap();
    let plain = SigmoidLoss::bce().with_reduction(Reduction::Sum);
    let (a, b) = (per(plain.clone()), per(plain.with_pos_weight(&[1.0, 1.0, 5.0]).unwrap()));
    // Class 2 is positive in both rows: its term is 5 times larger; the others are unchanged.
    let softplus_neg = |s: f64| (-s).exp().ln_1p();
    for (i, s) in [2.0, -0.5].into_iter().enumerate() {
        assert!(relative(b[i] - a[i], 4.0 * softplus_neg(s)) <= 1e-14);
    }
    // pos_weight 0 drops the positives: only negatives count.
    let (loss, grad) = SigmoidLoss::bce()
        .with_pos_weight(&[0.0])
        .unwrap()
        .binary_loss_and_grad(&array![2.0_f64, -1.0], &[1.0, 0.0])
        .unwrap();
    assert!(relative(loss, (1.0_f64.exp().recip()).ln_1p() / 2.0) <= 1e-15 && grad[0] == 0.0);
}

const SENTINEL: f64 = 7.0;

fn fail<F: Float>(loss: &SigmoidLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    errors[0].clone()
}

fn binary_fail<F: Float>(loss: &SigmoidLoss<F>, logits: &Array1<F>, y: &[F]) -> Error {
    let mut grad = Array1::from_elem(logits.len(), F::from_f64(SENTINEL));
    let errors = [
        loss.binary_loss(logits, y).unwrap_err(),
        loss.binary_loss_and_grad(logits, y).unwrap_err(),
        loss.binary_loss_and_grad_into(logits, y, &mut grad).unwrap_err(),
        loss.binary_per_sample_loss(logits, y).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    assert!(grad.iter().all(|g| g.as_f64() == SENTINEL));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let three = SigmoidLoss::<F>::bce().with_pos_weight(&cast::<F>(&[1.0, 2.0, 3.0])).unwrap();
    let z = Array2::<F>::zeros((2, 2));
    // Checked after the batch's dimensions, before the targets.
    assert_eq!(fail(&three, &Array2::zeros((0, 2)), Targets::labels(&[])), Error::EmptyBatch);
    assert_eq!(fail(&three, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
    let err = fail(&three, &z, Targets::labels(&[0]));
    assert_eq!(err, Error::ShapeMismatch { name: "pos_weight", expected: vec![2], found: vec![3] });
    assert_eq!(err.to_string(), "pos_weight has shape [3], expected [2]");
    // Over [B] logits it takes one value.
    let logits = Array1::<F>::zeros(2);
    let y = cast::<F>(&[1.0, 0.0]);
    assert_eq!(binary_fail(&three, &Array1::zeros(0), &[]), Error::EmptyBatch);
    let err = binary_fail(&three, &logits, &y[..1]);
    assert_eq!(err, Error::ShapeMismatch { name: "pos_weight", expected: vec![1], found: vec![3] });
    let one = SigmoidLoss::<F>::bce().with_pos_weight(&cast::<F>(&[2.0])).unwrap();
    let err = binary_fail(&one, &logits, &y[..1]);
    assert_eq!(err, Error::ShapeMismatch { name: "targets", expected: vec![2], found: vec![1] });
    assert!(one.binary_loss(&logits, &y).is_ok());
    // A one-class [B, 1] batch takes one value too; the batch checks follow.
    let column = Array2::<F>::zeros((2, 1));
    assert!(one.loss(&column, Targets::labels(&[0, 0])).is_ok());
    assert_eq!(
        fail(&one, &column, Targets::labels(&[0, 1])),
        Error::LabelOutOfRange { row: 1, label: 1, classes: 1 }
    );
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn the_builder_rejects_negative_or_non_finite_positive_weights() {
    for (bad, index) in [([1.0, -1.0], 1), ([f64::NAN, 1.0], 0), ([1.0, f64::INFINITY], 1)] {
        let err = SigmoidLoss::bce().with_pos_weight(&bad).unwrap_err();
        assert!(
            matches!(err, Error::InvalidParameter { name: "pos_weight", index: Some(i), .. } if i == index),
            "{err:?}"
        );
    }
    assert_eq!(SigmoidLoss::<f64>::bce().pos_weight(), None);
}
