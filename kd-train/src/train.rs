//! The one training loop every method shares.
//!
//! total loss = ce_weight x cross-entropy + distill_weight x method loss; a run
//! whose method has no distillation term is plain supervised training (that is
//! how a teacher is trained). The teacher runs in eval mode without gradients;
//! the student and the method's trainable helpers are updated by the run's
//! optimizer, at the learning rate its schedule gives each epoch.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointPolicy, RunState};
use crate::data::transform::{Augment, Transform};
use crate::data::Dataset;
use crate::eval::{evaluate, Evaluation};
use kd_core::loss::{cross_entropy, DistillLoss, MethodContext, Params, Step};
use kd_core::model::sorted_tensors;
use kd_core::network::{Mode, Student, Teacher};
use kd_core::optim::{LrSchedule, Optimizer, OptimizerSettings, ScheduleSettings};
use kd_core::registry::MethodPlugin;
use kd_core::{Error, Result};

/// The settings of one run, with the tutorial's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub ce_weight: f64,
    pub distill_weight: f64,
    /// Test the student after every Nth epoch (0: only after the last). Testing
    /// changes no weights; on a CPU a teacher's test pass costs a third of an epoch.
    pub eval_every: usize,
    /// A registered optimizer ([`kd_core::optim::optimizers`]).
    #[serde(default = "defaults::optimizer")]
    pub optimizer: String,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub dampening: f64,
    #[serde(default)]
    pub nesterov: bool,
    /// `None`: the optimizer's own default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    /// A registered schedule ([`kd_core::optim::schedules`]).
    #[serde(default = "defaults::lr_schedule")]
    pub lr_schedule: String,
    /// Epochs (counted after the warm-up) at which `multistep` multiplies the rate by `gamma`.
    #[serde(default)]
    pub milestones: Vec<usize>,
    #[serde(default = "defaults::gamma")]
    pub gamma: f64,
    /// The floor of the `cosine` schedule.
    #[serde(default)]
    pub min_lr: f64,
    /// Epochs of linear warm-up before the schedule.
    #[serde(default)]
    pub warmup_epochs: usize,
    /// Random transforms of the training images.
    #[serde(default)]
    pub augment: Augment,
}

/// The defaults of settings that older settings files lack.
mod defaults {
    pub fn optimizer() -> String {
        "adam".into()
    }
    pub fn lr_schedule() -> String {
        "constant".into()
    }
    pub fn gamma() -> f64 {
        0.1
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 128,
            lr: 0.001,
            seed: 42,
            ce_weight: 0.75,
            distill_weight: 0.25,
            eval_every: 1,
            optimizer: defaults::optimizer(),
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: None,
            lr_schedule: defaults::lr_schedule(),
            milestones: Vec::new(),
            gamma: defaults::gamma(),
            min_lr: 0.0,
            warmup_epochs: 0,
            augment: Augment::None,
        }
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the setting and a sane value.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str, v: String, hint: &str| {
            Err(Error::config(format!(
                "{what} = {v} is out of range: {hint}"
            )))
        };
        if self.epochs == 0 {
            return bad(
                "epochs",
                "0".into(),
                "train for at least 1 epoch (the tutorial uses 10)",
            );
        }
        if self.batch_size == 0 {
            return bad(
                "batch size",
                "0".into(),
                "use at least 1 (the tutorial uses 128)",
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(
                "learning rate",
                self.lr.to_string(),
                "it must be greater than 0 (the tutorial uses 0.001)",
            );
        }
        if self.warmup_epochs >= self.epochs && self.warmup_epochs > 0 {
            return bad(
                "warmup epochs",
                self.warmup_epochs.to_string(),
                "the warm-up must end before the last epoch: use fewer than --epochs",
            );
        }
        // Built once here, so a bad optimizer or schedule fails before any data is loaded.
        self.schedule()?;
        let probe = Var::new(&[0f32], &Device::Cpu)?;
        self.build_optimizer(vec![("probe".into(), probe)])?;
        for (what, w) in [
            ("ce weight", self.ce_weight),
            ("distill weight", self.distill_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return bad(
                    what,
                    w.to_string(),
                    "loss weights must be finite and not negative (the tutorial uses 0.75 / 0.25)",
                );
            }
        }
        Ok(())
    }

