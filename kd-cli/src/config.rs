//! Run settings: flags, a TOML file, and the tutorial's defaults, in that order.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use kd_core::train::TrainConfig;
use serde::{Deserialize, Serialize};

/// Which data, and how much of it.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct DataArgs {
    /// Data set: cifar10, fashion-mnist, mnist or synthetic [default: cifar10].
    #[arg(long)]
    pub dataset: Option<String>,
    /// A local folder with the data set's files (CIFAR-10 binary batches, or IDX
    /// files for MNIST / Fashion-MNIST). Without it kd looks in its cache and
    /// downloads what is missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Train on the first N training images only (the tutorial's CPU note).
    #[arg(long, value_name = "N")]
    pub train_subset: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_name = "N")]
    pub test_subset: Option<usize>,
    /// The Hub data set repository to download from (OWNER/NAME) [default:
    /// uoft-cs/cifar10, zalando-datasets/fashion_mnist].
    #[arg(long, value_name = "OWNER/NAME")]
    pub hub_repo: Option<String>,
    /// The revision (branch, tag or commit) of the Hub data set [default: main].
    #[arg(long, value_name = "REV")]
    pub revision: Option<String>,
    /// Image shape C,H,W of the synthetic data set [default: 3,32,32].
    #[arg(long = "synthetic-shape", value_name = "C,H,W", value_parser = parse_shape)]
    pub synthetic_shape: Option<[usize; 3]>,
}

impl DataArgs {
    pub fn or(self, file: Self) -> Self {
        Self {
            dataset: self.dataset.or(file.dataset),
            data_dir: self.data_dir.or(file.data_dir),
            train_subset: self.train_subset.or(file.train_subset),
            test_subset: self.test_subset.or(file.test_subset),
            synthetic_shape: self.synthetic_shape.or(file.synthetic_shape),
            hub_repo: self.hub_repo.or(file.hub_repo),
            revision: self.revision.or(file.revision),
        }
    }

    pub fn dataset(&self) -> &str {
        self.dataset.as_deref().unwrap_or("cifar10")
    }
}

/// How to train.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct HyperArgs {
    /// Passes over the training set [default: 10].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Test the student after every Nth epoch; 0 tests only after the last. Testing
    /// changes no weights but takes time (on a CPU a teacher's pass over 10,000 test
    /// images costs about a third of an epoch of 10,000) [default: 1].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Images per optimizer step [default: 128].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f64>,
    /// Seed for initialisation, data order and dropout [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Weight of cross-entropy on the labels when a method distils [default: 0.75].
    #[arg(long, allow_negative_numbers = true)]
    pub ce_weight: Option<f64>,
    /// Weight of the method's distillation loss [default: 0.25].
    #[arg(long, allow_negative_numbers = true)]
    pub distill_weight: Option<f64>,
    /// Device: auto, cpu or cuda:N [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// Teacher-output cache: `memory` computes the teacher's outputs over the training
    /// set once and reuses them every epoch; `disk` keeps them memory-mapped in kd's
    /// cache folder ($KD_CACHE), where later runs with the same teacher and data reuse
    /// them; `off` runs the teacher every batch; `auto` reuses a file on disk if there
    /// is one, else picks memory up to 512 MB and disk above [default: auto].
    #[arg(long, value_name = "MODE")]
    pub teacher_cache: Option<String>,
    /// A method hyper-parameter, NAME=VALUE (repeatable), e.g. --param temperature=4.
    /// `kd list` shows what each method takes.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    #[serde(skip)]
    pub param: Vec<(String, f64)>,
    /// Method hyper-parameters (the config file's [params] table).
    #[arg(skip)]
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, f64>,
}

impl HyperArgs {
    pub fn or(self, file: Self) -> Self {
        let mut params = file.params;
        params.extend(self.params);
        params.extend(self.param.iter().cloned());
        Self {
            epochs: self.epochs.or(file.epochs),
            batch_size: self.batch_size.or(file.batch_size),
            eval_every: self.eval_every.or(file.eval_every),
            lr: self.lr.or(file.lr),
            seed: self.seed.or(file.seed),
            ce_weight: self.ce_weight.or(file.ce_weight),
            distill_weight: self.distill_weight.or(file.distill_weight),
            device: self.device.or(file.device),
            teacher_cache: self.teacher_cache.or(file.teacher_cache),
            param: Vec::new(),
            params,
        }
    }

