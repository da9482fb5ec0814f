//! kd-core: the framework half of kd.
//!
//! It knows no distillation method and no architecture by name: those are
//! registered by plugin crates (see [`registry`]) and looked up at run time.
//! Data flows one way: files -> [`data::Dataset`] -> [`data::Batch`] ->
//! ([`Teacher`] outputs, [`Student`] outputs) -> [`DistillLoss`] + CE ->
//! [`optim::Adam`] -> [`weights`] -> safetensors.

pub mod cache;
pub mod checkpoint;
pub mod data;
pub mod device;
mod error;
pub mod eval;
pub mod functional;
pub mod init;
pub mod limits;
pub mod loss;
pub mod malloc;
pub mod model;
pub mod network;
pub mod nn;
pub mod optim;
pub mod registry;
pub mod train;
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