    /// The run's optimizer over (name, variable) pairs.
    pub fn build_optimizer(&self, vars: Vec<(String, Var)>) -> Result<Box<dyn Optimizer>> {
        let settings = OptimizerSettings {
            lr: self.lr,
            momentum: self.momentum,
            dampening: self.dampening,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
        };
        (kd_core::optim::optimizer(&self.optimizer)?.build)(vars, &settings)
    }

    /// The run's learning-rate schedule, warm-up included.
    pub fn schedule(&self) -> Result<Box<dyn LrSchedule>> {
        let settings = ScheduleSettings {
            base_lr: self.lr,
            epochs: self.epochs - self.warmup_epochs.min(self.epochs),
            milestones: self.milestones.clone(),
            gamma: self.gamma,
            min_lr: self.min_lr,
        };
        let after = (kd_core::optim::schedule(&self.lr_schedule)?.build)(&settings)?;
        Ok(match self.warmup_epochs {
            0 => after,
            epochs => Box::new(kd_core::optim::Warmup {
                epochs,
                base_lr: self.lr,
                after,
            }),
        })
    }

    /// [`validate`](Self::validate), and for a method that distils, that
    /// something is learnt: supervised training ignores both weights.
    pub fn validate_for(&self, method: &MethodPlugin) -> Result<()> {
        self.validate()?;
        if method.needs_teacher() && self.ce_weight == 0.0 && self.distill_weight == 0.0 {
            return Err(Error::config(format!(
                "ce weight and distill weight are both 0 for method `{}`: the loss would be 0 and nothing would be learnt. Give one of them a positive weight",
                method.name
            )));
        }
        Ok(())
    }
}

/// What observers hear after every batch.
#[derive(Debug, Clone)]
pub struct BatchUpdate {
    pub epoch: usize,
    pub batch: usize,
    pub batches: usize,
    pub images: usize,
    pub loss: f64,
}

/// What observers hear after every epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochSummary {
    pub epoch: usize,
    pub epochs: usize,
    /// Mean total loss over the epoch's batches.
    pub loss: f64,
    /// Mean of each weighted term (`ce`, and the method's name).
    pub parts: BTreeMap<String, f64>,
    pub test_accuracy: Option<f64>,
    /// The learning rate of the epoch.
    #[serde(default)]
    pub lr: f64,
    pub images_per_sec: f64,
    pub seconds: f64,
}

/// Receives progress; the trainer knows nothing of bars or files.
pub trait Observer {
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    fn batch_done(&mut self, _update: &BatchUpdate) {}
    fn epoch_done(&mut self, _summary: &EpochSummary) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// A student, its method, its optimizer: one run.
pub struct Trainer<'a> {
    student: &'a dyn Student,
    teacher: Option<&'a dyn Teacher>,
    method: &'static MethodPlugin,
    /// The method's hyper-parameters, defaults filled in.
    params: Params,
    distill: Option<Box<dyn DistillLoss>>,
    adapters: VarMap,
    /// What the optimizer updates, by name: the student's parameters and the adapters.
    vars: Vec<(String, Var)>,
    optimizer: Box<dyn Optimizer>,
    schedule: Box<dyn LrSchedule>,
    transforms: Vec<Box<dyn Transform>>,
    /// The evaluation of the last epoch, when it was tested.
    last_evaluation: Option<Evaluation>,
    config: TrainConfig,
    device: Device,
    state: RunState,
    checkpoints: Option<CheckpointPolicy>,
    stop: Option<&'a AtomicBool>,
}

