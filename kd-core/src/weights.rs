//! Safetensors in and out, with PyTorch `state_dict` names and kd's metadata.
//!
//! Files kd writes load in PyTorch with `safetensors.torch.load_file` +
//! `load_state_dict(strict=True)`; the `__metadata__` header carries
//! `format: pt` and what kd needs to use the file again without flags.
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::loss::Params;
use crate::model::Model;
use crate::network::{ArchConfig, Student as _};
use crate::{Error, Result};

/// What kd records about a model, stored as `kd.*` metadata entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub arch: Option<String>,
    pub config: Option<ArchConfig>,
    pub method: Option<String>,
    pub params: Params,
    pub dataset: Option<String>,
    pub classes: Option<Vec<String>>,
    pub normalization: Option<Normalization>,
    /// Test accuracy in percent, as measured at the end of training.
    pub accuracy: Option<f64>,
    /// Wall-clock seconds the training took.
    pub seconds: Option<f64>,
    /// The resolved run configuration (TOML text), when trained by kd.
    pub run_config: Option<String>,
}

impl ModelInfo {
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("format".into(), "pt".into());
        m.insert("kd.version".into(), crate::VERSION.into());
        if let Some(a) = &self.arch {
            m.insert("kd.arch".into(), a.clone());
        }
        if let Some(c) = &self.config {
            m.insert("kd.arch_config".into(), json(c));
        }
        if let Some(x) = &self.method {
            m.insert("kd.method".into(), x.clone());
        }
        if !self.params.is_empty() {
            m.insert("kd.params".into(), json(&self.params));
        }
        if let Some(x) = &self.dataset {
            m.insert("kd.dataset".into(), x.clone());
        }
        if let Some(x) = &self.classes {
            m.insert("kd.classes".into(), json(x));
        }
        if let Some(x) = &self.normalization {
            m.insert("kd.normalization".into(), json(x));
        }
        if let Some(x) = self.accuracy {
            m.insert("kd.accuracy".into(), format!("{x:.2}"));
        }
        if let Some(x) = self.seconds {
            m.insert("kd.seconds".into(), format!("{x:.3}"));
        }
        if let Some(x) = &self.run_config {
            m.insert("kd.run_config".into(), x.clone());
        }
        m
    }

    /// Reads the `kd.*` entries; files from elsewhere simply have none.
    pub fn from_metadata(path: &Path, m: &BTreeMap<String, String>) -> Result<Self> {
        fn parse<T: serde::de::DeserializeOwned>(
            path: &Path,
            m: &BTreeMap<String, String>,
            key: &str,
        ) -> Result<Option<T>> {
            m.get(key)
                .map(|s| {
                    serde_json::from_str(s).map_err(|e| {
                        Error::bad_file(path, format!("metadata `{key}` is not valid ({e}): the file was edited or damaged"))
                    })
                })
                .transpose()
        }
        let info = Self {
            arch: m.get("kd.arch").cloned(),
            config: parse(path, m, "kd.arch_config")?,
            method: m.get("kd.method").cloned(),
            params: parse(path, m, "kd.params")?.unwrap_or_default(),
            dataset: m.get("kd.dataset").cloned(),
            classes: parse(path, m, "kd.classes")?,
            normalization: parse(path, m, "kd.normalization")?,
            accuracy: m.get("kd.accuracy").and_then(|s| s.parse().ok()),
            seconds: m.get("kd.seconds").and_then(|s| s.parse().ok()),
            run_config: m.get("kd.run_config").cloned(),
        };
        info.check(path)?;
        Ok(info)
    }

    /// Metadata is input too: a normalisation that would turn every image
    /// into NaN or noise, or that does not fit the network's channels, is
    /// refused like a bad flag.
    fn check(&self, path: &Path) -> Result<()> {
        let (Some(n), channels) = (&self.normalization, self.config.as_ref()) else {
            return Ok(());
        };
        let bad = |why: String| {
            Err(Error::bad_file(
                path,
                format!("metadata `kd.normalization` {why}: the file was edited or damaged. Fix or remove that entry"),
            ))
        };
        if n.std
            .iter()
            .any(|s| !(s.is_finite() && *s > 0.0 && *s <= 1e3))
        {
            return bad(format!(
                "has a std of {:?} (each must be above 0 and at most 1000)",
                n.std
            ));
        }
        if n.mean.iter().any(|m| !(m.is_finite() && m.abs() <= 1e3)) {
            return bad(format!(
                "has a mean of {:?} (each must be finite, at most 1000 in size)",
                n.mean
            ));
        }
        let c = channels.map(|c| c.input_shape[0]);
        for (what, len) in [("mean", n.mean.len()), ("std", n.std.len())] {
            if len == 0 || c.is_some_and(|c| len != 1 && len != c) {
                return bad(format!(
                    "has {len} {what} value(s) for a network of {} input channel(s)",
                    c.map_or("?".into(), |c| c.to_string())
                ));
            }
        }
        Ok(())
    }
}

