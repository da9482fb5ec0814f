//! Relational KD (Park et al., CVPR 2019) on the `flat` tap: the student
//! keeps the teacher's distances between samples and angles between triples,
//!
//! loss = w_d · smooth_l1(ψ_D(s), ψ_D(t)) + w_a · smooth_l1(ψ_A(s), ψ_A(t))
//!
//! ψ_D: pairwise Euclidean distances over their mean (over the positive ones);
//! ψ_A: cosines <e_j − e_i, e_k − e_i> of every triple, as RepDistiller's
//! `RKDLoss` (distances clamped at 1e-12 before the root, diagonal zeroed).
use kd_core::candle::{DType, Tensor};
use kd_core::functional::{count_positive, rows, smooth_l1};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Relational {
    distance_weight: f64,
    angle_weight: f64,
}

/// Pairwise distances, each divided by the mean of the positive ones.
fn distances(e: &Tensor) -> Result<Tensor> {
    let sq = e.sqr()?.sum_keepdim(1)?;
    let d2 = sq
        .broadcast_add(&sq.t()?)?
        .sub(&(e.matmul(&e.t()?)? * 2.0)?)?;
    let off_diagonal = Tensor::eye(e.dim(0)?, e.dtype(), e.device())?.affine(-1.0, 1.0)?;
    let d = (d2.maximum(1e-12)?.sqrt()? * off_diagonal)?;
    let mean = (d.sum_all()? / count_positive(&d)?)?;
    Ok(d.broadcast_div(&mean)?)
}

/// The cosines of the angles at every sample i between every j and k, from
/// the Gram matrix G = E Eᵀ: <e_j − e_i, e_k − e_i> = G_jk − G_ij − G_ik + G_ii,
/// so no N × N × D tensor is built (N² D floats: 16.8 M at a batch of 128
/// and 1024 features). Computed in float64 against the cancellation; the
/// angles at j = i or k = i, whose difference vector is zero, are 0 as
/// `F.normalize` makes them.
fn angles(e: &Tensor) -> Result<Tensor> {
    let (n, dtype) = (e.dim(0)?, e.dtype());
    let e = e.to_dtype(DType::F64)?;
    let g = e.matmul(&e.t()?)?;
    let eye = Tensor::eye(n, DType::F64, e.device())?;
    let diag = (&g * &eye)?.sum_keepdim(1)?;
    let norms = diag
        .broadcast_add(&diag.t()?)?
        .sub(&(&g * 2.0)?)?
        .maximum(1e-24)?
        .sqrt()?;
    let dot = g
        .unsqueeze(0)?
        .broadcast_sub(&g.unsqueeze(2)?)?
        .broadcast_sub(&g.unsqueeze(1)?)?
        .broadcast_add(&diag.unsqueeze(2)?)?;
    let off = eye.affine(-1.0, 1.0)?;
    let mask = off.unsqueeze(2)?.broadcast_mul(&off.unsqueeze(1)?)?;
    let cos = dot.broadcast_div(&norms.unsqueeze(2)?.broadcast_mul(&norms.unsqueeze(1)?)?)?;
    Ok((cos * mask)?.flatten_all()?.to_dtype(dtype)?)
}

impl DistillLoss for Relational {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t) = (
            rows(step.student.tap("flat")?)?,
            rows(step.teacher.tap("flat")?)?,
        );
        let d = smooth_l1(&distances(&s)?, &distances(&t)?)?;
        let a = smooth_l1(&angles(&s)?, &angles(&t)?)?;
        Ok(((d * self.distance_weight)? + (a * self.angle_weight)?)?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let (distance_weight, angle_weight) =
        (ctx.param("distance_weight")?, ctx.param("angle_weight")?);
    Ok(Box::new(Relational {
        distance_weight,
        angle_weight,
    }))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "rkd",
        summary: "Relational KD (Park et al. 2019): match pairwise distances and triplet angles between samples",
        params: &[
            ParamSpec::any("distance_weight", 25.0, "weight of the distance term"),
            ParamSpec::any("angle_weight", 50.0, "weight of the angle term"),
        ],
        taps: &["flat"],
        build: Some(build),
        fixtures: &[fixture!("rkd")],
    }
}
