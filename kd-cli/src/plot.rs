//! A picture of a run: training loss and test accuracy per epoch, one line per phase.
use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use kd_core::train::EpochSummary;
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

pub fn loss_and_accuracy(path: &Path, runs: &[(String, Vec<EpochSummary>)]) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
    let (left, right) = root.split_horizontally(600);
    let max_epoch = runs
        .iter()
        .flat_map(|(_, e)| e.iter().map(|s| s.epoch))
        .max()
        .unwrap_or(1)
        .max(2);
    let max_loss = runs
        .iter()
        .flat_map(|(_, e)| e.iter().map(|s| s.loss))
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];

    let draw = |area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
                title: &str,
                y_max: f64,
                value: &dyn Fn(&EpochSummary) -> Option<f64>|
     -> Result<()> {
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(1f64..max_epoch as f64, 0f64..y_max)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (i, (name, epochs)) in runs.iter().enumerate() {
            let color = palette[i % palette.len()];
            let points: Vec<(f64, f64)> = epochs
                .iter()
                .filter_map(|s| value(s).map(|v| (s.epoch as f64, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        Ok(())
    };
    draw(&left, "training loss", max_loss, &|s| Some(s.loss))?;
    draw(&right, "test accuracy (%)", 100.0, &|s| s.test_accuracy)?;
    root.present()
        .map_err(|e| anyhow!("plot: cannot write {}: {e}", path.display()))?;
    Ok(())
}
