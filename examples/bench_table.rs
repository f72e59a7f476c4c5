//! Prints ns per logit element of every loss of the crate (loss + gradient, mean reduction) and
//! its ratio to the copy floor (read the logits once, write the gradient once), measured in the
//! same run, for f32 and f64 at the benchmark shapes: one table of the softmax family, one of the
//! other losses. The binary losses (sigmoid, binary smooth F1) see the `B × K` logits as one
//! `[B·K]` vector with the multi-hot targets flattened, so every cell has `B·K` elements; ZLPR
//! takes multi-hot targets with a few positives per row, the others labels. The pairwise margin
//! loss stores `K × K` margins, so its cells past 1000 classes stay empty.
//!
//! ```text
//! cargo run --release --example bench_table                  # median of 31 runs per cell (≥ 7 within ~1 s)
//! cargo run --release --example bench_table -- --quick       # median of 7, for a quick look
//! RAYON_NUM_THREADS=1 cargo run --release --example bench_table   # one thread
//! cargo run --release --example bench_table -- --only f32/1024x1000/cross_entropy --calls 10
//! ```
//!
//! The copy floor runs on as many threads as rayon's pool has (`RAYON_NUM_THREADS`), in one
//! contiguous block per thread, from 2^18 values on (where the losses go parallel too), so that
//! the ratios of a many-thread run compare with a many-thread copy; a many-thread run also prints
//! the one-thread copy.
//!
//! `--only` keeps the cells whose `type/shape/loss` name contains the given text (loss names as
//! in the tables, e.g. `sigmoid_bce`, `zlpr`; `copy_floor`). `--calls N` makes each kept cell call
//! its loss exactly `N` times, untimed: a deterministic driver for `valgrind --tool=callgrind`
//! (instructions per call = the difference of two `N` over their difference).

use std::hint::black_box;
use std::time::{Duration, Instant};

use longtail::{Float, Loss, SoftmaxLoss};
use ndarray::Array2;
use rayon::prelude::*;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{Batch, SHAPES, other_losses, softmax_losses};

/// Each timed sample repeats the call until it lasts at least this long.
const MIN_SAMPLE: Duration = Duration::from_millis(2);

/// A cell whose samples would take longer than this in all gets fewer of them, but at least
/// [`MIN_REPS`]: the slow binary losses at the large shapes (~0.2 s a call) keep the default run
/// near a minute.
const CELL_BUDGET: Duration = Duration::from_secs(1);
const MIN_REPS: usize = 7;

struct Options {
    reps: usize,
    only: Option<String>,
    calls: Option<u32>,
}

fn options() -> Options {
    let mut opts = Options { reps: 31, only: None, calls: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.reps = 7,
            "--reps" => opts.reps = args.next().and_then(|n| n.parse().ok()).expect("--reps N"),
            "--only" => opts.only = Some(args.next().expect("--only TEXT")),
            "--calls" => opts.calls = Some(args.next().and_then(|n| n.parse().ok()).expect("--calls N")),
            other => panic!("unknown argument {other}; see the example's docs"),
        }
    }
    opts
}

