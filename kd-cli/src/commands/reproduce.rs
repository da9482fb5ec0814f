//! `kd reproduce`: a recipe's runs once per seed, then the report. Each seed
//! is a full replicate (its own teacher) unless `--shared-teacher`; every
//! seed's models, checkpoints and metrics live in `OUT/seed-S/`.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::loss::Params;
use kd_core::registry::{self, MethodPlugin, RecipePair, RecipePlugin, RecipeRun};
use kd_core::Model;
use kd_train::cache::CachedTeacher;
use kd_train::checkpoint::CheckpointPolicy;
use kd_train::train::{EpochSummary, TrainConfig};
use serde::{Deserialize, Serialize};

use crate::cli::{ReproduceArgs, Seeds};
use crate::config::{HyperArgs, RunConfig};
use crate::cost::Cost;
use crate::outputs::Files;
use crate::phase::{self, PhaseSpec};
use crate::progress::Progress;
use crate::report::{self, PhaseRun, Summary};

/// `OUT/settings.toml`: the run's settings and its seeds, read back by `--resume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunSettings {
    /// Absent in folders written before the recipe was stored: then `--recipe` or the default.
    #[serde(default)]
    recipe: Option<String>,
    seeds: Vec<u64>,
    #[serde(default)]
    shared_teacher: bool,
    /// The student phases' learning rate, where it is not `lr`.
    #[serde(default)]
    student_lr: Option<f64>,
    /// The recipe's pair (`TEACHER-STUDENT`); absent in folders written before pairs.
    #[serde(default)]
    pair: Option<String>,
    #[serde(flatten)]
    run: RunConfig,
}

/// Everything decided before the first batch.
struct Plan {
    recipe: &'static RecipePlugin,
    pair: &'static RecipePair,
    runs: Vec<RecipeRun>,
    cfg: RunConfig,
    hyper: HyperArgs,
    base: TrainConfig,
    /// The settings TOML stored in checkpoints and models (seed: the first seed).
    settings: String,
    seeds: Vec<u64>,
    shared_teacher: bool,
    student_lr: Option<f64>,
    out: PathBuf,
    resuming: bool,
    /// `--force`: resume even where settings that change the result differ.
    force: bool,
    checkpoint_every: Option<usize>,
    /// Keeps a second `kd reproduce` out of the folder while this one runs.
    _lock: kd_train::checkpoint::RunLock,
}

/// The run folder's record of how the run was made (read back on `--resume`).
const SETTINGS_FILE: &str = "settings.toml";

