//! Exports every registered architecture to ONNX, twice (BatchNorm folded and
//! kept), for `kd-bench/onnx-check` to run through ONNX Runtime and the ONNX
//! checker. Each model is seeded and its BatchNorm statistics moved by two
//! training passes, so folding does work. Writes into DIR:
//! `ARCH.folded.onnx`, `ARCH.kept.onnx`, `probe.safetensors` (the images) and
//! `ARCH.logits.safetensors` (kd's logits on them), and prints one line per
//! file: `arch fold export_seconds bytes tract_error`; it fails on an
//! export that tract does not run within the tolerance.
//!
//! `cargo run --release -p kd-bench --bin kd-export-all -- DIR`
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use kd_core::candle::Device;
use kd_core::{weights, ArchConfig, Mode, Model};
use kd_export::{check_within, export, probe_images, Options};
use kd_plugins as _;

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: kd-export-all DIR"));
    let config = ArchConfig {
        input_shape: [3, 32, 32],
        num_classes: 100,
    };
    let images = probe_images(4, config.input_shape)?;
    weights::save(
        &dir.join("probe.safetensors"),
        &[("images".into(), images.clone())],
        HashMap::new(),
    )?;
    for arch in kd_core::registry::archs() {
        let model = Model::new(arch.name, config.clone(), 7, &Device::Cpu)?;
        for seed in 0..2 {
            model.forward(&images, Mode::Train { seed })?;
        }
        let logits = model.forward(&images, Mode::Eval)?.logits;
        weights::save(
            &dir.join(format!("{}.logits.safetensors", arch.name)),
            &[("logits".into(), logits)],
            HashMap::new(),
        )?;
        for (fold_bn, tag) in [(true, "folded"), (false, "kept")] {
            let options = Options {
                fold_bn,
                ..Options::default()
            };
            let start = Instant::now();
            let onnx = export(&model, &options)?;
            let seconds = start.elapsed().as_secs_f64();
            let error = check_within(&model, &onnx, &options)?;
            std::fs::write(dir.join(format!("{}.{tag}.onnx", arch.name)), &onnx)?;
            println!(
                "{} {tag} {seconds:.3} {} {error:.3e}",
                arch.name,
                onnx.len()
            );
        }
    }
    Ok(())
}
