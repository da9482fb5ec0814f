//! DIST (Huang et al., "Knowledge Distillation from A Stronger Teacher",
//! NeurIPS 2022): match relations rather than values. With y = softmax(z / T),
//!
//! ```text
//! loss = T² · (beta · (1 − mean_i ρ(y_s[i,:], y_t[i,:]))     inter-class
//!            + gamma · (1 − mean_j ρ(y_s[:,j], y_t[:,j])))   intra-class
//! ```
//!
//! where ρ is the Pearson correlation, computed as in the authors' code: the
//! cosine of the centred vectors with 1e-8 added to the product of the norms.
use kd_core::candle::{Tensor, D};
use kd_core::candle_nn::ops::softmax;
use kd_core::functional::{l2_norm, same_shape};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Dist {
    beta: f64,
    gamma: f64,
    temperature: f64,
}

/// 1 − the mean over rows of the Pearson correlation of `a` and `b` (N x K).
fn one_minus_pearson(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let a = a.broadcast_sub(&a.mean_keepdim(D::Minus1)?)?;
    let b = b.broadcast_sub(&b.mean_keepdim(D::Minus1)?)?;
    let norms = ((l2_norm(&a, 1)? * l2_norm(&b, 1)?)?.squeeze(1)? + 1e-8)?;
    let rho = ((a * b)?.sum(D::Minus1)? / norms)?;
    Ok(rho.mean_all()?.affine(-1.0, 1.0)?)
}

impl DistillLoss for Dist {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t, temp) = (&step.student.logits, &step.teacher.logits, self.temperature);
        same_shape("student logits", s, "teacher logits", t)?;
        let ys = softmax(&(s / temp)?, D::Minus1)?;
        let yt = softmax(&(t / temp)?, D::Minus1)?;
        let inter = one_minus_pearson(&ys, &yt)?;
        let intra = one_minus_pearson(&ys.t()?.contiguous()?, &yt.t()?.contiguous()?)?;
        Ok((((inter * self.beta)? + (intra * self.gamma)?)? * (temp * temp))?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let (beta, gamma) = (ctx.param("beta")?, ctx.param("gamma")?);
    Ok(Box::new(Dist {
        beta,
        gamma,
        temperature: ctx.param("temperature")?,
    }))
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
        build: Some(build),
        fixtures: &[fixture!("dist")],
    }
}
