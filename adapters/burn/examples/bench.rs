//! Cross-entropy forward + backward on burn's Flex CPU backend, f32, beside burn's own
//! `CrossEntropyLoss`: ns per logit element of the loss through this adapter, of burn's loss, of
//! the bare core call on the same data (the adapter's overhead is the difference), and of the copy
//! floor (read the logits once, write the gradient once), in one run.
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo run --release -p longtail-burn --example bench            # one thread
//! RAYON_NUM_THREADS=1 cargo run --release -p longtail-burn --example bench -- --quick # fewer samples
//! ```
//!
//! Run from the workspace root, it also writes burn's and the adapter's figures to
//! `target/peers/burn.tsv`, where the core crate's `bench_table` prints them beside its own.
//!
//! Each cell is the median of its timed samples; a sample repeats the call until it lasts at least
//! 2 ms. The adapter and burn rows time the same thing: a tracked leaf of the logits, the loss,
//! `backward()`, and the gradient taken out of the returned gradients. The core row is
//! `SoftmaxLoss::loss_and_grad_into` on an ndarray batch into a reused buffer, "core, fresh
//! gradient" the same into a buffer allocated per call (as the adapter must: the gradient it
//! hands to burn is a new tensor). The adapter overhead is the adapter's time minus the core
//! call's. "burn graph floor" is `sum()` and `backward()` of the same tracked leaf: what burn's
//! autodiff costs around any loss.

use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{DType, Device, Int, Tensor, TensorData};
use longtail::ndarray::Array2;
use longtail::{Loss, SoftmaxLoss};
use longtail_burn::{LongtailLoss, Targets};

const SHAPES: [(usize, usize); 4] = [(64, 10), (1024, 1000), (256, 32000), (32, 262_144)];
const MIN_SAMPLE: Duration = Duration::from_millis(2);

/// Median ns per element of `f` over `reps` samples.
fn time(elements: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (mut calls, start) = (0u32, Instant::now());
        while start.elapsed() < MIN_SAMPLE || calls == 0 {
            f();
            calls += 1;
        }
        samples.push(start.elapsed().as_nanos() as f64 / f64::from(calls) / elements as f64);
    }
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let reps = if std::env::args().any(|a| a == "--quick") { 5 } else { 15 };
    let device = Device::flex().autodiff();
    println!("f32 cross-entropy, forward + backward, Flex backend, median ns per logit element");
    println!(
        "| shape | longtail-burn | burn CrossEntropyLoss | core call | core, fresh gradient | adapter overhead | burn graph floor | copy floor |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let mut peers = String::from("# burn 0.22, Flex backend, RAYON_NUM_THREADS as set\n");
    for (rows, classes) in SHAPES {
        let n = rows * classes;
        let z = Array2::from_shape_fn((rows, classes), |(i, k)| ((i * 31 + k * 17) % 97) as f32 * 0.05 - 2.4);
        let labels: Vec<usize> = (0..rows).map(|i| (i * 7919) % classes).collect();
        let data = TensorData::new(z.iter().copied().collect::<Vec<f32>>(), [rows, classes]);
        let logits = Tensor::<2>::from_data(data, (&device, DType::F32));
        let label_data = TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [rows]);
        let label_tensor = Tensor::<1, Int>::from_data(label_data, &device);
        let targets = Targets::labels(label_tensor.clone());

        let ours = LongtailLoss::new(SoftmaxLoss::<f32>::cross_entropy());
        let adapter = time(n, reps, || {
            let leaf = logits.clone().require_grad();
            let value = ours.try_forward(leaf.clone(), &targets).expect("a valid batch");
            black_box(leaf.grad(&value.backward()));
        });
        let theirs = CrossEntropyLossConfig::new().init(&device);
        let burn_ce = time(n, reps, || {
            let leaf = logits.clone().require_grad();
            let value = theirs.forward(leaf.clone(), label_tensor.clone());
            black_box(leaf.grad(&value.backward()));
        });
        let core = SoftmaxLoss::<f32>::cross_entropy();
        let mut grad = Array2::zeros((rows, classes));
        let bare = time(n, reps, || {
            black_box(core.loss_and_grad_into(&z, &labels, &mut grad).expect("a valid batch"));
        });
        let fresh = time(n, reps, || {
            let mut grad = Array2::zeros((rows, classes));
            black_box(core.loss_and_grad_into(&z, &labels, &mut grad).expect("a valid batch"));
            black_box(grad);
        });
        let graph = time(n, reps, || {
            let leaf = logits.clone().require_grad();
            let value = leaf.clone().sum();
            black_box(leaf.grad(&value.backward()));
        });
        let floor = time(n, reps, || {
            grad.as_slice_mut()
                .expect("standard layout")
                .copy_from_slice(black_box(z.as_slice().expect("standard")));
            black_box(&grad);
        });
        println!(
            "| {rows}×{classes} | {adapter:.3} | {burn_ce:.3} | {bare:.3} | {fresh:.3} | {:+.3} | {graph:.3} | {floor:.3} |",
            adapter - bare
        );
        for (peer, ns) in [("burn 0.22 (Flex)", burn_ce), ("longtail-burn (Flex)", adapter)] {
            peers.push_str(&format!("{peer}\tf32\t{rows}\t{classes}\tcross_entropy\t{ns:.4}\n"));
        }
    }
    write_peers("burn", &peers);
}

/// Writes `lines` to `target/peers/<name>.tsv`, the peer file `bench_table` reads.
fn write_peers(name: &str, lines: &str) {
    let path = format!("target/peers/{name}.tsv");
    match std::fs::create_dir_all("target/peers").and_then(|()| std::fs::write(&path, lines)) {
        Ok(()) => println!("wrote {path}"),
        Err(e) => eprintln!("could not write {path}: {e}"),
    }
}
