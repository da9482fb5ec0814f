//! Depthwise 2-D convolution for the CPU (`groups == channels`, one k x k
//! filter per channel), forward and both gradients, as MobileNetV2 and the
//! ShuffleNets use it.
//!
//! Candle's grouped convolution runs one small convolution per group and
//! concatenates them: a MobileNetV2 layer of 288 channels is 288 im2col
//! matrix products of one row each, and as many again in the backward. Here
//! each channel's plane is one pass per filter tap over contiguous rows (for
//! stride 1 the innermost loop is a vectorisable `y += w * x` over a row),
//! planes in parallel.
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::im2col::output_vec;

/// `nn.Conv2d(C, C, k, stride, padding, groups=C, bias=False)` on N x C x H x W
/// with a weight of C x 1 x k x k.
#[derive(Debug, Clone, Copy)]
pub struct DepthwiseConv2dOp {
    pub stride: usize,
    pub padding: usize,
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    pad: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(x: &[usize], weight: &[usize], stride: usize, pad: usize) -> Result<Self> {
        let (&[n, c, h, w], &[co, one, k, k2]) = (x, weight) else {
            candle_core::bail!(
                "depthwise conv2d: {x:?} and {weight:?} are not N x C x H x W and C x 1 x k x k"
            )
        };
        if co != c || one != 1 || k != k2 || stride == 0 || h + 2 * pad < k || w + 2 * pad < k {
            candle_core::bail!("depthwise conv2d: input {x:?} and weight {weight:?} (stride {stride}, padding {pad}) do not fit")
        }
        let out = |side: usize| (side + 2 * pad - k) / stride + 1;
        Ok(Self {
            n,
            c,
            h,
            w,
            k,
            stride,
            pad,
            ho: out(h),
            wo: out(w),
        })
    }

    /// The outputs `ox` of a row whose input column `ox * stride + kx - pad` is inside the row.
    fn columns(&self, kx: usize) -> std::ops::Range<usize> {
        if self.w + self.pad < kx + 1 {
            return 0..0;
        }
        let first = self.pad.saturating_sub(kx).div_ceil(self.stride);
        let last = (self.w + self.pad - kx - 1) / self.stride;
        first.min(self.wo)..(last + 1).min(self.wo)
    }

    /// The input row of output row `oy` under filter row `ky`, if inside the plane.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky)
            .checked_sub(self.pad)
            .filter(|&r| r < self.h)
    }

    /// Calls `f(input offset, output offset, length)` for every run of a
    /// filter tap (ky, kx) over a plane: the input at stride `self.stride`.
    fn for_each_run(&self, ky: usize, kx: usize, mut f: impl FnMut(usize, usize, usize)) {
        let cols = self.columns(kx);
        if cols.is_empty() {
            return;
        }
        for oy in 0..self.ho {
            if let Some(iy) = self.row(oy, ky) {
                let start = iy * self.w + cols.start * self.stride + kx - self.pad;
                f(start, oy * self.wo + cols.start, cols.len());
            }
        }
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("depthwise conv2d: inputs must be contiguous"),
    }
}

/// One plane's output: `y += w[tap] * x` along each run.
fn forward_plane(g: &Geometry, x: &[f32], filter: &[f32], y: &mut [f32]) {
    y.fill(0.0);
    for ky in 0..g.k {
        for kx in 0..g.k {
            let wv = filter[ky * g.k + kx];
            g.for_each_run(ky, kx, |i, o, len| {
                let out = &mut y[o..o + len];
                match g.stride {
                    1 => out
                        .iter_mut()
                        .zip(&x[i..i + len])
                        .for_each(|(y, x)| *y += wv * x),
                    s => out
                        .iter_mut()
                        .enumerate()
                        .for_each(|(j, y)| *y += wv * x[i + j * s]),
                }
            });
        }
    }
}

/// One plane's input gradient: `dx += w[tap] * dy` along each run.
fn input_grad_plane(g: &Geometry, dy: &[f32], filter: &[f32], dx: &mut [f32]) {
    dx.fill(0.0);
    for ky in 0..g.k {
        for kx in 0..g.k {
            let wv = filter[ky * g.k + kx];
            g.for_each_run(ky, kx, |i, o, len| {
                let grad = &dy[o..o + len];
                match g.stride {
                    1 => dx[i..i + len]
                        .iter_mut()
                        .zip(grad)
                        .for_each(|(d, g)| *d += wv * g),
                    s => grad
                        .iter()
                        .enumerate()
                        .for_each(|(j, g)| dx[i + j * s] += wv * g),
                }
            });
        }
    }
}

/// One channel's filter gradient over the batch: each tap's sum of `dy * x` along its runs.
fn weight_grad_channel(g: &Geometry, c: usize, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (plane, out_plane) = (g.h * g.w, g.ho * g.wo);
    for (tap, d) in dw.iter_mut().enumerate() {
        let (ky, kx) = (tap / g.k, tap % g.k);
        let mut sum = 0f64;
        for n in 0..g.n {
            let xs = &x[(n * g.c + c) * plane..][..plane];
            let gs = &dy[(n * g.c + c) * out_plane..][..out_plane];
            g.for_each_run(ky, kx, |i, o, len| {
                let run: f32 = (0..len).map(|j| gs[o + j] * xs[i + j * g.stride]).sum();
                sum += f64::from(run);
            });
        }
        *d = sum as f32;
    }
}

