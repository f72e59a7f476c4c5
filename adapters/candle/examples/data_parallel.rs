//! Data-parallel training with two model replicas: the statistics that span the global batch
//! (class counts, smooth-F1 sums, the test confusion matrix) are computed per replica and
//! all-reduced with the core's `merge`, the smooth-F1 loss of each replica uses the merged sums
//! ([`smooth_f1_with_stats`]), and the replicas' gradients are all-reduced, so that the two train
//! exactly as one model on the whole batch would.
//!
//! ```text
//! cargo run --release -p longtail-candle --example data_parallel
//! ```
//!
//! On the CPU candle has no collective operations (its NCCL all-reduce is for CUDA devices), so
//! the all-reduce here is a loop over the replicas; with NCCL the same numbers (the counts of a
//! [`PriorEstimator`], the vectors of an [`F1Stats`], the cells of a [`ConfusionMatrix`]) are
//! what each device sends.
//!
//! Each replica holds every other training image of digits-LT (ρ = 100) and half of each global
//! batch, and minimises the logit-adjusted loss plus the smooth macro-F1 loss. The run checks
//! what data parallelism must preserve: the merged prior is the whole
//! training set's; the merged smooth-F1 statistics are the global batch's; the averaged
//! gradient is the whole batch's (the replicas stay identical); the merged confusion matrix is
//! the one of the whole test split.

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{Linear, Optimizer, SGD, VarBuilder, VarMap};
use longtail::prior::PriorEstimator;
use longtail::{ConfusionMatrix, F1Stats, SmoothF1Loss, SoftmaxLoss};
use longtail_candle::{
    CandleLoss, confusion_matrix, f1_stats, prior_from_labels, smooth_f1_with_stats, update_prior,
};

#[allow(dead_code)]
#[path = "../../../demo/src/data.rs"]
mod data;
#[path = "../../../demo/src/digits.rs"]
mod digits;
#[path = "../../../demo/src/rng.rs"]
mod rng;

use data::{long_tail_counts, split_long_tail};
use rng::Rng;

const REPLICAS: usize = 2;
const GLOBAL_BATCH: usize = 64;
const EPOCHS: usize = 100;

/// One replica: a softmax-regression model in f64 with its own variables and optimizer.
struct Replica {
    varmap: VarMap,
    model: Linear,
    optimizer: SGD,
}

impl Replica {
    /// Every replica starts from the same seeded weights.
    fn new(inputs: usize, classes: usize, dev: &Device) -> Result<Self> {
        let mut rng = Rng::stream(0, 4);
        let weights: Vec<f64> =
            (0..inputs * classes).map(|_| (1.0 / inputs as f64).sqrt() * rng.normal()).collect();
        let varmap = VarMap::new();
        {
            let mut vars = varmap.data().lock().expect("the VarMap lock is not poisoned");
            vars.insert(
                "weight".into(),
                Var::from_tensor(&Tensor::from_vec(weights, (classes, inputs), dev)?)?,
            );
            vars.insert("bias".into(), Var::zeros(classes, DType::F64, dev)?);
        }
        let model = candle_nn::linear(inputs, classes, VarBuilder::from_varmap(&varmap, DType::F64, dev))?;
        let optimizer = SGD::new(varmap.all_vars(), 0.5)?;
        Ok(Self { varmap, model, optimizer })
    }

    fn vars(&self) -> Vec<(String, Var)> {
        let mut vars: Vec<_> = self.varmap.data().lock().expect("not poisoned").clone().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars
    }
}

