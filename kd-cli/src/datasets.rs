//! Loading a registered data set ([`DatasetPlugin`]) the way its registration
//! says, with the Hub fetcher (hf-hub) and kd's decoded cache; subsets.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::data::{self, Dataset, Splits};
use kd_core::registry::{self, DatasetPlugin, HubSource};

use crate::hub::HubFile;

use crate::config::DataArgs;

/// kd's cache folder: `$KD_CACHE` (an empty value counts as unset), else the
/// platform cache folder + `kd`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KD_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("kd")))
        .unwrap_or_else(|| PathBuf::from(".kd-cache"))
}

/// The name `--dataset auto` and no `--dataset` stand for.
pub const AUTO: &str = "auto";

/// `args` with `auto` (or no data set) made concrete: the default data set
/// when it is on this machine or can be downloaded (which fills the Hub cache
/// that [`load`] then reads), else the offline fallback compiled into the
/// binary, with a one-line notice that says why and how to get the default.
pub fn resolve(args: &DataArgs) -> Result<DataArgs> {
    if args.dataset.as_deref().is_some_and(|d| d != AUTO) {
        return Ok(args.clone());
    }
    // A Hub repository or revision the user named is for the default data
    // set: failing to reach it is an error, not a reason to train on another.
    let named_source = args.hub_repo.is_some() || args.revision.is_some();
    let default = registry::default_dataset()?;
    let fallback = registry::datasets()
        .into_iter()
        .find(|d| d.offline_fallback);
    let name = match (available(default, args), fallback) {
        (Err(why), _) if named_source => return Err(why),
        (Err(why), Some(f)) => {
            tracing::debug!("{} is not available: {why:#}", default.name);
            tracing::warn!(
                "{} is not on this machine and cannot be downloaded: using `{}` instead. For {}, run once with network access or pass --data-dir DIR with its files (--dataset {} then requires it)",
                default.name,
                f.name,
                default.name,
                default.name
            );
            f.name
        }
        _ => default.name,
    };
    Ok(DataArgs {
        dataset: Some(name.to_string()),
        ..args.clone()
    })
}

/// The run's data set made concrete ([`resolve`]) and, when `--augment`
/// names no transforms, the data set's own training transforms.
pub fn resolve_run(cfg: &mut crate::config::RunConfig) -> Result<()> {
    cfg.data = resolve(&cfg.data)?;
    if cfg.hyper.augment.is_none() {
        let name = cfg.data.dataset.as_deref().unwrap_or(AUTO);
        cfg.hyper.augment = Some(registry::dataset(name)?.augment);
    }
    Ok(())
}

/// Whether `plugin` can be had without loading it: generated, a folder given
/// or installed, kd's decoded copy, or its Hub files (downloaded if need be).
fn available(plugin: &DatasetPlugin, args: &DataArgs) -> Result<()> {
    let local = plugin.local.iter().any(|p| Path::new(p).is_dir());
    if plugin.generate.is_some() || args.data_dir.is_some() || local {
        return Ok(());
    }
    let Some(hub) = &plugin.hub else {
        bail!("it has no download source");
    };
    if decoded_path(plugin, hub, args).is_file() {
        return Ok(());
    }
    for path in [hub.train, hub.test] {
        hub_file(plugin, hub, args, path)?;
    }
    Ok(())
}

/// Loads the data set `args` names, with its subsets applied.
pub fn load(args: &DataArgs) -> Result<Splits> {
    let args = &resolve(args)?;
    let plugin = match &args.dataset {
        Some(name) => registry::dataset(name)?,
        None => registry::default_dataset()?,
    };
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
    if let (None, Some(_)) = (plugin.generate, args.synthetic_shape) {
        let [c, h, w] = plugin.shape;
        crate::usage!("--synthetic-shape sets the images of a generated data set, and `{}` has its own ({c},{h},{w}): leave it out (a model must not record a setting that had no effect)", plugin.name);
    }
    let splits = if let Some(generate) = plugin.generate {
        generate(args.synthetic_shape)?
    } else if let Some(d) = dir {
        let Some(read_dir) = plugin.read_dir else {
            bail!(
                "data set `{}` is not read from a folder: drop --data-dir",
                plugin.name
            );
        };
        read_dir(d)?
    } else if let (Some(read_dir), Some(local)) = (
        plugin.read_dir,
        plugin.local.iter().map(Path::new).find(|p| p.is_dir()),
    ) {
        read_dir(local)?
    } else if let Some(hub) = &plugin.hub {
        from_hub(plugin, hub, args)?
    } else {
        bail!(
            "data set `{}` needs --data-dir DIR with its files ({})",
            plugin.name,
            plugin.summary
        );
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

/// Where kd keeps its decoded copy of a Hub data set.
fn decoded_path(src: &DatasetPlugin, hub: &HubSource, args: &DataArgs) -> PathBuf {
    let repo = args.hub_repo.as_deref().unwrap_or(hub.repo);
    let revision = args.revision.as_deref().unwrap_or("main");
    cache_dir().join(src.name).join(format!(
        "{}@{}.safetensors",
        // Hub repository names cannot hold `--`; revisions can, so theirs
        // is escaped as a URL would be (one file name per revision).
        repo.replace('/', "--"),
        revision.replace('%', "%25").replace('/', "%2F")
    ))
}

/// One of a Hub data set's files, from the Hub cache or downloaded into it.
fn hub_file(src: &DatasetPlugin, hub: &HubSource, args: &DataArgs, path: &str) -> Result<PathBuf> {
    let repo = args.hub_repo.as_deref().unwrap_or(hub.repo);
    // Settings read back on --resume did not pass through the flags' checks.
    let revision = args.revision.as_deref().unwrap_or("main");
    crate::hub::parse_revision(revision).map_err(|e| anyhow::anyhow!("--revision: {e}"))?;
    crate::hub::parse_repo(repo).map_err(|e| anyhow::anyhow!("--hub-repo: {e}"))?;
    let (owner, name) = repo.split_once('/').context("--hub-repo is OWNER/NAME")?;
    let file = HubFile {
        owner: owner.into(),
        name: name.into(),
        revision: Some(revision.to_string()),
        path: path.into(),
    };
    crate::hub::download(crate::hub::Kind::Dataset, &file).with_context(|| {
        format!("{} is not on this machine. Alternatives: pass --data-dir DIR with the data set's files (see README), or fill the cache once with network access and then use --offline", src.name)
    })
}

/// Loads a Hub data set: from kd's decoded copy when there is one (seconds),
/// else by downloading its parquet files through hf-hub and decoding them once.
fn from_hub(src: &DatasetPlugin, hub: &HubSource, args: &DataArgs) -> Result<Splits> {
    let cached = decoded_path(src, hub, args);
    let (train, test) = match read_decoded(&cached) {
        Some(d) => d,
        None => {
            let fetch = |path: &str| hub_file(src, hub, args, path);
            let (train_path, test_path) = (fetch(hub.train)?, fetch(hub.test)?);
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
                    hub.image_column,
                    hub.label_column,
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
    let normalization = match src.normalization {
        Some(n) => n(),
        None => data::channel_stats(&train.images, src.shape),
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
