//! Attention Transfer (Zagoruyko & Komodakis, ICLR 2017): the student matches
//! the teacher's spatial attention map, the channel mean of |f|^p, flattened
//! and L2-normalised per sample:
//!
//! a(f) = normalize(mean_c(f^p)),  loss = mean((a(f_s) − a(f_t))²)
//!
//! on the `features` tap, as RepDistiller's `Attention.at_loss`. The channel
//! counts may differ; the spatial sizes must be equal (RepDistiller pools the
//! larger map; kd refuses, naming both shapes).
use kd_core::candle::Tensor;
use kd_core::functional::{l2_normalize, rows, same_spatial_size};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Attention {
    p: f64,
}

impl Attention {
    fn map(&self, f: &Tensor) -> Result<Tensor> {
        let powered = if self.p == 2.0 {
            f.sqr()?
        } else {
            f.abs()?.powf(self.p)?
        };
        l2_normalize(&rows(&powered.mean(1)?)?, 1)
    }
}

impl DistillLoss for Attention {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let s = self.map(step.student.tap("features")?)?;
        let t = self.map(step.teacher.tap("features")?)?;
        Ok((s - t)?.sqr()?.mean_all()?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    same_spatial_size(ctx.student.tap("features")?, ctx.teacher.tap("features")?)?;
    Ok(Box::new(Attention { p: ctx.param("p")? }))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "at",
        summary: "Attention Transfer (Zagoruyko & Komodakis 2017): match normalised spatial attention maps of the features",
        params: &[ParamSpec::positive("p", 2.0, "power of the activations in the attention map")],
        taps: &["features"],
        build: Some(build),
        fixtures: &[fixture!("at")],
    }
}
