//! A burn MLP on digits-LT (ρ = 100), trained with cross-entropy and with the logit-adjusted
//! loss through `longtail-burn`, balanced accuracy on the balanced test split over 5 seeds.
//!
//! ```text
//! cargo run --release -p longtail-burn --example digits_lt
//! cargo run --release -p longtail-burn --example digits_lt -- --seeds 2 --epochs 50   # shorter
//! ```
//!
//! The data and the long-tail construction are the core demo's (`examples/long_tail/`): per class
//! (in a seeded order) 50 test and 20 validation images, then `100·ρ^(−rank/9)` training images,
//! the class at each rank drawn per seed. The model is burn's: `Linear(64, 128)`, `Relu`,
//! `Linear(128, 10)`, trained by burn's SGD (momentum 0.9, weight decay 5·10⁻⁴, learning rate 0.1
//! on a half cosine, batches of 32) in a plain loop on the Flex CPU backend with autodiff. Both
//! losses see the same initial weights and the same batches for a given seed.

use std::error::Error;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use longtail::SoftmaxLoss;
use longtail_burn::{LogitAdjustedLossConfig, LongtailLoss, SoftmaxLossConfig, Targets};

#[path = "../../../demo/src/data.rs"]
#[allow(dead_code)]
mod data;
#[path = "../../../demo/src/digits.rs"]
mod digits;
#[path = "../../../demo/src/rng.rs"]
#[allow(dead_code)]
mod rng;

use data::{Split, long_tail_counts, split_long_tail};
use rng::Rng;

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    activation: Relu,
    output: Linear,
}

impl Mlp {
    fn new(inputs: usize, classes: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(inputs, 128).init(device),
            activation: Relu::new(),
            output: LinearConfig::new(128, classes).init(device),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.output.forward(self.activation.forward(self.hidden.forward(x)))
    }
}

struct Options {
    seeds: u64,
    epochs: usize,
}

fn options() -> Result<Options, String> {
    let mut options = Options { seeds: 5, epochs: 200 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let parse = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--seeds" => options.seeds = parse(&value)? as u64,
            "--epochs" => options.epochs = parse(&value)?,
            _ => return Err(format!("unknown flag {flag}; usage: digits_lt [--seeds N] [--epochs N]")),
        }
    }
    if options.seeds == 0 || options.epochs == 0 {
        return Err("--seeds and --epochs must be at least 1".into());
    }
    Ok(options)
}

/// The rows `batch` of a split as tensors on `device`.
fn tensors(split: &Split, rows: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let x: Vec<f32> = rows.iter().flat_map(|&i| split.x.row(i).to_vec()).collect();
    let y: Vec<i64> = rows.iter().map(|&i| split.y[i] as i64).collect();
    (
        Tensor::from_data(TensorData::new(x, [rows.len(), split.x.ncols()]), device),
        Tensor::from_data(TensorData::new(y, [rows.len()]), device),
    )
}

/// Trains a fresh MLP (weights from `seed`) with `loss`; returns its test logits.
fn train(
    train: &Split,
    test: &Split,
    loss: &LongtailLoss<SoftmaxLoss<f32>>,
    epochs: usize,
    seed: u64,
) -> Result<Tensor<2>, longtail_burn::Error> {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let classes = digits::CLASSES;
    let mut model = Mlp::new(train.x.ncols(), classes, &device);
    let mut optimizer = SgdConfig::new()
        .with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0)))
        .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
        .init();
    let mut order: Vec<usize> = (0..train.y.len()).collect();
    let mut rng = Rng::stream(seed, 5);
    for epoch in 0..epochs {
        let lr = 0.1 * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos());
        rng.shuffle(&mut order);
        for batch in order.chunks(32) {
            let (x, y) = tensors(train, batch, &device);
            let value = loss.try_forward(model.forward(x), &Targets::labels(y))?;
            let grads = GradientsParams::from_grads(value.backward(), &model);
            model = optimizer.step(lr, model, grads);
        }
    }
    let all: Vec<usize> = (0..test.y.len()).collect();
    let (x, _) = tensors(test, &all, &device);
    Ok(model.forward(x).detach())
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = options()?;
    let (x, y) = digits::load();
    let counts = long_tail_counts(100, digits::CLASSES, 100.0);
    let start = std::time::Instant::now();
    let mut scores: [Vec<f64>; 2] = [vec![], vec![]];
    println!("digits-LT, rho = 100, train counts {counts:?}; burn MLP 64-128-10, {} epochs", options.epochs);
    println!("seed  cross-entropy  logit-adjusted");
    for seed in 0..options.seeds {
        let data = split_long_tail(&x, &y, digits::CLASSES, &counts, (50, 20), seed)?;
        let losses = [
            SoftmaxLossConfig::new().init::<f32>()?,
            LogitAdjustedLossConfig::from_prior(&data.prior).init::<f32>()?,
        ];
        let device = Device::flex();
        let test_labels = Tensor::<1, Int>::from_data(
            TensorData::new(data.test.y.iter().map(|&c| c as i64).collect::<Vec<_>>(), [data.test.y.len()]),
            &device,
        );
        let mut row = [0.0; 2];
        for (i, loss) in losses.iter().enumerate() {
            let logits = train(&data.train, &data.test, loss, options.epochs, seed)?;
            row[i] = longtail_burn::balanced_accuracy::<f32>(&logits, &test_labels, None)?;
            scores[i].push(row[i]);
        }
        println!("{seed:>4}  {:>13.1}  {:>14.1}", 100.0 * row[0], 100.0 * row[1]);
    }
    let stats = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64;
        (100.0 * mean, 100.0 * var.sqrt())
    };
    let ((ce, ce_sd), (la, la_sd)) = (stats(&scores[0]), stats(&scores[1]));
    let wins = scores[0].iter().zip(&scores[1]).filter(|(c, l)| l > c).count();
    println!("mean  {ce:>6.1} ± {ce_sd:<4.1}  {la:>7.1} ± {la_sd:<4.1}");
    println!(
        "logit-adjusted - cross-entropy: {:+.1} points of balanced accuracy ({wins}/{} seeds higher); {:.1} s",
        la - ce,
        scores[0].len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
