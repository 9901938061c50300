//! Latency against load (`huddle load-curve`): p50 and p99 against deliveries per second, from
//! the JSON summaries of `huddle load --json` runs, as an SVG and a Markdown table.
//!
//! A series is a folder of summaries; the runs at one `--rate` make one point: the median
//! deliveries/s, and the median p50 and p99 with min-max bars.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use serde_json::Value;

use super::plot::{format_count, format_ms, key_points, legend};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 640;
const FONT: &str = "sans-serif";
const COLORS: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// `huddle load-curve`: draws latency against load from `huddle load --json` summaries.
#[derive(clap::Args, Clone, Debug)]
pub struct CurveArgs {
    /// A series as LABEL=DIR: every *.json summary in DIR; the runs at one --rate make one
    /// point (medians, with min-max bars). Repeatable.
    #[arg(long = "series", required = true)]
    pub series: Vec<String>,
    /// The SVG to write.
    #[arg(long)]
    pub out: PathBuf,
    /// The picture's title.
    #[arg(long, default_value = "huddle load: latency against load")]
    pub title: String,
}

/// A median with its range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median (the upper one of an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    fn of(mut v: Vec<f64>) -> Spread {
        v.sort_by(f64::total_cmp);
        Spread { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }
}

/// The runs at one rate.
#[derive(Clone, Debug)]
pub struct Point {
    /// Messages per second per room.
    pub rate: f64,
    /// Runs.
    pub runs: usize,
    /// Deliveries per second in the measured window.
    pub deliveries_per_s: Spread,
    /// Latency p50, milliseconds.
    pub p50_ms: Spread,
    /// Latency p99, milliseconds.
    pub p99_ms: Spread,
    /// The harness's own send lag p99, milliseconds.
    pub send_lag_p99_ms: Spread,
    /// Server CPU microseconds per delivery, when known.
    pub server_us_per_delivery: Option<Spread>,
    /// Runs that reported a problem (loss, duplicates, send errors, ...).
    pub failed_runs: usize,
}

/// Reads every `*.json` summary in `dir` and makes one point per rate, by rate.
pub fn read_series(dir: &Path) -> Result<Vec<Point>> {
    let mut runs: Vec<(f64, Value)> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            let v: Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a JSON summary", path.display()))?;
            let rate = v["config"]["rate"]
                .as_f64()
                .ok_or_else(|| anyhow!("{}: no config.rate", path.display()))?;
            runs.push((rate, v));
        }
    }
    if runs.is_empty() {
        return Err(anyhow!("no *.json summaries in {}", dir.display()));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut points = Vec::new();
    for group in runs.chunk_by(|a, b| a.0 == b.0) {
        let f = |get: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> {
            group.iter().filter_map(|(_, v)| get(v)).collect()
        };
        let ms = |v: &Value, key: &str, p: &str| v[key][p].as_f64().map(|us| us / 1000.0);
        let cpu = f(&|v| v["server_cpu_us_per_delivery"].as_f64());
        points.push(Point {
            rate: group[0].0,
            runs: group.len(),
            deliveries_per_s: Spread::of(f(&|v| v["deliveries_per_s"].as_f64())),
            p50_ms: Spread::of(f(&|v| ms(v, "latency_us", "p50"))),
            p99_ms: Spread::of(f(&|v| ms(v, "latency_us", "p99"))),
            send_lag_p99_ms: Spread::of(f(&|v| ms(v, "send_lag_us", "p99"))),
            server_us_per_delivery: (!cpu.is_empty()).then(|| Spread::of(cpu)),
            failed_runs: group
                .iter()
                .filter(|(_, v)| v["problems"].as_array().is_some_and(|p| !p.is_empty()))
                .count(),
        });
    }
    Ok(points)
}

