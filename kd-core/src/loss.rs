//! The distillation objective and the losses every run shares.
use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::model::Outputs;
use crate::registry::ParamSpec;
use crate::{Error, Result};

/// One distillation objective: what it needs from the teacher, and a loss
/// comparing student and teacher outputs. Trainable helpers (a FitNets
/// regressor) come from the `VarBuilder` in [`MethodContext`] and train with
/// the student.
pub trait DistillLoss: Send + Sync {
    /// Taps the teacher must provide besides its logits (cacheable).
    fn teacher_taps(&self) -> &[&str];
    fn loss(&self, student: &Outputs, teacher: &Outputs) -> Result<Tensor>;
}

/// Hyper-parameter values by name, resolved against a method's [`ParamSpec`]s.
pub type Params = BTreeMap<String, f64>;

/// Everything a method's `build` may use to size itself.
pub struct MethodContext<'a> {
    pub params: &'a Params,
    /// Variables created here are trained with the student and saved apart
    /// from it (the "adapters" file).
    pub vb: VarBuilder<'a>,
    /// The student's and teacher's outputs on a probe batch: shapes only matter.
    pub student: &'a Outputs,
    pub teacher: &'a Outputs,
}

impl MethodContext<'_> {
    pub fn param(&self, name: &str) -> Result<f64> {
        self.params
            .get(name)
            .copied()
            .ok_or_else(|| Error::config(format!("missing hyper-parameter `{name}`")))
    }
}

/// Fills in defaults and rejects names a method does not declare.
pub fn resolve_params(specs: &[ParamSpec], given: &Params, method: &str) -> Result<Params> {
    let mut out: Params = specs
        .iter()
        .map(|p| (p.name.to_string(), p.default))
        .collect();
    for (name, value) in given {
        let Some(spec) = specs.iter().find(|p| p.name == name) else {
            let known: Vec<_> = specs.iter().map(|p| p.name).collect();
            return Err(Error::config(format!(
                "method `{method}` has no hyper-parameter `{name}`; it takes: {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !value.is_finite() || (spec.positive && *value <= 0.0) {
            return Err(Error::config(format!(
                "hyper-parameter `{name}` = {value} is out of range: it must be a finite number{} ({})",
                if spec.positive { " greater than 0" } else { "" },
                spec.help
            )));
        }
        out.insert(name.clone(), *value);
    }
    Ok(out)
}

/// Mean cross-entropy of `logits` (N x K) against `labels` (N, u32), stable.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(
        logits,
        &labels.to_dtype(DType::U32)?,
    )?)
}
