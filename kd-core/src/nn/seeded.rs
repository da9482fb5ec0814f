//! Variables created with values from kd's seeded generator: the backend
//! behind a model's `VarBuilder`. Each layer asks for its variables with the
//! initialisation PyTorch gives that layer type (its `Init` hint), and the
//! values come from a generator keyed by the run seed and the variable's
//! name, so the same seed gives the same weights on every device and in any
//! construction order (Candle cannot seed its CPU generator).
//!
//! Buffers (running statistics) are variables a layer declares with
//! [`buffer`]: saved with the parameters, never given to the optimizer.
use std::cell::RefCell;
use std::collections::BTreeSet;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng;

use crate::init::rng_for;

struct Seeded {
    varmap: VarMap,
    /// `None`: zeros (a network built only to be measured).
    seed: Option<u64>,
}

/// A `VarBuilder` whose new variables go into `varmap`, initialised from `seed`.
pub fn var_builder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    let backend = Seeded {
        varmap: varmap.clone(),
        seed: Some(seed),
    };
    VarBuilder::from_backend(Box::new(backend), dtype, device.clone())
}

/// A `VarBuilder` whose new variables are zeros: a network to count, not to train.
pub fn zeros_var_builder(varmap: &VarMap, device: &Device) -> VarBuilder<'static> {
    let backend = Seeded {
        varmap: varmap.clone(),
        seed: None,
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, device.clone())
}

impl candle_nn::var_builder::SimpleBackend for Seeded {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().unwrap();
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable `{name}` is asked for as {shape:?} but exists as {:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let tensor = match self.seed {
            Some(seed) => {
                let values = values(&init, &shape, &mut rng_for(seed, name));
                Tensor::from_vec(values, &shape, dev)?.to_dtype(dtype)?
            }
            None => Tensor::zeros(&shape, dtype, dev)?,
        };
        let var = Var::from_tensor(&tensor)?;
        data.insert(name.to_string(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        let data = self.varmap.data().lock().unwrap();
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no variable `{name}`"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap.data().lock().unwrap().contains_key(name)
    }
}

/// The values of `init` for `shape`, drawn in order from `rng` (uniform as
/// `rng.gen_range(lo..up)` in f32, normal by Box-Muller).
fn values(init: &Init, shape: &Shape, rng: &mut impl Rng) -> Vec<f32> {
    let n = shape.elem_count();
    let uniform = |rng: &mut dyn rand::RngCore, bound: f32| -> Vec<f32> {
        (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
    };
    let normal = |rng: &mut dyn rand::RngCore, mean: f32, std: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let (u1, u2): (f32, f32) = (rng.gen_range(f32::EPSILON..1.0), rng.gen());
                mean + std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect()
    };
    match *init {
        Init::Const(v) => vec![v as f32; n],
        Init::Uniform { lo, up } if lo == -up => uniform(rng, up as f32),
        Init::Uniform { lo, up } => (0..n)
            .map(|_| rng.gen_range(lo as f32..up as f32))
            .collect(),
        Init::Randn { mean, stdev } => normal(rng, mean as f32, stdev as f32),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let fan = fan.for_shape(shape).max(1) as f32;
            let gain = match non_linearity {
                NonLinearity::ReLU => 2f32.sqrt(),
                NonLinearity::Tanh => 5.0 / 3.0,
                NonLinearity::Linear | NonLinearity::Sigmoid => 1.0,
                NonLinearity::SELU => 0.75,
                NonLinearity::ExplicitGain(g) => g as f32,
            };
            let std = gain / fan.sqrt();
            match dist {
                NormalOrUniform::Uniform => uniform(rng, 3f32.sqrt() * std),
                NormalOrUniform::Normal => normal(rng, 0.0, std),
            }
        }
    }
}

/// PyTorch's default for `nn.Conv2d` and `nn.Linear` weights and biases:
/// uniform within 1/sqrt(fan in), the fan in of the layer's weight.
pub fn torch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    Init::Uniform {
        lo: -(bound as f64),
        up: bound as f64,
    }
}

/// `kaiming_normal_(mode = "fan_out", nonlinearity = "relu")`, the zoo's convolutions.
pub const KAIMING_FAN_OUT: Init = Init::Kaiming {
    dist: NormalOrUniform::Normal,
    fan: FanInOut::FanOut,
    non_linearity: NonLinearity::ReLU,
};

thread_local! {
    static BUFFERS: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
}

/// A buffer at `vb`'s path: a variable that is saved and loaded with the
/// parameters but never optimised (PyTorch's `register_buffer`).
pub fn buffer(
    vb: &VarBuilder,
    shape: impl Into<Shape>,
    name: &str,
    init: Init,
    dtype: DType,
) -> crate::Result<Tensor> {
    let t = vb.get_with_hints_dtype(shape, name, init, dtype)?;
    let path = match vb.prefix() {
        p if p.is_empty() => name.to_string(),
        p => format!("{p}.{name}"),
    };
    BUFFERS.with(|b| {
        if let Some(set) = b.borrow_mut().as_mut() {
            set.insert(path);
        }
    });
    Ok(t)
}

/// Runs `build` and returns what it made with the names of the buffers it
/// declared (networks are built on one thread, so the list is the build's own).
pub fn collect_buffers<T>(build: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let outer = BUFFERS.with(|b| b.borrow_mut().replace(BTreeSet::new()));
    let out = build();
    let names = BUFFERS.with(|b| std::mem::replace(&mut *b.borrow_mut(), outer));
    (out, names.unwrap_or_default())
}
