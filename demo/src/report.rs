//! The results table: every figure as mean ± standard deviation over seeds, in percent.

use crate::experiment::Scores;

/// One row of the table: a method's scores, one per seed.
pub struct Row {
    pub name: &'static str,
    pub seeds: Vec<Scores>,
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn percent(values: &[f64]) -> String {
    if values.is_empty() {
        return "—".into();
    }
    let (mean, std) = mean_std(values);
    format!("{:.1} ± {:.1}", 100.0 * mean, 100.0 * std)
}

impl Row {
    fn column(&self, figure: impl Fn(&Scores) -> Option<f64>) -> String {
        percent(&self.seeds.iter().filter_map(figure).collect::<Vec<_>>())
    }

    /// Mean recall of each place in the tail over seeds.
    pub fn recalls_by_rank(&self) -> Vec<f64> {
        let classes = self.seeds[0].recalls_by_rank.len();
        (0..classes)
            .map(|r| mean_std(&self.seeds.iter().map(|s| s.recalls_by_rank[r]).collect::<Vec<_>>()).0)
            .collect()
    }
}

/// A Markdown table; the last column is the change in balanced accuracy against the first row
/// (cross-entropy) on the same seeds, with the number of seeds where it is higher.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| method | accuracy (LT) | balanced acc. | worst-class recall | many-shot | medium-shot | few-shot | Δ balanced vs CE |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let baseline: Vec<f64> = rows[0].seeds.iter().map(|s| s.balanced_accuracy).collect();
    for (index, row) in rows.iter().enumerate() {
        let deltas: Vec<f64> =
            row.seeds.iter().zip(&baseline).map(|(s, b)| s.balanced_accuracy - b).collect();
        let wins = deltas.iter().filter(|&&d| d > 0.0).count();
        let (mean_delta, _) = mean_std(&deltas);
        let taus: Vec<f64> = row.seeds.iter().filter_map(|s| s.tau.map(f64::from)).collect();
        let name = if row.name.contains("τ tuned") && !taus.is_empty() {
            format!("{} (mean τ {:.2})", row.name, mean_std(&taus).0)
        } else {
            row.name.to_string()
        };
        out += &format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.column(|s| Some(s.accuracy)),
            row.column(|s| Some(s.balanced_accuracy)),
            row.column(|s| Some(s.worst_class_recall)),
            row.column(|s| s.shots.many),
            row.column(|s| s.shots.medium),
            row.column(|s| s.shots.few),
            if index == 0 {
                "—".to_string()
            } else {
                format!("{:+.1} ({wins}/{})", 100.0 * mean_delta, row.seeds.len())
            },
        );
    }
    out
}
