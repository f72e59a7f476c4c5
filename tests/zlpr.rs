//! The ZLPR multi-label loss: gradients against finite differences, the formula written as in the
//! author's `multilabel_categorical_crossentropy`, f32/f64 agreement, rows without positives or
//! negatives, stability, properties, decoding and every error.

mod common;

use common::{Rng, mat, numeric_grad, relative, relative_error};
use longtail::{Error, Float, Loss, Reduction, Targets, ZlprLoss};
use ndarray::{Array1, Array2, array};
use proptest::prelude::*;

/// Multi-hot targets with every kind of row: mixed, all negative (row 0), all positive (row 1).
fn targets(rng: &mut Rng, batch: usize, classes: usize) -> Array2<f64> {
    let mut t = Array2::from_shape_simple_fn((batch, classes), || rng.below(2) as f64);
    t.row_mut(0).fill(0.0);
    if batch > 1 {
        t.row_mut(1).fill(1.0);
    }
    t
}

/// The author's formula: `y_pred = (1 − 2y)·s`, then lse over each half with a 0 appended; rows
/// weighted by `weights`.
fn reference(
    logits: &Array2<f64>,
    targets: &Array2<f64>,
    weights: Option<&Array1<f64>>,
    adjust: Option<&[f64]>,
    reduction: Reduction,
) -> f64 {
    let lse0 = |v: Vec<f64>| {
        let m = v.iter().copied().fold(0.0, f64::max);
        m + ((-m).exp() + v.iter().map(|x| (x - m).exp()).sum::<f64>()).ln()
    };
    let (mut total, mut denominator) = (0.0, 0.0);
    for (i, (s, t)) in logits.rows().into_iter().zip(targets.rows()).enumerate() {
        let w = weights.map_or(1.0, |w| w[i]);
        let s: Vec<f64> = s.iter().enumerate().map(|(j, v)| v + adjust.map_or(0.0, |a| a[j])).collect();
        let neg = s.iter().zip(&t).filter(|(_, t)| **t == 0.0).map(|(s, _)| *s).collect();
        let pos = s.iter().zip(&t).filter(|(_, t)| **t == 1.0).map(|(s, _)| -*s).collect();
        total += w * (lse0(neg) + lse0(pos));
        denominator += w;
    }
    if reduction == Reduction::Mean { total / denominator } else { total }
}

fn build<F: Float>(prior: Option<&[f64]>, reduction: Reduction) -> ZlprLoss<F> {
    let loss = ZlprLoss::new().with_reduction(reduction);
    match prior {
        Some(p) => loss
            .with_label_prior(&p.iter().map(|&v| F::from_f64(v)).collect::<Vec<F>>(), F::from_f64(1.3))
            .unwrap(),
        None => loss,
    }
}

fn run<F: Float>(
    loss: &ZlprLoss<F>,
    logits: &Array2<f64>,
    targets: &Array2<f64>,
    weights: Option<&Array1<f64>>,
) -> (f64, Array2<f64>) {
    let multi_hot = targets.mapv(F::from_f64);
    let weights = weights.map(|w| w.mapv(F::from_f64));
    let targets = match &weights {
        Some(w) => Targets::multi_hot(&multi_hot).with_sample_weights(w),
        None => Targets::multi_hot(&multi_hot),
    };
    let (l, g) = loss.loss_and_grad(&logits.mapv(F::from_f64), targets).unwrap();
    (l.as_f64(), g.mapv(F::as_f64))
}

/// Positive sample weights but for an ignored row 0.
fn weights(rng: &mut Rng, batch: usize) -> Array1<f64> {
    let mut w = Array1::from(rng.positive(batch, 0.2, 2.0));
    w[0] = 0.0;
    w
}

