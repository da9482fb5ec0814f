//! `kd train`: plan one phase (every check before any data is loaded), then
//! run it through [`crate::phase`].
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use kd_core::registry::{self, MethodPlugin};
use kd_core::weights;
use kd_train::checkpoint::{self, Checkpoint, CheckpointPolicy};
use kd_train::train::TrainConfig;

use crate::cli::{Cli, TrainArgs};
use crate::config::{HyperArgs, RunConfig};
use crate::outputs::Files;
use crate::phase::{self, load_teacher, PhaseSpec};
use crate::progress::Progress;

/// Everything decided and checked before any data is loaded: names,
/// settings, the resume check, every path (see [`crate::outputs`]) and the
/// run folder's lock.
fn plan(args: &TrainArgs) -> Result<Plan> {
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
        phase::check_resume(&then, &cfg, args.checkpoints.force)?;
    }
    crate::datasets::resolve_run(&mut cfg)?;
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
    let hyper = cfg.hyper.clone().resolved();
    let config = hyper.train_config();
    config.validate_for(method)?;
    if let Some(c) = &resume {
        c.check_epochs(config.epochs)?;
    }
    // Check names and paths before loading data or training for hours.
    registry::arch(&arch)?;
    method.resolve_params(&hyper.params)?;
    check_method_flags(method, &flags, &cfg)?;
    let run_dir = args
        .checkpoints
        .resume
        .clone()
        .or(args.checkpoints.run_dir.clone())
        .unwrap_or_else(|| out.with_extension("run"));
    let resume_hint = format!("kd train --resume {}", run_dir.display());
    // A resumed run may rewrite the outputs it was started with.
    let own = resume.is_some() && then_out.as_deref() == Some(out.as_path());
    check_paths(args, &cfg, method, &out, &run_dir, (own, resume.is_some()))?;
    let lock = claim_run_folder(args, &run_dir, resume.is_some(), &resume_hint)?;
    let toml = RunConfig {
        arch: Some(arch.clone()),
        method: Some(method.name.to_string()),
        out: Some(out.clone()),
        hyper: hyper.clone(),
        ..cfg.clone()
    }
    .to_toml();
    Ok(Plan {
        cfg,
        arch,
        method,
        hyper,
        config,
        out,
        run_dir,
        resume,
        resume_hint,
        toml,
        _lock: lock,
    })
}

/// `--ce-weight`/`--distill-weight` and `--teacher` only with a method that
/// distils, and a teacher whenever it does.
fn check_method_flags(method: &MethodPlugin, flags: &RunConfig, cfg: &RunConfig) -> Result<()> {
    // The flags given now (a checkpoint's settings hold the resolved weights).
    let weights_given = flags.hyper.ce_weight.is_some() || flags.hyper.distill_weight.is_some();
    if !method.needs_teacher() && weights_given {
        crate::usage!("--ce-weight and --distill-weight weigh cross-entropy against a distillation loss, and method `{}` has none: leave them out (a model must not record a setting that had no effect)", method.name);
    }
    if !method.needs_teacher() && cfg.teacher.is_some() {
        crate::usage!("--teacher is given, but method `{}` does not distil: pass --method NAME (`kd list` shows them; `kd` is Hinton's), or leave out --teacher to train with cross-entropy alone", method.name);
    }
    if method.needs_teacher() && cfg.teacher.is_none() {
        crate::usage!("method `{}` distils from a teacher: pass --teacher FILE (train one first: `kd train --arch NAME --out teacher.safetensors`, without --method)", method.name);
    }
    Ok(())
}

/// Every path the run reads or writes, checked against each other and the
/// disk before any data is loaded (`own`: a resumed run rewrites the
/// outputs it was started with).
fn check_paths(
    args: &TrainArgs,
    cfg: &RunConfig,
    method: &MethodPlugin,
    out: &Path,
    run_dir: &Path,
    (own, resumed): (bool, bool),
) -> Result<()> {
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
    files
        .input("run folder", run_dir)
        .kept_folder("run folder", run_dir);
    // (what, path, whether a resumed run rewrites it as its own): a resumed
    // run appends to its metrics wherever they are.
    let outputs = [
        ("--out", Some(out.to_path_buf()), own),
        ("settings file", Some(out.with_extension("toml")), own),
        (
            "adapters file",
            method.needs_teacher().then(|| weights::adapters_path(out)),
            own,
        ),
        ("--metrics file", args.metrics.clone(), resumed),
    ];
    for (what, path, own) in outputs {
        match path {
            Some(p) if own => files.own_output(what, &p),
            Some(p) => files.output(what, &p),
            None => &mut files,
        };
    }
    files.check()?;
    Ok(())
}

