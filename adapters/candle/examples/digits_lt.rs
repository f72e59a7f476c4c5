//! An MLP trained in candle on long-tailed digits (ρ = 100), with cross-entropy and with the
//! logit-adjusted loss as candle ops, scored by balanced accuracy on a balanced test split.
//!
//! ```text
//! cargo run --release -p longtail-candle --example digits_lt [-- --seeds N --epochs N]
//! ```
//!
//! candle-nn's `VarMap`, `Linear` layers and `AdamW` optimizer; the losses are
//! `longtail::SoftmaxLoss` through [`longtail_candle::CandleLoss`], whose backward pass is the
//! crate's analytic gradient. The data set and its long-tailed split are the crate's demo's
//! (`demo/`): per seed 50 test and 20 validation images a class are held out, and
//! the class at place `k` of the tail keeps `100·ρ^(−k/9)` training images (100, 60, …, 1).
//! "CE + post-hoc" is the cross-entropy model's logits adjusted by `−log π` at test time.

use std::time::Instant;

use candle_core::{DType, Device, Module, Result, Tensor, Var};
use candle_nn::{AdamW, Linear, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use longtail::{Prior, SoftmaxLoss};
use longtail_candle::{CandleLoss, balanced_accuracy, confusion_matrix};

#[allow(dead_code)]
#[path = "../../../demo/src/data.rs"]
mod data;
#[path = "../../../demo/src/digits.rs"]
mod digits;
#[path = "../../../demo/src/rng.rs"]
mod rng;

use data::{Split, long_tail_counts, split_long_tail};
use rng::Rng;

const HIDDEN: usize = 128;
const BATCH: usize = 32;

struct Options {
    seeds: u64,
    epochs: usize,
}

fn options() -> std::result::Result<Options, String> {
    let mut options = Options { seeds: 5, epochs: 100 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number: usize = value.parse().map_err(|e| format!("{flag} {value}: {e}"))?;
        match flag.as_str() {
            "--seeds" => options.seeds = number as u64,
            "--epochs" => options.epochs = number,
            _ => return Err(format!("unknown option {flag}; usage: digits_lt [--seeds N] [--epochs N]")),
        }
    }
    if options.seeds == 0 || options.epochs == 0 {
        return Err("--seeds and --epochs must be at least 1".into());
    }
    Ok(options)
}

/// `relu(x·W₁ᵀ + b₁)·W₂ᵀ + b₂`.
struct Mlp {
    hidden: Linear,
    head: Linear,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head.forward(&self.hidden.forward(x)?.relu()?)
    }
}

/// A seeded He-normal initialisation, put into the `VarMap` before the layers take their
/// variables from it (candle's CPU generator cannot be seeded).
fn mlp(varmap: &VarMap, inputs: usize, classes: usize, seed: u64, dev: &Device) -> Result<Mlp> {
    let mut rng = Rng::stream(seed, 4);
    let mut gaussian = |rows: usize, cols: usize, variance: f64| -> Result<Var> {
        let values: Vec<f32> = (0..rows * cols).map(|_| (variance.sqrt() * rng.normal()) as f32).collect();
        Var::from_tensor(&Tensor::from_vec(values, (rows, cols), dev)?)
    };
    {
        let mut vars = varmap.data().lock().expect("the VarMap lock is not poisoned");
        vars.insert("hidden.weight".into(), gaussian(HIDDEN, inputs, 2.0 / inputs as f64)?);
        vars.insert("hidden.bias".into(), Var::zeros(HIDDEN, DType::F32, dev)?);
        vars.insert("head.weight".into(), gaussian(classes, HIDDEN, 1.0 / HIDDEN as f64)?);
        vars.insert("head.bias".into(), Var::zeros(classes, DType::F32, dev)?);
    }
    let vb = VarBuilder::from_varmap(varmap, DType::F32, dev);
    Ok(Mlp {
        hidden: candle_nn::linear(inputs, HIDDEN, vb.pp("hidden"))?,
        head: candle_nn::linear(HIDDEN, classes, vb.pp("head"))?,
    })
}

