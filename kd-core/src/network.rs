//! What a network is to kd: something that maps images to [`Outputs`], as a
//! trainable [`Student`] or a frozen [`Teacher`]. The bottom of kd-core:
//! the registry, losses and models build on these types.
use std::collections::{BTreeMap, BTreeSet};

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::Result;

/// What a forward pass hands to a loss: logits plus named intermediate tensors.
#[derive(Debug, Clone)]
pub struct Outputs {
    pub logits: Tensor,
    pub taps: BTreeMap<String, Tensor>,
}

impl Outputs {
    /// The tap `name`, or an error naming the taps that exist.
    pub fn tap(&self, name: &str) -> Result<&Tensor> {
        self.taps.get(name).ok_or_else(|| crate::Error::MissingTap {
            method: None,
            tap: name.to_string(),
            available: self.taps.keys().cloned().collect(),
        })
    }

    /// The same outputs cut from the graph: what a teacher hands to a loss.
    pub fn detach(self) -> Outputs {
        Outputs {
            logits: self.logits.detach(),
            taps: self
                .taps
                .into_iter()
                .map(|(k, t)| (k, t.detach()))
                .collect(),
        }
    }

    /// The logits and just the taps `names` (each must exist).
    pub fn only(&self, names: &[&str]) -> Result<Outputs> {
        let taps = names
            .iter()
            .map(|n| Ok((n.to_string(), self.tap(n)?.clone())))
            .collect::<Result<_>>()?;
        Ok(Outputs {
            logits: self.logits.clone(),
            taps,
        })
    }
}

/// Whether a forward pass trains. Training carries the seed of this step's
/// random choices (dropout masks), so that runs are reproducible on every
/// device: Candle cannot seed its CPU generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train { seed: u64 },
}

/// A network architecture's forward pass. Architectures are registered with
/// [`ArchPlugin`](crate::registry::ArchPlugin) and built from a `VarBuilder` whose variable paths
/// follow PyTorch's module paths.
pub trait Network: Send + Sync {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs>;
}

/// Anything that can teach: a frozen network, a cache of its outputs, an ensemble.
pub trait Teacher: Send + Sync {
    /// Outputs in eval mode, with no gradient flowing back.
    fn outputs(&self, batch: &Batch) -> Result<Outputs>;
}

/// A network being trained: its variables (all of them saved in model files
/// and checkpoints) are its parameters, which the optimizer updates, and its
/// buffers (running statistics), which it does not.
pub trait Student: Send + Sync {
    fn forward_t(&self, images: &Tensor, mode: Mode) -> Result<Outputs>;
    fn varmap(&self) -> &VarMap;
    /// What the optimizer updates, sorted by name: every variable but the buffers.
    fn params(&self) -> Vec<(String, Var)> {
        let buffers = self.buffers();
        let data = self.varmap().data().lock().unwrap();
        let mut v: Vec<(String, Var)> = data
            .iter()
            .filter(|(k, _)| !buffers.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
    /// The names of the variables that are buffers.
    fn buffers(&self) -> BTreeSet<String> {
        BTreeSet::new()
    }
}

/// The shape-dependent settings of an architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Channels, height, width of one input image.
    pub input_shape: [usize; 3],
    pub num_classes: usize,
}
