//! Where to run: `auto`, `cpu` or `cuda:N`, as a typed value.
use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A device by name, checked when it is written down and opened later
/// ([`DeviceSpec::open`]): a settings file or a flag holds one of these, never
/// a string that might not name a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// CUDA device 0 when kd was built with the `cuda` feature and a GPU
    /// answers, else the CPU (and says so through `tracing`).
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Self::Cuda(n)),
                _ => Err(Error::config(format!(
                    "unknown device `{other}`: use `auto`, `cpu` or `cuda:N` (for example cuda:0)"
                ))),
            },
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// Opens the device; `Auto` falls back to the CPU.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => cuda(n),
            Self::Auto => {
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
        }
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
