//! What a command reads and writes, checked before any data is loaded: a
//! run that would fail at its end because of an output path fails at once,
//! and nothing the user already had is lost.
//!
//! The rules, for every output: it is a regular file or does not exist yet
//! (never a folder, FIFO or device); its folder exists and is writable; it
//! is none of the command's inputs and no other of its outputs; and an
//! existing file is replaced only with `--overwrite` (or when a resumed run
//! rewrites its own outputs). The model is Hugging Face's Trainer, which
//! refuses a non-empty output folder unless told `overwrite_output_dir`.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::weights::file_kind as kind;

/// The files of one command: add its inputs and outputs, then [`check`](Self::check).
#[derive(Default)]
pub struct Files {
    overwrite: bool,
    inputs: Vec<(String, PathBuf)>,
    outputs: Vec<(String, PathBuf, bool)>,
    /// Folders whose files kd keeps itself (a run folder's checkpoints, its
    /// best model, its lock): no output the user names may lie inside.
    kept: Vec<(String, PathBuf)>,
}

impl Files {
    /// `overwrite`: the user passed `--overwrite`.
    pub fn new(overwrite: bool) -> Self {
        Self {
            overwrite,
            ..Self::default()
        }
    }

    /// A file or folder the command reads; `what` names it in messages (a flag).
    pub fn input(&mut self, what: impl Into<String>, path: &Path) -> &mut Self {
        self.inputs.push((what.into(), path.to_path_buf()));
        self
    }

    /// A file the command writes.
    pub fn output(&mut self, what: impl Into<String>, path: &Path) -> &mut Self {
        self.outputs.push((what.into(), path.to_path_buf(), false));
        self
    }

    /// A folder kd fills with files of its own (see `kept`).
    pub fn kept_folder(&mut self, what: impl Into<String>, dir: &Path) -> &mut Self {
        self.kept.push((what.into(), dir.to_path_buf()));
        self
    }

    /// A file a resumed run wrote itself and may write again.
    pub fn own_output(&mut self, what: impl Into<String>, path: &Path) -> &mut Self {
        self.outputs.push((what.into(), path.to_path_buf(), true));
        self
    }

    /// Applies every rule above, failing on the first broken one with the
    /// paths involved and what to do.
    pub fn check(&self) -> Result<()> {
        for (what, path) in &self.inputs {
            if let Ok(meta) = std::fs::metadata(path) {
                if !meta.is_file() && !meta.is_dir() {
                    bail!(
                        "{what} {} is {}, not a file: kd reads only regular files (a FIFO would block, a device never ends)",
                        path.display(),
                        kind(&meta)
                    );
                }
            }
        }
        for (i, (what, path, own)) in self.outputs.iter().enumerate() {
            if let Ok(meta) = std::fs::metadata(path) {
                if !meta.is_file() {
                    bail!(
                        "{what} {} is {}, not a file: name a file to write",
                        path.display(),
                        kind(&meta)
                    );
                }
            }
            check_writable(path)?;
            let id = identity(path);
            for (folder_what, dir) in &self.kept {
                if id
                    .as_ref()
                    .zip(identity(dir))
                    .is_some_and(|(p, d)| p.starts_with(d))
                {
                    bail!(
                        "{what} {} is inside the {folder_what} {}, whose files kd keeps itself (checkpoints, best.safetensors, its lock): choose a path outside it",
                        path.display(),
                        dir.display()
                    );
                }
            }
            let same =
                |other: &Path| (id.is_some() && identity(other) == id) || same_inode(path, other);
            for (in_what, input) in &self.inputs {
                if same(input) {
                    bail!(
                        "{what} {} is also the {in_what} {}: kd would overwrite what it reads. Choose another path for {what}",
                        path.display(),
                        input.display()
                    );
                }
            }
            for (other_what, other, _) in &self.outputs[..i] {
                if same(other) {
                    bail!(
                        "{other_what} {} and {what} {} are the same file: the second would replace the first. Choose another path",
                        other.display(),
                        path.display()
                    );
                }
            }
            // A dangling symbolic link counts as a file: replacing it loses it.
            let exists = std::fs::symlink_metadata(path).is_ok();
            if exists && !own && !self.overwrite {
                bail!(
                    "{what} {} already exists, and kd replaces no file unless asked: pass --overwrite to replace it, or choose another path",
                    path.display()
                );
            }
        }
        Ok(())
    }
}

/// Fails early, before hours of training, when `path` cannot be written:
/// its folder must exist and accept a new file.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = folder_of(path);
    if !dir.is_dir() {
        bail!(
            "cannot write {}: the folder {} does not exist. Create it (mkdir -p {}) or choose another path.",
            path.display(),
            dir.display(),
            dir.display()
        );
    }
    tempfile::NamedTempFile::new_in(&dir).with_context(|| {
        format!(
            "cannot write {}: the folder {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    Ok(())
}

/// Checks a folder a command fills (a run folder): not a file, and, unless
/// `overwrite`, empty (but for its lock file). Returns whether it holds
/// files that `--overwrite` will replace.
pub fn check_folder(what: &str, dir: &Path, overwrite: bool) -> Result<bool> {
    match std::fs::metadata(dir) {
        Err(_) => return Ok(false),
        Ok(m) if !m.is_dir() => bail!(
            "{what} {} is {}, not a folder: name a folder (it is created if missing)",
            dir.display(),
            kind(&m)
        ),
        Ok(_) => {}
    }
    let entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {what} {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != kd_train::checkpoint::LOCK)
        .collect();
    if entries.is_empty() {
        return Ok(false);
    }
    if !overwrite {
        let shown: Vec<String> = entries
            .iter()
            .take(3)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        bail!(
            "{what} {} is not empty (it holds {}{}): pass --overwrite to replace kd's files in it, or choose another folder",
            dir.display(),
            shown.join(", "),
            if entries.len() > 3 { ", ..." } else { "" }
        );
    }
    Ok(true)
}

/// `root/part/...`, created one folder at a time, where `root` is a folder
/// the user named and the parts are kd's own (`seed-42`, `checkpoints`): a
/// symbolic link among them would make a resumed run write, rotate and clear
/// checkpoints outside the folder it was given, so it is refused.
pub fn own_folder(root: &Path, parts: &[&str]) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in parts {
        dir.push(part);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_symlink() => bail!(
                "{} is a symbolic link: the folders inside {} are kd's own, and through a link \
                 kd would write outside it. Replace the link by a plain folder, or start a new run folder",
                dir.display(),
                root.display()
            ),
            Ok(m) if !m.is_dir() => bail!(
                "{} is {}, not a folder: kd keeps its files there; move it away",
                dir.display(),
                kind(&m)
            ),
            Ok(_) => {}
            Err(_) => std::fs::create_dir(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?,
        }
    }
    Ok(dir)
}

fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A path as the file system resolves it: symbolic links, `.` and `..`
/// followed, for an existing file or, for a new one, its folder.
fn identity(path: &Path) -> Option<PathBuf> {
    if let Ok(p) = path.canonicalize() {
        return Some(p);
    }
    let name = path.file_name()?;
    Some(folder_of(path).canonicalize().ok()?.join(name))
}

/// Two names of one existing file (a hard link).
fn same_inode(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    let _ = (a, b);
    false
}
