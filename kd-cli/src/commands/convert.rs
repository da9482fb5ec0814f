//! `kd convert`: a `torch.save` file (or a safetensors file) as safetensors.
use anyhow::{Context, Result};
use kd_core::candle::Device;
use kd_core::weights::{self, ModelInfo};

use crate::cli::ConvertArgs;
use crate::outputs::Files;

pub fn run(args: &ConvertArgs) -> Result<()> {
    let mut files = Files::new(args.overwrite);
    files
        .input("the file to convert", &args.file)
        .output("--out", &args.out);
    files.check()?;
    let file = weights::read(&args.file)?;
    file.check_finite()
        .with_context(|| format!("cannot convert {}", args.file.display()))?;
    let count = match &args.model.arch {
        // Loaded into the architecture first: every missing, unexpected or
        // misshapen tensor is named before anything is written, and the file
        // records what it holds, as a model kd trained does.
        Some(_) => {
            let (model, _) =
                crate::models::load_model(&file, &args.model, None, None, &Device::Cpu, "--arch")?;
            let info = ModelInfo {
                arch: Some(model.arch.name.to_string()),
                config: Some(model.config.clone()),
                ..ModelInfo::default()
            };
            weights::save_model(&args.out, &model.tensors(), &[], &info)?;
            model.parameter_count()
        }
        None => {
            let tensors: Vec<_> = file.tensors.clone().into_iter().collect();
            let meta = [("format".to_string(), "pt".to_string())].into();
            weights::save(&args.out, &tensors, meta)?;
            tensors.iter().map(|(_, t)| t.elem_count()).sum()
        }
    };
    println!(
        "wrote {} ({} tensors, {} values)",
        args.out.display(),
        file.tensors.len(),
        crate::report::thousands(count)
    );
    Ok(())
}
