//! Hinton et al., "Distilling the knowledge in a neural network": the
//! student's softened distribution is pulled towards the teacher's.
//!
//! loss = sum(p_t * (log p_t - log p_s)) / batch * T², with p = softmax(logits / T).
//! Both logs come from `log_softmax`, never from the log of a softmax, so a
//! teacher probability that underflows to 0 contributes 0 rather than NaN.
use kd_core::candle::Tensor;
use kd_core::candle_nn::ops::log_softmax;
use kd_core::loss::MethodContext;
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Outputs, Result};

pub struct SoftTargets {
    pub temperature: f64,
}

impl DistillLoss for SoftTargets {
    fn teacher_taps(&self) -> &[&str] {
        &[]
    }

    fn loss(&self, student: &Outputs, teacher: &Outputs) -> Result<Tensor> {
        let t = self.temperature;
        let (ns, nt) = (student.logits.dims(), teacher.logits.dims());
        if ns != nt {
            return Err(kd_core::Error::config(format!(
                "kd compares logits, but the student gives {ns:?} and the teacher {nt:?}: both must have the same number of classes"
            )));
        }
        let log_p_t = log_softmax(&(&teacher.logits / t)?, 1)?;
        let log_p_s = log_softmax(&(&student.logits / t)?, 1)?;
        let p_t = log_p_t.exp()?;
        let batch = student.logits.dim(0)? as f64;
        let kl = (p_t * (log_p_t - log_p_s)?)?.sum_all()?;
        Ok((kl * (t * t / batch))?)
    }
}

fn build(ctx: &MethodContext) -> Result<Option<Box<dyn DistillLoss>>> {
    Ok(Some(Box::new(SoftTargets {
        temperature: ctx.param("temperature")?,
    })))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "kd",
        summary: "Hinton's soft targets: KL divergence between teacher and student softmax at temperature T, scaled by T²",
        params: &[ParamSpec {
            name: "temperature",
            default: 2.0,
            help: "softmax temperature T; larger values soften both distributions",
            positive: true,
        }],
        teacher_taps: &[],
        needs_teacher: true,
        build,
    }
}
