//! Priors, post-hoc adjustment, metrics and smooth-F1 statistics from candle tensors equal the
//! core's on the same data; bad tensors are candle errors with the core's message.

use candle_core::{DType, Device, Tensor, Var};
use longtail::ndarray::{Array2, array};
use longtail::prior::PriorEstimator;
use longtail::{ConfusionMatrix, Loss, Prior, SmoothF1Loss, Targets, adjust};
use longtail_candle::{
    TensorTargets, adjusted_logits, balanced_accuracy, confusion_matrix, f1_stats, predict_adjusted,
    prior_from_labels, prior_from_probs, smooth_f1_with_stats, update_prior,
};

fn logits() -> Array2<f64> {
    array![
        [2.0, 0.5, -1.0],
        [0.1, 0.2, 0.3],
        [-3.0, 4.0, 0.0],
        [1.0, 1.0, 1.5],
        [0.0, -0.5, 2.5],
        [3.0, 2.9, 0.0]
    ]
}

const LABELS: [usize; 6] = [0, 2, 1, 2, 2, 1];

fn tensor(a: &Array2<f64>) -> Tensor {
    Tensor::from_slice(a.as_slice().unwrap(), a.dim(), &Device::Cpu).unwrap()
}

fn labels_u32() -> Tensor {
    Tensor::new(LABELS.map(|l| l as u32).as_slice(), &Device::Cpu).unwrap()
}

fn labels_i64() -> Tensor {
    Tensor::new(LABELS.map(|l| l as i64).as_slice(), &Device::Cpu).unwrap()
}

/// An error's message without the backtrace candle adds when `RUST_BACKTRACE` is set.
fn message(err: &candle_core::Error) -> String {
    match err {
        candle_core::Error::WithBacktrace { inner, .. } => message(inner),
        other => other.to_string(),
    }
}

#[test]
fn priors_from_label_and_probability_tensors_are_the_cores() {
    let want = Prior::from_labels(&LABELS, 3).unwrap();
    assert_eq!(prior_from_labels(&labels_u32(), 3).unwrap(), want);
    assert_eq!(prior_from_labels(&labels_i64(), 3).unwrap(), want);
    let probs = array![[0.5_f64, 0.25, 0.25], [0.0, 1.0, 0.0]];
    assert_eq!(prior_from_probs(&tensor(&probs)).unwrap(), Prior::from_probs(&probs).unwrap());
    let probs32 = probs.mapv(|p| p as f32);
    let t32 = Tensor::from_slice(probs32.as_slice().unwrap(), (2, 3), &Device::Cpu).unwrap();
    assert_eq!(prior_from_probs(&t32).unwrap(), Prior::from_probs(&probs32).unwrap());

    let mut estimator = PriorEstimator::new(3).unwrap();
    update_prior(&mut estimator, &labels_i64()).unwrap();
    let mut want_estimator = PriorEstimator::new(3).unwrap();
    want_estimator.update(&LABELS).unwrap();
    assert_eq!(estimator.counts(), want_estimator.counts());
}

#[test]
fn bad_label_tensors_are_candle_errors() {
    let err = prior_from_labels(&labels_u32(), 2).unwrap_err();
    assert_eq!(message(&err), Prior::from_labels(&LABELS, 2).unwrap_err().to_string());
    let negative = Tensor::new(&[0_i64, -4], &Device::Cpu).unwrap();
    assert_eq!(
        message(&prior_from_labels(&negative, 2).unwrap_err()),
        "label -4 at row 1 is not a class index"
    );
    let floats = Tensor::new(&[0.0_f32, 1.0], &Device::Cpu).unwrap();
    assert_eq!(
        message(&prior_from_labels(&floats, 2).unwrap_err()),
        "the labels must be u32 or i64, got F32"
    );
    let ints = Tensor::new(&[[0_u32, 1]], &Device::Cpu).unwrap();
    assert_eq!(
        message(&prior_from_probs(&ints).unwrap_err()),
        "the probability targets must be f32 or f64, got U32"
    );
}

