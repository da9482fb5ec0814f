//! Progress for people (bars on a terminal, log lines elsewhere) and for
//! machines (one JSON object per epoch).
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kd_train::train::{BatchUpdate, EpochSummary, Observer};
use serde_json::json;

pub struct Progress {
    phase: String,
    quiet: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    images: usize,
    metrics: Option<File>,
    /// Every epoch seen, for reports and plots.
    pub epochs: Vec<EpochSummary>,
}

impl Progress {
    pub fn new(phase: &str, quiet: bool, metrics: Option<&Path>) -> Result<Self> {
        let metrics = match metrics {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .with_context(|| format!("cannot open metrics file {}", p.display()))?,
            ),
            None => None,
        };
        Ok(Self {
            phase: phase.to_string(),
            quiet,
            bar: None,
            started: Instant::now(),
            images: 0,
            metrics,
            epochs: Vec::new(),
        })
    }
}

impl Observer for Progress {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        self.started = Instant::now();
        self.images = 0;
        if self.quiet || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(batches as u64), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} {bar:30.cyan/blue} {pos}/{len} batches  {msg}  ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} e{epoch}", self.phase));
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, u: &BatchUpdate) {
        self.images += u.images;
        if let Some(bar) = &self.bar {
            let rate = self.images as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {:.4}  {rate:.0} img/s", u.loss));
            bar.inc(1);
        }
    }

    fn epoch_done(&mut self, s: &EpochSummary) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if !self.quiet {
            let parts: Vec<String> = s.parts.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            let acc = s
                .test_accuracy
                .map(|a| format!(", test accuracy {a:.2}%"))
                .unwrap_or_default();
            eprintln!(
                "{} epoch {}/{}: loss {:.4} ({}){acc}, {:.0} images/s, {:.1} s",
                self.phase,
                s.epoch,
                s.epochs,
                s.loss,
                parts.join(", "),
                s.images_per_sec,
                s.seconds
            );
        }
        if let Some(f) = &mut self.metrics {
            let line = json!({
                "phase": self.phase,
                "epoch": s.epoch,
                "loss": s.loss,
                "parts": s.parts,
                "test_accuracy": s.test_accuracy,
                "lr": s.lr,
                "images_per_sec": s.images_per_sec,
                "seconds": s.seconds,
            });
            // A metrics line that cannot be written must not kill hours of training.
            if let Err(e) = writeln!(f, "{line}") {
                tracing::warn!("cannot write metrics: {e}");
            }
        }
        self.epochs.push(s.clone());
    }
}