#[test]
fn every_option_combination_matches_finite_differences_and_the_reference_formula() {
    let mut rng = Rng::new(201);
    for adjusted in [false, true] {
        for weighted in [false, true] {
            for reduction in [Reduction::Mean, Reduction::Sum] {
                let (logits, t) = (rng.logits(6, 5, 3.0), targets(&mut rng, 6, 5));
                let prior = rng.positive(5, 0.01, 0.9);
                let w = weighted.then(|| weights(&mut rng, 6));
                let loss = build::<f64>(adjusted.then_some(&prior[..]), reduction);
                let (value, grad) = run(&loss, &logits, &t, w.as_ref());
                let numeric = numeric_grad(&logits, |z| run(&loss, z, &t, w.as_ref()).0);
                let err = relative_error(&grad, &numeric);
                let case = format!("adjusted {adjusted}, weighted {weighted}, {reduction:?}");
                assert!(err <= 1e-6, "{case}: gradient relative error {err:e}");
                let expected = reference(&logits, &t, w.as_ref(), loss.logit_adjustment(), reduction);
                assert!(relative(value, expected) <= 1e-12, "{case}: {value} vs {expected}");
            }
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(203);
    for adjusted in [false, true] {
        let (logits, t) = (rng.logits(8, 6, 3.0).mapv(|v| f64::from(v as f32)), targets(&mut rng, 8, 6));
        let prior = rng.positive(6, 0.01, 0.9);
        let w = Some(weights(&mut rng, 8));
        let (l64, g64) =
            run(&build::<f64>(adjusted.then_some(&prior[..]), Reduction::Mean), &logits, &t, w.as_ref());
        let (l32, g32) =
            run(&build::<f32>(adjusted.then_some(&prior[..]), Reduction::Mean), &logits, &t, w.as_ref());
        assert!(relative(l32, l64) <= 1e-5 && relative_error(&g32, &g64) <= 1e-5, "{l32} vs {l64}");
    }
}

/// No positives: only the negative half; no negatives: only the positive half; K = 1 both ways.
#[test]
fn rows_without_positives_or_negatives_are_exact() {
    let logits = array![[0.5_f64, -1.0], [0.5, -1.0], [2.0, 0.0]];
    let t = array![[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]];
    let losses = ZlprLoss::new().per_sample_loss(&logits, &t).unwrap();
    let expected = [(0.5f64.exp() + (-1f64).exp()).ln_1p(), ((-0.5f64).exp() + 1f64.exp()).ln_1p()];
    assert!(relative(losses[0], expected[0]) <= 1e-15 && relative(losses[1], expected[1]) <= 1e-15);
    let one_class =
        ZlprLoss::new().per_sample_loss(&array![[1.5_f32], [1.5]], &array![[0.0], [1.0]]).unwrap();
    assert_eq!(one_class.to_vec(), vec![1.5f32.exp().ln_1p(), (-1.5f32).exp().ln_1p()]);
}

/// Well-separated logits keep their tiny loss and gradient (no rounding to 0); huge ones stay finite.
#[test]
fn separated_and_huge_logits_are_stable_in_f32() {
    let t = array![[1.0_f32, 0.0, 1.0, 0.0]];
    let loss = ZlprLoss::new().with_reduction(Reduction::Sum);
    let (value, grad) = loss.loss_and_grad(&array![[30.0_f32, -30.0, 30.0, -30.0]], &t).unwrap();
    assert!((value / (4.0 * (-30f32).exp()) - 1.0).abs() < 1e-5, "{value}");
    assert!((grad[[0, 0]] / -(-30f32).exp() - 1.0).abs() < 1e-5, "{grad}");
    let (value, grad) = loss.loss_and_grad(&array![[-1e4_f32, 1e4, 1e4, -1e4]], &t).unwrap();
    // Two wrong labels at 1e4 each; the right ones add e^{−1e4} = 0.
    assert_eq!(value, 2e4);
    assert_eq!(grad.mapv(f32::round), array![[-1.0, 1.0, 0.0, 0.0]]);
}

#[test]
fn a_masked_negative_class_costs_nothing() {
    let t = array![[1.0_f64, 0.0, 0.0]];
    let (loss, grad) = ZlprLoss::new().loss_and_grad(&array![[1.0, f64::NEG_INFINITY, -1.0]], &t).unwrap();
    let two = ZlprLoss::new().loss(&array![[1.0, -1.0]], &array![[1.0, 0.0]]).unwrap();
    assert!(relative(loss, two) <= 1e-15 && grad[[0, 1]] == 0.0);
}

#[test]
fn a_batch_whose_weights_are_all_zero_has_loss_and_gradient_zero() {
    let multi_hot = array![[1.0_f32, 0.0], [0.0, 1.0]];
    let targets = Targets::multi_hot(&multi_hot).with_sample_weights(&[0.0, 0.0]);
    let logits = array![[f32::NEG_INFINITY, 1.0], [0.0, 3.0]];
    let (loss, grad) = ZlprLoss::new().loss_and_grad(&logits, targets).unwrap();
    assert_eq!((loss, grad.sum()), (0.0, 0.0));
}

#[test]
fn decode_thresholds_raw_logits_at_zero() {
    let logits = array![[0.3_f64, -0.3, 0.0], [f64::NEG_INFINITY, 5.0, -5.0]];
    assert_eq!(ZlprLoss::decode(&logits).unwrap(), array![[true, false, false], [false, true, false]]);
    let err = ZlprLoss::decode(&array![[0.0_f32, f32::NAN]]).unwrap_err();
    assert!(matches!(err, Error::NonFiniteLogit { row: 0, class: 1, .. }), "{err:?}");
}

#[test]
fn into_overwrites_and_equals_the_allocating_call() {
    let mut rng = Rng::new(207);
    let (logits, t) = (rng.logits(4, 3, 2.0), targets(&mut rng, 4, 3));
    let mut grad = Array2::from_elem((4, 3), f64::NAN);
    let value = ZlprLoss::new().loss_and_grad_into(&logits, &t, &mut grad).unwrap();
    assert_eq!((value, grad), ZlprLoss::new().loss_and_grad(&logits, &t).unwrap());
}

/// Strided logits, targets and gradient (transposed views) give the contiguous results bit for
/// bit, on short rows (padded to full vectors in f32), long ones and rows with a scalar tail.
#[test]
fn strided_batches_match_contiguous_ones() {
    fn check<F: Float>(rng: &mut Rng, classes: usize) {
        let batch = 5;
        let logits = rng.logits(batch, classes, 3.0).mapv(F::from_f64);
        let t = targets(rng, batch, classes).mapv(F::from_f64);
        let (logits_t, t_t) =
            (logits.t().as_standard_layout().into_owned(), t.t().as_standard_layout().into_owned());
        let loss = ZlprLoss::new();
        let (value, grad) = loss.loss_and_grad(&logits, &t).unwrap();
        let mut strided_grad = Array2::zeros((classes, batch));
        let mut strided_grad = strided_grad.view_mut().reversed_axes();
        let strided = loss.loss_and_grad_into(&logits_t.t(), t_t.t(), &mut strided_grad).unwrap();
        let bits = |v: &F| v.as_f64().to_bits();
        assert_eq!(bits(&strided), bits(&value));
        assert!(strided_grad.iter().zip(&grad).all(|(a, b)| bits(a) == bits(b)));
        let losses = loss.per_sample_loss(&logits_t.t(), t_t.t()).unwrap();
        assert_eq!(losses, loss.per_sample_loss(&logits, &t).unwrap());
    }
    let mut rng = Rng::new(211);
    for classes in [6, 37, 1031] {
        check::<f32>(&mut rng, classes);
        check::<f64>(&mut rng, classes);
    }
}

const SENTINEL: f64 = 7.0;

/// The error of every call on a bad batch, which must be the same. Errors of the batch's layout
/// leave `grad_out` untouched; those of its entries (which the kernel finds row by row as it reads
/// them) may leave the rows before the bad one written, but none after it.
fn fail<'t, F: Float>(loss: &ZlprLoss<F>, logits: &Array2<F>, targets: impl Into<Targets<'t, F>>) -> Error {
    let targets = targets.into();
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let sum = loss.clone().with_reduction(Reduction::Sum);
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        sum.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| format!("{e:?}") == format!("{:?}", errors[0])), "{errors:?}");
    let untouched_from = match errors[0] {
        Error::TargetOutOfRange { row, .. }
        | Error::NonFiniteLogit { row, .. }
        | Error::MaskedTarget { row, .. }
        | Error::Overflow { row: Some(row), .. } => row + 1,
        _ => 0,
    };
    let rows = grad.rows().into_iter().skip(untouched_from);
    assert!(rows.flatten().all(|g| g.as_f64() == SENTINEL), "{:?}: {grad:?}", errors[0]);
    errors[0].clone()
}

