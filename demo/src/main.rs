//! What each loss buys on long-tailed data: the same model trained with every loss of the crate,
//! scored on balanced test sets of real (UCI digits) and synthetic (Gaussian mixture) data.
//!
//! ```sh
//! cargo run --release -p longtail-demo                    # ρ = 100, softmax regression, 5 seeds
//! cargo run --release -p longtail-demo -- --imbalance 10 --model mlp --seeds 3 --epochs 50
//! ```
//!
//! Each seed draws a new long-tailed training set (class `k`-th in the tail keeps
//! `n_max·ρ^(−k/(K−1))` samples, which class is `k`-th also drawn), balanced validation and test
//! sets, and one initial model shared by every loss. Prints one table per data set (mean ± std over
//! seeds) and writes an SVG of per-class recall against class frequency.

mod data;
mod digits;
mod experiment;
mod gaussian;
mod methods;
mod model;
mod plot;
mod report;
mod rng;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use longtail::metrics::ShotSplit;
use ndarray::Array2;

use crate::data::{Dataset, long_tail_counts, split_long_tail};
use crate::experiment::Schedule;
use crate::model::{Architecture, Sgd};
use crate::plot::{Line, Marker, Panel, Style};
use crate::report::Row;
use plotters::style::RGBColor;

const USAGE: &str = "\
usage: longtail-demo [--seed N] [--seeds N] [--imbalance RHO] [--epochs N] [--model linear|mlp] [--out DIR]

  --seed N          first seed (default 0); seeds N, N+1, ... are run
  --seeds N         number of seeds (default 5)
  --imbalance RHO   ratio of the largest to the smallest training class (default 100)
  --epochs N        training epochs per model (default 200)
  --model M         linear: softmax regression (default); mlp: one hidden layer of 128 ReLU units
  --out DIR         where the SVG and the tables go (default: long_tail in $CARGO_TARGET_DIR,
                    or in the workspace's target directory)";

struct Options {
    seed: u64,
    seeds: u64,
    imbalance: f64,
    epochs: usize,
    architecture: Architecture,
    out: PathBuf,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        seed: 0,
        seeds: 5,
        imbalance: 100.0,
        epochs: 200,
        architecture: Architecture::Linear,
        out: default_out(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        if !["--seed", "--seeds", "--imbalance", "--epochs", "--model", "--out"].contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}"));
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--seed" => options.seed = value.parse().map_err(|e| bad(&e))?,
            "--seeds" => options.seeds = value.parse().map_err(|e| bad(&e))?,
            "--imbalance" => options.imbalance = value.parse().map_err(|e| bad(&e))?,
            "--epochs" => options.epochs = value.parse().map_err(|e| bad(&e))?,
            "--model" => {
                options.architecture = match value.as_str() {
                    "linear" => Architecture::Linear,
                    "mlp" => Architecture::Mlp(128),
                    _ => return Err(bad(&"expected linear or mlp")),
                }
            }
            _ => options.out = PathBuf::from(value),
        }
    }
    if options.seeds == 0 || options.epochs == 0 {
        return Err("--seeds and --epochs must be at least 1".into());
    }
    if !(options.imbalance >= 1.0 && options.imbalance.is_finite()) {
        return Err(format!("--imbalance {}: expected a ratio ≥ 1", options.imbalance));
    }
    Ok(options)
}

/// `long_tail` under the target directory: `$CARGO_TARGET_DIR` when set (relative to the working
/// directory, as Cargo reads it), else the workspace's `target`.
fn default_out() -> PathBuf {
    out_under(std::env::var_os("CARGO_TARGET_DIR"))
}

fn out_under(target_dir: Option<std::ffi::OsString>) -> PathBuf {
    let target = match target_dir {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        // The demo's manifest sits one directory below the workspace root.
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).join("target"),
    };
    target.join("long_tail")
}

