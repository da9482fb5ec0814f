//! `cpu`, `cuda:N` and `auto`.
use candle_core::Device;

use crate::{Error, Result};

/// Parses a device name. `auto` picks CUDA when kd was built with the `cuda`
/// feature and a GPU answers, else the CPU (and says so through `tracing`).
pub fn parse(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            if cfg!(feature = "cuda") {
                match Device::new_cuda(0) {
                    Ok(d) => return Ok(d),
                    // Candle's text carries a backtrace under RUST_BACKTRACE: print the message only.
                    Err(e) => tracing::info!(
                        "no usable CUDA device ({}); using the CPU",
                        crate::Error::from(e)
                            .to_string()
                            .lines()
                            .next()
                            .unwrap_or("")
                    ),
                }
            } else {
                tracing::info!("kd was built without the `cuda` feature; using the CPU");
            }
            Ok(Device::Cpu)
        }
        "cuda" => cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => cuda(n),
            _ => Err(Error::config(format!(
                "unknown device `{other}`: use `auto`, `cpu` or `cuda:N` (for example cuda:0)"
            ))),
        },
    }
}

fn cuda(n: usize) -> Result<Device> {
    if !cfg!(feature = "cuda") {
        return Err(Error::config(format!(
            "device cuda:{n} asked for, but this kd was built without CUDA: rebuild with `cargo build --release --features cuda`, or use the CPU"
        )));
    }
    Device::new_cuda(n).map_err(|e| {
        Error::config(format!(
            "cannot open CUDA device {n}: {}",
            crate::Error::from(e)
        ))
    })
}

/// A short name for logs and metadata: `cpu` or `cuda:N`.
pub fn name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
