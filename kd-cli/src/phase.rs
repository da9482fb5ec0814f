//! One training phase, the way every command runs it: plan (a
//! [`PhaseSpec`]), then [`run`]: train with checkpoints, evaluate, write the
//! model file.
use std::path::Path;

use anyhow::{bail, Context, Result};
use kd_core::candle::Device;
use kd_core::loss::Params;
use kd_core::model::sorted_tensors;
use kd_core::registry::MethodPlugin;
use kd_core::weights::{self, ModelInfo};
use kd_core::{ArchConfig, Model, Teacher};
use kd_train::checkpoint::{Checkpoint, CheckpointPolicy};
use kd_train::data::Splits;
use kd_train::eval::Evaluation;
use kd_train::train::{TrainConfig, Trainer};

use crate::cli::ModelArgs;
use crate::config::RunConfig;
use crate::progress::Progress;

/// One training run: what it is and what it produced.
pub struct Phase {
    pub model: Model,
    /// Whether the method's trainable helpers were written beside the model.
    pub has_adapters: bool,
    pub evaluation: Evaluation,
    pub seconds: f64,
}

/// One phase of a command, decided before any data is loaded.
pub struct PhaseSpec<'a> {
    /// How logs and errors name it (`kd`, `ce s7`).
    pub name: &'a str,
    pub arch: &'a str,
    pub method: &'static MethodPlugin,
    pub params: &'a Params,
    pub config: TrainConfig,
    /// The model file written when training ends.
    pub out: &'a Path,
    pub checkpoints: CheckpointPolicy,
    pub resume: Option<&'a Checkpoint>,
}

/// Runs a phase: trains `spec.arch` with its method (distilling from
/// `teacher` when the method needs one), checkpointing as it goes, evaluates
/// it on the test split and writes the model file. `kd train` and
/// `kd reproduce` both run their phases through here.
pub fn run(
    spec: PhaseSpec,
    teacher: Option<&dyn Teacher>,
    data: &Splits,
    device: &Device,
    progress: &mut Progress,
) -> Result<Phase> {
    let start = std::time::Instant::now();
    let PhaseSpec { name, method, .. } = spec;
    let arch_config = ArchConfig {
        input_shape: data.train.shape,
        num_classes: data.train.num_classes(),
    };
    let model = Model::new(spec.arch, arch_config.clone(), spec.config.seed, device)?;
    model.arch.check_taps(method, &arch_config)?;
    let mut trainer = Trainer::new(
        &model,
        teacher,
        method,
        spec.params,
        spec.config,
        &data.train,
        device,
    )
    .with_context(|| format!("cannot start run `{name}`"))?
    .with_stop_flag(&crate::STOP);
    let run_config = spec.checkpoints.run_config.clone();
    let checkpoints = spec.checkpoints.dir.clone();
    let info = model_info(&model, method.name, trainer.params(), data, &run_config);
    trainer = trainer.with_checkpoints(CheckpointPolicy {
        best_model: Some(info.clone()),
        ..spec.checkpoints
    });
    if let Some(c) = spec.resume {
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
    // The last epoch is always tested; a resumed run that had nothing left to train is tested here.
    let evaluation = match trainer.take_final_evaluation() {
        Some(e) => e,
        None => trainer.evaluate(&data.test)?,
    };
    let adapters = sorted_tensors(trainer.adapters());
    drop(trainer);
    let seconds = start.elapsed().as_secs_f64();
    let info = ModelInfo {
        accuracy: Some(evaluation.accuracy),
        seconds: Some(seconds),
        ..info
    };
    weights::save_model(spec.out, &model.tensors(), &adapters, &info).with_context(|| {
        format!(
            "training finished (test accuracy {:.2}%), but the model could not be written. The last checkpoint in {} holds the trained weights: make room and resume the run (--resume) to test and write it without training again",
            evaluation.accuracy,
            checkpoints.display()
        )
    })?;
    Ok(Phase {
        model,
        has_adapters: !adapters.is_empty(),
        evaluation,
        seconds,
    })
}

/// What a model file of `model` trained with `method` on `data` records.
fn model_info(
    model: &Model,
    method: &str,
    params: &Params,
    data: &Splits,
    run_config: &str,
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
        run_config: Some(run_config.to_string()),
    }
}

/// Loads a teacher from a file (kd's metadata, or `--teacher-arch` for a
/// plain state_dict; `--teacher-key` picks a torch.save checkpoint's entry).
pub fn load_teacher(
    spec: &str,
    (teacher_arch, teacher_key): (Option<&str>, Option<&str>),
    data: &Splits,
    device: &Device,
) -> Result<Model> {
    let path = crate::hub::resolve(spec)?;
    let args = ModelArgs {
        arch: teacher_arch.map(str::to_string),
        input_shape: None,
        num_classes: None,
        device: Default::default(),
    };
    let file = kd_core::weights::read_under(&path, teacher_key)
        .and_then(|f| f.check_finite().map(|()| f))
        .with_context(|| format!("cannot load teacher {}", path.display()))?;
    let (model, _) = crate::models::load_model(
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

/// The one resume rule, for every command: settings that change the result
/// must be the run's own, unless `force`.
pub fn check_resume(then: &RunConfig, now: &RunConfig, force: bool) -> Result<()> {
    let changed = changed_settings(then, now);
    // A checkpoint holds one architecture's weights: no flag makes them another's.
    if let Some(arch) = changed.iter().find(|c| c.starts_with("arch ")) {
        bail!(
            "resuming with another architecture: {arch}. A checkpoint holds the weights of the architecture it was trained as; start a new run (another --run-dir) for the new one"
        );
    }
    if !changed.is_empty() && !force {
        bail!(
            "resuming with settings that would change the result: {}. Drop those flags to continue the run as it was, or add --force.",
            changed.join("; ")
        );
    }
    Ok(())
}

/// Names the result-changing settings on which `now` differs from `then`.
fn changed_settings(then: &RunConfig, now: &RunConfig) -> Vec<String> {
    let table = |c: &RunConfig| -> toml::Table { c.to_toml().parse().expect("own TOML parses") };
    let (a, b) = (table(then), table(now));
    // The cosine schedule spreads itself over the run's epochs: more epochs
    // change the rate of the ones left.
    let cosine = [&a, &b]
        .iter()
        .any(|t| t.get("lr_schedule").and_then(|v| v.as_str()) == Some("cosine"));
    crate::config::SETTINGS
        .iter()
        .filter(|(key, changes_result)| *changes_result || (cosine && *key == "epochs"))
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
