//! The picture: per-class test recall against the class's training frequency, one line per method,
//! one panel per data set.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

/// A line to draw: a name and a recall per place in the tail.
pub struct Line {
    pub name: String,
    pub recalls: Vec<f64>,
    /// Reference lines (Bayes rules) are drawn dashed in grey shades.
    pub reference: bool,
}

/// One panel: a title, the training count of each place in the tail, and its lines.
pub struct Panel {
    pub title: String,
    pub counts: Vec<usize>,
    pub lines: Vec<Line>,
}

/// Tableau 10 without its grey (kept for the reference lines): distinguishable in print and by
/// most colour-blind readers.
const COLOURS: [RGBColor; 9] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Writes the panels side by side as an SVG.
pub fn recall_vs_frequency(path: &Path, panels: &[Panel]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (760 * panels.len() as u32, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        let max_count = *panel.counts.iter().max().unwrap_or(&1) as f64;
        let min_count = *panel.counts.iter().min().unwrap_or(&1) as f64;
        // The recall axis starts at the lowest recall's tenth, so that close results stay apart.
        let lowest = panel.lines.iter().flat_map(|l| l.recalls.iter().copied()).fold(1.0, f64::min);
        let floor = (10.0 * lowest).floor() / 10.0;
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d((min_count * 0.8..max_count * 1.25).log_scale(), floor..1.02)?;
        chart
            .configure_mesh()
            .x_desc("training samples of the class (log scale)")
            .y_desc("test recall of the class")
            .x_label_formatter(&|n| format!("{n:.0}"))
            .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
            .light_line_style(BLACK.mix(0.03))
            .draw()?;
        let (mut colours, mut greys) =
            (COLOURS.iter().cycle(), [BLACK, RGBColor(110, 110, 110)].into_iter().cycle());
        for line in &panel.lines {
            let points: Vec<(f64, f64)> =
                panel.counts.iter().map(|&n| n as f64).zip(line.recalls.iter().copied()).collect();
            let colour = if line.reference { greys.next() } else { colours.next().copied() }.unwrap_or(BLACK);
            let style = colour.stroke_width(2);
            let series = if line.reference {
                chart.draw_series(DashedLineSeries::new(points, 6, 4, style))?
            } else {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
                chart.draw_series(LineSeries::new(points, style))?
            };
            series.label(&line.name).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    root.present()?;
    Ok(())
}
