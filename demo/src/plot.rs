//! The picture: per-class test recall against the class's training frequency, a few methods per
//! panel, one panel per data set, stacked to read at 800 px.

use std::error::Error;
use std::path::Path;

use plotters::coord::{CoordTranslate, Shift};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// A line to draw: a name, a recall per place in the tail, and how it is drawn.
pub struct Line {
    pub name: String,
    pub recalls: Vec<f64>,
    pub style: Style,
}

/// How a line and its legend entry are drawn: the same colour, dash and marker in both.
#[derive(Clone, Copy)]
pub struct Style {
    pub colour: RGBColor,
    /// Dashed lines are drawn last, so that a line they lie on stays visible between the dashes.
    pub dashed: bool,
    pub marker: Marker,
}

#[derive(Clone, Copy)]
pub enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Diamond,
}

/// One panel: a title, the training count of each place in the tail, and its lines.
pub struct Panel {
    pub title: String,
    pub counts: Vec<usize>,
    pub lines: Vec<Line>,
}

/// The figure's width in pixels: text sizes below are for this width (the README shows it at
/// its natural size).
const WIDTH: u32 = 800;
const PANEL_HEIGHT: u32 = 400;
const CAPTION_HEIGHT: u32 = 56;
const FONT: &str = "sans-serif";
// plotters writes a font of size `s` as `font-size = s / 1.24` px: 16 is 12.9 px, the smallest
// text here.

/// Writes the panels one above the other as an SVG, with `caption` (one or two lines) below.
pub fn recall_vs_frequency(path: &Path, panels: &[Panel], caption: &[String]) -> Result<(), Box<dyn Error>> {
    let height = PANEL_HEIGHT * panels.len() as u32 + CAPTION_HEIGHT;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plots, bottom) = root.split_vertically(PANEL_HEIGHT * panels.len() as u32);
    for (area, panel) in plots.split_evenly((panels.len(), 1)).iter().zip(panels) {
        draw_panel(area, panel)?;
    }
    for (i, text) in caption.iter().enumerate() {
        bottom.draw_text(text, &(FONT, 17).into_text_style(&bottom), (16, 8 + 22 * i as i32))?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let max_count = *panel.counts.iter().max().unwrap_or(&1) as f64;
    let min_count = *panel.counts.iter().min().unwrap_or(&1) as f64;
    // The recall axis starts at the lowest recall's tenth, so that close results stay apart.
    let lowest = panel.lines.iter().flat_map(|l| l.recalls.iter().copied()).fold(1.0, f64::min);
    let floor = (10.0 * lowest).floor() / 10.0;
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 21))
        .margin_top(6)
        .margin_left(10)
        .margin_right(20)
        .margin_bottom(4)
        .x_label_area_size(44)
        .y_label_area_size(60)
        .build_cartesian_2d((min_count * 0.8..max_count * 1.25).log_scale(), floor..1.02)?;
    chart
        .configure_mesh()
        .x_desc("training samples of the class (log scale)")
        .y_desc("test recall of the class")
        .x_label_formatter(&|n| format!("{n:.0}"))
        .y_label_formatter(&|y| format!("{:.0}%", 100.0 * y))
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .light_line_style(BLACK.mix(0.04))
        .bold_line_style(BLACK.mix(0.12))
        .draw()?;
    // Solid lines first, dashed ones over them.
    let mut order: Vec<&Line> = panel.lines.iter().collect();
    order.sort_by_key(|line| line.style.dashed);
    let plot = chart.plotting_area();
    for line in order {
        let points: Vec<(f64, f64)> =
            panel.counts.iter().map(|&n| n as f64).zip(line.recalls.iter().copied()).collect();
        let Style { colour, dashed, marker } = line.style;
        let stroke = colour.stroke_width(2);
        if dashed {
            plot.draw(&DashedPathElement::new(points.clone(), 7, 5, stroke))?;
        } else {
            plot.draw(&PathElement::new(points.clone(), stroke))?;
        }
        for &p in &points {
            draw_marker(plot, p, marker, colour)?;
        }
    }
    draw_legend(&plot.strip_coord_spec(), &panel.lines)?;
    Ok(())
}

/// The legend in the plot's lower right corner, in the lines' order: each sample a 28 px stroke,
/// dashed as its line is, with the line's marker in its middle.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    lines: &[Line],
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let text = (FONT, 17).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let row = 24;
    let text_width = lines
        .iter()
        .map(|line| area.estimate_text_size(&line.name, &text).map(|(w, _)| w as i32))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    let (width, height) = area.dim_in_pixel();
    let (box_w, box_h) = (text_width + 60, row * lines.len() as i32 + 10);
    let (x0, y0) = (width as i32 - box_w - 10, height as i32 - box_h - 10);
    area.draw(&Rectangle::new([(x0, y0), (x0 + box_w, y0 + box_h)], WHITE.mix(0.92).filled()))?;
    area.draw(&Rectangle::new([(x0, y0), (x0 + box_w, y0 + box_h)], BLACK.mix(0.3)))?;
    for (i, line) in lines.iter().enumerate() {
        let y = y0 + 5 + row / 2 + row * i as i32;
        let stroke = line.style.colour.stroke_width(2);
        let sample = vec![(x0 + 10, y), (x0 + 38, y)];
        if line.style.dashed {
            area.draw(&DashedPathElement::new(sample, 7, 5, stroke))?;
        } else {
            area.draw(&PathElement::new(sample, stroke))?;
        }
        draw_marker(area, (x0 + 24, y), line.style.marker, line.style.colour)?;
        area.draw(&Text::new(line.name.clone(), (x0 + 48, y), text.clone()))?;
    }
    Ok(())
}

/// A filled marker (or a cross) of about 9 px centred on `at`, in the area's coordinates.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    marker: Marker,
    colour: RGBColor,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
    CT::From: Clone,
{
    let fill = colour.filled();
    let thick = colour.stroke_width(2);
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, 4, fill))?,
        Marker::Triangle => {
            area.draw(&(EmptyElement::at(at) + Polygon::new(vec![(0, -5), (5, 4), (-5, 4)], fill)))?
        }
        Marker::Square => area.draw(&(EmptyElement::at(at) + Rectangle::new([(-4, -4), (4, 4)], fill)))?,
        Marker::Diamond => {
            area.draw(&(EmptyElement::at(at) + Polygon::new(vec![(0, -5), (5, 0), (0, 5), (-5, 0)], fill)))?
        }
        Marker::Cross => area.draw(
            &(EmptyElement::at(at)
                + PathElement::new(vec![(-4, -4), (4, 4)], thick)
                + PathElement::new(vec![(-4, 4), (4, -4)], thick)),
        )?,
    }
    Ok(())
}
