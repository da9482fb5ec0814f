//! Adam and AdamW with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8).
//! candle's `AdamW` keeps its moments private; these keep them in tensors
//! that checkpoints save.
use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use super::{Optimizer, OptimizerPlugin, OptimizerSettings};
use crate::{Error, Result};

/// `torch.optim.Adam(params, lr, weight_decay)`, or with `decoupled`,
/// `torch.optim.AdamW`: the decay shrinks the weights instead of joining the gradient.
pub struct Adam {
    name: &'static str,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
}

impl Adam {
    /// `torch.optim.Adam(params, lr)`. `params` are (name, variable) pairs;
    /// names key the saved state.
    pub fn new(params: Vec<(String, Var)>, lr: f64) -> Result<Self> {
        super::check_lr(lr)?;
        let m = params
            .iter()
            .map(|(_, p)| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            name: "adam",
            params,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        })
    }

    /// `torch.optim.AdamW(params, lr, weight_decay)`.
    pub fn adamw(params: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Result<Self> {
        Ok(Self {
            name: "adamw",
            decoupled: true,
            ..Self::new(params, lr)?.with_weight_decay(weight_decay)?
        })
    }

    pub fn with_weight_decay(mut self, weight_decay: f64) -> Result<Self> {
        super::check_range("weight decay", weight_decay, 1.0)?;
        self.weight_decay = weight_decay;
        Ok(self)
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = self.lr / bias1;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let mut w = p.as_tensor().clone();
            let wd = self.weight_decay;
            let g = if wd == 0.0 {
                g.clone()
            } else if self.decoupled {
                w = (w * (1.0 - self.lr * wd))?;
                g.clone()
            } else {
                (g + (&w * wd)?)?
            };
            let m = ((&self.m[i] * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / bias2_sqrt)? + self.eps)?;
            let update = ((&m / &denom)? * step_size)?;
            p.set(&w.sub(&update)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.lr
    }

    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn steps_taken(&self) -> u64 {
        self.step
    }

    /// The moments as `adam.m.NAME` and `adam.v.NAME` (AdamW: `adamw.`).
    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("{}.m.{name}", self.name), self.m[i].clone());
            out.insert(format!("{}.v.{name}", self.name), self.v[i].clone());
        }
        out
    }

    /// Every parameter's moments must be there.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (slot, kind) in [(&mut self.m[i], "m"), (&mut self.v[i], "v")] {
                let key = format!("{}.{kind}.{name}", self.name);
                *slot = super::state_tensor(state, &key, p)?
                    .ok_or_else(|| Error::config(format!("optimizer state lacks `{key}`")))?;
            }
        }
        self.step = steps;
        Ok(())
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "adam",
        summary: "Adam (PyTorch's defaults; --weight-decay adds an L2 term to the gradient): the tutorial's",
        build: |params, s: &OptimizerSettings| {
            Ok(Box::new(Adam::new(params, s.lr)?.with_weight_decay(s.weight_decay.unwrap_or(0.0))?))
        },
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "adamw",
        summary: "AdamW: Adam with decoupled weight decay (--weight-decay, default 0.01 as PyTorch's)",
        build: |params, s: &OptimizerSettings| {
            Ok(Box::new(Adam::adamw(params, s.lr, s.weight_decay.unwrap_or(0.01))?))
        },
    }
}
