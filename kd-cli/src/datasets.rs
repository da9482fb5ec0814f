//! Loading a registered data set ([`DatasetPlugin`]) the way its registration
//! says, with the Hub fetcher (hf-hub) and kd's decoded cache; subsets.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kd_core::registry::{self, DatasetPlugin, HubSource, ImageFiles};
use kd_train::data::{self, decoded, Dataset, Splits};

use crate::hub::HubFile;

use crate::config::{DataArgs, AUTO};

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
    let image_flags = args.image_size.is_some() || args.skip_bad_images.is_some();
    if plugin.images.is_none() && image_flags {
        crate::usage!("--image-size and --skip-bad-images are for a folder of images (--dataset folder), and `{}` has its own images: leave them out", plugin.name);
    }
    let splits = if let Some(generate) = plugin.generate {
        generate(args.synthetic_shape)?
    } else if let (Some(images), Some(d)) = (&plugin.images, dir) {
        image_folder(plugin, images, d, args)?
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
    normalized(Splits { train, test }, args)
}

/// `splits` normalised with `--mean` and `--std` when they are given.
fn normalized(mut splits: Splits, args: &DataArgs) -> Result<Splits> {
    let (Some(mean), Some(std)) = (&args.mean, &args.std) else {
        return Ok(splits);
    };
    let channels = splits.train.shape[0];
    for (flag, v) in [("--mean", mean), ("--std", std)] {
        if v.len() != 1 && v.len() != channels {
            crate::usage!("{flag} has {} values and `{}` has {channels} channel(s): give one value per channel, or one for all", v.len(), splits.train.name);
        }
    }
    let per_channel = |v: &Vec<f32>| (0..channels).map(|c| v[c.min(v.len() - 1)]).collect();
    let norm = data::Normalization {
        mean: per_channel(mean),
        std: per_channel(std),
    };
    splits.train.normalization = norm.clone();
    splits.test.normalization = norm;
    Ok(splits)
}

/// A folder of images: from kd's decoded copy when its files are the ones it
/// was decoded from, else decoded (on every core) and kept for next time.
fn image_folder(
    plugin: &DatasetPlugin,
    images: &ImageFiles,
    dir: &Path,
    args: &DataArgs,
) -> Result<Splits> {
    let options = data::ImageOptions {
        image_size: args.image_size,
        skip_bad_images: args.skip_bad_images.unwrap_or(false),
    };
    let files = (images.files)(dir)?;
    let key = decoded::key(dir, &files, &format!("{options:?}"))?;
    let cached = kd_train::cache_dir()
        .join(plugin.name)
        .join(format!("{key}.safetensors"));
    let count = |s: &Splits| s.train.len() + s.test.len();
    if let Some(splits) = decoded::read_splits(&cached) {
        tracing::info!(
            "{} images of {} from kd's decoded copy {}",
            count(&splits),
            dir.display(),
            cached.display()
        );
        return Ok(splits);
    }
    let started = std::time::Instant::now();
    let splits = (images.read)(dir, &options)?;
    let took = started.elapsed().as_secs_f64();
    let n = count(&splits);
    match decoded::write_splits(&cached, &splits) {
        Ok(()) => tracing::info!(
            "decoded {n} images of {} in {took:.1} s; kept a copy in {}",
            dir.display(),
            cached.display()
        ),
        // The copy only saves time: a full cache disk must not stop a run.
        Err(e) => tracing::warn!(
            "decoded {n} images of {} in {took:.1} s but cannot keep a copy: {e}",
            dir.display()
        ),
    }
    Ok(splits)
}

/// Where kd keeps its decoded copy of a Hub data set.
fn decoded_path(src: &DatasetPlugin, hub: &HubSource, args: &DataArgs) -> PathBuf {
    let repo = args.hub_repo.as_deref().unwrap_or(hub.repo);
    let revision = args.revision.as_deref().unwrap_or("main");
    kd_train::cache_dir().join(src.name).join(format!(
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
    let (train, test) = match decoded::read(&cached) {
        Some((train, test, _)) => (train, test),
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
            decoded::write(&cached, &train, &test, None)?;
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
