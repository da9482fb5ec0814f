//! Similarity-Preserving KD (Tung & Mori, ICCV 2019): samples that the
//! teacher finds alike should look alike to the student. With F the
//! `features` tap flattened per sample (N x D) and G = normalize_rows(F Fᵀ),
//!
//! loss = ‖G_t − G_s‖²_F / N²
//!
//! as RepDistiller's `Similarity.similarity_loss`. The widths may differ.
use kd_core::candle::Tensor;
use kd_core::functional::{l2_normalize, rows};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Result};

pub struct SimilarityPreserving;

fn similarity(f: &Tensor) -> Result<Tensor> {
    let f = rows(f)?;
    l2_normalize(&f.matmul(&f.t()?)?, 1)
}

impl DistillLoss for SimilarityPreserving {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let gs = similarity(step.student.tap("features")?)?;
        let gt = similarity(step.teacher.tap("features")?)?;
        let n = gs.dim(0)? as f64;
        Ok(((gt - gs)?.sqr()?.sum_all()? / (n * n))?)
    }
}

fn build(_: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    Ok(Box::new(SimilarityPreserving))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "sp",
        summary: "Similarity-Preserving KD (Tung & Mori 2019): match the batch's normalised feature similarity matrices",
        params: &[],
        taps: &["features"],
        build: Some(build),
        fixtures: &[fixture!("sp")],
    }
}
