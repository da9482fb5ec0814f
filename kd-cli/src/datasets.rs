//! Data sets by name: where their files are, and how they load.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::data::{self, Dataset, Normalization, Splits, SyntheticSpec};

use crate::hub::HubFile;

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

/// kd's cache folder: `$KD_CACHE` (an empty value counts as unset), else the
/// platform cache folder + `kd`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KD_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("kd")))
        .unwrap_or_else(|| PathBuf::from(".kd-cache"))
}

/// Loads the data set `args` names, with its subsets applied.
pub fn load(args: &DataArgs) -> Result<Splits> {
    let name = args.dataset();
    let dir = args.data_dir.as_deref();
    if let Some(d) = dir {
        if !d.is_dir() {
            bail!(
                "--data-dir {} {}: give the folder that holds the data set's files",
                d.display(),
                if d.exists() {
                    "is not a folder"
                } else {
                    "does not exist"
                }
            );
        }
    }
    let splits = match name {
        "synthetic" => data::synthetic(&SyntheticSpec {
            shape: args.synthetic_shape.unwrap_or([3, 32, 32]),
            ..SyntheticSpec::default()
        })?,
        "cifar10" => match dir {
            Some(d) => data::load_cifar10_dir(d)?,
            None => from_hub(&CIFAR10_HUB, args, data::tutorial_normalization())?,
        },
        "fashion-mnist" => match dir {
            Some(d) => data::load_idx_dir(d, "fashion-mnist", &FASHION_CLASSES)?,
            None if Path::new(DEBIAN_FASHION).is_dir() => {
                data::load_idx_dir(Path::new(DEBIAN_FASHION), "fashion-mnist", &FASHION_CLASSES)?
            }
            None => from_hub(
                &FASHION_HUB,
                args,
                Normalization {
                    mean: vec![],
                    std: vec![],
                },
            )?,
        },
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
    let subset = |set: data::Dataset, n: Option<usize>, flag: &str, split: &str| match n {
        Some(n) if n == 0 || n > set.len() => bail!(
            "{flag} {n}: the {split} split of `{}` has {} images: use a number from 1 to {}",
            set.name,
            set.len(),
            set.len()
        ),
        Some(n) => Ok(set.first(n)?),
        None => Ok(set),
    };
    let train = subset(
        splits.train,
        args.train_subset,
        "--train-subset",
        "training",
    )?;
    let test = subset(splits.test, args.test_subset, "--test-subset", "test")?;
    Ok(Splits { train, test })
}

/// Where a data set lives on the Hub, and how its parquet files are laid out.
pub struct HubSource {
    pub name: &'static str,
    pub repo: &'static str,
    pub train: &'static str,
    pub test: &'static str,
    pub image_column: &'static str,
    pub label_column: &'static str,
    pub shape: [usize; 3],
    pub classes: &'static [&'static str],
}

pub const CIFAR10_HUB: HubSource = HubSource {
    name: "cifar10",
    repo: "uoft-cs/cifar10",
    train: "plain_text/train-00000-of-00001.parquet",
    test: "plain_text/test-00000-of-00001.parquet",
    image_column: "img",
    label_column: "label",
    shape: [3, 32, 32],
    classes: &data::CIFAR10_CLASSES,
};

pub const FASHION_HUB: HubSource = HubSource {
    name: "fashion-mnist",
    repo: "zalando-datasets/fashion_mnist",
    train: "fashion_mnist/train-00000-of-00001.parquet",
    test: "fashion_mnist/test-00000-of-00001.parquet",
    image_column: "image",
    label_column: "label",
    shape: [1, 28, 28],
    classes: &FASHION_CLASSES,
};

