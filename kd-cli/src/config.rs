//! Run settings: flags, a TOML file, and the tutorial's defaults, in that order.
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, CommandFactory};
use kd_core::device::DeviceSpec;
use kd_train::train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::teacher_cache::CacheMode;

/// The name `--dataset auto` and no `--dataset` stand for: the default data
/// set when it can be had, else the offline fallback (`datasets::resolve`).
pub const AUTO: &str = "auto";

/// Which data, and how much of it.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct DataArgs {
    /// Data set (`kd list` shows them), or `auto`: the default one (the tutorial's
    /// CIFAR-10) when it is on this machine or can be downloaded, else the sample
    /// compiled into kd (10,000 + 10,000 Fashion-MNIST images) [default: auto].
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// A local folder with the data set's files (CIFAR-10 binary batches, or IDX
    /// files for MNIST / Fashion-MNIST). Without it kd looks in its cache and
    /// downloads what is missing.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Train on the first N training images only (the tutorial's CPU note).
    #[arg(long, value_name = "N", value_parser = positive)]
    pub train_subset: Option<usize>,
    /// Evaluate on the first N test images only.
    #[arg(long, value_name = "N", value_parser = positive)]
    pub test_subset: Option<usize>,
    /// The Hub data set repository to download from (OWNER/NAME) [default: the one
    /// the data set registers].
    #[arg(long, value_name = "OWNER/NAME", value_parser = crate::hub::parse_repo)]
    pub hub_repo: Option<String>,
    /// The revision (branch, tag or commit) of the Hub data set [default: main].
    #[arg(long, value_name = "REV", value_parser = crate::hub::parse_revision)]
    pub revision: Option<String>,
    /// Image shape C,H,W of a generated data set such as `synthetic` [default: its own].
    #[arg(long = "synthetic-shape", value_name = "C,H,W", value_parser = parse_shape)]
    pub synthetic_shape: Option<[usize; 3]>,
    /// The side, in pixels, that a folder of images (`--dataset folder`) is
    /// resized and centre-cropped to [default: the training images' median].
    #[arg(long, value_name = "PIXELS", value_parser = image_size)]
    pub image_size: Option<usize>,
    /// Leave out (and count in one line) the images of a folder that cannot be
    /// decoded, instead of stopping at the first.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub skip_bad_images: Option<bool>,
    /// Per-channel means (0 to 1) to normalise images with, one per channel or
    /// one for all [default: the data set's own, or a folder's training images'].
    #[arg(long, value_name = "M,M,M", value_delimiter = ',', value_parser = channel_mean, requires = "std")]
    pub mean: Option<Vec<f32>>,
    /// Per-channel standard deviations to normalise images with (greater than 0, at most 1).
    #[arg(long, value_name = "S,S,S", value_delimiter = ',', value_parser = channel_std, requires = "mean")]
    pub std: Option<Vec<f32>>,
}

impl DataArgs {
    /// The data set's name: the one given, else [`AUTO`].
    pub fn dataset(&self) -> String {
        self.dataset.clone().unwrap_or_else(|| AUTO.into())
    }
}

