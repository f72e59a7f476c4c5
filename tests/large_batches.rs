//! Large batches: f32 accuracy over very long rows, and results that do not depend on the number
//! of threads.

mod common;

use common::Rng;
use longtail::{Float, Loss, Reduction, SoftmaxLoss};
use ndarray::Array2;

/// One loss per kernel: one-hot (logit-adjusted CE), dense without factors (label smoothing) and
/// dense with focal and class factors.
fn losses<F: Float>(classes: usize, rng: &mut Rng) -> Vec<SoftmaxLoss<F>> {
    let counts: Vec<F> = rng.positive(classes, 1.0, 1000.0).into_iter().map(F::from_f64).collect();
    vec![
        SoftmaxLoss::logit_adjusted(&counts).unwrap(),
        SoftmaxLoss::cross_entropy().with_label_smoothing(F::from_f64(0.1)).unwrap(),
        SoftmaxLoss::focal(F::from_f64(0.5))
            .unwrap()
            .with_class_weights(&counts)
            .unwrap()
            .with_reduction(Reduction::Sum),
    ]
}

/// 32 rows of 2^18 classes, logits uniform in [-8, 8]: the f32 loss within 1e-6 relative of the
/// f64 loss on the same logits (each row's sum of exponentials is accumulated in f64 by blocks).
#[test]
fn f32_loss_over_262144_classes_matches_f64_within_1e_6() {
    let (batch, classes) = (32, 1 << 18);
    let mut rng = Rng::new(2026);
    let logits32 = Array2::from_shape_simple_fn((batch, classes), || (16.0 * rng.uniform() - 8.0) as f32);
    // The f64 reference sees exactly the f32 inputs.
    let logits64 = logits32.mapv(f64::from);
    let labels = rng.labels(batch, classes);
    let exact = SoftmaxLoss::<f64>::cross_entropy().loss(&logits64, &labels).unwrap();
    let loss = SoftmaxLoss::<f32>::cross_entropy().loss(&logits32, &labels).unwrap();
    let error = (f64::from(loss) - exact).abs() / exact;
    assert!(error < 1e-6, "f32 {loss} vs f64 {exact}: relative error {error:e}");
}

/// Loss, gradient and per-sample losses of batches large enough to run in parallel are the same,
/// bit for bit, on 1 and 3 threads (probability targets on the short rows only, to keep it quick).
#[cfg(feature = "rayon")]
#[test]
fn results_are_bit_identical_for_any_number_of_threads() {
    use longtail::Targets;
    let mut rng = Rng::new(7);
    // Just above the parallel threshold (2^18 logits): many short rows, and a few long ones.
    for (batch, classes) in [(520, 512), (4, 66_000)] {
        let logits = rng.logits(batch, classes, 4.0).mapv(|v| v as f32);
        let labels = rng.labels(batch, classes);
        let probs = rng.probs(batch, classes).mapv(|v| v as f32);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut results = Vec::new();
                for loss in losses::<f32>(classes, &mut Rng::new(1)) {
                    for targets in [Targets::labels(&labels), Targets::probs(&probs)]
                        .into_iter()
                        .take(1 + (classes == 512) as usize)
                    {
                        let (value, grad) = loss.loss_and_grad(&logits, targets.clone()).unwrap();
                        let (per_sample, _) = loss.per_sample_loss_and_grad(&logits, targets).unwrap();
                        results.push((
                            value.to_bits(),
                            grad.mapv(f32::to_bits),
                            per_sample.mapv(f32::to_bits),
                        ));
                    }
                }
                results
            })
        };
        let one = run(1);
        assert_eq!(one, run(3), "{batch}x{classes}: 1 vs 3 threads");
    }
}

/// The parallel split changes nothing either: a large batch equals its rows computed as small
/// batches (which run serially), for the per-sample losses and gradient.
#[test]
fn a_large_batch_equals_its_rows_computed_one_by_one() {
    let mut rng = Rng::new(11);
    let (batch, classes) = (300, 1000);
    let logits: Array2<f64> = rng.logits(batch, classes, 2.0);
    let labels = rng.labels(batch, classes);
    for loss in losses::<f64>(classes, &mut Rng::new(3)) {
        let (losses, grad) = loss.per_sample_loss_and_grad(&logits, &labels).unwrap();
        for i in (0..batch).step_by(37) {
            let row = logits.slice(ndarray::s![i..i + 1, ..]);
            let (one, one_grad) = loss.per_sample_loss_and_grad(&row, &labels[i..i + 1]).unwrap();
            assert_eq!(one[0].to_bits(), losses[i].to_bits(), "row {i}");
            assert_eq!(one_grad.row(0), grad.row(i), "row {i}");
        }
    }
}

