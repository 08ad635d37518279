//! `lateness.png`: every delivery's lateness (arrival minus scheduled instant) over the run,
//! with each fault window shaded in its nemesis' colour.
//!
//! Text needs a TrueType font, loaded at run time (Debian's `fonts-dejavu-core` by default);
//! without one the plot is drawn without text. Owns drawing only.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::checker::Verdict;
use crate::history::History;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("nothing to plot")]
    Empty,
    #[error("drawing: {0}")]
    Draw(String),
}

fn draw_err<E: std::fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

const PALETTE: &[RGBColor] = &[
    RGBColor(228, 26, 28),
    RGBColor(55, 126, 184),
    RGBColor(77, 175, 74),
    RGBColor(152, 78, 163),
    RGBColor(255, 127, 0),
    RGBColor(166, 86, 40),
    RGBColor(247, 129, 191),
    RGBColor(153, 153, 153),
    RGBColor(0, 139, 139),
    RGBColor(128, 128, 0),
    RGBColor(0, 0, 139),
    RGBColor(139, 0, 0),
    RGBColor(85, 107, 47),
];

/// Registers the font once; false when there is none to use.
fn load_font(font: &Path) -> bool {
    static LOADED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LOADED.get_or_init(|| {
        let Ok(bytes) = std::fs::read(font) else {
            eprintln!(
                "belfry-chaos: no font at {} (install fonts-dejavu-core); the plot has no text",
                font.display()
            );
            return false;
        };
        // The font must live as long as the process: plotters keeps a reference.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
    })
}

pub fn draw(
    path: &Path,
    font: &Path,
    history: &History,
    verdict: &Verdict,
) -> Result<(), PlotError> {
    let start = history.started.ok_or(PlotError::Empty)?;
    if verdict.points.is_empty() {
        return Err(PlotError::Empty);
    }
    let text = load_font(font);
    let secs = |t: chrono::DateTime<chrono::Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let x_min = verdict
        .points
        .iter()
        .map(|p| secs(p.scheduled_at))
        .fold(0f64, f64::min);
    let x_max = verdict
        .points
        .iter()
        .map(|p| secs(p.scheduled_at))
        .fold(1f64, f64::max);
    let lateness: Vec<f64> = verdict
        .points
        .iter()
        .map(|p| p.lateness_ms as f64 / 1000.0)
        .collect();
    // A few very late deliveries (a paused `all` schedule catching up) would flatten the
    // rest: the axis stops at the 99.5th percentile (at least 1 s) and later points sit on
    // its top edge, in red.
    let mut sorted = lateness.clone();
    sorted.sort_by(f64::total_cmp);
    let p995 = sorted[(sorted.len() * 995 / 1000).min(sorted.len() - 1)];
    let y_max = (p995 * 1.2).max(1.0).min(sorted[sorted.len() - 1].max(1.0)) * 1.05;
    let y_min = lateness.iter().copied().fold(0.0, f64::min).min(-0.1) * 1.05;

    let root = BitMapBackend::new(path, (1600, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if text {
        builder
            .caption(
                format!(
                    "belfry-chaos: {} nodes, seed {}: lateness of each delivery (s; red: off the scale), faults shaded",
                    history.nodes, history.seed
                ),
                ("sans-serif", 24),
            )
            .x_label_area_size(45)
            .y_label_area_size(60);
    }
    let mut chart = builder
        .build_cartesian_2d(x_min..x_max, y_min..y_max)
        .map_err(draw_err)?;
    if text {
        chart
            .configure_mesh()
            .x_desc("scheduled instant, seconds after the first fault")
            .y_desc("arrival minus scheduled instant (s)")
            .label_style(("sans-serif", 16))
            .draw()
            .map_err(draw_err)?;
    } else {
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .draw()
            .map_err(draw_err)?;
    }

    let mut kinds: Vec<&str> = history.faults.iter().map(|f| f.nemesis.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let end = history.healed.unwrap_or_else(chrono::Utc::now);
    for (k, kind) in kinds.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let windows: Vec<(f64, f64)> = history
            .faults
            .iter()
            .filter(|f| f.nemesis == *kind)
            .map(|f| (secs(f.start), secs(f.end.unwrap_or(end))))
            .collect();
        let series = chart
            .draw_series(windows.into_iter().map(move |(a, b)| {
                Rectangle::new([(a, y_min), (b, y_max)], color.mix(0.18).filled())
            }))
            .map_err(draw_err)?;
        if text {
            series.label(kind.to_string()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.mix(0.5).filled())
            });
        }
    }
    chart
        .draw_series(verdict.points.iter().map(|p| {
            let y = p.lateness_ms as f64 / 1000.0;
            let style = if y > y_max {
                RED.filled()
            } else {
                BLACK.mix(0.6).filled()
            };
            Circle::new((secs(p.scheduled_at), y.min(y_max)), 2, style)
        }))
        .map_err(draw_err)?;
    if text && !kinds.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}
