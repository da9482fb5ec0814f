//! Sizes checked before anything is allocated. An input that asks for more
//! memory than the machine has (a huge shape, class count or image) gets an
//! error saying how much it would need, instead of an abort in the allocator
//! or an overflow in a size computation.
use std::fmt::Display;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::network::ArchConfig;
use crate::registry::ArchPlugin;
use crate::{Error, Result};

/// Values in one input image, at most: far above any real image, small
/// enough that no size computed from it overflows.
pub const MAX_IMAGE_VALUES: usize = 1 << 31;
/// Classes, at most.
pub const MAX_CLASSES: usize = 1 << 24;

/// Memory this process may still take: `MemAvailable` on Linux; `None` where
/// it cannot be read, and then only overflow is checked.
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fails unless `bytes` (`None`: too large to compute) fits in the memory
/// available; `what` says what would take it.
pub fn check_fits(what: impl Display, bytes: Option<u128>) -> Result<()> {
    let available = available_bytes();
    let too_much = match (bytes, available) {
        (None, _) => true,
        (Some(b), Some(a)) => b > a as u128,
        (Some(b), None) => b > u64::MAX as u128,
    };
    if !too_much {
        return Ok(());
    }
    let need = bytes.map_or("more bytes than can be counted".to_string(), human);
    let have = available.map_or(String::new(), |a| {
        format!(", and {} is available", human(a as u128))
    });
    Err(Error::config(format!(
        "{what} would need {need} of memory{have}: use a smaller size"
    )))
}

/// A byte count for people: 1.5 GB, 3.2 TB.
pub fn human(bytes: u128) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// `a × b × ...` without overflow.
pub fn product(dims: &[usize]) -> Option<u128> {
    dims.iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
}

/// Checks an architecture's settings, then its parameters' size against
/// memory: the network is built once with shape-only tensors (nothing
/// allocated) to count them.
pub fn check_arch(arch: &ArchPlugin, config: &ArchConfig) -> Result<()> {
    let [c, h, w] = config.input_shape;
    if c == 0
        || h == 0
        || w == 0
        || product(&config.input_shape).is_none_or(|n| n > MAX_IMAGE_VALUES as u128)
    {
        return Err(Error::config(format!(
            "input shape {c}x{h}x{w} is not usable: each of C, H, W must be at least 1 and an image at most {MAX_IMAGE_VALUES} values"
        )));
    }
    if !(1..=MAX_CLASSES).contains(&config.num_classes) {
        return Err(Error::config(format!(
            "{} classes is not usable: give from 1 to {MAX_CLASSES}",
            config.num_classes
        )));
    }
    let counter = Counter::default();
    let vb = VarBuilder::from_backend(Box::new(counter.clone()), DType::F32, Device::Cpu);
    (arch.build)(config, vb)?;
    let params = *counter.0.lock().expect("not poisoned");
    check_fits(
        format_args!(
            "architecture `{}` for {c}x{h}x{w} images and {} classes ({params} parameters)",
            arch.name, config.num_classes
        ),
        params.checked_mul(4),
    )
}

/// A variable builder that hands out broadcast zeros (no memory) and counts
/// the values it was asked for.
#[derive(Clone, Default)]
struct Counter(std::sync::Arc<std::sync::Mutex<u128>>);

impl SimpleBackend for Counter {
    fn get(
        &self,
        s: Shape,
        _name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let n = product(s.dims()).unwrap_or(u128::MAX);
        let mut total = self.0.lock().expect("not poisoned");
        *total = total.saturating_add(n);
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape-only builder: `{name}` needs a shape")
    }

    fn contains_tensor(&self, _name: &str) -> bool {
        false
    }
}
