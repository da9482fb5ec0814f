//! Checkpoints: a run's weights, trainable helpers, Adam moments and position,
//! in one safetensors file written atomically. A crash at any instant leaves
//! the previous checkpoint or the new one, never a torn one.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::train::{CheckpointPolicy, RunState};
use crate::weights::{self, WeightsFile};
use crate::{Error, Result};

/// The copy of the checkpoint with the best test accuracy so far.
pub const BEST: &str = "best.safetensors";
const PREFIX: &str = "checkpoint-";

pub struct Checkpoint {
    pub file: WeightsFile,
    pub state: RunState,
    /// The run's resolved settings (TOML), as given to the policy.
    pub run_config: String,
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
    meta.insert("kd.version".to_string(), crate::VERSION.to_string());
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

pub fn read(path: &Path) -> Result<Checkpoint> {
    let file = weights::read(path)?;
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
    Ok(Checkpoint {
        file,
        state,
        run_config,
    })
}
