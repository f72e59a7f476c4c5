//! `TverskyLoss` and `TverskyStats`: the formula written out, the exact gradient against finite
//! differences for f64 and f32 in both modes, Dice as the soft F1 of `F1Stats`, per-sample losses
//! and reductions, merged statistics across workers, and every error.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::loss::TverskyStats;
use longtail::{Error, Float, Loss, Reduction, SmoothF1Loss, Targets, TverskyLoss, TverskyMode};
use ndarray::{Array2, s};

const BATCH: usize = 9;
const CLASSES: usize = 4;
/// `(α, β, smooth, γ)`: Dice, recall-leaning, smoothed and focal, Jaccard.
const SETTINGS: [(f64, f64, f64, f64); 4] =
    [(0.5, 0.5, 0.0, 1.0), (0.3, 0.7, 0.0, 1.0), (0.7, 0.3, 1.0, 1.5), (1.0, 1.0, 0.0, 2.0)];

fn loss<F: Float>(mode: TverskyMode, (alpha, beta, smooth, gamma): (f64, f64, f64, f64)) -> TverskyLoss<F> {
    TverskyLoss::dice(mode)
        .with_weights(alpha, beta)
        .unwrap()
        .with_smooth(smooth)
        .unwrap()
        .with_gamma(gamma)
        .unwrap()
}

/// The loss written out plainly from predictions `p(z)`, targets `y` and weights `s`.
fn reference(
    mode: TverskyMode,
    z: &Array2<f64>,
    y: &Array2<f64>,
    s: &[f64],
    (alpha, beta, smooth, gamma): (f64, f64, f64, f64),
) -> f64 {
    let mut p = z.clone();
    for mut row in p.rows_mut() {
        match mode {
            TverskyMode::Multiclass => {
                let total: f64 = row.iter().map(|v| v.exp()).sum();
                row.mapv_inplace(|v| v.exp() / total);
            }
            TverskyMode::Multilabel => row.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp())),
        }
    }
    let mut mean = 0.0;
    for k in 0..z.ncols() {
        let (mut tp, mut fp, mut fn_, mut present) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..z.nrows() {
            tp += s[i] * y[[i, k]] * p[[i, k]];
            fp += s[i] * (1.0 - y[[i, k]]) * p[[i, k]];
            fn_ += s[i] * y[[i, k]] * (1.0 - p[[i, k]]);
            present += s[i] * y[[i, k]];
        }
        if present > 0.0 {
            mean += 1.0 - (tp + smooth) / (tp + alpha * fp + beta * fn_ + smooth).max(1e-7);
        }
    }
    (mean / z.ncols() as f64).powf(gamma)
}

struct Batch {
    logits: Array2<f64>,
    labels: Vec<usize>,
    multi_hot: Array2<f64>,
    weights: Vec<f64>,
}

impl Batch {
    fn new(rng: &mut Rng) -> Self {
        // Class 3 never a label: absent classes count 0 in the mean.
        let labels = (0..BATCH).map(|_| rng.below(CLASSES - 1)).collect();
        let mut multi_hot =
            Array2::from_shape_fn((BATCH, CLASSES), |_| if rng.uniform() < 0.4 { 1.0 } else { 0.0 });
        multi_hot.column_mut(2).fill(0.0);
        let mut weights = rng.positive(BATCH, 0.2, 2.0);
        weights[0] = 0.0;
        Self { logits: rng.logits(BATCH, CLASSES, 2.0), labels, multi_hot, weights }
    }

    fn targets(&self, mode: TverskyMode) -> (Targets<'_, f64>, Array2<f64>) {
        match mode {
            TverskyMode::Multiclass => {
                let y = Array2::from_shape_fn(
                    (BATCH, CLASSES),
                    |(i, k)| if self.labels[i] == k { 1.0 } else { 0.0 },
                );
                (Targets::labels(&self.labels).with_sample_weights(&self.weights), y)
            }
            TverskyMode::Multilabel => (
                Targets::multi_hot(&self.multi_hot).with_sample_weights(&self.weights),
                self.multi_hot.clone(),
            ),
        }
    }
}

const MODES: [TverskyMode; 2] = [TverskyMode::Multiclass, TverskyMode::Multilabel];