    /// Fills every unset value with the tutorial's default.
    pub fn resolved(self) -> Self {
        let d = TrainConfig::default();
        Self {
            epochs: Some(self.epochs.unwrap_or(d.epochs)),
            batch_size: Some(self.batch_size.unwrap_or(d.batch_size)),
            lr: Some(self.lr.unwrap_or(d.lr)),
            seed: Some(self.seed.unwrap_or(d.seed)),
            ce_weight: Some(self.ce_weight.unwrap_or(d.ce_weight)),
            distill_weight: Some(self.distill_weight.unwrap_or(d.distill_weight)),
            device: Some(self.device.unwrap_or_else(|| "auto".into())),
            ..self
        }
    }

    /// The trainer's settings (call on [`HyperArgs::resolved`] values).
    pub fn train_config(&self) -> TrainConfig {
        let d = TrainConfig::default();
        TrainConfig {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            seed: self.seed.unwrap_or(d.seed),
            ce_weight: self.ce_weight.unwrap_or(d.ce_weight),
            distill_weight: self.distill_weight.unwrap_or(d.distill_weight),
            eval_every: self.eval_every.unwrap_or(d.eval_every),
        }
    }
}

/// Everything `kd train` takes besides its output paths; also the TOML schema.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct RunConfig {
    /// Architecture to train (`kd list` shows them).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Distillation method (`kd list` shows them) [default: plain supervised training,
    /// cross-entropy on the labels without a teacher].
    #[arg(long, value_name = "NAME")]
    pub method: Option<String>,
    /// The teacher's weights: a .safetensors file, or hf://OWNER/REPO[@REV]/FILE.
    #[arg(long, value_name = "FILE")]
    pub teacher: Option<String>,
    /// The teacher's architecture, for a teacher file without kd metadata.
    #[arg(long, value_name = "NAME")]
    pub teacher_arch: Option<String>,
    /// Where the weights go (the command's --out).
    #[arg(skip)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    #[serde(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    #[serde(flatten)]
    pub hyper: HyperArgs,
}

impl RunConfig {
    pub fn or(self, file: Self) -> Self {
        Self {
            arch: self.arch.or(file.arch),
            method: self.method.or(file.method),
            teacher: self.teacher.or(file.teacher),
            teacher_arch: self.teacher_arch.or(file.teacher_arch),
            out: self.out.or(file.out),
            data: self.data.or(file.data),
            hyper: self.hyper.or(file.hyper),
        }
    }

    /// Merges a `--config` file under the flags (flags win).
    pub fn with_file(self, path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) => Ok(self.or(read_toml(p)?)),
            None => Ok(self.or(Self::default())),
        }
    }

    /// The same settings with every local path made absolute (against the
    /// current folder), so that they mean the same from anywhere.
    pub fn absolute(mut self) -> Result<Self> {
        let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()));
        if let Some(t) = self.teacher.as_deref().filter(|t| !t.starts_with("hf://")) {
            self.teacher = Some(abs(Path::new(t))?.to_string_lossy().into_owned());
        }
        if let Some(d) = &self.data.data_dir {
            self.data.data_dir = Some(abs(d)?);
        }
        if let Some(o) = &self.out {
            self.out = Some(abs(o)?);
        }
        Ok(self)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings serialise")
    }
}

pub fn read_toml(path: &Path) -> Result<RunConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let known = toml::to_string(&RunConfig {
        data: DataArgs {
            dataset: Some(String::new()),
            data_dir: Some(PathBuf::new()),
            train_subset: Some(0),
            test_subset: Some(0),
            synthetic_shape: Some([0; 3]),
            hub_repo: Some(String::new()),
            revision: Some(String::new()),
        },
        hyper: HyperArgs {
            params: BTreeMap::from([(String::new(), 0.0)]),
            ..HyperArgs::default().resolved()
        },
        arch: Some(String::new()),
        method: Some(String::new()),
        teacher: Some(String::new()),
        teacher_arch: Some(String::new()),
        out: Some(PathBuf::new()),
    })
    .expect("serialises");
    let known: toml::Table = known.parse().expect("own output parses");
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    for key in table.keys() {
        if !known.contains_key(key) {
            let names: Vec<_> = known.keys().map(String::as_str).collect();
            bail!(
                "{}: unknown setting `{key}`. Known settings: {}",
                path.display(),
                names.join(", ")
            );
        }
    }
    toml::from_str(&text)
        .with_context(|| format!("{}: a setting has the wrong type", path.display()))
}

pub fn parse_shape(s: &str) -> std::result::Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split([',', 'x'])
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}` is not a shape: write C,H,W, e.g. 3,32,32"))?;
    match v[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(format!(
            "`{s}` is not a shape: write three positive numbers C,H,W, e.g. 3,32,32"
        )),
    }
}

pub fn parse_param(s: &str) -> std::result::Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE, e.g. temperature=4"))?;
    let value: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` in `{s}` is not a number"))?;
    Ok((name.trim().to_string(), value))
}
