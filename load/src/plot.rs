//! PNG plots of a report: latency over time (p50/p99/max per second, log scale) and the server's
//! memory per connection as sessions ramp.
//!
//! Text needs a TrueType font; the first of [`FONT_PATHS`] that exists is used (Debian's
//! `fonts-dejavu-core`), or the file named by `MCP_LOAD_FONT`.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, bail};
use plotters::prelude::*;

use crate::report::Report;

/// Fonts tried in order.
pub const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

fn ensure_font() -> anyhow::Result<()> {
    let loaded = FONT.get_or_init(|| {
        let candidates: Vec<String> = std::env::var("MCP_LOAD_FONT")
            .ok()
            .into_iter()
            .chain(FONT_PATHS.iter().map(|p| p.to_string()))
            .collect();
        let Some((path, bytes)) = candidates
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p.clone(), b)))
        else {
            return Err(format!(
                "no TrueType font found for plot labels (tried {}); install fonts-dejavu-core \
                 or set MCP_LOAD_FONT",
                candidates.join(", ")
            ));
        };
        // Registered fonts live for the whole process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path} is not a usable TrueType font"))
    });
    loaded.clone().map_err(anyhow::Error::msg)
}

/// Writes `{prefix}-latency.png` and, when the server was measured, `{prefix}-memory.png`;
/// returns the files written.
pub fn write(report: &Report, prefix: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    ensure_font()?;
    let mut written = Vec::new();
    let name = |suffix: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    if !report.timeline.is_empty() {
        let path = name("-latency.png");
        latency(report, &path).with_context(|| format!("plotting {}", path.display()))?;
        written.push(path);
    }
    if let Some(server) = &report.server
        && server.samples.iter().any(|s| s.held > 0)
    {
        let path = name("-memory.png");
        memory(report, &path).with_context(|| format!("plotting {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Picks one percentile out of a second's latency.
type Pick = fn(&crate::stats::Latency) -> u64;

fn latency(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let seconds = report.timeline.len().max(1) as f64;
    let max_us = report
        .timeline
        .iter()
        .map(|s| s.latency.max_us)
        .max()
        .unwrap_or(1)
        .max(10) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: tools/call latency from the due time, {:.0} calls/s offered",
                report.label, report.rate
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, (1f64..max_us * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds into the call phase")
        .y_desc("latency (µs, log)")
        .label_style(("sans-serif", 14))
        .draw()?;
    let series: [(&str, RGBColor, Pick); 3] = [
        ("p50", BLUE, |l| l.p50_us),
        ("p99", RED, |l| l.p99_us),
        ("max", RGBColor(120, 120, 120), |l| l.max_us),
    ];
    for (label, color, pick) in series {
        let points: Vec<(f64, f64)> = report
            .timeline
            .iter()
            .filter(|s| s.ok > 0)
            .map(|s| (f64::from(s.second) + 0.5, pick(&s.latency).max(1) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

fn memory(report: &Report, path: &Path) -> anyhow::Result<()> {
    let Some(server) = &report.server else {
        bail!("no server measurements");
    };
    let points: Vec<(f64, f64)> = server
        .samples
        .iter()
        .filter(|s| s.held >= 50)
        .map(|s| {
            let per = s.rss_bytes.saturating_sub(server.rss_idle_bytes) as f64 / s.held as f64;
            (s.held as f64, per)
        })
        .collect();
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(1.0, f64::max);
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: server memory per open connection as sessions ramp ({} B at {} held)",
                report.label, server.bytes_per_connection, report.sessions_held
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..max_x * 1.05, 0f64..max_y * 1.15)?;
    chart
        .configure_mesh()
        .x_desc("sessions held")
        .y_desc("(RSS - idle RSS) / sessions, bytes")
        .label_style(("sans-serif", 14))
        .draw()?;
    chart.draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(2)))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
    root.present()?;
    Ok(())
}
