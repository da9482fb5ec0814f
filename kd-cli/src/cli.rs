//! Command-line definitions. Every flag's help is documentation.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::RunConfig;

#[derive(Debug, Parser)]
#[command(
    name = "kd",
    version,
    about = "Knowledge distillation: make a small, fast model learn from a large one",
    long_about = "Knowledge distillation: make a small, fast model learn from a large one.\n\n\
kd trains a teacher, distils it into a student with a method of your choice (kd list shows \
them), and writes weights as safetensors with PyTorch state_dict names.\n\n\
Start with `kd reproduce` (the PyTorch tutorial end to end) or `kd list`.",
    after_help = "Examples:\n  kd list\n  kd train --arch deep_nn --dataset cifar10 --out teacher.safetensors\n  kd train --arch light_nn --method kd --teacher teacher.safetensors --out student.safetensors\n  kd eval --model student.safetensors\n  kd reproduce --dataset fashion-mnist --epochs 5"
)]
pub struct Cli {
    /// Print only results and errors: no progress bars or log lines.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// Use only files already downloaded (the Hub cache and kd's cache); the same as HF_HUB_OFFLINE=1.
    #[arg(long, global = true)]
    pub offline: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List methods, architectures, recipes and data sets with their hyper-parameters.
    List(ListArgs),
    /// Train a network: a teacher with cross-entropy, or a student distilled from a teacher.
    Train(TrainArgs),
    /// Accuracy, per-class accuracy and confusion matrix of a model on a data set's test split.
    Eval(EvalArgs),
    /// Run a model on a tensor file or on images.
    Predict(PredictArgs),
    /// Show a weights file (safetensors, or a PyTorch torch.save file): metadata,
    /// tensors with shapes and dtypes, parameter count.
    Inspect(InspectArgs),
    /// Write a PyTorch torch.save file (.pth, .pt: a state_dict, bare or under
    /// "model" or "state_dict") as safetensors; with --arch, checked against the
    /// architecture and recorded as a kd model.
    #[command(
        after_help = "Examples:\n  kd convert ckpt_epoch_240.pth --out teacher.safetensors\n  kd convert ckpt_epoch_240.pth --arch resnet32x4 --input-shape 3,32,32 --num-classes 100 --out teacher.safetensors"
    )]
    Convert(ConvertArgs),
    /// Write a model as an ONNX file (opset 17, dynamic batch, BatchNorm folded) for
    /// ONNX Runtime, TensorRT, OpenVINO or tract, checked in tract before it is written.
    #[command(
        after_help = "The graph takes N x C x H x W float32 images named `input` (normalised as the model \
was trained, or scaled to [0, 1] with --normalize-inside) and gives `logits`; the model's \
metadata (architecture, classes, normalisation) travels as ONNX metadata properties.\n\n\
Examples:\n  kd export student.safetensors --onnx student.onnx\n  \
kd export student.safetensors --onnx student.onnx --normalize-inside\n  \
kd export ckpt_epoch_240.pth --arch resnet32x4 --input-shape 3,32,32 --num-classes 100 --onnx teacher.onnx"
    )]
    Export(ExportArgs),
    /// What models cost to run here: parameters, multiply-accumulates, file size,
    /// latency at batch 1 (median and p95) and throughput at a larger batch, through
    /// kd's forward pass and, with --onnx, through the exported graph in tract.
    #[command(
        after_help = "The first model is the reference of the speed-up column (a teacher first, then its students).\n\n\
Examples:\n  kd bench teacher.safetensors student.safetensors\n  kd bench teacher.safetensors student.safetensors --onnx --runs 50"
    )]
    Bench(BenchArgs),
    /// Run a recipe end to end (default: the PyTorch tutorial's five runs) and report.
    Reproduce(ReproduceArgs),
    /// Check that methods compute what their reference says: each registered method
    /// against the fixtures it ships (loss value and gradients, made by an independent
    /// PyTorch implementation), or against property checks when it ships none.
    #[command(
        after_help = "A fixture is a safetensors file of inputs, the expected loss and its gradients; \
the README's `kd verify` section gives the format. Exit status 1 when any check fails.\n\n\
Examples:\n  kd verify\n  kd verify --fixture my_loss.safetensors\n  kd verify --fixture kd.safetensors --method my_kd\n  kd verify --method dkd --properties"
    )]
    Verify(VerifyArgs),
    /// Combine finished `kd reproduce` runs that differ only in their seeds into one
    /// report: mean ± spread over all seeds, paired differences against CE.
    Report(ReportArgs),
    /// What this build can do here: the cuda feature and the compute capability it was
    /// built for, the devices it can open, threads, CPU features, cache folders.
    Doctor,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check these fixture files (repeatable) instead of the methods' own. Each names
    /// its method in its `kd.method` metadata.
    #[arg(long, value_name = "FILE")]
    pub fixture: Vec<PathBuf>,
    /// Check only this method; with --fixture, check the fixtures against this method
    /// instead of the one they name (to hold a new loss to another's reference).
    #[arg(long, value_name = "NAME")]
    pub method: Option<String>,
    /// Also run the property checks (finite differences, permutation, no gradient to
    /// the teacher, zero loss at identity) on methods that ship fixtures.
    #[arg(long)]
    pub properties: bool,
    /// Print every check with its error, not only failures.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// The input shape C,H,W at which architectures' taps, parameters and
    /// multiply-accumulates are shown.
    #[arg(long, value_name = "C,H,W", default_value = "3,32,32", value_parser = crate::config::parse_shape)]
    pub input_shape: [usize; 3],
    /// The number of classes at which architectures are shown.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = crate::config::positive)]
    pub num_classes: usize,
}

