//! Data sets by name: where their files are, and how they load.
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use kd_core::data::{self, Splits, SyntheticSpec};

use crate::config::DataArgs;

/// Name and one-line description of every data set kd knows.
pub const DATASETS: &[(&str, &str)] = &[
    ("cifar10", "CIFAR-10: 50,000 + 10,000 colour images 3x32x32, 10 classes (the tutorial's data)"),
    ("fashion-mnist", "Fashion-MNIST: 60,000 + 10,000 greyscale images 1x28x28, 10 clothing classes"),
    ("mnist", "MNIST: 60,000 + 10,000 greyscale digits 1x28x28 (needs --data-dir with the IDX files)"),
    ("synthetic", "seeded synthetic patterns, 2,000 + 500 images (shape: --synthetic-shape), 10 classes; for tests and demos"),
];

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
/// Where Debian's `dataset-fashion-mnist` package installs the files.
const DEBIAN_FASHION: &str = "/usr/share/datasets/fashion-mnist";

/// kd's cache folder: `$KD_CACHE`, else the platform cache folder + `kd`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KD_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("kd")))
        .unwrap_or_else(|| PathBuf::from(".kd-cache"))
}

/// Loads the data set `args` names, with its subsets applied.
pub fn load(args: &DataArgs) -> Result<Splits> {
    let name = args.dataset();
    let dir = args.data_dir.as_deref();
    let splits = match name {
        "synthetic" => data::synthetic(&SyntheticSpec {
            shape: args.synthetic_shape.unwrap_or([3, 32, 32]),
            ..SyntheticSpec::default()
        })?,
        "cifar10" => {
            let dir = match dir {
                Some(d) => d.to_path_buf(),
                None => {
                    cached_or_hint("cifar10", &cache_dir().join("cifar10"), "data_batch_1.bin")?
                }
            };
            data::load_cifar10_dir(&dir)?
        }
        "fashion-mnist" => {
            let dir = match dir {
                Some(d) => d.to_path_buf(),
                None if Path::new(DEBIAN_FASHION).is_dir() => PathBuf::from(DEBIAN_FASHION),
                None => cached_or_hint(
                    "fashion-mnist",
                    &cache_dir().join("fashion-mnist"),
                    "train-labels-idx1-ubyte",
                )?,
            };
            data::load_idx_dir(&dir, "fashion-mnist", &FASHION_CLASSES)?
        }
        "mnist" => {
            let Some(dir) = dir else {
                bail!("mnist needs --data-dir DIR: a folder with train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]")
            };
            data::load_idx_dir(dir, "mnist", &MNIST_CLASSES)?
        }
        other => {
            let names: Vec<_> = DATASETS.iter().map(|(n, _)| *n).collect();
            return Err(kd_core::registry::unknown("data set", other, &names).into());
        }
    };
    let train = match args.train_subset {
        Some(n) => splits.train.first(n)?,
        None => splits.train,
    };
    let test = match args.test_subset {
        Some(n) => splits.test.first(n)?,
        None => splits.test,
    };
    Ok(Splits { train, test })
}

fn cached_or_hint(name: &str, dir: &Path, marker: &str) -> Result<PathBuf> {
    if dir.join(marker).exists() || dir.join(format!("{marker}.gz")).exists() {
        return Ok(dir.to_path_buf());
    }
    bail!(
        "{name} is not in kd's cache ({}). Either pass --data-dir DIR with the data set's files, or put them in that folder.",
        dir.display()
    )
}
