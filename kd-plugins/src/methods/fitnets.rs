//! FitNets hints (Romero et al.): a trainable regressor maps the student's
//! last conv features to the teacher's channel count, and MSE pulls them
//! together. Where the two maps' sizes differ by a whole factor, the larger
//! is average-pooled to the smaller's first (mdistiller uses a strided or
//! transposed regressor there instead). The regressor trains with the student but is saved apart from
//! it, under the tutorial's names `regressor.0.weight` / `regressor.0.bias`.
use kd_core::candle::{Module, Tensor};
use kd_core::functional::{common_spatial_size, same_shape};
use kd_core::loss::{MethodContext, Step};
use kd_core::nn::{Conv2d, Conv2dConfig};
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Result};

pub struct Hint {
    regressor: Conv2d,
}

impl Hint {
    /// The regressor `Conv2d(student_channels, teacher_channels, 3, padding=1)`
    /// at `vb.pp("regressor").pp(0)`.
    pub fn new(ctx: &MethodContext) -> Result<Self> {
        let (s, t) = (ctx.student.tap("features")?, ctx.teacher.tap("features")?);
        common_spatial_size(s, t)?;
        let regressor = Conv2d::new(
            s.dim(1)?,
            t.dim(1)?,
            Conv2dConfig::SAME_3X3,
            ctx.vb.pp("regressor").pp(0),
        )?;
        Ok(Self { regressor })
    }
}

impl DistillLoss for Hint {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, target) =
            common_spatial_size(step.student.tap("features")?, step.teacher.tap("features")?)?;
        let hint = self.regressor.forward(&s)?;
        same_shape("regressor output", &hint, "teacher features", &target)?;
        Ok((hint - target)?.sqr()?.mean_all()?)
    }

    fn zero_at_identity(&self) -> bool {
        false
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    Ok(Box::new(Hint::new(ctx)?))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "fitnets",
        summary: "FitNets hint: a trainable 3x3 conv regressor maps student features to the teacher's, MSE between them",
        params: &[],
        taps: &["features"],
        build: Some(build),
        fixtures: &[fixture!("fitnets")],
    }
}
