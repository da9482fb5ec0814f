//! A 2-D convolution for the CPU with its own backward, lowered to one matrix
//! multiply per image (im2col + `gemm`), parallel over the batch; 3x3
//! stride-1 layers go to `direct` (4 to 16 input channels, and on AVX-512
//! CPUs any from 4 up at 16 output columns or fewer) or to `winograd` (32
//! channels and more on both sides) instead.
//!
//! Candle 0.11's CPU convolution copies its whole input into NHWC on one
//! thread, and computes the input gradient with a slow transposed convolution
//! (and for input images too, which nobody needs). Here the forward is
//! `out[n] = W · cols(x[n]) + b`, and the backward is two more products:
//! `dW = Σ_n dY[n] · cols(x[n])ᵀ` and, only when the input needs a gradient,
//! `dx` (a convolution of dY with the flipped kernel at stride 1,
//! `col2im(Wᵀ · dY[n])` otherwise). The bias and an optional ReLU are
//! applied in the same pass over the output (Candle's separate bias add and
//! ReLU each cost a full read and write of the activations, and more in their
//! backward), and an optional max-pool after them is fused into the same op
//! ([`Conv2dOp`] says why).
use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::im2col::{
    col2im, direct_image, im2col, matmul, output_vec, slice, with_scratch, Geometry,
};
use crate::{direct, pool, winograd};

/// `relu?(conv(x, w) + b)` for geometry `g`: the direct correlation or
/// Winograd where they apply, otherwise one im2col and one product per image.
fn convolve(g: &Geometry, x: &[f32], w: &[f32], b: Option<&[f32]>, relu: bool) -> Vec<f32> {
    if direct::applies(g) {
        return direct::convolve(g, x, w, b, relu);
    }
    if winograd::applies(g) {
        return winograd::convolve(g, x, w, b, relu);
    }
    let image_in = g.ci * g.h * g.w;
    let mut out = output_vec(g.n * g.co * g.p());
    out.par_chunks_mut(g.co * g.p())
        .zip(x.par_chunks(image_in))
        .for_each(|(y, x)| direct_image(g, x, w, b, relu, y));
    out
}

/// Forward: (x, weight, bias) -> y = conv(x, weight) + bias, then `max(y, 0)`
/// when `relu` is set, then `nn.MaxPool2d(k)` when `max_pool` is `Some(k)`;
/// with its backward.
///
/// The fused pool is one node in Candle's graph instead of two: Candle's
/// backward allocates a zero tensor for every node's input and adds the
/// node's gradient into it, and the pool's input is the layer's whole
/// output. Its backward needs only where each output came from (`pool`'s
/// routes, a byte each), not the layer's output, which the separate pool
/// and ReLU kept alive and read again.
pub struct Conv2dOp {
    pub pad: usize,
    pub stride: usize,
    pub relu: bool,
    pub max_pool: Option<usize>,
    /// The fused pool's routes, from the forward to the backward.
    routes: Mutex<Option<Arc<Vec<u8>>>>,
}

impl Conv2dOp {
    pub fn new(pad: usize, stride: usize, relu: bool) -> Self {
        Self {
            pad,
            stride,
            relu,
            max_pool: None,
            routes: Mutex::new(None),
        }
    }