fn plan(args: &ReproduceArgs) -> Result<Plan> {
    let mut hyper = args.hyper.clone();
    // `--seeds 3,4` alone means seeds 3 and 4: the list's first is the run's seed.
    if let (None, Some(Seeds::List(v))) = (hyper.seed, &args.seeds) {
        hyper.seed = v.first().copied();
    }
    let flags = RunConfig {
        data: args.data.clone(),
        hyper,
        ..RunConfig::default()
    };
    let mut cfg = flags.absolute()?;
    let stored = match &args.resume {
        Some(dir) => Some(read_settings(dir)?),
        None => None,
    };
    if let Some(then) = &stored {
        cfg = cfg.or(then.run.clone());
        check_resumable(args, then, &cfg)?;
    }
    let (recipe, pair) = choose_recipe(args, stored.as_ref())?;
    // Flags (and a resumed run's own settings) over the recipe's.
    cfg = cfg.or(recipe_settings(recipe)?);
    crate::datasets::resolve_run(&mut cfg)?;
    let hyper = cfg.hyper.clone().resolved();
    let base = hyper.train_config();
    base.validate()?;
    let student_lr = match &stored {
        Some(then) => args.student_lr.or(then.student_lr),
        None => args
            .student_lr
            .or(pair.student_lr.filter(|_| args.hyper.lr.is_none())),
    };
    let runs = (recipe.runs)();
    for run in &runs {
        let method = registry::method(run.method)?;
        run_config(&cfg, &base, (run, student_lr), base.seed).validate_for(method)?;
        method
            .resolve_params(&run_params(&hyper, pair, run, method))
            .with_context(|| format!("phase `{}` of recipe `{}`", run.name, recipe.name))?;
    }
    check_params_taken(&hyper, &runs)?;
    let seeds = choose_seeds(args, stored.as_ref(), base.seed)?;
    let out = args.resume.clone().or(args.out.clone()).unwrap_or_else(|| {
        let pair = match recipe.pairs.len() {
            1 => String::new(),
            _ => format!("-{}", pair.name()),
        };
        PathBuf::from("runs").join(format!("{}{pair}-{}", recipe.name, cfg.data.dataset()))
    });
    let resuming = args.resume.is_some();
    let mut files = Files::new(args.overwrite);
    if let Some(c) = &args.config {
        files.input("--config file", c);
    }
    if let Some(d) = &cfg.data.data_dir {
        files.input("--data-dir", d);
    }
    for name in [SETTINGS_FILE].iter().chain(&report::FILES) {
        files.own_output("the run's report", &out.join(name));
    }
    let earlier = !resuming
        && crate::outputs::check_folder("--out folder", &out, args.overwrite).map_err(|e| {
            if out.join(SETTINGS_FILE).exists() {
                e.context(format!(
                    "it holds an earlier kd reproduce run: continue it with `kd reproduce --resume {}`",
                    out.display()
                ))
            } else {
                e
            }
        })?;
    // Taking the lock creates the folder (removed again if nothing is written).
    let lock = kd_train::checkpoint::RunLock::acquire(&out)?;
    files.check()?;
    if earlier {
        clear_earlier_run(&out, &runs)?;
    }
    // The loss weights are stored as given: a recipe states each phase's own,
    // and a resumed run must not take the trainer's defaults for flags.
    let settings = RunConfig {
        hyper: HyperArgs {
            ce_weight: cfg.hyper.ce_weight,
            distill_weight: cfg.hyper.distill_weight,
            ..hyper.clone()
        },
        ..cfg.clone()
    }
    .to_toml();
    let shared_teacher = args.shared_teacher || stored.is_some_and(|s| s.shared_teacher);
    Ok(Plan {
        recipe,
        pair,
        runs,
        cfg,
        hyper,
        base,
        settings,
        seeds,
        shared_teacher,
        student_lr,
        out,
        resuming,
        force: args.force,
        checkpoint_every: args.checkpoint_every,
        _lock: lock,
    })
}

/// `DIR/settings.toml` of a run to resume.
fn read_settings(dir: &Path) -> Result<RunSettings> {
    let text = std::fs::read_to_string(dir.join(SETTINGS_FILE)).with_context(|| {
        format!(
            "{} is not a kd reproduce run folder (no settings.toml)",
            dir.display()
        )
    })?;
    toml::from_str(&text).context("the run's settings.toml cannot be read")
}

/// Refuses a resume whose flags would change the run `then` records; `cfg`
/// is the flags over the run's own settings.
fn check_resumable(args: &ReproduceArgs, then: &RunSettings, cfg: &RunConfig) -> Result<()> {
    // Both resolved with today's defaults: a folder written before a
    // setting existed ran with its default.
    let resolved = |c: &RunConfig| RunConfig {
        hyper: c.hyper.clone().resolved(),
        ..c.clone()
    };
    phase::check_resume(&resolved(&then.run), &resolved(cfg), args.force)?;
    if let (Some(now), Some(before)) = (cfg.hyper.epochs, then.run.hyper.epochs) {
        if now != before {
            bail!("the run was started with {before} epochs; a resumed run keeps its finished phases, so --epochs cannot change. Resume without --epochs, or start a new run (another --out)");
        }
    }
    if args.shared_teacher && !then.shared_teacher {
        bail!("the run was started without --shared-teacher; resume it without that flag, or start a new run");
    }
    if let (Some(now), false) = (args.student_lr, args.force) {
        if Some(now) != then.student_lr {
            bail!("the run's students were trained with learning rate {}; --student-lr {now} would change the result. Resume without it, or add --force", then.student_lr.map_or("--lr".into(), |v| v.to_string()));
        }
    }
    Ok(())
}