fn json<T: Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("plain data serialises")
}

/// A safetensors file read whole: tensors (on the CPU, as stored) and metadata.
pub struct WeightsFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

/// Reads and validates a model file: safetensors, or PyTorch's zip
/// `torch.save` format (see [`read_pth`]). A truncated or corrupt file, or one
/// with dtypes kd cannot read, is an error naming the file and the problem.
pub fn read(path: &Path) -> Result<WeightsFile> {
    read_under(path, None)
}

/// [`read`], taking a `torch.save` file's state_dict from the entry `key`
/// when one is given (a checkpoint that keeps it under another name).
pub fn read_under(path: &Path, key: Option<&str>) -> Result<WeightsFile> {
    regular_file(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    if bytes.starts_with(b"PK\x03\x04") {
        return read_pth(path, key);
    }
    if let Some(key) = key {
        return Err(Error::bad_file(
            path,
            format!("a safetensors file holds one state_dict, with no entries to choose from: leave out the key `{key}` (it is for torch.save checkpoints)"),
        ));
    }
    parse(path, &bytes)
}

/// Checks that `path` is a regular file before it is read (symlinks
/// followed): a FIFO would block and `/dev/zero` never ends. Returns its size.
pub fn regular_file(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?;
    if !meta.is_file() {
        return Err(Error::bad_file(
            path,
            format!(
                "it is {}, not a file: kd reads only regular files (a FIFO would block, a device never ends)",
                file_kind(&meta)
            ),
        ));
    }
    Ok(meta.len())
}

/// What a path is, for messages: "a file", "a folder", "a FIFO", "a device", ...
pub fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else if meta.is_file() {
        "a file"
    } else {
        "not a regular file"
    }
}

/// Reads the state_dict of a `torch.save` file (the zip format, PyTorch's
/// default since 1.6): the one under `key` when given, else a bare one or one
/// under `"model"` (mdistiller's checkpoints) or `"state_dict"`, the first
/// that holds tensors. Candle's
/// pickle reader interprets the pickle without running any of it; entries
/// that are not tensors (an epoch, an optimizer's settings) are left out.
pub fn read_pth(path: &Path, key: Option<&str>) -> Result<WeightsFile> {
    let mut tensors = BTreeMap::new();
    let keys = match key {
        Some(k) => vec![Some(k)],
        None => vec![Some("model"), Some("state_dict"), None],
    };
    for key in keys {
        let Ok(pth) = candle_core::pickle::PthTensors::new(path, key) else {
            continue;
        };
        for name in pth.tensor_infos().keys() {
            let t = pth.get(name).map_err(|e| {
                Error::bad_file(
                    path,
                    format!(
                        "tensor `{name}` cannot be read from this torch.save file: {}",
                        Error::from(e)
                    ),
                )
            })?;
            if let Some(t) = t {
                tensors.insert(name.clone(), t);
            }
        }
        if !tensors.is_empty() {
            break;
        }
    }
    if let (true, Some(key)) = (tensors.is_empty(), key) {
        return Err(Error::bad_file(
            path,
            format!("holds no tensors under the entry `{key}`: name the entry of the saved dict that holds the state_dict (mdistiller's checkpoints keep it under \"model\"), or leave the key out to look under \"model\", \"state_dict\" and the top level"),
        ));
    }
    if tensors.is_empty() {
        return Err(Error::bad_file(
            path,
            "a zip file without a state_dict kd can read: kd reads torch.save files of a dict of tensors, bare or under \"model\" or \"state_dict\". Save one with torch.save(model.state_dict(), path), or as safetensors with safetensors.torch.save_file(model.state_dict(), path)",
        ));
    }
    Ok(WeightsFile {
        path: path.to_path_buf(),
        tensors,
        metadata: BTreeMap::new(),
    })
}

/// [`read`] for bytes already in memory; `path` names them in errors.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<WeightsFile> {
    let corrupt = |what: String| {
        Error::bad_file(
            path,
            format!("not a valid safetensors file: {what}. It may be truncated or damaged: export or download it again."),
        )
    };
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| match sniff(bytes) {
        Some(what) => Error::bad_file(path, format!("this is {what}, not a safetensors file")),
        None => corrupt(describe(&e)),
    })?;
    let (_, header) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| corrupt(describe(&e)))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = candle_core::safetensors::Load::load(&view, &Device::Cpu).map_err(|e| {
            corrupt(format!(
                "tensor `{name}` ({:?}) cannot be read: {}",
                view.dtype(),
                Error::from(e)
            ))
        })?;
        tensors.insert(name, t);
    }
    Ok(WeightsFile {
        path: path.to_path_buf(),
        tensors,
        metadata,
    })
}

