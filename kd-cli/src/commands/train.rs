use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use kd_core::candle::Device;
use kd_core::candle_nn::VarMap;
use kd_core::data::Splits;
use kd_core::eval::Evaluation;
use kd_core::loss::Params;
use kd_core::train::{varmap_tensors, TrainConfig, Trainer};
use kd_core::weights::{self, ModelInfo};
use kd_core::{registry, ArchConfig, Model};

use crate::cli::{Cli, ModelArgs, TrainArgs};
use crate::progress::Progress;

/// One training run: what it is and what it produced.
pub struct Phase {
    pub model: Model,
    pub adapters: VarMap,
    pub evaluation: Evaluation,
    pub seconds: f64,
    pub params: Params,
}

/// Trains `arch` with `method` (distilling from `teacher` when the method
/// needs one) and evaluates it on the test split.
#[allow(clippy::too_many_arguments)]
pub fn train_phase(
    name: &str,
    arch: &str,
    method: &str,
    params: &Params,
    teacher: Option<&Model>,
    config: TrainConfig,
    data: &Splits,
    device: &Device,
    progress: &mut Progress,
) -> Result<Phase> {
    let start = std::time::Instant::now();
    let method = registry::method(method)?;
    let arch_config = ArchConfig {
        input_shape: data.train.shape,
        num_classes: data.train.num_classes(),
    };
    if let (Some(t), true) = (teacher, method.needs_teacher) {
        if t.config.input_shape != arch_config.input_shape {
            bail!(
                "the teacher takes images of {:?} but the data set `{}` has {:?}: use a teacher trained on this data set",
                t.config.input_shape,
                data.train.name,
                arch_config.input_shape
            );
        }
    }
    let model = Model::new(arch, arch_config, config.seed, device)?;
    let params = kd_core::loss::resolve_params(method.params, params, method.name)?;
    let mut trainer = Trainer::new(
        &model,
        teacher.map(|t| t as _),
        method,
        &params,
        config,
        &data.train,
        device,
    )
    .with_context(|| format!("cannot start run `{name}`"))?;
    trainer.fit(&data.train, Some(&data.test), progress)?;
    let evaluation = trainer.evaluate(&data.test)?;
    let adapters = trainer.adapters().clone();
    drop(trainer);
    Ok(Phase {
        model,
        adapters,
        evaluation,
        seconds: start.elapsed().as_secs_f64(),
        params,
    })
}

/// Writes a trained model (student tensors only) with kd's metadata, and its
/// trainable helpers, if any, beside it.
pub fn save_phase(
    path: &Path,
    phase: &Phase,
    method: &str,
    data: &Splits,
    run_config: Option<String>,
) -> Result<()> {
    let info = ModelInfo {
        arch: Some(phase.model.arch.name.to_string()),
        config: Some(phase.model.config.clone()),
        method: Some(method.to_string()),
        params: phase.params.clone(),
        dataset: Some(data.train.name.clone()),
        classes: Some(data.train.classes.clone()),
        normalization: Some(data.train.normalization.clone()),
        accuracy: Some(phase.evaluation.accuracy),
        run_config,
    };
    weights::save(path, &phase.model.tensors(), info.to_metadata())?;
    let adapters = varmap_tensors(&phase.adapters);
    if !adapters.is_empty() {
        let mut meta = info.to_metadata();
        meta.insert(
            "kd.adapters_for".into(),
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into(),
        );
        weights::save(&adapters_path(path), &adapters, meta)?;
    }
    Ok(())
}

pub fn adapters_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("adapters.safetensors")
}

/// Loads a teacher from a file (kd's metadata, or `--teacher-arch` for a plain state_dict).
pub fn load_teacher(
    spec: &str,
    teacher_arch: Option<&str>,
    data: &Splits,
    device: &Device,
) -> Result<Model> {
    let path = crate::hub::resolve(spec)?;
    let args = ModelArgs {
        arch: teacher_arch.map(str::to_string),
        input_shape: None,
        num_classes: None,
        device: String::new(),
    };
    let (model, _) = super::load_model(
        &path,
        &args,
        Some(data.train.shape),
        Some(data.train.num_classes()),
        device,
    )
    .map_err(|e| {
        if e.to_string().contains("no kd metadata") {
            anyhow::anyhow!(
                "teacher {}: {e:#} (for the teacher: --teacher-arch NAME)",
                path.display()
            )
        } else {
            e.context(format!("cannot load teacher {}", path.display()))
        }
    })?;
    Ok(model)
}

pub fn run(args: TrainArgs, quiet: bool) -> Result<()> {
    let cfg = args.run.with_file(args.config.as_deref())?;
    let Some(arch) = cfg.arch.clone() else {
        Cli::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, "--arch NAME is required (on the command line or in --config); `kd list` shows the architectures")
            .exit();
    };
    let method_name = cfg.method.clone().unwrap_or_else(|| "ce".into());
    let hyper = cfg.hyper.clone().resolved();
    let config = hyper.train_config();
    config.validate()?;
    // Check names and paths before loading data or training for hours.
    registry::arch(&arch)?;
    let method = registry::method(&method_name)?;
    kd_core::loss::resolve_params(method.params, &hyper.params, method.name)?;
    super::check_writable(&args.out)?;
    if let Some(m) = &args.metrics {
        super::check_writable(m)?;
    }
    if method.needs_teacher && cfg.teacher.is_none() {
        bail!("method `{method_name}` distils from a teacher: pass --teacher FILE (train one with `kd train --arch deep_nn --out teacher.safetensors`)");
    }
    let device = super::device(hyper.device.as_deref().unwrap_or("auto"))?;
    let data = crate::datasets::load(&cfg.data)?;
    let teacher = match (&cfg.teacher, method.needs_teacher) {
        (Some(spec), true) => Some(load_teacher(
            spec,
            cfg.teacher_arch.as_deref(),
            &data,
            &device,
        )?),
        _ => None,
    };
    let resolved = crate::config::RunConfig {
        arch: Some(arch.clone()),
        method: Some(method_name.clone()),
        hyper: hyper.clone(),
        ..cfg.clone()
    };
    let mut progress = Progress::new(&method_name, quiet, args.metrics.as_deref())?;
    let phase = train_phase(
        &method_name,
        &arch,
        &method_name,
        &hyper.params,
        teacher.as_ref(),
        config,
        &data,
        &device,
        &mut progress,
    )?;
    let toml = resolved.to_toml();
    save_phase(&args.out, &phase, &method_name, &data, Some(toml.clone()))?;
    kd_core::weights::write_atomic(&super::sibling(&args.out, "toml"), toml.as_bytes())?;
    println!("Test accuracy: {:.2}%", phase.evaluation.accuracy);
    if !quiet {
        eprintln!(
            "wrote {} ({} parameters)",
            args.out.display(),
            super::inspect::thousands(phase.model.parameter_count())
        );
        if !phase.adapters.all_vars().is_empty() {
            eprintln!(
                "wrote {} (the method's trainable helpers)",
                adapters_path(&args.out).display()
            );
        }
    }
    Ok(())
}