/// A row of a table: a loss's name and one call of it on a batch, loss + gradient into `grad`.
type Row<F> = (&'static str, Box<dyn Fn(&Batch<F>, &mut Array2<F>) -> F>);

/// The softmax family, and cross-entropy through the allocating call.
fn softmax_rows<F: Float>(classes: usize) -> Vec<Row<F>> {
    let mut rows: Vec<Row<F>> = softmax_losses::<F>(classes)
        .into_iter()
        .map(|(name, loss, soft)| -> Row<F> {
            (
                name,
                Box::new(move |b, grad| loss.loss_and_grad_into(&b.logits, b.targets(soft), grad).unwrap()),
            )
        })
        .collect();
    let ce = SoftmaxLoss::cross_entropy();
    rows.push((
        "allocating_cross_entropy",
        Box::new(move |b, _| ce.loss_and_grad(&b.logits, &b.labels).unwrap().0),
    ));
    rows
}

/// The other losses.
fn other_rows<F: Float>(classes: usize) -> Vec<Row<F>> {
    other_losses::<F>(classes)
        .into_iter()
        .map(|(name, loss)| -> Row<F> { (name, Box::new(move |b, grad| loss.loss_and_grad_into(b, grad))) })
        .collect()
}

/// The median over `reps` samples of the time per call of `f`, in ns; with `calls`, only calls
/// `f` that many times.
fn median_ns(reps: usize, calls: Option<u32>, mut f: impl FnMut()) -> f64 {
    if let Some(calls) = calls {
        (0..calls).for_each(|_| f());
        return f64::NAN;
    }
    f();
    let start = Instant::now();
    let mut calls = 0_u32;
    while start.elapsed() < MIN_SAMPLE {
        f();
        calls += 1;
    }
    let affordable = (CELL_BUDGET.as_secs_f64() / start.elapsed().as_secs_f64()) as usize;
    let reps = reps.min(affordable.max(MIN_REPS));
    let mut samples: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(calls)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `dst = src` on rayon's threads, one contiguous block each, from 2^18 values on (the crate's
/// own threshold; below it, and on one thread, a plain copy).
fn copy<F: Float>(src: &Array2<F>, dst: &mut Array2<F>) {
    let (src, dst) = (src.as_slice().unwrap(), dst.as_slice_mut().unwrap());
    let threads = if src.len() < 1 << 18 { 1 } else { rayon::current_num_threads() };
    let block = src.len().div_ceil(threads);
    dst.par_chunks_mut(block).zip(src.par_chunks(block)).for_each(|(d, s)| d.copy_from_slice(s));
}

/// One table: a row per loss of `rows`, a column per shape.
fn table<F: Float>(type_name: &str, title: &str, rows_for: fn(usize) -> Vec<Row<F>>, opts: &Options) {
    let keep = |cell: &str| opts.only.as_deref().is_none_or(|only| cell.contains(only));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut put = |name: &str, col: usize, text: String| {
        if !rows.iter().any(|(n, _)| n == name) {
            rows.push((name.to_string(), vec![String::new(); SHAPES.len()]));
        }
        let row = rows.iter_mut().find(|(n, _)| n == name).unwrap();
        row.1[col] = text;
    };
    for (col, &(b, k)) in SHAPES.iter().enumerate() {
        let shape = format!("{type_name}/{b}x{k}");
        if let Some(only) = &opts.only {
            if !(shape.contains(only.as_str()) || only.starts_with(&format!("{shape}/"))) {
                continue;
            }
        }
        let elems = (b * k) as f64;
        let batch = Batch::<F>::new(b, k);
        let mut grad = Array2::<F>::zeros((b, k));
        // With `--calls`, the floor runs only when asked for, so that a cell's count is its own.
        let floor_kept = keep(&format!("{shape}/copy_floor"));
        let floor = if opts.calls.is_none() || floor_kept {
            median_ns(opts.reps, opts.calls, || copy(black_box(&batch.logits), &mut grad)) / elems
        } else {
            f64::NAN
        };
        let threads = rayon::current_num_threads();
        if floor_kept && threads > 1 {
            let serial = median_ns(opts.reps, opts.calls, || grad.assign(black_box(&batch.logits)));
            put("copy floor, 1 thread", col, format!("{:.2}", serial / elems));
            put(&format!("copy floor, {threads} threads"), col, format!("{floor:.2}"));
        } else if floor_kept {
            put("copy floor", col, format!("{floor:.2}"));
        }
        let cell = |ns: f64| format!("{:.2} ({:.1}×)", ns / elems, ns / elems / floor);
        for (name, call) in rows_for(k) {
            if !keep(&format!("{shape}/{name}")) {
                continue;
            }
            let ns = median_ns(opts.reps, opts.calls, || {
                black_box(call(black_box(&batch), &mut grad));
            });
            put(name, col, cell(ns));
        }
    }
    if rows.is_empty() {
        return;
    }
    let header: Vec<String> = SHAPES.iter().map(|(b, k)| format!("{b}×{k}")).collect();
    println!("| {type_name} {title}, ns/elem (× copy floor) | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(SHAPES.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

fn main() {
    let opts = options();
    table::<f32>("f32", "softmax family", softmax_rows, &opts);
    table::<f64>("f64", "softmax family", softmax_rows, &opts);
    table::<f32>("f32", "other losses", other_rows, &opts);
    table::<f64>("f64", "other losses", other_rows, &opts);
}
