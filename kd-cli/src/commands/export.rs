//! `kd export`: a model as an ONNX file, checked before it is written.
use std::time::Instant;

use anyhow::{bail, Context, Result};
use kd_core::weights::{self, ModelInfo};
use kd_core::Model;

use crate::cli::ExportArgs;
use crate::outputs::Files;

pub fn run(args: &ExportArgs) -> Result<()> {
    let mut files = Files::new(args.overwrite);
    files
        .input("the model", &args.model)
        .output("--onnx", &args.onnx);
    files.check()?;
    let start = Instant::now();
    let (model, info, _) = load(&args.model, &args.model_args)?;
    let normalize_inside = match (args.normalize_inside, &info.normalization) {
        (false, _) => None,
        (true, Some(n)) => Some(n.clone()),
        (true, None) => bail!(
            "{} records no input normalisation (a plain state_dict), so --normalize-inside has nothing to put in the graph: export without it and normalise the images in your application",
            args.model.display()
        ),
    };
    let options = kd_export::Options {
        fold_bn: args.fold_bn,
        normalize_inside,
        metadata: metadata(&model, info),
    };
    let onnx = kd_export::export(&model, &options)
        .with_context(|| format!("cannot export {}", args.model.display()))?;
    if args.check {
        let error = kd_export::check_within(&model, &onnx, &options).context("nothing written")?;
        eprintln!("checked: tract's logits on a probe batch are within {error:.1e} of kd's");
    }
    weights::write_atomic(&args.onnx, &onnx)?;
    println!(
        "wrote {} ({}, {} bytes, opset {}, BatchNorm {}, input {}) in {:.1} s",
        args.onnx.display(),
        model.arch.name,
        crate::report::thousands(onnx.len()),
        kd_export::OPSET,
        if args.fold_bn { "folded" } else { "kept" },
        if options.normalize_inside.is_some() {
            "in [0, 1]"
        } else {
            "normalised"
        },
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A model file (a Hub reference, a kd file or a state_dict with `--arch`),
/// refused when a weight is not finite: an ONNX file of NaN answers NaN.
/// Returns the file it read, too (a Hub reference's cached copy).
pub fn load(
    path: &std::path::Path,
    args: &crate::cli::ModelArgs,
) -> Result<(Model, ModelInfo, std::path::PathBuf)> {
    let device = crate::models::device(args.device)?;
    let local = crate::hub::resolve(&path.to_string_lossy())?;
    let file = weights::read(&local)?;
    file.check_finite()
        .with_context(|| format!("cannot use {}", path.display()))?;
    let (model, info) = crate::models::load_model(&file, args, None, None, &device, "--arch")?;
    Ok((model, info, local))
}

/// The model file's metadata, with the architecture and its input shape as
/// the loaded model has them.
fn metadata(model: &Model, info: ModelInfo) -> Vec<(String, String)> {
    let info = ModelInfo {
        arch: Some(model.arch.name.to_string()),
        config: Some(model.config.clone()),
        ..info
    };
    let mut props: Vec<_> = info.to_metadata().into_iter().collect();
    props.sort();
    props
}
