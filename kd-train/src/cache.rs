//! A frozen teacher's outputs, computed once per data set.
//!
//! Without augmentation a sample's teacher outputs never change, yet a
//! distillation epoch spends most of its time in the teacher's forward pass.
//! [`CachedTeacher`] runs the teacher once over the training set, keeps the
//! logits and the taps the method needs, and serves each batch by index:
//! from memory, or from a memory-mapped safetensors file that later runs
//! reuse. A file is named by [`cache_key`], a hash of everything the outputs
//! depend on, so a changed teacher or data set never meets a stale file.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::data::Dataset;
use crate::eval::EVAL_BATCH;
use kd_core::network::{Outputs, Teacher};
use kd_core::{Error, Result};

/// The name of the logits in a cache file; taps are stored under their own names.
const LOGITS: &str = "logits";
/// Bumped whenever what a cache file holds changes meaning.
const FORMAT: &str = "kd teacher-output cache v2";

/// One output (logits or a tap) for every sample, row after row.
struct Column {
    /// The shape of one sample's output.
    row_dims: Vec<usize>,
    row_len: usize,
    rows: Rows,
}

enum Rows {
    Memory(Vec<f32>),
    /// `len` floats at byte `start` of a mapped file (checked aligned when opened).
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl Rows {
    fn as_slice(&self) -> &[f32] {
        match self {
            Rows::Memory(v) => v,
            Rows::Mapped { map, start, len } => {
                // SAFETY: `open` checked that the range lies in the map and is
                // 4-byte aligned; any bit pattern is a valid f32.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*start).cast(), *len) }
            }
        }
    }
}

/// Where a cache lives, for the run log.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Memory,
    /// Memory-mapped from this file.
    Disk(PathBuf),
}

pub struct CachedTeacher {
    columns: BTreeMap<String, Column>,
    samples: usize,
    /// Seconds the teacher took to compute the outputs (when first built).
    pub build_seconds: f64,
    pub placement: Placement,
    device: Device,
}

/// A hex SHA-256 of what the teacher's outputs depend on: its tensors (names,
/// shapes, values: `teacher_sha256` is its [`kd_core::Model::fingerprint`], which the
/// caller has already computed for its checkpoints), the data set's images,
/// shape and normalisation, and the taps kept. Labels and class names do not
/// change outputs and are left out.
pub fn cache_key(teacher_sha256: &str, data: &Dataset, taps: &[&str]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update(teacher_sha256.as_bytes());
    h.update(format!("{:?}", data.shape).as_bytes());
    for v in data
        .normalization
        .mean
        .iter()
        .chain(&data.normalization.std)
    {
        h.update(v.to_le_bytes());
    }
    h.update((data.images.len() as u64).to_le_bytes());
    h.update(&data.images);
    let mut taps: Vec<&str> = taps.to_vec();
    taps.sort_unstable();
    h.update(taps.join(",").as_bytes());
    Ok(format!("{:x}", h.finalize()))
}

impl CachedTeacher {
    /// Bytes the cache would take for `data` with `taps`, from one probe image.
    pub fn estimate_bytes(
        teacher: &dyn Teacher,
        data: &Dataset,
        taps: &[&str],
        device: &Device,
    ) -> Result<usize> {
        let probe = teacher.outputs(&data.batch(&[0], device)?)?;
        let mut per_sample = probe.logits.elem_count();
        for t in taps {
            per_sample += probe.tap(t)?.elem_count();
        }
        Ok(per_sample * 4 * data.len())
    }

    /// Runs `teacher` over all of `data` in order and keeps logits and `taps`
    /// in memory. A set `stop` flag ends the build after the batch in
    /// progress with [`Error::Interrupted`].
    pub fn build(
        teacher: &dyn Teacher,
        data: &Dataset,
        taps: &[&str],
        device: &Device,
        stop: Option<&AtomicBool>,
    ) -> Result<Self> {
        let mut columns: BTreeMap<String, Column> = BTreeMap::new();
        let build_seconds = run_teacher(teacher, data, taps, device, stop, &mut |_, outputs| {
            for (name, values, row_dims) in outputs {
                let column = columns.entry(name).or_insert_with(|| Column {
                    row_len: row_dims.iter().product(),
                    row_dims,
                    rows: Rows::Memory(Vec::new()),
                });
                if let Rows::Memory(v) = &mut column.rows {
                    v.extend(values);
                }
            }
            Ok(())
        })?;
        Ok(Self {
            columns,
            samples: data.len(),
            build_seconds,
            placement: Placement::Memory,
            device: device.clone(),
        })
    }

