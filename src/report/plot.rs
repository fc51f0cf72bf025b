//! Charts as inline SVG, drawn with plotters' SVG backend. Text is emitted as SVG `<text>`
//! (plotters' built-in layout estimate; no font files), so the browser renders the labels.
//! Every time chart shades the fault windows with [`FAULT_FILL`].

use chrono::{TimeZone, Utc};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use super::timeline::{Ms, Timeline};

/// The shading of fault windows; the page's legend and the browser test look for this colour.
pub const FAULT_FILL: RGBColor = RGBColor(255, 140, 0);
pub const FAULT_OPACITY: f64 = 0.18;
/// As plotters writes it into the SVG (`fill="#FF8C00"`).
pub const FAULT_FILL_HEX: &str = "#FF8C00";

pub const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

pub const WIDTH: u32 = 900;

/// Time axes run in epoch minutes, so plotters' "nice" ticks fall on whole clock minutes.
fn minutes(t: Ms) -> f64 {
    t as f64 / 60_000.0
}

fn x_range(tl: &Timeline) -> std::ops::Range<f64> {
    minutes(tl.start)..minutes(tl.end)
}

/// An axis label: UTC clock time, with seconds on runs shorter than 10 minutes.
fn clock(tl: &Timeline, m: f64) -> String {
    let fmt = if tl.end - tl.start < 600_000 {
        "%H:%M:%S"
    } else {
        "%H:%M"
    };
    Utc.timestamp_millis_opt((m * 60_000.0).round() as Ms)
        .single()
        .map_or_else(String::new, |d| d.format(fmt).to_string())
}

/// Compact numbers for axis labels: 1.2k, 3.4M, 0.05.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn y_range(lines: &[Series<'_>]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for s in lines {
        for &(_, v) in s.points {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let lo = lo.min(0.0);
    let hi = if hi <= lo {
        lo + 1.0
    } else {
        hi + (hi - lo) * 0.08
    };
    (lo, hi)
}

/// One line of a time chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub points: &'a [(Ms, f64)],
}

type DrawResult = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

/// A time chart over the whole run with the fault windows shaded.
pub fn time_chart(
    title: &str,
    y_desc: &str,
    tl: &Timeline,
    lines: &[Series<'_>],
    height: u32,
) -> String {
    let mut buf = String::new();
    let res: DrawResult = (|| {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (y0, y1) = y_range(lines);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size(60)
            .build_cartesian_2d(x_range(tl), y0..y1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(5)
            .x_label_formatter(&|m| clock(tl, *m))
            .y_label_formatter(&|v| short(*v))
            .y_desc(y_desc)
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(tl.faults.iter().map(|w| {
                Rectangle::new(
                    [(minutes(w.start), y0), (minutes(w.end), y1)],
                    FAULT_FILL.mix(FAULT_OPACITY).filled(),
                )
            }))
            .map_err(err)?;
        for (i, s) in lines.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().map(|&(t, v)| (minutes(t), v)),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        if lines.len() > 1 || lines.first().is_some_and(|l| !l.label.is_empty()) {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)
    })();
    finish(buf, res)
}

fn finish(buf: String, res: DrawResult) -> String {
    match res {
        Ok(()) => buf,
        Err(e) => format!(
            "<p class=\"absent\">chart could not be drawn: {}</p>",
            super::html::esc(&e)
        ),
    }
}

/// One bar of the step timeline.
pub struct Bar<'a> {
    pub label: String,
    pub start: Option<Ms>,
    pub end: Option<Ms>,
    pub status: &'a str,
}

pub fn status_color(status: &str) -> RGBColor {
    match status {
        "succeeded" => RGBColor(46, 160, 67),
        "failed" => RGBColor(215, 48, 39),
        "running" => RGBColor(31, 119, 180),
        "cancelled" => RGBColor(90, 90, 90),
        "skipped" => RGBColor(170, 170, 170),
        _ => RGBColor(200, 200, 200),
    }
}

/// A Gantt chart: one row per step (first step on top), fault windows shaded behind.
pub fn gantt(tl: &Timeline, bars: &[Bar<'_>]) -> String {
    let n = bars.len().max(1);
    let height = (n as u32 * 26 + 70).min(2400);
    let mut buf = String::new();
    let res: DrawResult = (|| {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let longest = bars.iter().map(|b| b.label.len()).max().unwrap_or(8);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size((longest as u32 * 7 + 12).clamp(80, 320))
            .build_cartesian_2d(x_range(tl), (0..n).into_segmented())
            .map_err(err)?;
        let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
        chart
            .configure_mesh()
            .x_labels(8)
            .y_labels(n)
            .x_label_formatter(&|m| clock(tl, *m))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => n
                    .checked_sub(1 + *i)
                    .and_then(|k| labels.get(k))
                    .map_or_else(String::new, |s| (*s).to_string()),
                _ => String::new(),
            })
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(tl.faults.iter().map(|w| {
                Rectangle::new(
                    [
                        (minutes(w.start), SegmentValue::Exact(0)),
                        (minutes(w.end), SegmentValue::Last),
                    ],
                    FAULT_FILL.mix(FAULT_OPACITY).filled(),
                )
            }))
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
                let start = b.start?;
                // A step still running (or cut off) ends at the run's end.
                let end = b.end.unwrap_or(tl.end).max(start + tl.bin_ms / 20);
                let row = n - 1 - i;
                let mut r = Rectangle::new(
                    [
                        (minutes(start), SegmentValue::Exact(row)),
                        (minutes(end), SegmentValue::Exact(row + 1)),
                    ],
                    status_color(b.status).filled(),
                );
                r.set_margin(4, 4, 0, 0);
                Some(r)
            }))
            .map_err(err)?;
        root.present().map_err(err)
    })();
    finish(buf, res)
}

