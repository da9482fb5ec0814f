//! What the commands share: a model file loaded with its architecture, and
//! the device a flag names.
use anyhow::{Context, Result};
use kd_core::candle::Device;
use kd_core::weights::{self, ModelInfo};
use kd_core::{ArchConfig, Model};

use crate::cli::ModelArgs;

/// Loads a model for eval / predict / a teacher: from kd's metadata, or from
/// `--arch` and `--input-shape` for a plain PyTorch state_dict. `arch_flag` is
/// the flag that names the architecture, for the hint when it is missing.
pub fn load_model(
    file: &weights::WeightsFile,
    args: &ModelArgs,
    default_shape: Option<[usize; 3]>,
    default_classes: Option<usize>,
    device: &Device,
    arch_flag: &str,
) -> Result<(Model, ModelInfo)> {
    let fallback = match &args.arch {
        Some(arch) => {
            let file_config = ModelInfo::from_metadata(&file.path, &file.metadata)
                .ok()
                .and_then(|i| i.config);
            let input_shape = args
                .input_shape
                .or(file_config.as_ref().map(|c| c.input_shape))
                .or(default_shape)
                .context("--input-shape C,H,W is needed for this file")?;
            let num_classes = args
                .num_classes
                .or(file_config.map(|c| c.num_classes))
                .or(default_classes)
                .unwrap_or(10);
            Some((
                arch.as_str(),
                ArchConfig {
                    input_shape,
                    num_classes,
                },
            ))
        }
        None => None,
    };
    // Where the data set gives the shape, the command has no --input-shape to name.
    let shape = match default_shape {
        Some(_) => "",
        None => " and --input-shape C,H,W",
    };
    weights::model_from_file(file, fallback, device).map_err(|e| match e {
        kd_core::Error::NoMetadata { .. } => {
            anyhow::anyhow!("{e}: pass {arch_flag} NAME{shape}")
        }
        kd_core::Error::WeightsMismatch { .. } => {
            anyhow::anyhow!("{e} ({arch_flag} NAME{shape} say what a plain state_dict holds)")
        }
        other => other.into(),
    })
}

/// Opens the device a flag named.
pub fn device(spec: kd_core::device::DeviceSpec) -> Result<Device> {
    spec.open().with_context(|| format!("--device {spec}"))
}
