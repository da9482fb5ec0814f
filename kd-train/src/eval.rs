//! The tutorial's test accuracy, plus per-class accuracy and a confusion matrix.
use candle_core::{Device, D};
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use kd_core::network::{Mode, Student};
use kd_core::Result;

/// Evaluation always uses one batch size, so that an accuracy measured at the
/// end of training and one measured later by `kd eval` agree to the image.
pub const EVAL_BATCH: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evaluation {
    /// Percent correct, as the tutorial prints it.
    pub accuracy: f64,
    pub samples: usize,
    pub classes: Vec<String>,
    /// Percent correct per true class; `None` for a class with no test image
    /// (no accuracy to report, rather than a made-up 0).
    pub per_class: Vec<Option<f64>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Runs `model` in eval mode over `data` in order.
pub fn evaluate(
    model: &dyn Student,
    data: &Dataset,
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation> {
    let k = data.num_classes();
    let mut confusion = vec![vec![0u64; k]; k];
    for indices in data.batch_indices(batch_size, None) {
        let batch = data.batch(&indices, device)?;
        let logits = model.forward_t(&batch.images, Mode::Eval)?.logits;
        let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        for (&i, p) in indices.iter().zip(predicted) {
            let truth = data.labels[i] as usize;
            if (p as usize) < k {
                confusion[truth][p as usize] += 1;
            }
        }
    }
    let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
    let per_class = confusion
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let n: u64 = row.iter().sum();
            (n > 0).then(|| 100.0 * row[i] as f64 / n as f64)
        })
        .collect();
    Ok(Evaluation {
        accuracy: 100.0 * correct as f64 / data.len() as f64,
        samples: data.len(),
        classes: data.classes.clone(),
        per_class,
        confusion,
    })
}