/// A large batch's logits are checked by the kernel, chunk by chunk in parallel, yet the error
/// still names the first offending logit in row-major order, whichever chunk finishes first: two
/// bad logits in different chunks, the later one a NaN, on 1 and 3 threads, with and without a
/// logit adjustment. The rows before it may be written (the documented contract).
#[cfg(feature = "rayon")]
#[test]
fn a_large_batch_reports_its_first_bad_logit_on_any_number_of_threads() {
    use longtail::Error;
    let mut rng = Rng::new(5);
    let (batch, classes) = (600, 1000);
    let mut logits = rng.logits(batch, classes, 4.0).mapv(|v| v as f32);
    logits[[500, 3]] = f32::NAN;
    logits[[70, 999]] = f32::INFINITY;
    let labels = rng.labels(batch, classes);
    let prior: Vec<f32> = (0..classes).map(|k| 1.0 / (1.0 + k as f32)).collect();
    for loss in [SoftmaxLoss::cross_entropy(), SoftmaxLoss::logit_adjusted(&prior).unwrap()] {
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut grad = Array2::from_elem((batch, classes), 7.0_f32);
            let error = pool.install(|| loss.loss_and_grad_into(&logits, &labels, &mut grad));
            assert!(
                matches!(error, Err(Error::NonFiniteLogit { row: 70, class: 999, .. })),
                "{threads} threads: {error:?}"
            );
        }
    }
}

/// The one-vs-rest losses (BCE with positive weights, sigmoid focal, the asymmetric loss, binary
/// smooth F1) and ZLPR (with and without a label prior) check their logits in the kernel, chunk
/// by chunk in parallel: the error names the first offending entry in row-major order on 1 and 3
/// threads (a `-inf` on a positive of row 200 before a NaN in a later chunk; then that NaN; a
/// target of 0.5 in a later row still comes first, target entries being checked before logits),
/// and a `-inf` on a positive of a row of weight 0, or on a negative, is no error. A valid batch
/// gives the same bits on 1 and 3 threads.
#[cfg(feature = "rayon")]
#[test]
fn the_one_vs_rest_losses_report_their_first_bad_entry_and_agree_on_any_number_of_threads() {
    use longtail::{AsymmetricLoss, BinarySmoothF1Loss, Error, SigmoidLoss, Targets, ZlprLoss};
    let mut rng = Rng::new(9);
    let (batch, classes) = (300, 1000);
    let logits = rng.logits(batch, classes, 4.0).mapv(|v| v as f32);
    let multi_hot =
        Array2::from_shape_fn((batch, classes), |(i, k)| f32::from(u8::from((i + 7 * k) % 13 == 0)));
    let mut weights = ndarray::Array1::from_elem(batch, 1.0_f32);
    weights[40] = 0.0;
    let pos_weight: Vec<f32> = (0..classes).map(|k| 1.0 + (k % 5) as f32).collect();
    let prior: Vec<f32> = (0..classes).map(|k| 0.5 / (1.0 + k as f32)).collect();
    let losses: Vec<Box<dyn Loss<f32>>> = vec![
        Box::new(SigmoidLoss::bce().with_pos_weight(&pos_weight).unwrap()),
        Box::new(SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap()),
        Box::new(AsymmetricLoss::new()),
        Box::new(BinarySmoothF1Loss::new()),
        Box::new(ZlprLoss::new()),
        Box::new(ZlprLoss::new().with_label_prior(&prior, 1.0).unwrap()),
    ];
    let targets = Targets::multi_hot(&multi_hot).with_sample_weights(&weights);
    let mut soft = multi_hot.clone();
    soft[[250, 5]] = 0.5;
    let soft_targets = Targets::multi_hot(&soft).with_sample_weights(&weights);
    let mut bad = logits.clone();
    // Positives of row 40 (weight 0) and row 200; a NaN in row 290, a later chunk.
    let k40 = (0..classes).find(|&k| multi_hot[[40, k]] == 1.0).unwrap();
    let k200 = (0..classes).find(|&k| multi_hot[[200, k]] == 1.0 && multi_hot[[200, k + 1]] == 0.0).unwrap();
    bad[[40, k40]] = f32::NEG_INFINITY;
    bad[[290, 3]] = f32::NAN;
    bad[[200, k200]] = f32::NEG_INFINITY;
    bad[[200, k200 + 1]] = f32::NEG_INFINITY; // a negative: a certain one, no error
    for loss in &losses {
        let mut bits = Vec::new();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut grad = Array2::from_elem((batch, classes), 7.0_f32);
                let error = loss.loss_and_grad_into(&bad, targets.clone(), &mut grad);
                assert!(
                    matches!(error, Err(Error::MaskedTarget { row: 200, class }) if class == k200),
                    "{threads} threads: {error:?}"
                );
                let error = loss.loss_and_grad_into(&bad, soft_targets.clone(), &mut grad);
                assert!(
                    matches!(error, Err(Error::TargetOutOfRange { row: 250, class: 5, .. })),
                    "{threads} threads: {error:?}"
                );
                let mut clean = bad.clone();
                clean[[200, k200]] = 0.0;
                let error = loss.loss_and_grad_into(&clean, targets.clone(), &mut grad);
                assert!(
                    matches!(error, Err(Error::NonFiniteLogit { row: 290, class: 3, .. })),
                    "{threads} threads: {error:?}"
                );
                clean[[290, 3]] = 1.0;
                let (value, grad) = loss.loss_and_grad(&clean, targets.clone()).unwrap();
                assert!(value.is_finite() && grad[[40, k40]] == 0.0 && grad[[200, k200 + 1]] == 0.0);
                let (per_sample, _) = loss.per_sample_loss_and_grad(&clean, targets.clone()).unwrap();
                bits.push((value.to_bits(), grad.mapv(f32::to_bits), per_sample.mapv(f32::to_bits)));
            });
        }
        assert_eq!(bits[0], bits[1], "1 vs 3 threads");
    }
}

