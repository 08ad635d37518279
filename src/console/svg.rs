//! Inline SVG drawn on the server: a run timeline (sent, skipped, late, failed) and line charts
//! of the node's last hour (dispatch rate, lateness).
//!
//! Invariant: output size is bounded by its input (at most `HISTORY_LEN` runs, `SAMPLES`
//! samples); colours come from CSS classes, never `style=`; every text is escaped. It must not
//! read state or clocks: everything is given.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::html::Esc;

/// How a run is drawn.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mark {
    Sent,
    Skipped,
    Late,
    Failed,
}

impl Mark {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Mark::Sent => "sent",
            Mark::Skipped => "skipped",
            Mark::Late => "late",
            Mark::Failed => "failed",
        }
    }
}

const W: f64 = 640.0;
const H: f64 = 120.0;
const PAD: f64 = 36.0;

/// Runs on a time axis from the first to `now`, one mark each, with a legend.
pub(crate) fn timeline(runs: &[(DateTime<Utc>, Mark, String)], now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=timeline class=chart viewBox=\"0 0 {W} {H}\" role=img \
         aria-labelledby=timeline-title><title id=timeline-title>Timeline of recent runs: \
         sent, skipped, late, failed</title>"
    );
    let start = runs.iter().map(|(at, _, _)| *at).min().unwrap_or(now);
    let end = now.max(start + chrono::Duration::seconds(1));
    let span = (end - start).num_milliseconds().max(1) as f64;
    let _ = write!(
        out,
        "<line class=axis x1={PAD} y1=60 x2={} y2=60 />",
        W - PAD
    );
    for (at, mark, title) in runs {
        let x = PAD + (W - 2.0 * PAD) * ((*at - start).num_milliseconds() as f64 / span);
        let y = match mark {
            Mark::Sent => 45.0,
            Mark::Late => 55.0,
            Mark::Skipped => 65.0,
            Mark::Failed => 75.0,
        };
        let _ = write!(
            out,
            "<circle class=\"mark {}\" cx={x:.1} cy={y} r=6><title>{}</title></circle>",
            mark.label(),
            Esc(title)
        );
    }
    let _ = write!(
        out,
        "<text x={PAD} y=100 class=tick>{}</text><text x={} y=100 class=tick \
         text-anchor=end>{}</text>",
        Esc(start.format("%Y-%m-%d %H:%M:%S UTC")),
        W - PAD,
        Esc(end.format("%Y-%m-%d %H:%M:%S UTC"))
    );
    for (i, mark) in [Mark::Sent, Mark::Late, Mark::Skipped, Mark::Failed]
        .iter()
        .enumerate()
    {
        let x = PAD + i as f64 * 110.0;
        let _ = write!(
            out,
            "<circle class=\"mark {0}\" cx={x} cy=16 r=5 /><text x={1} y=20 class=tick>{0}</text>",
            mark.label(),
            x + 10.0
        );
    }
    out.push_str("</svg>");
    out
}

/// A line chart of `points` (seconds before `now`, value), the last hour on the x axis.
pub(crate) fn line_chart(id: &str, title: &str, unit: &str, points: &[(f64, f64)]) -> String {
    let max = points
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0f64, f64::max)
        .max(SMALLEST_TOP);
    let top = nice_ceiling(max);
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id={id} class=chart viewBox=\"0 0 {W} {H}\" role=img aria-labelledby={id}-title>\
         <title id={id}-title>{}</title>\
         <line class=axis x1={PAD} y1={} x2={} y2={} />\
         <text x=2 y=14 class=tick>{} {}</text><text x=2 y={} class=tick>0</text>\
         <text x={PAD} y={} class=tick>-60 min</text><text x={} y={} class=tick \
         text-anchor=end>now</text>",
        Esc(title),
        H - 20.0,
        W - 4.0,
        H - 20.0,
        fmt_num(top),
        Esc(unit),
        H - 22.0,
        H - 4.0,
        W - 4.0,
        H - 4.0,
    );
    let coords: Vec<String> = points
        .iter()
        .map(|(ago, v)| {
            let x = PAD + (W - 4.0 - PAD) * (1.0 - (ago / 3600.0).clamp(0.0, 1.0));
            let y = (H - 20.0) - (H - 40.0) * (v / top).clamp(0.0, 1.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    if coords.is_empty() {
        let _ = write!(
            out,
            "<text x={} y={} class=tick text-anchor=middle>no samples yet</text>",
            W / 2.0,
            H / 2.0
        );
    } else {
        let _ = write!(
            out,
            "<polyline class=line points=\"{}\" />",
            coords.join(" ")
        );
    }
    out.push_str("</svg>");
    out
}

/// The smallest top of a chart's scale: an idle hour (all zero) still gets a readable one.
const SMALLEST_TOP: f64 = 0.001;

fn nice_ceiling(v: f64) -> f64 {
    let magnitude = 10f64.powf(v.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if v <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A scale's top: whole numbers from 10 up, else at most three decimals (the top is at least
/// `SMALLEST_TOP`), without trailing zeros.
fn fmt_num(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_escaped_and_classed() {
        let now = Utc::now();
        let svg = timeline(&[(now, Mark::Failed, "<script>x</script>".into())], now);
        assert!(svg.contains("class=\"mark failed\""));
        assert!(!svg.contains("<script>"));
        assert!(svg.starts_with("<svg id=timeline"));
    }

    #[test]
    fn charts_scale_and_bound() {
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(13.0), 20.0);
        let svg = line_chart("chart-rate", "Rate", "msg/s", &[(3600.0, 1.0), (0.0, 3.0)]);
        assert!(svg.contains("<polyline"));
        assert!(line_chart("c", "t", "s", &[]).contains("no samples yet"));
        // An idle hour: a short, readable top.
        let idle = line_chart("c", "t", "s", &[(60.0, 0.0), (0.0, 0.0)]);
        assert!(idle.contains(">0.001 s</text>"), "{idle}");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(2.0), "2");
    }
}