/// What a file that failed to parse as safetensors is instead, when its
/// first bytes say so.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let head = &bytes[..bytes.len().min(512)];
    Some(match head {
        [] => "an empty file",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [0xff, 0xd8, 0xff, ..] => "a JPEG image",
        [b'P', b'K', 3, 4, ..] => "a zip archive that is not a torch.save file kd can read",
        [0x80, 2..=5, ..] => "a Python pickle: PyTorch's old (before 1.6) torch.save format, which kd does not read. Re-save it in PyTorch 1.6 or later with torch.save(torch.load(path), path) (the zip format), or as safetensors with safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")",
        [0x1f, 0x8b, ..] => "a gzip-compressed file: decompress it first",
        _ if std::str::from_utf8(head).is_ok_and(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace())) => {
            "a text file"
        }
        _ => return None,
    })
}

fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeaderLength | E::HeaderTooSmall => {
            "its header length does not fit the file".into()
        }
        E::HeaderTooLarge => "its header is larger than 100 MB".into(),
        E::InvalidHeader(_) => "its header is not UTF-8 text".into(),
        E::InvalidHeaderDeserialization(e) => {
            format!("its header is not valid JSON or names an unknown dtype ({e})")
        }
        E::InvalidOffset(name) => {
            format!("the data offsets of tensor `{name}` overlap or leave gaps")
        }
        E::MetadataIncompleteBuffer => "the tensors' data does not cover the file exactly".into(),
        E::TensorInvalidInfo | E::InvalidTensorView(..) => {
            "a tensor's shape and dtype do not match its byte size".into()
        }
        other => format!("{other:?}"),
    }
}

/// The first tensor holding NaN or infinite values, with how many it holds.
pub fn first_non_finite<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
) -> Result<Option<(String, usize)>> {
    for (name, t) in tensors {
        if !t.dtype().is_float() {
            continue;
        }
        let bad = t
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .filter(|v| !v.is_finite())
            .count();
        if bad > 0 {
            return Ok(Some((name.clone(), bad)));
        }
    }
    Ok(None)
}

impl WeightsFile {
    /// Fails, naming the tensor, when any tensor holds NaN or infinite
    /// values: weights that would turn every output into NaN.
    pub fn check_finite(&self) -> Result<()> {
        match first_non_finite(&self.tensors)? {
            None => Ok(()),
            Some((name, n)) => Err(Error::bad_file(
                &self.path,
                format!("tensor `{name}` holds {n} NaN or infinite values; weights must be finite (was the run that wrote it diverging?)"),
            )),
        }
    }
}

/// Writes model weights (or a checkpoint) atomically, as [`save_values`]
/// does, after checking that every tensor is finite: a file of NaN weights
/// is refused here rather than found later.
pub fn save(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    if let Some((name, n)) = first_non_finite(tensors.iter().map(|(n, t)| (n, t)))? {
        return Err(Error::Numerical(format!(
            "not writing {}: tensor `{name}` holds {n} NaN or infinite values",
            path.display()
        )));
    }
    save_values(path, tensors, metadata)
}

/// Writes `tensors` with `metadata` atomically: a temporary file in the same
/// folder, flushed to disk, then renamed over `path`. An interruption leaves
/// either the old file or the new one, never a torn one. Values are written
/// as they are, NaN included (a prediction of a NaN input is NaN).
pub fn save_values(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let data: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_device(&Device::Cpu)?.contiguous()?)))
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(data, Some(metadata))
        .map_err(|e| Error::bad_file(path, format!("cannot serialise: {e:?}")))?;
    write_atomic(path, &bytes)
}

/// Replaces `path` with `bytes` atomically (same-folder temporary + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes)
            .map_err(|e| Error::io("write", path, e))
    })
}

/// How kd's temporary files start: one left by a killed process is known
/// by it (see [`remove_orphans`]).
pub const TEMP_PREFIX: &str = ".kd-tmp-";