/// How to train.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct HyperArgs {
    /// Passes over the training set [default: 10].
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Test the student after every Nth epoch; 0 tests only after the last. Testing
    /// changes no weights but takes time (on a CPU a teacher's pass over 10,000 test
    /// images costs about a third of an epoch of 10,000) [default: 1].
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Images per optimizer step [default: 128].
    #[arg(long, value_parser = positive)]
    pub batch_size: Option<usize>,
    /// Learning rate (the schedule's starting rate) [default: 0.001].
    #[arg(long, allow_negative_numbers = true, value_parser = positive_number)]
    pub lr: Option<f64>,
    /// Optimizer: adam, adamw or sgd (`kd list` shows them) [default: adam].
    #[arg(long, value_name = "NAME")]
    pub optimizer: Option<String>,
    /// SGD momentum, 0 to 1 (the CIFAR recipes use 0.9) [default: 0].
    #[arg(long, value_name = "M", value_parser = fraction)]
    pub momentum: Option<f64>,
    /// SGD dampening of the momentum, 0 to 1 [default: 0].
    #[arg(long, value_name = "D", value_parser = fraction)]
    pub dampening: Option<f64>,
    /// SGD with Nesterov momentum (needs --momentum above 0).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub nesterov: Option<bool>,
    /// Weight decay, 0 to 1: added to the gradient (sgd, adam) or decoupled (adamw)
    /// [default: 0; adamw 0.01].
    #[arg(long, value_name = "WD", value_parser = fraction)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule, stepped per epoch: constant, multistep (--milestones,
    /// --gamma) or cosine (down to --min-lr) [default: constant].
    #[arg(long, value_name = "NAME")]
    pub lr_schedule: Option<String>,
    /// Epochs at which multistep multiplies the rate by --gamma, e.g. 150,180,210
    /// (counted after the warm-up).
    #[arg(long, value_name = "E,E,...", value_delimiter = ',', value_parser = positive)]
    pub milestones: Option<Vec<usize>>,
    /// The factor multistep applies at each milestone [default: 0.1].
    #[arg(long, value_parser = positive_number)]
    pub gamma: Option<f64>,
    /// The cosine schedule's final rate [default: 0].
    #[arg(long, value_parser = weight)]
    pub min_lr: Option<f64>,
    /// Epochs of linear warm-up to the learning rate before the schedule starts
    /// [default: 0].
    #[arg(long, value_name = "N")]
    pub warmup_epochs: Option<usize>,
    /// Random transforms of the training images: none, or crop-flip (RandomCrop with
    /// 4 pixels of zero padding, then a horizontal flip half the time). A random
    /// transform turns the teacher cache off: the teacher must see the student's view
    /// [default: the data set's own: crop-flip for CIFAR-100, none for the others].
    #[arg(long, value_name = "NAME", value_parser = augment)]
    pub augment: Option<kd_train::data::transform::Augment>,
    /// Seed for initialisation, data order and dropout, 0 to 2^63-1 [default: 42].
    #[arg(long, value_parser = seed)]
    pub seed: Option<u64>,
    /// Weight of cross-entropy on the labels when a method distils [default: 0.75].
    #[arg(long, allow_negative_numbers = true, value_parser = weight)]
    pub ce_weight: Option<f64>,
    /// Weight of the method's distillation loss [default: 0.25].
    #[arg(long, allow_negative_numbers = true, value_parser = weight)]
    pub distill_weight: Option<f64>,
    /// Device: auto, cpu or cuda:N [default: auto].
    #[arg(long, value_parser = device)]
    pub device: Option<DeviceSpec>,
    /// Teacher-output cache: where a frozen teacher's outputs over the training set are
    /// kept between epochs, so that it runs once instead of every epoch [default: auto].
    #[arg(long, value_name = "MODE", value_enum)]
    pub teacher_cache: Option<CacheMode>,
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
    /// Fills every unset value with the trainer's default. The two structs
    /// meet through their TOML keys, so a setting's default is stated once,
    /// in `TrainConfig::default()`, and no list of fields is kept here.
    pub fn resolved(self) -> Self {
        let mut params = self.params;
        params.extend(self.param.iter().cloned());
        let mut table = toml::Table::try_from(Self {
            param: Vec::new(),
            params,
            ..self
        })
        .expect("settings serialise");
        for (key, value) in
            toml::Table::try_from(TrainConfig::default()).expect("defaults serialise")
        {
            table.entry(key).or_insert(value);
        }
        let mut resolved: Self = table.try_into().expect("resolved settings deserialise");
        resolved.device.get_or_insert_default();
        resolved
    }

    /// The trainer's settings: these values where set, its defaults elsewhere
    /// (keys the trainer does not take, such as `device`, are ignored by it).
    pub fn train_config(&self) -> TrainConfig {
        let given = toml::Table::try_from(self).expect("settings serialise");
        let mut table = toml::Table::try_from(TrainConfig::default()).expect("defaults serialise");
        table.extend(given);
        table.try_into().expect("settings deserialise")
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
    /// The entry of a torch.save teacher checkpoint that holds its state_dict
    /// (default: "model", "state_dict" or the top level, the first with tensors).
    #[arg(long, value_name = "NAME")]
    pub teacher_key: Option<String>,
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
    /// These settings, with the ones they lack taken from `base` (tables such
    /// as `params` merged key by key): flags over a checkpoint's settings.
    /// One rule for every setting, through their TOML form.
    pub fn or(self, base: Self) -> Self {
        fn merge(top: &mut toml::Table, base: toml::Table) {
            for (key, value) in base {
                match (top.get_mut(&key), value) {
                    (Some(toml::Value::Table(t)), toml::Value::Table(b)) => merge(t, b),
                    (Some(_), _) => {}
                    (None, value) => {
                        top.insert(key, value);
                    }
                }
            }
        }
        let table = |c: Self| toml::Table::try_from(c.folded()).expect("settings serialise");
        let mut top = table(self);
        merge(&mut top, table(base));
        top.try_into().expect("merged settings deserialise")
    }

    /// `--param` values folded into `params`, as they are stored.
    fn folded(mut self) -> Self {
        let given = std::mem::take(&mut self.hyper.param);
        self.hyper.params.extend(given);
        self
    }

    /// The same settings with every local path made absolute (against the
    /// current folder), so that they mean the same from anywhere.
    pub fn absolute(mut self) -> Result<Self> {
        let abs = |p: &Path| {
            std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
        };
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

/// Every setting of `kd train` (its long flags, as config keys) and whether
/// it changes a run's result: resuming with another value of one that does
/// is refused without `--force`. A test fails when a flag is missing here,
/// so a new setting cannot be added without saying which it is.
pub const SETTINGS: &[(&str, bool)] = &[
    ("arch", true),
    ("method", true),
    ("teacher", true),
    ("teacher_arch", true),
    ("teacher_key", true),
    ("dataset", true),
    ("data_dir", true),
    ("train_subset", true),
    ("test_subset", true),
    ("hub_repo", true),
    ("revision", true),
    ("synthetic_shape", true),
    ("image_size", true),
    ("skip_bad_images", true),
    ("mean", true),
    ("std", true),
    ("batch_size", true),
    ("lr", true),
    ("seed", true),
    ("ce_weight", true),
    ("distill_weight", true),
    ("param", true),
    ("params", true),
    ("optimizer", true),
    ("momentum", true),
    ("dampening", true),
    ("nesterov", true),
    ("weight_decay", true),
    ("lr_schedule", true),
    ("milestones", true),
    ("gamma", true),
    ("min_lr", true),
    ("warmup_epochs", true),
    ("augment", true),
    // More epochs continue a run; the others change where and how it runs.
    ("epochs", false),
    ("eval_every", false),
    ("device", false),
    ("teacher_cache", false),
    ("quiet", false),
    ("offline", false),
    ("config", false),
    ("out", false),
    ("run_dir", false),
    ("checkpoint_every", false),
    ("keep_checkpoints", false),
    ("resume", false),
    ("force", false),
    ("metrics", false),
    ("overwrite", false),
];

/// `--config FILE`, read as flags: each key is a long flag's name (with
/// underscores), each value its value (an array is joined with commas, `true`
/// sets a switch), and a `[params]` table gives `--param NAME=VALUE`. The
/// flags are placed before the command line's own, which win, since a later
/// flag overrides an earlier one. So every flag is a config key, with the
/// same checks, and no list of keys is kept anywhere else.
///
/// `args` is the whole command line; it comes back unchanged when it names
/// no config file.
pub fn expand_config_file(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(sub_at) = args
        .iter()
        .skip(1)
        .position(|a| !a.to_string_lossy().starts_with('-'))
    else {
        return Ok(args);
    };
    let sub_at = sub_at + 1;
    let sub = args[sub_at].to_string_lossy().into_owned();
    let mut file = None;
    for (i, a) in args.iter().enumerate().skip(sub_at + 1) {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            file = args.get(i + 1).map(PathBuf::from);
        } else if let Some(v) = a.strip_prefix("--config=") {
            file = Some(PathBuf::from(v));
        }
    }
    let Some(file) = file else { return Ok(args) };
    let command = crate::Cli::command();
    let Some(sub_cmd) = command.find_subcommand(&sub) else {
        return Ok(args);
    };
    kd_core::weights::regular_file(&file).context("--config")?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", file.display()))?;
    // The command's flags and the global ones (--quiet, --offline).
    let globals = command.get_arguments().filter(|a| a.is_global_set());
    let known: Vec<String> = sub_cmd
        .get_arguments()
        .chain(globals)
        .filter_map(|a| a.get_long())
        .filter(|l| *l != "config" && *l != "help")
        .map(|l| l.replace('-', "_"))
        .collect();
    let mut flags: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let line = text
            .lines()
            .position(|l| {
                let l = l.trim_start().trim_start_matches('"');
                l.strip_prefix(key.as_str()).is_some_and(|r| {
                    r.trim_start()
                        .trim_start_matches('"')
                        .trim_start()
                        .starts_with('=')
                })
            })
            .map(|n| format!(", line {}", n + 1))
            .unwrap_or_default();
        let at = || format!("{}{line}: `{key}`", file.display());
        let entry: Vec<String> = if key == "params" {
            let Some(params) = value.as_table() else {
                bail!("{}: [params] must be a table of NAME = number", at());
            };
            params
                .iter()
                .map(
                    |(k, v)| match v.as_float().or(v.as_integer().map(|i| i as f64)) {
                        Some(x) => Ok(vec!["--param".to_string(), format!("{k}={x}")]),
                        None => bail!("{}.{k} = {v}: a method hyper-parameter is a number", at()),
                    },
                )
                .collect::<Result<Vec<_>>>()?
                .concat()
        } else {
            if !known.contains(key) {
                let mut names = known.clone();
                names.push("params".into());
                bail!(
                    "{}: unknown setting `{key}`. Known settings: {}",
                    file.display(),
                    names.join(", ")
                );
            }
            let flag = format!("--{}", key.replace('_', "-"));
            let takes_value = sub_cmd
                .get_arguments()
                .chain(command.get_arguments())
                .find(|a| a.get_long() == Some(&key.replace('_', "-")))
                .is_some_and(|a| a.get_action().takes_values());
            match value {
                toml::Value::Boolean(b) if !takes_value => {
                    if *b {
                        vec![flag]
                    } else {
                        vec![]
                    }
                }
                toml::Value::String(s) => vec![flag, s.clone()],
                toml::Value::Array(items) => {
                    let parts: Vec<String> = items
                        .iter()
                        .map(|v| match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    vec![flag, parts.join(",")]
                }
                toml::Value::Table(_) => bail!("{}: a table is not a value for {flag}", at()),
                other if takes_value => vec![flag, other.to_string()],
                other => bail!(
                    "{} = {other}: {flag} is a switch: write true or false",
                    at()
                ),
            }
        };
        // The entry alone through the command's own parser: a value of the
        // wrong type is reported with its key and line.
        let mut probe: Vec<String> = vec!["kd".into(), sub.clone()];
        probe.extend(entry.iter().cloned());
        if let Err(e) = command.clone().try_get_matches_from(&probe) {
            use clap::error::ErrorKind as K;
            if matches!(
                e.kind(),
                K::InvalidValue
                    | K::ValueValidation
                    | K::UnknownArgument
                    | K::NoEquals
                    | K::WrongNumberOfValues
                    | K::TooManyValues
            ) {
                let message = e.to_string();
                let first = message.lines().next().unwrap_or_default();
                bail!(
                    "{} = {value}: {}",
                    at(),
                    first.trim_start_matches("error: ")
                );
            }
        }
        flags.extend(entry.into_iter().map(OsString::from));
    }
    let mut out = args[..=sub_at].to_vec();
    out.extend(flags);
    out.extend(args[sub_at + 1..].iter().cloned());
    Ok(out)
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

/// `--image-size`: a side from 1 to [`kd_train::data::MAX_IMAGE_SIZE`].
pub fn image_size(s: &str) -> std::result::Result<usize, String> {
    let max = kd_train::data::MAX_IMAGE_SIZE;
    match positive(s)? {
        n if n > max => Err(format!("must be at most {max} pixels")),
        n => Ok(n),
    }
}

/// One value of `--mean`: a number from 0 to 1 (images are scaled to [0, 1]).
pub fn channel_mean(s: &str) -> std::result::Result<f32, String> {
    channel_value(s, 0.0, "from 0 to 1")
}

/// One value of `--std`: greater than 0 (images are divided by it), at most 1.
pub fn channel_std(s: &str) -> std::result::Result<f32, String> {
    channel_value(s, f32::MIN_POSITIVE, "greater than 0 and at most 1")
}

fn channel_value(s: &str, min: f32, range: &str) -> std::result::Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(x) if x.is_finite() && (min..=1.0).contains(&x) => Ok(x),
        Ok(x) => Err(format!("{x} is not a number {range}")),
        Err(_) => Err(format!("`{s}` is not a number: write e.g. 0.5,0.5,0.5")),
    }
}

