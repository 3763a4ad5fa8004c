//! HdrHistogram's percentile-distribution text format (`.hgrm`, as written by
//! Java's `outputPercentileDistribution` and read by HdrHistogram's plotter):
//! a header, one row per percentile tick with the value in milliseconds, and
//! the `#[Mean ...]`, `#[Max ...]`, `#[Buckets ...]` footer. The `hdrhistogram`
//! crate does not write it, so this module does, and parses it back.

use std::io::{self, Write};

use hdrhistogram::Histogram;

/// Ticks per half distance to 100%, as HdrHistogram's default.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Sub-buckets per bucket for a histogram with `sigfig` significant digits and
/// a lowest discernible value of 1 (HdrHistogram's formula).
pub fn sub_bucket_count(sigfig: u8) -> u32 {
    let largest_single_unit = 2.0 * 10f64.powi(i32::from(sigfig));
    let magnitude = largest_single_unit.log2().ceil() as u32;
    1u32 << magnitude.max(1)
}

/// Write `h` (values in µs) as a percentile distribution with values in ms.
pub fn write_distribution(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    write_scaled(h, 1000.0, TICKS_PER_HALF_DISTANCE, out)
}

/// Write `h` with values divided by `scale`.
pub fn write_scaled(
    h: &Histogram<u64>,
    scale: f64,
    ticks: u32,
    out: &mut impl Write,
) -> io::Result<()> {
    let digits = usize::from(h.sigfig());
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(ticks) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:>12.digits$} {q:>2.12} {total:>10}")?;
            }
        }
    }
    let max = if h.is_empty() { 0 } else { h.max() };
    writeln!(
        out,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        h.mean() / scale,
        h.stdev() / scale
    )?;
    writeln!(
        out,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        max as f64 / scale,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_bucket_count(h.sigfig())
    )?;
    Ok(())
}

/// One row of a distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub value: f64,
    pub percentile: f64,
    pub total_count: u64,
    /// `1/(1-Percentile)`; absent on the 100% row.
    pub inverse: Option<f64>,
}

/// A parsed `.hgrm` file.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub rows: Vec<Row>,
    pub mean: f64,
    pub stdev: f64,
    pub max: f64,
    pub total_count: u64,
    pub buckets: u32,
    pub sub_buckets: u32,
}

fn footer_pair(line: &str, first: &str, second: &str) -> Result<(String, String), String> {
    let inner = line
        .strip_prefix("#[")
        .and_then(|l| l.strip_suffix(']'))
        .ok_or_else(|| format!("bad footer line: {line}"))?;
    let (a, b) = inner
        .split_once(',')
        .ok_or_else(|| format!("bad footer line: {line}"))?;
    let value = |part: &str, key: &str| -> Result<String, String> {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("bad footer field: {part}"))?;
        if k.trim() != key {
            return Err(format!("expected {key}, got {}", k.trim()));
        }
        Ok(v.trim().to_string())
    };
    Ok((value(a, first)?, value(b, second)?))
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("not a number: {s}"))
}

/// Parse the text format back (as a plotter would).
pub fn parse(text: &str) -> Result<Distribution, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty file")?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    if cols != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        return Err(format!("bad header: {header}"));
    }
    let mut rows = Vec::new();
    let mut footer = Vec::new();
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("#[") {
            footer.push(line);
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if !(f.len() == 3 || f.len() == 4) {
            return Err(format!("bad row: {line}"));
        }
        rows.push(Row {
            value: num(f[0])?,
            percentile: num(f[1])?,
            total_count: num(f[2])?,
            inverse: f.get(3).map(|s| num(s)).transpose()?,
        });
    }
    if footer.len() != 3 {
        return Err(format!("expected 3 footer lines, got {}", footer.len()));
    }
    let (mean, stdev) = footer_pair(footer[0], "Mean", "StdDeviation")?;
    let (max, total) = footer_pair(footer[1], "Max", "Total count")?;
    let (buckets, sub) = footer_pair(footer[2], "Buckets", "SubBuckets")?;
    Ok(Distribution {
        rows,
        mean: num(&mean)?,
        stdev: num(&stdev)?,
        max: num(&max)?,
        total_count: num(&total)?,
        buckets: num(&buckets)?,
        sub_buckets: num(&sub)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::new_histogram;

    fn sample() -> Histogram<u64> {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.saturating_record(v * 10); // 10 µs .. 100 ms
        }
        h
    }

    fn render(h: &Histogram<u64>) -> String {
        let mut buf = Vec::new();
        write_distribution(h, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn exact_format_lines() {
        let text = render(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       0.010 0.000000000000          1           1.00"
        );
        let last_row = lines[lines.len() - 4];
        assert_eq!(last_row, "     100.031 1.000000000000      10000");
        let n = lines.len();
        assert!(
            lines[n - 3].starts_with("#[Mean    =       50.0"),
            "{}",
            lines[n - 3]
        );
        assert!(
            lines[n - 3].contains(", StdDeviation   =       28.8"),
            "{}",
            lines[n - 3]
        );
        assert_eq!(
            lines[n - 2],
            "#[Max     =      100.031, Total count    =        10000]"
        );
        assert_eq!(
            lines[n - 1],
            "#[Buckets =           16, SubBuckets     =         2048]"
        );
        // A middle row: value, percentile, count, 1/(1-p).
        assert!(
            lines.contains(&"      50.015 0.500000000000       5001           2.00"),
            "{text}"
        );
    }

    #[test]
    fn round_trips_through_the_parser() {
        let h = sample();
        let d = parse(&render(&h)).unwrap();
        assert_eq!(d.total_count, 10_000);
        assert_eq!(d.sub_buckets, 2048);
        assert!((d.max - h.max() as f64 / 1000.0).abs() < 1e-9);
        assert!((d.mean - h.mean() / 1000.0).abs() < 0.001);
        let last = d.rows.last().unwrap();
        assert_eq!(
            (last.percentile, last.total_count, last.inverse),
            (1.0, 10_000, None)
        );
        // Monotone, and every row but the last has 1/(1-p).
        for w in d.rows.windows(2) {
            assert!(w[0].value <= w[1].value && w[0].percentile <= w[1].percentile);
            assert!(w[0].total_count <= w[1].total_count);
            let inv = w[0].inverse.unwrap();
            assert!((inv - 1.0 / (1.0 - w[0].percentile)).abs() < 0.01 * inv.max(1.0));
        }
        // Values match the histogram's own percentiles.
        let p99 = d.rows.iter().find(|r| r.percentile >= 0.99).unwrap();
        assert!((p99.value - h.value_at_quantile(0.99) as f64 / 1000.0).abs() < 0.2);
    }

    #[test]
    fn empty_histogram_is_still_well_formed() {
        let d = parse(&render(&new_histogram())).unwrap();
        assert!(d.rows.is_empty());
        assert_eq!(d.total_count, 0);
    }

    #[test]
    fn parser_rejects_garbage() {
        assert!(parse("").is_err());
        assert!(parse("Value Percentile\n").is_err());
        let mut t = render(&sample());
        t.push_str("oops\n");
        assert!(parse(&t).is_err());
    }

    #[test]
    fn sub_bucket_formula() {
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
        assert_eq!(sub_bucket_count(1), 32);
    }
}
