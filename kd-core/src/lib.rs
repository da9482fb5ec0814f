//! kd-core: the framework half of kd.
//!
//! It knows no distillation method and no architecture by name: those are
//! registered by plugin crates (see [`registry`]) and looked up at run time.
//! Data flows one way: files -> [`data::Dataset`] -> [`data::Batch`] ->
//! ([`Teacher`] outputs, [`Student`] outputs) -> [`DistillLoss`] + CE ->
//! [`optim::Optimizer`] -> [`weights`] -> safetensors.
//!
//! # A method in ten lines
//!
//! A method is a [`DistillLoss`] and its registration. Linked into a `kd`
//! binary, it shows up in `kd list` and trains with `kd train --method l2`:
//!
//! ```
//! use kd_core::loss::Step;
//! use kd_core::registry::MethodPlugin;
//! use kd_core::{candle::Tensor, DistillLoss, Result};
//!
//! /// Mean squared error between student and teacher logits.
//! struct L2;
//! impl DistillLoss for L2 {
//!     fn loss(&self, step: &Step) -> Result<Tensor> {
//!         Ok((&step.student.logits - &step.teacher.logits)?.sqr()?.mean_all()?)
//!     }
//! }
//! kd_core::inventory::submit! {
//!     MethodPlugin { name: "l2", summary: "MSE between logits", params: &[], taps: &[],
//!                    build: Some(|_| Ok(Box::new(L2))), fixtures: &[] }
//! }
//! # assert!(kd_core::registry::method("l2").is_ok());
//! ```
//!
//! `kd verify --method l2` then runs the property checks on it (finite
//! differences, no gradient to the teacher, zero at identity); shipping a
//! fixture made by an independent implementation holds it to that too
//! ([`verify`]). Architectures ([`registry::ArchPlugin`]: a builder from a
//! `VarBuilder` and the taps it provides) and recipes register the same way.

pub mod data;
pub mod device;
mod error;
pub mod functional;
/// kd's seeded generators.
#[doc(hidden)]
pub mod init;
pub mod limits;
pub mod loss;
/// Allocator tuning for kd's binaries.
#[doc(hidden)]
pub mod malloc;
pub mod model;
pub mod network;
pub mod nn;
pub mod optim;
pub mod registry;
pub mod verify;
pub mod weights;

pub use error::{Error, Result};
pub use loss::DistillLoss;
pub use model::Model;
pub use network::{ArchConfig, Mode, Network, Outputs, Student, Teacher};

/// Re-exported so plugin crates use the same version as kd-core.
pub use candle_core as candle;
pub use candle_nn;
pub use inventory;

/// The version written into every weights file kd produces.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
