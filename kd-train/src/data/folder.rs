//! A folder of images in torchvision's `ImageFolder` layout: `DIR/train/CLASS/*`
//! and `DIR/val/CLASS/*` (or `DIR/test/`), classes sorted by name. PNG and
//! JPEG, greyscale or colour (RGBA loses its alpha, as torchvision's loader
//! converts to RGB), any size: each image is resized on its shorter side
//! and centre-cropped to a square, `--image-size` or else the median shorter
//! side of the training images rounded to a multiple of 4 (at most
//! [`MAX_IMAGE_SIZE`]). One channel when
//! every training image is greyscale, else three. Decoding runs on every core.
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::DynamicImage;
use rayon::prelude::*;

use crate::data::{channel_stats, Dataset, ImageOptions, Normalization, Splits, MAX_IMAGE_SIZE};
use kd_core::{Error, Result};

/// Reads `dir` as described in the module's documentation.
pub fn load_image_folder(dir: &Path, options: &ImageOptions) -> Result<Splits> {
    let (classes, train_files, test_files) = layout(dir)?;
    let train = decode(&train_files, options.skip_bad_images)?;
    every_class_has_images(&dir.join(TRAIN), &classes, &train)?;
    let side = match options.image_size {
        Some(s) if s == 0 || s > MAX_IMAGE_SIZE => {
            return Err(Error::config(format!(
                "--image-size {s}: use a side from 1 to {MAX_IMAGE_SIZE} pixels"
            )))
        }
        Some(s) => s as u32,
        None => median_side(&train).min(MAX_IMAGE_SIZE as u32),
    };
    let grey = train.iter().all(|(img, _)| !img.color().has_color());
    let shape = [if grey { 1 } else { 3 }, side as usize, side as usize];
    let name = "folder";
    let to_split = |images: Vec<(DynamicImage, u32)>| -> Result<Dataset> {
        let (pixels, labels): (Vec<Vec<u8>>, Vec<u32>) = images
            .into_par_iter()
            .map(|(img, label)| (square(&img, side, grey), label))
            .unzip();
        let norm = Normalization {
            mean: vec![0.5; shape[0]],
            std: vec![0.5; shape[0]],
        };
        Dataset::new(name, pixels.concat(), labels, shape, classes.clone(), norm)
    };
    let mut train = to_split(train)?;
    let mut test = to_split(decode(&test_files, options.skip_bad_images)?)?;
    let norm = channel_stats(&train.images, shape);
    (train.normalization, test.normalization) = (norm.clone(), norm);
    Ok(Splits { train, test })
}

/// Every file [`load_image_folder`] reads, training split first.
pub fn image_folder_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let (_, train, test) = layout(dir)?;
    Ok(train.into_iter().chain(test).map(|(p, _)| p).collect())
}

/// The median shorter side of `images`, rounded to a multiple of 4.
fn median_side(images: &[(DynamicImage, u32)]) -> u32 {
    let mut sides: Vec<u32> = images
        .iter()
        .map(|(img, _)| img.width().min(img.height()))
        .collect();
    sides.sort_unstable();
    ((sides[sides.len() / 2] as f64 / 4.0).round() as u32).max(1) * 4
}

type Files = Vec<(PathBuf, u32)>;

/// The training split's folder; the test split's is the first of [`TEST`] that exists.
const TRAIN: &str = "train";
const TEST: [&str; 2] = ["val", "test"];

