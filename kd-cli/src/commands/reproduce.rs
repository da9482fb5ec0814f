use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};
use kd_core::loss::Params;
use kd_core::registry;
use kd_core::train::TrainConfig;
use serde_json::json;

use super::train::{save_phase, train_phase, Phase};
use crate::cli::ReproduceArgs;
use crate::config::RunConfig;
use crate::progress::Progress;

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
    let cfg = args.run.with_file(args.config.as_deref())?;
    let hyper = cfg.hyper.clone().resolved();
    let base = hyper.train_config();
    base.validate()?;
    let out = args.out.clone().unwrap_or_else(|| {
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
    // A fresh run starts a fresh metrics file.
    let _ = std::fs::remove_file(&metrics);
    let settings = RunConfig {
        hyper: hyper.clone(),
        ..cfg.clone()
    }
    .to_toml();
    let mut rows = Vec::new();
    let mut curves = Vec::new();
    let mut teacher: Option<Phase> = None;
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
        let mut progress = Progress::new(run.name, quiet, Some(&metrics))?;
        let teacher_model = teacher.as_ref().map(|p| &p.model);
        let phase = train_phase(
            run.name,
            arch,
            run.method,
            &params,
            teacher_model,
            config,
            &data,
            &device,
            &mut progress,
        )?;
        let path = out.join(format!("{}.safetensors", run.name));
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
        curves.push((run.name.to_string(), progress.epochs.clone()));
        if run.trains_teacher {
            teacher = Some(phase);
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
