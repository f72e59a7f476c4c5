//! A bad input is an error naming its culprit, never a panic, on every path; nothing is recorded
//! in the graph then.

use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use longtail::SoftmaxLoss;
use longtail_burn::{ComputePath, Error, LongtailLoss, SoftmaxLossConfig, Targets};

const PATHS: [ComputePath; 3] = [ComputePath::Auto, ComputePath::TensorOps, ComputePath::Host];

fn devices() -> Vec<Device> {
    #[allow(deprecated)]
    let ndarray = Device::ndarray();
    vec![Device::flex(), Device::flex().autodiff(), ndarray.clone(), ndarray.autodiff()]
}

fn logits(values: Vec<f32>, rows: usize, device: &Device) -> Tensor<2> {
    let cols = values.len() / rows;
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

fn labels(values: &[i64], device: &Device) -> Targets {
    Targets::labels(Tensor::<1, Int>::from_data(TensorData::new(values.to_vec(), [values.len()]), device))
}

fn each(mut f: impl FnMut(&LongtailLoss<SoftmaxLoss<f32>>, &Device, ComputePath)) {
    for device in devices() {
        for path in PATHS {
            let loss = LongtailLoss::new(SoftmaxLoss::<f32>::cross_entropy()).with_path(path);
            f(&loss, &device, path);
        }
    }
}

#[test]
fn label_out_of_range_is_the_core_error() {
    each(|loss, device, path| {
        let err = loss.try_forward(logits(vec![0.0; 6], 2, device), &labels(&[0, 3], device)).unwrap_err();
        assert_eq!(
            err,
            Error::Core(longtail::Error::LabelOutOfRange { row: 1, label: 3, classes: 3 }),
            "{path:?} {device:?}"
        );
    });
}

#[test]
fn negative_label_names_its_row() {
    each(|loss, device, path| {
        let err = loss.try_forward(logits(vec![0.0; 6], 2, device), &labels(&[0, -1], device)).unwrap_err();
        assert_eq!(err, Error::Label { row: 1, value: -1 }, "{path:?}");
    });
}

#[test]
fn wrong_label_count_is_a_shape_error() {
    each(|loss, device, path| {
        let err = loss.try_forward(logits(vec![0.0; 6], 2, device), &labels(&[0, 1, 2], device)).unwrap_err();
        assert!(
            matches!(err, Error::Core(longtail::Error::ShapeMismatch { name: "labels", .. })),
            "{path:?}: {err:?}"
        );
    });
}

#[test]
fn non_finite_logit_is_an_error() {
    each(|loss, device, path| {
        let err = loss
            .try_forward(logits(vec![0.0, f32::NAN, 1.0, 0.0], 2, device), &labels(&[0, 1], device))
            .unwrap_err();
        match path {
            ComputePath::TensorOps => assert_eq!(err, Error::NonFinite { tensor: "logits" }),
            _ => assert!(
                matches!(err, Error::Core(longtail::Error::NonFiniteLogit { row: 0, class: 1, .. })),
                "{path:?}: {err:?}"
            ),
        }
    });
}

#[test]
fn logits_of_another_float_type_are_a_dtype_error() {
    each(|loss, device, path| {
        let z = Tensor::<2>::from_data(TensorData::new(vec![0.0_f64; 4], [2, 2]), (device, DType::F64));
        let err = loss.try_forward(z, &labels(&[0, 1], device)).unwrap_err();
        assert_eq!(
            err,
            Error::DType { tensor: "logits", expected: DType::F32, found: DType::F64 },
            "{path:?}"
        );
    });
}

#[test]
fn bad_probability_rows_are_an_error() {
    each(|loss, device, path| {
        let probs = Tensor::<2>::from_data(TensorData::new(vec![0.5_f32, 0.6, 1.0, 0.0], [2, 2]), device);
        let err = loss.try_forward(logits(vec![0.0; 4], 2, device), &Targets::probs(probs)).unwrap_err();
        match path {
            ComputePath::TensorOps => assert_eq!(err, Error::Invalid { tensor: "probs" }),
            _ => assert!(matches!(err, Error::Core(_)), "{path:?}: {err:?}"),
        }
    });
}

#[test]
fn negative_sample_weight_is_an_error() {
    each(|loss, device, path| {
        let w = Tensor::<1>::from_data(TensorData::new(vec![1.0_f32, -1.0], [2]), device);
        let targets = labels(&[0, 1], device).with_sample_weights(w);
        let err = loss.try_forward(logits(vec![0.0; 4], 2, device), &targets).unwrap_err();
        match path {
            ComputePath::TensorOps => assert_eq!(err, Error::Invalid { tensor: "sample_weights" }),
            _ => assert!(matches!(err, Error::Core(_)), "{path:?}: {err:?}"),
        }
    });
}

#[test]
fn bad_parameter_is_an_error_at_init() {
    let err = SoftmaxLossConfig::new().with_prior(vec![1.0, -1.0]).init::<f32>().unwrap_err();
    assert!(matches!(err, Error::Core(longtail::Error::InvalidParameter { .. })), "{err:?}");
    let err = SoftmaxLossConfig::new().with_label_smoothing(1.5).init::<f64>().unwrap_err();
    assert!(matches!(err, Error::Core(longtail::Error::InvalidParameter { .. })), "{err:?}");
}

#[test]
#[should_panic(expected = "longtail loss: ")]
fn forward_panics_with_the_error_message() {
    let device = Device::flex();
    let loss = LongtailLoss::new(SoftmaxLoss::<f32>::cross_entropy());
    let _ = loss.forward(logits(vec![0.0; 4], 2, &device), &labels(&[0, 5], &device));
}

#[test]
fn error_messages_name_the_culprit() {
    assert_eq!(Error::Label { row: 3, value: -2 }.to_string(), "labels: row 3 holds -2, not a class index");
    assert!(Error::NonFinite { tensor: "logits" }.to_string().starts_with("logits"));
    assert!(Error::Invalid { tensor: "probs" }.to_string().starts_with("probs"));
    assert!(Error::Read("gone".into()).to_string().contains("gone"));
    let dtype = Error::DType { tensor: "logits", expected: DType::F32, found: DType::F64 };
    assert!(dtype.to_string().contains("F64"));
    let core = Error::from(longtail::Error::EmptyBatch);
    assert_eq!(core.to_string(), longtail::Error::EmptyBatch.to_string());
    assert!(std::error::Error::source(&core).is_some());
}

#[test]
fn target_kind_a_loss_does_not_take_is_the_core_error() {
    each(|loss, device, path| {
        let m = Tensor::<2>::from_data(TensorData::new(vec![1.0_f32, 0.0, 1.0, 1.0], [2, 2]), device);
        let err = loss.try_forward(logits(vec![0.0; 4], 2, device), &Targets::multi_hot(m)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Core(longtail::Error::UnsupportedTargets { found: "multi-hot targets", .. })
            ),
            "{path:?}: {err:?}"
        );
    });
}