/// The recipe and pair the flags name, or a resumed run's own (the two must agree).
fn choose_recipe(
    args: &ReproduceArgs,
    stored: Option<&RunSettings>,
) -> Result<(&'static RecipePlugin, &'static RecipePair)> {
    let stored_recipe = stored.and_then(|s| s.recipe.clone());
    if let (Some(given), Some(then)) = (&args.recipe, &stored_recipe) {
        if given != then {
            bail!("the run in this folder follows recipe `{then}`, not `{given}`: resume without --recipe, or start a new run");
        }
    }
    let recipe = match args.recipe.as_ref().or(stored_recipe.as_ref()) {
        Some(name) => registry::recipe(name)?,
        None => registry::default_recipe()?,
    };
    let stored_pair = stored.and_then(|s| s.pair.clone());
    if let (Some(given), Some(then)) = (&args.pair, &stored_pair) {
        if given != then {
            bail!("the run in this folder distils pair `{then}`, not `{given}`: resume without --pair, or start a new run");
        }
    }
    let pair = recipe.pair(args.pair.as_deref().or(stored_pair.as_deref()))?;
    Ok((recipe, pair))
}

/// `--seeds` (a list, or a count from the run's first seed), or a resumed run's own.
fn choose_seeds(
    args: &ReproduceArgs,
    stored: Option<&RunSettings>,
    first: u64,
) -> Result<Vec<u64>> {
    let seeds = match (&args.seeds, stored) {
        (Some(Seeds::List(v)), _) => v.clone(),
        (Some(Seeds::Count(n)), _) => {
            if first.saturating_add(*n as u64 - 1) > crate::config::MAX_SEED {
                crate::usage!("--seeds {n} from --seed {first} goes past the largest seed {}: start from a smaller --seed", crate::config::MAX_SEED);
            }
            (0..*n as u64).map(|i| first + i).collect()
        }
        (None, Some(s)) => s.seeds.clone(),
        (None, None) => vec![first],
    };
    if seeds.first() != Some(&first) {
        crate::usage!(
            "--seeds must start with the run's seed {first} (or give --seed {} as well)",
            seeds[0]
        );
    }
    Ok(seeds)
}

pub fn run(args: ReproduceArgs, quiet: bool) -> Result<()> {
    if args.list_pairs {
        return list_pairs(args.recipe.as_deref());
    }
    let plan = plan(&args)?;
    let device = crate::models::device(plan.hyper.device.unwrap_or_default())?;
    let data = crate::datasets::load(&plan.cfg.data)?;
    if !quiet {
        announce(&plan, &data, &device);
    }
    write_settings(&plan)?;
    let resume_hint = format!("kd reproduce --resume {}", plan.out.display());
    crate::install_interrupt_handler(&resume_hint);

    let (mut records, mut costs) = (Vec::new(), BTreeMap::new());
    let mut teacher: Option<Model> = None;
    // The teacher's outputs, computed once per teacher and shared by every distillation run.
    let mut cache: Option<Option<CachedTeacher>> = None;
    for (i, &seed) in plan.seeds.iter().enumerate() {
        let dir = crate::outputs::own_folder(&plan.out, &[&format!("seed-{seed}")])?;
        if !(plan.shared_teacher && i > 0) {
            (teacher, cache) = (None, None);
        }
        for run in &plan.runs {
            if run.trains_teacher && plan.shared_teacher && i > 0 {
                continue;
            }
            let label = if plan.seeds.len() > 1 {
                format!("{} s{seed}", run.name)
            } else {
                run.name.to_string()
            };
            let (record, model) = phase(
                &plan, run, seed, &dir, &label, &teacher, &mut cache, &data, &device, quiet,
            )
            .map_err(|e| crate::explain_stop(e, Some(&resume_hint)))?;
            records.push(record);
            measure_once(&mut costs, run.name, &model);
            if run.trains_teacher {
                (teacher, cache) = (Some(model), None);
            }
        }
    }

    let summary = summarize(&plan, &data, &device, records, costs)?;
    println!("{}", summary.table());
    if let Some(costs) = summary.costs_table() {
        println!("What the student buys:\n{costs}");
    }
    summary.write(&plan.out, plan.recipe.summary)?;
    if !quiet {
        eprintln!(
            "wrote {} (seed-*/ models and metrics, summary.json, report.md, plot.png)",
            plan.out.display()
        );
    }
    Ok(())
}

