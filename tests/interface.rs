//! Every loss behind the one `Loss` interface: boxed, with every kind of targets it takes, against
//! finite differences, across float types, per sample against the sum, and with `u32` labels.

mod common;

use common::{Rng, numeric_grad, relative, relative_error};
use longtail::{
    AsymmetricLoss, BinarySmoothF1Loss, Error, Float, LdamLoss, Loss, PairwiseMarginLoss, Poly1Loss, Prior,
    Reduction, SigmoidLoss, SmoothF1Loss, SoftmaxLoss, Targets, VsLoss, ZlprLoss,
};
use ndarray::{Array1, Array2, Axis};

/// The kinds of targets a loss is called with here.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Labels,
    Probs,
    MultiHot,
}

use Kind::{Labels, MultiHot, Probs};

/// A named loss, whether its gradient is exact (smooth F1 holds F1 constant), and the target kinds
/// it takes.
struct Case<F> {
    name: &'static str,
    loss: Box<dyn Loss<F>>,
    exact: bool,
    kinds: &'static [Kind],
}

/// Every loss of the crate, in `F`, reduced by `reduction`.
fn every_loss<F: Float>(reduction: Reduction) -> Vec<Case<F>> {
    let prior = Prior::from_counts(&[50.0, 10.0, 3.0, 1.0]).unwrap();
    let case = |name, loss: Box<dyn Loss<F>>, exact, kinds| Case { name, loss, exact, kinds };
    let f = F::from_f64;
    let softmax = |loss: SoftmaxLoss<F>| Box::new(loss.with_reduction(reduction));
    vec![
        case("cross_entropy", softmax(SoftmaxLoss::cross_entropy()), true, &[Labels, Probs]),
        case("logit_adjusted", softmax(SoftmaxLoss::logit_adjusted(&prior).unwrap()), true, &[Labels, Probs]),
        case(
            "focal_smoothed_weighted",
            softmax(
                SoftmaxLoss::focal(f(2.0))
                    .unwrap()
                    .with_label_smoothing(f(0.1))
                    .unwrap()
                    .with_class_weights(&[f(0.5), f(1.0), f(2.0), f(3.0)])
                    .unwrap(),
            ),
            true,
            &[Labels, Probs],
        ),
        case("bce", Box::new(SigmoidLoss::bce().with_reduction(reduction)), true, &[Labels, Probs, MultiHot]),
        case(
            "sigmoid_focal",
            Box::new(
                SigmoidLoss::focal(f(2.0)).unwrap().with_alpha(f(0.25)).unwrap().with_reduction(reduction),
            ),
            true,
            &[Labels, Probs, MultiHot],
        ),
        case(
            "binary_smooth_f1",
            Box::new(BinarySmoothF1Loss::new().with_reduction(reduction)),
            false,
            &[Labels, Probs, MultiHot],
        ),
        case(
            "smooth_macro_f1",
            Box::new(SmoothF1Loss::macro_f1().with_reduction(reduction)),
            false,
            &[Labels, Probs],
        ),
        case(
            "smooth_micro_f1",
            Box::new(SmoothF1Loss::micro_f1().with_reduction(reduction)),
            false,
            &[Labels, Probs],
        ),
        case("zlpr", Box::new(ZlprLoss::new().with_reduction(reduction)), true, &[Labels, MultiHot]),
        case(
            "zlpr_label_prior",
            Box::new(
                ZlprLoss::new()
                    .with_label_prior(&[f(0.5), f(0.2), f(0.1), f(0.05)], f(1.0))
                    .unwrap()
                    .with_reduction(reduction),
            ),
            true,
            &[Labels, MultiHot],
        ),
        case("ldam", Box::new(LdamLoss::new(&prior).unwrap().with_reduction(reduction)), true, &[Labels]),
        case(
            "pairwise",
            Box::new(PairwiseMarginLoss::from_prior(&prior, f(1.0)).unwrap().with_reduction(reduction)),
            true,
            &[Labels],
        ),
        case("vs", Box::new(VsLoss::new(&prior).unwrap().with_reduction(reduction)), true, &[Labels]),
        case(
            "poly1_adjusted_weighted",
            Box::new(
                Poly1Loss::new(f(2.0))
                    .unwrap()
                    .with_logit_adjustment(&prior, f(1.0))
                    .unwrap()
                    .with_class_weights(&[f(0.5), f(1.0), f(2.0), f(3.0)])
                    .unwrap()
                    .with_reduction(reduction),
            ),
            true,
            &[Labels],
        ),
        case(
            "bce_pos_weight",
            Box::new(
                SigmoidLoss::focal(f(0.5))
                    .unwrap()
                    .with_pos_weight(&[f(1.0), f(4.0), f(9.0), f(0.5)])
                    .unwrap()
                    .with_reduction(reduction),
            ),
            true,
            &[Labels, Probs, MultiHot],
        ),
        case("asl", Box::new(AsymmetricLoss::new().with_reduction(reduction)), true, &[Labels, MultiHot]),
    ]
}

