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

/// One line of a [`Chart`].
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// Legend.
    pub name: String,
    /// `(x, y)` points.
    pub points: Vec<(f64, f64)>,
}

/// A line chart described as data (what `mcp-load plot SPEC.json OUT.png` draws for scripts
/// such as `bench/scale.py`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// X axis.
    pub x_label: String,
    /// Y axis.
    pub y_label: String,
    /// Logarithmic y axis (from half the smallest positive value; values below are drawn
    /// there).
    #[serde(default)]
    pub log_y: bool,
    /// Vertical markers: `(x, label)` (a kill, a restart).
    #[serde(default)]
    pub markers: Vec<(f64, String)>,
    /// Lines.
    pub series: Vec<Series>,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws `chart` into a PNG at `path`.
pub fn chart(chart: &Chart, path: &Path) -> anyhow::Result<()> {
    ensure_font()?;
    let pts = || chart.series.iter().flat_map(|s| s.points.iter());
    let x_max = pts().map(|p| p.0).fold(1.0, f64::max);
    let x_min = pts().map(|p| p.0).fold(x_max, f64::min).min(0.0);
    let y_max = pts().map(|p| p.1).fold(0.0, f64::max).max(1e-3);
    let y_min = pts()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(y_max, f64::min)
        .max(1e-3);
    let root = BitMapBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut b = ChartBuilder::on(&root);
    b.caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80);
    macro_rules! draw {
        ($c:expr, $fix:expr) => {{
            let mut c = $c;
            c.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .label_style(("sans-serif", 14))
                .draw()?;
            let (y_lo, y_hi) = (c.y_range().start, c.y_range().end);
            for (x, label) in &chart.markers {
                let grey = RGBColor(90, 90, 90);
                c.draw_series(LineSeries::new(
                    [(*x, y_lo), (*x, y_hi)],
                    grey.stroke_width(1),
                ))?;
                c.draw_series(std::iter::once(Text::new(
                    label.clone(),
                    (*x, y_hi),
                    ("sans-serif", 13)
                        .into_font()
                        .transform(FontTransform::Rotate90)
                        .color(&grey),
                )))?;
            }
            for (i, s) in chart.series.iter().enumerate() {
                let color = PALETTE[i % PALETTE.len()];
                let fix = $fix;
                c.draw_series(LineSeries::new(
                    s.points.iter().map(|&(x, y)| (x, fix(y))),
                    color.stroke_width(2),
                ))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
        }};
    }
    if chart.log_y {
        let lo = y_min / 2.0;
        let c = b.build_cartesian_2d(x_min..x_max, (lo..y_max * 2.0).log_scale())?;
        draw!(c, |y: f64| y.max(lo));
    } else {
        let c = b.build_cartesian_2d(x_min..x_max, 0f64..y_max * 1.1)?;
        draw!(c, |y: f64| y);
    }
    root.present()?;
    Ok(())
}

/// The plots of a cluster run: `{prefix}-sessions.png` (held, streams up, impaired),
/// `{prefix}-calls.png` (answered and failed per second), `{prefix}-latency.png` (p50, p99,
/// max per second) and `{prefix}-cpu.png` (the load processes' CPU); returns the files.
pub fn cluster(
    report: &crate::cluster::report::ClusterReport,
    prefix: &Path,
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let name = |suffix: &str| {
        let mut p = prefix.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let tl = &report.timeline;
    let line = |n: &str, f: &dyn Fn(&crate::cluster::second::Second) -> Option<f64>| Series {
        name: n.into(),
        points: tl
            .iter()
            .filter_map(|s| f(s).map(|y| (f64::from(s.t), y)))
            .collect(),
    };
    let markers: Vec<(f64, String)> = report
        .phases
        .iter()
        .map(|p| (f64::from(p.span.from), p.name.clone()))
        .collect();
    let charts = [
        (
            "-sessions.png",
            Chart {
                title: format!("{}: sessions", report.label),
                x_label: "seconds".into(),
                y_label: "sessions".into(),
                log_y: false,
                markers: markers.clone(),
                series: vec![
                    line("held", &|s| Some(s.held as f64)),
                    line("streams up", &|s| Some(s.streams_up as f64)),
                    line("impaired (max in the second)", &|s| {
                        Some(s.impaired_max as f64)
                    }),
                ],
            },
        ),
        (
            "-calls.png",
            Chart {
                title: format!("{}: tools/call per second", report.label),
                x_label: "seconds".into(),
                y_label: "per second".into(),
                log_y: false,
                markers: markers.clone(),
                series: vec![
                    line("answered", &|s| Some(s.calls_ok as f64)),
                    line("failed attempts (all kinds)", &|s| {
                        Some(s.error_count() as f64)
                    }),
                    line("sessions opened", &|s| Some(s.opened as f64)),
                ],
            },
        ),
        (
            "-latency.png",
            Chart {
                title: format!("{}: tools/call latency from the due time", report.label),
                x_label: "seconds".into(),
                y_label: "ms (log)".into(),
                log_y: true,
                markers: markers.clone(),
                series: [("p50", 0.50), ("p99", 0.99), ("max", 1.0)]
                    .into_iter()
                    .map(|(n, q)| {
                        line(n, &move |s| {
                            (s.calls_ok > 0).then(|| {
                                let l = crate::stats::Hist::from_bins(&s.latency).latency();
                                let us = if q >= 1.0 {
                                    l.max_us
                                } else if q >= 0.99 {
                                    l.p99_us
                                } else {
                                    l.p50_us
                                };
                                us as f64 / 1000.0
                            })
                        })
                    })
                    .collect(),
            },
        ),
        (
            "-cpu.png",
            Chart {
                title: format!("{}: load processes' CPU (cores)", report.label),
                x_label: "seconds".into(),
                y_label: "CPU seconds per second".into(),
                log_y: false,
                markers,
                series: vec![
                    line("user", &|s| Some(s.cpu_user_s)),
                    line("system", &|s| Some(s.cpu_sys_s)),
                ],
            },
        ),
    ];
    let mut written = Vec::new();
    for (suffix, c) in charts {
        let path = name(suffix);
        chart(&c, &path).with_context(|| format!("plotting {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
