//! Data-parallel statistics with two model replicas: each replica sees half of the global batch,
//! computes its smooth-F1 statistics and its prior counts locally, and the two are all-reduced
//! (summed) so that every replica holds the global batch's statistics, identical to the ones one
//! replica would compute on the whole batch.
//!
//! ```text
//! cargo run --release -p longtail-burn --example data_parallel
//! ```
//!
//! The all-reduce here is burn tensor arithmetic: each replica's sums as a tensor, summed, read
//! back into [`F1Stats::from_parts`] (the core's [`F1Stats::merge`] gives the same). On a
//! multi-GPU machine the same per-replica tensor goes through
//! `burn::tensor::distributed::all_reduce(tensor, ReduceOperation::Sum, devices)`; burn's CPU
//! backends (Flex, NdArray) implement no collective operation, so this example runs the two
//! replicas on threads of one CPU device.

use std::error::Error;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{DType, Device, Distribution, Int, Tensor, TensorData};
use longtail::prior::PriorEstimator;
use longtail::{F1Stats, SmoothF1Loss};

#[derive(Module, Debug)]
struct Model {
    linear: Linear,
}

/// One replica's local statistics on its shard.
fn local(
    model: &Model,
    x: Tensor<2>,
    y: Tensor<1, Int>,
    loss: &SmoothF1Loss<f32>,
) -> Result<(F1Stats, PriorEstimator), longtail_burn::Error> {
    let logits = model.linear.forward(x);
    let stats = longtail_burn::f1_stats(loss, &logits, &y)?;
    let mut prior = PriorEstimator::new(logits.dims()[1])?;
    let labels: Vec<usize> = y.to_data().convert::<i64>().iter::<i64>().map(|v| v as usize).collect();
    prior.update(&labels)?;
    Ok((stats, prior))
}

/// Sums the replicas' statistics as burn tensors (the all-reduce) into the global statistics.
fn all_reduce(parts: &[F1Stats], device: &Device) -> Result<F1Stats, Box<dyn Error>> {
    let tensor =
        |v: &[f64]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), (device, DType::F64));
    let sum =
        |f: &dyn Fn(&F1Stats) -> Tensor<1>| parts.iter().map(f).reduce(|a, b| a + b).expect("two replicas");
    let true_positive = sum(&|s| tensor(s.true_positive()));
    let mass = sum(&|s| tensor(s.mass()));
    let weight = sum(&|s| tensor(&[s.weight()]));
    Ok(F1Stats::from_parts(
        true_positive.to_data().try_to_vec::<f64>().map_err(|e| format!("{e:?}"))?,
        mass.to_data().try_to_vec::<f64>().map_err(|e| format!("{e:?}"))?,
        weight.to_data().try_to_vec::<f64>().map_err(|e| format!("{e:?}"))?[0],
    )?)
}

fn main() -> Result<(), Box<dyn Error>> {
    let device = Device::flex();
    device.seed(7);
    let (batch, features, classes) = (64, 16, 5);
    let model = Model { linear: LinearConfig::new(features, classes).init(&device) };
    let x = Tensor::<2>::random([batch, features], Distribution::Normal(0.0, 1.0), &device);
    // A long-tailed label column: class k with probability ∝ 2^-k.
    let labels: Vec<i64> =
        (0..batch).map(|i| (i as u32).trailing_zeros().min(classes as u32 - 1) as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch]), &device);
    let loss = SmoothF1Loss::<f32>::macro_f1();

    // Two replicas with the same weights, each on its half of the batch, on its own thread.
    let half = batch / 2;
    let shards = [(0, half), (half, batch)];
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter()
            .map(|&(a, b)| {
                let (replica, loss) = (model.clone(), &loss);
                let (x, y) = (x.clone().slice(a..b), y.clone().slice(a..b));
                scope.spawn(move || local(&replica, x, y, loss))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a replica thread")).collect()
    });
    let (mut stats, mut priors) = (vec![], vec![]);
    for result in results {
        let (s, p) = result?;
        stats.push(s);
        priors.push(p);
    }

    let reduced = all_reduce(&stats, &device)?;
    let mut merged = stats[0].clone();
    merged.merge(&stats[1])?;
    let mut prior = priors[0].clone();
    prior.merge(&priors[1])?;
    let (whole, whole_prior) = local(&model, x, y, &loss)?;

    println!("per-class F1 of the global batch (macro smooth-F1 statistics):");
    println!("  all-reduced by tensors: {:?}", rounded(&reduced.f1()));
    println!("  merged by F1Stats::merge: {:?}", rounded(&merged.f1()));
    println!("  one replica, whole batch: {:?}", rounded(&whole.f1()));
    println!("prior counts: merged {:?}, whole batch {:?}", prior.counts(), whole_prior.counts());
    let close =
        |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0));
    assert!(close(reduced.true_positive(), whole.true_positive()) && close(reduced.mass(), whole.mass()));
    assert_eq!(reduced.weight(), whole.weight());
    assert_eq!(merged.weight(), whole.weight());
    assert_eq!(prior.counts(), whole_prior.counts());
    println!("the replicas' all-reduced statistics equal the whole batch's (within 1e-12)");
    Ok(())
}

fn rounded(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 1e4).round() / 1e4).collect()
}