/// A batch of 6 rows over 4 classes with every kind of targets, and sample weights.
struct Batch {
    logits: Array2<f64>,
    labels: Vec<usize>,
    probs: Array2<f64>,
    multi_hot: Array2<f64>,
    weights: Array1<f64>,
}

impl Batch {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let (b, k) = (6, 4);
        let multi_hot = Array2::from_shape_fn((b, k), |_| f64::from(u8::from(rng.uniform() < 0.4)));
        Self {
            logits: rng.logits(b, k, 1.5),
            labels: rng.labels(b, k),
            probs: rng.probs(b, k),
            multi_hot,
            weights: Array1::from(rng.positive(b, 0.2, 2.0)),
        }
    }

    /// The batch in `F`: logits, then the targets of `kind` (with the sample weights if `weighted`)
    /// handed to `f`.
    fn with<F: Float, R>(
        &self,
        kind: Kind,
        weighted: bool,
        f: impl FnOnce(&Array2<F>, Targets<'_, F>) -> R,
    ) -> R {
        let logits = self.logits.mapv(F::from_f64);
        let (probs, multi_hot, weights) =
            (self.probs.mapv(F::from_f64), self.multi_hot.mapv(F::from_f64), self.weights.mapv(F::from_f64));
        let targets = match kind {
            Labels => Targets::labels(&self.labels),
            Probs => Targets::probs(&probs),
            MultiHot => Targets::multi_hot(&multi_hot),
        };
        f(&logits, if weighted { targets.with_sample_weights(&weights) } else { targets })
    }
}

#[test]
fn every_loss_through_the_boxed_interface_has_its_exact_gradient() {
    let batch = Batch::new(1);
    for reduction in [Reduction::Mean, Reduction::Sum] {
        for case in every_loss::<f64>(reduction).into_iter().filter(|c| c.exact) {
            for &kind in case.kinds {
                for weighted in [false, true] {
                    let (_, grad) = batch.with(kind, weighted, |z, t| case.loss.loss_and_grad(z, t)).unwrap();
                    let numeric = numeric_grad(&batch.logits, |z| {
                        let shifted = Batch { logits: z.clone(), ..Batch::new(1) };
                        shifted.with(kind, weighted, |z, t| case.loss.loss(z, t)).unwrap()
                    });
                    let err = relative_error(&grad, &numeric);
                    assert!(err <= 1e-6, "{} {kind:?} weighted {weighted} {reduction:?}: {err:e}", case.name);
                }
            }
        }
    }
}

#[test]
fn every_loss_in_f32_agrees_with_f64() {
    let batch = Batch::new(2);
    let (wide, narrow) = (every_loss::<f64>(Reduction::Mean), every_loss::<f32>(Reduction::Mean));
    for (w, n) in wide.iter().zip(&narrow) {
        for &kind in w.kinds {
            let (l64, g64) = batch.with(kind, true, |z, t| w.loss.loss_and_grad(z, t)).unwrap();
            let (l32, g32) = batch.with(kind, true, |z, t| n.loss.loss_and_grad(z, t)).unwrap();
            assert!(relative(f64::from(l32), l64) <= 1e-5, "{} {kind:?}: {l32} vs {l64}", w.name);
            let err = relative_error(&g32.mapv(f64::from), &g64);
            assert!(err <= 1e-5, "{} {kind:?}: {err:e}", w.name);
        }
    }
}

#[test]
fn per_sample_losses_and_gradients_are_the_terms_of_the_sum() {
    let batch = Batch::new(3);
    for case in every_loss::<f64>(Reduction::Sum) {
        for &kind in case.kinds {
            let (sum, sum_grad) = batch.with(kind, true, |z, t| case.loss.loss_and_grad(z, t)).unwrap();
            let (losses, grads) =
                batch.with(kind, true, |z, t| case.loss.per_sample_loss_and_grad(z, t)).unwrap();
            assert!(
                relative(losses.sum(), sum) <= 1e-12,
                "{} {kind:?}: {} vs {sum}",
                case.name,
                losses.sum()
            );
            assert!(relative_error(&grads, &sum_grad) <= 1e-12, "{} {kind:?}", case.name);
            let alone = batch.with(kind, true, |z, t| case.loss.per_sample_loss(z, t)).unwrap();
            assert_eq!(alone, losses, "{} {kind:?}", case.name);
        }
    }
}

