//! Decoupled Knowledge Distillation (Zhao et al., CVPR 2022). Hinton's loss
//! split in two: TCKD, the KL divergence between the binary distributions
//! [p(target), p(not target)] of teacher and student, and NCKD, the KL
//! divergence between their distributions over the non-target classes alone:
//!
//! loss = alpha · TCKD + beta · NCKD, each summed over the batch, / N, × T².
//!
//! As in the authors' mdistiller code, the non-target softmax is taken of
//! logits / T − 1000 · onehot(label); the binary log-probabilities come from
//! log-sum-exps ([`log_binary_split`]), finite where mdistiller's log of
//! summed probabilities is not. Its warm-up min(epoch / 20, 1) is left out.
use kd_core::candle::Tensor;
use kd_core::functional::{log_binary_split, one_hot, same_shape, soft_kl};
use kd_core::loss::Step;
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Decoupled {
    alpha: f64,
    beta: f64,
    temperature: f64,
}

impl DistillLoss for Decoupled {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t, temp) = (&step.student.logits, &step.teacher.logits, self.temperature);
        same_shape("student logits", s, "teacher logits", t)?;
        let gt = one_hot(step.labels, s.dim(1)?, s.dtype())?;
        let (zs, zt) = ((s / temp)?, (t / temp)?);
        let (log_bs, log_bt) = (log_binary_split(&zs, &gt)?, log_binary_split(&zt, &gt)?);
        let batch = s.dim(0)? as f64;
        let tckd = ((log_bt.exp()? * (&log_bt - log_bs)?)?.sum_all()? * (temp * temp / batch))?;
        let mask = (&gt * (1000.0 * temp))?;
        let nckd = soft_kl(&(s - &mask)?, &(t - &mask)?, temp)?;
        Ok(((tckd * self.alpha)? + (nckd * self.beta)?)?)
    }
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
        build: Some(|ctx| Ok(Box::new(Decoupled { alpha: ctx.param("alpha")?, beta: ctx.param("beta")?, temperature: ctx.param("temperature")? }))),
        fixtures: &[fixture!("dkd")],
    }
}
