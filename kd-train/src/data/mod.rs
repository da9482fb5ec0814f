//! Data: the file formats that fill kd-core's [`Dataset`], kd's decoded
//! copies, and the vocabulary types themselves (re-exported, so that one
//! `use crate::data` serves a front end).
mod cifar10;
mod cifar100;
pub mod decoded;
mod folder;
mod idx;
mod parquet;
mod synthetic;

pub use kd_core::data::*;

pub use cifar10::{load_cifar10_dir, tutorial_normalization, CLASSES as CIFAR10_CLASSES};
pub use cifar100::{
    cifar100_normalization, load_cifar100_dir, Labels as Cifar100Labels,
    COARSE_CLASSES as CIFAR100_COARSE_CLASSES, FINE_CLASSES as CIFAR100_CLASSES,
};
pub use folder::{image_folder_files, load_image_folder};
pub use idx::{idx_splits, load_idx_dir, read_idx_images, read_idx_labels};
pub use parquet::{read_parquet_images, Decoded};
pub use synthetic::{synthetic, SyntheticSpec, CLASS_NAMES as SYNTHETIC_CLASSES};

/// Reads a whole data file, naming it in the error.
pub(crate) fn read_file(path: &std::path::Path) -> kd_core::Result<Vec<u8>> {
    // A FIFO would block and a device never end: a data file is a file.
    kd_core::weights::regular_file(path)?;
    std::fs::read(path).map_err(|e| kd_core::Error::io("read", path, e))
}
