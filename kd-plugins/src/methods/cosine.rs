//! The tutorial's cosine loss on hidden representations: PyTorch's
//! `CosineEmbeddingLoss` with target 1, i.e. mean(1 - cos(student, teacher)),
//! between the student's `flat` tap and the teacher's `flat` tap
//! average-pooled down to the student's width (the tutorial's `avg_pool1d(2)`).
use kd_core::candle::{Tensor, D};
use kd_core::loss::MethodContext;
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Error, Outputs, Result};

/// PyTorch's `EPSILON` in `cosine_embedding_loss`.
const EPS: f64 = 1e-12;

pub struct CosineHidden;

/// Averages groups of `width / target` neighbours: `avg_pool1d(x, k)` on (N, W).
pub fn avg_pool_to(x: &Tensor, target: usize) -> Result<Tensor> {
    let (n, width) = x.dims2()?;
    if target == 0 || width % target != 0 {
        return Err(Error::config(format!(
            "cosine: the teacher's width {width} is not a whole multiple of the student's width {target}, so it cannot be average-pooled to match; use taps whose widths divide"
        )));
    }
    Ok(x.reshape((n, target, width / target))?.mean(D::Minus1)?)
}

impl DistillLoss for CosineHidden {
    fn teacher_taps(&self) -> &[&str] {
        &["flat"]
    }

    fn loss(&self, student: &Outputs, teacher: &Outputs) -> Result<Tensor> {
        let s = student.tap("flat")?;
        let t = avg_pool_to(teacher.tap("flat")?, s.dim(1)?)?;
        let dot = (s * &t)?.sum(1)?;
        let norms = ((s.sqr()?.sum(1)? + EPS)? * (t.sqr()?.sum(1)? + EPS)?)?.sqrt()?;
        let cos = (dot / norms)?;
        Ok(cos.affine(-1.0, 1.0)?.mean_all()?)
    }
}

fn build(ctx: &MethodContext) -> Result<Option<Box<dyn DistillLoss>>> {
    // Fail before training when the widths cannot be matched.
    let width = ctx.student.tap("flat")?.dim(1)?;
    avg_pool_to(ctx.teacher.tap("flat")?, width)?;
    Ok(Some(Box::new(CosineHidden)))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "cosine",
        summary: "cosine embedding loss between the flattened conv features, the teacher's average-pooled to the student's width",
        params: &[],
        teacher_taps: &["flat"],
        needs_teacher: true,
        build,
    }
}
