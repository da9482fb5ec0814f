//! kd's decoded copy of a data set that is slow to decode (Hub parquet files
//! of PNGs, a folder of images): both splits in one safetensors file, images
//! as u8 and labels as u32, read back through a memory map. A folder's copy
//! also holds its shape, classes and normalisation (in the file's metadata)
//! and is named by [`key`], a hash of every file it was decoded from and of
//! the options that decoded it, so a changed image never meets a stale copy.
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

use super::Decoded;
use crate::data::{Dataset, Normalization, Splits};
use kd_core::{Error, Result};

/// Bumped whenever what a decoded copy holds changes meaning.
const VERSION: &str = "kd-decoded-1";
/// The metadata key of a copy's shape, classes and normalisation (JSON).
const SPLITS_KEY: &str = "kd.decoded.splits";

/// A hex SHA-256 of `files` (their paths below `root`, sizes and contents)
/// and of `options`, a description of how they were decoded.
pub fn key(root: &Path, files: &[PathBuf], options: &str) -> Result<String> {
    let mut h = Sha256::new();
    h.update(VERSION);
    h.update(options);
    let mut buf = vec![0u8; 1 << 16];
    for path in files {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("read", path, e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io("read", path, e))?
            .len();
        h.update(rel.to_string_lossy().as_bytes());
        h.update(size.to_le_bytes());
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io("read", path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(format!("{:x}", h.finalize()))
}

/// Writes two decoded splits (and `metadata`) to `path`, atomically.
pub fn write(
    path: &Path,
    train: &Decoded,
    test: &Decoded,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let folder = path.parent().expect("a cache file has a folder");
    std::fs::create_dir_all(folder).map_err(|e| Error::io("create", folder, e))?;
    let labels =
        |d: &Decoded| -> Vec<u8> { d.labels.iter().flat_map(|l| l.to_le_bytes()).collect() };
    let (train_labels, test_labels) = (labels(train), labels(test));
    let tensors = [
        ("train.images", Dtype::U8, &train.images[..]),
        ("train.labels", Dtype::U32, &train_labels[..]),
        ("test.images", Dtype::U8, &test.images[..]),
        ("test.labels", Dtype::U32, &test_labels[..]),
    ];
    let encode = |e: safetensors::SafeTensorError| {
        Error::config(format!("cannot encode the decoded data set: {e:?}"))
    };
    let views = tensors
        .iter()
        .map(|(n, dtype, bytes)| {
            let count = bytes.len() * 8 / dtype.bitsize();
            Ok((*n, TensorView::new(*dtype, vec![count], bytes)?))
        })
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(encode)?;
    let bytes = safetensors::serialize(views, metadata).map_err(encode)?;
    kd_core::weights::write_atomic(path, &bytes)
}

/// Reads a copy [`write()`] made, or `None` when there is none or it cannot
/// be read (the caller decodes again and replaces it).
pub fn read(path: &Path) -> Option<(Decoded, Decoded, HashMap<String, String>)> {
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: kd writes its cache files atomically and never changes one in
    // place; the map is read once and dropped here.
    let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
    let (_, header) = SafeTensors::read_metadata(&map).ok()?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&map).ok()?;
    let get = |n: &str| st.tensor(n).ok().map(|t| t.data().to_vec());
    let labels = |b: Vec<u8>| {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    };
    let split = |s: &str| -> Option<Decoded> {
        Some(Decoded {
            images: get(&format!("{s}.images"))?,
            labels: labels(get(&format!("{s}.labels"))?),
        })
    };
    Some((split("train")?, split("test")?, metadata))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Described {
    name: String,
    shape: [usize; 3],
    classes: Vec<String>,
    normalization: Normalization,
}

/// Writes `splits` whole (images, labels, shape, classes, normalisation).
pub fn write_splits(path: &Path, splits: &Splits) -> Result<()> {
    let t = &splits.train;
    let described = Described {
        name: t.name.clone(),
        shape: t.shape,
        classes: t.classes.clone(),
        normalization: t.normalization.clone(),
    };
    let json = serde_json::to_string(&described).expect("plain data serialises");
    let decoded = |d: &Dataset| Decoded {
        images: d.images.clone(),
        labels: d.labels.clone(),
    };
    write(
        path,
        &decoded(t),
        &decoded(&splits.test),
        Some(HashMap::from([(SPLITS_KEY.to_string(), json)])),
    )
}

/// Reads what [`write_splits`] wrote, or `None` (see [`read`]).
pub fn read_splits(path: &Path) -> Option<Splits> {
    let (train, test, metadata) = read(path)?;
    let d: Described = serde_json::from_str(metadata.get(SPLITS_KEY)?).ok()?;
    let split = |s: Decoded| {
        Dataset::new(
            d.name.clone(),
            s.images,
            s.labels,
            d.shape,
            d.classes.clone(),
            d.normalization.clone(),
        )
        .ok()
    };
    Some(Splits {
        train: split(train)?,
        test: split(test)?,
    })
}
