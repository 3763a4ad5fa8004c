//! The SVG plots next to RESULTS.md: latency percentile curves as HdrHistogram's plotter draws
//! them (x: percentile on a log `1/(1-p)` axis; y: latency; one line per proxy) from the
//! `.hgrm` files tollgate-load writes, and a grouped throughput bar chart; one color per proxy.

use plotters::prelude::*;
use plotters::style::text_anchor;
use std::path::Path;

/// One point of a percentile distribution: (percentile in 0..1, latency in ms).
pub type Point = (f64, f64);

/// Parses HdrHistogram's `.hgrm` text (Value, Percentile, TotalCount, 1/(1-Percentile)).
/// The final 100% row (no fourth column) is left out: it cannot be placed on a log axis.
pub fn parse_hgrm(text: &str) -> Vec<Point> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            if cols.len() != 4 {
                return None;
            }
            let value: f64 = cols[0].parse().ok()?;
            let pct: f64 = cols[1].parse().ok()?;
            (pct < 1.0 && value.is_finite()).then_some((pct, value))
        })
        .collect()
}

/// Line and bar colors per color index (see `ProxyKind::color`: 0 tollgate (blue), 1 nginx
/// (green), 2 HAProxy (red), 3 tollgate-poll (purple), 4 tollgate-stock (orange)).
pub fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 5] = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
    ];
    C[i % C.len()]
}

fn pct_label(x: f64) -> String {
    // x = 1/(1-p)  =>  p = 1 - 1/x
    let p = (1.0 - 1.0 / x) * 100.0;
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// One line of a latency chart: name, color index (see [`color`]) and points.
pub type Series = (String, usize, Vec<Point>);

/// Draws latency-vs-percentile curves, one per series.
pub fn latency_chart(path: &Path, title: &str, series: &[Series]) -> Result<(), String> {
    let to_x = |p: f64| 1.0 / (1.0 - p);
    let x_max = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|&(p, _)| to_x(p)))
        .fold(10.0f64, f64::max);
    // Round up to a power of ten so that the labels fall on 90%, 99%, 99.9%, ...
    let x_max = 10f64.powf(x_max.log10().ceil());
    let y_max = series
        .iter()
        .flat_map(|(_, _, pts)| pts.iter().map(|&(_, v)| v))
        .fold(0.0f64, f64::max)
        .max(0.001)
        * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| pct_label(*x))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (name, ci, pts) in series {
        let c = color(*ci);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(p, v)| (to_x(p), v)),
                c.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Height of a bar chart and the part of it the plot takes (margins, caption, x labels).
const BAR_CHART_HEIGHT: u32 = 500;
const BAR_PLOT_HEIGHT: f64 = 400.0;

/// The y range of a bar chart as a multiple of its tallest bar: enough room above the bars for
/// the legend in the upper right (15 px per series and its frame), at least 15%.
fn bar_headroom(series: usize) -> f64 {
    let legend = (15 * series + 25) as f64;
    (1.0 / (1.0 - (legend / BAR_PLOT_HEIGHT).min(0.5))).max(1.15)
}

/// Draws grouped bars: for each group (scenario), one bar per series (proxy: name and color
/// index). `values[g][s]` is series `s` in group `g` (None: not measured).
pub fn bar_chart(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[String],
    series: &[(String, usize)],
    values: &[Vec<Option<f64>>],
) -> Result<(), String> {
    let n = groups.len().max(1);
    let y_max = values
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1.0)
        * bar_headroom(series.len());
    let root = SVGBackend::new(path, (180 * n as u32 + 200, BAR_CHART_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    for (s, (name, ci)) in series.iter().enumerate() {
        let c = color(*ci);
        let bars: Vec<Rectangle<(f64, f64)>> = values
            .iter()
            .enumerate()
            .filter_map(|(g, row)| {
                let v = (*row.get(s)?)?;
                let x0 = g as f64 + 0.1 + s as f64 * width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.9, v)],
                    c.filled(),
                ))
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    // Group names under the axis, centred on their groups.
    let style = ("sans-serif", 15)
        .into_font()
        .color(&BLACK)
        .pos(text_anchor::Pos::new(
            text_anchor::HPos::Center,
            text_anchor::VPos::Top,
        ));
    for (g, name) in groups.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.as_str(), (px, py + 8), style.clone()))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HGRM: &str = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n\
        \x20     0.050 0.000000000000          1           1.00\n\
        \x20     0.100 0.500000000000        500           2.00\n\
        \x20     0.900 0.990000000000        990         100.00\n\
        \x20     1.500 1.000000000000       1000\n\
        #[Mean    =        0.120, StdDeviation   =        0.050]\n\
        #[Max     =        1.500, Total count    =         1000]\n";

    #[test]
    fn parses_hgrm_rows() {
        assert_eq!(parse_hgrm(HGRM), vec![(0.0, 0.05), (0.5, 0.1), (0.99, 0.9)]);
        assert!(parse_hgrm("").is_empty());
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(pct_label(1.0), "0%");
        assert_eq!(pct_label(10.0), "90%");
        assert_eq!(pct_label(1000.0), "99.9%");
    }

    #[test]
    fn draws_svgs() {
        let dir = std::env::temp_dir().join(format!("tollgate-bench-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let lat = dir.join("lat.svg");
        latency_chart(
            &lat,
            "latency",
            &[
                ("tollgate".into(), 0, parse_hgrm(HGRM)),
                ("nginx".into(), 1, vec![]),
            ],
        )
        .expect("latency chart");
        let svg = std::fs::read_to_string(&lat).expect("svg");
        assert!(svg.starts_with("<svg") && svg.contains("tollgate") && svg.contains("99%"));
        let bars = dir.join("bars.svg");
        bar_chart(
            &bars,
            "throughput",
            "req/s",
            &["plain".into(), "64k".into()],
            &[("tollgate".into(), 0), ("nginx".into(), 1)],
            &[vec![Some(10.0), Some(20.0)], vec![Some(5.0), None]],
        )
        .expect("bar chart");
        let svg = std::fs::read_to_string(&bars).expect("svg");
        assert!(svg.contains("plain") && svg.contains("<rect"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bar_legend_has_room() {
        // 4 series: 85 px of legend in 400 px of plot; 5 series: 100 px.
        assert!((bar_headroom(4) - 400.0 / 315.0).abs() < 1e-9);
        assert!((bar_headroom(5) - 400.0 / 300.0).abs() < 1e-9);
        assert_eq!(bar_headroom(0), 1.15);
        assert_eq!(bar_headroom(100), 2.0);
    }

    #[test]
    fn every_proxy_has_its_own_color() {
        // Five proxies (tollgate, nginx, HAProxy, tollgate-poll, tollgate-stock): five colors.
        let colors: Vec<RGBColor> = (0..5).map(color).collect();
        for (i, c) in colors.iter().enumerate() {
            assert!(!colors[..i].contains(c), "color {i} repeats");
        }
    }
}
