//! `--plot FILE.svg`: the run as one picture, drawn with `plotters` into a self-contained SVG.
//!
//! Three panels, top to bottom:
//!
//! 1. **Throughput over time**: replies per second, one point per interval.
//! 2. **p99 latency over time**, µs: where a stall or a slow minute shows.
//! 3. **The latency percentile curve**, as HdrHistogram plots it: latency (µs) against the
//!    percentile on a log scale of 1/(1 − percentile), so that 90%, 99%, 99.9% and 99.99% are
//!    evenly spaced and the tail, which is what users feel, gets most of the picture.
//!
//! The SVG needs nothing else to be viewed: text is SVG `<text>` in a generic sans-serif font, so
//! no font files are needed to write it (the `plotters` SVG backend, without its font features).
//!
//! Next: `merge.rs`, several runs added up.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::timeline::TimelineRow;

/// Writes the picture of a run: its timeline rows and its whole latency histogram (ns).
pub fn write_plot(
    path: &Path,
    title: &str,
    timeline: &[TimelineRow],
    histogram: &Histogram<u64>,
) -> Result<(), String> {
    draw(path, title, timeline, histogram)
        .map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    timeline: &[TimelineRow],
    histogram: &Histogram<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 18))?;
    let panels = root.split_evenly((3, 1));
    let end = timeline.last().map_or(1.0, |r| r.elapsed_s).max(1e-3);

    let rates: Vec<(f64, f64)> = timeline
        .iter()
        .map(|r| (r.elapsed_s, r.msgs_per_sec))
        .collect();
    let top = rates.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("throughput (replies/s)", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart.configure_mesh().x_desc("s").draw()?;
    chart.draw_series(LineSeries::new(rates, &BLUE))?;

    let p99: Vec<(f64, f64)> = timeline
        .iter()
        .filter_map(|r| Some((r.elapsed_s, r.p99_us?)))
        .collect();
    let top = p99.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("p99 latency (µs)", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart.configure_mesh().x_desc("s").draw()?;
    chart.draw_series(LineSeries::new(p99, &RED))?;

    // x = log10(1 / (1 - q)): 1 is 90%, 2 is 99%, 3 is 99.9%.
    let curve: Vec<(f64, f64)> = if histogram.is_empty() {
        Vec::new()
    } else {
        histogram
            .iter_quantiles(5)
            .map(|v| {
                (
                    v.quantile_iterated_to(),
                    v.value_iterated_to() as f64 / 1000.0,
                )
            })
            .filter(|(q, _)| *q < 1.0)
            .map(|(q, us)| ((1.0 / (1.0 - q)).log10(), us))
            .collect()
    };
    let right = curve.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0);
    let top = (histogram.max() as f64 / 1000.0).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("latency by percentile (µs)", ("sans-serif", 14))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..right, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .x_label_formatter(&|x| format!("{}%", format_nines(*x)))
        .draw()?;
    chart.draw_series(LineSeries::new(curve, &BLACK))?;
    root.present()?;
    Ok(())
}

/// The percentile at x = log10(1 / (1 − q)): 0 → 0, 1 → 90, 2 → 99, 3 → 99.9.
fn format_nines(x: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{q:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_axis_counts_nines() {
        assert_eq!(format_nines(0.0), "0");
        assert_eq!(format_nines(1.0), "90");
        assert_eq!(format_nines(2.0), "99");
        assert_eq!(format_nines(3.0), "99.9");
    }
}
