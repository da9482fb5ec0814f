use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use kd_core::candle::Device;
use kd_core::candle_nn::VarMap;
use kd_core::checkpoint::{self, Checkpoint};
use kd_core::data::Splits;
use kd_core::eval::Evaluation;
use kd_core::loss::Params;
use kd_core::model::sorted_tensors;
use kd_core::train::{CheckpointPolicy, TrainConfig, Trainer};
use kd_core::weights::{self, ModelInfo};
use kd_core::{registry, ArchConfig, Model, Teacher};

use crate::cli::{Cli, ModelArgs, TrainArgs};
use crate::config::RunConfig;
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
    teacher: Option<&dyn Teacher>,
    config: TrainConfig,
    data: &Splits,
    device: &Device,
    progress: &mut Progress,
    checkpoints: Option<CheckpointPolicy>,
    resume: Option<&Checkpoint>,
) -> Result<Phase> {
    let start = std::time::Instant::now();
    let method = registry::method(method)?;
    let arch_config = ArchConfig {
        input_shape: data.train.shape,
        num_classes: data.train.num_classes(),
    };
    let model = Model::new(arch, arch_config.clone(), config.seed, device)?;
    model.arch.check_taps(method, &arch_config)?;
    let mut trainer = Trainer::new(&model, teacher, method, params, config, &data.train, device)
        .with_context(|| format!("cannot start run `{name}`"))?
        .with_stop_flag(&crate::STOP);
    if let Some(policy) = checkpoints {
        trainer = trainer.with_checkpoints(policy);
    }
    if let Some(c) = resume {
        trainer.restore(c).with_context(|| {
            format!("cannot resume run `{name}` from {}", c.file.path.display())
        })?;
        let s = trainer.state();
        tracing::info!(
            "resuming `{name}` at epoch {}, batch {}",
            s.epochs_done + 1,
            s.batches_done
        );
    }
    trainer.fit(&data.train, Some(&data.test), progress)?;
    let evaluation = trainer.evaluate(&data.test)?;
    let adapters = trainer.adapters().clone();
    let params = trainer.params().clone();
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
        seconds: Some(phase.seconds),
        run_config,
    };
    weights::save(path, &phase.model.tensors(), info.to_metadata())?;
    let adapters = sorted_tensors(&phase.adapters);
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
    let file = kd_core::weights::read(&path)
        .with_context(|| format!("cannot load teacher {}", path.display()))?;
    let (model, _) = super::load_model(
        &file,
        &args,
        Some(data.train.shape),
        Some(data.train.num_classes()),
        device,
        "--teacher-arch",
    )
    .with_context(|| format!("cannot load teacher {}", path.display()))?;
    if model.config.input_shape != data.train.shape {
        bail!(
            "the teacher takes images of {:?} but the data set `{}` has {:?}: use a teacher trained on this data set",
            model.config.input_shape,
            data.train.name,
            data.train.shape
        );
    }
    Ok(model)
}

/// Settings that change a run's result: resuming with another value is refused.
const RESULT_SETTINGS: &[&str] = &[
    "arch",
    "method",
    "teacher",
    "teacher_arch",
    "dataset",
    "data_dir",
    "train_subset",
    "test_subset",
    "synthetic_shape",
    "batch_size",
    "lr",
    "seed",
    "ce_weight",
    "distill_weight",
    "params",
];

/// Names the result-changing settings on which `now` differs from `then`.
pub fn changed_settings(then: &RunConfig, now: &RunConfig) -> Vec<String> {
    let table = |c: &RunConfig| -> toml::Table { c.to_toml().parse().expect("own TOML parses") };
    let (a, b) = (table(then), table(now));
    RESULT_SETTINGS
        .iter()
        .filter(|k| a.get(**k) != b.get(**k))
        .map(|k| {
            let show = |v: Option<&toml::Value>| {
                v.map(|v| v.to_string()).unwrap_or_else(|| "unset".into())
            };
            format!(
                "{k} (checkpoint: {}, now: {})",
                show(a.get(*k)),
                show(b.get(*k))
            )
        })
        .collect()
}

