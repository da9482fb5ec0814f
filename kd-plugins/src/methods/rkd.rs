//! Relational KD (Park et al., CVPR 2019) on the `flat` tap: the student
//! keeps the teacher's distances between samples and angles between triples,
//!
//! loss = w_d · smooth_l1(ψ_D(s), ψ_D(t)) + w_a · smooth_l1(ψ_A(s), ψ_A(t))
//!
//! ψ_D: pairwise Euclidean distances over their mean (over the positive ones);
//! ψ_A: cosines <e_j − e_i, e_k − e_i> of every triple, as RepDistiller's
//! `RKDLoss` ([`relative_distances`], [`triplet_angle_cosines`]).
use kd_core::candle::Tensor;
use kd_core::functional::{relative_distances, rows, smooth_l1, triplet_angle_cosines};
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};

pub struct Relational {
    distance_weight: f64,
    angle_weight: f64,
}

impl DistillLoss for Relational {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let (s, t) = (
            rows(step.student.tap("flat")?)?,
            rows(step.teacher.tap("flat")?)?,
        );
        // A batch too small to hold a pair (or a triplet) has no relation to
        // match: that term is zero, not the NaN of a mean over nothing (the
        // last batch of an epoch may hold one image).
        let n = s.dim(0)?;
        let zero = || s.sum_all()?.affine(0.0, 0.0);
        let d = match n {
            0 | 1 => zero()?,
            _ => smooth_l1(&relative_distances(&s)?, &relative_distances(&t)?)?,
        };
        let a = match n {
            0..=2 => zero()?,
            _ => smooth_l1(&triplet_angle_cosines(&s)?, &triplet_angle_cosines(&t)?)?,
        };
        Ok(((d * self.distance_weight)? + (a * self.angle_weight)?)?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    let distance_weight = ctx.param("distance_weight")?;
    let angle_weight = ctx.param("angle_weight")?;
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
