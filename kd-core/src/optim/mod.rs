//! Optimizers and learning-rate schedules behind two small traits, each
//! registered by name ([`OptimizerPlugin`], [`SchedulePlugin`]) so that a
//! plugin crate adds one in a file of its own. Every optimizer keeps its state
//! in tensors it can save, so a resumed run continues bit for bit.
use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, DType, Tensor, Var};

use crate::{Error, Result};

mod adam;
mod schedule;
mod sgd;

pub use adam::Adam;
pub use schedule::{Constant, Cosine, MultiStep, Warmup};
pub use sgd::Sgd;

/// Updates parameters from their gradients. Parameters without a gradient are
/// left alone, as PyTorch leaves those whose `.grad` is None.
pub trait Optimizer: Send {
    fn step(&mut self, grads: &GradStore) -> Result<()>;
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// Steps taken so far (stored beside [`state`](Self::state) in checkpoints).
    fn steps_taken(&self) -> u64;
    /// The state as named tensors, prefixed with the optimizer's name.
    fn state(&self) -> BTreeMap<String, Tensor>;
    /// Restores what [`state`](Self::state) and [`steps_taken`](Self::steps_taken) returned.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>, steps: u64) -> Result<()>;
}

/// The settings every optimizer is built from; each reads what it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerSettings {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    /// `None`: the optimizer's own default (PyTorch's: 0, or 0.01 for AdamW).
    pub weight_decay: Option<f64>,
}

/// Builds an optimizer over (name, variable) pairs; names key the saved state.
pub type BuildOptimizer = fn(Vec<(String, Var)>, &OptimizerSettings) -> Result<Box<dyn Optimizer>>;

/// An optimizer, by name (`--optimizer NAME`).
pub struct OptimizerPlugin {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: BuildOptimizer,
}

/// The learning rate of each epoch (`epoch` counts from 0; `step` is the
/// optimizer step within it, for schedules that move inside an epoch).
pub trait LrSchedule: Send + Sync {
    fn lr(&self, epoch: usize, step: usize) -> f64;
}

/// What every schedule is built from; each reads what it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    pub base_lr: f64,
    pub epochs: usize,
    pub milestones: Vec<usize>,
    pub gamma: f64,
    pub min_lr: f64,
}

pub type BuildSchedule = fn(&ScheduleSettings) -> Result<Box<dyn LrSchedule>>;

/// A schedule, by name (`--lr-schedule NAME`).
pub struct SchedulePlugin {
    pub name: &'static str,
    pub summary: &'static str,
    pub build: BuildSchedule,
}

inventory::collect!(OptimizerPlugin);
inventory::collect!(SchedulePlugin);

pub fn optimizers() -> Vec<&'static OptimizerPlugin> {
    let mut v: Vec<_> = inventory::iter::<OptimizerPlugin>.into_iter().collect();
    v.sort_by_key(|o| o.name);
    v
}

pub fn schedules() -> Vec<&'static SchedulePlugin> {
    let mut v: Vec<_> = inventory::iter::<SchedulePlugin>.into_iter().collect();
    v.sort_by_key(|s| s.name);
    v
}

pub fn optimizer(name: &str) -> Result<&'static OptimizerPlugin> {
    crate::registry::find("optimizer", name, optimizers(), |o| o.name)
}

pub fn schedule(name: &str) -> Result<&'static SchedulePlugin> {
    crate::registry::find("LR schedule", name, schedules(), |s| s.name)
}

/// Refuses a learning rate that cannot train.
pub(crate) fn check_lr(lr: f64) -> Result<()> {
    if lr > 0.0 && lr.is_finite() {
        return Ok(());
    }
    Err(Error::config(format!(
        "learning rate {lr} is out of range: it must be greater than 0 (the tutorial uses 0.001)"
    )))
}

/// Refuses a setting outside `[0, max]`, naming it and its range.
pub(crate) fn check_range(what: &str, value: f64, max: f64) -> Result<()> {
    if (0.0..=max).contains(&value) {
        return Ok(());
    }
    Err(Error::config(format!(
        "{what} = {value} is out of range: use a number from 0 to {max}"
    )))
}

/// The state tensor `key`, shaped like `like`, on its device.
pub(crate) fn state_tensor(
    state: &BTreeMap<String, Tensor>,
    key: &str,
    like: &Var,
) -> Result<Option<Tensor>> {
    let Some(t) = state.get(key) else {
        return Ok(None);
    };
    if t.dims() != like.dims() {
        return Err(Error::config(format!(
            "optimizer state `{key}` has shape {:?}, the parameter {:?}",
            t.dims(),
            like.dims()
        )));
    }
    Ok(Some(t.to_device(like.device())?))
}

/// The name of the first parameter whose gradient holds NaN or infinity.
pub fn non_finite_gradient(params: &[(String, Var)], grads: &GradStore) -> Result<Option<String>> {
    // A sum is NaN or infinite when any element is. The sums are stacked and
    // read back at once: one device-to-host copy per step on a GPU.
    let (names, sums): (Vec<&String>, Vec<Tensor>) = params
        .iter()
        .filter_map(|(name, p)| grads.get(p.as_tensor()).map(|g| (name, g)))
        .map(|(name, g)| Ok((name, g.sum_all()?.to_dtype(DType::F64)?)))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .unzip();
    if sums.is_empty() {
        return Ok(None);
    }
    let sums = Tensor::stack(&sums, 0)?.to_vec1::<f64>()?;
    Ok(names
        .into_iter()
        .zip(sums)
        .find(|(_, s)| !s.is_finite())
        .map(|(n, _)| n.clone()))
}