/// Takes the run folder's lock; a fresh run clears an earlier run's
/// checkpoints there (with --overwrite) and starts its metrics empty.
fn claim_run_folder(
    args: &TrainArgs,
    run_dir: &Path,
    resumed: bool,
    resume_hint: &str,
) -> Result<checkpoint::RunLock> {
    let earlier = !resumed
        && crate::outputs::check_folder("run folder", run_dir, args.overwrite).map_err(|e| {
            if checkpoint::list(run_dir).is_ok_and(|l| !l.is_empty()) {
                e.context(format!(
                    "it holds checkpoints of an earlier run: continue it with `{resume_hint}`"
                ))
            } else {
                e
            }
        })?;
    let lock = checkpoint::RunLock::acquire(run_dir)?;
    weights::remove_orphans(run_dir);
    if earlier {
        checkpoint::clear(run_dir)?;
    }
    if let (Some(m), false, true) = (&args.metrics, resumed, args.overwrite) {
        // A fresh run's metrics start empty; a resumed run's are appended to.
        std::fs::File::create(m).with_context(|| format!("cannot write {}", m.display()))?;
    }
    Ok(lock)
}

/// A planned `kd train` run.
struct Plan {
    cfg: RunConfig,
    arch: String,
    method: &'static MethodPlugin,
    hyper: HyperArgs,
    config: TrainConfig,
    out: PathBuf,
    run_dir: PathBuf,
    resume: Option<Checkpoint>,
    resume_hint: String,
    /// The resolved settings, stored in checkpoints, the model and OUT.toml.
    toml: String,
    /// Keeps a second run out of the run folder while this one runs.
    _lock: checkpoint::RunLock,
}

pub fn run(args: TrainArgs, quiet: bool) -> Result<()> {
    let Plan {
        cfg,
        arch,
        method,
        hyper,
        config,
        out,
        run_dir,
        resume,
        resume_hint,
        toml,
        ..
    } = &plan(&args)?;
    let device = crate::models::device(hyper.device.unwrap_or_default())?;
    let data = crate::datasets::load(&cfg.data)?;
    let teacher = match (&cfg.teacher, method.needs_teacher()) {
        (Some(spec), true) => {
            let t = load_teacher(
                spec,
                (cfg.teacher_arch.as_deref(), cfg.teacher_key.as_deref()),
                &data,
                &device,
            )?;
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
    let checkpoints = CheckpointPolicy {
        dir: run_dir.clone(),
        every_batches: args.checkpoints.checkpoint_every,
        keep_last: args.checkpoints.keep_checkpoints,
        run_config: toml.clone(),
        best_model: None,
        teacher_hash: teacher_hash.clone(),
    };
    crate::install_interrupt_handler(resume_hint);
    // What to do after a stop: resume only once a checkpoint exists.
    let stopped = |e| {
        let resumable = checkpoint::list(run_dir).is_ok_and(|l| !l.is_empty());
        crate::explain_stop(e, resumable.then_some(resume_hint.as_str()))
    };
    let cache = match (&teacher, &teacher_hash) {
        (Some(t), Some(sha256)) => crate::teacher_cache::build(
            crate::teacher_cache::mode_for(hyper.teacher_cache.unwrap_or_default(), config.augment),
            t,
            sha256,
            method.taps,
            &data,
            &device,
            config
                .epochs
                .saturating_sub(resume.as_ref().map_or(0, |r| r.state.epochs_done)),
        )
        .map_err(stopped)?,
        _ => None,
    };
    let teacher_ref = crate::teacher_cache::serving(cache.as_ref(), teacher.as_ref());
    let mut progress = Progress::new(method.name, quiet, args.metrics.as_deref())?;
    let spec = PhaseSpec {
        name: method.name,
        arch,
        method,
        params: &hyper.params,
        config: config.clone(),
        out,
        checkpoints,
        resume: resume.as_ref(),
    };
    let phase = phase::run(spec, teacher_ref, &data, &device, &mut progress).map_err(stopped)?;
    weights::write_atomic(&out.with_extension("toml"), toml.as_bytes())?;
    println!("Test accuracy: {:.2}%", phase.evaluation.accuracy);
    if !quiet {
        eprintln!(
            "wrote {} ({} parameters); checkpoints in {}",
            out.display(),
            crate::report::thousands(phase.model.parameter_count()),
            run_dir.display()
        );
        if phase.has_adapters {
            eprintln!(
                "wrote {} (the method's trainable helpers)",
                weights::adapters_path(out).display()
            );
        }
    }
    Ok(())
}
