//! KD with logit standardisation (Sun et al., "Logit Standardization in
//! Knowledge Distillation", CVPR 2024): each logit vector is z-scored by its
//! own mean and standard deviation before Hinton's loss, so the student
//! matches the teacher's logit relations rather than their scale:
//!
//! z' = (z − mean(z)) / (1e-7 + std(z)),  loss = KL(softmax(z'_t / T) ‖ softmax(z'_s / T)) / N · T².
//!
//! As in the authors' code, std is Bessel-corrected (`torch.std`).
use kd_core::candle::Tensor;
use kd_core::functional::{mean_std, same_shape, soft_kl};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Standardised {
    temperature: f64,
}

fn standardise(z: &Tensor) -> Result<Tensor> {
    let (mean, std) = mean_std(z)?;
    Ok(z.broadcast_sub(&mean)?.broadcast_div(&(std + 1e-7)?)?)
}

impl DistillLoss for Standardised {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t) = (&step.student.logits, &step.teacher.logits);
        same_shape("student logits", s, "teacher logits", t)?;
        soft_kl(&standardise(s)?, &standardise(t)?, self.temperature)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let temperature = ctx.param("temperature")?;
    Ok(Box::new(Standardised { temperature }))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "ls_kd",
        summary: "KD with logit standardisation (Sun et al. 2024): logits z-scored per sample before Hinton's loss",
        params: &[ParamSpec::positive("temperature", 2.0, "softmax temperature T on the standardised logits")],
        taps: &[],
        build: Some(build),
        fixtures: &[fixture!("ls_kd")],
    }
}