/// Horizontal bars in 0..=100 (coverage %), one per row, first on top.
pub fn percent_bars(rows: &[(String, f64)]) -> String {
    let n = rows.len().max(1);
    let height = (n as u32 * 18 + 60).min(2400);
    let mut buf = String::new();
    let res: DrawResult = (|| {
        let root = SVGBackend::with_string(&mut buf, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let longest = rows.iter().map(|r| r.0.len()).max().unwrap_or(8);
        let mut chart = ChartBuilder::on(&root)
            .margin(8)
            .x_label_area_size(26)
            .y_label_area_size((longest as u32 * 7 + 12).clamp(80, 320))
            .build_cartesian_2d(0f64..100f64, (0..n).into_segmented())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(11)
            .y_labels(n)
            .x_desc("line coverage %")
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => n
                    .checked_sub(1 + *i)
                    .and_then(|k| rows.get(k))
                    .map_or_else(String::new, |r| r.0.clone()),
                _ => String::new(),
            })
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, pct))| {
                let row = n - 1 - i;
                let mut r = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (pct.clamp(0.0, 100.0), SegmentValue::Exact(row + 1)),
                    ],
                    PALETTE[0].filled(),
                );
                r.set_margin(2, 2, 0, 0);
                r
            }))
            .map_err(err)?;
        root.present().map_err(err)
    })();
    finish(buf, res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::timeline::Window;

    fn has_text(svg: &str, s: &str) -> bool {
        svg.contains(&format!(">\n{s}\n</text>"))
    }

    #[test]
    fn a_time_chart_is_svg_with_the_fault_shaded_and_text_labels() {
        let tl = Timeline::new(
            0,
            3_600_000,
            vec![Window {
                start: 600_000,
                end: 1_200_000,
            }],
        );
        let pts: Vec<(Ms, f64)> = (0..60).map(|i| (i * 60_000, f64::from(i as i32))).collect();
        let svg = time_chart(
            "CPU",
            "cores",
            &tl,
            &[Series {
                label: "pod-a",
                points: &pts,
            }],
            240,
        );
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(
            svg.contains(&format!("fill=\"{FAULT_FILL_HEX}\"")),
            "shading"
        );
        assert!(
            has_text(&svg, "pod-a") && has_text(&svg, "00:30") && !svg.contains("00:16"),
            "labels as text: {svg}"
        );
    }

    #[test]
    fn gantt_rows_are_labelled_and_coloured_by_status() {
        let tl = Timeline::new(0, 600_000, vec![]);
        let bars = [
            Bar {
                label: "inject ×2".into(),
                start: Some(0),
                end: Some(60_000),
                status: "succeeded",
            },
            Bar {
                label: "skipped".into(),
                start: None,
                end: None,
                status: "skipped",
            },
        ];
        let svg = gantt(&tl, &bars);
        assert!(
            has_text(&svg, "inject ×2") && has_text(&svg, "skipped"),
            "{svg}"
        );
        assert!(svg.contains("fill=\"#2EA043\""), "succeeded colour");
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(0.25), "0.250");
        assert_eq!(short(12.0), "12.0");
    }
}
