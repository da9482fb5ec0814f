//! A picture of a run: training loss and test accuracy per epoch, one line per
//! phase at the mean over seeds, with a band from the lowest to the highest seed.
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

static FONT: Once = Once::new();

/// plotters draws text with ab_glyph; the font ships inside the binary so a
/// plot needs no system fonts.
fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

/// One run's epochs: (training loss, test accuracy where the epoch was tested).
pub type Curve = Vec<(f64, Option<f64>)>;

/// A band over the seeds, per epoch: (epoch, mean, min, max).
type Band = Vec<(f64, f64, f64, f64)>;

/// Per epoch (1-based): mean, min and max over the seeds that have a value.
fn band(seeds: &[Curve], value: impl Fn(&(f64, Option<f64>)) -> Option<f64>) -> Band {
    let epochs = seeds.iter().map(Vec::len).max().unwrap_or(0);
    (0..epochs)
        .filter_map(|e| {
            let v: Vec<f64> = seeds
                .iter()
                .filter_map(|c| c.get(e).and_then(&value))
                .collect();
            (!v.is_empty()).then(|| {
                let mean = v.iter().sum::<f64>() / v.len() as f64;
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                ((e + 1) as f64, mean, lo, hi)
            })
        })
        .collect()
}

/// The ratio of the largest to the smallest positive value in `series` (1 when none).
fn spread(series: &[(&String, Band)]) -> f64 {
    let values = series
        .iter()
        .flat_map(|(_, b)| b.iter())
        .flat_map(|p| [p.2, p.3]);
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi > 0.0 {
        hi / lo
    } else {
        1.0
    }
}

/// A band point with its values on a log10 scale.
fn log10((x, mid, lo, hi): (f64, f64, f64, f64)) -> (f64, f64, f64, f64) {
    // A NaN loss stays NaN (a gap), not a tiny value that stretches the axis.
    let l = |v: f64| if v.is_nan() { v } else { v.max(1e-12).log10() };
    (x, l(mid), l(lo), l(hi))
}

/// `phases`: name and, per seed, each epoch's (training loss, test accuracy).
pub fn curves(path: &Path, phases: &[(String, Vec<Curve>)]) -> Result<()> {
    register_font();
    let err = |e: &dyn std::fmt::Display| anyhow!("plot {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(600);
    let loss: Vec<_> = phases
        .iter()
        .map(|(n, s)| (n, band(s, |p| Some(p.0))))
        .collect();
    let accuracy: Vec<_> = phases.iter().map(|(n, s)| (n, band(s, |p| p.1))).collect();
    // Losses ten times apart (one method's term against another's) share a
    // log axis; each legend sits where its curves are not: losses fall
    // towards the lower right, accuracies rise towards the upper right.
    let log = spread(&loss) > 10.0;
    let loss = match log {
        true => loss
            .into_iter()
            .map(|(n, b)| (n, b.into_iter().map(log10).collect()))
            .collect(),
        false => loss,
    };
    let loss_title = if log {
        "training loss (log scale)"
    } else {
        "training loss"
    };
    for (area, title, series, logged, corner) in [
        (
            &left,
            loss_title,
            &loss,
            log,
            SeriesLabelPosition::UpperRight,
        ),
        (
            &right,
            "test accuracy (%)",
            &accuracy,
            false,
            SeriesLabelPosition::LowerRight,
        ),
    ] {
        panel(area, title, series, logged, corner).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One panel: each phase's mean line with its min–max band, the legend in
/// `corner`; `logged` values are log10 and labelled as the values they stand for.
fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    title: &str,
    series: &[(&String, Band)],
    logged: bool,
    corner: SeriesLabelPosition,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("{e}");
    let points = series.iter().flat_map(|(_, b)| b.iter());
    let max_epoch = points.clone().map(|p| p.0).fold(2.0, f64::max);
    // The axis spans the data (with a margin), so close curves stay apart.
    let lo = points.clone().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let hi = points.map(|p| p.3).fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-3))
    } else {
        (0.0, 1.0)
    };
    let pad = (hi - lo) * 0.08;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(1f64..max_epoch, (lo - pad)..(hi + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(max_epoch as usize)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| match logged {
            true => format!("{:.3}", 10f64.powf(*y)),
            false => format!("{y:.2}"),
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        // Twelve and more phases (the methods recipe) need more than the basic colours.
        let color = Palette99::pick(i).to_rgba();
        if points.iter().any(|p| p.3 > p.2) {
            let mut outline: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.3)).collect();
            outline.extend(points.iter().rev().map(|p| (p.0, p.2)));
            chart
                .draw_series(std::iter::once(Polygon::new(outline, color.mix(0.15))))
                .map_err(|e| err(&e))?;
        }
        let line: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_ten_times_apart_go_on_a_log_axis_and_others_do_not() {
        let name = "kd".to_string();
        let close = vec![(&name, vec![(1.0, 0.5, 0.4, 0.6), (2.0, 0.3, 0.2, 0.4)])];
        let apart = vec![(&name, vec![(1.0, 5.0, 4.0, 6.0), (2.0, 0.3, 0.2, 0.4)])];
        assert!(spread(&close) < 10.0);
        assert!((spread(&apart) - 30.0).abs() < 1e-9);
        assert_eq!(log10((1.0, 10.0, 1.0, 100.0)), (1.0, 1.0, 0.0, 2.0));
    }
}
