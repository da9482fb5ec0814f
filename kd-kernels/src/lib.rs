//! kd's CPU kernels: a convolution (optionally with its ReLU fused) and a
//! 2-D max-pool, as Candle custom ops with their backward passes, plus the
//! plain-Candle references they are tested against (and which run on CUDA).
//!
//! They are here, apart from kd-core, because they are the code that must be
//! fast: the workspace compiles this crate with optimisation even in test
//! builds, and its benchmarks live in kd-bench. Every kernel propagates NaN
//! and infinities as PyTorch's do.
use candle_core::{Result, Tensor, D};

/// Defines a function (generic over one type parameter, or not) whose body
/// is compiled twice, for AVX2 (eight floats a step instead of SSE2's four;
/// picked at run time) and for the baseline: the same operations in the same
/// order, so the same bits either way.
macro_rules! avx2_and_baseline {
    (
        $(#[$doc:meta])*
        fn $name:ident $(<$g:ident: $bound:path>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$doc])*
        fn $name $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn baseline $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2 $(<$g: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
                baseline $(::<$g>)? ($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { avx2 $(::<$g>)? ($($arg),*) };
            }
            baseline $(::<$g>)? ($($arg),*)
        }
    };
}

mod batch_norm;
mod conv;
mod depthwise;
mod direct;
mod im2col;
mod padded_pool;
mod pool;
#[cfg(test)]
mod testing;
mod winograd;

pub use batch_norm::{batch_norm_eval, batch_norm_train, BatchStats};
pub use conv::Conv2dOp;
pub use depthwise::DepthwiseConv2dOp;
pub use padded_pool::MaxPool2dPaddedOp;
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
