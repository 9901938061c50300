//! The run as a picture: latency percentiles and deliveries per second over time (SVG).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::report::Summary;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 760;
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(214, 39, 40);
const MAX: RGBColor = RGBColor(150, 150, 150);
const DELIVERED: RGBColor = RGBColor(44, 160, 44);
const WARMUP: RGBColor = RGBColor(236, 236, 236);
const DRAIN: RGBColor = RGBColor(246, 240, 228);
const FONT: &str = "sans-serif";

/// Draws `summary`'s timeline into an SVG file at `path`.
pub fn draw(summary: &Summary, path: &Path) -> Result<()> {
    draw_inner(summary, path).map_err(|e| anyhow!("drawing {}: {e}", path.display()))
}

fn draw_inner(s: &Summary, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = &s.config;
    let send_s = cfg.warmup_s + cfg.duration_s;
    // Seconds that saw deliveries; the timeline's tail after the drain is empty.
    let last = s.timeline.iter().rposition(|b| b.deliveries > 0).map(|i| i + 1).unwrap_or(1);
    let x_max = (last as f64).max(send_s.ceil()).max(1.0);
    let seconds = &s.timeline[..last.min(s.timeline.len())];

    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(78);
    head.draw(&Text::new(
        format!("huddle load: {}", s.headline()),
        (16, 10),
        (FONT, 19).into_font().style(FontStyle::Bold),
    ))?;
    let l = &s.latency_us;
    let mut line2 = format!(
        "latency p50 {}  p99 {}  p99.9 {}  max {}   |   {:.0} deliveries/s   |   lost {}  duplicates {}  out of order {}",
        ms(l.p50),
        ms(l.p99),
        ms(l.p999),
        ms(l.max),
        s.deliveries_per_s,
        s.lost,
        s.duplicates,
        s.out_of_order
    );
    if let Some(per) = s.server_cpu_us_per_delivery {
        line2.push_str(&format!("   |   server {per:.1} us CPU/delivery"));
    }
    head.draw(&Text::new(line2, (16, 38), (FONT, 14).into_font()))?;
    let verdict = if s.problems.is_empty() {
        ("ok".to_string(), RGBColor(30, 120, 30))
    } else {
        (format!("FAILED: {}", s.problems.join("; ")), RGBColor(190, 20, 20))
    };
    head.draw(&Text::new(verdict.0, (16, 58), (FONT, 13).into_font().color(&verdict.1)))?;
    if let Some(spec) = &cfg.netsim {
        head.draw(&Text::new(
            format!("through netsim: {spec}"),
            (WIDTH as i32 / 2, 58),
            (FONT, 13).into_font(),
        ))?;
    }

    let (upper, lower) = body.split_vertically((HEIGHT - 78) * 58 / 100);

    // Latency per second of arrival (log scale: tails span orders of magnitude).
    let to_ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let lat: Vec<_> = seconds.iter().filter(|b| b.deliveries > 0).collect();
    let y_lo = lat.iter().map(|b| to_ms(b.p50_us)).fold(f64::INFINITY, f64::min);
    let y_hi = lat.iter().map(|b| to_ms(b.max_us)).fold(0.0, f64::max);
    // Headroom above the largest value for the legend.
    let (y_lo, y_hi) = if lat.is_empty() { (0.01, 10.0) } else { (y_lo / 1.5, y_hi * 5.0) };
    let y_lo = y_lo.max(0.001);
    let y_hi = y_hi.max(y_lo * 10.0);
    let mut chart = ChartBuilder::on(&upper)
        .caption("Latency from intended send time to arrival, per second", (FONT, 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(
            0f64..x_max,
            (y_lo..y_hi).log_scale().with_key_points(key_points(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of sending")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| format_ms(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    shade(&mut chart, cfg.warmup_s, send_s, x_max, y_lo, y_hi)?;
    let point = |f: fn(&super::stats::SecondSummary) -> u64| {
        lat.iter().map(move |b| (b.t_s as f64 + 0.5, to_ms(f(b)))).collect::<Vec<_>>()
    };
    for (name, color, width, pts) in [
        ("max", MAX, 1, point(|b| b.max_us)),
        ("p99", P99, 2, point(|b| b.p99_us)),
        ("p50", P50, 2, point(|b| b.p50_us)),
    ] {
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(width)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;

    // Deliveries per second against what the offered load should give.
    let offered = offered_per_s(s);
    let d_hi = seconds.iter().map(|b| b.deliveries as f64).fold(offered, f64::max).max(1.0) * 1.45;
    let mut chart = ChartBuilder::on(&lower)
        .caption("Deliveries per second", (FONT, 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..d_hi)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start of sending")
        .y_desc("deliveries/s")
        .y_label_formatter(&|v| format_count(*v))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()?;
    shade(&mut chart, cfg.warmup_s, send_s, x_max, 0.0, d_hi)?;
    chart
        .draw_series(seconds.iter().map(|b| {
            let x = b.t_s as f64;
            Rectangle::new([(x + 0.12, 0.0), (x + 0.88, b.deliveries as f64)], DELIVERED.filled())
        }))?
        .label("delivered in that second")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 22, y + 5)], DELIVERED.filled()));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, offered), (send_s, offered)],
            RGBColor(60, 60, 60).stroke_width(2),
        ))?
        .label("offered: rate x (members - 1)")
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 22, y)], RGBColor(60, 60, 60).stroke_width(2))
        });
    legend(&mut chart, SeriesLabelPosition::UpperMiddle)?;
    root.present()?;
    Ok(())
}