    /// Runs `teacher` over `data` like [`build`](Self::build) but writes each
    /// batch's outputs straight into a safetensors file at `path` (`key` and a
    /// SHA-256 of the data in its metadata), so that memory holds one batch
    /// however large the cache; the file replaces `path` atomically when
    /// complete and is then mapped.
    pub fn build_on_disk(
        teacher: &dyn Teacher,
        data: &Dataset,
        taps: &[&str],
        device: &Device,
        stop: Option<&AtomicBool>,
        path: &Path,
        key: &str,
    ) -> Result<Self> {
        let samples = data.len();
        // Header space is reserved at the front and written last, when the
        // build time is known; its length is fixed because the seconds are
        // written with a fixed width.
        let header = |layout: &BTreeMap<String, (usize, Vec<usize>)>, seconds: f64, sha: &str| {
            let mut h = serde_json::Map::new();
            h.insert(
                "__metadata__".into(),
                serde_json::json!({
                    "kd.cache_key": key,
                    "kd.build_seconds": format!("{seconds:016.3}"),
                    "kd.data_sha256": format!("{sha:0>64}"),
                }),
            );
            let mut offset = 0;
            for (name, (_, row_dims)) in layout {
                let mut shape = vec![samples];
                shape.extend(row_dims);
                let bytes = 4 * shape.iter().product::<usize>();
                h.insert(
                    name.clone(),
                    serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]}),
                );
                offset += bytes;
            }
            let mut text = serde_json::to_string(&h).unwrap_or_default().into_bytes();
            // Padded so the data, and so every f32, starts 8-byte aligned.
            text.resize((8 + text.len()).next_multiple_of(8) - 8, b' ');
            text
        };
        // Name -> (byte offset of its data from the data start, row dims).
        let mut layout: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
        let mut data_start = 0;
        let write_at = |file: &mut std::fs::File, at: usize, bytes: &[u8]| -> Result<()> {
            use std::io::{Seek, SeekFrom, Write};
            file.seek(SeekFrom::Start(at as u64))
                .and_then(|_| file.write_all(bytes))
                .map_err(|e| Error::io("write", path, e))
        };
        kd_core::weights::write_atomic_with(path, |file| {
            let seconds = run_teacher(teacher, data, taps, device, stop, &mut |first, outputs| {
                if layout.is_empty() {
                    let mut offset = 0;
                    for (name, _, row_dims) in &outputs {
                        layout.insert(name.clone(), (0, row_dims.clone()));
                    }
                    for (at, row_dims) in layout.values_mut() {
                        *at = offset;
                        offset += 4 * samples * row_dims.iter().product::<usize>();
                    }
                    data_start = 8 + header(&layout, 0.0, "").len();
                }
                for (name, values, _) in outputs {
                    let (at, row_dims) = &layout[&name];
                    let row_bytes = 4 * row_dims.iter().product::<usize>();
                    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                    write_at(file, data_start + at + first * row_bytes, &bytes)?;
                }
                Ok(())
            })?;
            let sha = file_sha256(file, data_start).map_err(|e| Error::io("read back", path, e))?;
            let text = header(&layout, seconds, &sha);
            let mut front = (text.len() as u64).to_le_bytes().to_vec();
            front.extend(text);
            write_at(file, 0, &front)
        })?;
        // The checksum was just computed from these bytes: no second pass.
        Self::map(path, key, samples, taps, device, false)
    }

    /// Maps a cache file written by [`build_on_disk`](Self::build_on_disk): the outputs stay on
    /// disk and are paged in as batches ask for them. Fails unless the file
    /// holds `key`, `samples` rows of f32 logits and every tap in `taps`.
    pub fn open(
        path: &Path,
        key: &str,
        samples: usize,
        taps: &[&str],
        device: &Device,
    ) -> Result<Self> {
        Self::map(path, key, samples, taps, device, true)
    }

    /// [`open`](Self::open), checking the data's checksum when `verify`.
    fn map(
        path: &Path,
        key: &str,
        samples: usize,
        taps: &[&str],
        device: &Device,
        verify: bool,
    ) -> Result<Self> {
        let bad = |m: String| Error::bad_file(path, m);
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        // SAFETY: kd writes cache files by atomic rename and never edits them in place.
        let map =
            Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("map", path, e))?);
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| bad(format!("not a readable cache file: {e:?}")))?;
        let extra = meta.metadata().clone().unwrap_or_default();
        if extra.get("kd.cache_key").map(String::as_str) != Some(key) {
            return Err(bad("the file belongs to another teacher or data set".into()));
        }
        let data_start = 8 + header_len;
        // One pass over the file (about 1 s per GB): a damaged cache would
        // otherwise feed a student wrong targets without a word.
        let sha = || format!("{:x}", Sha256::digest(&map[data_start..]));
        if verify && extra.get("kd.data_sha256") != Some(&sha()) {
            return Err(Error::Corrupt {
                path: path.to_path_buf(),
                message: "its data does not match the checksum written with it (the file was damaged or changed after it was built)".into(),
            });
        }
        let mut columns = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let (begin, end) = info.data_offsets;
            let (start, len) = (data_start + begin, (end - begin) / 4);
            if info.dtype != safetensors::Dtype::F32
                || info.shape.first() != Some(&samples)
                || end > map.len() - data_start
                || start % 4 != 0
                || len != info.shape.iter().product::<usize>()
            {
                return Err(bad(format!("tensor {name} is not {samples} rows of f32")));
            }
            let row_dims = info.shape[1..].to_vec();
            columns.insert(
                name.clone(),
                Column {
                    row_len: row_dims.iter().product(),
                    row_dims,
                    rows: Rows::Mapped {
                        map: map.clone(),
                        start,
                        len,
                    },
                },
            );
        }
        for t in taps.iter().chain(&[LOGITS]) {
            if !columns.contains_key(*t) {
                return Err(bad(format!("the file has no `{t}` outputs")));
            }
        }
        Ok(Self {
            columns,
            samples,
            build_seconds: extra
                .get("kd.build_seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0.0),
            placement: Placement::Disk(path.to_path_buf()),
            device: device.clone(),
        })
    }

    pub fn bytes(&self) -> usize {
        4 * self
            .columns
            .values()
            .map(|c| c.rows.as_slice().len())
            .sum::<usize>()
    }

    /// The rows of `indices` of one column, as a batch tensor.
    fn gather(&self, column: &Column, indices: &[usize]) -> Result<Tensor> {
        let src = column.rows.as_slice();
        let mut out = Vec::with_capacity(indices.len() * column.row_len);
        for &i in indices {
            if i >= self.samples {
                return Err(Error::config(format!(
                    "sample {i} is outside the teacher cache ({} samples)",
                    self.samples
                )));
            }
            out.extend_from_slice(&src[i * column.row_len..(i + 1) * column.row_len]);
        }
        let mut dims = vec![indices.len()];
        dims.extend(&column.row_dims);
        Ok(Tensor::from_vec(out, dims, &self.device)?)
    }
}

