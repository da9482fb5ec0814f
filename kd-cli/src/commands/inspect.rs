use anyhow::Result;
use kd_core::weights;
use serde_json::json;

use crate::cli::InspectArgs;

pub fn run(args: &InspectArgs) -> Result<()> {
    let file = weights::read(&crate::hub::resolve(&args.file.to_string_lossy())?)?;
    let count: usize = file.tensors.values().map(|t| t.elem_count()).sum();
    if args.json {
        let v = json!({
            "file": args.file,
            "metadata": file.metadata,
            "tensors": file.tensors.iter().map(|(n, t)| json!({"name": n, "shape": t.dims(), "dtype": format!("{:?}", t.dtype()).to_lowercase()})).collect::<Vec<_>>(),
            "parameters": count,
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
        println!("  {k}: {v}");
    }
    println!("\nTensors:");
    let width = file.tensors.keys().map(|k| k.len()).max().unwrap_or(0);
    for (n, t) in &file.tensors {
        println!(
            "  {n:<width$}  {:<18} {}",
            format!("{:?}", t.dims()),
            format!("{:?}", t.dtype()).to_lowercase()
        );
    }
    println!("\nParameters: {}", thousands(count));
    Ok(())
}

pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