    /// The same, followed by `nn.MaxPool2d(k)`.
    pub fn with_max_pool(self, k: usize) -> Self {
        Self {
            max_pool: Some(k),
            ..self
        }
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kd-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.pad, self.stride)?;
        let (x, w, b) = (
            slice(s1, l1, "input")?,
            slice(s2, l2, "kernel")?,
            slice(s3, l3, "bias")?,
        );
        // Checked before the convolution's work, not after.
        if let Some(k) = self.max_pool.filter(|&k| !pool::fits(k, g.ho, g.wo)) {
            candle_core::bail!(
                "conv2d: a {k}x{k} max-pool does not fit the convolution's {}x{} output: use a window from 1 to {} and at most the output's size",
                g.ho,
                g.wo,
                pool::MAX_WINDOW
            )
        }
        let out = convolve(&g, x, w, Some(b), self.relu);
        let Some(k) = self.max_pool else {
            return Ok((CpuStorage::F32(out), Shape::from((g.n, g.co, g.ho, g.wo))));
        };
        let (pooled, routes) = pool::pool_with_routes(&out, g.ho, g.wo, k, self.relu);
        *self.routes.lock().unwrap() = Some(Arc::new(routes));
        Ok((
            CpuStorage::F32(pooled),
            Shape::from((g.n, g.co, g.ho / k, g.wo / k)),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let geometry = (self.pad, self.stride);
        let kernel = w.dims4()?;
        let g = Geometry::new(x.dims(), w.dims(), self.pad, self.stride)?;
        if self.relu && self.max_pool.is_none() && !x.track_op() && by_im2col(&g) {
            // The ReLU's gradient has no reader but the kernel and bias
            // gradients: they mask it image by image in cache, rather than
            // its whole being written and then read twice (for the teacher's
            // first layer, 51 MB each way).
            let both =
                x.apply_op3_no_bwd(&grad, &res.contiguous()?, &KernelGrad { geometry, kernel })?;
            let taps = g.co * g.kk();
            let dw = both.narrow(0, 0, taps)?.reshape(kernel)?;
            let db = both.narrow(0, taps, g.co)?;
            return Ok((None, Some(dw), Some(db)));
        }
        let grad = match self.max_pool {
            Some(k) => {
                let Some(routes) = self.routes.lock().unwrap().clone() else {
                    candle_core::bail!("conv2d: backward before forward")
                };
                let (h, w) = (g.ho, g.wo);
                grad.apply_op1_no_bwd(&Unpool { routes, h, w, k })?
            }
            None if self.relu => grad.apply_op2_no_bwd(&res.contiguous()?, &ReluMask)?,
            None => grad,
        };
        // Input images need no gradient: skip the most expensive product for them.
        let dx = if x.track_op() {
            Some(grad.apply_op2_no_bwd(
                w,
                &InputGrad {
                    geometry,
                    input: x.dims4()?,
                },
            )?)
        } else {
            None
        };
        let dw = x.apply_op2_no_bwd(&grad, &KernelGrad { geometry, kernel })?;
        let db = grad.apply_op1_no_bwd(&ChannelSum)?;
        Ok((dx, Some(dw), Some(db)))
    }
}

/// dY of the fused pool -> dY of the convolution (and its ReLU): [`pool::unpool`].
struct Unpool {
    routes: Arc<Vec<u8>>,
    h: usize,
    w: usize,
    k: usize,
}

impl candle_core::CustomOp1 for Unpool {
    fn name(&self) -> &'static str {
        "kd-conv2d-unpool"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, c, ..] = l.dims() else {
            candle_core::bail!("conv2d unpool: {:?} is not N x C x H x W", l.dims())
        };
        let dy = slice(s, l, "gradient")?;
        if dy.len() != self.routes.len() {
            candle_core::bail!(
                "conv2d unpool: {} gradients for {} routes",
                dy.len(),
                self.routes.len()
            )
        }
        let dx = pool::unpool(&self.routes, dy, self.h, self.w, self.k);
        Ok((CpuStorage::F32(dx), Shape::from((n, c, self.h, self.w))))
    }
}

/// (dY, Y) -> dY where Y > 0, else 0: the backward of the fused ReLU.
struct ReluMask;

