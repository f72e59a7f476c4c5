//! Metrics against scikit-learn (confusion matrix, accuracy, balanced accuracy, macro-F1, per-class
//! precision/recall/F1, inverse-frequency class weights), the many/medium/few-shot split, and one
//! test per error trigger.
//!
//! Golden values come from `tests/golden/generate_sklearn.py` (its docstring has the command and
//! versions); its output `tests/golden/sklearn_values.rs` is committed, so no Python is needed.

#[rustfmt::skip] // generated: kept byte-identical to the script's output
#[path = "golden/sklearn_values.rs"]
mod sklearn_values;

use longtail::metrics::{ConfusionMatrix, Shot, ShotSplit, accuracy, balanced_accuracy, macro_f1};
use longtail::prior::ClassWeights;
use longtail::{Error, Prior};
use ndarray::{Array1, ArrayView2, s};
use sklearn_values::{METRIC_CASES, WEIGHT_CASES};

/// Agreement to a few ulps: the averages may sum in a different order than NumPy.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0)
}

fn close_options(name: &str, what: &str, ours: &[Option<f64>], theirs: &[Option<f64>]) {
    assert_eq!(ours.len(), theirs.len(), "{name}: {what}");
    for (k, (a, b)) in ours.iter().zip(theirs).enumerate() {
        match (a, b) {
            (Some(a), Some(b)) => assert!(close(*a, *b), "{name}: {what}[{k}] {a} vs {b}"),
            (None, None) => {}
            _ => panic!("{name}: {what}[{k}] is {a:?}, scikit-learn has {b:?}"),
        }
    }
}

#[test]
fn every_score_matches_scikit_learn() {
    for case in METRIC_CASES {
        let (name, k) = (case.name, case.classes);
        let cm = ConfusionMatrix::new(case.labels, case.predictions, k).unwrap();
        let expected = ArrayView2::from_shape((k, k), case.confusion).unwrap();
        assert_eq!(cm.counts(), expected, "{name}: confusion matrix");
        assert!(close(cm.accuracy(), case.accuracy), "{name}: accuracy");
        assert!(close(cm.balanced_accuracy(), case.balanced_accuracy), "{name}: balanced accuracy");
        assert!(
            close(cm.macro_f1(), case.macro_f1),
            "{name}: macro-F1 {} vs {}",
            cm.macro_f1(),
            case.macro_f1
        );
        close_options(name, "precision", &cm.precisions(), case.precision);
        close_options(name, "recall", &cm.recalls(), case.recall);
        close_options(name, "f1", &cm.f1_scores(), case.f1);
        assert_eq!(accuracy(case.labels, case.predictions, k).unwrap(), cm.accuracy());
        assert_eq!(balanced_accuracy(case.labels, case.predictions, k).unwrap(), cm.balanced_accuracy());
        assert_eq!(macro_f1(case.labels, case.predictions, k).unwrap(), cm.macro_f1());
    }
}

#[test]
fn golden_table_covers_absent_classes_on_each_side() {
    let absent_from_labels = |c: &&sklearn_values::MetricCase| c.recall.iter().any(Option::is_none);
    let never_predicted = |c: &&sklearn_values::MetricCase| c.precision.iter().any(Option::is_none);
    let absent_from_both = |c: &&sklearn_values::MetricCase| c.f1.iter().any(Option::is_none);
    let only_predicted = |c: &&sklearn_values::MetricCase| {
        c.recall.iter().zip(c.precision).any(|(r, p)| r.is_none() && p.is_some())
    };
    assert!(METRIC_CASES.iter().any(|c| absent_from_labels(&c)));
    assert!(METRIC_CASES.iter().any(|c| never_predicted(&c)));
    assert!(METRIC_CASES.iter().any(|c| absent_from_both(&c)));
    assert!(METRIC_CASES.iter().any(|c| only_predicted(&c)));
}

#[test]
fn inverse_frequency_weights_match_compute_class_weight_balanced() {
    for case in WEIGHT_CASES {
        let prior = Prior::from_labels(case.labels, case.classes).unwrap();
        let w64 = ClassWeights::inverse_frequency().weights::<f64>(&prior).unwrap();
        let w32 = ClassWeights::inverse_frequency().weights::<f32>(&prior).unwrap();
        for (k, &expected) in case.weights.iter().enumerate() {
            assert!(close(w64[k], expected), "{}: w[{k}] {} vs {expected}", case.name, w64[k]);
            assert!((f64::from(w32[k]) - expected).abs() <= 1e-6 * expected, "{}: f32 w[{k}]", case.name);
        }
    }
}

#[test]
fn worst_class_and_geometric_mean_read_the_present_recalls() {
    // Recalls: class 0 3/4, class 1 1/2, class 2 absent, class 3 1/1.
    let cm = ConfusionMatrix::new(&[0, 0, 0, 0, 1, 1, 3], &[0, 0, 0, 1, 1, 2, 3], 4).unwrap();
    assert_eq!(cm.worst_class_recall(), 0.5);
    let direct = (0.75_f64 * 0.5 * 1.0).powf(1.0 / 3.0);
    assert!(close(cm.geometric_mean_recall(), direct), "{} vs {direct}", cm.geometric_mean_recall());
    let zero = ConfusionMatrix::new(&[0, 1], &[0, 0], 2).unwrap();
    assert_eq!(zero.geometric_mean_recall(), 0.0);
}