/// The margin losses (LDAM, VS, Poly-1 with logit adjustment, pairwise margins) check their
/// logits in the kernel, chunk by chunk in parallel: the error names the first offending logit in
/// row-major order on 1 and 3 threads (a `-inf` label logit of row 200 before a NaN in a later
/// chunk; then that NaN), a `-inf` label logit in a row of weight 0 is no error, and a valid batch
/// gives the same bits on 1 and 3 threads.
#[cfg(feature = "rayon")]
#[test]
fn the_margin_losses_report_their_first_bad_logit_and_agree_on_any_number_of_threads() {
    use longtail::{Error, LdamLoss, PairwiseMarginLoss, Poly1Loss, Targets, VsLoss};
    let mut rng = Rng::new(13);
    let (batch, classes) = (600, 1000);
    let logits = rng.logits(batch, classes, 1.0).mapv(|v| v as f32);
    let labels = rng.labels(batch, classes);
    let mut weights = ndarray::Array1::from_elem(batch, 1.0_f32);
    weights[40] = 0.0;
    let counts: Vec<f32> = (0..classes).map(|k| 1.0 + (k * 7 % 500) as f32).collect();
    let prior: Vec<f32> = counts.iter().map(|c| c / counts.iter().sum::<f32>()).collect();
    let margins = Array2::from_shape_fn((classes, classes), |(y, k)| ((y + 3 * k) % 5) as f32 * 0.1);
    let losses: Vec<Box<dyn Loss<f32>>> = vec![
        Box::new(LdamLoss::new(&counts).unwrap()),
        Box::new(VsLoss::new(&counts).unwrap().with_gamma(0.3).unwrap()),
        Box::new(Poly1Loss::new(1.0).unwrap().with_logit_adjustment(&prior, 1.0).unwrap()),
        Box::new(PairwiseMarginLoss::new(margins.view()).unwrap()),
    ];
    let targets = Targets::labels(&labels).with_sample_weights(&weights);
    let mut bad = logits.clone();
    bad[[40, labels[40]]] = f32::NEG_INFINITY;
    bad[[200, labels[200]]] = f32::NEG_INFINITY;
    bad[[500, 3]] = f32::NAN;
    for loss in &losses {
        let mut bits = Vec::new();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut grad = Array2::from_elem((batch, classes), 7.0_f32);
                let error = loss.loss_and_grad_into(&bad, targets.clone(), &mut grad);
                assert!(
                    matches!(error, Err(Error::MaskedTarget { row: 200, class }) if class == labels[200]),
                    "{loss:?}, {threads} threads: {error:?}"
                );
                let mut clean = bad.clone();
                clean[[200, labels[200]]] = 0.0;
                let error = loss.loss_and_grad_into(&clean, targets.clone(), &mut grad);
                assert!(
                    matches!(error, Err(Error::NonFiniteLogit { row: 500, class: 3, .. })),
                    "{loss:?}, {threads} threads: {error:?}"
                );
                clean[[500, 3]] = 1.0;
                let (value, grad) = loss.loss_and_grad(&clean, targets.clone()).unwrap();
                assert!(value.is_finite() && grad.row(40).iter().all(|&g| g == 0.0));
                let (per_sample, _) = loss.per_sample_loss_and_grad(&clean, targets.clone()).unwrap();
                bits.push((value.to_bits(), grad.mapv(f32::to_bits), per_sample.mapv(f32::to_bits)));
            });
        }
        assert_eq!(bits[0], bits[1], "{loss:?}: 1 vs 3 threads");
    }
}
