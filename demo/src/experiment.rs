//! Training one model with one loss, and scoring its decisions on the balanced test split.

use longtail::metrics::{ConfusionMatrix, ShotReport, ShotSplit};
use longtail::{Error, Prior};
use ndarray::{Array2, Axis};

use crate::data::Dataset;
use crate::methods::{Method, Objective};
use crate::model::{Architecture, Model, Sgd};
use crate::rng::Rng;

/// The optimisation, the same for every loss.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    pub architecture: Architecture,
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate, decayed to 0 along a half cosine over the epochs.
    pub learning_rate: f32,
    pub sgd: Sgd,
}

/// Mini-batch SGD on the loss's gradient; batches are reshuffled every epoch (seeded, so every
/// loss sees the same batches).
pub fn train(data: &Dataset, objective: &Objective, schedule: &Schedule, seed: u64) -> Result<Model, Error> {
    let train = &data.train;
    let classes = data.prior.classes();
    let mut model = Model::new(train.x.ncols(), classes, schedule.architecture, objective.head(), seed);
    let mut order: Vec<usize> = (0..train.y.len()).collect();
    let mut rng = Rng::stream(seed, 5);
    let mut grad = Array2::zeros((0, classes));
    for epoch in 0..schedule.epochs {
        let progress = epoch as f32 / schedule.epochs as f32;
        let lr = schedule.learning_rate * 0.5 * (1.0 + (std::f32::consts::PI * progress).cos());
        rng.shuffle(&mut order);
        for batch in order.chunks(schedule.batch_size) {
            let x = train.x.select(Axis(0), batch);
            let y: Vec<usize> = batch.iter().map(|&i| train.y[i]).collect();
            let trace = model.forward(x);
            if grad.nrows() != batch.len() {
                grad = Array2::zeros((batch.len(), classes));
            }
            objective.loss_and_grad_into(&trace.logits, &y, epoch, &mut grad)?;
            model.backward(&trace, &grad);
            model.step(lr, schedule.sgd);
        }
    }
    Ok(model)
}

/// One table row's figures for one seed, in `[0, 1]`.
#[derive(Clone, Debug)]
pub struct Scores {
    /// Accuracy on test data distributed as the training data: `Σ_k π_k·recall_k`. (On the
    /// balanced test split, plain accuracy equals balanced accuracy.)
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub worst_class_recall: f64,
    pub shots: ShotReport,
    /// Recall of each class, indexed by its place in the tail (0 = most frequent).
    pub recalls_by_rank: Vec<f64>,
    /// The post-hoc `τ` used, if any.
    pub tau: Option<f32>,
}

impl Scores {
    pub fn new(
        confusion: &ConfusionMatrix,
        prior: &Prior,
        ranks: &[usize],
        shots: &ShotSplit,
    ) -> Result<Self, Error> {
        // The test split is balanced, so every class has a recall.
        let recalls: Vec<f64> = confusion.recalls().into_iter().map(|r| r.unwrap_or(0.0)).collect();
        let mut recalls_by_rank = vec![0.0; recalls.len()];
        for (class, &recall) in recalls.iter().enumerate() {
            recalls_by_rank[ranks[class]] = recall;
        }
        let pi = prior.probabilities::<f64>();
        Ok(Self {
            accuracy: pi.iter().zip(&recalls).map(|(p, r)| p * r).sum(),
            balanced_accuracy: confusion.balanced_accuracy(),
            worst_class_recall: confusion.worst_class_recall(),
            shots: shots.report(confusion, prior)?,
            recalls_by_rank,
            tau: None,
        })
    }
}

/// Trains `method` and scores each of its decisions on the test split.
pub fn run(
    data: &Dataset,
    method: &Method,
    schedule: &Schedule,
    shots: &ShotSplit,
    seed: u64,
) -> Result<Vec<Scores>, Error> {
    let model = train(data, &method.objective, schedule, seed)?;
    let test_logits = model.logits(&data.test.x);
    let val_logits = model.logits(&data.val.x);
    method
        .rows
        .iter()
        .map(|&(_, decision)| {
            let (predictions, tau) =
                decision.predict(&test_logits, (&val_logits, &data.val.y), &data.prior)?;
            let confusion = ConfusionMatrix::new(&data.test.y, &predictions, data.prior.classes())?;
            Ok(Scores { tau, ..Scores::new(&confusion, &data.prior, &data.ranks, shots)? })
        })
        .collect()
}
