//! Learning-rate schedules, stepped once per epoch as PyTorch's
//! `MultiStepLR` and `CosineAnnealingLR` are, and a linear warm-up that can
//! sit in front of any of them. Each is a function of the epoch, so a resumed
//! run needs no schedule state.
use super::{LrSchedule, SchedulePlugin, ScheduleSettings};
use crate::{Error, Result};

/// The base learning rate throughout.
pub struct Constant(pub f64);

impl LrSchedule for Constant {
    fn lr(&self, _epoch: usize, _step: usize) -> f64 {
        self.0
    }
}

/// `MultiStepLR(milestones, gamma)`: the rate times gamma at each milestone
/// epoch passed.
pub struct MultiStep {
    pub base_lr: f64,
    pub milestones: Vec<usize>,
    pub gamma: f64,
}

impl LrSchedule for MultiStep {
    fn lr(&self, epoch: usize, _step: usize) -> f64 {
        let passed = self.milestones.iter().filter(|m| epoch >= **m).count();
        self.base_lr * self.gamma.powi(passed as i32)
    }
}

/// `CosineAnnealingLR(T_max = epochs, eta_min = min_lr)`, in its closed form.
pub struct Cosine {
    pub base_lr: f64,
    pub min_lr: f64,
    pub epochs: usize,
}

impl LrSchedule for Cosine {
    fn lr(&self, epoch: usize, _step: usize) -> f64 {
        let t = epoch.min(self.epochs) as f64 / self.epochs.max(1) as f64;
        self.min_lr + (self.base_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * t).cos()) / 2.0
    }
}

/// The first `epochs` epochs rise linearly to the base rate (epoch e gets
/// (e + 1) / epochs of it, PyTorch's `LinearLR(start_factor = 1 / epochs,
/// total_iters = epochs - 1)`); then `after` takes over, counting from 0.
pub struct Warmup {
    pub epochs: usize,
    pub base_lr: f64,
    pub after: Box<dyn LrSchedule>,
}

impl LrSchedule for Warmup {
    fn lr(&self, epoch: usize, step: usize) -> f64 {
        if epoch < self.epochs {
            self.base_lr * (epoch + 1) as f64 / self.epochs as f64
        } else {
            self.after.lr(epoch - self.epochs, step)
        }
    }
}

fn check_milestones(s: &ScheduleSettings) -> Result<()> {
    if s.milestones.is_empty() {
        return Err(Error::config(
            "the multistep schedule needs --milestones, e.g. --milestones 150,180,210",
        ));
    }
    if s.milestones.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::config(format!(
            "--milestones {:?} must increase: give each epoch once, in order",
            s.milestones
        )));
    }
    if !(s.gamma > 0.0 && s.gamma <= 1.0) {
        return Err(Error::config(format!(
            "--gamma {} is out of range: the rate is multiplied by it at each milestone; use a number above 0, at most 1 (0.1 is usual)",
            s.gamma
        )));
    }
    Ok(())
}

inventory::submit! {
    SchedulePlugin {
        name: "constant",
        summary: "the same learning rate every epoch (the tutorial's)",
        build: |s| Ok(Box::new(Constant(s.base_lr))),
    }
}

inventory::submit! {
    SchedulePlugin {
        name: "multistep",
        summary: "the rate times --gamma at each of --milestones (PyTorch's MultiStepLR)",
        build: |s| {
            check_milestones(s)?;
            Ok(Box::new(MultiStep { base_lr: s.base_lr, milestones: s.milestones.clone(), gamma: s.gamma }))
        },
    }
}

inventory::submit! {
    SchedulePlugin {
        name: "cosine",
        summary: "half a cosine from the rate down to --min-lr over the epochs (PyTorch's CosineAnnealingLR)",
        build: |s| {
            if !(s.min_lr >= 0.0 && s.min_lr < s.base_lr) {
                return Err(Error::config(format!(
                    "--min-lr {} must be at least 0 and below the learning rate {}", s.min_lr, s.base_lr
                )));
            }
            Ok(Box::new(Cosine { base_lr: s.base_lr, min_lr: s.min_lr, epochs: s.epochs }))
        },
    }
}