/// `--epochs`, `--batch-size`, subsets and the like: a whole number of at least 1.
pub fn positive(s: &str) -> std::result::Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        // Settings are stored as TOML, whose integers are signed 64-bit.
        Ok(n) if n as u64 > MAX_SEED => Err(format!("must be at most {MAX_SEED}")),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}

/// `--lr`: a finite number greater than 0.
pub fn positive_number(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err("must be a finite number greater than 0".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// `--momentum`, `--weight-decay` and the like: a number from 0 to 1.
pub fn fraction(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err("must be a number from 0 to 1".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// `--augment`: a name of [`Augment`](kd_train::data::transform::Augment).
pub fn augment(s: &str) -> std::result::Result<kd_train::data::transform::Augment, String> {
    s.trim().parse()
}

/// Loss weights: a finite number of at least 0.
pub fn weight(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x >= 0.0 && x.is_finite() => Ok(x),
        Ok(_) => Err("must be a finite number of at least 0".into()),
        Err(_) => Err(format!("`{s}` is not a number")),
    }
}

/// The largest seed (and count): settings files are TOML, whose integers are
/// signed 64-bit.
pub const MAX_SEED: u64 = i64::MAX as u64;

/// `--seed`: a whole number from 0 to [`MAX_SEED`].
pub fn seed(s: &str) -> std::result::Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n <= MAX_SEED => Ok(n),
        _ => Err(format!(
            "`{s}` is not a seed: use a whole number from 0 to {MAX_SEED}"
        )),
    }
}

/// `--device`: `auto`, `cpu`, `cuda` or `cuda:N` (whether it opens is checked later).
pub fn device(s: &str) -> std::result::Result<DeviceSpec, String> {
    s.parse()
        .map_err(|_| "use auto, cpu or cuda:N (for example cuda:0)".to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::SETTINGS;

    /// Every setting of the trainer can be given (as a flag and a settings
    /// key), and comes back from the flags it was given as.
    #[test]
    fn every_trainer_setting_is_a_flag() {
        let defaults = toml::Table::try_from(kd_train::train::TrainConfig::default()).unwrap();
        let hyper = super::HyperArgs::default().resolved();
        let keys = toml::Table::try_from(&hyper).unwrap();
        for key in defaults.keys() {
            assert!(
                keys.contains_key(key),
                "TrainConfig::{key} has no HyperArgs field"
            );
        }
        assert_eq!(
            hyper.train_config(),
            kd_train::train::TrainConfig::default()
        );
        let changed = super::HyperArgs {
            lr: Some(0.5),
            eval_every: Some(3),
            ..Default::default()
        };
        let config = changed.resolved().train_config();
        assert_eq!((config.lr, config.eval_every, config.epochs), (0.5, 3, 10));
    }

    /// Every flag of `kd train`, and every key of its stored settings, says
    /// whether it changes the result; nothing else is listed.
    #[test]
    fn every_train_setting_says_whether_it_changes_the_result() {
        let command = crate::Cli::command();
        let train = command.find_subcommand("train").unwrap();
        let mut flags: Vec<String> = train
            .get_arguments()
            .chain(command.get_arguments().filter(|a| a.is_global_set()))
            .filter_map(|a| a.get_long())
            .filter(|l| !matches!(*l, "help" | "version"))
            .map(|l| l.replace('-', "_"))
            .collect();
        let stored: toml::Table = super::RunConfig {
            hyper: super::HyperArgs {
                params: [("x".to_string(), 1.0)].into(),
                ..super::HyperArgs::default().resolved()
            },
            ..super::RunConfig::default()
        }
        .to_toml()
        .parse()
        .unwrap();
        flags.extend(stored.keys().cloned());
        flags.sort();
        flags.dedup();
        let mut listed: Vec<String> = SETTINGS.iter().map(|(k, _)| k.to_string()).collect();
        listed.sort();
        assert_eq!(
            flags, listed,
            "add the new setting to config::SETTINGS, saying whether it changes the result"
        );
    }
}
