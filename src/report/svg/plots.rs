//! The plots, drawn with plotters' SVG backend into strings: latency over time (log scale, faults
//! shaded), latency quantiles per time bin, throughput by outcome, siblings per read, and the
//! consistency window. Text is left to the browser (plotters' SVG backend writes `<text>`), so no font
//! files are needed.

use super::super::series::{Point, QuantileBin, RateBin, Series, contiguous};
use super::super::timeline::Tone;
use dynamo_checker::history::ClientF;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// The size of one plot, px.
pub const PLOT_SIZE: (u32, u32) = (580, 300);

const GET: RGBColor = RGBColor(31, 119, 180);
const PUT: RGBColor = RGBColor(148, 103, 189);
const DELETE: RGBColor = RGBColor(127, 127, 127);
const OK: RGBColor = RGBColor(58, 157, 93);
const FAIL: RGBColor = RGBColor(214, 69, 69);
const INFO: RGBColor = RGBColor(224, 160, 48);
const GRID: RGBColor = RGBColor(225, 225, 225);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// A line of a plot: its legend label, colour, and the value it takes from a bin.
type Line<B> = (&'static str, RGBColor, fn(&B) -> f64);

/// The colour of a fault kind's shading (as in the timeline's CSS).
pub fn shade_color(kind: &str) -> RGBColor {
    match kind {
        "partition" => RGBColor(123, 97, 255),
        "crash" => RGBColor(214, 69, 69),
        "wipe" => RGBColor(139, 0, 0),
        "skew" => RGBColor(30, 136, 229),
        "loss" => RGBColor(255, 152, 0),
        "slow" => RGBColor(0, 137, 123),
        "membership" => RGBColor(109, 76, 65),
        _ => RGBColor(128, 128, 128),
    }
}

fn f_color(f: ClientF) -> RGBColor {
    match f {
        ClientF::Get => GET,
        ClientF::Put => PUT,
        ClientF::Delete => DELETE,
    }
}

/// Draws into a fresh SVG string; a drawing error becomes a note in its place.
fn canvas(draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>) -> String {
    let mut buf = String::new();
    let outcome = {
        let root = SVGBackend::with_string(&mut buf, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.into()))
    };
    match outcome {
        Ok(()) => buf,
        Err(e) => format!(r#"<p class="note">This plot could not be drawn: {e}</p>"#),
    }
}

/// A y range for latencies on a log scale, in ms, over the positive values (a zero latency is drawn
/// at the bottom edge).
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|&v| v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (0.1, 10.0);
    }
    (lo / 1.5, hi * 1.5)
}

