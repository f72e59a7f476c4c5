//! Two-class rows of hard labels take a closed form (`ℓ = softplus(z_other − z_y)`); every other
//! layout takes the general row. Both must give the same losses and gradients, for every option.

mod common;

use common::{Options, Problem, Rng, numeric_grad, relative, relative_error};
use longtail::{Error, Float, Loss, Reduction, SoftmaxLoss, Targets};
use ndarray::{Array2, s};

/// The closed form's options: hard labels without smoothing (the others take the general row).
fn closed_form_options() -> impl Iterator<Item = Options> {
    Options::all().into_iter().filter(|o| !o.probs && o.smoothing == 0.0)
}

/// `problem` (two classes) as three classes, the third masked by `-inf` logits: the same
/// softmax, which the general row computes.
fn with_a_masked_class(problem: &Problem) -> Problem {
    let mut three = problem.clone();
    three.logits = Array2::from_shape_fn((problem.logits.nrows(), 3), |(i, k)| {
        if k < 2 { problem.logits[[i, k]] } else { f64::NEG_INFINITY }
    });
    for v in [&mut three.prior, &mut three.class_weights, &mut three.alpha] {
        v.push(1.0);
    }
    three.probs = Array2::zeros((problem.logits.nrows(), 3));
    three
}

/// The per-sample losses, the reduced loss and its gradient of `problem` on its logits.
fn outputs<F: Float>(problem: &Problem) -> (Vec<f64>, f64, Array2<f64>) {
    let (loss, z) = (problem.loss::<F>(), problem.logits.mapv(F::from_f64));
    let (losses, _) = problem.with_targets(|t| loss.per_sample_loss_and_grad(&z, t)).unwrap();
    let (value, grad) = problem.with_targets(|t| loss.loss_and_grad(&z, t)).unwrap();
    (losses.iter().map(|v| v.as_f64()).collect(), value.as_f64(), grad.mapv(F::as_f64))
}

fn closed_form_matches_the_general_row<F: Float>(tolerance: f64) {
    let mut rng = Rng::new(21);
    // 300 rows: full blocks and a partial one.
    for options in closed_form_options() {
        let problem = Problem::random(options, 300, 2, &mut rng);
        let (losses, value, grad) = outputs::<F>(&problem);
        let (row_losses, row_value, row_grad) = outputs::<F>(&with_a_masked_class(&problem));
        assert!(relative(value, row_value) <= tolerance, "{options:?}: {value} vs {row_value}");
        assert!(row_grad.column(2).iter().all(|&g| g == 0.0));
        let err = relative_error(&grad, &row_grad.slice(s![.., ..2]).to_owned());
        assert!(err <= tolerance, "{options:?}: gradient relative error {err:e}");
        for (i, (&a, &b)) in losses.iter().zip(&row_losses).enumerate() {
            assert!((a - b).abs() <= tolerance * b.abs().max(1e-30), "{options:?}: row {i}: {a} vs {b}");
        }
    }
}

#[test]
fn closed_form_matches_the_general_row_f64() {
    closed_form_matches_the_general_row::<f64>(1e-13);
}

/// The logit adjustment `τ·log(π_k/Σπ)` rounds differently with a third class in `Σπ`; a
/// focal loss near 0 amplifies that.
#[test]
fn closed_form_matches_the_general_row_f32() {
    closed_form_matches_the_general_row::<f32>(1e-5);
}

/// Every option against central differences and the plain formula, in f64, and f32 against f64.
#[test]
fn closed_form_matches_finite_differences_and_f64() {
    let mut rng = Rng::new(22);
    for options in closed_form_options() {
        let problem = Problem::random(options, 9, 2, &mut rng);
        problem.assert_matches_finite_differences_and_reference();
        let logits = problem.logits.mapv(|v| f64::from(v as f32));
        let (l64, g64) = problem.loss_and_grad::<f64>(&logits);
        let (l32, g32) = problem.loss_and_grad::<f32>(&logits);
        assert!(relative(l32, l64) <= 1e-5, "{options:?}: loss f32 {l32} vs f64 {l64}");
        assert!(relative_error(&g32, &g64) <= 1e-5, "{options:?}: f32 gradient");
    }
}

