//! The margin losses (LDAM, VS, Poly-1, pairwise margins) run short contiguous rows eight at a
//! time, one vector lane per row (LDAM's and VS's rows of 3 to 7 classes a block of rows at a
//! time), and other rows one at a time: both give the same results, bit
//! for bit, for every short row length, with masked classes, weights and both reductions. Rows of
//! two classes take a closed form, which gives what the general rows give.

mod common;

use common::Rng;
use longtail::{Float, LdamLoss, Loss, PairwiseMarginLoss, Poly1Loss, Reduction, Targets, VsLoss};
use ndarray::{Array1, Array2, ArrayView2, s};

/// The grouped losses of `K` classes, with every option that changes their rows.
fn losses<F: Float>(rng: &mut Rng, classes: usize, reduction: Reduction) -> Vec<Box<dyn Loss<F>>> {
    let f = |v: Vec<f64>| v.into_iter().map(F::from_f64).collect::<Vec<F>>();
    let counts = f(rng.positive(classes, 1.0, 1000.0));
    let weights = f(rng.positive(classes, 0.1, 3.0));
    let prior: Vec<F> = {
        let total: F = counts.iter().fold(F::zero(), |s, &c| s + c);
        counts.iter().map(|&c| c / total).collect()
    };
    let margins =
        Array2::from_shape_fn((classes, classes), |(y, k)| F::from_f64(((y * 7 + k * 3) % 5) as f64 * 0.3));
    vec![
        Box::new(LdamLoss::new(&counts).unwrap().with_reduction(reduction)),
        Box::new(
            LdamLoss::new(&counts).unwrap().with_class_weights(&weights).unwrap().with_reduction(reduction),
        ),
        Box::new(VsLoss::new(&counts).unwrap().with_reduction(reduction)),
        Box::new(
            VsLoss::new(&counts)
                .unwrap()
                .with_gamma(F::from_f64(0.3))
                .unwrap()
                .with_class_weights(&weights)
                .unwrap()
                .with_reduction(reduction),
        ),
        Box::new(Poly1Loss::new(F::from_f64(1.5)).unwrap().with_reduction(reduction)),
        Box::new(
            Poly1Loss::new(F::from_f64(-0.5))
                .unwrap()
                .with_logit_adjustment(&prior, F::one())
                .unwrap()
                .with_class_weights(&weights)
                .unwrap()
                .with_reduction(reduction),
        ),
        Box::new(PairwiseMarginLoss::new(margins.view()).unwrap().with_reduction(reduction)),
    ]
}

/// Logits with masked classes (never the label), labels, and sample weights of which one is 0.
fn problem<F: Float>(rng: &mut Rng, batch: usize, classes: usize) -> (Array2<F>, Vec<usize>, Vec<F>) {
    let labels = rng.labels(batch, classes);
    let mut weights: Vec<F> = rng.positive(batch, 0.0, 2.0).into_iter().map(F::from_f64).collect();
    weights[batch / 2] = F::zero();
    let logits = Array2::from_shape_fn((batch, classes), |(i, k)| {
        let masked = k != labels[i] && rng.below(7) == 0;
        if masked { F::neg_infinity() } else { F::from_f64(rng.normal() * 3.0) }
    });
    (logits, labels, weights)
}

/// The loss and gradient, the per-sample losses and gradients, and the per-sample losses without
/// a gradient, of `logits` (any layout).
fn results<F: Float>(
    loss: &dyn Loss<F>,
    logits: ArrayView2<F>,
    targets: &Targets<'_, F>,
) -> (F, Array2<F>, Array1<F>, Array2<F>, Array1<F>) {
    let (batch, classes) = logits.dim();
    let mut grad = Array2::from_elem((batch, classes), F::nan());
    let value = loss.loss_into(&logits, targets, Some(&mut grad)).unwrap();
    let (mut losses, mut grads) =
        (Array1::from_elem(batch, F::nan()), Array2::from_elem((batch, classes), F::nan()));
    loss.per_sample_into(&logits, targets, &mut losses, Some(&mut grads)).unwrap();
    let mut without_gradient = Array1::from_elem(batch, F::nan());
    loss.per_sample_into(&logits, targets, &mut without_gradient, None).unwrap();
    (value, grad, losses, grads, without_gradient)
}