#[test]
fn matches_the_formula_and_finite_differences_in_both_modes() {
    let mut rng = Rng::new(2301);
    for mode in MODES {
        for setting in SETTINGS {
            let batch = Batch::new(&mut rng);
            let (targets, y) = batch.targets(mode);
            let (value, grad) = loss::<f64>(mode, setting).loss_and_grad(&batch.logits, targets).unwrap();
            let f = |z: &Array2<f64>| reference(mode, z, &y, &batch.weights, setting);
            assert!(relative(value, f(&batch.logits)) <= 1e-12, "{mode:?} {setting:?}");
            let numeric = numeric_grad(&batch.logits, f);
            let err = relative_error(&grad, &numeric);
            assert!(err <= 1e-6, "{mode:?} {setting:?}: {err:e}");
        }
    }
}

#[test]
fn f32_agrees_with_f64() {
    let mut rng = Rng::new(2303);
    for mode in MODES {
        for setting in SETTINGS {
            let batch = Batch::new(&mut rng);
            let logits = batch.logits.mapv(|v| f64::from(v as f32));
            let (targets, _) = batch.targets(mode);
            let (l64, g64) = loss::<f64>(mode, setting).loss_and_grad(&logits, targets).unwrap();
            let weights: Vec<f32> = batch.weights.iter().map(|&w| w as f32).collect();
            let multi_hot = batch.multi_hot.mapv(|v| v as f32);
            let targets32 = match mode {
                TverskyMode::Multiclass => Targets::labels(&batch.labels),
                TverskyMode::Multilabel => Targets::multi_hot(&multi_hot),
            }
            .with_sample_weights(&weights);
            let (l32, g32) =
                loss::<f32>(mode, setting).loss_and_grad(&logits.mapv(|v| v as f32), targets32).unwrap();
            assert!(relative(f64::from(l32), l64) <= 1e-5, "{mode:?} {setting:?}");
            assert!(relative_error(&g32.mapv(f64::from), &g64) <= 1e-5, "{mode:?} {setting:?}");
        }
    }
}

#[test]
fn dice_is_one_minus_the_mean_soft_f1_of_f1_stats() {
    let mut rng = Rng::new(2305);
    let (logits, labels) = (rng.logits(12, 3, 2.0), (0..12).map(|i| i % 3).collect::<Vec<usize>>());
    let dice = TverskyLoss::multiclass().loss(&logits, &labels).unwrap();
    let f1 = SmoothF1Loss::macro_f1().stats(&logits, &labels).unwrap().f1();
    assert!(relative(dice, 1.0 - f1.iter().sum::<f64>() / 3.0) <= 1e-14);
    let stats = TverskyLoss::multiclass().stats(&logits, &labels).unwrap();
    for (t, f) in stats.tversky(0.5, 0.5, 0.0, 1e-7).iter().zip(&f1) {
        assert!(relative(*t, *f) <= 1e-14);
    }
}

#[test]
fn per_sample_losses_add_up_to_the_sum_which_is_the_weight_times_the_mean() {
    let mut rng = Rng::new(2307);
    for mode in MODES {
        let batch = Batch::new(&mut rng);
        let (targets, _) = batch.targets(mode);
        let mean = loss::<f64>(mode, SETTINGS[2]);
        let sum = mean.with_reduction(Reduction::Sum);
        let (l_mean, g_mean) = mean.loss_and_grad(&batch.logits, targets.clone()).unwrap();
        let (l_sum, g_sum) = sum.loss_and_grad(&batch.logits, targets.clone()).unwrap();
        let w: f64 = batch.weights.iter().sum();
        assert!(relative(l_sum, w * l_mean) <= 1e-14 && relative_error(&g_sum, &(&g_mean * w)) <= 1e-14);
        let (per, per_grad) = sum.per_sample_loss_and_grad(&batch.logits, targets.clone()).unwrap();
        assert!(relative(per.sum(), l_sum) <= 1e-12, "{mode:?}: {} vs {l_sum}", per.sum());
        assert!(relative_error(&per_grad, &g_sum) <= 1e-14 && per[0] == 0.0);
        // Zero weights everywhere: loss 0, gradient 0.
        let zero = [0.0; BATCH];
        let none = match mode {
            TverskyMode::Multiclass => Targets::labels(&batch.labels),
            TverskyMode::Multilabel => Targets::multi_hot(&batch.multi_hot),
        }
        .with_sample_weights(&zero[..]);
        assert_eq!(
            mean.loss_and_grad(&batch.logits, none.clone()).unwrap(),
            (0.0, Array2::zeros((BATCH, CLASSES)))
        );
        assert!(mean.per_sample_loss(&batch.logits, none).unwrap().iter().all(|&l| l == 0.0));
    }
}