/// Focal modulation of any strength: `σ(d)^γ` from the logarithm, so a large `γ` on a confident
/// row is not `0^γ` of a rounded `1 − p`.
#[test]
fn focal_rows_of_any_gamma_match_finite_differences() {
    let z = ndarray::array![[0.0, 3.0], [2.5, -1.0], [0.3, 0.2], [-4.0, 4.0]];
    let labels = [0, 0, 1, 1];
    for gamma in [0.25, 1.0, 3.0, 12.0, 40.0] {
        let loss = SoftmaxLoss::<f64>::focal(gamma).unwrap().with_reduction(Reduction::Sum);
        let (_, grad) = loss.loss_and_grad(&z, &labels).unwrap();
        let numeric = numeric_grad(&z, |z| loss.loss(z, &labels).unwrap());
        assert!(relative_error(&grad, &numeric) <= 1e-6, "gamma {gamma}");
        let per_row = loss.per_sample_loss(&z, &labels).unwrap();
        for (i, &l) in per_row.iter().enumerate() {
            let (zy, zo) = (z[[i, labels[i]]], z[[i, 1 - labels[i]]]);
            let p_other = 1.0 / (1.0 + (zy - zo).exp());
            let expected = p_other.powf(gamma) * (zo - zy).exp().ln_1p();
            assert!(relative(l, expected) <= 1e-13, "gamma {gamma}, row {i}: {l} vs {expected}");
        }
    }
}

/// `-inf` masks the other class (a certain row: zero loss and gradient); a masked label is an
/// error unless its row weighs nothing, and then the row is zeros.
#[test]
fn masks_and_zero_weights() {
    let z = ndarray::array![[f64::NEG_INFINITY, 1.0], [0.5, -0.5], [2.0, f64::NEG_INFINITY]];
    let loss = SoftmaxLoss::<f64>::cross_entropy().with_reduction(Reduction::Sum);
    let (losses, grad) = loss.per_sample_loss_and_grad(&z, &[1, 0, 0]).unwrap();
    assert_eq!((losses[0], losses[2]), (0.0, 0.0));
    assert_eq!(grad.row(0).to_vec(), [0.0, 0.0]);
    assert_eq!(grad.row(2).to_vec(), [0.0, 0.0]);
    assert!(matches!(loss.loss(&z, &[0, 0, 0]), Err(Error::MaskedTarget { row: 0, class: 0 })));
    let weights = [0.0, 1.0, 1.0];
    let targets = Targets::labels(&[0, 0, 0]).with_sample_weights(&weights);
    let (losses, grad) = loss.per_sample_loss_and_grad(&z, targets).unwrap();
    assert_eq!((losses[0], grad[[0, 0]], grad[[0, 1]]), (0.0, 0.0, 0.0));
    assert!(losses[1] > 0.0 && losses[2] == 0.0);
}

/// A margin beyond the float's range (`3e38 − (−3e38)` in f32) leaves the closed form: the batch
/// gives what the general row gives for the same rows with a masked third class.
#[test]
fn a_margin_that_overflows_takes_the_general_row() {
    let z = ndarray::array![[3e38_f32, -3e38], [0.5, 0.25]];
    let masked = ndarray::array![[3e38_f32, -3e38, f32::NEG_INFINITY], [0.5, 0.25, f32::NEG_INFINITY]];
    let loss = SoftmaxLoss::<f32>::cross_entropy();
    let closed = loss.loss_and_grad(&z, &[1, 0]).map(|(l, g)| (l, g.iter().copied().collect::<Vec<_>>()));
    let general = loss
        .loss_and_grad(&masked, &[1, 0])
        .map(|(l, g)| (l, g.slice(s![.., ..2]).iter().copied().collect::<Vec<_>>()));
    assert_eq!(closed, general);
}
