//! The distillation objective and the losses every run shares.
use std::collections::BTreeMap;

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use crate::network::Outputs;
use crate::{Error, Result};

/// One distillation objective: a loss comparing student and teacher outputs
/// on a training step. Trainable helpers (a FitNets regressor) come from the
/// `VarBuilder` in [`MethodContext`] and train with the student.
///
/// The teacher outputs a loss sees hold the logits and exactly the taps its
/// [`MethodPlugin`](crate::registry::MethodPlugin) declares: a tap read but
/// not declared is an error at start-up, never a silent difference between a
/// cached teacher and a live one.
pub trait DistillLoss: Send + Sync {
    /// The method's term alone, before the trainer's `distill_weight`.
    fn loss(&self, step: &Step) -> Result<Tensor>;

    /// Whether the loss is 0 when the student's outputs equal the teacher's;
    /// `kd verify` checks it. Methods with trainable helpers say no.
    fn zero_at_identity(&self) -> bool {
        true
    }
}

/// What a loss sees of one training step. New fields may be added, so plugins
/// read it and never build it: the trainer (or [`Step::new`]) makes it.
#[non_exhaustive]
pub struct Step<'a> {
    pub student: &'a Outputs,
    pub teacher: &'a Outputs,
    /// The batch's class labels (N, u32).
    pub labels: &'a Tensor,
    /// 0-based epoch and optimizer step (counted over the whole run), for schedules.
    pub epoch: usize,
    pub step: usize,
    /// Each sample's index in the training set, for methods with per-sample state.
    pub indices: &'a [usize],
}

impl<'a> Step<'a> {
    /// A step at epoch 0, step 0, with no sample indices: for tests and tools.
    pub fn new(student: &'a Outputs, teacher: &'a Outputs, labels: &'a Tensor) -> Self {
        Self {
            student,
            teacher,
            labels,
            epoch: 0,
            step: 0,
            indices: &[],
        }
    }

    /// The same step placed at `epoch` and `step`, for `indices`.
    pub fn at(self, epoch: usize, step: usize, indices: &'a [usize]) -> Self {
        Self {
            epoch,
            step,
            indices,
            ..self
        }
    }
}

/// Hyper-parameter values by name, resolved against a method's [`ParamSpec`](crate::registry::ParamSpec)s.
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

/// Mean cross-entropy of `logits` (N x K) against `labels` (N, u32), stable.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(
        logits,
        &labels.to_dtype(DType::U32)?,
    )?)
}
