//! The column lowering every convolution path shares: a convolution's sizes
//! ([`Geometry`]), im2col and its adjoint, the strided matrix product, one
//! image's convolution as a product, and the buffers kernels write into.
use candle_core::{CpuStorage, Layout, Result};
use gemm::Parallelism;

/// Sizes of one convolution: input N x Ci x H x W, kernel Co x Ci x K x K.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) n: usize,
    pub(crate) ci: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) co: usize,
    pub(crate) k: usize,
    pub(crate) pad: usize,
    pub(crate) stride: usize,
    pub(crate) ho: usize,
    pub(crate) wo: usize,
}

impl Geometry {
    pub(crate) fn new(x: &[usize], weight: &[usize], pad: usize, stride: usize) -> Result<Self> {
        let (&[n, ci, h, w], &[co, ci2, k, k2]) = (x, weight) else {
            candle_core::bail!("conv2d: input {x:?} and kernel {weight:?} must both have rank 4")
        };
        if ci != ci2 || k != k2 {
            candle_core::bail!(
                "conv2d: input {x:?} and kernel {weight:?} do not fit (channels, square kernel)"
            )
        }
        if h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("conv2d: input {x:?} is smaller than the kernel {weight:?}")
        }
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Ok(Self {
            n,
            ci,
            h,
            w,
            co,
            k,
            pad,
            stride,
            ho,
            wo,
        })
    }
    /// Rows of the column matrix: Ci * K * K.
    pub(crate) fn kk(&self) -> usize {
        self.ci * self.k * self.k
    }
    /// Columns of the column matrix: output pixels.
    pub(crate) fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// For kernel offset `kx`, the output columns whose input column is inside
    /// the image, and the input column of the first one.
    pub(crate) fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (s, pad) = (self.stride, self.pad);
        // ix = ox * s + kx - pad must lie in 0..w.
        let first = if kx >= pad { 0 } else { (pad - kx).div_ceil(s) };
        let last = if self.w + pad > kx {
            ((self.w + pad - kx - 1) / s + 1).min(self.wo)
        } else {
            0
        };
        (first, last.max(first))
    }
}

pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("conv2d: {what} must be contiguous"),
    }
}

/// `cols[(c*K + ky)*K + kx][oy*Wo + ox] = x[c][oy*s + ky - pad][ox*s + kx - pad]` (0 outside).
pub(crate) fn im2col(g: &Geometry, x: &[f32], cols: &mut [f32]) {
    let (k, p) = (g.k, g.p());
    for c in 0..g.ci {
        let plane = &x[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &mut cols[((c * k + ky) * k + kx) * p..][..p];
                let (first, last) = g.valid_cols(kx);
                for oy in 0..g.ho {
                    let out = &mut row[oy * g.wo..(oy + 1) * g.wo];
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize || first >= last {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    out[..first].fill(0.0);
                    out[last..].fill(0.0);
                    let ix0 = first * g.stride + kx - g.pad;
                    if g.stride == 1 {
                        out[first..last].copy_from_slice(&src[ix0..ix0 + (last - first)]);
                    } else {
                        for (j, o) in out[first..last].iter_mut().enumerate() {
                            *o = src[ix0 + j * g.stride];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each column entry back onto its input pixel.
pub(crate) fn col2im(g: &Geometry, cols: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k, g.p());
    dx.fill(0.0);
    for c in 0..g.ci {
        let plane = &mut dx[c * g.h * g.w..(c + 1) * g.h * g.w];
        for ky in 0..k {
            for kx in 0..k {
                let row = &cols[((c * k + ky) * k + kx) * p..][..p];
                let (first, last) = g.valid_cols(kx);
                if first >= last {
                    continue;
                }
                for oy in 0..g.ho {
                    let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                    if iy < 0 || iy >= g.h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                    let src = &row[oy * g.wo + first..oy * g.wo + last];
                    let ix0 = first * g.stride + kx - g.pad;
                    for (j, v) in src.iter().enumerate() {
                        dst[ix0 + j * g.stride] += v;
                    }
                }
            }
        }
    }
}

/// dst (m x n, rows `dst_rs` apart) = [dst +] lhs (m x k) · rhs (k x n), with
/// explicit strides (row stride, column stride) for both operands.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
) {
    debug_assert!(m == 0 || dst.len() >= (m - 1) * dst_rs + n);
    // SAFETY: the slices cover the strided extents the callers pass.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// The direct path for one image: `y = relu?(W · cols(x) + b)`.
pub(crate) fn direct_image(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let (kk, p) = (g.kk(), g.p());
    with_scratch(kk * p, |cols| {
        im2col(g, x, cols);
        if let Some(b) = b {
            for (co, row) in y.chunks_mut(p).enumerate() {
                row.fill(b[co]);
            }
        }
        matmul(y, p, b.is_some(), g.co, p, kk, w, kk, 1, cols, p, 1);
        if relu {
            relu_in_place(y);
        }
    })
}

/// `v = v < 0 ? 0 : v`: not `f32::max`, which turns NaN into 0 (PyTorch's
/// ReLU keeps NaN), and a select rather than a conditional store, which
/// vectorises (a branch on random signs mispredicts half the time).
pub(crate) fn relu_in_place(v: &mut [f32]) {
    for x in v {
        *x = if *x < 0.0 { 0.0 } else { *x };
    }
}

/// A vector of `len` floats for a result that its maker writes whole before
/// anything reads it. Not `vec![0.0; len]`: zeroing a layer's output
/// (51 MB for the teacher's first layer) only to overwrite it was a fifth of
/// the `memset` time in a teacher step (`perf`), and Candle's CPU backend
/// allocates its own results the same way. Debug builds (the tests) fill it
/// with NaN instead, so that a value a kernel forgot to write fails them.
#[allow(clippy::uninit_vec)] // By design: see the SAFETY note.
pub(crate) fn output_vec(len: usize) -> Vec<f32> {
    if cfg!(debug_assertions) {
        return vec![f32::NAN; len];
    }
    let mut v = Vec::with_capacity(len);
    // SAFETY: f32 has no invalid bit patterns, and every caller writes all
    // `len` values before the vector is read or returned.
    unsafe { v.set_len(len) };
    v
}

/// Runs `f` on this thread's scratch buffer of at least `len` floats, whose
/// contents are left from earlier calls: a column matrix is several MB, and
/// allocating (and zeroing) one per image costs as much as filling it.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < len {
            s.resize(len, 0.0);
        }
        f(&mut s[..len])
    })
}
