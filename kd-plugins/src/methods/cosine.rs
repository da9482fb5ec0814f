//! The tutorial's cosine loss on hidden representations: PyTorch's
//! `CosineEmbeddingLoss` with target 1, i.e. mean(1 - cos(student, teacher)),
//! between the student's `flat` tap and the teacher's `flat` tap
//! average-pooled down to the student's width (the tutorial's `avg_pool1d(2)`).
use kd_core::candle::{Tensor, D};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Error, Result};

/// PyTorch's `EPSILON` in `cosine_embedding_loss`.
const EPS: f64 = 1e-12;

pub struct CosineHidden;

/// Averages groups of `width / target` neighbours: `avg_pool1d(x, k)` on (N, W).
pub fn avg_pool_to(x: &Tensor, target: usize) -> Result<Tensor> {
    let (n, width) = x.dims2()?;
    if target == 0 || width % target != 0 {
        return Err(Error::config(format!(
            "the teacher's width {width} is not a whole multiple of the student's width {target}, so it cannot be average-pooled to match; use taps whose widths divide"
        )));
    }
    Ok(x.reshape((n, target, width / target))?.mean(D::Minus1)?)
}

impl DistillLoss for CosineHidden {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let s = step.student.tap("flat")?;
        let t = avg_pool_to(step.teacher.tap("flat")?, s.dim(1)?)?;
        let dot = (s * &t)?.sum(1)?;
        let norms = ((s.sqr()?.sum(1)? + EPS)? * (t.sqr()?.sum(1)? + EPS)?)?.sqrt()?;
        Ok((dot / norms)?.affine(-1.0, 1.0)?.mean_all()?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    // Fail before training when the widths cannot be matched.
    avg_pool_to(ctx.teacher.tap("flat")?, ctx.student.tap("flat")?.dim(1)?)?;
    Ok(Box::new(CosineHidden))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "cosine",
        summary: "cosine embedding loss between the flattened conv features, the teacher's average-pooled to the student's width",
        params: &[],
        taps: &["flat"],
        build: Some(build),
        fixtures: &[fixture!("cosine")],
    }
}