impl CustomOp2 for DepthwiseConv2dOp {
    fn name(&self) -> &'static str {
        "kd-depthwise-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.stride, self.padding)?;
        let (x, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let mut y = output_vec(g.n * g.c * g.ho * g.wo);
        y.par_chunks_mut(g.ho * g.wo)
            .enumerate()
            .for_each(|(p, y)| {
                let c = p % g.c;
                forward_plane(
                    &g,
                    &x[p * g.h * g.w..][..g.h * g.w],
                    &weight[c * g.k * g.k..][..g.k * g.k],
                    y,
                )
            });
        Ok((CpuStorage::F32(y), Shape::from((g.n, g.c, g.ho, g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = grad.apply_op2_no_bwd(
            weight,
            &InputGrad {
                op: *self,
                x_dims: x.dims().to_vec(),
            },
        )?;
        let dw = x.apply_op2_no_bwd(
            &grad,
            &WeightGrad {
                op: *self,
                w_dims: weight.dims().to_vec(),
            },
        )?;
        Ok((Some(dx), Some(dw)))
    }
}

/// (dY, weight) -> dx.
struct InputGrad {
    op: DepthwiseConv2dOp,
    x_dims: Vec<usize>,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "kd-depthwise-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(&self.x_dims, l2.dims(), self.op.stride, self.op.padding)?;
        let (dy, weight) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let mut dx = output_vec(g.n * g.c * g.h * g.w);
        dx.par_chunks_mut(g.h * g.w)
            .enumerate()
            .for_each(|(p, dx)| {
                let c = p % g.c;
                input_grad_plane(
                    &g,
                    &dy[p * g.ho * g.wo..][..g.ho * g.wo],
                    &weight[c * g.k * g.k..][..g.k * g.k],
                    dx,
                )
            });
        Ok((CpuStorage::F32(dx), Shape::from(self.x_dims.clone())))
    }
}

/// (x, dY) -> dweight.
struct WeightGrad {
    op: DepthwiseConv2dOp,
    w_dims: Vec<usize>,
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "kd-depthwise-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), &self.w_dims, self.op.stride, self.op.padding)?;
        let (x, dy) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let mut dw = vec![0f32; g.c * g.k * g.k];
        dw.par_chunks_mut(g.k * g.k)
            .enumerate()
            .for_each(|(c, dw)| weight_grad_channel(&g, c, x, dy, dw));
        Ok((CpuStorage::F32(dw), Shape::from(self.w_dims.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward and both gradients against Candle's grouped convolution, over
    /// strides, paddings, kernel sizes and odd sides.
    #[test]
    fn depthwise_matches_candles_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, stride, padding, h, w) in [
            (3, 1, 1, 8, 8),
            (3, 2, 1, 9, 7),
            (3, 2, 0, 8, 8),
            (5, 1, 2, 6, 5),
            (1, 1, 0, 4, 4),
            (3, 1, 1, 1, 3),
        ] {
            let (n, c) = (2, 5);
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1., (n, c, h, w), &dev).unwrap()).unwrap();
            let wt =
                Var::from_tensor(&Tensor::randn(0f32, 1., (c, 1, k, k), &dev).unwrap()).unwrap();
            let ours = x
                .apply_op2(&wt, DepthwiseConv2dOp { stride, padding })
                .unwrap();
            let theirs = x.conv2d(&wt, padding, stride, 1, c).unwrap();
            let probe = Tensor::randn(0f32, 1., theirs.shape(), &dev).unwrap();
            let close = |what: &str, a: &Tensor, b: &Tensor| {
                let diff = (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let scale = b
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(
                    diff <= 1e-5 * scale.max(1.0),
                    "{what} k{k} s{stride} p{padding} {h}x{w}: {diff}"
                );
            };
            close("forward", &ours, &theirs);
            let g_ours = (&ours * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g_theirs = (&theirs * &probe)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            close("dx", g_ours.get(&x).unwrap(), g_theirs.get(&x).unwrap());
            close("dw", g_ours.get(&wt).unwrap(), g_theirs.get(&wt).unwrap());
        }
    }

    /// NaN in, NaN out: a NaN pixel makes every output whose window holds it NaN.
    #[test]
    fn a_nan_pixel_reaches_the_outputs_that_see_it() {
        let dev = Device::Cpu;
        let mut v = vec![1f32; 16];
        v[5] = f32::NAN;
        let x = Tensor::from_vec(v, (1, 1, 4, 4), &dev).unwrap();
        let wt = Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &dev).unwrap();
        let y = x
            .apply_op2(
                &wt,
                DepthwiseConv2dOp {
                    stride: 1,
                    padding: 1,
                },
            )
            .unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let nan: Vec<usize> = (0..16).filter(|&i| y[i].is_nan()).collect();
        assert_eq!(nan, [0, 1, 2, 4, 5, 6, 8, 9, 10]);
    }
}