impl CustomOp2 for ReluMask {
    fn name(&self) -> &'static str {
        "kd-relu-mask"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (dy, y) = (slice(s1, l1, "gradient")?, slice(s2, l2, "output")?);
        const CHUNK: usize = 1 << 14;
        let mut out = output_vec(dy.len());
        out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
            let (d, y) = (&dy[c * CHUNK..][..o.len()], &y[c * CHUNK..][..o.len()]);
            for ((o, d), y) in o.iter_mut().zip(d).zip(y) {
                *o = relu_grad(*d, *y);
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The gradient `d` of a ReLU's output `y` through the ReLU: `d` where
/// `y > 0`, else 0; a bit mask instead of a select, so that loops vectorise.
#[inline(always)]
fn relu_grad(d: f32, y: f32) -> f32 {
    f32::from_bits(d.to_bits() & (0u32.wrapping_sub(u32::from(y > 0.0))))
}

/// The sum of `v` in 16 interleaved partial sums: a plain `iter().sum()` must
/// add in order and so runs one float at a time.
fn lane_sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// N x C x H x W -> C: the sum over all but the channel axis (the bias gradient).
struct ChannelSum;

impl candle_core::CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "kd-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let &[n, c, h, w] = l.dims() else {
            candle_core::bail!("channel sum: {:?} is not N x C x H x W", l.dims())
        };
        let x = slice(s, l, "gradient")?;
        let plane = h * w;
        let sums: Vec<f32> = (0..c)
            .into_par_iter()
            .map(|ch| {
                (0..n)
                    .map(|i| lane_sum(&x[(i * c + ch) * plane..][..plane]))
                    .sum()
            })
            .collect();
        Ok((CpuStorage::F32(sums), Shape::from(c)))
    }
}

/// (dY, W) -> dx.
struct InputGrad {
    geometry: (usize, usize),
    input: (usize, usize, usize, usize),
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "kd-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, wd) = self.input;
        let g = Geometry::new(&[n, c, h, wd], l2.dims(), self.geometry.0, self.geometry.1)?;
        let (dy, w) = (slice(s1, l1, "gradient")?, slice(s2, l2, "kernel")?);
        let (k, pad) = (g.k, g.pad);
        let dx = if g.stride == 1 && pad < k {
            // With stride 1 the input gradient is itself a convolution: of dY
            // with the kernel flipped and its channel axes swapped, padded by
            // k - 1 - pad. Its column matrix is Co·K² x H·W instead of the
            // Ci·K² x Ho·Wo that col2im would scatter back, and nothing is
            // scattered (the teacher's train step went from ~1,010 to ~870 ms).
            let mut flipped = vec![0f32; w.len()];
            for co in 0..g.co {
                for ci in 0..g.ci {
                    for ky in 0..k {
                        for kx in 0..k {
                            flipped[((ci * g.co + co) * k + ky) * k + kx] =
                                w[((co * g.ci + ci) * k + (k - 1 - ky)) * k + (k - 1 - kx)];
                        }
                    }
                }
            }
            let full = Geometry::new(&[n, g.co, g.ho, g.wo], &[g.ci, g.co, k, k], k - 1 - pad, 1)?;
            convolve(&full, dy, &flipped, None, false)
        } else {
            let (kk, p) = (g.kk(), g.p());
            // col2im zeroes each image's gradient before adding into it.
            let mut dx = output_vec(n * c * h * wd);
            dx.par_chunks_mut(c * h * wd)
                .enumerate()
                .for_each(|(i, dxi)| {
                    with_scratch(kk * p, |cols| {
                        // cols = Wᵀ (KK x Co) · dY[i] (Co x P)
                        matmul(
                            cols,
                            p,
                            false,
                            kk,
                            p,
                            g.co,
                            w,
                            1,
                            kk,
                            &dy[i * g.co * p..(i + 1) * g.co * p],
                            p,
                            1,
                        );
                        col2im(&g, cols, dxi);
                    })
                });
            dx
        };
        Ok((CpuStorage::F32(dx), Shape::from(self.input)))
    }
}

/// The kernel gradient of a convolution (padding and stride, kernel shape):
/// (x, dY) -> dW as a [`CustomOp2`]; (x, dY, relu(Y)) -> dW and the bias
/// gradient as a [`CustomOp3`], for a layer whose ReLU gradient has no
/// other reader.
struct KernelGrad {
    geometry: (usize, usize),
    kernel: (usize, usize, usize, usize),
}

impl KernelGrad {
    fn geometry(&self, x: &Layout) -> Result<Geometry> {
        let (co, ci, k, _) = self.kernel;
        Geometry::new(x.dims(), &[co, ci, k, k], self.geometry.0, self.geometry.1)
    }
}