/// The one line that says what the run will do, before the first phase.
fn announce(plan: &Plan, data: &kd_train::data::Splits, device: &kd_core::candle::Device) {
    let base = &plan.base;
    eprintln!(
        "kd reproduce: recipe `{}` ({} -> {}) on {} ({} training / {} test images of {:?}), {} epochs, batch {}, lr {}, seeds {:?}{}, device {}",
        plan.recipe.name,
        plan.pair.teacher,
        plan.pair.student,
        data.train.name,
        data.train.len(),
        data.test.len(),
        data.train.shape,
        base.epochs,
        base.batch_size,
        match plan.student_lr {
            Some(s) => format!("{} (students {s})", base.lr),
            None => base.lr.to_string(),
        },
        plan.seeds,
        if plan.shared_teacher { " (one shared teacher)" } else { "" },
        kd_core::device::name(device)
    );
}

/// The run's settings, as `--resume` reads them back.
fn write_settings(plan: &Plan) -> Result<()> {
    let stored = RunSettings {
        recipe: Some(plan.recipe.name.to_string()),
        pair: Some(plan.pair.name()),
        seeds: plan.seeds.clone(),
        shared_teacher: plan.shared_teacher,
        student_lr: plan.student_lr,
        run: toml::from_str(&plan.settings).context("own settings parse")?,
    };
    kd_core::weights::write_atomic(
        &plan.out.join(SETTINGS_FILE),
        toml::to_string(&stored)?.as_bytes(),
    )?;
    Ok(())
}

/// Every phase's record of every seed, aggregated per phase.
fn summarize(
    plan: &Plan,
    data: &kd_train::data::Splits,
    device: &kd_core::candle::Device,
    records: Vec<PhaseRun>,
    costs: BTreeMap<String, Cost>,
) -> Result<Summary> {
    Ok(Summary {
        recipe: plan.recipe.name.to_string(),
        dataset: data.train.name.clone(),
        train_images: data.train.len(),
        test_images: data.test.len(),
        device: kd_core::device::name(device),
        seeds: plan.seeds.clone(),
        shared_teacher: plan.shared_teacher,
        settings: plan.settings.parse().context("own settings parse")?,
        runs: records,
        phases: Default::default(),
        order: Vec::new(),
        pair: plan.pair.name(),
        published: plan
            .pair
            .published
            .iter()
            .map(|(p, a)| (p.to_string(), *a))
            .collect(),
        costs,
    }
    .aggregate())
}

/// A phase finished before the interruption: its model, test accuracy and
/// seconds, once its record says it is this phase's model of this run.
fn keep_finished(
    plan: &Plan,
    path: &Path,
    (expected, made_for): ((&str, &str, u64, usize), &str),
    device: &kd_core::candle::Device,
) -> Result<(Model, f64, f64)> {
    let (model, info) = kd_core::weights::load_model(path, None, device)?;
    same_settings(
        info.run_config.as_deref().unwrap_or_default(),
        path,
        plan,
        made_for,
    )?;
    let accuracy = kept_accuracy(path, &info, expected)?;
    Ok((model, accuracy, info.seconds.unwrap_or(0.0)))
}

/// Refuses to continue from a file made with other settings than the run's
/// settings.toml now gives its phase (`expected`: settings.toml edited after
/// the run stopped), naming the first setting that changes the result;
/// `--force` continues anyway.
fn same_settings(made_with: &str, what: &Path, plan: &Plan, expected: &str) -> Result<()> {
    if plan.force {
        return Ok(());
    }
    let parse = |t: &str| t.parse::<toml::Table>().unwrap_or_default();
    let (then, now) = (parse(made_with), parse(expected));
    // Each phase records its own seed, epochs, architecture and method.
    let per_phase = ["seed", "epochs", "arch", "method"];
    for (key, changes_result) in crate::config::SETTINGS {
        let (Some(a), Some(b)) = (then.get(*key), now.get(*key)) else {
            continue;
        };
        if *changes_result && !per_phase.contains(key) && a != b {
            bail!(
                "{} was made with `{key}` = {a}, but the run's {SETTINGS_FILE} now says {b}: it was edited after the run stopped. Restore it, or resume with --force to go on with the new settings",
                what.display()
            );
        }
    }
    Ok(())
}