/// Loads a Hub data set: from kd's decoded copy when there is one (seconds),
/// else by downloading its parquet files through hf-hub and decoding them once.
/// An empty `normalization` means "the training split's statistics".
fn from_hub(src: &HubSource, args: &DataArgs, normalization: Normalization) -> Result<Splits> {
    let repo = args.hub_repo.as_deref().unwrap_or(src.repo);
    let revision = args.revision.as_deref().unwrap_or("main");
    let cached = cache_dir().join(src.name).join(format!(
        "{}@{revision}.safetensors",
        repo.replace('/', "--")
    ));
    let (train, test) = match read_decoded(&cached) {
        Some(d) => d,
        None => {
            let (owner, name) = repo
                .split_once('/')
                .with_context(|| format!("--hub-repo `{repo}` is not OWNER/NAME"))?;
            let fetch = |path: &str| {
                let file = HubFile {
                    owner: owner.into(),
                    name: name.into(),
                    revision: Some(revision.to_string()),
                    path: path.into(),
                };
                crate::hub::download(crate::hub::Kind::Dataset, &file).with_context(|| {
                    format!("{} is not on this machine. Alternatives: pass --data-dir DIR with the data set's files (see README), or fill the cache once with network access and then use --offline", src.name)
                })
            };
            let (train_path, test_path) = (fetch(src.train)?, fetch(src.test)?);
            let decode = |path: &Path, what: &str| -> Result<data::Decoded> {
                let bar = indicatif::ProgressBar::new(0)
                    .with_message(format!("decoding {} {what}", src.name));
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} {bar:30} {pos}/{len} images  {per_sec}  ETA {eta}",
                    )
                    .expect("valid template"),
                );
                let d = data::read_parquet_images(
                    path,
                    src.image_column,
                    src.label_column,
                    src.shape,
                    |done, total| {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    },
                )?;
                bar.finish_and_clear();
                Ok(d)
            };
            let (train, test) = (decode(&train_path, "train")?, decode(&test_path, "test")?);
            write_decoded(&cached, &train, &test)?;
            tracing::info!("kept a decoded copy in {}", cached.display());
            (train, test)
        }
    };
    let classes: Vec<String> = src.classes.iter().map(|c| c.to_string()).collect();
    let normalization = if normalization.mean.is_empty() {
        data::channel_stats(&train.images, src.shape)
    } else {
        normalization
    };
    Ok(Splits {
        train: Dataset::new(
            src.name,
            train.images,
            train.labels,
            src.shape,
            classes.clone(),
            normalization.clone(),
        )?,
        test: Dataset::new(
            src.name,
            test.images,
            test.labels,
            src.shape,
            classes,
            normalization,
        )?,
    })
}

/// kd's decoded copy: four u8/u32 tensors in one safetensors file.
fn write_decoded(path: &Path, train: &data::Decoded, test: &data::Decoded) -> Result<()> {
    std::fs::create_dir_all(path.parent().expect("a cache file has a folder"))
        .with_context(|| format!("cannot create kd's cache folder for {}", path.display()))?;
    let labels = |d: &data::Decoded| {
        d.labels
            .iter()
            .flat_map(|l| l.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let (train_labels, test_labels) = (labels(train), labels(test));
    let tensors = [
        (
            "train.images",
            safetensors::Dtype::U8,
            train.images.as_slice(),
        ),
        (
            "train.labels",
            safetensors::Dtype::U32,
            train_labels.as_slice(),
        ),
        (
            "test.images",
            safetensors::Dtype::U8,
            test.images.as_slice(),
        ),
        (
            "test.labels",
            safetensors::Dtype::U32,
            test_labels.as_slice(),
        ),
    ];
    let views = tensors
        .iter()
        .map(|(n, dtype, bytes)| {
            let count = bytes.len()
                / if *dtype == safetensors::Dtype::U8 {
                    1
                } else {
                    4
                };
            Ok((
                *n,
                safetensors::tensor::TensorView::new(*dtype, vec![count], bytes)?,
            ))
        })
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| anyhow::anyhow!("cannot encode the decoded data set: {e:?}"))?;
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| anyhow::anyhow!("cannot encode the decoded data set: {e:?}"))?;
    kd_core::weights::write_atomic(path, &bytes)?;
    Ok(())
}

fn read_decoded(path: &Path) -> Option<(data::Decoded, data::Decoded)> {
    let bytes = std::fs::read(path).ok()?;
    let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
    let get = |n: &str| st.tensor(n).ok().map(|t| t.data().to_vec());
    let labels = |b: Vec<u8>| {
        b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    Some((
        data::Decoded {
            images: get("train.images")?,
            labels: labels(get("train.labels")?),
        },
        data::Decoded {
            images: get("test.images")?,
            labels: labels(get("test.labels")?),
        },
    ))
}
