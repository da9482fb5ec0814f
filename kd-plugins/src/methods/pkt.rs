//! Probabilistic Knowledge Transfer (Passalis & Tefas, ECCV 2018) on the
//! `flat` tap: cosine similarities between samples, mapped to [0, 1] and
//! normalised per row into conditional probabilities, matched by KL:
//!
//! P = rownorm((cos(x_i, x_j) + 1) / 2),  loss = mean(P_t · log((P_t + ε) / (P_s + ε))), ε = 1e-7
//!
//! as RepDistiller's `PKT.cosine_similarity_loss`, without its NaN-to-zero
//! replacement (NaN in, NaN out) and with the norm floored at 1e-12. The
//! loss is a small difference of nearly equal distributions (hence the large
//! weights reference scripts put on it), so it is computed in float64: in
//! float32 the cancellation costs about four digits.
use kd_core::candle::{DType, Tensor};
use kd_core::functional::{l2_norm, rows};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Result};

const EPS: f64 = 1e-7;

pub struct ProbabilisticTransfer;

fn probabilities(x: &Tensor) -> Result<Tensor> {
    let x = rows(x)?;
    let x = x.broadcast_div(&(l2_norm(&x, 1)? + EPS)?)?;
    let m = ((x.matmul(&x.t()?)? + 1.0)? / 2.0)?;
    Ok(m.broadcast_div(&m.sum_keepdim(1)?)?)
}

impl DistillLoss for ProbabilisticTransfer {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let s = step.student.tap("flat")?;
        let ps = probabilities(&s.to_dtype(DType::F64)?)?;
        let pt = probabilities(&step.teacher.tap("flat")?.to_dtype(DType::F64)?)?;
        let log_ratio = ((&pt + EPS)? / (ps + EPS)?)?.log()?;
        Ok((pt * log_ratio)?.mean_all()?.to_dtype(s.dtype())?)
    }
}

fn build(_: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    Ok(Box::new(ProbabilisticTransfer))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "pkt",
        summary: "Probabilistic Knowledge Transfer (Passalis & Tefas 2018): match the samples' cosine-similarity distributions",
        params: &[],
        taps: &["flat"],
        build: Some(build),
        fixtures: &[fixture!("pkt")],
    }
}