fn errors_for<F: Float>() {
    let plain = ZlprLoss::<F>::new();
    let t = mat::<F>(&[&[1.0, 0.0], &[0.0, 1.0]]);
    let z = mat::<F>(&[&[0.5, -0.5], &[1.0, 2.0]]);
    assert_eq!(fail(&plain, &Array2::zeros((0, 2)), &Array2::zeros((0, 2))), Error::EmptyBatch);
    assert_eq!(fail(&plain, &Array2::zeros((2, 0)), &Array2::zeros((2, 0))), Error::NoClasses);
    let adjusted = ZlprLoss::new().with_label_prior(&[F::from_f64(0.1); 3], F::one()).unwrap();
    assert_eq!(
        fail(&adjusted, &z, &t),
        Error::ShapeMismatch { name: "prior", expected: vec![2], found: vec![3] }
    );
    let short = mat::<F>(&[&[1.0, 0.0]]);
    assert_eq!(
        fail(&plain, &z, &short),
        Error::ShapeMismatch { name: "targets", expected: vec![2, 2], found: vec![1, 2] }
    );
    let short_weights = [F::one()];
    let err = fail(&plain, &z, Targets::multi_hot(&t).with_sample_weights(&short_weights));
    assert_eq!(err, Error::ShapeMismatch { name: "sample_weights", expected: vec![2], found: vec![1] });
    let negative = [F::one(), -F::one()];
    let err = fail(&plain, &z, Targets::multi_hot(&t).with_sample_weights(&negative));
    assert_eq!(err, Error::InvalidSampleWeight { row: 1, value: -1.0 });
    for bad in [0.5, -1.0, 2.0, f64::NAN] {
        let err = fail(&plain, &z, &mat::<F>(&[&[1.0, 0.0], &[bad, 1.0]]));
        assert!(
            matches!(err, Error::TargetOutOfRange { row: 1, class: 0, expected: "0 or 1", .. }),
            "{err:?}"
        );
    }
    let err = fail(&plain, &z, &mat::<F>(&[&[1.0, 0.5], &[0.0, 1.0]]));
    assert_eq!(err.to_string(), "target at row 0, class 1 is 0.5; expected 0 or 1");
    for bad in [f64::NAN, f64::INFINITY] {
        let err = fail(&plain, &mat::<F>(&[&[0.5, -0.5], &[bad, 2.0]]), &t);
        assert!(matches!(err, Error::NonFiniteLogit { row: 1, class: 0, .. }), "{err:?}");
    }
    let max = F::max_value().as_f64();
    let prior = [F::from_f64(0.9), F::from_f64(0.5)];
    // τ·log 9 ≈ max/4.5: finite, but a logit near max overflows once adjusted.
    let overflowing = ZlprLoss::new().with_label_prior(&prior, F::from_f64(max / 10.0)).unwrap();
    let err = fail(&overflowing, &mat::<F>(&[&[max, 0.0], &[0.0, 0.0]]), &t);
    assert_eq!(
        err,
        Error::Overflow { what: "logit + adjustment", row: Some(0), class: Some(0), value: Some(max) }
    );
    let err = fail(&plain, &mat::<F>(&[&[0.5, -0.5], &[1.0, f64::NEG_INFINITY]]), &t);
    assert_eq!(err, Error::MaskedTarget { row: 1, class: 1 });
    // A masked positive in an ignored row is fine.
    let masked = mat::<F>(&[&[0.5, -0.5], &[1.0, f64::NEG_INFINITY]]);
    let ignore_row_1 = [F::one(), F::zero()];
    assert!(plain.loss(&masked, Targets::multi_hot(&t).with_sample_weights(&ignore_row_1)).is_ok());
}