#[test]
fn the_into_calls_overwrite_their_buffers() {
    let batch = Batch::new(4);
    for case in every_loss::<f64>(Reduction::Mean) {
        let kind = case.kinds[0];
        let expected = batch.with(kind, false, |z, t| case.loss.per_sample_loss_and_grad(z, t)).unwrap();
        let (mut losses, mut grad) = (Array1::from_elem(6, f64::NAN), Array2::from_elem((6, 4), f64::NAN));
        batch
            .with(kind, false, |z, t| case.loss.per_sample_into(z, &t, &mut losses, Some(&mut grad)))
            .unwrap();
        assert_eq!((losses, grad), expected, "{}", case.name);
    }
}

#[test]
fn u32_labels_give_what_usize_labels_give() {
    let batch = Batch::new(5);
    let narrow: Vec<u32> = batch.labels.iter().map(|&y| y as u32).collect();
    for case in every_loss::<f64>(Reduction::Mean) {
        let wide = case.loss.loss_and_grad(&batch.logits, &batch.labels).unwrap();
        assert_eq!(case.loss.loss_and_grad(&batch.logits, &narrow).unwrap(), wide, "{}", case.name);
    }
}

#[test]
fn a_loss_given_targets_it_does_not_take_says_so() {
    let batch = Batch::new(6);
    for case in every_loss::<f64>(Reduction::Mean) {
        for kind in [Labels, Probs, MultiHot].into_iter().filter(|k| !case.kinds.contains(k)) {
            let err = batch.with(kind, false, |z, t| case.loss.loss(z, t)).unwrap_err();
            let zlpr_on_soft_rows = case.name.starts_with("zlpr") && kind == Probs;
            if zlpr_on_soft_rows {
                // ZLPR reads any [B, K] rows as label sets: soft probabilities are out of range.
                assert!(matches!(err, Error::TargetOutOfRange { expected: "0 or 1", .. }), "{err:?}");
            } else {
                assert!(matches!(err, Error::UnsupportedTargets { .. }), "{} {kind:?}: {err:?}", case.name);
                assert!(err.to_string().contains(if kind == Probs { "probability" } else { "multi-hot" }));
            }
        }
    }
}

#[test]
fn the_one_vs_rest_losses_are_the_binary_losses_over_every_decision() {
    let batch = Batch::new(7);
    let (b, k) = batch.logits.dim();
    let flat_logits = batch.logits.clone().into_shape_with_order(b * k).unwrap();
    let flat_targets = batch.multi_hot.clone().into_shape_with_order(b * k).unwrap();
    let flat_weights = Array1::from_shape_fn(b * k, |i| batch.weights[i / k]);
    let targets = Targets::multi_hot(&batch.multi_hot).with_sample_weights(&batch.weights);
    let binary_targets = longtail::BinaryTargets::new(&flat_targets).with_sample_weights(&flat_weights);

    let focal = SigmoidLoss::focal(2.0).unwrap().with_alpha(0.25).unwrap();
    let (value, grad) = focal.loss_and_grad(&batch.logits, &targets).unwrap();
    let (flat_value, flat_grad) = focal.binary_loss_and_grad(&flat_logits, binary_targets.clone()).unwrap();
    assert!(relative(value, flat_value) <= 1e-14, "{value} vs {flat_value}");
    assert!(
        relative_error(&grad.into_shape_with_order((b * k, 1)).unwrap(), &flat_grad.insert_axis(Axis(1)))
            <= 1e-14
    );

    let f1 = BinarySmoothF1Loss::new();
    assert_eq!(
        f1.stats(&batch.logits, &targets).unwrap(),
        f1.binary_stats(&flat_logits, binary_targets.clone()).unwrap()
    );
    let value = f1.loss(&batch.logits, &targets).unwrap();
    let flat_value = f1.binary_loss(&flat_logits, binary_targets).unwrap();
    assert!(relative(value, flat_value) <= 1e-14, "{value} vs {flat_value}");
}

#[test]
#[allow(clippy::needless_borrows_for_generic_args)] // the references are what is tested
fn targets_are_taken_by_value_or_by_reference_as_logits_are() {
    let batch = Batch::new(8);
    let loss = SoftmaxLoss::cross_entropy();
    let expected = loss.loss(&batch.logits, &batch.probs).unwrap();
    let view = batch.probs.view();
    assert_eq!(loss.loss(&batch.logits, view).unwrap(), expected);
    assert_eq!(loss.loss(&batch.logits, &view).unwrap(), expected);
    let targets = Targets::probs(&batch.probs);
    assert_eq!(loss.loss(&batch.logits, &targets).unwrap(), expected);
    let labels = Array1::from(batch.labels.clone());
    let narrow = labels.mapv(|y| y as u32);
    let expected = loss.loss(&batch.logits, &batch.labels).unwrap();
    for result in [
        loss.loss(&batch.logits, &labels),
        loss.loss(&batch.logits, &labels.view()),
        loss.loss(&batch.logits, &narrow),
        loss.loss(&batch.logits, &narrow.view()),
    ] {
        assert_eq!(result.unwrap(), expected);
    }
}
