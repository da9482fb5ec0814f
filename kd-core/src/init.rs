//! kd's seeded generators, one stream per name.
//!
//! Candle cannot seed its CPU generator, and a fair comparison of students
//! needs them to start identical (the tutorial's `torch.manual_seed(42)`), so
//! every random choice (initial weights, shuffles, dropout masks, transforms)
//! comes from a generator seeded by (seed, name). Seeding per name keeps a
//! network's initialisation independent of whatever else is built beside it
//! (a FitNets regressor, say).
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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