/// Draws the series' legend in a light box at `position`.
pub(super) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .label_font((FONT, 13))
        .draw()
}

/// Shades the warm-up and the drain.
fn shade<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    warmup_s: f64,
    send_s: f64,
    x_max: f64,
    y_lo: f64,
    y_hi: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let label = (FONT, 12).into_font().color(&RGBColor(110, 110, 110));
    if warmup_s > 0.0 {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(0.0, y_lo), (warmup_s, y_hi)],
            WARMUP.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new("warm-up", (0.05, y_hi), label.clone())))?;
    }
    if x_max > send_s {
        chart.draw_series(std::iter::once(Rectangle::new(
            [(send_s, y_lo), (x_max, y_hi)],
            DRAIN.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new("drain", (send_s + 0.05, y_hi), label)))?;
    }
    Ok(())
}

/// Deliveries per second the configured rate should produce with the members that connected.
fn offered_per_s(s: &Summary) -> f64 {
    let c = &s.config;
    if c.rooms == 0 {
        return 0.0;
    }
    let members_per_room = s.connections as f64 / c.rooms as f64;
    c.rate * c.rooms as f64 * (members_per_room - 1.0).max(0.0)
}

/// Tick values 1-2-5 per decade within the range (log axes otherwise crowd their labels).
pub(super) fn key_points(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut decade = 10f64.powi(lo.log10().floor() as i32);
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let x = decade * m;
            if x >= lo && x <= hi {
                v.push(x);
            }
        }
        decade *= 10.0;
    }
    v
}

fn ms(us: u64) -> String {
    if us < 1000 {
        format!("{us} us")
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

pub(super) fn format_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else if v >= 0.01 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub(super) fn format_count(v: f64) -> String {
    let short = |x: f64, unit: &str| {
        if (x - x.round()).abs() < 1e-6 {
            format!("{x:.0}{unit}")
        } else {
            format!("{x:.1}{unit}")
        }
    };
    if v >= 1e6 {
        short(v / 1e6, "M")
    } else if v >= 1e3 {
        short(v / 1e3, "k")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_are_distinct() {
        assert_eq!(format_count(1500.0), "1.5k");
        assert_eq!(format_count(2000.0), "2k");
        assert_eq!(format_count(250.0), "250");
        assert_eq!(format_count(1_250_000.0), "1.2M");
        assert_eq!(key_points(0.3, 30.0), vec![0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
    }
}