/// The test accuracy a finished phase's model file records, after checking
/// that the file is that phase's model of this run: its architecture,
/// method, seed and epochs (a file copied in from elsewhere is refused).
/// A file written before phases recorded their own settings (no `arch` in
/// its settings) carries the run's first seed and base epochs: it is held to
/// its architecture and method only.
fn kept_accuracy(
    path: &Path,
    info: &kd_core::weights::ModelInfo,
    (arch, method, seed, epochs): (&str, &str, u64, usize),
) -> Result<f64> {
    let run: toml::Table = info
        .run_config
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let recorded = (
        info.arch.as_deref(),
        info.method.as_deref(),
        run.get("seed").and_then(|v| v.as_integer()),
        run.get("epochs").and_then(|v| v.as_integer()),
    );
    let expected = (
        Some(arch),
        Some(method),
        Some(seed as i64),
        Some(epochs as i64),
    );
    let matches = match run.contains_key("arch") {
        true => recorded == expected,
        false => (recorded.0, recorded.1) == (expected.0, expected.1),
    };
    match (matches, info.accuracy) {
        (true, Some(a)) => Ok(a),
        _ => bail!(
            "{} is not this run's finished phase: it records arch {:?}, method {:?}, seed {:?}, epochs {:?} and accuracy {:?}, where the run expects {arch}, {method}, seed {seed}, {epochs} epochs. Put the right file back, or move this one away and resume (that phase is then trained again)",
            path.display(), recorded.0, recorded.1, recorded.2, recorded.3, info.accuracy
        ),
    }
}

/// Records what `model` costs to run under `phase`, timing each architecture once.
fn measure_once(costs: &mut BTreeMap<String, Cost>, phase: &str, model: &Model) {
    if costs.contains_key(phase) {
        return;
    }
    let cost = match costs.values().find(|c| c.arch == model.arch.name) {
        Some(c) => Ok(c.clone()),
        None => crate::cost::cost(model, crate::cost::BATCH, crate::cost::RUNS, false),
    };
    // Timing is a report's extra: a failure (memory at batch 64 beside a
    // resident teacher cache) leaves the phase out of the table, not the run.
    match cost {
        Ok(c) => {
            costs.insert(phase.to_string(), c);
        }
        Err(e) => tracing::warn!(
            "cannot time `{phase}`'s model ({e:#}): it is left out of \"What the student buys\""
        ),
    }
}

/// Trains (or, resuming, keeps) one phase of one seed; returns its record and model.
#[allow(clippy::too_many_arguments)]
fn phase(
    plan: &Plan,
    run: &RecipeRun,
    seed: u64,
    dir: &Path,
    label: &str,
    teacher: &Option<Model>,
    cache: &mut Option<Option<CachedTeacher>>,
    data: &kd_train::data::Splits,
    device: &kd_core::candle::Device,
    quiet: bool,
) -> Result<(PhaseRun, Model)> {
    let method = registry::method(run.method)?;
    let path = dir.join(format!("{}.safetensors", run.name));
    let metrics = dir.join("metrics.jsonl");
    let record = |accuracy: f64, seconds: f64| {
        let curve: Vec<(f64, Option<f64>)> = read_curve(&metrics, run.name)
            .iter()
            .map(|e| (e.loss, e.test_accuracy))
            .collect();
        PhaseRun {
            seed,
            phase: run.name.to_string(),
            method: run.method.to_string(),
            teacher: run.trains_teacher,
            distils: method.needs_teacher(),
            accuracy,
            best_accuracy: curve.iter().filter_map(|c| c.1).fold(accuracy, f64::max),
            seconds,
            curve,
            train_images: run
                .train_subset
                .map_or(data.train.len(), |n| n.min(data.train.len())),
            epochs: plan.base.epochs * run.epoch_scale.max(1),
        }
    };
    let arch = match run.trains_teacher {
        true => plan.pair.teacher,
        false => plan.pair.student,
    };
    let config = run_config(&plan.cfg, &plan.base, (run, plan.student_lr), seed);
    let made_for = phase_settings(plan, &config, arch, method)?;
    if plan.resuming && path.exists() {
        let expected = (arch, run.method, seed, config.epochs);
        let (model, accuracy, seconds) = keep_finished(plan, &path, (expected, &made_for), device)?;
        if !quiet {
            eprintln!(
                "{label}: finished before, test accuracy {accuracy:.2}% (kept {})",
                path.display()
            );
        }
        return Ok((record(accuracy, seconds), model));
    }
    let params = run_params(&plan.hyper, plan.pair, run, method);
    let (policy, resume) = checkpoints(plan, dir, run.name, made_for, config.epochs)?;
    if let Some(t) = teacher.as_ref().filter(|_| method.needs_teacher()) {
        t.arch.check_taps(method, &t.config)?;
    }
    if let Some(t) = teacher
        .as_ref()
        .filter(|_| method.needs_teacher() && cache.is_none())
    {
        *cache = Some(build_teacher_cache(plan, &config, t, data, device)?);
    }
    let teacher_ref =
        crate::teacher_cache::serving(cache.as_ref().and_then(Option::as_ref), teacher.as_ref());
    let subset = training_subset(run, data)?;
    let data = subset.as_ref().unwrap_or(data);
    let mut progress = Progress::new(label, quiet, Some(&metrics))?;
    let spec = PhaseSpec {
        name: label,
        arch,
        method,
        params: &params,
        config,
        out: &path,
        checkpoints: policy,
        resume: resume.as_ref(),
    };
    let phase = phase::run(spec, teacher_ref, data, device, &mut progress)?;
    if !quiet {
        eprintln!(
            "{label}: test accuracy {:.2}% ({:.1} s), wrote {}",
            phase.evaluation.accuracy,
            phase.seconds,
            path.display()
        );
    }
    Ok((
        record(phase.evaluation.accuracy, phase.seconds),
        phase.model,
    ))
}

