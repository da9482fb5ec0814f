//! PyTorch's default initialisation, from kd's own seeded generator.
//!
//! Candle cannot seed its CPU generator, and a fair comparison of students
//! needs them to start identical (the tutorial's `torch.manual_seed(42)`), so
//! kd overwrites every parameter from a generator seeded by (seed, name).
//! Seeding per name keeps a network's initialisation independent of whatever
//! else is built beside it (a FitNets regressor, say).
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::Result;

/// A generator for the stream `name` under `seed`.
pub fn rng_for(seed: u64, name: &str) -> ChaCha8Rng {
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    ChaCha8Rng::seed_from_u64(seed ^ h.rotate_left(17))
}

/// `nn.Conv2d` / `nn.Linear` defaults: weights kaiming-uniform with a = sqrt(5),
/// which is uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)); biases the same bound,
/// with the fan-in of their layer's weight.
pub fn pytorch_default(varmap: &VarMap, seed: u64) -> Result<()> {
    let data = varmap.data().lock().unwrap();
    let fan_in_of = |weight: &str| -> Option<usize> {
        data.get(weight)
            .map(|w| w.as_tensor().dims().iter().skip(1).product::<usize>())
    };
    for (name, var) in data.iter() {
        let fan_in = if name.ends_with("weight") && var.rank() >= 2 {
            fan_in_of(name)
        } else if let Some(prefix) = name.strip_suffix("bias") {
            fan_in_of(&format!("{prefix}weight"))
        } else {
            None
        };
        let Some(fan_in) = fan_in else { continue };
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        let mut rng = rng_for(seed, name);
        let values: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.gen_range(-bound..bound))
            .collect();
        let t = Tensor::from_vec(values, var.shape(), var.device())?.to_dtype(var.dtype())?;
        var.set(&t)?;
    }
    Ok(())
}
