//! CIFAR-10, binary version: records of 1 label byte + 3072 pixel bytes
//! (1024 red, 1024 green, 1024 blue), 10,000 to a file.
use std::path::Path;

use crate::data::{read_file, Dataset, Normalization, Splits};
use kd_core::{Error, Result};

pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
const RECORD: usize = 1 + 3 * 32 * 32;

/// The tutorial's normalisation (ImageNet statistics).
pub fn tutorial_normalization() -> Normalization {
    Normalization {
        mean: vec![0.485, 0.456, 0.406],
        std: vec![0.229, 0.224, 0.225],
    }
}

/// Loads `dir` (or `dir/cifar-10-batches-bin`, as the archive unpacks).
pub fn load_cifar10_dir(dir: &Path) -> Result<Splits> {
    let dir = if !dir.join(TEST_FILE).exists() && dir.join("cifar-10-batches-bin").is_dir() {
        dir.join("cifar-10-batches-bin")
    } else {
        dir.to_path_buf()
    };
    let missing: Vec<_> = TRAIN_FILES
        .iter()
        .chain([&TEST_FILE])
        .filter(|f| !dir.join(f).is_file())
        .collect();
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "{} is not a CIFAR-10 (binary version) folder: missing {}. Expected data_batch_1.bin .. data_batch_5.bin and test_batch.bin.",
            dir.display(),
            missing.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for f in TRAIN_FILES {
        read_records(&dir.join(f), &mut images, &mut labels)?;
    }
    let (mut test_images, mut test_labels) = (Vec::new(), Vec::new());
    read_records(&dir.join(TEST_FILE), &mut test_images, &mut test_labels)?;
    let classes: Vec<String> = CLASSES.iter().map(|s| s.to_string()).collect();
    let shape = [3, 32, 32];
    Ok(Splits {
        train: Dataset::new(
            "cifar10",
            images,
            labels,
            shape,
            classes.clone(),
            tutorial_normalization(),
        )?,
        test: Dataset::new(
            "cifar10",
            test_images,
            test_labels,
            shape,
            classes,
            tutorial_normalization(),
        )?,
    })
}

fn read_records(path: &Path, images: &mut Vec<u8>, labels: &mut Vec<u32>) -> Result<()> {
    let bytes = read_file(path)?;
    if bytes.is_empty() || bytes.len() % RECORD != 0 {
        return Err(Error::bad_file(
            path,
            format!(
                "{} bytes is not a whole number of CIFAR-10 records ({RECORD} bytes each): the file is truncated or not CIFAR-10 binary; download it again",
                bytes.len()
            ),
        ));
    }
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] as usize >= CLASSES.len() {
            return Err(Error::bad_file(
                path,
                format!(
                    "record {i} has label {}, outside 0..9: not a CIFAR-10 file",
                    rec[0]
                ),
            ));
        }
        labels.push(rec[0] as u32);
        images.extend_from_slice(&rec[1..]);
    }
    Ok(())
}