/// A phase's checkpoint policy in `dir/checkpoints/NAME`, and on `--resume`
/// the checkpoint to go on from, after checking that it was made with these
/// settings and no more epochs.
fn checkpoints(
    plan: &Plan,
    dir: &Path,
    name: &str,
    made_for: String,
    epochs: usize,
) -> Result<(CheckpointPolicy, Option<kd_train::checkpoint::Checkpoint>)> {
    let run_dir = crate::outputs::own_folder(dir, &["checkpoints", name])?;
    let resume = if plan.resuming {
        kd_train::checkpoint::latest(&run_dir)?
    } else {
        None
    };
    if let Some(c) = &resume {
        same_settings(&c.run_config, &run_dir, plan, &made_for)?;
        c.check_epochs(epochs)?;
    }
    let policy = CheckpointPolicy {
        dir: run_dir,
        every_batches: plan.checkpoint_every,
        keep_last: 2,
        run_config: made_for,
        best_model: None,
        teacher_hash: None,
    };
    Ok((policy, resume))
}

/// The teacher's outputs for every distilling phase of the run (all seeds'
/// when the teacher is shared), with the taps those phases read.
fn build_teacher_cache(
    plan: &Plan,
    config: &TrainConfig,
    teacher: &Model,
    data: &kd_train::data::Splits,
    device: &kd_core::candle::Device,
) -> Result<Option<CachedTeacher>> {
    let distilling: Vec<_> = plan
        .runs
        .iter()
        .filter_map(|r| registry::method(r.method).ok())
        .filter(|m| m.needs_teacher())
        .collect();
    let mut taps: Vec<&str> = Vec::new();
    for t in distilling.iter().flat_map(|m| m.taps) {
        if !taps.contains(t) {
            taps.push(t);
        }
    }
    let mode = crate::teacher_cache::mode_for(
        plan.hyper.teacher_cache.unwrap_or_default(),
        config.augment,
    );
    let seeds = if plan.shared_teacher {
        plan.seeds.len()
    } else {
        1
    };
    let epochs = distilling.len() * config.epochs * seeds;
    crate::teacher_cache::build(
        mode,
        teacher,
        &teacher.fingerprint()?,
        &taps,
        data,
        device,
        epochs,
    )
}

/// A phase's first `train_subset` training images, where it takes fewer than
/// the data set has. The first N keep their indices, so a teacher cache
/// serves them too.
fn training_subset(
    run: &RecipeRun,
    data: &kd_train::data::Splits,
) -> Result<Option<kd_train::data::Splits>> {
    Ok(match run.train_subset {
        Some(n) if n < data.train.len() => Some(kd_train::data::Splits {
            train: data.train.first(n)?,
            test: data.test.clone(),
        }),
        _ => None,
    })
}

