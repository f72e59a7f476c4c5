//! Shapes, batches and losses shared by the criterion benches and `examples/bench_table.rs`
//! (which includes this file by path); each includer uses a part of it.
#![allow(dead_code)]

use longtail::{
    AsymmetricLoss, BinarySmoothF1Loss, Float, LdamLoss, Loss, PairwiseMarginLoss, Poly1Loss, SigmoidLoss,
    SmoothF1Loss, SoftmaxLoss, Targets, VsLoss, ZlprLoss,
};
use ndarray::Array2;

pub const SHAPES: [(usize, usize); 4] = [(64, 10), (1024, 1000), (256, 32000), (32, 262_144)];

/// The pairwise margin loss stores its `K × K` margins: past this many classes they would not fit
/// in memory (32000² f64 is 8 GB), so it is left out of the larger shapes.
pub const PAIRWISE_MAX_CLASSES: usize = 1000;

/// Positives per row of the multi-hot targets (fewer where `K` is smaller).
const POSITIVES: usize = 3;

/// A deterministic batch without a random-number crate: logits in about [-4, 4], labels, uniform
/// probability targets and multi-hot targets with a few positives per row.
pub struct Batch<F> {
    pub logits: Array2<F>,
    pub labels: Vec<usize>,
    pub probs: Array2<F>,
    pub multi_hot: Array2<F>,
}

impl<F: Float> Batch<F> {
    pub fn new(rows: usize, classes: usize) -> Self {
        let logits = Array2::from_shape_fn((rows, classes), |(i, k)| {
            F::from_f64(((i * 7919 + k * 104_729) % 8192) as f64 / 1024.0 - 4.0)
        });
        let labels = (0..rows).map(|i| (i * 31) % classes).collect();
        let probs = Array2::from_elem((rows, classes), F::from_f64(1.0 / classes as f64));
        let mut multi_hot = Array2::zeros((rows, classes));
        for i in 0..rows {
            for j in 0..POSITIVES {
                multi_hot[[i, (i * 31 + j * 97) % classes]] = F::one();
            }
        }
        Self { logits, labels, probs, multi_hot }
    }

    /// The labels, or the probability targets for soft-target cross-entropy.
    pub fn targets(&self, soft: bool) -> Targets<'_, F> {
        if soft { Targets::probs(&self.probs) } else { Targets::labels(&self.labels) }
    }
}

/// A long-tailed class prior (or count) vector, `1000 / (1 + k)`.
pub fn prior<F: Float>(classes: usize) -> Vec<F> {
    (0..classes).map(|k| F::from_f64(1000.0 / (1.0 + k as f64))).collect()
}

/// The softmax-family losses by name, and whether they take the probability targets.
pub fn softmax_losses<F: Float>(classes: usize) -> Vec<(&'static str, SoftmaxLoss<F>, bool)> {
    let prior = prior::<F>(classes);
    let ce = SoftmaxLoss::cross_entropy();
    vec![
        ("cross_entropy", ce.clone(), false),
        ("logit_adjusted", SoftmaxLoss::logit_adjusted(&prior).unwrap(), false),
        ("class_weighted", SoftmaxLoss::class_weighted(&prior).unwrap(), false),
        ("focal_2", SoftmaxLoss::focal(F::from_f64(2.0)).unwrap(), false),
        ("label_smoothing_0.1", ce.clone().with_label_smoothing(F::from_f64(0.1)).unwrap(), false),
        ("soft_targets", ce, true),
    ]
}

/// One of the crate's other losses and the targets it is called with.
pub struct OtherLoss<F> {
    loss: Box<dyn Loss<F>>,
    /// Multi-hot targets (the one-vs-rest and multi-label losses), else labels.
    multi_hot: bool,
}

impl<F: Float> OtherLoss<F> {
    fn new(loss: impl Loss<F> + 'static, multi_hot: bool) -> Self {
        Self { loss: Box::new(loss), multi_hot }
    }

    /// Loss + gradient (mean reduction) into `grad` (`[B, K]`).
    pub fn loss_and_grad_into(&self, batch: &Batch<F>, grad: &mut Array2<F>) -> F {
        let targets = if self.multi_hot {
            Targets::multi_hot(&batch.multi_hot)
        } else {
            Targets::labels(&batch.labels)
        };
        self.loss.loss_and_grad_into(&batch.logits, targets, grad).unwrap()
    }
}

/// The other losses by name; the pairwise margin loss only up to [`PAIRWISE_MAX_CLASSES`].
pub fn other_losses<F: Float>(classes: usize) -> Vec<(&'static str, OtherLoss<F>)> {
    let prior = prior::<F>(classes);
    let mut losses = vec![
        ("sigmoid_bce", OtherLoss::new(SigmoidLoss::bce(), true)),
        (
            "sigmoid_focal",
            OtherLoss::new(
                SigmoidLoss::focal(F::from_f64(2.0)).unwrap().with_alpha(F::from_f64(0.25)).unwrap(),
                true,
            ),
        ),
        ("binary_smooth_f1", OtherLoss::new(BinarySmoothF1Loss::new(), true)),
        ("smooth_macro_f1", OtherLoss::new(SmoothF1Loss::macro_f1(), false)),
        ("zlpr", OtherLoss::new(ZlprLoss::new(), true)),
        ("ldam", OtherLoss::new(LdamLoss::new(&prior).unwrap(), false)),
        ("vs", OtherLoss::new(VsLoss::new(&prior).unwrap(), false)),
        (
            "poly1_logit_adjusted",
            OtherLoss::new(
                Poly1Loss::new(F::one()).unwrap().with_logit_adjustment(&prior, F::one()).unwrap(),
                false,
            ),
        ),
        (
            "sigmoid_bce_pos_weight",
            OtherLoss::new(
                SigmoidLoss::bce().with_pos_weight(&vec![F::from_f64(3.0); classes]).unwrap(),
                true,
            ),
        ),
        ("asymmetric", OtherLoss::new(AsymmetricLoss::new(), true)),
    ];
    if classes <= PAIRWISE_MAX_CLASSES {
        let pairwise = PairwiseMarginLoss::from_prior(&prior, F::one()).unwrap();
        losses.push(("pairwise_margin", OtherLoss::new(pairwise, false)));
    }
    losses
}