/// The methods the picture shows (the tables have them all): the row, its legend entry and its
/// style. Tableau 10 colours, told apart by most colour-blind readers, and a marker each.
const PLOTTED: [(&str, &str, Style); 5] = [
    ("cross-entropy", "cross-entropy", style(RGBColor(31, 119, 180), false, Marker::Circle)),
    (
        "class-weighted CE, 1/n",
        "class-weighted CE, 1/n",
        style(RGBColor(255, 127, 14), false, Marker::Square),
    ),
    ("LDAM-DRW", "LDAM-DRW", style(RGBColor(44, 160, 44), false, Marker::Triangle)),
    (
        "logit-adjusted loss, τ = 1",
        "logit-adjusted loss, τ = 1",
        style(RGBColor(214, 39, 40), false, Marker::Diamond),
    ),
    (
        "CE + post-hoc adjustment, τ = 1",
        "CE + post-hoc adjustment, τ = 1",
        style(RGBColor(0, 0, 0), true, Marker::Cross),
    ),
];

const fn style(colour: RGBColor, dashed: bool, marker: Marker) -> Style {
    Style { colour, dashed, marker }
}

/// A source of labelled data and how it is split and reported.
struct Benchmark {
    name: &'static str,
    classes: usize,
    /// Training samples of the most frequent class.
    n_max: usize,
    /// Balanced test and validation samples per class.
    test_val: (usize, usize),
    shots: ShotSplit,
    /// All samples (digits), or `None` to draw a Gaussian mixture pool per seed.
    pool: Option<(Array2<f32>, Vec<usize>)>,
}

impl Benchmark {
    fn draw(&self, counts: &[usize], seed: u64) -> Result<Dataset, longtail::Error> {
        match &self.pool {
            Some((x, y)) => split_long_tail(x, y, self.classes, counts, self.test_val, seed),
            None => {
                let (test, val) = self.test_val;
                let (x, y) = gaussian::sample(test + val + self.n_max, seed);
                split_long_tail(&x, &y, self.classes, counts, self.test_val, seed)
            }
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("longtail-demo: {message}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if message.is_empty() { 0 } else { 2 });
        }
    };
    let schedule = Schedule {
        architecture: options.architecture,
        epochs: options.epochs,
        batch_size: 32,
        learning_rate: 0.1,
        sgd: Sgd { momentum: 0.9, weight_decay: 5e-4 },
    };
    let benchmarks = [
        Benchmark {
            name: "digits-LT",
            classes: digits::CLASSES,
            n_max: 100,
            test_val: (50, 20),
            // The training counts run from 100 down to 1: many > 30, few < 10.
            shots: ShotSplit::new(30.0, 10.0)?,
            pool: Some(digits::load()),
        },
        Benchmark {
            name: "Gaussian-mixture-LT",
            classes: gaussian::CLASSES,
            n_max: 500,
            test_val: (1000, 50),
            shots: ShotSplit::default(),
            pool: None,
        },
    ];
    let seeds: Vec<u64> = (options.seed..).take(options.seeds as usize).collect();
    // The length grows as each seed's methods are built.
    let progress = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:32}] {pos}/{len} {wide_msg}")?.progress_chars("=> "),
    );
    let started = Instant::now();
    let model_name = match options.architecture {
        Architecture::Linear => "softmax regression".to_string(),
        Architecture::Mlp(units) => format!("MLP, {units} hidden ReLU units"),
    };
    println!(
        "longtail-demo: imbalance ρ = {}, {model_name}, {} epochs of SGD (batch {}, lr {} cosine, momentum {}, \
         weight decay {}), seeds {:?}\n",
        options.imbalance,
        schedule.epochs,
        schedule.batch_size,
        schedule.learning_rate,
        schedule.sgd.momentum,
        schedule.sgd.weight_decay,
        seeds,
    );

    let mut report = String::new();
    let mut panels = Vec::new();
    for benchmark in &benchmarks {
        let counts = long_tail_counts(benchmark.n_max, benchmark.classes, options.imbalance);
        let mut rows: Vec<Row> = Vec::new();
        for &seed in &seeds {
            let data = benchmark.draw(&counts, seed)?;
            let methods = methods::methods(&data.prior, schedule.epochs)?;
            progress.inc_length(methods.len() as u64);
            for method in methods {
                progress.set_message(format!("{} seed {seed}: {}", benchmark.name, method.rows[0].0));
                let scores = experiment::run(&data, &method, &schedule, &benchmark.shots, seed)?;
                for (&(name, _), scores) in method.rows.iter().zip(scores) {
                    match rows.iter_mut().find(|row| row.name == name) {
                        Some(row) => row.seeds.push(scores),
                        None => rows.push(Row { name, seeds: vec![scores] }),
                    }
                }
                progress.inc(1);
            }
        }
        let (test, val) = benchmark.test_val;
        let mut section = format!(
            "## {} (ρ = {}): training counts {:?}, balanced validation {val} and test {test} per class\n\
             shots: many > {}, few < {} training samples\n\n{}",
            benchmark.name,
            options.imbalance,
            counts,
            benchmark.shots.many_above(),
            benchmark.shots.few_below(),
            report::table(&rows),
        );
        let lines: Vec<Line> = PLOTTED
            .iter()
            .filter_map(|&(row, legend, style)| {
                let row = rows.iter().find(|r| r.name == row)?;
                Some(Line { name: legend.to_string(), recalls: row.recalls_by_rank(), style })
            })
            .collect();
        if benchmark.pool.is_none() {
            section += &bayes_text(&counts);
        }
        progress.suspend(|| println!("{section}"));
        report += &section;
        report.push('\n');
        panels.push(Panel {
            title: format!("{} (ρ = {})", benchmark.name, options.imbalance),
            counts,
            lines,
        });
    }
    let models = progress.position();
    progress.finish_and_clear();

    std::fs::create_dir_all(&options.out)?;
    let svg = options.out.join("recall_vs_frequency.svg");
    let seeds_text = match seeds.as_slice() {
        [seed] => format!("seed {seed}"),
        _ => format!("mean over {} seeds ({}–{})", seeds.len(), seeds[0], seeds[seeds.len() - 1]),
    };
    let caption = [
        format!(
            "Each class's recall on the balanced test set, {seeds_text}; {model_name}, {} epochs.",
            schedule.epochs
        ),
        "Where the red logit-adjusted line is hidden, it lies under the dashed post-hoc one (the same optimum)."
            .to_string(),
    ];
    plot::recall_vs_frequency(&svg, &panels, &caption)?;
    let tables = options.out.join("results.md");
    std::fs::write(&tables, report)?;
    println!(
        "{} models trained in {:.1} s\nper-class recall against class frequency: {}\ntables: {}",
        models,
        started.elapsed().as_secs_f64(),
        svg.display(),
        tables.display()
    );
    Ok(())
}

