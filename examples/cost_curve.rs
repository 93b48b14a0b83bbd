//! Draws the poll → epoll → threads cost curve that `scripts/cost-curve.sh` measured: server CPU
//! per message against connections, one line per server, both axes logarithmic (the guide's
//! "Why epoll" picture, docs/cost-curve.svg).
//!
//! ```text
//! cargo run --release --example cost_curve -- cost-curve.tsv docs/cost-curve.svg
//! ```
//!
//! The input is the script's TSV table: a header line, then `model connections busy msgs_per_s
//! cpu_us_per_msg syscalls_per_msg rss_bytes_per_conn` per row. The SVG is drawn with `plotters`,
//! as `load --plot` draws its own, and needs no font files (its text is SVG `<text>`).

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;

/// One server's measurements: (connections, CPU µs per message), in the order measured.
struct Curve {
    model: String,
    points: Vec<(f64, f64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [table, svg] = &args[..] else {
        eprintln!("usage: cost_curve TABLE.tsv OUT.svg");
        std::process::exit(2);
    };
    let result = std::fs::read_to_string(table)
        .map_err(|e| format!("cannot read {table}: {e}").into())
        .and_then(|text| curves(&text))
        .and_then(|curves| draw(Path::new(svg), &curves));
    if let Err(e) = result {
        eprintln!("cost_curve: {e}");
        std::process::exit(1);
    }
}

/// The table's rows grouped by model, in the order the models first appear.
fn curves(table: &str) -> Result<Vec<Curve>, Box<dyn Error>> {
    let mut curves: Vec<Curve> = Vec::new();
    for line in table.lines().skip(1).filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [model, connections, _busy, _rate, cpu, ..] = &fields[..] else {
            return Err(format!("a row with too few fields: {line}").into());
        };
        let point = (connections.parse::<f64>()?, cpu.parse::<f64>()?);
        match curves.iter_mut().find(|curve| curve.model == *model) {
            Some(curve) => curve.points.push(point),
            None => curves.push(Curve {
                model: model.to_string(),
                points: vec![point],
            }),
        }
    }
    Ok(curves)
}

fn draw(path: &Path, curves: &[Curve]) -> Result<(), Box<dyn Error>> {
    let all = || curves.iter().flat_map(|curve| curve.points.iter());
    let right = all().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let bottom = all()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min)
        / 1.5;
    let top = all().map(|p| p.1).fold(0.0, f64::max) * 1.5;
    if !(bottom.is_finite() && top > bottom) {
        return Err("no positive CPU figures to draw".into());
    }
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "echo server CPU per message, 10 busy connections, the rest idle",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0.7..right).log_scale(), (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("connections (log)")
        .y_desc("server CPU µs per message (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()?;
    let colors = [BLUE, RED, RGBColor(0, 140, 0), BLACK];
    for (curve, color) in curves.iter().zip(colors.iter().cycle()) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                curve.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(curve.model.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(
            curve
                .points
                .iter()
                .map(|&point| Circle::new(point, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