/// Removes temporary files in `dir` that a killed kd process left behind.
/// A file still being written is locked by its writer and kept.
pub fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        if !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let Ok(file) = std::fs::File::open(e.path()) else {
            continue;
        };
        if file.try_lock().is_ok() {
            tracing::info!(
                "removing {}, left by an interrupted kd run",
                e.path().display()
            );
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// kd's one way to write a file: `write` fills a temporary file in `path`'s
/// folder, which is flushed to disk and renamed over `path`. An interruption
/// leaves the old file or the new one, never a torn one, and an error leaves
/// no temporary file behind.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::config(format!(
            "cannot write {}: the folder {} does not exist; create it first or choose another output path",
            path.display(),
            dir.display()
        )));
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    // Read-write for whoever the umask allows, like any new file (tempfile's
    // default is 0600, which a replaced 0644 file would silently become).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| Error::io("create a file in", &dir, e))?;
    // Held until the rename, so that `remove_orphans` leaves this file alone.
    tmp.as_file()
        .lock()
        .map_err(|e| Error::io("lock", tmp.path(), e))?;
    write(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("flush", path, e))?;
    tmp.persist(path)
        .map_err(|e| Error::io("replace", path, e.error))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Where the trainable helpers of a method (a FitNets regressor) are written
/// beside the model file `path`.
pub fn adapters_path(path: &Path) -> PathBuf {
    path.with_extension("adapters.safetensors")
}

/// Writes a trained model as kd and PyTorch read it: the network's tensors
/// under their `state_dict` names with `info` as metadata, and the method's
/// trainable helpers, if any, in [`adapters_path`] beside it. What
/// [`model_from_file`] reads back.
pub fn save_model(
    path: &Path,
    model: &[(String, Tensor)],
    adapters: &[(String, Tensor)],
    info: &ModelInfo,
) -> Result<()> {
    save(path, model, info.to_metadata())?;
    if !adapters.is_empty() {
        let mut meta = info.to_metadata();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        meta.insert("kd.adapters_for".into(), name.into());
        save(&adapters_path(path), adapters, meta)?;
    }
    Ok(())
}

/// Copies `file`'s tensors into `model`, checking first that every expected
/// tensor is there with its shape and a float dtype and that nothing is left
/// over; all mismatches are reported at once, by name.
pub fn load_into(model: &Model, file: &WeightsFile) -> Result<()> {
    let expected = model.tensors();
    let mut mismatches = Vec::new();
    for (name, t) in &expected {
        match file.tensors.get(name) {
            None => mismatches.push(format!(
                "  missing   {name} (expected shape {:?})",
                t.dims()
            )),
            Some(f) if f.dims() != t.dims() => mismatches.push(format!(
                "  shape     {name}: file has {:?}, architecture expects {:?}",
                f.dims(),
                t.dims()
            )),
            Some(f) if f.dtype().is_float() != t.dtype().is_float() => mismatches.push(format!(
                "  dtype     {name}: file has {:?}, architecture expects {}",
                f.dtype(),
                if t.dtype().is_float() {
                    "a float type"
                } else {
                    "an integer type (int64)"
                }
            )),
            _ => {}
        }
    }
    for name in file.tensors.keys() {
        if !expected.iter().any(|(n, _)| n == name) {
            mismatches.push(format!("  unexpected {name}"));
        }
    }
    if !mismatches.is_empty() {
        return Err(Error::WeightsMismatch {
            path: file.path.clone(),
            arch: model.arch.name.to_string(),
            mismatches,
        });
    }
    let vars = model.varmap().data().lock().unwrap();
    for (name, var) in vars.iter() {
        let t = file.tensors[name]
            .to_dtype(var.dtype())?
            .to_device(var.device())?;
        var.set(&t)?;
    }
    Ok(())
}

/// Builds the model a file describes and loads it. Files without kd's
/// metadata (a PyTorch `state_dict`) need `fallback`: architecture name and config.
pub fn load_model(
    path: &Path,
    fallback: Option<(&str, ArchConfig)>,
    device: &Device,
) -> Result<(Model, ModelInfo)> {
    model_from_file(&read(path)?, fallback, device)
}

/// [`load_model`] for a file already read.
pub fn model_from_file(
    file: &WeightsFile,
    fallback: Option<(&str, ArchConfig)>,
    device: &Device,
) -> Result<(Model, ModelInfo)> {
    let path = &file.path;
    let info = ModelInfo::from_metadata(path, &file.metadata)?;
    let (arch, config) = match (&info.arch, &info.config, fallback) {
        (_, _, Some((a, c))) => (a.to_string(), c),
        (Some(a), Some(c), None) => {
            // A name the file gives is the file's problem, not a usage error.
            crate::registry::arch(a).map_err(|e| {
                Error::bad_file(
                    path,
                    format!("its metadata names an architecture this kd does not carry: {e}"),
                )
            })?;
            (a.clone(), c.clone())
        }
        _ => {
            return Err(Error::NoMetadata {
                path: path.to_path_buf(),
            })
        }
    };
    let model = Model::new(&arch, config, 0, device)?;
    load_into(&model, file)?;
    Ok((model, info))
}
