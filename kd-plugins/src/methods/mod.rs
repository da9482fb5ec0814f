//! The distillation methods kd ships, one file each: the formula and its
//! source in the doc comment, the registration at the bottom.

/// A method's reference fixture from `tests/fixtures/methods`, embedded so
/// that `kd verify` works from any folder.
macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/methods/",
            $name,
            ".safetensors"
        ))
    };
}

pub mod at;
pub mod ce;
pub mod cosine;
pub mod dist;
pub mod dkd;
pub mod fitnets;
pub mod kd;
pub mod ls_kd;
pub mod pkt;
pub mod rkd;
pub mod sp;
