//! What a model costs to run on this machine: its size, its arithmetic, and
//! its speed through kd's forward pass and through its ONNX export in tract.
use std::time::Instant;

use anyhow::Result;
use kd_core::candle::Tensor;
use kd_core::{Mode, Model};
use serde::{Deserialize, Serialize};

/// The default batch of a throughput measurement and number of timed runs.
pub const BATCH: usize = 64;
pub const RUNS: usize = 30;

/// Median and 95th percentile of repeated runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub median_ms: f64,
    pub p95_ms: f64,
}

/// How fast one engine runs a model: latency at batch 1, throughput at `batch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Speed {
    pub latency: Latency,
    pub batch: usize,
    pub images_per_second: f64,
}

/// What a model costs: its size, its arithmetic and its speed here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    pub arch: String,
    pub parameters: usize,
    /// Multiply-accumulates for one image at the model's input shape.
    pub macs: u64,
    /// kd's own forward pass.
    pub kd: Speed,
    /// The exported ONNX graph run by tract, when measured.
    pub onnx: Option<Speed>,
}

/// Times `run`: a few untimed runs first (caches, allocator, thread pool).
fn time(runs: usize, mut run: impl FnMut() -> Result<()>) -> Result<Latency> {
    for _ in 0..runs.div_ceil(10).max(2) {
        run()?;
    }
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        run()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    Ok(Latency {
        median_ms: at(0.5),
        p95_ms: at(0.95),
    })
}

/// Latency at batch 1 and throughput at `batch` of `forward` (logits read
/// back, so an asynchronous device has finished).
fn speed(
    shape: [usize; 3],
    batch: usize,
    runs: usize,
    mut forward: impl FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Speed> {
    let [c, h, w] = shape;
    let bytes = kd_core::limits::product(&[batch, c, h, w, 4]);
    kd_core::limits::check_fits(format!("a batch of {batch} images of {c}x{h}x{w}"), bytes)?;
    let mut timed = |n: usize, runs: usize| -> Result<Latency> {
        let images = kd_export::probe_images(n, shape)?;
        time(runs, || {
            forward(&images)?.flatten_all()?.to_vec1::<f32>()?;
            Ok(())
        })
    };
    let latency = timed(1, runs)?;
    let large = timed(batch, runs.div_ceil(5).max(3))?;
    Ok(Speed {
        latency,
        batch,
        images_per_second: batch as f64 / (large.median_ms / 1e3),
    })
}

/// Measures `model` with kd's forward pass and, when `onnx`, its export under tract.
pub fn cost(model: &Model, batch: usize, runs: usize, onnx: bool) -> Result<Cost> {
    let shape = model.config.input_shape;
    let device = model.device().clone();
    let kd = speed(shape, batch, runs, |x| {
        Ok(model.forward(&x.to_device(&device)?, Mode::Eval)?.logits)
    })?;
    let onnx = match onnx {
        true => {
            let options = kd_export::Options {
                fold_bn: true,
                ..Default::default()
            };
            let file = kd_export::export(model, &options)?;
            kd_export::check_within(model, &file, &options)?;
            let [c, h, w] = shape;
            let one = kd_export::Runner::new(&file, &[1, c, h, w])?;
            let many = kd_export::Runner::new(&file, &[batch, c, h, w])?;
            Some(speed(shape, batch, runs, |x| match x.dim(0)? {
                1 => one.run(x),
                _ => many.run(x),
            })?)
        }
        false => None,
    };
    Ok(Cost {
        arch: model.arch.name.to_string(),
        parameters: model.parameter_count(),
        macs: model.macs()?,
        kd,
        onnx,
    })
}
