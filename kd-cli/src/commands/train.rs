use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use kd_core::candle::Device;
use kd_core::candle_nn::VarMap;
use kd_core::checkpoint::CheckpointPolicy;
use kd_core::checkpoint::{self, Checkpoint};
use kd_core::data::Splits;
use kd_core::eval::Evaluation;
use kd_core::loss::Params;
use kd_core::model::sorted_tensors;
use kd_core::train::{TrainConfig, Trainer};
use kd_core::weights::{self, ModelInfo};
use kd_core::{registry, ArchConfig, Model, Teacher};

use crate::cli::{Cli, ModelArgs, TrainArgs};
use crate::config::RunConfig;
use crate::outputs::Files;
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
    if let Some(mut policy) = checkpoints {
        policy.best_model = Some(model_info(
            &model,
            method.name,
            trainer.params(),
            data,
            Some(policy.run_config.clone()),
        ));
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
        accuracy: Some(phase.evaluation.accuracy),
        seconds: Some(phase.seconds),
        ..model_info(&phase.model, method, &phase.params, data, run_config)
    };
    weights::save_model(
        path,
        &phase.model.tensors(),
        &sorted_tensors(&phase.adapters),
        &info,
    )?;
    Ok(())
}

/// What a model file of `model` trained with `method` on `data` records.
fn model_info(
    model: &Model,
    method: &str,
    params: &Params,
    data: &Splits,
    run_config: Option<String>,
) -> ModelInfo {
    ModelInfo {
        arch: Some(model.arch.name.to_string()),
        config: Some(model.config.clone()),
        method: Some(method.to_string()),
        params: params.clone(),
        dataset: Some(data.train.name.clone()),
        classes: Some(data.train.classes.clone()),
        normalization: Some(data.train.normalization.clone()),
        accuracy: None,
        seconds: None,
        run_config,
    }
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
        .and_then(|f| f.check_finite().map(|()| f))
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

/// Names the result-changing settings on which `now` differs from `then`.
pub fn changed_settings(then: &RunConfig, now: &RunConfig) -> Vec<String> {
    let table = |c: &RunConfig| -> toml::Table { c.to_toml().parse().expect("own TOML parses") };
    let (a, b) = (table(then), table(now));
    crate::config::SETTINGS
        .iter()
        .filter(|(_, changes_result)| *changes_result)
        .map(|(k, _)| k)
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
                "{} holds no checkpoint to resume from (checkpoint-*.safetensors): start the run again without --resume",
                dir.display()
            )
        })?),
        None => None,
    };
    // Paths are stored absolute, so that `--resume` from another folder finds
    // what the run used.
    let flags = args.run.clone().absolute()?;
    let mut cfg = flags.clone();
    let mut then_out = None;
    if let Some(c) = &resume {
        let then: RunConfig =
            toml::from_str(&c.run_config).context("the checkpoint's settings cannot be read")?;
        then_out = then.out.clone();
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
    let out = std::path::absolute(&out).unwrap_or(out);
    let method = match &cfg.method {
        Some(name) => registry::method(name)?,
        None => registry::supervised()?,
    };
    let method_name = method.name.to_string();
    let hyper = cfg.hyper.clone().resolved();
    let config = hyper.train_config();
    config.validate_for(method)?;
    // Check names and paths before loading data or training for hours.
    registry::arch(&arch)?;
    method.resolve_params(&hyper.params)?;
    crate::teacher_cache::check_mode(hyper.teacher_cache.as_deref())?;
    if method.needs_teacher() && cfg.teacher.is_none() {
        bail!("method `{method_name}` distils from a teacher: pass --teacher FILE (train one first: `kd train --arch NAME --out teacher.safetensors`, without --method)");
    }
    let run_dir = args
        .checkpoints
        .resume
        .clone()
        .or(args.checkpoints.run_dir.clone())
        .unwrap_or_else(|| out.with_extension("run"));
    let resume_hint = format!("kd train --resume {}", run_dir.display());
    // A resumed run may rewrite the outputs it was started with.
    let own = resume.is_some() && then_out.as_deref() == Some(out.as_path());
    let mut files = Files::new(args.overwrite);
    if let Some(c) = &args.config {
        files.input("--config file", c);
    }
    if let Some(t) = cfg.teacher.as_deref().filter(|t| !t.starts_with("hf://")) {
        files.input("--teacher", Path::new(t));
    }
    if let Some(d) = &cfg.data.data_dir {
        files.input("--data-dir", d);
    }
    files.input("run folder", &run_dir);
    let outputs = [
        ("--out", Some(out.clone())),
        ("settings file", Some(out.with_extension("toml"))),
        (
            "adapters file",
            method.needs_teacher().then(|| weights::adapters_path(&out)),
        ),
        ("--metrics file", args.metrics.clone()),
    ];
    for (what, path) in outputs {
        match path {
            Some(p) if own || (what == "--metrics file" && resume.is_some()) => {
                files.own_output(what, &p)
            }
            Some(p) => files.output(what, &p),
            None => &mut files,
        };
    }
    files.check()?;
    let earlier = resume.is_none()
        && crate::outputs::check_folder("run folder", &run_dir, args.overwrite).map_err(|e| {
            if checkpoint::list(&run_dir).is_ok_and(|l| !l.is_empty()) {
                e.context(format!(
                    "it holds checkpoints of an earlier run: continue it with `{resume_hint}`"
                ))
            } else {
                e
            }
        })?;
    let _lock = checkpoint::RunLock::acquire(&run_dir)?;
    if earlier {
        checkpoint::clear(&run_dir)?;
    }
    if let (Some(m), None, true) = (&args.metrics, &resume, args.overwrite) {
        // A fresh run's metrics start empty; a resumed run's are appended to.
        std::fs::File::create(m).with_context(|| format!("cannot write {}", m.display()))?;
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
    let teacher_hash = teacher.as_ref().map(|t| t.fingerprint()).transpose()?;
    if let Some(c) = &resume {
        if c.teacher_hash.is_some() && c.teacher_hash != teacher_hash && !args.checkpoints.force {
            bail!(
                "the teacher {} is not the one this run started with (its tensors differ): resume with the original teacher, or add --force",
                cfg.teacher.as_deref().unwrap_or("(none)")
            );
        }
    }
    let resolved = RunConfig {
        arch: Some(arch.clone()),
        method: Some(method_name.clone()),
        out: Some(out.clone()),
        hyper: hyper.clone(),
        ..cfg.clone()
    };
    let toml = resolved.to_toml();
    let policy = CheckpointPolicy {
        dir: run_dir.clone(),
        every_batches: args.checkpoints.checkpoint_every,
        keep_last: args.checkpoints.keep_checkpoints,
        run_config: toml.clone(),
        best_model: None,
        teacher_hash,
    };
    crate::install_interrupt_handler(&resume_hint);
    // What to do after a stop: resume only once a checkpoint exists.
    let stopped = |e| {
        let resumable = checkpoint::list(&run_dir).is_ok_and(|l| !l.is_empty());
        crate::explain_stop(e, resumable.then_some(resume_hint.as_str()))
    };
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
        )
        .map_err(stopped)?,
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
    .map_err(stopped)?;
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
                weights::adapters_path(&out).display()
            );
        }
    }
    Ok(())
}
