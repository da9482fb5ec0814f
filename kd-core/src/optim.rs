//! Adam with PyTorch's defaults, whose state can be saved and restored
//! (candle's `AdamW` keeps its moments private).
use std::collections::BTreeMap;

use candle_core::{backprop::GradStore, Tensor, Var};

use crate::{Error, Result};

/// `torch.optim.Adam(params, lr)`: betas (0.9, 0.999), eps 1e-8, no weight decay.
pub struct Adam {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

impl Adam {
    /// `params` are (name, variable) pairs; names key the saved state.
    pub fn new(params: Vec<(String, Var)>, lr: f64) -> Result<Self> {
        if !(lr > 0.0 && lr.is_finite()) {
            return Err(Error::config(format!(
                "learning rate {lr} is out of range: it must be greater than 0 (the tutorial uses 0.001)"
            )));
        }
        let m = params
            .iter()
            .map(|(_, p)| p.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            m,
            v,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        })
    }

    pub fn steps_taken(&self) -> u64 {
        self.step
    }

    /// One update from the gradients in `grads`; parameters without a gradient
    /// are left alone, as PyTorch leaves parameters whose `.grad` is None.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bias1 = 1.0 - self.beta1.powi(t);
        let bias2_sqrt = (1.0 - self.beta2.powi(t)).sqrt();
        let step_size = self.lr / bias1;
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * self.beta1)? + (g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((v.sqrt()? / bias2_sqrt)? + self.eps)?;
            let update = ((&m / &denom)? * step_size)?;
            p.set(&p.as_tensor().sub(&update)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The name of the first parameter whose gradient holds NaN or infinity.
    pub fn non_finite_gradient(&self, grads: &GradStore) -> Result<Option<String>> {
        // A sum is NaN or infinite when any element is. The sums are stacked and
        // read back at once: one device-to-host copy per step on a GPU.
        let (names, sums): (Vec<&String>, Vec<Tensor>) = self
            .params
            .iter()
            .filter_map(|(name, p)| grads.get(p.as_tensor()).map(|g| (name, g)))
            .map(|(name, g)| Ok((name, g.sum_all()?.to_dtype(candle_core::DType::F64)?)))
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

    /// The moments as named tensors (`adam.m.NAME`, `adam.v.NAME`) plus the step count.
    pub fn state(&self) -> (BTreeMap<String, Tensor>, u64) {
        let mut out = BTreeMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.insert(format!("adam.m.{name}"), self.m[i].clone());
            out.insert(format!("adam.v.{name}"), self.v[i].clone());
        }
        (out, self.step)
    }

    /// Restores what [`Adam::state`] returned; every parameter must be there.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>, step: u64) -> Result<()> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (slot, kind) in [(&mut self.m[i], "m"), (&mut self.v[i], "v")] {
                let key = format!("adam.{kind}.{name}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| Error::config(format!("optimizer state lacks `{key}`")))?;
                if t.dims() != p.dims() {
                    return Err(Error::config(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        p.dims()
                    )));
                }
                *slot = t.to_device(p.device())?;
            }
        }
        self.step = step;
        Ok(())
    }
}
