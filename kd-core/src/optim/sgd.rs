//! SGD with PyTorch's semantics: weight decay joins the gradient, the
//! momentum buffer starts as the first gradient (no dampening on that step),
//! Nesterov looks one momentum step ahead.
use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use super::{Optimizer, OptimizerPlugin, OptimizerSettings};
use crate::{Error, Result};

/// `torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)`.
pub struct Sgd {
    params: Vec<(String, Var)>,
    /// Per parameter; `None` until its first gradient, as PyTorch's buffer.
    momentum_buffers: Vec<Option<Tensor>>,
    step: u64,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
}

impl Sgd {
    pub fn new(params: Vec<(String, Var)>, s: &OptimizerSettings) -> Result<Self> {
        super::check_lr(s.lr)?;
        super::check_range("momentum", s.momentum, 1.0)?;
        super::check_range("dampening", s.dampening, 1.0)?;
        let weight_decay = s.weight_decay.unwrap_or(0.0);
        super::check_range("weight decay", weight_decay, 1.0)?;
        if s.nesterov && (s.momentum == 0.0 || s.dampening != 0.0) {
            return Err(Error::config(format!(
                "Nesterov momentum needs a momentum above 0 and no dampening (momentum {}, dampening {}): give --momentum 0.9, or drop --nesterov",
                s.momentum, s.dampening
            )));
        }
        Ok(Self {
            momentum_buffers: vec![None; params.len()],
            params,
            step: 0,
            lr: s.lr,
            momentum: s.momentum,
            dampening: s.dampening,
            weight_decay,
            nesterov: s.nesterov,
        })
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let w = p.as_tensor();
            let mut d = if self.weight_decay == 0.0 {
                g.clone()
            } else {
                (g + (w * self.weight_decay)?)?
            };
            if self.momentum != 0.0 {
                let buf = match &self.momentum_buffers[i] {
                    None => d.clone(),
                    Some(b) => ((b * self.momentum)? + (&d * (1.0 - self.dampening))?)?,
                };
                d = if self.nesterov {
                    (d + (&buf * self.momentum)?)?
                } else {
                    buf.clone()
                };
                self.momentum_buffers[i] = Some(buf);
            }
            p.set(&w.sub(&(d * self.lr)?)?)?;
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

    /// The momentum buffers that exist, as `sgd.momentum.NAME`.
    fn state(&self) -> BTreeMap<String, Tensor> {
        self.params
            .iter()
            .zip(&self.momentum_buffers)
            .filter_map(|((name, _), b)| Some((format!("sgd.momentum.{name}"), b.clone()?)))
            .collect()
    }

    /// A parameter without a saved buffer had no gradient yet.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>, steps: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            self.momentum_buffers[i] =
                super::state_tensor(state, &format!("sgd.momentum.{name}"), p)?;
        }
        self.step = steps;
        Ok(())
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "sgd",
        summary: "SGD as PyTorch's: --momentum, --dampening, --nesterov, --weight-decay (the CIFAR-100 recipes: 0.9, 5e-4)",
        build: |params, s| Ok(Box::new(Sgd::new(params, s)?)),
    }
}
