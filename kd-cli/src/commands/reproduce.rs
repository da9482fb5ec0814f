use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kd_core::loss::Params;
use kd_core::registry;
use kd_core::train::TrainConfig;
use serde_json::json;

use super::train::{save_phase, train_phase};
use crate::cli::ReproduceArgs;
use crate::config::RunConfig;
use crate::progress::Progress;
use kd_core::train::{CheckpointPolicy, EpochSummary};

/// One finished phase, as reported.
struct Row {
    name: &'static str,
    method: &'static str,
    accuracy: f64,
    seconds: f64,
    /// Whether this phase trained the teacher, and whether it distilled.
    teacher: bool,
    distils: bool,
}

pub fn run(args: ReproduceArgs, quiet: bool) -> Result<()> {
    let recipe = registry::recipe(&args.recipe)?;
    let resuming = args.resume.is_some();
    let out_arg = args.resume.clone().or(args.out.clone());
    let flags = RunConfig {
        data: args.data.clone(),
        hyper: args.hyper.clone(),
        ..RunConfig::default()
    };
    let mut cfg = flags.clone().with_file(args.config.as_deref())?;
    if let Some(dir) = &args.resume {
        let text = std::fs::read_to_string(dir.join("settings.toml")).with_context(|| {
            format!(
                "{} is not a kd reproduce run folder (no settings.toml)",
                dir.display()
            )
        })?;
        let then: RunConfig =
            toml::from_str(&text).context("the run's settings.toml cannot be read")?;
        cfg = cfg.or(then.clone());
        let changed = super::train::changed_settings(
            &then,
            &RunConfig {
                hyper: cfg.hyper.clone().resolved(),
                ..cfg.clone()
            },
        );
        if !changed.is_empty() {
            anyhow::bail!("resuming with settings that would change the result: {}. Drop those flags to continue the run as it was.", changed.join("; "));
        }
    }
    let hyper = cfg.hyper.clone().resolved();
    let base = hyper.train_config();
    base.validate()?;
    crate::teacher_cache::check_mode(hyper.teacher_cache.as_deref())?;
    let out = out_arg.unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("{}-{}", recipe.name, cfg.data.dataset()))
    });
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the run folder {}", out.display()))?;
    super::check_writable(&out.join("summary.json"))?;
    let device = super::device(hyper.device.as_deref().unwrap_or("auto"))?;
    let data = crate::datasets::load(&cfg.data)?;
    if !quiet {
        eprintln!(
            "kd reproduce: recipe `{}` on {} ({} training / {} test images of {:?}), {} epochs, batch {}, lr {}, seed {}, device {}",
            recipe.name,
            data.train.name,
            data.train.len(),
            data.test.len(),
            data.train.shape,
            base.epochs,
            base.batch_size,
            base.lr,
            base.seed,
            kd_core::device::name(&device)
        );
    }
    let metrics = out.join("metrics.jsonl");
    let settings = RunConfig {
        hyper: hyper.clone(),
        ..cfg.clone()
    }
    .to_toml();
    if !resuming {
        let checkpoints = out.join("checkpoints");
        let earlier = std::fs::read_dir(&checkpoints)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        super::refuse_earlier_run(
            &checkpoints,
            earlier,
            &format!("kd reproduce --resume {}", out.display()),
        )?;
        // A fresh run starts a fresh metrics file.
        let _ = std::fs::remove_file(&metrics);
        kd_core::weights::write_atomic(&out.join("settings.toml"), settings.as_bytes())?;
    }
    crate::install_interrupt_handler(&format!("kd reproduce --resume {}", out.display()));
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut teacher: Option<kd_core::Model> = None;
    // The teacher's outputs, computed once and shared by every distillation run.
    let mut cache: Option<Option<kd_core::cache::CachedTeacher>> = None;
    let mut taps: Vec<&str> = Vec::new();
    for run in recipe.runs {
        for t in registry::method(run.method)?.teacher_taps {
            if !taps.contains(t) {
                taps.push(t);
            }
        }
    }
    for run in recipe.runs {
        let method = registry::method(run.method)?;
        // Flags and config override the recipe's weights and hyper-parameters.
        let mut params: Params = run
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        for (k, v) in &hyper.params {
            if method.params.iter().any(|p| p.name == k) {
                params.insert(k.clone(), *v);
            }
        }
        let config = TrainConfig {
            ce_weight: cfg.hyper.ce_weight.unwrap_or(run.ce_weight),
            distill_weight: cfg.hyper.distill_weight.unwrap_or(run.distill_weight),
            ..base.clone()
        };
        let arch = if run.trains_teacher {
            recipe.teacher_arch
        } else {
            recipe.student_arch
        };
        let path = out.join(format!("{}.safetensors", run.name));
        let run_dir = out.join("checkpoints").join(run.name);
        if resuming && path.exists() {
            // Finished before the interruption: keep it, and its curves.
            let (model, info) = kd_core::weights::load_model(&path, None, &device)?;
            let seconds = info.seconds.unwrap_or(0.0);
            let accuracy = info.accuracy.unwrap_or(0.0);
            if !quiet {
                eprintln!(
                    "{}: finished before, test accuracy {accuracy:.2}% (kept {})",
                    run.name,
                    path.display()
                );
            }
            rows.push(Row {
                name: run.name,
                method: run.method,
                accuracy,
                seconds,
                teacher: run.trains_teacher,
                distils: method.needs_teacher,
            });
            curves.push((run.name.to_string(), read_curve(&metrics, run.name)));
            if run.trains_teacher {
                teacher = Some(model);
            }
            continue;
        }
        let resume = if resuming {
            kd_core::checkpoint::latest(&run_dir)?
        } else {
            None
        };
        let policy = CheckpointPolicy {
            dir: run_dir,
            every_batches: args.checkpoint_every,
            keep_last: 2,
            run_config: settings.clone(),
        };
        if method.needs_teacher && cache.is_none() {
            if let Some(t) = &teacher {
                let mode = hyper.teacher_cache.as_deref().unwrap_or("auto");
                let runs = recipe
                    .runs
                    .iter()
                    .filter(|r| registry::method(r.method).is_ok_and(|m| m.needs_teacher))
                    .count();
                cache = Some(crate::teacher_cache::build(
                    mode,
                    t,
                    &taps,
                    &data,
                    &device,
                    runs * config.epochs,
                )?);
            }
        }
        let teacher_ref = crate::teacher_cache::serving(
            cache.as_ref().and_then(Option::as_ref),
            teacher.as_ref(),
        );
        let mut progress = Progress::new(run.name, quiet, Some(&metrics))?;
        let phase = train_phase(
            run.name,
            arch,
            run.method,
            &params,
            teacher_ref,
            config,
            &data,
            &device,
            &mut progress,
            Some(policy),
            resume.as_ref(),
        )
        .map_err(|e| crate::explain_stop(e, &format!("kd reproduce --resume {}", out.display())))?;
        save_phase(&path, &phase, run.method, &data, Some(settings.clone()))?;
        if !quiet {
            eprintln!(
                "{}: test accuracy {:.2}% ({:.1} s), wrote {}",
                run.name,
                phase.evaluation.accuracy,
                phase.seconds,
                path.display()
            );
        }
        rows.push(Row {
            name: run.name,
            method: run.method,
            accuracy: phase.evaluation.accuracy,
            seconds: phase.seconds,
            teacher: run.trains_teacher,
            distils: method.needs_teacher,
        });
        let mut curve = read_curve(&metrics, run.name);
        if curve.is_empty() {
            curve = progress.epochs.clone();
        }
        curves.push((run.name.to_string(), curve));
        if run.trains_teacher {
            teacher = Some(phase.model);
        }
    }

    // The baseline is the first student trained without a teacher.
    let baseline = rows
        .iter()
        .find(|r| !r.teacher && !r.distils)
        .map(|r| r.accuracy);
    let table = comparison(&rows, baseline);
    println!("{table}");

    let summary = json!({
        "recipe": recipe.name,
        "dataset": data.train.name,
        "train_images": data.train.len(),
        "test_images": data.test.len(),
        "device": kd_core::device::name(&device),
        "phases": rows.iter().map(|r| (r.name.to_string(), json!({"method": r.method, "accuracy": r.accuracy, "seconds": r.seconds}))).collect::<serde_json::Map<_, _>>(),
        "settings": toml::from_str::<toml::Value>(&settings).ok(),
    });
    kd_core::weights::write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    let mut report = String::new();
    writeln!(
        report,
        "# kd reproduce: `{}` on {}\n",
        recipe.name, data.train.name
    )?;
    writeln!(report, "{}\n", recipe.summary)?;
    writeln!(
        report,
        "{} training images, {} test images, device {}.\n",
        data.train.len(),
        data.test.len(),
        kd_core::device::name(&device)
    )?;
    writeln!(report, "{table}\n")?;
    writeln!(report, "![training loss and test accuracy](plot.png)\n")?;
    writeln!(report, "## Settings\n\n```toml\n{settings}```")?;
    kd_core::weights::write_atomic(&out.join("report.md"), report.as_bytes())?;
    crate::plot::loss_and_accuracy(&out.join("plot.png"), &curves)?;
    if !quiet {
        eprintln!(
            "wrote {} (models, metrics.jsonl, summary.json, report.md, plot.png)",
            out.display()
        );
    }
    Ok(())
}

