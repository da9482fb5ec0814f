//! IDX files as used by MNIST and Fashion-MNIST, gzipped or not.
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::data::{channel_stats, read_file, Dataset, Splits};
use kd_core::{Error, Result};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Loads `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
/// `t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]` from `dir`.
/// Normalisation is the training split's per-channel mean and std.
pub fn load_idx_dir(dir: &Path, name: &str, classes: &[&str]) -> Result<Splits> {
    let find = |stem: &str| -> Result<PathBuf> {
        [stem.to_string(), format!("{stem}.gz")]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::config(format!(
                    "{} is not an IDX data folder: missing {stem} (or {stem}.gz). Expected train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, gzipped or not.",
                    dir.display()
                ))
            })
    };
    let paths = [
        find("train-images-idx3-ubyte")?,
        find("train-labels-idx1-ubyte")?,
        find("t10k-images-idx3-ubyte")?,
        find("t10k-labels-idx1-ubyte")?,
    ];
    let files = [
        (paths[0].clone(), read_file(&paths[0])?),
        (paths[1].clone(), read_file(&paths[1])?),
        (paths[2].clone(), read_file(&paths[2])?),
        (paths[3].clone(), read_file(&paths[3])?),
    ];
    idx_splits(name, classes, &files)
}

/// The splits held by the four IDX files' bytes (gzipped or not), in the
/// order train images, train labels, test images, test labels; each named by
/// the path errors give. Normalisation is the training split's mean and std.
pub fn idx_splits(name: &str, classes: &[&str], files: &[(PathBuf, Vec<u8>); 4]) -> Result<Splits> {
    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();
    let (train_images, shape) = parse_idx_images(paths[0], &files[0].1)?;
    let train_labels = parse_idx_labels(paths[1], &files[1].1)?;
    let (test_images, test_shape) = parse_idx_images(paths[2], &files[2].1)?;
    let test_labels = parse_idx_labels(paths[3], &files[3].1)?;
    if test_shape != shape {
        return Err(Error::bad_file(
            paths[2],
            format!("images are {test_shape:?}, the training images {shape:?}"),
        ));
    }
    for (imgs, labels, ip, lp) in [
        (&train_images, &train_labels, paths[0], paths[1]),
        (&test_images, &test_labels, paths[2], paths[3]),
    ] {
        let n = imgs.len() / shape.iter().product::<usize>();
        if n != labels.len() {
            return Err(Error::bad_file(
                lp,
                format!(
                    "holds {} labels but {} holds {n} images",
                    labels.len(),
                    ip.display()
                ),
            ));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= classes.len())
        {
            return Err(Error::bad_file(
                lp,
                format!(
                    "label {l} of sample {i} is outside the {} classes (0..{})",
                    classes.len(),
                    classes.len() - 1
                ),
            ));
        }
    }
    let norm = channel_stats(&train_images, shape);
    let classes: Vec<String> = classes.iter().map(|s| s.to_string()).collect();
    Ok(Splits {
        train: Dataset::new(
            name,
            train_images,
            train_labels,
            shape,
            classes.clone(),
            norm.clone(),
        )?,
        test: Dataset::new(name, test_images, test_labels, shape, classes, norm)?,
    })
}

/// Reads an IDX image file (magic 0x803, dims N x H x W, u8) as 1-channel images.
pub fn read_idx_images(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    parse_idx_images(path, &read_file(path)?)
}

fn parse_idx_images(path: &Path, raw: &[u8]) -> Result<(Vec<u8>, [usize; 3])> {
    let bytes = decompressed(path, raw)?;
    let dims = header(path, &bytes, IMAGES_MAGIC, 3)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    let body = &bytes[16..];
    let want = n.checked_mul(h).and_then(|v| v.checked_mul(w));
    if want != Some(body.len()) {
        let want = want
            .map(|v| v.to_string())
            .unwrap_or_else(|| "an impossible number of".into());
        return Err(Error::bad_file(
            path,
            format!("header promises {n} images of {h}x{w} ({want} bytes) but {} follow: truncated or corrupt; download it again", body.len()),
        ));
    }
    Ok((body.to_vec(), [1, h, w]))
}

/// Reads an IDX label file (magic 0x801, one dim, u8).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u32>> {
    parse_idx_labels(path, &read_file(path)?)
}

fn parse_idx_labels(path: &Path, raw: &[u8]) -> Result<Vec<u32>> {
    let bytes = decompressed(path, raw)?;
    let dims = header(path, &bytes, LABELS_MAGIC, 1)?;
    let body = &bytes[8..];
    if body.len() != dims[0] {
        return Err(Error::bad_file(
            path,
            format!(
                "header promises {} labels but {} follow: truncated or corrupt; download it again",
                dims[0],
                body.len()
            ),
        ));
    }
    Ok(body.iter().map(|&b| b as u32).collect())
}

fn decompressed(path: &Path, raw: &[u8]) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| {
                Error::bad_file(
                    path,
                    format!("corrupt gzip stream ({e}); download it again"),
                )
            })?;
        Ok(out)
    } else {
        Ok(raw.to_vec())
    }
}

fn header(path: &Path, bytes: &[u8], magic: u32, rank: usize) -> Result<Vec<usize>> {
    let need = 4 + 4 * rank;
    if bytes.len() < need {
        return Err(Error::bad_file(
            path,
            format!("{} bytes is too short for an IDX header", bytes.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    if word(0) != magic {
        return Err(Error::bad_file(
            path,
            format!(
                "magic number {:#010x}, expected {magic:#010x}: not an IDX {} file",
                word(0),
                if rank == 1 { "label" } else { "image" }
            ),
        ));
    }
    Ok((0..rank).map(|d| word(4 + 4 * d) as usize).collect())
}