pub fn run(args: TrainArgs, quiet: bool) -> Result<()> {
    let resume = match &args.checkpoints.resume {
        Some(dir) => Some(checkpoint::latest(dir)?.with_context(|| {
            format!(
                "{} holds no checkpoint to resume from (checkpoint-*.safetensors)",
                dir.display()
            )
        })?),
        None => None,
    };
    let flags = args.run.with_file(args.config.as_deref())?;
    let mut cfg = flags.clone();
    if let Some(c) = &resume {
        let then: RunConfig =
            toml::from_str(&c.run_config).context("the checkpoint's settings cannot be read")?;
        cfg = flags.clone().or(then.clone());
        let changed = changed_settings(&then, &cfg);
        if !changed.is_empty() && !args.checkpoints.force {
            bail!(
                "resuming with settings that would change the result: {}. Drop those flags to continue the run as it was, or add --force.",
                changed.join("; ")
            );
        }
    }
    let Some(arch) = cfg.arch.clone() else {
        Cli::command()
            .error(clap::error::ErrorKind::MissingRequiredArgument, "--arch NAME is required (on the command line or in --config); `kd list` shows the architectures")
            .exit();
    };
    let Some(out) = args.out.clone().or(cfg.out.clone()) else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--out FILE.safetensors is required: where to write the trained weights",
            )
            .exit();
    };
    let method = match &cfg.method {
        Some(name) => registry::method(name)?,
        None => registry::supervised()?,
    };
    let method_name = method.name.to_string();
    let hyper = cfg.hyper.clone().resolved();
    let config = hyper.train_config();
    config.validate()?;
    // Check names and paths before loading data or training for hours.
    registry::arch(&arch)?;
    kd_core::loss::resolve_params(method.params, &hyper.params, method.name)?;
    crate::teacher_cache::check_mode(hyper.teacher_cache.as_deref())?;
    super::check_writable(&out)?;
    if let Some(m) = &args.metrics {
        super::check_writable(m)?;
    }
    if method.needs_teacher() && cfg.teacher.is_none() {
        bail!("method `{method_name}` distils from a teacher: pass --teacher FILE (train one first: `kd train --arch NAME --out teacher.safetensors`, without --method)");
    }
    let device = super::device(hyper.device.as_deref().unwrap_or("auto"))?;
    let data = crate::datasets::load(&cfg.data)?;
    let teacher = match (&cfg.teacher, method.needs_teacher()) {
        (Some(spec), true) => {
            let t = load_teacher(spec, cfg.teacher_arch.as_deref(), &data, &device)?;
            t.arch.check_taps(method, &t.config)?;
            Some(t)
        }
        _ => None,
    };
    let resolved = RunConfig {
        arch: Some(arch.clone()),
        method: Some(method_name.clone()),
        out: Some(out.clone()),
        hyper: hyper.clone(),
        ..cfg.clone()
    };
    let toml = resolved.to_toml();
    let run_dir = args
        .checkpoints
        .resume
        .clone()
        .or(args.checkpoints.run_dir.clone())
        .unwrap_or_else(|| out.with_extension("run"));
    if resume.is_none() {
        let earlier = !checkpoint::list(&run_dir)?.is_empty();
        super::refuse_earlier_run(
            &run_dir,
            earlier,
            &format!("kd train --resume {}", run_dir.display()),
        )?;
    }
    let policy = CheckpointPolicy {
        dir: run_dir.clone(),
        every_batches: args.checkpoints.checkpoint_every,
        keep_last: args.checkpoints.keep_checkpoints,
        run_config: toml.clone(),
    };
    crate::install_interrupt_handler(&format!("kd train --resume {}", run_dir.display()));
    let cache = match &teacher {
        Some(t) => crate::teacher_cache::build(
            hyper.teacher_cache.as_deref().unwrap_or("auto"),
            t,
            method.taps,
            &data,
            &device,
            config
                .epochs
                .saturating_sub(resume.as_ref().map_or(0, |r| r.state.epochs_done)),
        )?,
        None => None,
    };
    let teacher_ref = crate::teacher_cache::serving(cache.as_ref(), teacher.as_ref());
    let mut progress = Progress::new(&method_name, quiet, args.metrics.as_deref())?;
    let phase = train_phase(
        &method_name,
        &arch,
        &method_name,
        &hyper.params,
        teacher_ref,
        config,
        &data,
        &device,
        &mut progress,
        Some(policy),
        resume.as_ref(),
    )
    .map_err(|e| crate::explain_stop(e, &format!("kd train --resume {}", run_dir.display())))?;
    save_phase(&out, &phase, &method_name, &data, Some(toml.clone()))?;
    kd_core::weights::write_atomic(&out.with_extension("toml"), toml.as_bytes())?;
    println!("Test accuracy: {:.2}%", phase.evaluation.accuracy);
    if !quiet {
        eprintln!(
            "wrote {} ({} parameters); checkpoints in {}",
            out.display(),
            super::inspect::thousands(phase.model.parameter_count()),
            run_dir.display()
        );
        if !phase.adapters.all_vars().is_empty() {
            eprintln!(
                "wrote {} (the method's trainable helpers)",
                adapters_path(&out).display()
            );
        }
    }
    Ok(())
}
