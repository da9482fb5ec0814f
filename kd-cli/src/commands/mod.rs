//! One module per subcommand, plus what several of them share.
mod doctor;
mod eval;
mod inspect;
mod list;
mod predict;
mod reproduce;
mod train;
mod verify;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::candle::Device;
use kd_core::weights::{self, ModelInfo};
use kd_core::{ArchConfig, Model};

use crate::cli::{Cli, Command, ModelArgs};

pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::List(a) => list::run(&a),
        Command::Train(a) => train::run(a, quiet),
        Command::Eval(a) => eval::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Reproduce(a) => reproduce::run(a, quiet),
        Command::Verify(a) => verify::run(&a),
        Command::Report(a) => reproduce::report(&a),
        Command::Doctor => doctor::run(),
    }
}

/// Fails early, before hours of training, when `path` cannot be written:
/// its folder must exist and accept a new file.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist. Create it (mkdir -p {}) or choose another path.",
            path.display(),
            dir.display(),
            dir.display()
        );
    }
    tempfile::NamedTempFile::new_in(&dir).with_context(|| {
        format!(
            "cannot write {}: the folder {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    Ok(())
}

/// Refuses to start a fresh run over the checkpoints of an earlier one, which
/// a later `--resume` would otherwise mix up with the new run's.
pub fn refuse_earlier_run(dir: &Path, has_checkpoints: bool, resume: &str) -> Result<()> {
    if has_checkpoints {
        bail!(
            "{} holds checkpoints of an earlier run. Continue it with `{resume}`, or delete that folder (or pick another --out / --run-dir) to start over.",
            dir.display()
        );
    }
    Ok(())
}

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
    weights::model_from_file(file, fallback, device).map_err(|e| match e {
        kd_core::Error::NoMetadata { .. } => {
            anyhow::anyhow!("{e}: pass {arch_flag} NAME (and --input-shape C,H,W)")
        }
        other => other.into(),
    })
}

/// The device named by a flag, or `auto`.
pub fn device(name: &str) -> Result<Device> {
    Ok(kd_core::device::parse(name)?)
}
