//! Prints ns per logit element of every loss of the crate (loss + gradient, mean reduction) and
//! its ratio to the copy floor (read the logits once, write the gradient once), measured in the
//! same run, for f32 and f64 at the benchmark shapes: one table of the softmax family, one of the
//! other losses. The one-vs-rest and multi-label losses (sigmoid, binary smooth F1, ZLPR, ASL,
//! EQL v2, multilabel Tversky) take multi-hot targets with a few positives per row, the others
//! labels; every cell has `B·K` elements. The pairwise margin loss stores `K × K` margins, so its
//! cells past 1000 classes stay empty. A third table per float type times every loss on tall batches
//! of short rows (`K` from 2 to 16).
//!
//! The peers measured by `benches/peers.py` (JAX and PyTorch, one core) are printed under the
//! crate's rows, same batches and same format, from the files it writes to `target/peers/`
//! (`--peers DIR` to read another directory); so is any other file of that form there, such as
//! the ones the adapters' benches write for burn and candle.
//!
//! ```text
//! cargo run --release --example bench_table                  # median of 31 runs per cell (≥ 7 within ~1 s)
//! cargo run --release --example bench_table -- --quick       # median of 7, for a quick look
//! RAYON_NUM_THREADS=1 cargo run --release --example bench_table   # one thread
//! cargo run --release --example bench_table -- --only f32/1024x1000/cross_entropy --calls 10
//! python3 benches/peers.py && RAYON_NUM_THREADS=1 cargo run --release --example bench_table
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
use common::{Batch, SHAPES, SHORT_SHAPES, other_losses, softmax_losses};

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
    peers: Vec<Peer>,
}

fn options() -> Options {
    let mut opts = Options { reps: 31, only: None, calls: None, peers: Vec::new() };
    let mut peers_dir = String::from("target/peers");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => opts.reps = 7,
            "--reps" => opts.reps = args.next().and_then(|n| n.parse().ok()).expect("--reps N"),
            "--only" => opts.only = Some(args.next().expect("--only TEXT")),
            "--calls" => opts.calls = Some(args.next().and_then(|n| n.parse().ok()).expect("--calls N")),
            "--peers" => peers_dir = args.next().expect("--peers DIR"),
            other => panic!("unknown argument {other}; see the example's docs"),
        }
    }
    opts.peers = read_peers(&peers_dir);
    opts
}

/// A peer's measurement of one cell: `peer`, float type, `B`, `K`, loss name, ns per element.
struct Peer {
    peer: String,
    type_name: String,
    shape: (usize, usize),
    loss: String,
    ns_per_elem: f64,
}

/// Every `*.tsv` of `dir` (tab-separated, `#` comments), in file-name order; none if `dir` is
/// absent.
fn read_peers(dir: &str) -> Vec<Peer> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "tsv"));
    files.sort();
    let mut peers = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
            let f: Vec<&str> = line.split('\t').collect();
            let parsed = (f.len() == 6)
                .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?, f[5].parse().ok()?)))
                .flatten();
            let Some((b, k, ns_per_elem)) = parsed else {
                panic!("{}: not `peer, type, B, K, loss, ns/elem`: {line:?}", path.display())
            };
            let (peer, type_name, loss) = (f[0].into(), f[1].into(), f[4].into());
            peers.push(Peer { peer, type_name, shape: (b, k), loss, ns_per_elem });
        }
    }
    peers
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

/// Every loss.
fn all_rows<F: Float>(classes: usize) -> Vec<Row<F>> {
    let mut rows = softmax_rows(classes);
    rows.extend(other_rows(classes));
    rows
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

/// One table: a row per loss of `rows`, a column per shape of `shapes`, then the peers' rows for
/// the same losses and shapes.
fn table<F: Float>(
    type_name: &str,
    title: &str,
    shapes: &[(usize, usize)],
    rows_for: fn(usize) -> Vec<Row<F>>,
    opts: &Options,
) {
    let keep = |cell: &str| opts.only.as_deref().is_none_or(|only| cell.contains(only));
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let width = shapes.len();
    let put = |rows: &mut Vec<(String, Vec<String>)>, name: &str, col: usize, text: String| {
        if !rows.iter().any(|(n, _)| n == name) {
            rows.push((name.to_string(), vec![String::new(); width]));
        }
        let row = rows.iter_mut().find(|(n, _)| n == name).unwrap();
        row.1[col] = text;
    };
    // The copy floor of each shape measured (`None`: a shape `--only` leaves out).
    let mut floors = vec![None; shapes.len()];
    for (col, &(b, k)) in shapes.iter().enumerate() {
        let shape = format!("{type_name}/{b}x{k}");
        if let Some(only) = &opts.only
            && !(shape.contains(only.as_str()) || only.starts_with(&format!("{shape}/")))
        {
            continue;
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
            put(&mut rows, "copy floor, 1 thread", col, format!("{:.2}", serial / elems));
            put(&mut rows, &format!("copy floor, {threads} threads"), col, format!("{floor:.2}"));
        } else if floor_kept {
            put(&mut rows, "copy floor", col, format!("{floor:.2}"));
        }
        floors[col] = Some(floor);
        let cell = |ns: f64| format!("{:.2} ({:.1}×)", ns / elems, ns / elems / floor);
        for (name, call) in rows_for(k) {
            if !keep(&format!("{shape}/{name}")) {
                continue;
            }
            let ns = median_ns(opts.reps, opts.calls, || {
                black_box(call(black_box(&batch), &mut grad));
            });
            put(&mut rows, name, col, cell(ns));
        }
    }
    if rows.is_empty() {
        return;
    }
    let ours: Vec<String> = rows.iter().map(|(name, _)| name.clone()).collect();
    for p in opts.peers.iter().filter(|p| p.type_name == type_name && ours.contains(&p.loss)) {
        let Some(col) = shapes.iter().position(|&s| s == p.shape) else { continue };
        let Some(floor) = floors[col] else { continue };
        // Without a floor (`--calls` without `copy_floor`), the time alone.
        let text = if floor.is_nan() {
            format!("{:.2}", p.ns_per_elem)
        } else {
            format!("{:.2} ({:.1}×)", p.ns_per_elem, p.ns_per_elem / floor)
        };
        put(&mut rows, &format!("{}: {}", p.peer, p.loss), col, text);
    }
    let header: Vec<String> = shapes.iter().map(|(b, k)| format!("{b}×{k}")).collect();
    println!("| {type_name} {title}, ns/elem (× copy floor) | {} |", header.join(" | "));
    println!("|---|{}", "---:|".repeat(shapes.len()));
    for (name, cells) in rows {
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!();
}

fn main() {
    let opts = options();
    table::<f32>("f32", "softmax family", &SHAPES, softmax_rows, &opts);
    table::<f64>("f64", "softmax family", &SHAPES, softmax_rows, &opts);
    table::<f32>("f32", "other losses", &SHAPES, other_rows, &opts);
    table::<f64>("f64", "other losses", &SHAPES, other_rows, &opts);
    table::<f32>("f32", "short rows", &SHORT_SHAPES, all_rows, &opts);
    table::<f64>("f64", "short rows", &SHORT_SHAPES, all_rows, &opts);
}