fn tensors(split: &Split, dev: &Device) -> Result<(Tensor, Tensor)> {
    let x = Tensor::from_slice(split.x.as_slice().expect("a standard-layout array"), split.x.dim(), dev)?;
    let y: Vec<u32> = split.y.iter().map(|&label| label as u32).collect();
    Ok((x, Tensor::new(y, dev)?))
}

/// AdamW on mini-batches, the learning rate decayed to 0 along a half cosine; the batches are
/// reshuffled every epoch (seeded: both losses see the same batches).
fn train(loss: &SoftmaxLoss<f32>, (x, y): (&Tensor, &Tensor), epochs: usize, seed: u64) -> Result<Mlp> {
    let dev = x.device();
    let varmap = VarMap::new();
    let model = mlp(&varmap, x.dim(1)?, digits::CLASSES, seed, dev)?;
    let peak = 3e-3;
    let mut optimizer =
        AdamW::new(varmap.all_vars(), ParamsAdamW { lr: peak, weight_decay: 1e-4, ..Default::default() })?;
    let mut order: Vec<u32> = (0..x.dim(0)? as u32).collect();
    let mut rng = Rng::stream(seed, 5);
    for epoch in 0..epochs {
        optimizer.set_learning_rate(
            peak * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos()),
        );
        rng.shuffle(&mut order);
        for batch in order.chunks(BATCH) {
            let rows = Tensor::new(batch, dev)?;
            let logits = model.forward(&x.index_select(&rows, 0)?)?;
            let value = loss.forward(&logits, &y.index_select(&rows, 0)?)?;
            optimizer.backward_step(&value)?;
        }
    }
    Ok(model)
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let options = options()?;
    let dev = Device::Cpu;
    let started = Instant::now();
    let (x, y) = digits::load();
    let counts = long_tail_counts(100, digits::CLASSES, 100.0);
    println!(
        "digits-LT (ρ = 100, {} training images), MLP {HIDDEN} ReLU, AdamW, {} epochs, batch {BATCH}; \
         balanced test accuracy (%)\n",
        counts.iter().sum::<usize>(),
        options.epochs
    );
    println!("| seed | CE | CE + post-hoc | logit-adjusted | Δ LA − CE |");
    println!("|---:|---:|---:|---:|---:|");
    let (mut ce, mut post_hoc, mut la) = (vec![], vec![], vec![]);
    for seed in 0..options.seeds {
        let data = split_long_tail(&x, &y, digits::CLASSES, &counts, (50, 20), seed)?;
        let train_set = tensors(&data.train, &dev)?;
        let (test_x, test_y) = tensors(&data.test, &dev)?;
        let prior: &Prior = &data.prior;
        let cross_entropy = SoftmaxLoss::cross_entropy();
        let logit_adjusted = SoftmaxLoss::<f32>::logit_adjusted(prior)?;

        let ce_logits =
            train(&cross_entropy, (&train_set.0, &train_set.1), options.epochs, seed)?.forward(&test_x)?;
        let la_logits =
            train(&logit_adjusted, (&train_set.0, &train_set.1), options.epochs, seed)?.forward(&test_x)?;
        ce.push(100.0 * balanced_accuracy(&ce_logits, &test_y)?);
        post_hoc.push(100.0 * confusion_matrix(&ce_logits, &test_y, Some((prior, 1.0)))?.balanced_accuracy());
        la.push(100.0 * balanced_accuracy(&la_logits, &test_y)?);
        let i = ce.len() - 1;
        println!("| {seed} | {:.1} | {:.1} | {:.1} | {:+.1} |", ce[i], post_hoc[i], la[i], la[i] - ce[i]);
    }
    let gains: Vec<f64> = la.iter().zip(&ce).map(|(a, b)| a - b).collect();
    let [(c, cs), (p, ps), (l, ls), (g, gs)] = [&ce, &post_hoc, &la, &gains].map(|v| mean_sd(v));
    println!("| mean ± sd | {c:.1} ± {cs:.1} | {p:.1} ± {ps:.1} | {l:.1} ± {ls:.1} | {g:+.1} ± {gs:.1} |");
    println!("\n{:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