fn grouped_rows_match_rows_one_at_a_time<F: Float>() {
    let mut rng = Rng::new(41);
    for classes in 1..=16 {
        // A partial group, a full one, full groups with a partial one after them, and blocks of
        // rows with a partial one after them.
        for batch in [5, 8, 21, 150] {
            let (logits, labels, weights) = problem::<F>(&mut rng, batch, classes);
            // The row of weight 0 fully masked, where the weights are given.
            let mut masked = logits.clone();
            masked.row_mut(batch / 2).fill(F::neg_infinity());
            let unweighted = (logits, Targets::labels(&labels));
            let weighted = (masked, Targets::labels(&labels).with_sample_weights(&weights));
            for reduction in [Reduction::Mean, Reduction::Sum] {
                for loss in losses::<F>(&mut rng, classes, reduction) {
                    for (logits, targets) in [&unweighted, &weighted] {
                        // Column-major logits: their rows are not contiguous, and go one at a time.
                        let column_major = logits.t().as_standard_layout().into_owned();
                        let grouped = results(loss.as_ref(), logits.view(), targets);
                        let one_at_a_time = results(loss.as_ref(), column_major.t(), targets);
                        let bits = |r: &(F, Array2<F>, Array1<F>, Array2<F>, Array1<F>)| {
                            let mut bits = vec![r.0.as_f64().to_bits()];
                            let values = r.1.iter().chain(&r.2).chain(&r.3).chain(&r.4);
                            bits.extend(values.map(|v| v.as_f64().to_bits()));
                            bits
                        };
                        assert_eq!(
                            bits(&grouped),
                            bits(&one_at_a_time),
                            "{loss:?}, K = {classes}, B = {batch}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn grouped_short_rows_match_rows_one_at_a_time_bit_for_bit() {
    grouped_rows_match_rows_one_at_a_time::<f32>();
    grouped_rows_match_rows_one_at_a_time::<f64>();
}

type BoxedLoss<F> = Box<dyn Loss<F>>;

/// A loss from class counts, class weights and pairwise margins.
type MakeLoss<'a, F> = &'a dyn Fn(&[F], &[F], Array2<F>) -> BoxedLoss<F>;

/// The losses of [`losses`] on two classes, and the same losses on three classes whose third is
/// masked in every row (it never changes the first two's parameters: its count is the largest of
/// the two, its weight 1, its margins 0).
fn two_and_three<F: Float>(rng: &mut Rng, reduction: Reduction) -> Vec<(BoxedLoss<F>, BoxedLoss<F>)> {
    let f = |v: &[f64]| v.iter().map(|&v| F::from_f64(v)).collect::<Vec<F>>();
    let counts = rng.positive(2, 1.0, 1000.0);
    let weights = rng.positive(2, 0.1, 3.0);
    let third = |v: &[f64], last: f64| f(&[v[0], v[1], last]);
    let (counts2, counts3) = (f(&counts), third(&counts, counts[0].max(counts[1])));
    let (weights2, weights3) = (f(&weights), third(&weights, 1.0));
    let margins = |k: usize| {
        Array2::from_shape_fn((k, k), |(y, c)| {
            F::from_f64(if y < 2 && c < 2 { [[0.0, 0.7], [0.2, 0.0]][y][c] } else { 0.0 })
        })
    };
    let both = |make: MakeLoss<'_, F>| {
        (make(&counts2, &weights2, margins(2)), make(&counts3, &weights3, margins(3)))
    };
    vec![
        both(&|c, w, _| {
            Box::new(LdamLoss::new(c).unwrap().with_class_weights(w).unwrap().with_reduction(reduction))
        }),
        both(&|c, w, _| {
            let vs = VsLoss::new(c).unwrap().with_gamma(F::from_f64(0.3)).unwrap();
            Box::new(vs.with_class_weights(w).unwrap().with_reduction(reduction))
        }),
        both(&|_, w, _| {
            let poly = Poly1Loss::new(F::from_f64(1.5)).unwrap().with_class_weights(w).unwrap();
            Box::new(poly.with_reduction(reduction))
        }),
        both(&|_, _, _| Box::new(Poly1Loss::new(F::from_f64(-0.5)).unwrap().with_reduction(reduction))),
        both(&|c, _, _| {
            let poly = Poly1Loss::new(F::from_f64(0.5)).unwrap().with_logit_adjustment(c, F::one()).unwrap();
            Box::new(poly.with_reduction(reduction))
        }),
        both(&|_, _, m| Box::new(PairwiseMarginLoss::new(m.view()).unwrap().with_reduction(reduction))),
    ]
}

fn two_class_rows_match_general_rows<F: Float>(tolerance: f64) {
    let mut rng = Rng::new(43);
    let close = |a: &[F], b: &[F]| {
        let max = b.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.as_f64().abs()));
        a.iter().zip(b).all(|(a, b)| (a.as_f64() - b.as_f64()).abs() <= tolerance * max)
    };
    for batch in [1, 8, 300] {
        let (logits, labels, weights) = problem::<F>(&mut rng, batch, 2);
        let mut masked = logits.clone();
        masked.row_mut(batch / 2).fill(F::neg_infinity());
        let cases = [
            (logits, Targets::labels(&labels)),
            (masked, Targets::labels(&labels).with_sample_weights(&weights)),
        ];
        for (logits, targets) in &cases {
            let mut three = Array2::from_elem((batch, 3), F::neg_infinity());
            three.slice_mut(s![.., ..2]).assign(logits);
            for reduction in [Reduction::Mean, Reduction::Sum] {
                for (two_class, general) in two_and_three::<F>(&mut rng, reduction) {
                    let name = format!("{general:?}, B = {batch}");
                    let two_class = results(two_class.as_ref(), logits.view(), targets);
                    let general = results(general.as_ref(), three.view(), targets);
                    let first_two = |g: &Array2<F>| g.slice(s![.., ..2]).iter().copied().collect::<Vec<F>>();
                    assert!(close(&[two_class.0], &[general.0]), "{name}: loss");
                    assert!(
                        close(&two_class.1.iter().copied().collect::<Vec<F>>(), &first_two(&general.1)),
                        "{name}"
                    );
                    assert!(
                        close(two_class.2.as_slice().unwrap(), general.2.as_slice().unwrap()),
                        "{name}: losses"
                    );
                    assert!(
                        close(&two_class.3.iter().copied().collect::<Vec<F>>(), &first_two(&general.3)),
                        "{name}"
                    );
                    assert!(general.1.column(2).iter().all(|&g| g == F::zero()), "{name}: masked class");
                }
            }
        }
    }
}

#[test]
fn two_class_rows_in_closed_form_match_the_general_rows() {
    two_class_rows_match_general_rows::<f32>(1e-5);
    two_class_rows_match_general_rows::<f64>(1e-13);
}
