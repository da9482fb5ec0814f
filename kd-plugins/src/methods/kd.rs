//! Hinton et al., "Distilling the knowledge in a neural network" (2015): the
//! student's softened distribution is pulled towards the teacher's.
//!
//! loss = sum(p_t * (log p_t - log p_s)) / batch * T², with p = softmax(logits / T).
//! Both logs come from `log_softmax`, never from the log of a softmax, so a
//! teacher probability that underflows to 0 contributes 0 rather than NaN.
use kd_core::candle::Tensor;
use kd_core::functional::{same_shape, soft_kl};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct SoftTargets {
    pub temperature: f64,
}

impl DistillLoss for SoftTargets {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t) = (&step.student.logits, &step.teacher.logits);
        same_shape("student logits", s, "teacher logits", t)?;
        soft_kl(s, t, self.temperature)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let temperature = ctx.param("temperature")?;
    Ok(Box::new(SoftTargets { temperature }))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "kd",
        summary: "Hinton's soft targets: KL divergence between teacher and student softmax at temperature T, scaled by T²",
        params: &[ParamSpec::positive("temperature", 2.0, "softmax temperature T; larger values soften both distributions")],
        taps: &[],
        build: Some(build),
        fixtures: &[fixture!("kd"), fixture!("kd_extreme_teacher")],
    }
}