/// A flag given twice takes its last value: the command line's own flags
/// override those read from `--config`.
#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct TrainArgs {
    #[command(flatten)]
    pub run: RunConfig,

    /// Read settings from a TOML file (keys as the long flags, with underscores; a
    /// [params] table for method hyper-parameters). Flags override the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where to write the trained weights (.safetensors). The resolved settings go
    /// to FILE.toml; trainable helpers of the method (a FitNets regressor) to
    /// FILE.adapters.safetensors. Required unless resuming.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub checkpoints: CheckpointArgs,

    /// Also write one JSON object per epoch to this file (epoch, loss, its parts,
    /// accuracy, images/s, seconds).
    #[arg(long, value_name = "FILE.jsonl")]
    pub metrics: Option<PathBuf>,

    /// Replace existing output files (--out, its .toml and .adapters.safetensors,
    /// --metrics) and an earlier run's checkpoints in the run folder. Without it
    /// kd refuses to start rather than replace a file.
    #[arg(long)]
    pub overwrite: bool,
}

/// Checkpoints and resuming.
#[derive(Debug, Args, Clone)]
pub struct CheckpointArgs {
    /// Folder for checkpoints (written at every epoch's end). Default for `kd train`:
    /// OUT with `.run` for its extension; for `kd reproduce`: OUT/checkpoints.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Also write a checkpoint every N batches.
    #[arg(long, value_name = "N", value_parser = crate::config::positive)]
    pub checkpoint_every: Option<usize>,
    /// How many recent checkpoints to keep (the best by test accuracy is kept as the
    /// model file best.safetensors).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = crate::config::positive)]
    pub keep_checkpoints: usize,
    /// Continue the run whose checkpoints are in DIR where it stopped.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Resume even when a setting that changes the result differs from the checkpoint's.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Architecture of a file without kd metadata (a plain PyTorch state_dict).
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Input shape C,H,W for a file without kd metadata (default: the data set's).
    #[arg(long, value_name = "C,H,W", value_parser = crate::config::parse_shape)]
    pub input_shape: Option<[usize; 3]>,
    /// Number of classes for a file without kd metadata (default: the data set's, or 10).
    #[arg(long, value_name = "N", value_parser = crate::config::positive)]
    pub num_classes: Option<usize>,
    /// Device: auto, cpu or cuda:N.
    #[arg(long, default_value = "auto", value_parser = crate::config::device)]
    pub device: kd_core::device::DeviceSpec,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The weights file (.safetensors) to evaluate.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: crate::config::DataArgs,
    #[command(flatten)]
    pub model_args: ModelArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The weights file (.safetensors) to run.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// A .safetensors file holding `images` (N x C x H x W f32, already normalised),
    /// or image files (PNG; repeat the flag) to classify.
    #[arg(long, value_name = "FILE", required = true)]
    pub input: Vec<PathBuf>,
    /// With a tensor input: where to write `logits` (and taps with --taps). Image
    /// inputs print their classes instead.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// With a tensor input: also write every tap (intermediate tensor) under its name.
    #[arg(long)]
    pub taps: bool,
    /// With image inputs: how many classes to print for each (at least 1).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub top: u64,
    /// Replace an existing --out file.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub model_args: ModelArgs,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The file to convert (.pth, .pt or .safetensors).
    pub file: PathBuf,
    /// Where to write the safetensors file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing --out file.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The model to export (a kd model file; a plain state_dict with --arch).
    pub model: PathBuf,
    /// Where to write the ONNX file.
    #[arg(long, value_name = "FILE")]
    pub onnx: PathBuf,
    /// Fold each BatchNorm into the convolution before it; false keeps them as
    /// BatchNormalization nodes.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub fold_bn: bool,
    /// Put the model's input normalisation inside the graph: the file then takes
    /// images scaled to [0, 1].
    #[arg(long)]
    pub normalize_inside: bool,
    /// Run the graph with tract (an ONNX evaluator in Rust) on a probe batch and
    /// compare its logits with kd's before writing; nothing is written if they
    /// differ. `--check false` skips it.
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub check: bool,
    /// Replace an existing --onnx file.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub model_args: ModelArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The models to time (kd model files; plain state_dicts with --arch).
    #[arg(required = true)]
    pub models: Vec<PathBuf>,
    /// Timed runs per measurement, after warm-up runs.
    #[arg(long, value_name = "N", default_value_t = crate::cost::RUNS, value_parser = crate::config::positive)]
    pub runs: usize,
    /// The batch of the throughput measurement.
    #[arg(long, value_name = "N", default_value_t = crate::cost::BATCH, value_parser = crate::config::positive)]
    pub batch: usize,
    /// Also time each model's ONNX export, run by tract.
    #[arg(long)]
    pub onnx: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub model_args: ModelArgs,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The weights file (.safetensors, or a torch.save .pth) to show.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(args_override_self = true)]
pub struct ReproduceArgs {
    /// The recipe to run (`kd list` shows them) [default: the recipe marked as the
    /// default, the tutorial's].
    #[arg(long, value_name = "NAME")]
    pub recipe: Option<String>,

