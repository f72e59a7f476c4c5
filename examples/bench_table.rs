//! Prints ns per logit element of every softmax-family loss (loss + gradient, mean reduction)
//! and its ratio to the copy floor (read the logits once, write the gradient once), measured in
//! the same run, for f32 and f64 at the benchmark shapes.
//!
//! ```text
//! cargo run --release --example bench_table                  # median of 31 runs per cell
//! cargo run --release --example bench_table -- --quick       # median of 7, for a quick look
//! RAYON_NUM_THREADS=1 cargo run --release --example bench_table   # one thread
//! cargo run --release --example bench_table -- --only f32/1024x1000/cross_entropy --calls 10
//! ```
//!
//! `--only` keeps the cells whose `type/shape/loss` name contains the given text. `--calls N`
//! makes each kept cell call its loss exactly `N` times, untimed: a deterministic driver for
//! `valgrind --tool=callgrind` (instructions per call = the difference of two `N` over their
//! difference).

use std::hint::black_box;
use std::time::{Duration, Instant};

use longtail::{Float, SoftmaxLoss, Targets};
use ndarray::Array2;

const SHAPES: [(usize, usize); 4] = [(64, 10), (1024, 1000), (256, 32000), (32, 262_144)];

/// Each timed sample repeats the call until it lasts at least this long.
const MIN_SAMPLE: Duration = Duration::from_millis(2);

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

/// Deterministic logits in about [-4, 4], labels and uniform probability targets.
fn batch<F: Float>(rows: usize, classes: usize) -> (Array2<F>, Vec<usize>, Array2<F>) {
    let logits = Array2::from_shape_fn((rows, classes), |(i, k)| {
        F::from_f64(((i * 7919 + k * 104_729) % 8192) as f64 / 1024.0 - 4.0)
    });
    let labels = (0..rows).map(|i| (i * 31) % classes).collect();
    let probs = Array2::from_elem((rows, classes), F::from_f64(1.0 / classes as f64));
    (logits, labels, probs)
}

/// The losses of the table, by name; `None` for the probability targets of soft-target CE.
fn losses<F: Float>(classes: usize) -> Vec<(&'static str, SoftmaxLoss<F>, bool)> {
    let prior: Vec<F> = (0..classes).map(|k| F::from_f64(1000.0 / (1.0 + k as f64))).collect();
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

/// One table per float type: a row per loss, a column per shape.
fn table<F: Float>(type_name: &str, opts: &Options) {
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
        let (logits, labels, probs) = batch::<F>(b, k);
        let mut grad = Array2::<F>::zeros((b, k));
        // With `--calls`, the floor runs only when asked for, so that a cell's count is its own.
        let floor_kept = keep(&format!("{shape}/copy_floor"));
        let floor = if opts.calls.is_none() || floor_kept {
            median_ns(opts.reps, opts.calls, || grad.assign(black_box(&logits))) / elems
        } else {
            f64::NAN
        };
        if floor_kept {
            put("copy floor", col, format!("{floor:.2}"));
        }
        let cell = |ns: f64| format!("{:.2} ({:.1}×)", ns / elems, ns / elems / floor);
        for (name, loss, soft) in losses::<F>(k) {
            if !keep(&format!("{shape}/{name}")) {
                continue;
            }
            let targets = || if soft { Targets::probs(&probs) } else { Targets::labels(&labels) };
            let ns = median_ns(opts.reps, opts.calls, || {
                black_box(loss.loss_and_grad_into(black_box(&logits), targets(), &mut grad).unwrap());
            });
            put(name, col, cell(ns));
        }
        if keep(&format!("{shape}/allocating_cross_entropy")) {
            let ce = SoftmaxLoss::<F>::cross_entropy();
            let ns = median_ns(opts.reps, opts.calls, || {
                black_box(ce.loss_and_grad(black_box(&logits), &labels).unwrap());
            });
            put("cross_entropy (allocating)", col, cell(ns));
        }
    }
    if rows.is_empty() {
        return;
    }
    let header: Vec<String> = SHAPES.iter().map(|(b, k)| format!("{b}×{k}")).collect();
    println!("| {type_name}, ns/elem (× copy floor) | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(SHAPES.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

fn main() {
    let opts = options();
    table::<f32>("f32", &opts);
    table::<f64>("f64", &opts);
}