/// Removes what an earlier run wrote in `out` (for `--overwrite`): its
/// settings and report, and per seed its models, metrics and checkpoints.
/// Files kd did not write are left alone.
fn clear_earlier_run(out: &Path, runs: &[RecipeRun]) -> Result<()> {
    let remove = |p: PathBuf| match std::fs::remove_file(&p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove {}", p.display())))
        }
        _ => Ok(()),
    };
    for name in [SETTINGS_FILE].iter().chain(&report::FILES) {
        remove(out.join(name))?;
    }
    for entry in std::fs::read_dir(out)?.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(entry.path().is_dir() && name.starts_with("seed-")) {
            continue;
        }
        let dir = crate::outputs::own_folder(out, &[&name])?;
        remove(dir.join("metrics.jsonl"))?;
        for run in runs {
            let model = dir.join(format!("{}.safetensors", run.name));
            remove(kd_core::weights::adapters_path(&model))?;
            remove(model)?;
            kd_train::checkpoint::clear(&crate::outputs::own_folder(
                &dir,
                &["checkpoints", run.name],
            )?)?;
        }
    }
    Ok(())
}

/// The trainer's settings for one run of the recipe: flags and config override
/// the recipe's loss weights.
/// What a phase's model file records as its settings: the run's, with this
/// phase's own seed, epochs, architecture and method, so that the record is
/// true of the file it is in (and a resumed run can tell its files apart).
/// A phase that distils records the loss weights it trained with (the
/// recipe's own unless flags set them); one that does not records none.
fn phase_settings(
    plan: &Plan,
    config: &TrainConfig,
    arch: &str,
    method: &MethodPlugin,
) -> Result<String> {
    let mut t: toml::Table = plan.settings.parse().context("own settings parse")?;
    t.insert("seed".into(), toml::Value::Integer(config.seed as i64));
    t.insert("epochs".into(), toml::Value::Integer(config.epochs as i64));
    t.insert("lr".into(), toml::Value::Float(config.lr));
    t.insert("arch".into(), arch.into());
    t.insert("method".into(), method.name.into());
    for (key, weight) in [
        ("ce_weight", config.ce_weight),
        ("distill_weight", config.distill_weight),
    ] {
        match method.needs_teacher() {
            true => t.insert(key.into(), toml::Value::Float(weight)),
            false => t.remove(key),
        };
    }
    Ok(toml::to_string(&t)?)
}

/// A phase's training settings: the run's, with the phase's epochs and loss
/// weights, and `student_lr` (when set) for a student.
fn run_config(
    cfg: &RunConfig,
    base: &TrainConfig,
    (run, student_lr): (&RecipeRun, Option<f64>),
    seed: u64,
) -> TrainConfig {
    let lr = match run.trains_teacher {
        true => base.lr,
        false => student_lr.unwrap_or(base.lr),
    };
    TrainConfig {
        lr,
        epochs: base.epochs * run.epoch_scale.max(1),
        ce_weight: cfg.hyper.ce_weight.unwrap_or(run.ce_weight),
        distill_weight: cfg.hyper.distill_weight.unwrap_or(run.distill_weight),
        seed,
        ..base.clone()
    }
}

/// `--list-pairs`: the recipe's pairs, each with its published accuracies.
fn list_pairs(recipe: Option<&str>) -> Result<()> {
    let recipe = match recipe {
        Some(name) => registry::recipe(name)?,
        None => registry::default_recipe()?,
    };
    println!(
        "Pairs of recipe `{}` (kd reproduce --recipe {} --pair TEACHER-STUDENT):",
        recipe.name, recipe.name
    );
    for (i, pair) in recipe.pairs.iter().enumerate() {
        let published: Vec<String> = pair
            .published
            .iter()
            .map(|(p, a)| format!("{p} {a:.2}"))
            .collect();
        let default = if i == 0 { " (default)" } else { "" };
        println!("  {}{default}", pair.name());
        if !published.is_empty() {
            println!("      published: {}", published.join(", "));
        }
    }
    Ok(())
}

