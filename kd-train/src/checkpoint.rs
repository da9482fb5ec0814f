//! Checkpoints: a run's weights, trainable helpers, optimizer state and position,
//! in one safetensors file written atomically. A crash at any instant leaves
//! the previous checkpoint or the new one, never a torn one.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use serde::{Deserialize, Serialize};

use kd_core::weights::{self, WeightsFile};
use kd_core::{Error, Result};

/// The model file of the student with the best test accuracy so far (a
/// model, not a checkpoint: `kd eval`, `kd predict` and PyTorch load it).
pub const BEST: &str = "best.safetensors";
const PREFIX: &str = "checkpoint-";
/// The lock file that keeps a second run out of a run folder.
pub const LOCK: &str = ".kd-lock";

/// A run folder held by this process: while it lives, another [`RunLock::acquire`]
/// of the same folder fails naming this process. The operating system drops
/// the lock when the process ends, however it ends, so a crash leaves no
/// stale lock behind.
pub struct RunLock {
    _file: std::fs::File,
    /// The folders this lock created (the run folder and any missing parents,
    /// innermost first): a run that fails before writing anything leaves no
    /// empty folder behind.
    created: Vec<PathBuf>,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let Some(dir) = self.created.first() else {
            return;
        };
        let only_lock = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .all(|e| e.file_name() == LOCK)
            })
            .unwrap_or(false);
        if only_lock {
            let _ = std::fs::remove_file(dir.join(LOCK));
            // `remove_dir` removes only empty folders: a parent that holds
            // anything else stays.
            for d in &self.created {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
}

impl RunLock {
    /// Creates `dir` if needed and locks it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        use std::io::{Read, Seek, Write};
        let created: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let path = dir.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Busy(format!(
                    "{} is in use by another kd run (process {}): wait for it to finish, or choose another run folder",
                    dir.display(),
                    holder.trim()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| write!(file, "{}", std::process::id()));
        Ok(Self {
            _file: file,
            created,
        })
    }
}

/// Where a run stands: with the weights and the optimizer's moments, enough
/// to continue it exactly. The data order and dropout masks of a step depend
/// only on (seed, epoch, batch), so the position is all their state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub epochs_done: usize,
    /// Batches finished in the epoch in progress.
    pub batches_done: usize,
    /// Running sums of the epoch in progress, so a resumed epoch reports the same means.
    pub loss_sum: f64,
    pub term_sums: BTreeMap<String, f64>,
    pub seconds: f64,
    pub best_accuracy: Option<f64>,
    #[serde(alias = "adam_steps")]
    pub optimizer_steps: u64,
}

/// Where and how often to write checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    pub dir: PathBuf,
    /// Also write one every N batches (besides every epoch's end).
    pub every_batches: Option<usize>,
    /// How many recent checkpoints to keep (the best by test accuracy is kept apart).
    pub keep_last: usize,
    /// Stored in each checkpoint, so a resume knows the run's settings.
    pub run_config: String,
    /// What the model file `best.safetensors` records (test accuracy added):
    /// with it, the best student so far is kept as a model file that
    /// `kd eval`, `kd predict`, `--teacher` and PyTorch load; without, no
    /// best file is written.
    pub best_model: Option<kd_core::weights::ModelInfo>,
    /// The teacher's [`fingerprint`](kd_core::Model::fingerprint), stored so a
    /// resume can refuse a different teacher.
    pub teacher_hash: Option<String>,
}

pub struct Checkpoint {
    pub file: WeightsFile,
    pub state: RunState,
    /// The run's resolved settings (TOML), as given to the policy.
    pub run_config: String,
    /// [`Model::fingerprint`](kd_core::Model::fingerprint) of the teacher the run
    /// started with, if it had one.
    pub teacher_hash: Option<String>,
}

impl Checkpoint {
    /// Refuses a run of `epochs` epochs from this checkpoint when it has
    /// trained more: the model would record fewer epochs than made it.
    pub fn check_epochs(&self, epochs: usize) -> Result<()> {
        let done = self.state.epochs_done;
        if done > epochs {
            return Err(Error::Config(format!(
                "{} has trained {done} epochs, more than the {epochs} asked for: a resumed run cannot train fewer epochs than it has. Pass --epochs {done} (or more), or start a new run",
                self.file.path.display()
            )));
        }
        Ok(())
    }
}

fn name(state: &RunState) -> String {
    format!(
        "{PREFIX}e{:04}-b{:06}.safetensors",
        state.epochs_done, state.batches_done
    )
}

/// Writes a checkpoint into `policy.dir` and removes all but the last `keep_last`.
pub fn write(
    policy: &CheckpointPolicy,
    state: &RunState,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf> {
    std::fs::create_dir_all(&policy.dir).map_err(|e| Error::io("create", &policy.dir, e))?;
    let mut meta = HashMap::new();
    meta.insert(
        "kd.checkpoint".to_string(),
        serde_json::to_string(state).expect("plain data"),
    );
    meta.insert("kd.run_config".to_string(), policy.run_config.clone());
    if let Some(h) = &policy.teacher_hash {
        meta.insert("kd.teacher_sha256".to_string(), h.clone());
    }
    meta.insert("kd.version".to_string(), kd_core::VERSION.to_string());
    let path = policy.dir.join(name(state));
    weights::save(&path, tensors, meta)?;
    let mut all = list(&policy.dir)?;
    while all.len() > policy.keep_last.max(1) {
        let old = all.remove(0);
        if old != path {
            let _ = std::fs::remove_file(&old);
        }
    }
    Ok(path)
}

/// Removes an earlier run's checkpoints and best model from `dir` (for a
/// fresh run asked to `--overwrite` them); other files are left alone.
pub fn clear(dir: &Path) -> Result<()> {
    let best = dir.join(BEST);
    let mut old = list(dir)?;
    old.extend([kd_core::weights::adapters_path(&best), best]);
    for path in old {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove", &path, e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checkpoint files in `dir`, oldest first (their names sort by position).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    let mut v: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(".safetensors"))
        })
        .collect();
    v.sort();
    Ok(v)
}

/// The newest readable checkpoint in `dir`. A damaged newest file (which an
/// atomic write should never leave) falls back to the one before it.
pub fn latest(dir: &Path) -> Result<Option<Checkpoint>> {
    for path in list(dir)?.into_iter().rev() {
        match read(&path) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => tracing::warn!("skipping checkpoint {}: {e}", path.display()),
        }
    }
    Ok(None)
}

/// Reads a checkpoint; one with NaN or infinite values is refused, naming the tensor.
pub fn read(path: &Path) -> Result<Checkpoint> {
    let file = weights::read(path)?;
    file.check_finite()?;
    let state = file
        .metadata
        .get("kd.checkpoint")
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| {
            Error::bad_file(path, "not a kd checkpoint (no `kd.checkpoint` metadata)")
        })?;
    let run_config = file
        .metadata
        .get("kd.run_config")
        .cloned()
        .unwrap_or_default();
    let teacher_hash = file.metadata.get("kd.teacher_sha256").cloned();
    Ok(Checkpoint {
        file,
        state,
        run_config,
        teacher_hash,
    })
}
