//! DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher",
//! NeurIPS 2022): match relations rather than values. With y = softmax(z / T),
//!
//! ```text
//! loss = T² · (beta · (1 − mean_i ρ(y_s[i,:], y_t[i,:]))     inter-class
//!            + gamma · (1 − mean_j ρ(y_s[:,j], y_t[:,j])))   intra-class
//! ```
//!
//! where ρ is the Pearson correlation as the authors' code computes it
//! ([`pearson_rows`] with eps = 1e-8).
use kd_core::candle::{Tensor, D};
use kd_core::candle_nn::ops::softmax;
use kd_core::functional::{pearson_rows, same_shape};
use kd_core::loss::Step;
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Dist {
    beta: f64,
    gamma: f64,
    temperature: f64,
}

impl DistillLoss for Dist {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t, temp) = (&step.student.logits, &step.teacher.logits, self.temperature);
        same_shape("student logits", s, "teacher logits", t)?;
        let ys = softmax(&(s / temp)?, D::Minus1)?;
        let yt = softmax(&(t / temp)?, D::Minus1)?;
        let inter = pearson_rows(&ys, &yt, 1e-8)?.affine(-1.0, 1.0)?;
        let (ys_t, yt_t) = (ys.t()?.contiguous()?, yt.t()?.contiguous()?);
        let intra = pearson_rows(&ys_t, &yt_t, 1e-8)?.affine(-1.0, 1.0)?;
        Ok((((inter * self.beta)? + (intra * self.gamma)?)? * (temp * temp))?)
    }
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "dist",
        summary: "DIST (Huang et al. 2022): Pearson correlation of the softmax outputs across classes (inter) and across the batch (intra)",
        params: &[
            ParamSpec::any("beta", 1.0, "weight of the inter-class relation term"),
            ParamSpec::any("gamma", 1.0, "weight of the intra-class relation term"),
            ParamSpec::positive("temperature", 1.0, "softmax temperature T"),
        ],
        taps: &[],
        build: Some(|ctx| Ok(Box::new(Dist { beta: ctx.param("beta")?, gamma: ctx.param("gamma")?, temperature: ctx.param("temperature")? }))),
        fixtures: &[fixture!("dist")],
    }
}