/// The Gaussian mixture's Bayes-optimal rules for the balanced metric (uniform prior) and for the
/// training prior (what cross-entropy estimates).
fn bayes_text(counts: &[usize]) -> String {
    let total: usize = counts.iter().sum();
    let log_train: Vec<f64> = counts.iter().map(|&n| (n as f64 / total as f64).ln()).collect();
    let balanced = gaussian::bayes_recalls(&vec![0.0; counts.len()]);
    let train = gaussian::bayes_recalls(&log_train);
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let lt_accuracy =
        |r: &[f64]| r.iter().zip(counts).map(|(r, &n)| r * n as f64).sum::<f64>() / total as f64;
    format!(
        "\nBayes-optimal balanced accuracy (uniform-prior rule, exact): {:.1} %. The training-prior Bayes rule \
         (what cross-entropy estimates): balanced accuracy {:.1} %, accuracy (LT) {:.1} %, worst-class recall {:.1} %.\n",
        100.0 * mean(&balanced),
        100.0 * mean(&train),
        100.0 * lt_accuracy(&train),
        100.0 * train.iter().copied().fold(f64::INFINITY, f64::min),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_goes_under_cargo_target_dir_when_it_is_set() {
        assert_eq!(out_under(Some("/tmp/elsewhere".into())), Path::new("/tmp/elsewhere/long_tail"));
        assert_eq!(out_under(Some("rel".into())), Path::new("rel/long_tail"));
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert_eq!(out_under(None), workspace.join("target").join("long_tail"));
        assert_eq!(out_under(Some("".into())), workspace.join("target").join("long_tail"));
        assert!(workspace.join("Cargo.toml").is_file() && workspace.join("demo").is_dir());
    }
}
