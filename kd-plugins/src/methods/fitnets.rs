//! FitNets hints (Romero et al.): a trainable regressor maps the student's
//! last conv features to the teacher's channel count, and MSE pulls them
//! together. The regressor trains with the student but is saved apart from
//! it, under the tutorial's names `regressor.0.weight` / `regressor.0.bias`.
use kd_core::candle::{Module, Tensor};
use kd_core::functional::{same_shape, same_spatial_size};
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
        let (s, t) = same_spatial_size(ctx.student.tap("features")?, ctx.teacher.tap("features")?)?;
        let regressor = Conv2d::new(
            s[1],
            t[1],
            Conv2dConfig::SAME_3X3,
            ctx.vb.pp("regressor").pp(0),
        )?;
        Ok(Self { regressor })
    }
}

impl DistillLoss for Hint {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let hint = self.regressor.forward(step.student.tap("features")?)?;
        let target = step.teacher.tap("features")?;
        same_shape("regressor output", &hint, "teacher features", target)?;
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
