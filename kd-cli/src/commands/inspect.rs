use anyhow::Result;
use kd_core::weights;
use serde_json::json;

use crate::cli::InspectArgs;
use crate::report::{printable, thousands};

pub fn run(args: &InspectArgs) -> Result<()> {
    let file = weights::read(&crate::hub::resolve(&args.file.to_string_lossy())?)?;
    let count: usize = file.tensors.values().map(|t| t.elem_count()).sum();
    // A model file that names its architecture: its parameters (buffers not
    // counted) and multiply-accumulates at its input shape.
    let sized = weights::ModelInfo::from_metadata(&file.path, &file.metadata)
        .ok()
        .and_then(|i| kd_core::Model::sized(&i.arch?, i.config?).ok())
        .map(|m| (m.parameter_count(), m.macs().ok(), m.config.input_shape));
    if args.json {
        let v = json!({
            "file": args.file,
            "metadata": file.metadata,
            "tensors": file.tensors.iter().map(|(n, t)| json!({"name": n, "shape": t.dims(), "dtype": format!("{:?}", t.dtype()).to_lowercase()})).collect::<Vec<_>>(),
            "parameters": count,
            "model_parameters": sized.map(|s| s.0),
            "macs": sized.and_then(|s| s.1),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", args.file.display());
    println!("\nMetadata:");
    if file.metadata.is_empty() {
        println!("  (none)");
    }
    for (k, v) in &file.metadata {
        let v = if v.contains('\n') {
            format!("\n    {}", v.trim_end().replace('\n', "\n    "))
        } else {
            v.clone()
        };
        println!("  {}: {}", printable(k), printable(&v));
    }
    println!("\nTensors:");
    let width = file.tensors.keys().map(|k| k.len()).max().unwrap_or(0);
    for (n, t) in &file.tensors {
        let n = printable(n);
        println!(
            "  {n:<width$}  {:<18} {}",
            format!("{:?}", t.dims()),
            format!("{:?}", t.dtype()).to_lowercase()
        );
    }
    println!("\nParameters: {}", thousands(count));
    if let Some((params, macs, [c, h, w])) = sized {
        println!(
            "Model: {} parameters without buffers, {} multiply-accumulates per {c}x{h}x{w} image",
            thousands(params),
            macs.map_or("n/a".into(), |m| thousands(m as usize))
        );
    }
    Ok(())
}