/// What a recipe's `settings` set, as settings; an unknown key is an error
/// (a test holds every registered recipe to it).
pub fn recipe_settings(recipe: &RecipePlugin) -> Result<RunConfig> {
    let table: toml::Table = recipe
        .settings
        .parse()
        .with_context(|| format!("recipe `{}`: its settings are not TOML", recipe.name))?;
    let known: Vec<&str> = crate::config::SETTINGS.iter().map(|(k, _)| *k).collect();
    if let Some(key) = table.keys().find(|k| !known.contains(&k.as_str())) {
        bail!(
            "recipe `{}` sets `{key}`, which is not a setting",
            recipe.name
        );
    }
    toml::Value::Table(table).try_into().with_context(|| {
        format!(
            "recipe `{}`: a setting has a value of the wrong type",
            recipe.name
        )
    })
}

/// A phase's hyper-parameters: the recipe's, then the pair's, overridden by
/// flags and config for the names its method takes (`--param temperature=4`
/// sets it for every phase whose method has a temperature).
fn run_params(
    hyper: &HyperArgs,
    pair: &RecipePair,
    run: &RecipeRun,
    method: &MethodPlugin,
) -> Params {
    let mut params: Params = run
        .params
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    for (phase, k, v) in pair.params {
        if *phase == run.name {
            params.insert(k.to_string(), *v);
        }
    }
    for (k, v) in &hyper.params {
        if method.params.iter().any(|p| p.name == k) {
            params.insert(k.clone(), *v);
        }
    }
    params
}

/// Refuses a `--param` that no phase of the recipe takes, naming the nearest one.
fn check_params_taken(hyper: &HyperArgs, runs: &[RecipeRun]) -> Result<()> {
    let mut taken: Vec<&str> = runs
        .iter()
        .filter_map(|r| registry::method(r.method).ok())
        .flat_map(|m| m.params.iter().map(|p| p.name))
        .collect();
    taken.sort_unstable();
    taken.dedup();
    for name in hyper.params.keys() {
        if !taken.contains(&name.as_str()) {
            let e = registry::unknown("hyper-parameter", name, &taken);
            bail!("{e} No phase of this recipe takes `{name}`, so it would have no effect.");
        }
    }
    Ok(())
}

/// The epochs of `phase` recorded in a metrics file (the last record of each
/// epoch wins, since a resumed epoch is recorded again).
fn read_curve(metrics: &Path, phase: &str) -> Vec<EpochSummary> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let mut by_epoch = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            tracing::warn!(
                "{} line {} is damaged (not JSON): it is left out of `{phase}`'s curve",
                metrics.display(),
                i + 1
            );
            continue;
        };
        if v["phase"].as_str().and_then(|p| p.split(' ').next()) != Some(phase) {
            continue;
        }
        let summary = EpochSummary {
            epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
            epochs: 0,
            loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            parts: Default::default(),
            test_accuracy: v["test_accuracy"].as_f64(),
            lr: v["lr"].as_f64().unwrap_or(f64::NAN),
            images_per_sec: v["images_per_sec"].as_f64().unwrap_or(0.0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
        };
        by_epoch.insert(summary.epoch, summary);
    }
    by_epoch.into_values().collect()
}

/// `kd report DIR...`: one summary of several runs that differ only in their seeds.
pub fn report(args: &crate::cli::ReportArgs) -> Result<()> {
    let parts = args
        .runs
        .iter()
        .map(|d| Ok((d.display().to_string(), Summary::read(d)?)))
        .collect::<Result<Vec<_>>>()?;
    let summary = Summary::merge(parts)?;
    let mut files = Files::new(args.overwrite);
    for run in &args.runs {
        for name in report::FILES {
            files.input(format!("run {}'s", run.display()), &run.join(name));
        }
    }
    for name in report::FILES {
        files.output("--out", &args.out.join(name));
    }
    if args.out.is_dir() {
        files.check()?;
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    println!("{}", summary.table());
    let line = format!(
        "Aggregated by `kd report` from {}.",
        args.runs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    summary.write(&args.out, &line)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use kd_plugins as _;

    /// Every registered recipe's settings are TOML of known settings with
    /// values of the right types.
    #[test]
    fn every_recipe_states_valid_settings() {
        let recipes = kd_core::registry::recipes();
        assert!(recipes.iter().any(|r| r.name == "showcase"));
        for r in recipes {
            super::recipe_settings(r).unwrap_or_else(|e| panic!("{}: {e:#}", r.name));
        }
    }
}
