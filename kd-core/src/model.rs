//! What a network is to kd: something that maps images to [`Outputs`].
use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::registry::{self, ArchPlugin};
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
/// [`registry::ArchPlugin`] and built from a `VarBuilder` whose variable paths
/// follow PyTorch's module paths.
pub trait Network: Send + Sync {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs>;
}

/// Anything that can teach: a frozen network, a cache of its outputs, an ensemble.
pub trait Teacher: Send + Sync {
    /// Outputs in eval mode, with no gradient flowing back.
    fn outputs(&self, batch: &Batch) -> Result<Outputs>;
}

/// A network being trained. Its variables are what the optimizer updates.
pub trait Student: Send + Sync {
    fn forward_t(&self, images: &Tensor, mode: Mode) -> Result<Outputs>;
    fn varmap(&self) -> &VarMap;
}

/// The shape-dependent settings of an architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchConfig {
    /// Channels, height, width of one input image.
    pub input_shape: [usize; 3],
    pub num_classes: usize,
}

/// A registered architecture built with its own variables: usable as a
/// student (trainable) or, frozen, as a teacher.
pub struct Model {
    pub arch: &'static ArchPlugin,
    pub config: ArchConfig,
    net: Box<dyn Network>,
    varmap: VarMap,
    device: Device,
}

impl Model {
    /// Builds `arch` with parameters initialised by PyTorch's default schemes
    /// from `seed`: the same seed gives the same weights on every device.
    pub fn new(arch: &str, config: ArchConfig, seed: u64, device: &Device) -> Result<Self> {
        let arch = registry::arch(arch)?;
        crate::limits::check_arch(arch, &config)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let net = (arch.build)(&config, vb)?;
        crate::init::pytorch_default(&varmap, seed)?;
        Ok(Self {
            arch,
            config,
            net,
            varmap,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        self.net.forward(images, mode)
    }

    /// Named parameters, sorted by name.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        sorted_tensors(&self.varmap)
    }

    /// A hex SHA-256 of the weights (names, shapes, values): equal for equal
    /// weights wherever they were loaded from. Names the teacher a cache or a
    /// checkpoint was made with.
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (name, t) in self.tensors() {
            h.update(name.as_bytes());
            h.update(format!("{:?}", t.dims()).as_bytes());
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                h.update(v.to_le_bytes());
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }

    pub fn parameter_count(&self) -> usize {
        self.tensors().iter().map(|(_, t)| t.elem_count()).sum()
    }
}

/// A varmap's tensors sorted by name (a `VarMap` is a `HashMap`: order matters
/// for reproducible files and optimizer state).
pub fn sorted_tensors(varmap: &VarMap) -> Vec<(String, Tensor)> {
    let data = varmap.data().lock().unwrap();
    let mut v: Vec<(String, Tensor)> = data
        .iter()
        .map(|(k, var)| (k.clone(), var.as_tensor().clone()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

impl Student for Model {
    fn forward_t(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        self.net.forward(images, mode)
    }
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }
}

impl Teacher for Model {
    fn outputs(&self, batch: &Batch) -> Result<Outputs> {
        Ok(self.net.forward(&batch.images, Mode::Eval)?.detach())
    }
}