#[test]
fn merged_statistics_give_every_worker_the_global_loss_and_its_share_of_the_gradient() {
    let mut rng = Rng::new(2309);
    for mode in MODES {
        let batch = Batch::new(&mut rng);
        let (targets, _) = batch.targets(mode);
        let tversky = loss::<f64>(mode, SETTINGS[1]);
        let (whole, whole_grad) = tversky.loss_and_grad(&batch.logits, targets).unwrap();
        let (top, bottom) = (batch.logits.slice(s![..4, ..]), batch.logits.slice(s![4.., ..]));
        let part = |rows: std::ops::Range<usize>| {
            match mode {
                TverskyMode::Multiclass => Targets::labels(&batch.labels[rows.clone()]),
                TverskyMode::Multilabel => Targets::multi_hot(batch.multi_hot.slice(s![rows.clone(), ..])),
            }
            .with_sample_weights(&batch.weights[rows])
        };
        let mut stats = tversky.stats(&top, part(0..4)).unwrap();
        stats.merge(&tversky.stats(&bottom, part(4..BATCH)).unwrap()).unwrap();
        let mut grad_top = Array2::zeros((4, CLASSES));
        let mut grad_bottom = Array2::zeros((BATCH - 4, CLASSES));
        let a = tversky.loss_and_grad_with_stats_into(&top, part(0..4), &stats, &mut grad_top).unwrap();
        let b =
            tversky.loss_and_grad_with_stats_into(&bottom, part(4..BATCH), &stats, &mut grad_bottom).unwrap();
        assert!(relative(a, whole) <= 1e-14 && relative(b, whole) <= 1e-14);
        assert!(
            relative_error(&ndarray::concatenate![ndarray::Axis(0), grad_top, grad_bottom], &whole_grad)
                <= 1e-14
        );
    }
}

#[test]
fn the_statistics_validate_their_parts() {
    let err = TverskyStats::from_parts(vec![1.0], vec![1.0, 0.0], vec![0.0], 1.0).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "false_positive", .. }));
    let err = TverskyStats::from_parts(vec![1.0], vec![1.0], vec![], 1.0).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "false_negative", .. }));
    for (parts, culprit) in [
        ((f64::NAN, 0.0, 0.0, 1.0), "true_positive"),
        ((0.0, -1.0, 0.0, 1.0), "false_positive"),
        ((0.0, 0.0, f64::INFINITY, 1.0), "false_negative"),
        ((0.0, 0.0, 0.0, -1.0), "weight"),
    ] {
        let err = TverskyStats::from_parts(vec![parts.0], vec![parts.1], vec![parts.2], parts.3).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name, .. } if name == culprit), "{err}");
    }
    let mut stats = TverskyStats::new(2);
    assert!(matches!(
        stats.merge(&TverskyStats::new(3)).unwrap_err(),
        Error::ShapeMismatch { name: "stats", .. }
    ));
    let mut grad = Array2::zeros((1, 2));
    let err = TverskyLoss::multiclass()
        .loss_and_grad_with_stats_into(
            &ndarray::array![[0.0_f64, 1.0]],
            &[0],
            &TverskyStats::new(3),
            &mut grad,
        )
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { name: "stats", .. }));
}

const SENTINEL: f64 = 7.0;

