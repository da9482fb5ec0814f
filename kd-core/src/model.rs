//! [`Model`]: a registered architecture with its own variables.

use std::collections::BTreeSet;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

use crate::data::Batch;
use crate::network::{ArchConfig, Mode, Network, Outputs, Student, Teacher};
use crate::registry::{self, ArchPlugin};
use crate::Result;

/// A registered architecture built with its own variables: usable as a
/// student (trainable) or, frozen, as a teacher.
pub struct Model {
    pub arch: &'static ArchPlugin,
    pub config: ArchConfig,
    net: Box<dyn Network>,
    varmap: VarMap,
    /// The variables that are buffers (declared with [`crate::nn::seeded::buffer`]).
    buffers: BTreeSet<String>,
    device: Device,
}

impl Model {
    /// Builds `arch` with parameters initialised by PyTorch's default schemes
    /// from `seed`: the same seed gives the same weights on every device.
    pub fn new(arch: &str, config: ArchConfig, seed: u64, device: &Device) -> Result<Self> {
        Self::build(arch, config, device, |varmap| {
            crate::nn::seeded::var_builder(varmap, seed, DType::F32, device)
        })
    }

    /// `arch` with zeros for weights: to count its parameters and
    /// multiply-accumulates, without the cost of drawing initial values.
    pub fn sized(arch: &str, config: ArchConfig) -> Result<Self> {
        Self::build(arch, config, &Device::Cpu, |varmap| {
            crate::nn::seeded::zeros_var_builder(varmap, &Device::Cpu)
        })
    }

    fn build(
        arch: &str,
        config: ArchConfig,
        device: &Device,
        var_builder: impl FnOnce(&VarMap) -> candle_nn::VarBuilder<'static>,
    ) -> Result<Self> {
        let arch = registry::arch(arch)?;
        crate::limits::check_arch(arch, &config)?;
        let varmap = VarMap::new();
        let vb = var_builder(&varmap);
        let (net, buffers) = crate::nn::seeded::collect_buffers(|| (arch.build)(&config, vb));
        Ok(Self {
            arch,
            config,
            net: net?,
            varmap,
            buffers,
            device: device.clone(),
        })
    }

    /// Multiply-accumulates of one forward pass on one image: the
    /// convolutions as they run, and one per weight of each linear layer (the
    /// rank-2 parameters). Normalisation, activations and pooling are not counted.
    pub fn macs(&self) -> Result<u64> {
        let [c, h, w] = self.config.input_shape;
        let x = Tensor::zeros((1, c, h, w), DType::F32, &self.device)?;
        let (out, conv) = crate::nn::count_conv_macs(|| self.forward(&x, Mode::Eval));
        out?;
        let linear: usize = self
            .params()
            .iter()
            .filter(|(_, v)| v.rank() == 2)
            .map(|(_, v)| v.elem_count())
            .sum();
        Ok(conv + linear as u64)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        self.net.forward(images, mode)
    }

    /// Named variables (parameters and buffers), sorted by name: what a model file holds.
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
            for v in t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()? {
                h.update(v.to_le_bytes());
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// Elements of the parameters, buffers not counted (as PyTorch's
    /// `sum(p.numel() for p in model.parameters())`).
    pub fn parameter_count(&self) -> usize {
        self.params().iter().map(|(_, v)| v.elem_count()).sum()
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
    fn buffers(&self) -> BTreeSet<String> {
        self.buffers.clone()
    }
}

impl Teacher for Model {
    fn outputs(&self, batch: &Batch) -> Result<Outputs> {
        Ok(self.net.forward(&batch.images, Mode::Eval)?.detach())
    }
}