/// The SHA-256 (hex) of `file` from byte `from` to its end.
fn file_sha256(file: &mut std::fs::File, from: usize) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(from as u64))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// One batch's outputs: (name, values row after row, the shape of one row).
type BatchOutputs = Vec<(String, Vec<f32>, Vec<usize>)>;

/// Runs `teacher` over all of `data` in order, handing each batch's logits and
/// `taps` to `sink` with the index of the batch's first sample; returns the seconds taken.
fn run_teacher(
    teacher: &dyn Teacher,
    data: &Dataset,
    taps: &[&str],
    device: &Device,
    stop: Option<&AtomicBool>,
    sink: &mut dyn FnMut(usize, BatchOutputs) -> Result<()>,
) -> Result<f64> {
    let start = std::time::Instant::now();
    for indices in data.batch_indices(EVAL_BATCH, None) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(Error::Interrupted(format!(
                "stopped while computing the teacher's outputs (image {} of {}); nothing of them is kept",
                indices[0],
                data.len()
            )));
        }
        let out = teacher.outputs(&data.batch(&indices, device)?)?;
        let mut parts = vec![(LOGITS, &out.logits)];
        for t in taps {
            parts.push((t, out.tap(t)?));
        }
        let outputs = parts
            .into_iter()
            .map(|(name, t)| {
                let values = t.flatten_all()?.to_vec1::<f32>()?;
                if let Some(at) = values.iter().position(|v| !v.is_finite()) {
                    let row: usize = t.dims()[1..].iter().product();
                    return Err(Error::Numerical(format!(
                        "the teacher's `{name}` for training image {} is {}: a cache of non-finite outputs is not kept. Check the teacher's weights and the data",
                        indices[at / row.max(1)],
                        values[at]
                    )));
                }
                Ok((name.to_string(), values, t.dims()[1..].to_vec()))
            })
            .collect::<Result<_>>()?;
        sink(indices[0], outputs)?;
    }
    Ok(start.elapsed().as_secs_f64())
}

impl Teacher for CachedTeacher {
    fn outputs(&self, batch: &crate::data::Batch) -> Result<Outputs> {
        let mut taps = BTreeMap::new();
        let mut logits = None;
        for (name, column) in &self.columns {
            let t = self.gather(column, &batch.indices)?;
            if name == LOGITS {
                logits = Some(t);
            } else {
                taps.insert(name.clone(), t);
            }
        }
        let logits = logits.ok_or_else(|| Error::config("the teacher cache holds no logits"))?;
        Ok(Outputs { logits, taps })
    }
}