impl<'a> Trainer<'a> {
    /// Builds `method` for this student and teacher: a probe batch from
    /// `train` gives the shapes the method sizes itself by.
    pub fn new(
        student: &'a dyn Student,
        teacher: Option<&'a dyn Teacher>,
        method: &'static MethodPlugin,
        params: &Params,
        config: TrainConfig,
        train: &Dataset,
        device: &Device,
    ) -> Result<Self> {
        config.validate_for(method)?;
        let params = method.resolve_params(params)?;
        let adapters = VarMap::new();
        let (distill, teacher) = match (method.build, teacher) {
            (None, _) => (None, None),
            (Some(_), None) => {
                return Err(Error::MissingTeacher {
                    method: method.name.to_string(),
                })
            }
            (Some(build), Some(teacher)) => {
                let probe = train.batch(&(0..train.len().min(2)).collect::<Vec<_>>(), device)?;
                let student_out = student.forward_t(&probe.images, Mode::Eval)?;
                let teacher_out = teacher
                    .outputs(&probe)?
                    .only(method.taps)
                    .map_err(|e| e.in_method(method.name))?;
                let ctx = MethodContext {
                    params: &params,
                    vb: kd_core::nn::seeded::var_builder(
                        &adapters,
                        config.seed,
                        DType::F32,
                        device,
                    ),
                    student: &student_out,
                    teacher: &teacher_out,
                };
                let distill = build(&ctx).map_err(|e| e.in_method(method.name))?;
                (Some(distill), Some(teacher))
            }
        };
        let mut vars: Vec<(String, Var)> = student.params();
        vars.extend(
            named_vars(&adapters)
                .into_iter()
                .map(|(n, v)| (format!("adapter.{n}"), v)),
        );
        let optimizer = config.build_optimizer(vars.clone())?;
        Ok(Self {
            student,
            teacher,
            method,
            params: params.clone(),
            distill,
            adapters,
            vars,
            optimizer,
            schedule: config.schedule()?,
            transforms: config.augment.transforms(),
            last_evaluation: None,
            config,
            device: device.clone(),
            state: RunState::default(),
            checkpoints: None,
            stop: None,
        })
    }

    /// The method's hyper-parameters as used: those given, defaults for the rest.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Writes checkpoints as `policy` says.
    pub fn with_checkpoints(mut self, policy: CheckpointPolicy) -> Self {
        self.checkpoints = Some(policy);
        self
    }