#[test]
fn views_and_slices_give_the_same_matrix_and_merge_adds_samples() {
    let labels = Array1::from(vec![0_usize, 9, 1, 9, 2, 9, 2, 9]);
    let predictions = [0, 1, 1, 2];
    let from_view = ConfusionMatrix::new(labels.slice(s![..;2]), &predictions, 3).unwrap();
    let from_slice = ConfusionMatrix::new(&[0, 1, 2, 2], &predictions, 3).unwrap();
    assert_eq!(from_view, from_slice);
    let mut first = ConfusionMatrix::new(&[0, 1], &[0, 1], 3).unwrap();
    first.merge(&ConfusionMatrix::new(&[2, 2], &[1, 2], 3).unwrap()).unwrap();
    assert_eq!(first, from_slice);
    assert_eq!(first.total(), 4);
}

#[test]
fn shot_split_follows_liu_et_al() {
    let split = ShotSplit::default();
    assert_eq!((split.many_above(), split.few_below()), (100.0, 20.0));
    let groups: Vec<Shot> =
        [1000.0, 101.0, 100.0, 20.0, 19.0, 0.0].iter().map(|&n| split.shot(n).unwrap()).collect();
    for bad in [f64::NAN, -1.0] {
        let err = split.shot(bad).unwrap_err();
        assert!(matches!(err, longtail::Error::InvalidParameter { name: "count", .. }), "{err:?}");
    }
    assert_eq!(groups, [Shot::Many, Shot::Many, Shot::Medium, Shot::Medium, Shot::Few, Shot::Few]);
}

#[test]
fn shot_report_averages_recall_within_each_group_over_present_classes() {
    // Classes 0, 1 many; 2, 3 medium (3 absent from the evaluation labels); 4 few.
    let train = Prior::from_counts(&[900.0, 300.0, 60.0, 30.0, 5.0]).unwrap();
    let labels = [0, 0, 1, 1, 1, 1, 2, 2, 4];
    let predictions = [0, 1, 1, 1, 1, 0, 2, 0, 0];
    let cm = ConfusionMatrix::new(&labels, &predictions, 5).unwrap();
    let report = ShotSplit::default().report(&cm, &train).unwrap();
    assert_eq!(report.many, Some((0.5 + 0.75) / 2.0));
    assert_eq!(report.medium, Some(0.5));
    assert_eq!(report.few, Some(0.0));
    let no_few = ShotSplit::new(100.0, 1.0).unwrap().report(&cm, &train).unwrap();
    assert_eq!(no_few.few, None);
    assert_eq!(no_few.medium, Some((0.5 + 0.0) / 2.0));
}

// ---------------------------------------------------------------------------------------------
// Errors: one test per trigger
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_inputs_are_an_error() {
    let err = ConfusionMatrix::new(&[], &[], 3).unwrap_err();
    assert_eq!(err, Error::EmptyBatch);
    assert_eq!(balanced_accuracy(&[], &[], 3), Err(Error::EmptyBatch));
}

#[test]
fn zero_classes_is_an_error() {
    assert_eq!(ConfusionMatrix::new(&[0], &[0], 0), Err(Error::NoClasses));
}

#[test]
fn mismatched_lengths_are_an_error() {
    assert_eq!(
        macro_f1(&[0, 1, 1], &[0, 1], 2),
        Err(Error::ShapeMismatch { name: "predictions", expected: vec![3], found: vec![2] })
    );
}

#[test]
fn a_label_out_of_range_is_an_error() {
    let err = accuracy(&[0, 1, 2], &[0, 1, 1], 2).unwrap_err();
    assert_eq!(err, Error::LabelOutOfRange { row: 2, label: 2, classes: 2 });
    assert_eq!(err.to_string(), "label 2 at row 2 is not a class index 0..2");
}

#[test]
fn a_prediction_out_of_range_is_an_error() {
    let err = ConfusionMatrix::new(&[0, 1, 1], &[0, 7, 1], 2).unwrap_err();
    assert_eq!(err, Error::PredictionOutOfRange { row: 1, prediction: 7, classes: 2 });
    assert_eq!(err.to_string(), "prediction 7 at row 1 is not a class index 0..2");
}

#[test]
fn merging_matrices_of_different_sizes_is_an_error() {
    let mut cm = ConfusionMatrix::new(&[0], &[0], 2).unwrap();
    let before = cm.clone();
    assert_eq!(
        cm.merge(&ConfusionMatrix::new(&[0], &[0], 3).unwrap()),
        Err(Error::ShapeMismatch { name: "confusion_matrix", expected: vec![2, 2], found: vec![3, 3] })
    );
    assert_eq!(cm, before);
}

#[test]
fn bad_shot_thresholds_are_an_error() {
    for (many, few, name) in [
        (f64::NAN, 20.0, "many_above"),
        (-1.0, 0.0, "many_above"),
        (f64::INFINITY, 20.0, "many_above"),
        (100.0, 150.0, "few_below"),
        (100.0, -1.0, "few_below"),
        (100.0, f64::NAN, "few_below"),
    ] {
        let err = ShotSplit::new(many, few).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name: n, .. } if n == name), "{err:?}");
    }
}

#[test]
fn a_train_prior_of_another_size_is_an_error() {
    let cm = ConfusionMatrix::new(&[0, 1], &[0, 1], 2).unwrap();
    let prior = Prior::from_counts(&[1.0, 2.0, 3.0]).unwrap();
    assert_eq!(
        ShotSplit::default().report(&cm, &prior),
        Err(Error::ShapeMismatch { name: "train_prior", expected: vec![2], found: vec![3] })
    );
}
