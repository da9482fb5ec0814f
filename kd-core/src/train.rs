//! The one training loop every method shares.
//!
//! total loss = ce_weight x cross-entropy + distill_weight x method loss; a run
//! whose method has no distillation term is plain supervised training (that is
//! how a teacher is trained). The teacher runs in eval mode without gradients;
//! the student and the method's trainable helpers are updated by Adam.
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::eval::{evaluate, Evaluation};
use crate::loss::{cross_entropy, resolve_params, DistillLoss, MethodContext, Params};
use crate::model::{sorted_tensors, Mode, Student, Teacher};
use crate::optim::Adam;
use crate::registry::MethodPlugin;
use crate::{Error, Result};

/// The settings of one run, with the tutorial's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub ce_weight: f64,
    pub distill_weight: f64,
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
    method_name: &'static str,
    distill: Option<Box<dyn DistillLoss>>,
    adapters: VarMap,
    optimizer: Adam,
    config: TrainConfig,
    device: Device,
    /// Epochs finished so far.
    pub epochs_done: usize,
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
        config.validate()?;
        let params = resolve_params(method.params, params, method.name)?;
        if method.needs_teacher && teacher.is_none() {
            return Err(Error::config(format!(
                "method `{}` distils from a teacher: pass --teacher FILE (a model trained with `kd train --arch ...`)",
                method.name
            )));
        }
        let probe = train.batch(&(0..train.len().min(2)).collect::<Vec<_>>(), device)?;
        let student_out = student.forward_t(&probe.images, Mode::Eval)?;
        let teacher_out = match teacher {
            Some(t) if method.needs_teacher => t.outputs(&probe)?,
            _ => student_out.clone(),
        };
        let adapters = VarMap::new();
        let ctx = MethodContext {
            params: &params,
            vb: VarBuilder::from_varmap(&adapters, DType::F32, device),
            student: &student_out,
            teacher: &teacher_out,
        };
        let distill = (method.build)(&ctx)?;
        crate::init::pytorch_default(&adapters, config.seed)?;
        let mut vars: Vec<(String, Var)> = named_vars(student.varmap());
        vars.extend(
            named_vars(&adapters)
                .into_iter()
                .map(|(n, v)| (format!("adapter.{n}"), v)),
        );
        let optimizer = Adam::new(vars, config.lr)?;
        Ok(Self {
            student,
            teacher: if method.needs_teacher { teacher } else { None },
            method_name: method.name,
            distill,
            adapters,
            optimizer,
            config,
            device: device.clone(),
            epochs_done: 0,
        })
    }

    /// Trainable helpers the method created (empty for most methods).
    pub fn adapters(&self) -> &VarMap {
        &self.adapters
    }

    pub fn optimizer(&mut self) -> &mut Adam {
        &mut self.optimizer
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Trains the remaining epochs, evaluating on `test` after each when given.
    pub fn fit(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        observer: &mut dyn Observer,
    ) -> Result<Vec<EpochSummary>> {
        let mut summaries = Vec::new();
        while self.epochs_done < self.config.epochs {
            summaries.push(self.train_epoch(train, test, observer)?);
        }
        Ok(summaries)
    }

    /// One pass over `train` in this epoch's seeded order.
    pub fn train_epoch(
        &mut self,
        train: &Dataset,
        test: Option<&Dataset>,
        observer: &mut dyn Observer,
    ) -> Result<EpochSummary> {
        let epoch = self.epochs_done;
        let cfg = self.config.clone();
        let batches = train.batch_indices(cfg.batch_size, Some((cfg.seed, epoch)));
        observer.epoch_started(epoch + 1, batches.len());
        let start = Instant::now();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut total_sum = 0.0;
        for (b, indices) in batches.iter().enumerate() {
            let batch = train.batch(indices, &self.device)?;
            let seed = crate::init::rng_for(cfg.seed, &format!("step/{epoch}/{b}")).gen();
            let out = self
                .student
                .forward_t(&batch.images, Mode::Train { seed })?;
            let ce = cross_entropy(&out.logits, &batch.labels)?;
            let mut terms = vec![("ce", ce.clone())];
            let total = match (&self.distill, self.teacher) {
                (Some(distill), Some(teacher)) => {
                    let t_out = teacher.outputs(&batch)?;
                    let d = distill.loss(&out, &t_out)?;
                    terms = vec![
                        ("ce", (ce * cfg.ce_weight)?),
                        (self.method_name, (d * cfg.distill_weight)?),
                    ];
                    (&terms[0].1 + &terms[1].1)?
                }
                _ => ce,
            };
            let loss = total.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !loss.is_finite() {
                let parts: Vec<String> = terms
                    .iter()
                    .map(|(n, t)| {
                        format!(
                            "{n} = {}",
                            t.to_dtype(DType::F64)
                                .and_then(|t| t.to_scalar::<f64>())
                                .map(|v| v.to_string())
                                .unwrap_or_else(|_| "?".into())
                        )
                    })
                    .collect();
                return Err(Error::Numerical(format!(
                    "the loss became {loss} at epoch {}, batch {} ({}). No weights were written from this step. Lower --lr (now {}), or check the inputs for NaN or extreme values.",
                    epoch + 1,
                    b + 1,
                    parts.join(", "),
                    cfg.lr
                )));
            }
            let grads = total.backward()?;
            self.optimizer.step(&grads)?;
            total_sum += loss;
            for (n, t) in &terms {
                *sums.entry(n.to_string()).or_default() +=
                    t.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            }
            observer.batch_done(&BatchUpdate {
                epoch: epoch + 1,
                batch: b + 1,
                batches: batches.len(),
                images: indices.len(),
                loss,
            });
        }
        let seconds = start.elapsed().as_secs_f64();
        let n = batches.len().max(1) as f64;
        let test_accuracy = match test {
            Some(t) => {
                Some(evaluate(self.student, t, crate::eval::EVAL_BATCH, &self.device)?.accuracy)
            }
            None => None,
        };
        self.epochs_done += 1;
        let summary = EpochSummary {
            epoch: epoch + 1,
            epochs: cfg.epochs,
            loss: total_sum / n,
            parts: sums.into_iter().map(|(k, v)| (k, v / n)).collect(),
            test_accuracy,
            images_per_sec: train.len() as f64 / seconds.max(1e-9),
            seconds,
        };
        observer.epoch_done(&summary);
        Ok(summary)
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

/// A varmap's tensors by name (student or adapters), for saving.
pub fn varmap_tensors(varmap: &VarMap) -> Vec<(String, candle_core::Tensor)> {
    sorted_tensors(varmap)
}