#[test]
fn every_error_variant_and_trigger_is_the_error_of_every_call() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    for bad in [0.0, 1.0, -0.5, f64::NAN] {
        let err = ZlprLoss::new().with_label_prior(&[0.5, bad], 1.0).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: "prior", index: Some(1), .. }), "{err:?}");
    }
    let err = ZlprLoss::new().with_label_prior(&[0.5, 0.2], f64::INFINITY).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
    let err = ZlprLoss::<f32>::new().with_label_prior(&[1e-30, 0.5], 1e37).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "tau", index: None, .. }), "{err:?}");
    assert!(ZlprLoss::new().with_label_prior(&[0.5, 0.2], 0.0).unwrap().logit_adjustment().is_none());
}

fn batch() -> impl Strategy<Value = (Array2<f64>, Array2<f64>, Vec<f64>)> {
    (1..7usize, 1..9usize, any::<u64>(), 0.1..20.0f64).prop_map(|(b, k, seed, scale)| {
        let mut rng = Rng::new(seed);
        (rng.logits(b, k, scale), targets(&mut rng, b, k), rng.positive(k, 0.01, 0.99))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn loss_and_every_per_sample_loss_are_non_negative((logits, t, _) in batch()) {
        prop_assert!(ZlprLoss::new().per_sample_loss(&logits, &t).unwrap().iter().all(|&l| l >= 0.0));
    }

    #[test]
    fn the_label_prior_adjustment_is_a_shift_of_the_logits((logits, t, prior) in batch(), tau in -2.0..2.0f64) {
        let adjusted = ZlprLoss::new().with_label_prior(&prior, tau).unwrap();
        let shift: Array1<f64> = prior.iter().map(|p| tau * (p / (1.0 - p)).ln()).collect();
        let (a, ga) = adjusted.loss_and_grad(&logits, &t).unwrap();
        let (b, gb) = ZlprLoss::new().loss_and_grad(&(&logits + &shift), &t).unwrap();
        prop_assert!(relative(a, b) <= 1e-12 && (&ga - &gb).iter().all(|d| d.abs() <= 1e-12));
    }

    #[test]
    fn the_loss_falls_along_minus_the_gradient((logits, t, _) in batch()) {
        let loss = ZlprLoss::new();
        let (value, grad) = loss.loss_and_grad(&logits, &t).unwrap();
        let stepped = &logits - &(&grad * 1e-3);
        prop_assert!(loss.loss(&stepped, &t).unwrap() <= value);
    }
}

/// Rows of every length from 1 to 40 classes (the kernel's passes run 16 or 8 classes at a time
/// and pad the rest) and 1031, with ties at a half's maximum (duplicates, logits exactly 0, which
/// tie with the implicit zero) and `-inf` negatives: loss within 1e-12 (f64) and 1e-5 (f32) of
/// the author's formula, the gradient within 1e-6 of central differences (f64), a `-inf`
/// negative's gradient exactly 0.
#[test]
fn every_row_length_with_ties_and_masked_negatives_matches_the_formula() {
    let mut rng = Rng::new(17);
    for classes in (1..=40).chain([1031]) {
        let batch = 4;
        let mut logits = rng.logits(batch, classes, 3.0);
        let t = Array2::from_shape_fn((batch, classes), |(i, j)| f64::from(u8::from((i + 3 * j) % 4 == 0)));
        // Row 0: all logits 0 (every class ties with the implicit zero). Row 1: the max of each
        // half twice. Row 2: a masked negative where there is one.
        logits.row_mut(0).fill(0.0);
        let (neg, pos) = (|j: usize| t[[1, j]] == 0.0, |j: usize| t[[1, j]] == 1.0);
        if let (Some(a), Some(b)) = ((0..classes).find(|&j| neg(j)), (0..classes).rfind(|&j| neg(j))) {
            logits[[1, a]] = 5.0;
            logits[[1, b]] = 5.0;
        }
        if let (Some(a), Some(b)) = ((0..classes).find(|&j| pos(j)), (0..classes).rfind(|&j| pos(j))) {
            logits[[1, a]] = -4.0;
            logits[[1, b]] = -4.0;
        }
        let masked = (0..classes).find(|&j| t[[2, j]] == 0.0);
        if let Some(j) = masked {
            logits[[2, j]] = f64::NEG_INFINITY;
        }
        let expected = reference(&logits, &t, None, None, Reduction::Sum);
        let loss = ZlprLoss::new().with_reduction(Reduction::Sum);
        let (value, grad) = run::<f64>(&loss, &logits, &t, None);
        assert!(relative(value, expected) <= 1e-12, "K = {classes}: {value} vs {expected}");
        let loss32 = ZlprLoss::<f32>::new().with_reduction(Reduction::Sum);
        let (value32, grad32) = run::<f32>(&loss32, &logits, &t, None);
        assert!(relative(value32, expected) <= 1e-5, "K = {classes}: f32 {value32} vs {expected}");
        assert!(relative_error(&grad32, &grad) <= 1e-5, "K = {classes}: f32 gradient");
        if let Some(j) = masked {
            assert!(grad[[2, j]] == 0.0 && grad32[[2, j]] == 0.0);
        }
        // Central differences away from the masked row.
        let finite = logits.slice(ndarray::s![..2, ..]).to_owned();
        let t2 = t.slice(ndarray::s![..2, ..]).to_owned();
        let f = |z: &Array2<f64>| run::<f64>(&loss, z, &t2, None).0;
        let numeric = numeric_grad(&finite, f);
        let err = relative_error(&run::<f64>(&loss, &finite, &t2, None).1, &numeric);
        assert!(err <= 1e-6, "K = {classes}: gradient relative error {err:e}");
    }
}
