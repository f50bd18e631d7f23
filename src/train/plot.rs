//! The book's loss figure (§5.2, `plot_losses`): training and validation loss against epochs,
//! with tokens seen on a second x-axis, as a PNG (plotters, with the bundled DejaVu Sans font so
//! no system fonts are needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::error::{Error, Result};

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        // The font is valid TrueType (a test renders with it); ignore the impossible error.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            include_bytes!("../../data/fonts/DejaVuSans.ttf"),
        );
    });
}

/// Draws the losses recorded at each evaluation. `num_epochs` spreads the points evenly over
/// `0..num_epochs` as the book's `torch.linspace(0, num_epochs, len(train_losses))`.
pub fn plot_losses(
    path: impl AsRef<Path>,
    num_epochs: f64,
    tokens_seen: &[usize],
    train: &[f64],
    val: &[f64],
) -> Result<()> {
    plot_metric(path, num_epochs, tokens_seen, train, val, "loss")
}

/// The same figure for any metric measured at each evaluation — the book reuses its
/// `plot_losses` with `label="reward margins"` for DPO.
pub fn plot_metric(
    path: impl AsRef<Path>,
    num_epochs: f64,
    tokens_seen: &[usize],
    train: &[f64],
    val: &[f64],
    label: &str,
) -> Result<()> {
    let path = path.as_ref();
    if train.is_empty() || train.len() != val.len() || train.len() != tokens_seen.len() {
        return Err(Error::invalid(
            "plot_losses",
            "needs equally many (≥ 1) training values, validation values and token counts",
        ));
    }
    register_font();
    let n = train.len();
    let epochs: Vec<f64> = (0..n)
        .map(|i| {
            if n == 1 {
                0.0
            } else {
                num_epochs * i as f64 / (n - 1) as f64
            }
        })
        .collect();
    // A diverged run's NaN or infinite losses are left out of the picture (an infinite axis
    // range would never finish laying out its ticks); the axis spans the finite ones.
    let (lo, hi) = train
        .iter()
        .chain(val)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let finite = |xs: &[f64]| -> Vec<(f64, f64)> {
        epochs
            .iter()
            .copied()
            .zip(xs.iter().copied())
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let (train_points, val_points) = (finite(train), finite(val));
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let max_tokens = *tokens_seen.last().expect("non-empty") as f64;
    let tmp = path.with_file_name(format!(
        ".{}.tmp.png",
        path.file_stem()
            .map_or("plot".into(), |s| s.to_string_lossy())
    ));
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::new(&tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(15)
            .x_label_area_size(40)
            .top_x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..num_epochs.max(1e-9), (lo - pad)..(hi + pad))?
            .set_secondary_coord(0.0..max_tokens.max(1.0), (lo - pad)..(hi + pad));
        chart
            .configure_mesh()
            .x_desc("Epochs")
            .y_desc(capitalised(label))
            .draw()?;
        chart
            .configure_secondary_axes()
            .x_desc("Tokens seen")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                train_points.iter().copied(),
                BLUE.stroke_width(2),
            ))?
            .label(format!("Training {label}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
        chart
            .draw_series(DashedLineSeries::new(
                val_points.iter().copied(),
                6,
                4,
                RED.stroke_width(2),
            ))?
            .label(format!("Validation {label}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| Error::invalid("plot_losses", format!("drawing {}: {e}", path.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