impl CustomOp2 for KernelGrad {
    fn name(&self) -> &'static str {
        "kd-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1)?;
        let (x, dy) = (slice(s1, l1, "input")?, slice(s2, l2, "gradient")?);
        let fast = if direct::applies(&g) {
            direct::kernel_grad(&g, x, dy)
        } else if winograd::applies(&g) {
            winograd::kernel_grad(&g, x, dy)
        } else {
            None
        };
        if let Some(dw) = fast {
            return Ok((CpuStorage::F32(dw), Shape::from(self.kernel)));
        }
        let (dw, _) = im2col_grads(&g, x, dy, None);
        Ok((CpuStorage::F32(dw), Shape::from(self.kernel)))
    }
}

/// Whether the kernel gradient of `g` is computed by im2col and `gemm`
/// ([`im2col_grads`]): where neither `direct` nor `winograd` applies.
fn by_im2col(g: &Geometry) -> bool {
    !direct::applies(g) && !winograd::applies(g)
}

/// `dW = Σ_n dY[n] · cols(x[n])ᵀ`, each worker summing its images in order
/// and the workers' sums added in order (the same bits for the same thread
/// count). With `relu_out`, the layer's output after its ReLU, `dY` is first
/// taken through the ReLU ([`relu_grad`]) image by image, and the bias
/// gradient `Σ dY` of the masked values is returned too.
fn im2col_grads(
    g: &Geometry,
    x: &[f32],
    dy: &[f32],
    relu_out: Option<&[f32]>,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let (kk, p, co) = (g.kk(), g.p(), g.co);
    let (image_in, image_out) = (g.ci * g.h * g.w, co * p);
    let chunk = g.n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = (0..g.n)
        .collect::<Vec<_>>()
        .par_chunks(chunk)
        .map(|images| {
            let (mut dw, mut db) = (vec![0f32; co * kk], vec![0f32; co]);
            let masked_len = if relu_out.is_some() { image_out } else { 0 };
            with_scratch(kk * p + masked_len, |scratch| {
                let (cols, masked) = scratch.split_at_mut(kk * p);
                for (j, &i) in images.iter().enumerate() {
                    im2col(g, &x[i * image_in..][..image_in], cols);
                    let mut grad = &dy[i * image_out..][..image_out];
                    if let Some(y) = relu_out {
                        let y = &y[i * image_out..][..image_out];
                        for ((m, d), y) in masked.iter_mut().zip(grad).zip(y) {
                            *m = relu_grad(*d, *y);
                        }
                        for (b, row) in db.iter_mut().zip(masked.chunks_exact(p)) {
                            *b += lane_sum(row);
                        }
                        grad = masked;
                    }
                    // dW (Co x KK) += dY[i] (Co x P) · colsᵀ (P x KK)
                    matmul(&mut dw, kk, j > 0, co, kk, p, grad, p, 1, cols, 1, p);
                }
            });
            (dw, db)
        })
        .collect();
    let (mut dw, mut db) = (vec![0f32; co * kk], vec![0f32; co]);
    for (part_w, part_b) in partial {
        for (a, b) in dw.iter_mut().zip(part_w) {
            *a += b;
        }
        for (a, b) in db.iter_mut().zip(part_b) {
            *a += b;
        }
    }
    (dw, relu_out.map(|_| db))
}

/// dW and db of the ReLU'd gradient, flat, one after the other:
/// [`im2col_grads`] with the mask.
impl CustomOp3 for KernelGrad {
    fn name(&self) -> &'static str {
        "kd-conv2d-kernel-bias-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = self.geometry(l1)?;
        let (x, dy, y) = (
            slice(s1, l1, "input")?,
            slice(s2, l2, "gradient")?,
            slice(s3, l3, "output")?,
        );
        if dy.len() != g.n * g.co * g.p() || y.len() != dy.len() {
            candle_core::bail!(
                "conv2d: gradient {:?} and output {:?} do not fit {:?}",
                l2.dims(),
                l3.dims(),
                l1.dims()
            )
        }
        let (mut dw, db) = im2col_grads(&g, x, dy, Some(y));
        dw.extend(db.unwrap_or_default());
        let len = dw.len();
        Ok((CpuStorage::F32(dw), Shape::from(len)))
    }
}
