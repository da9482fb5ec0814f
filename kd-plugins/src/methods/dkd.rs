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
//! summed probabilities is not. mdistiller's warm-up, the loss times
//! min(epoch / warmup, 1) with epochs counted from 1, is the `warmup`
//! parameter (its CIFAR-100 configs use 20; 0, the default, is none).
use kd_core::candle::Tensor;
use kd_core::functional::{log_binary_split, one_hot, same_shape, soft_kl};
use kd_core::loss::Step;
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Decoupled {
    alpha: f64,
    beta: f64,
    temperature: f64,
    warmup: f64,
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
        let loss = ((tckd * self.alpha)? + (nckd * self.beta)?)?;
        match self.warmup {
            w if w > 0.0 => Ok((loss * ((step.epoch + 1) as f64 / w).min(1.0))?),
            _ => Ok(loss),
        }
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
            ParamSpec::any("warmup", 0.0, "epochs over which the loss rises linearly to its full weight (mdistiller's CIFAR-100 configs: 20); 0: none"),
        ],
        taps: &[],
        build: Some(|ctx| {
            let warmup = ctx.param("warmup")?;
            if warmup < 0.0 {
                return Err(kd_core::Error::config(format!("--param warmup={warmup}: give the warm-up's length in epochs, 0 or more")));
            }
            Ok(Box::new(Decoupled { alpha: ctx.param("alpha")?, beta: ctx.param("beta")?, temperature: ctx.param("temperature")?, warmup }))
        }),
        fixtures: &[fixture!("dkd")],
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kd_core::candle::{Device, Tensor};
    use kd_core::loss::Step;
    use kd_core::{DistillLoss, Outputs};

    use super::Decoupled;

    /// The warm-up scales the loss by min((epoch + 1) / warmup, 1).
    #[test]
    fn the_warm_up_scales_the_loss_linearly_then_not_at_all() {
        let logits = |v: &[f32]| Outputs {
            logits: Tensor::from_slice(v, (2, 3), &Device::Cpu).unwrap(),
            taps: BTreeMap::new(),
        };
        let (s, t) = (
            logits(&[1.0, 2.0, 0.5, 0.0, -1.0, 3.0]),
            logits(&[2.0, 0.0, 1.0, 1.0, 1.0, 0.0]),
        );
        let labels = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let loss = |warmup: f64, epoch: usize| {
            let dkd = Decoupled {
                alpha: 1.0,
                beta: 8.0,
                temperature: 4.0,
                warmup,
            };
            let step = Step::new(&s, &t, &labels).at(epoch, 0, &[0, 1]);
            dkd.loss(&step).unwrap().to_scalar::<f32>().unwrap()
        };
        let full = loss(0.0, 0);
        assert!(full > 0.0);
        assert!((loss(20.0, 0) - full / 20.0).abs() < 1e-6 * full);
        assert!((loss(20.0, 9) - full / 2.0).abs() < 1e-6 * full);
        assert_eq!(loss(20.0, 19), full);
        assert_eq!(loss(20.0, 100), full);
    }
}