/// The tutorial's closing comparison as a Markdown table.
fn comparison(rows: &[Row], baseline: Option<f64>) -> String {
    let mut s = String::from(
        "| phase | method | test accuracy | vs CE student | time |\n|---|---|---:|---:|---:|\n",
    );
    for r in rows {
        let delta = match baseline {
            Some(b) => format!("{:+.2}", r.accuracy - b),
            None => "".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.2}% | {} | {:.1} s |",
            r.name, r.method, r.accuracy, delta, r.seconds
        );
    }
    s
}

/// The epochs of `phase` recorded in a run's metrics file (the last record of
/// each epoch wins, since a resumed epoch is recorded again).
fn read_curve(metrics: &std::path::Path, phase: &str) -> Vec<EpochSummary> {
    let text = std::fs::read_to_string(metrics).unwrap_or_default();
    let mut by_epoch = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["phase"] != phase {
            continue;
        }
        let summary = EpochSummary {
            epoch: v["epoch"].as_u64().unwrap_or(0) as usize,
            epochs: 0,
            loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            parts: Default::default(),
            test_accuracy: v["test_accuracy"].as_f64(),
            images_per_sec: v["images_per_sec"].as_f64().unwrap_or(0.0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
        };
        by_epoch.insert(summary.epoch, summary);
    }
    by_epoch.into_values().collect()
}