/// The classes and the training and test files (with their class indices).
fn layout(dir: &Path) -> Result<(Vec<String>, Files, Files)> {
    let train_dir = dir.join(TRAIN);
    let test_dir = TEST.iter().map(|s| dir.join(s)).find(|d| d.is_dir());
    let (Some(test_dir), true) = (test_dir, train_dir.is_dir()) else {
        return Err(Error::config(format!(
            "{} is not an image folder: it needs train/CLASS/* and val/CLASS/* (or test/CLASS/*), one subfolder per class",
            dir.display()
        )));
    };
    let classes = subfolders(&train_dir)?;
    if classes.is_empty() {
        return Err(Error::config(format!(
            "{} holds no class folders",
            train_dir.display()
        )));
    }
    if let Some(extra) = subfolders(&test_dir)?
        .into_iter()
        .find(|c| !classes.contains(c))
    {
        return Err(Error::config(format!(
            "{} has class `{extra}`, which {} lacks: both splits need the same class folders",
            test_dir.display(),
            train_dir.display()
        )));
    }
    let (train, test) = (files(&train_dir, &classes)?, files(&test_dir, &classes)?);
    every_class_has_images(&train_dir, &classes, &train)?;
    Ok((classes, train, test))
}

/// A class without training images is refused, as torchvision's
/// `ImageFolder` refuses it: it would shift every later class's label.
fn every_class_has_images<T>(split: &Path, classes: &[String], items: &[(T, u32)]) -> Result<()> {
    let mut seen = vec![false; classes.len()];
    items
        .iter()
        .for_each(|(_, label)| seen[*label as usize] = true);
    match seen.iter().position(|s| !s) {
        Some(i) => Err(Error::config(format!(
            "{} holds no readable images: add images to it or remove the folder (every class needs training images)",
            split.join(&classes[i]).display()
        ))),
        None => Ok(()),
    }
}

fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("read", dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    Ok(names)
}

/// Every file under each class folder, with its class index, sorted by name.
fn files(split: &Path, classes: &[String]) -> Result<Vec<(PathBuf, u32)>> {
    let mut out = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let folder = split.join(class);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        paths.sort();
        out.extend(paths.into_iter().map(|p| (p, label as u32)));
    }
    if out.is_empty() {
        return Err(Error::config(format!(
            "{} holds no images",
            split.display()
        )));
    }
    Ok(out)
}

/// Decodes every file in parallel. The first that cannot be read is named,
/// or with `skip_bad` every such file is left out and counted in one line.
fn decode(files: &[(PathBuf, u32)], skip_bad: bool) -> Result<Vec<(DynamicImage, u32)>> {
    let hint = match skip_bad {
        true => "",
        false => ": replace or remove it, or pass --skip-bad-images",
    };
    let decoded: Vec<Result<(DynamicImage, u32)>> = files
        .par_iter()
        .map(|(path, label)| {
            let img = image::open(path).map_err(|e| {
                Error::bad_file(path, format!("cannot be read as an image ({e}){hint}"))
            })?;
            Ok((img, *label))
        })
        .collect();
    if !skip_bad {
        return decoded.into_iter().collect();
    }
    let (good, bad): (Vec<_>, Vec<_>) = decoded.into_iter().partition(|r| r.is_ok());
    if let Some(Err(first)) = bad.first() {
        tracing::warn!(
            "skipped {} of {} images that cannot be read (the first: {first})",
            bad.len(),
            files.len()
        );
    }
    if good.is_empty() {
        return Err(Error::config(format!(
            "none of the {} images in {} can be read",
            files.len(),
            files[0]
                .0
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new(""))
                .display()
        )));
    }
    Ok(good.into_iter().map(|r| r.expect("partitioned")).collect())
}

/// Resized so its shorter side is `side`, centre-cropped to `side` x `side`,
/// as C x H x W bytes.
fn square(img: &DynamicImage, side: u32, grey: bool) -> Vec<u8> {
    let (w, h) = (img.width(), img.height());
    let scale = side as f64 / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(side),
        ((h as f64 * scale).round() as u32).max(side),
    );
    let resized = img.resize_exact(nw, nh, FilterType::Triangle);
    let cropped = resized.crop_imm((nw - side) / 2, (nh - side) / 2, side, side);
    let plane = (side * side) as usize;
    if grey {
        return cropped.to_luma8().into_raw();
    }
    let rgb = cropped.to_rgb8().into_raw();
    (0..3)
        .flat_map(|c| (0..plane).map(move |i| (c, i)))
        .map(|(c, i)| rgb[3 * i + c])
        .collect()
}