    /// The recipe's teacher-student pair, TEACHER-STUDENT (`--list-pairs` shows
    /// them) [default: the recipe's first].
    #[arg(long, value_name = "TEACHER-STUDENT")]
    pub pair: Option<String>,

    /// Print the recipe's pairs with their published accuracies, and exit.
    #[arg(long)]
    pub list_pairs: bool,

    #[command(flatten)]
    pub data: crate::config::DataArgs,

    #[command(flatten)]
    pub hyper: crate::config::HyperArgs,

    /// Read settings from a TOML file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Continue a stopped `kd reproduce` in DIR: finished seed × phase runs are kept,
    /// the interrupted one resumes from its checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,

    /// Also write a checkpoint every N batches.
    #[arg(long, value_name = "N", value_parser = crate::config::positive)]
    pub checkpoint_every: Option<usize>,

    /// The run folder: summary.json, report.md, plot.png, and per seed a folder
    /// seed-S/ with every model, checkpoints and metrics.jsonl. Default: runs/RECIPE-DATASET.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Run every phase once per seed: a list (42,7,0) or a count N (N seeds from
    /// --seed on). The report gives mean ± standard deviation, min–max and the paired
    /// difference against the CE student of the same seed. [default: --seed alone]
    #[arg(long, value_name = "LIST|N", value_parser = parse_seeds)]
    pub seeds: Option<Seeds>,

    /// Train one teacher (with the first seed) and vary only the students over the
    /// seeds; by default each seed is a full replicate with its own teacher.
    #[arg(long)]
    pub shared_teacher: bool,

    /// The student phases' learning rate. Default: the pair's own where the recipe's
    /// sources give one (cifar100: 0.01 for MobileNetV2 and ShuffleNet students),
    /// unless --lr is given; else --lr.
    #[arg(long, value_name = "LR")]
    pub student_lr: Option<f64>,

    /// Start over in an --out folder that holds files: kd's files of an earlier run
    /// there (models, checkpoints, metrics, report) are replaced. Without it kd
    /// refuses a folder that is not empty.
    #[arg(long, conflicts_with = "resume")]
    pub overwrite: bool,

    /// With --resume: continue even when a setting that changes the result differs
    /// from the run's (finished phases keep their results).
    #[arg(long, requires = "resume")]
    pub force: bool,
}

/// `--seeds`: an explicit list, or how many seeds to take from `--seed` on.
#[derive(Debug, Clone, PartialEq)]
pub enum Seeds {
    List(Vec<u64>),
    Count(usize),
}

fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let bad = || format!("`{s}` is not a seed list (42,7,0) or a count (3)");
    if s.contains(',') {
        let v: Vec<u64> = s
            .split(',')
            .map(crate::config::seed)
            .collect::<Result<_, _>>()?;
        let mut unique = v.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != v.len() {
            return Err(format!("`{s}` repeats a seed: each seed is run once"));
        }
        return Ok(Seeds::List(v));
    }
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(Seeds::Count(n)),
        Ok(_) => Err(format!(
            "`{s}`: give between 1 and 1000 seeds, or a list such as 42,7,0"
        )),
        Err(_) => Err(bad()),
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Finished `kd reproduce` run folders (each with a summary.json) that differ
    /// only in their seeds: the same recipe run on several machines, or seeds run
    /// separately.
    #[arg(value_name = "DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Where to write the combined summary.json, report.md and plot.png (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace those files where --out already holds them.
    #[arg(long)]
    pub overwrite: bool,
}