/// Rows `rows` of `x` and `y`.
fn rows(x: &Tensor, y: &Tensor, rows: &[u32]) -> Result<(Tensor, Tensor)> {
    let index = Tensor::new(rows, x.device())?;
    Ok((x.index_select(&index, 0)?, y.index_select(&index, 0)?))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let dev = Device::Cpu;
    let (pixels, labels) = digits::load();
    let counts = long_tail_counts(100, digits::CLASSES, 100.0);
    let data = split_long_tail(&pixels, &labels, digits::CLASSES, &counts, (50, 20), 0)?;
    let to_tensors = |split: &data::Split| -> Result<(Tensor, Tensor)> {
        let x =
            Tensor::from_vec(split.x.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(), split.x.dim(), &dev)?;
        let y = Tensor::new(split.y.iter().map(|&l| l as u32).collect::<Vec<_>>(), &dev)?;
        Ok((x, y))
    };
    let (train_x, train_y) = to_tensors(&data.train)?;
    let (test_x, test_y) = to_tensors(&data.test)?;
    let n = data.train.y.len();
    // Replica r holds the training rows r, r + 2, r + 4, ...
    let shards: Vec<Vec<u32>> =
        (0..REPLICAS).map(|r| (r..n).step_by(REPLICAS).map(|i| i as u32).collect()).collect();

    // 1. The class prior: each replica counts its shard, the counts are all-reduced.
    let mut estimators = Vec::new();
    for shard in &shards {
        let mut estimator = PriorEstimator::new(digits::CLASSES)?;
        update_prior(&mut estimator, &rows(&train_x, &train_y, shard)?.1)?;
        estimators.push(estimator);
    }
    let mut global = estimators[0].clone();
    for other in &estimators[1..] {
        global.merge(other)?;
    }
    let prior = global.prior()?;
    assert_eq!(prior.counts(), prior_from_labels(&train_y, digits::CLASSES)?.counts());
    println!("merged class counts {:?} (= the whole training set's)", prior.counts());

    // 2. Training: the logit-adjusted loss from the merged prior plus the smooth-F1 loss with
    //    the merged F1 statistics; gradients all-reduced.
    let loss = SoftmaxLoss::<f64>::logit_adjusted(&prior)?;
    let f1 = SmoothF1Loss::<f64>::macro_f1();
    let mut replicas: Vec<Replica> =
        (0..REPLICAS).map(|_| Replica::new(64, digits::CLASSES, &dev)).collect::<Result<_>>()?;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = Rng::stream(0, 5);
    let (mut largest_gap, mut largest_stats_gap) = (0.0_f64, 0.0_f64);
    for epoch in 0..EPOCHS {
        rng.shuffle(&mut order);
        let mut epoch_stats = F1Stats::new(digits::CLASSES);
        for batch in order.chunks(GLOBAL_BATCH) {
            let half = batch.len().div_ceil(REPLICAS);
            // Each replica's forward pass and its share of the smooth-F1 sums.
            let mut local = Vec::new();
            let mut stats = Vec::new();
            for (replica, part) in replicas.iter().zip(batch.chunks(half)) {
                let (x, y) = rows(&train_x, &train_y, part)?;
                let logits = replica.model.forward(&x)?;
                stats.push(f1_stats(&f1, &logits, &y)?);
                local.push((logits, y, part.len() as f64 / batch.len() as f64));
            }
            // The all-reduce of the smooth-F1 sums: every replica gets the global batch's.
            let mut merged = stats[0].clone();
            for other in &stats[1..] {
                merged.merge(other)?;
            }
            // Each replica's objective: the logit-adjusted loss plus the smooth-F1 loss with the
            // global F1, both means over its share, weighted by the share, so that the sum of
            // the replicas' gradients is the global batch's mean gradient.
            let mut grads = Vec::new();
            for (logits, y, share) in &local {
                let objective = (loss.forward(logits, y)? + smooth_f1_with_stats(&f1, &merged, logits, y)?)?;
                grads.push((objective * *share)?.backward()?);
            }
            // The all-reduce of the gradients: their sum, given to every replica.
            let vars: Vec<Vec<(String, Var)>> = replicas.iter().map(Replica::vars).collect();
            let mut reduced = Vec::new();
            for v in 0..vars[0].len() {
                let mut sum = grads[0].get(vars[0][v].1.as_tensor()).expect("a gradient").clone();
                for (replica_vars, g) in vars.iter().zip(&grads).skip(1) {
                    sum = (sum + g.get(replica_vars[v].1.as_tensor()).expect("a gradient"))?;
                }
                reduced.push(sum);
            }
            // A check against one model on the whole global batch (its local F1 is the global one).
            let (x, y) = rows(&train_x, &train_y, batch)?;
            let logits = replicas[0].model.forward(&x)?;
            let whole = (loss.forward(&logits, &y)? + f1.forward(&logits, &y)?)?.backward()?;
            for ((_, var), sum) in vars[0].iter().zip(&reduced) {
                let single = whole.get(var.as_tensor()).expect("a gradient");
                largest_gap = largest_gap.max(max_abs_diff(sum, single)?);
            }
            let single = f1_stats(&f1, &logits, &y)?;
            for (a, b) in merged
                .true_positive()
                .iter()
                .chain(merged.mass())
                .zip(single.true_positive().iter().chain(single.mass()))
            {
                largest_stats_gap = largest_stats_gap.max((a - b).abs());
            }
            for (replica, replica_vars) in replicas.iter_mut().zip(&vars) {
                let mut store = GradStore::default();
                for ((_, var), sum) in replica_vars.iter().zip(&reduced) {
                    store.insert(var.as_tensor(), sum.clone());
                }
                replica.optimizer.step(&store)?;
            }
            epoch_stats.merge(&merged)?;
        }
        if epoch % 25 == 24 {
            let soft_f1: f64 = epoch_stats.f1().iter().sum::<f64>() / digits::CLASSES as f64;
            println!(
                "epoch {:>3}: soft macro F1 over the epoch's batches, all-reduced {soft_f1:.3}",
                epoch + 1
            );
        }
    }
    println!(
        "largest gap between the all-reduced gradient and one model's on the whole batch: {largest_gap:.1e}"
    );
    println!(
        "largest gap between the all-reduced smooth-F1 sums and the whole batch's: {largest_stats_gap:.1e}"
    );
    let drift = replicas[0]
        .vars()
        .iter()
        .zip(replicas[1].vars())
        .map(|((_, a), (_, b))| max_abs_diff(a.as_tensor(), b.as_tensor()))
        .try_fold(0.0_f64, |m, d| d.map(|d| m.max(d)))?;
    println!("largest difference between the replicas' weights: {drift:e}");
    assert!(
        largest_gap < 1e-12 && largest_stats_gap < 1e-10 && drift == 0.0,
        "data parallelism changed the training"
    );

    // 3. Evaluation: each replica scores half the test split; the confusion matrices merge.
    let m = data.test.y.len();
    let mut merged: Option<ConfusionMatrix> = None;
    for (r, replica) in replicas.iter().enumerate() {
        let part: Vec<u32> = (r..m).step_by(REPLICAS).map(|i| i as u32).collect();
        let (x, y) = rows(&test_x, &test_y, &part)?;
        let confusion = confusion_matrix(&replica.model.forward(&x)?, &y, None)?;
        match &mut merged {
            Some(all) => all.merge(&confusion)?,
            None => merged = Some(confusion),
        }
    }
    let merged = merged.expect("two replicas");
    let whole = confusion_matrix(&replicas[0].model.forward(&test_x)?, &test_y, None)?;
    assert_eq!(merged.counts(), whole.counts());
    println!(
        "balanced test accuracy from the merged confusion matrices: {:.1} %",
        100.0 * merged.balanced_accuracy()
    );
    Ok(())
}