/// An axis label without needless decimals: 1000, 10, 0.5.
fn tick(v: &f64) -> String {
    if *v >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Shades fault intervals over the full height of a chart.
fn shade<DB: DrawingBackend, Y: Ranged>(
    chart: &mut ChartContext<DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    s: &Series,
    lo: Y::ValueType,
    hi: Y::ValueType,
) -> Result<()>
where
    Y::ValueType: Clone + 'static,
{
    chart
        .draw_series(s.shades.iter().map(|(a, b, kind)| {
            Rectangle::new(
                [(*a, lo.clone()), (b.max(*a + s.end_s / 500.0), hi.clone())],
                shade_color(kind).mix(0.13).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// One quantile as a line per run of non-empty bins; returns the last run's annotation for the
/// legend.
fn quantile_line<'c, 'b, DB: DrawingBackend + 'b, Y: Ranged<ValueType = f64>>(
    chart: &'c mut ChartContext<'b, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    runs: Vec<&[QuantileBin]>,
    pick: fn(&QuantileBin) -> f64,
    lo: f64,
    style: ShapeStyle,
) -> Result<&'c mut plotters::chart::SeriesAnno<'b, DB>>
where
    DB::ErrorType: 'static,
{
    // A run of one bin is a point, which a line does not show.
    let single = runs.iter().filter(|r| r.len() == 1).map(|r| &r[0]);
    chart.draw_series(single.map(|b| Circle::new((b.t_s, pick(b).max(lo)), 2, style.filled())))?;
    let mut runs = runs.into_iter().peekable();
    let mut last = Vec::new();
    while let Some(run) = runs.next() {
        let points: Vec<(f64, f64)> = run.iter().map(|b| (b.t_s, pick(b).max(lo))).collect();
        if runs.peek().is_none() {
            last = points;
            break;
        }
        chart.draw_series(LineSeries::new(points, style))?;
    }
    Ok(chart.draw_series(LineSeries::new(last, style))?)
}

/// The chart of a latency plot: latency (ms, log scale from `lo` to `hi`) over the run's time (s),
/// its mesh drawn and the faults shaded.
fn latency_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    s: &Series,
    lo: f64,
    hi: f64,
) -> Result<ChartContext<'a, SVGBackend<'b>, LatencyCoord>> {
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..s.end_s.max(0.001), (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .light_line_style(GRID.mix(0.5))
        .bold_line_style(GRID)
        .x_desc("time (s)")
        .y_desc("latency (ms)")
        .y_labels(6)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .draw()?;
    shade(&mut chart, s, lo, hi)?;
    Ok(chart)
}

/// The coordinates of [`latency_chart`].
type LatencyCoord = Cartesian2d<
    plotters::coord::types::RangedCoordf64,
    plotters::coord::combinators::LogCoord<f64>,
>;

/// Draws a chart's legend, upper right.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(GRID)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Latency of every operation over time, log scale, coloured by operation; fail and info marked.
pub fn latency_raw(s: &Series) -> String {
    canvas(|root| {
        let fine = !s.fine.is_empty();
        let (lo, hi) = if fine {
            log_range(s.fine.iter().flat_map(|b| [b.p50_ms, b.max_ms]))
        } else {
            log_range(s.points.iter().map(|p| p.latency_ms))
        };
        let mut chart = latency_chart(root, s, lo, hi)?;
        if fine {
            let lines: [Line<QuantileBin>; 2] =
                [("p50", OK, |b| b.p50_ms), ("max", FAIL, |b| b.max_ms)];
            for (label, color, pick) in lines {
                let runs = contiguous(&s.fine, s.fine_bin_s);
                quantile_line(&mut chart, runs, pick, lo, color.stroke_width(1))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color));
            }
        } else {
            for f in [ClientF::Get, ClientF::Put, ClientF::Delete] {
                let pts: Vec<&Point> = s
                    .points
                    .iter()
                    .filter(|p| p.f == f && p.tone == Tone::Ok)
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let color = f_color(f);
                chart
                    .draw_series(pts.iter().map(|p| {
                        Circle::new((p.t_s, p.latency_ms.max(lo)), 2, color.mix(0.6).filled())
                    }))?
                    .label(format!("{} ok", f.as_str()))
                    .legend(move |(x, y)| Circle::new((x + 7, y), 3, color.filled()));
            }
            let fails: Vec<&Point> = s.points.iter().filter(|p| p.tone == Tone::Fail).collect();
            if !fails.is_empty() {
                chart
                    .draw_series(fails.iter().map(|p| {
                        Cross::new((p.t_s, p.latency_ms.max(lo)), 3, FAIL.stroke_width(1))
                    }))?
                    .label("fail")
                    .legend(|(x, y)| Cross::new((x + 7, y), 3, FAIL.stroke_width(1)));
            }
            let infos: Vec<&Point> = s.points.iter().filter(|p| p.tone == Tone::Info).collect();
            if !infos.is_empty() {
                chart
                    .draw_series(infos.iter().map(|p| {
                        TriangleMarker::new((p.t_s, p.latency_ms.max(lo)), 4, INFO.filled())
                    }))?
                    .label("info")
                    .legend(|(x, y)| TriangleMarker::new((x + 7, y), 4, INFO.filled()));
            }
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// Latency quantiles of ok operations per time bin.
pub fn latency_quantiles(s: &Series) -> String {
    canvas(|root| {
        let (lo, hi) = log_range(s.quantiles.iter().flat_map(|b| [b.p50_ms, b.max_ms]));
        let mut chart = latency_chart(root, s, lo, hi)?;
        let lines: [Line<QuantileBin>; 4] = [
            ("p50", OK, |b| b.p50_ms),
            ("p95", GET, |b| b.p95_ms),
            ("p99", INFO, |b| b.p99_ms),
            ("max", FAIL, |b| b.max_ms),
        ];
        for (label, color, pick) in lines {
            let runs = contiguous(&s.quantiles, s.bin_s);
            quantile_line(&mut chart, runs, pick, lo, color.stroke_width(2))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// Operations completed per second, by outcome.
pub fn throughput(s: &Series) -> String {
    canvas(|root| {
        let hi = s
            .rates
            .iter()
            .map(|r| r.ok.max(r.fail).max(r.info))
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d(0.0..s.end_s.max(0.001), 0.0..hi)?;
        chart
            .configure_mesh()
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .x_desc("time (s)")
            .y_desc("operations / s")
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .draw()?;
        shade(&mut chart, s, 0.0, hi)?;
        let lines: [Line<RateBin>; 3] = [
            ("ok", OK, |r| r.ok),
            ("fail", FAIL, |r| r.fail),
            ("info", INFO, |r| r.info),
        ];
        for (label, color, pick) in lines {
            chart
                .draw_series(LineSeries::new(
                    s.rates.iter().map(|r| (r.t_s, pick(r))),
                    color.stroke_width(2),
                ))?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                });
        }
        legend(&mut chart)?;
        Ok(())
    })
}

/// A bar chart over named categories.
fn bars(labels: &[&str], values: &[f64], y_desc: &str, color: RGBColor) -> String {
    canvas(|root| {
        let hi = values.iter().copied().fold(1.0, f64::max) * 1.15;
        let n = labels.len() as u32;
        let mut chart = ChartBuilder::on(root)
            .margin(10)
            .x_label_area_size(32)
            .y_label_area_size(52)
            .build_cartesian_2d((0u32..n).into_segmented(), 0.0..hi)?;
        let label = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                labels.get(*i as usize).copied().unwrap_or("").to_owned()
            }
            SegmentValue::Last => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(GRID.mix(0.5))
            .bold_line_style(GRID)
            .x_labels(labels.len())
            .x_label_formatter(&label)
            .y_label_formatter(&tick)
            .y_desc(y_desc)
            .draw()?;
        // Rectangles rather than plotters' Histogram, which sums through a HashMap and so draws
        // its bars in a different order every run: the page must be a function of the run.
        chart.draw_series(values.iter().enumerate().map(|(i, v)| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i as u32), 0.0),
                    (SegmentValue::Exact(i as u32 + 1), *v),
                ],
                color.mix(0.8).filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))?;
        // The value over each bar: a zero bar is otherwise invisible.
        chart.draw_series(values.iter().enumerate().map(|(i, v)| {
            Text::new(
                tick(v),
                (SegmentValue::CenterOf(i as u32), *v + hi * 0.02),
                ("sans-serif", 12)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
        Ok(())
    })
}

/// How many siblings ok reads returned (the Dynamo paper's versions-per-read table).
pub fn siblings(s: &Series) -> String {
    let values: Vec<f64> = s.siblings.iter().map(|&c| c as f64).collect();
    bars(&["0", "1", "2", "3", "4+"], &values, "reads", GET)
}

/// The checker's consistency window quantiles; `None` when the checker did not compute it.
pub fn window(s: &Series) -> Option<String> {
    let w = s.window?;
    Some(bars(
        &["p50", "p95", "p99", "max"],
        &[w.p50_ms, w.p95_ms, w.p99_ms, w.max_ms],
        "window (ms)",
        PUT,
    ))
}

/// P(fresh | t): the share of client reads that saw the latest write acknowledged t ms before
/// they started, per bin of t (the PBS curve); `None` without the checker's figure.
pub fn visibility(s: &Series) -> Option<String> {
    if s.visibility.is_empty() {
        return None;
    }
    let labels: Vec<&str> = s.visibility.iter().map(|b| b.label.as_str()).collect();
    let values: Vec<f64> = s
        .visibility
        .iter()
        .map(|b| (b.fresh_share * 1e3).round() / 10.0)
        .collect();
    Some(bars(&labels, &values, "fresh reads (%)", GET))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::series::Window;

    fn series() -> Series {
        Series {
            end_s: 10.0,
            shades: vec![(2.0, 4.0, "partition".into())],
            points: vec![
                Point {
                    t_s: 1.0,
                    latency_ms: 5.0,
                    f: ClientF::Get,
                    tone: Tone::Ok,
                },
                Point {
                    t_s: 3.0,
                    latency_ms: 1000.0,
                    f: ClientF::Put,
                    tone: Tone::Info,
                },
            ],
            fine: Vec::new(),
            bin_s: 1.0,
            fine_bin_s: 0.1,
            quantiles: vec![QuantileBin {
                t_s: 1.0,
                count: 1,
                p50_ms: 5.0,
                p95_ms: 5.0,
                p99_ms: 5.0,
                max_ms: 5.0,
            }],
            rates: vec![RateBin {
                t_s: 1.0,
                ok: 3.0,
                fail: 0.0,
                info: 1.0,
            }],
            siblings: [1, 20, 3, 0, 0],
            window: Some(Window {
                count: 3,
                p50_ms: 1.0,
                p95_ms: 2.0,
                p99_ms: 2.0,
                max_ms: 4.0,
                never: 0,
            }),
            visibility: vec![crate::report::series::VisibilityBin {
                label: "3-4".into(),
                pairs: 10,
                fresh_share: 0.9,
            }],
        }
    }

    #[test]
    fn every_plot_draws_an_svg_with_its_labels() {
        let s = series();
        for (name, svg) in [
            ("raw", latency_raw(&s)),
            ("quantiles", latency_quantiles(&s)),
            ("throughput", throughput(&s)),
            ("siblings", siblings(&s)),
            ("window", window(&s).unwrap()),
            ("visibility", visibility(&s).unwrap()),
        ] {
            assert!(
                svg.starts_with("<svg"),
                "{name}: {}",
                &svg[..svg.len().min(200)]
            );
            assert!(svg.trim_end().ends_with("</svg>"), "{name}");
        }
        assert!(latency_raw(&s).contains("info"));
        assert!(siblings(&s).contains("\n4+\n"));
        assert!(throughput(&s).contains("operations / s"));
        assert!(visibility(&s).unwrap().contains("fresh reads (%)"));
    }
}
