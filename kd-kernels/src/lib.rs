//! kd's CPU kernels: a convolution (optionally with its ReLU fused) and a
//! 2-D max-pool, as Candle custom ops with their backward passes, plus the
//! plain-Candle references they are tested against (and which run on CUDA).
//!
//! They are here, apart from kd-core, because they are the code that must be
//! fast: the workspace compiles this crate with optimisation even in test
//! builds, and its benchmarks live in kd-bench. Every kernel propagates NaN
//! and infinities as PyTorch's do.
use candle_core::{Result, Tensor, D};

mod conv;
mod direct;
mod pool;
#[cfg(test)]
mod testing;
mod winograd;

pub use conv::Conv2dOp;
pub use pool::MaxPool2dOp;

/// Candle's own convolution plus a bias: what runs on CUDA, and the reference
/// the CPU kernels are tested against.
pub fn reference_conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    padding: usize,
    stride: usize,
) -> candle_core::Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    y.broadcast_add(&bias.reshape((1, (), 1, 1))?)
}

/// Max-pooling from a reshape and two max reductions: what runs on CUDA, and
/// the reference the CPU kernel is tested against.
pub fn reference_max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (ho, wo) = (h / k, w / k);
    let x = if ho * k != h || wo * k != w {
        x.narrow(2, 0, ho * k)?.narrow(3, 0, wo * k)?.contiguous()?
    } else {
        x.contiguous()?
    };
    let x = x.reshape((n, c, ho, k, wo, k))?;
    x.max(D::Minus1)?.max(3)
}
