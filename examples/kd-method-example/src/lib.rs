//! Neural Selectivity Transfer (Huang & Wang, "Like What You Like", 2017), as
//! a plugin crate: the student matches the distribution of the teacher's
//! channel activation patterns, compared by maximum mean discrepancy with the
//! polynomial kernel k(a, b) = (a · b)². With f the `features` tap reshaped to
//! (N, C, H·W) and each channel's pattern L2-normalised,
//!
//! loss = mean k(f_t, f_t) + mean k(f_s, f_s) − 2 · mean k(f_s, f_t)
//!
//! as RepDistiller's `NSTLoss` (its `full_loss`). Channel counts may differ;
//! spatial sizes must be equal.
use kd_core::candle::Tensor;
use kd_core::functional::{l2_normalize, same_spatial_size};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Result};

pub struct SelectivityTransfer;

/// Channel patterns of (N, C, H, W) features, each normalised: (N, C, H·W).
fn patterns(f: &Tensor) -> Result<Tensor> {
    l2_normalize(&f.flatten_from(2)?, 2)
}

/// Mean of (a_i · b_j)² over the batch and every channel pair.
fn kernel_mean(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(a.matmul(&b.transpose(1, 2)?)?.sqr()?.mean_all()?)
}

impl DistillLoss for SelectivityTransfer {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let s = patterns(step.student.tap("features")?)?;
        let t = patterns(step.teacher.tap("features")?)?;
        let mmd = ((kernel_mean(&t, &t)? + kernel_mean(&s, &s)?)? - (kernel_mean(&s, &t)? * 2.0)?)?;
        Ok(mmd)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    same_spatial_size(ctx.student.tap("features")?, ctx.teacher.tap("features")?)?;
    Ok(Box::new(SelectivityTransfer))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "nst",
        summary: "Neural Selectivity Transfer (Huang & Wang 2017): MMD between channel activation patterns (example plugin crate)",
        params: &[],
        taps: &["features"],
        build: Some(build),
        fixtures: &[include_bytes!("../fixtures/nst.safetensors")],
    }
}