#[test]
fn post_hoc_adjustment_and_metrics_are_the_cores() {
    let z = logits();
    let prior = Prior::from_counts(&[50.0, 5.0, 1.0]).unwrap();
    let adjusted = adjusted_logits(&tensor(&z), &prior, 0.7).unwrap();
    let want = adjust::adjusted_logits(&z, &prior, 0.7).unwrap();
    assert_eq!(adjusted.to_vec2::<f64>().unwrap(), want.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>());

    let predicted = predict_adjusted(&tensor(&z), &prior, 1.0).unwrap();
    let want = adjust::predict_adjusted(&z, &prior, 1.0).unwrap();
    assert_eq!(predicted.dtype(), DType::U32);
    assert_eq!(predicted.to_vec1::<u32>().unwrap(), want.iter().map(|&p| p as u32).collect::<Vec<_>>());

    let plain = ConfusionMatrix::new(&LABELS, &adjust::predict(&z).unwrap(), 3).unwrap();
    assert_eq!(confusion_matrix(&tensor(&z), &labels_u32(), None).unwrap(), plain);
    assert_eq!(balanced_accuracy(&tensor(&z), &labels_i64()).unwrap(), plain.balanced_accuracy());
    let shifted = ConfusionMatrix::new(&LABELS, &want, 3).unwrap();
    assert_eq!(confusion_matrix(&tensor(&z), &labels_u32(), Some((&prior, 1.0))).unwrap(), shifted);
    assert_ne!(plain, shifted, "the adjustment changes a decision here");

    let z32 = z.mapv(|v| v as f32);
    let t32 = Tensor::from_slice(z32.as_slice().unwrap(), z32.dim(), &Device::Cpu).unwrap();
    let want32 = adjust::predict_adjusted(&z32, &prior, 1.0_f32).unwrap();
    assert_eq!(
        predict_adjusted(&t32, &prior, 1.0).unwrap().to_vec1::<u32>().unwrap(),
        want32.iter().map(|&p| p as u32).collect::<Vec<_>>()
    );

    let wrong = Prior::from_counts(&[1.0, 1.0]).unwrap();
    let err = adjusted_logits(&tensor(&z), &wrong, 1.0).unwrap_err();
    assert_eq!(message(&err), adjust::adjusted_logits(&z, &wrong, 1.0).unwrap_err().to_string());
    let err = balanced_accuracy(&tensor(&z), &Tensor::new(&[0_u32], &Device::Cpu).unwrap()).unwrap_err();
    let core = ConfusionMatrix::new(&[0], &adjust::predict(&z).unwrap(), 3).unwrap_err();
    assert_eq!(message(&err), core.to_string());
}

#[test]
fn smooth_f1_statistics_are_the_cores() {
    let z = logits();
    let loss = SmoothF1Loss::<f64>::macro_f1();
    assert_eq!(f1_stats(&loss, &tensor(&z), &labels_u32()).unwrap(), loss.stats(&z, &LABELS).unwrap());
    let weights = [1.0, 0.5, 0.0, 2.0, 1.0, 1.0];
    let w = Tensor::new(&weights, &Device::Cpu).unwrap();
    let i64_labels = labels_i64();
    let got =
        f1_stats(&loss, &tensor(&z), TensorTargets::labels(&i64_labels).with_sample_weights(&w)).unwrap();
    assert_eq!(got, loss.stats(&z, Targets::labels(&LABELS).with_sample_weights(&weights)).unwrap());
    let probs = array![
        [1.0, 0.0, 0.0],
        [0.0, 0.5, 0.5],
        [0.0, 1.0, 0.0],
        [0.2, 0.2, 0.6],
        [0.0, 0.0, 1.0],
        [0.1, 0.9, 0.0]
    ];
    assert_eq!(f1_stats(&loss, &tensor(&z), &tensor(&probs)).unwrap(), loss.stats(&z, &probs).unwrap());
    let err = f1_stats(&loss, &tensor(&z), &Tensor::new(&[0_u32, 1, 2], &Device::Cpu).unwrap()).unwrap_err();
    assert_eq!(message(&err), loss.stats(&z, &[0, 1, 2]).unwrap_err().to_string());
}

#[test]
fn smooth_f1_with_merged_statistics_is_the_cores() {
    let z = logits();
    let loss = SmoothF1Loss::<f64>::micro_f1();
    // The statistics of a larger batch: another replica's rows merged with these.
    let other = array![[0.0, 1.0, 0.0], [2.0, 0.0, 1.0]];
    let mut stats = loss.stats(&other, &[1, 0]).unwrap();
    stats.merge(&loss.stats(&z, &LABELS).unwrap()).unwrap();
    let mut want_grad = Array2::zeros(z.raw_dim());
    let want = loss.loss_and_grad_with_stats_into(&z, &LABELS, &stats, &mut want_grad).unwrap();
    let var = Var::from_tensor(&tensor(&z)).unwrap();
    let value = smooth_f1_with_stats(&loss, &stats, var.as_tensor(), &labels_u32()).unwrap();
    assert_eq!(value.to_scalar::<f64>().unwrap(), want);
    let grad = value.backward().unwrap().remove(var.as_tensor()).unwrap();
    assert_eq!(
        grad.to_vec2::<f64>().unwrap(),
        want_grad.outer_iter().map(|r| r.to_vec()).collect::<Vec<_>>()
    );
    // Not the local batch's F1.
    assert_ne!(want, loss.loss(&z, &LABELS).unwrap());
    // Evaluation, without a gradient, gives the same value.
    let plain = smooth_f1_with_stats(&loss, &stats, &tensor(&z), &labels_u32()).unwrap();
    assert_eq!(plain.to_scalar::<f64>().unwrap(), want);
    let err =
        smooth_f1_with_stats(&loss, &longtail::F1Stats::new(2), &tensor(&z), &labels_u32()).unwrap_err();
    let core = loss
        .loss_and_grad_with_stats_into(&z, &LABELS, &longtail::F1Stats::new(2), &mut want_grad)
        .unwrap_err();
    assert_eq!(message(&err), core.to_string());
}