    /// When `flag` turns true the run finishes its batch, writes a checkpoint
    /// (if it has a policy) and stops with [`Error::Interrupted`].
    pub fn with_stop_flag(mut self, flag: &'a AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Trainable helpers the method created (empty for most methods).
    pub fn adapters(&self) -> &VarMap {
        &self.adapters
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    pub fn state(&self) -> &RunState {
        &self.state
    }

    /// Trains the remaining epochs, evaluating on `test` after each when given.
    pub fn fit(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<EpochSummary>> {
        let mut summaries = Vec::new();
        while self.state.epochs_done < self.config.epochs {
            summaries.push(self.train_epoch(train, test, observer)?);
        }
        Ok(summaries)
    }

    /// The rest of the epoch in progress, in its seeded order.
    pub fn train_epoch(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        observer: &mut dyn Observer,
    ) -> Result<EpochSummary> {
        let epoch = self.state.epochs_done;
        let cfg = self.config.clone();
        let batches = train.batch_indices(cfg.batch_size, Some((cfg.seed, epoch)));
        let lr = self.schedule.lr(epoch, 0);
        self.optimizer.set_lr(lr);
        observer.epoch_started(epoch + 1, batches.len());
        let start = Instant::now();
        let seconds_before = self.state.seconds;
        let mut images = 0;
        for b in self.state.batches_done..batches.len() {
            let indices = &batches[b];
            let (loss, terms) = self.step(train, indices, epoch, b, epoch * batches.len() + b)?;
            self.state.batches_done = b + 1;
            self.state.loss_sum += loss;
            for (n, v) in terms {
                *self.state.term_sums.entry(n).or_default() += v;
            }
            images += indices.len();
            self.state.seconds = seconds_before + start.elapsed().as_secs_f64();
            observer.batch_done(&BatchUpdate {
                epoch: epoch + 1,
                batch: b + 1,
                batches: batches.len(),
                images: indices.len(),
                loss,
            });
            if self.stop.is_some_and(|f| f.load(Ordering::SeqCst)) {
                let at = self.write_checkpoint(None)?;
                return Err(Error::Interrupted(format!(
                    "stopped after epoch {}, batch {} of {}{}",
                    epoch + 1,
                    b + 1,
                    batches.len(),
                    at.map(|p| format!("; checkpoint {}", p.display()))
                        .unwrap_or_default()
                )));
            }
            let every = self.checkpoints.as_ref().and_then(|c| c.every_batches);
            if every.is_some_and(|n| n > 0 && (b + 1) % n == 0) && b + 1 < batches.len() {
                self.write_checkpoint(None)?;
            }
        }
        let last = epoch + 1 == cfg.epochs;
        let due = last || (cfg.eval_every > 0 && (epoch + 1).is_multiple_of(cfg.eval_every));
        self.last_evaluation = match test.filter(|_| due) {
            Some(t) => Some(evaluate(
                self.student,
                t,
                crate::eval::EVAL_BATCH,
                &self.device,
            )?),
            None => None,
        };
        let test_accuracy = self.last_evaluation.as_ref().map(|e| e.accuracy);
        let n = batches.len().max(1) as f64;
        let summary = EpochSummary {
            epoch: epoch + 1,
            epochs: cfg.epochs,
            loss: self.state.loss_sum / n,
            parts: self
                .state
                .term_sums
                .iter()
                .map(|(k, v)| (k.clone(), v / n))
                .collect(),
            test_accuracy,
            lr,
            images_per_sec: images as f64 / start.elapsed().as_secs_f64().max(1e-9),
            seconds: self.state.seconds,
        };
        self.state = RunState {
            epochs_done: epoch + 1,
            best_accuracy: self.state.best_accuracy,
            ..RunState::default()
        };
        self.write_checkpoint(test_accuracy)?;
        observer.epoch_done(&summary);
        Ok(summary)
    }

    /// One optimizer step on the samples at `indices` (batch `b` of `epoch`,
    /// the run's step `global_step`); returns the total loss and each weighted
    /// term. [`Trainer::train_epoch`] calls it for each batch; a bench or
    /// another front end may call it alone.
    pub fn step(
        &mut self,
        train: &Dataset,
        indices: &[usize],
        epoch: usize,
        b: usize,
        global_step: usize,
    ) -> Result<(f64, Vec<(String, f64)>)> {
        let cfg = &self.config;
        let batch = train.batch_with(indices, &self.transforms, (cfg.seed, epoch), &self.device)?;
        let seed = kd_core::init::rng_for(cfg.seed, &format!("step/{epoch}/{b}")).gen();
        let out = self
            .student
            .forward_t(&batch.images, Mode::Train { seed })?;
        let ce = cross_entropy(&out.logits, &batch.labels)?;
        let (total, terms) = match (&self.distill, self.teacher) {
            (Some(distill), Some(teacher)) => {
                let t_out = teacher.outputs(&batch)?.only(self.method.taps)?;
                let step = Step::new(&out, &t_out, &batch.labels).at(epoch, global_step, indices);
                let d = distill
                    .loss(&step)
                    .map_err(|e| e.in_method(self.method.name))?;
                let terms = vec![
                    ("ce", (ce * cfg.ce_weight)?),
                    (self.method.name, (d * cfg.distill_weight)?),
                ];
                ((&terms[0].1 + &terms[1].1)?, terms)
            }
            _ => (ce.clone(), vec![("ce", ce)]),
        };
        let values: Vec<(String, f64)> = terms
            .iter()
            .map(|(n, t)| Ok((n.to_string(), t.to_dtype(DType::F64)?.to_scalar::<f64>()?)))
            .collect::<Result<_>>()?;
        let loss: f64 = values.iter().map(|(_, v)| v).sum();
        let where_ = || format!("epoch {}, batch {}", epoch + 1, b + 1);
        if !loss.is_finite() {
            let parts: Vec<String> = values.iter().map(|(n, v)| format!("{n} = {v}")).collect();
            return Err(Error::Numerical(format!(
                "the loss became {loss} at {} ({}). The step was not applied and no weights were written from it. A lower learning rate (now {}) may help; so may checking the inputs for NaN or extreme values",
                where_(),
                parts.join(", "),
                self.optimizer.lr()
            )));
        }
        let grads = total.backward()?;
        if let Some(name) = kd_core::optim::non_finite_gradient(&self.vars, &grads)? {
            return Err(Error::Numerical(format!(
                "the gradient of `{name}` became NaN or infinite at {} (loss {loss}). The step was not applied. A lower learning rate (now {}) may help; so may checking the inputs",
                where_(),
                self.optimizer.lr()
            )));
        }
        self.optimizer.step(&grads)?;
        Ok((loss, values))
    }

    /// Writes a checkpoint of the current state (if there is a policy), keeps
    /// the last few, and writes the student as the model file
    /// `best.safetensors` when `accuracy` is a new best.
    fn write_checkpoint(&mut self, accuracy: Option<f64>) -> Result<Option<PathBuf>> {
        let Some(policy) = self.checkpoints.clone() else {
            return Ok(None);
        };
        let is_best = accuracy.is_some_and(|a| self.state.best_accuracy.is_none_or(|b| a > b));
        if is_best {
            self.state.best_accuracy = accuracy;
        }
        self.state.optimizer_steps = self.optimizer.steps_taken();
        let mut tensors: Vec<(String, Tensor)> = sorted_tensors(self.student.varmap())
            .into_iter()
            .map(|(n, t)| (format!("student.{n}"), t))
            .collect();
        tensors.extend(
            sorted_tensors(&self.adapters)
                .into_iter()
                .map(|(n, t)| (format!("adapter.{n}"), t)),
        );
        tensors.extend(self.optimizer.state());
        let path = crate::checkpoint::write(&policy, &self.state, &tensors)?;
        if let (true, Some(info)) = (is_best, &policy.best_model) {
            let info = kd_core::weights::ModelInfo {
                accuracy,
                ..info.clone()
            };
            kd_core::weights::save_model(
                &policy.dir.join(crate::checkpoint::BEST),
                &sorted_tensors(self.student.varmap()),
                &sorted_tensors(&self.adapters),
                &info,
            )?;
        }
        Ok(Some(path))
    }

    /// Continues from a checkpoint written by a run with the same settings.
    pub fn restore(&mut self, checkpoint: &crate::checkpoint::Checkpoint) -> Result<()> {
        let file = &checkpoint.file;
        checkpoint.check_epochs(self.config.epochs)?;
        for (prefix, varmap) in [
            ("student.", self.student.varmap()),
            ("adapter.", &self.adapters),
        ] {
            for (name, var) in varmap.data().lock().unwrap().iter() {
                let key = format!("{prefix}{name}");
                let t = file.tensors.get(&key).ok_or_else(|| {
                    Error::bad_file(
                        &file.path,
                        format!("checkpoint lacks `{key}`: it belongs to another run"),
                    )
                })?;
                if t.dims() != var.dims() {
                    return Err(Error::bad_file(
                        &file.path,
                        format!(
                            "checkpoint `{key}` has shape {:?}, the run {:?}",
                            t.dims(),
                            var.dims()
                        ),
                    ));
                }
                var.set(&t.to_device(var.device())?)?;
            }
        }
        self.optimizer
            .load_state(&file.tensors, checkpoint.state.optimizer_steps)?;
        self.state = checkpoint.state.clone();
        Ok(())
    }

    /// The test of the run's last epoch, if that epoch was tested in this
    /// process: what [`evaluate`](Self::evaluate) would compute again.
    pub fn take_final_evaluation(&mut self) -> Option<Evaluation> {
        let finished = self.state.epochs_done == self.config.epochs;
        self.last_evaluation.take().filter(|_| finished)
    }

    /// Evaluates the student on `data`.
    pub fn evaluate(&self, data: &Dataset) -> Result<Evaluation> {
        evaluate(self.student, data, crate::eval::EVAL_BATCH, &self.device)
    }
}

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().unwrap();
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
