//! Attention Transfer (Zagoruyko & Komodakis, ICLR 2017): the student matches
//! the teacher's spatial attention map, the channel mean of |f|^p, flattened
//! and L2-normalised per sample:
//!
//! a(f) = normalize(mean_c(f^p)),  loss = mean((a(f_s) − a(f_t))²)
//!
//! on the `features` tap, as RepDistiller's `Attention.at_loss`. The channel
//! counts may differ; where the spatial sizes differ by a whole factor, the
//! larger map is average-pooled to the smaller's, as RepDistiller does.
use kd_core::candle::Tensor;
use kd_core::functional::{common_spatial_size, l2_normalize, rows};
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
        let (s, t) =
            common_spatial_size(step.student.tap("features")?, step.teacher.tap("features")?)?;
        let (s, t) = (self.map(&s)?, self.map(&t)?);
        Ok((s - t)?.sqr()?.mean_all()?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    common_spatial_size(ctx.student.tap("features")?, ctx.teacher.tap("features")?)?;
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