/// The points as Markdown table rows (rate, deliveries/s, p50, p99, send lag, CPU, failures).
pub fn table(label: &str, points: &[Point]) -> String {
    let s = |x: &Spread, d: usize| format!("{:.d$} ({:.d$}-{:.d$})", x.median, x.min, x.max, d = d);
    let mut t = String::from(
        "| series | msg/s per room | runs | deliveries/s | p50 ms | p99 ms | harness send lag p99 ms | server µs CPU / delivery | runs with problems |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        t.push_str(&format!(
            "| {label} | {} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
            p.rate,
            p.runs,
            p.deliveries_per_s.median,
            s(&p.p50_ms, 2),
            s(&p.p99_ms, 1),
            s(&p.send_lag_p99_ms, 1),
            p.server_us_per_delivery.as_ref().map_or("-".to_string(), |c| s(c, 1)),
            p.failed_runs
        ));
    }
    t
}

/// `huddle load-curve`: prints the table and draws the SVG.
pub fn run(args: CurveArgs) -> Result<()> {
    let mut series = Vec::new();
    for s in &args.series {
        let (label, dir) =
            s.split_once('=').ok_or_else(|| anyhow!("--series {s:?}: expected LABEL=DIR"))?;
        let points = read_series(Path::new(dir))?;
        print!("{}", table(label, &points));
        series.push((label.to_string(), points));
    }
    draw(&args.title, &series, &args.out)
        .map_err(|e| anyhow!("drawing {}: {e}", args.out.display()))
}

/// Draws p50 and p99 against deliveries/s, one colour per series, log latency axis.
pub fn draw(
    title: &str,
    series: &[(String, Vec<Point>)],
    path: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let x_hi = all().map(|p| p.deliveries_per_s.max).fold(1.0, f64::max) * 1.1;
    let y_lo = all().map(|p| p.p50_ms.min).fold(f64::INFINITY, f64::min).max(0.01) / 1.5;
    let y_hi = all().map(|p| p.p99_ms.max).fold(y_lo * 10.0, f64::max) * 4.0;
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 18))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..x_hi,
            (y_lo..y_hi).log_scale().with_key_points(key_points(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("deliveries per second (median of the runs)")
        .y_desc("latency from intended send time (ms, log scale)")
        .x_label_formatter(&|v| format_count(*v))
        .y_label_formatter(&|v| format_ms(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    let mut failed = false;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (name, light, get) in [
            ("p50", false, (|p: &Point| p.p50_ms) as fn(&Point) -> Spread),
            ("p99", true, |p: &Point| p.p99_ms),
        ] {
            let style = if light { color.mix(0.55) } else { color.mix(1.0) };
            let pts: Vec<_> = points.iter().map(|p| (p.deliveries_per_s.median, get(p))).collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|(x, s)| (*x, s.median)),
                    style.stroke_width(2),
                ))?
                .label(format!("{label}: {name}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], style.stroke_width(3))
                });
            // Min-max bars.
            chart.draw_series(pts.iter().map(|(x, s)| {
                PathElement::new(vec![(*x, s.min), (*x, s.max)], style.stroke_width(1))
            }))?;
            if light {
                chart.draw_series(
                    pts.iter().map(|(x, s)| TriangleMarker::new((*x, s.median), 5, style.filled())),
                )?;
            } else {
                chart.draw_series(
                    pts.iter().map(|(x, s)| Circle::new((*x, s.median), 4, style.filled())),
                )?;
            }
        }
        for p in points.iter().filter(|p| p.failed_runs > 0) {
            failed = true;
            chart.draw_series(std::iter::once(Cross::new(
                (p.deliveries_per_s.median, p.p99_ms.median),
                9,
                BLACK.stroke_width(2),
            )))?;
        }
        // The rate next to each p99 point.
        chart.draw_series(points.iter().map(|p| {
            Text::new(
                format!("{} msg/s", p.rate),
                (p.deliveries_per_s.median, p.p99_ms.max * 1.25),
                (FONT, 11).into_font().color(&RGBColor(90, 90, 90)),
            )
        }))?;
    }
    if failed {
        chart
            .draw_series(std::iter::empty::<Cross<(f64, f64), i32>>())?
            .label("x: a run at this rate lost, duplicated or failed something")
            .legend(|(x, y)| Cross::new((x + 11, y), 6, BLACK.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}
