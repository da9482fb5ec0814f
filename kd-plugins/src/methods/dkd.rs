//! Decoupled Knowledge Distillation (Zhao et al., CVPR 2022). Hinton's loss
//! split in two: TCKD, the KL divergence between the binary distributions
//! [p(target), p(not target)] of teacher and student, and NCKD, the KL
//! divergence between their distributions over the non-target classes alone:
//!
//! loss = alpha · TCKD + beta · NCKD, each summed over the batch, / N, × T².
//!
//! As in the authors' mdistiller code, the non-target softmax is taken of
//! logits / T − 1000 · onehot(label). The binary log-probabilities come from
//! log-sum-exps rather than mdistiller's log of summed probabilities (the same
//! value, finite when a probability underflows). mdistiller's warm-up factor
//! min(epoch / 20, 1) is not part of the loss here.
use kd_core::candle::{Tensor, D};
use kd_core::functional::{one_hot, same_shape, soft_kl};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Decoupled {
    alpha: f64,
    beta: f64,
    temperature: f64,
}

/// log [p(target), p(other)] of softmax(z), N x 2.
fn log_binary(z: &Tensor, target: &Tensor) -> Result<Tensor> {
    let all = z.log_sum_exp(D::Minus1)?;
    let log_target = ((z * target)?.sum(D::Minus1)? - &all)?;
    let log_other = ((z - (target * 1000.0)?)?.log_sum_exp(D::Minus1)? - &all)?;
    Ok(Tensor::stack(&[log_target, log_other], 1)?)
}

impl DistillLoss for Decoupled {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t, temp) = (&step.student.logits, &step.teacher.logits, self.temperature);
        same_shape("student logits", s, "teacher logits", t)?;
        let gt = one_hot(step.labels, s.dim(1)?, s.dtype())?;
        let (zs, zt) = ((s / temp)?, (t / temp)?);
        let (log_bs, log_bt) = (log_binary(&zs, &gt)?, log_binary(&zt, &gt)?);
        let batch = s.dim(0)? as f64;
        let tckd = ((log_bt.exp()? * (&log_bt - log_bs)?)?.sum_all()? * (temp * temp / batch))?;
        let mask = (&gt * (1000.0 * temp))?;
        let nckd = soft_kl(&(s - &mask)?, &(t - &mask)?, temp)?;
        Ok(((tckd * self.alpha)? + (nckd * self.beta)?)?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let (alpha, beta) = (ctx.param("alpha")?, ctx.param("beta")?);
    Ok(Box::new(Decoupled {
        alpha,
        beta,
        temperature: ctx.param("temperature")?,
    }))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "dkd",
        summary: "Decoupled KD (Zhao et al. 2022): target-class and non-target-class KL terms weighted apart; uses the labels",
        params: &[
            ParamSpec::any("alpha", 1.0, "weight of the target-class term (TCKD)"),
            ParamSpec::any("beta", 8.0, "weight of the non-target-class term (NCKD)"),
            ParamSpec::positive("temperature", 4.0, "softmax temperature T"),
        ],
        taps: &[],
        build: Some(build),
        fixtures: &[fixture!("dkd")],
    }
}