/// Every call fails alike on one batch without writing the gradient; returns the error.
fn fail<F: Float>(loss: &TverskyLoss<F>, logits: &Array2<F>, targets: Targets<'_, F>) -> Error {
    let mut grad = Array2::from_elem(logits.raw_dim(), F::from_f64(SENTINEL));
    let errors = [
        loss.loss(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad(logits, targets.clone()).unwrap_err(),
        loss.loss_and_grad_into(logits, targets.clone(), &mut grad).unwrap_err(),
        loss.per_sample_loss(logits, targets.clone()).unwrap_err(),
        loss.stats(logits, targets).unwrap_err(),
    ];
    assert!(errors.iter().all(|e| e.to_string() == errors[0].to_string()), "{errors:?}");
    assert!(grad.iter().all(|&g| g == F::from_f64(SENTINEL)));
    errors[0].clone()
}

fn errors_for<F: Float>() {
    for mode in MODES {
        let loss = TverskyLoss::<F>::dice(mode);
        let ok = Array2::from_elem((2, 3), F::zero());
        assert_eq!(
            fail(&loss, &Array2::zeros((0, 3)), Targets::labels(&[0_usize; 0][..])),
            Error::EmptyBatch
        );
        assert_eq!(fail(&loss, &Array2::zeros((2, 0)), Targets::labels(&[0, 0])), Error::NoClasses);
        assert!(matches!(
            fail(&loss, &ok, Targets::labels(&[0])),
            Error::ShapeMismatch { name: "labels", .. }
        ));
        let short = [F::one()];
        let weighted = Targets::labels(&[0, 1]).with_sample_weights(&short[..]);
        assert!(matches!(fail(&loss, &ok, weighted), Error::ShapeMismatch { name: "sample_weights", .. }));
        let negative = [-F::one(), F::one()];
        let weighted = Targets::labels(&[0, 1]).with_sample_weights(&negative[..]);
        assert!(matches!(fail(&loss, &ok, weighted), Error::InvalidSampleWeight { row: 0, .. }));
        assert_eq!(
            fail(&loss, &ok, Targets::labels(&[0, 3])),
            Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }
        );
        let mut nan = ok.clone();
        nan[[1, 0]] = F::nan();
        assert!(matches!(
            fail(&loss, &nan, Targets::labels(&[0, 1])),
            Error::NonFiniteLogit { row: 1, class: 0, .. }
        ));
        let mut masked = ok.clone();
        masked[[0, 0]] = F::neg_infinity();
        assert_eq!(fail(&loss, &masked, Targets::labels(&[0, 1])), Error::MaskedTarget { row: 0, class: 0 });
        let mut grad = Array2::zeros((2, 2));
        let err = loss.loss_and_grad_into(&ok, &[0, 1], &mut grad).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { name: "grad_out", .. }));
    }
    let ok = Array2::from_elem((2, 3), F::zero());
    // Multiclass: probability rows must be distributions; multi-hot rows are not its targets.
    let multiclass = TverskyLoss::<F>::multiclass();
    let probs = Array2::from_elem((2, 3), F::from_f64(0.25));
    assert!(matches!(fail(&multiclass, &ok, Targets::probs(&probs)), Error::TargetSum { row: 0, .. }));
    let negative = ndarray::array![[1.25, -0.25, 0.0], [0.5, 0.5, 0.0]].mapv(F::from_f64);
    assert!(matches!(
        fail(&multiclass, &ok, Targets::probs(&negative)),
        Error::InvalidTarget { row: 0, class: 1, .. }
    ));
    let multi_hot = Array2::from_elem((2, 3), F::one());
    assert!(matches!(
        fail(&multiclass, &ok, Targets::multi_hot(&multi_hot)),
        Error::UnsupportedTargets { loss: "TverskyLoss", .. }
    ));
    // Multilabel: targets in [0, 1], multi-hot ones 0 or 1.
    let multilabel = TverskyLoss::<F>::multilabel();
    let mut soft = Array2::from_elem((2, 3), F::from_f64(0.5));
    soft[[1, 2]] = F::from_f64(1.5);
    assert!(matches!(
        fail(&multilabel, &ok, Targets::probs(&soft)),
        Error::TargetOutOfRange { row: 1, class: 2, .. }
    ));
    let mut hot = Array2::from_elem((2, 3), F::zero());
    hot[[0, 1]] = F::from_f64(0.5);
    assert!(matches!(
        fail(&multilabel, &ok, Targets::multi_hot(&hot)),
        Error::TargetOutOfRange { row: 0, class: 1, .. }
    ));
    assert!(matches!(
        fail(&multilabel, &ok, Targets::multi_hot(hot.slice(s![.., ..2]))),
        Error::ShapeMismatch { name: "targets", .. }
    ));
}

#[test]
fn every_error_variant_names_its_culprit_and_writes_nothing() {
    errors_for::<f32>();
    errors_for::<f64>();
}

#[test]
fn builders_reject_parameters_out_of_their_domain() {
    let base = TverskyLoss::<f64>::multiclass();
    let name = |e: Error| match e {
        Error::InvalidParameter { name, .. } => name,
        other => panic!("{other}"),
    };
    assert_eq!(name(base.with_weights(-0.1, 0.5).unwrap_err()), "alpha");
    assert_eq!(name(base.with_weights(0.5, f64::NAN).unwrap_err()), "beta");
    assert_eq!(name(base.with_smooth(-1.0).unwrap_err()), "smooth");
    assert_eq!(name(base.with_eps(f64::INFINITY).unwrap_err()), "eps");
    assert_eq!(name(base.with_gamma(0.5).unwrap_err()), "gamma");
}
