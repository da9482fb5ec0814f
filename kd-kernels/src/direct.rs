//! A direct 3x3 stride-1 convolution for layers with few input channels (the
//! images' 1 or 3, the student's 16): forward, and through it the input
//! gradient, and the kernel gradient, with no column matrix.
//!
//! There im2col copies every input pixel nine times and hands `gemm` a
//! product only Ci·9 deep (9, 27, 144), too shallow for its packing to pay:
//! the student's 16->16 layer at 14x14 ran at 38 GFLOP/s forward, PyTorch's
//! at 115. Here each image's channels are first padded into planes whose
//! rows are `Wp = W + 2·pad` apart. Read flat, output `j = y·Wp + x` is then
//! `Σ w[ci][ky][kx] · plane[ci][j + ky·Wp + kx]`, a 1-D correlation computed
//! eight outputs a vector step, in registers; the `Wp - Wo` columns past
//! each output row are computed too and dropped.
use rayon::prelude::*;

use crate::conv::{relu_in_place, with_scratch, Geometry};

/// Floats per vector step: AVX2's eight.
const LANES: usize = 8;
/// A register block: four output channels by three vectors of outputs is
/// twelve accumulators, plus three input vectors and a broadcast weight:
/// AVX2's sixteen registers.
const CO_BLOCK: usize = 4;
const V_BLOCK: usize = 2;
/// Input channels from which the direct path runs: below, images (1 or 3
/// channels) make a product so thin that it is bound by writing the outputs,
/// and im2col's one write beat this path's two (the teacher's 1->128 layer
/// at 28x28: forward 9.3 against 15.3 ms, with the kernel gradient 38.4
/// against 60.2 ms; `kd-ops 3 conv_`, best of 4).
const MIN_CHANNELS: usize = 4;
/// Input channels up to which it runs; from 32 up Winograd does fewer
/// multiplications (the layers between are the FitNets regressor's 16 at most).
const MAX_CHANNELS: usize = 16;

/// Whether `g` is a convolution computed here.
pub(crate) fn applies(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && (MIN_CHANNELS..=MAX_CHANNELS).contains(&g.ci)
}

/// One image's padded channel planes, read flat.
struct Planes {
    /// Padded row stride.
    wp: usize,
    /// Floats per plane: the padded image and what the last vector step reads past it.
    len: usize,
    /// Vector steps per output channel: `Ho·Wp` outputs, rounded up.
    vectors: usize,
}

impl Planes {
    fn new(g: &Geometry) -> Self {
        let wp = g.w + 2 * g.pad;
        let vectors = (g.ho * wp).div_ceil(LANES);
        // The last step reads up to tap (2, 2) of its last lane.
        let len = ((g.h + 2 * g.pad) * wp).max(vectors * LANES + 2 * wp + 2);
        Self { wp, len, vectors }
    }

    /// Floats of one output channel read flat: `Ho·Wp` and the last step's overhang.
    fn out_len(&self) -> usize {
        self.vectors * LANES
    }

    /// Copies one image's channels into `planes` (`len` floats each), zeros around.
    fn fill(&self, g: &Geometry, image: &[f32], planes: &mut [f32]) {
        planes.fill(0.0);
        for (plane, channel) in planes
            .chunks_exact_mut(self.len)
            .zip(image.chunks_exact(g.h * g.w))
        {
            for (y, row) in channel.chunks_exact(g.w).enumerate() {
                let at = (y + g.pad) * self.wp + g.pad;
                plane[at..at + g.w].copy_from_slice(row);
            }
        }
    }
}

/// `relu?(conv(x, w) + b)` for a geometry [`applies`] accepts.
pub(crate) fn convolve(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let p = Planes::new(g);
    let (image_in, image_out) = (g.ci * g.h * g.w, g.co * g.p());
    let mut out = vec![0f32; g.n * image_out];
    out.par_chunks_mut(image_out)
        .zip(x.par_chunks(image_in))
        .for_each(|(y, x)| {
            with_scratch(g.ci * p.len + g.co * p.out_len(), |scratch| {
                let (planes, flat) = scratch.split_at_mut(g.ci * p.len);
                p.fill(g, x, planes);
                correlate(g, &p, planes, w, flat);
                for (co, (y, flat)) in y
                    .chunks_exact_mut(g.p())
                    .zip(flat.chunks_exact(p.out_len()))
                    .enumerate()
                {
                    let bias = b.map_or(0.0, |b| b[co]);
                    for (oy, row) in y.chunks_exact_mut(g.wo).enumerate() {
                        for (o, v) in row.iter_mut().zip(&flat[oy * p.wp..]) {
                            *o = v + bias;
                        }
                    }
                    if relu {
                        relu_in_place(y);
                    }
                }
            })
        });
    out
}

/// `dW` for a geometry [`applies`] accepts, or `None` when the input holds
/// a NaN or an infinity: the dropped columns past each row multiply
/// (zeroed) output gradients with real input pixels, and 0·∞ is NaN where
/// a convolution has no term (then the im2col path computes it).
pub(crate) fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    if !x.iter().all(|v| v.is_finite()) {
        return None;
    }
    let p = Planes::new(g);
    let (image_in, image_out, taps) = (g.ci * g.h * g.w, g.co * g.p(), g.ci * 9);
    let images: Vec<usize> = (0..g.n).collect();
    let chunk = g.n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    // Each worker sums its images' lanes in order, and the workers' sums are
    // added in order: the same bits for the same thread count.
    let partial: Vec<Vec<f32>> = images
        .par_chunks(chunk)
        .map(|images| {
            let mut lanes = vec![0f32; g.co * taps * LANES];
            with_scratch(g.ci * p.len + g.co * p.out_len(), |scratch| {
                let (planes, grads) = scratch.split_at_mut(g.ci * p.len);
                for &i in images {
                    p.fill(g, &x[i * image_in..][..image_in], planes);
                    // dY read flat like the outputs, zero in the dropped columns.
                    grads.fill(0.0);
                    let dy = &dy[i * image_out..][..image_out];
                    for (flat, dy) in grads
                        .chunks_exact_mut(p.out_len())
                        .zip(dy.chunks_exact(g.p()))
                    {
                        for (oy, row) in dy.chunks_exact(g.wo).enumerate() {
                            flat[oy * p.wp..][..g.wo].copy_from_slice(row);
                        }
                    }
                    accumulate_taps(g, &p, planes, grads, &mut lanes);
                }
            });
            lanes
        })
        .collect();
    let mut dw = vec![0f32; g.co * taps];
    for lanes in partial {
        for (d, l) in dw.iter_mut().zip(lanes.chunks_exact(LANES)) {
            *d += l.iter().sum::<f32>();
        }
    }
    Some(dw)
}

/// `flat[co] = Σ w[co][ci][tap] · plane[ci] shifted by the tap`, for every
/// output channel, in register blocks.
fn correlate(g: &Geometry, p: &Planes, planes: &[f32], w: &[f32], flat: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fused(g: &Geometry, p: &Planes, planes: &[f32], w: &[f32], flat: &mut [f32]) {
            correlate_with::<true>(g, p, planes, w, flat)
        }
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { fused(g, p, planes, w, flat) };
    }
    correlate_with::<false>(g, p, planes, w, flat)
}

#[inline(always)]
fn correlate_with<const FUSED: bool>(
    g: &Geometry,
    p: &Planes,
    planes: &[f32],
    w: &[f32],
    flat: &mut [f32],
) {
    let mut co = 0;
    while co < g.co {
        if g.co - co >= CO_BLOCK {
            channel_block::<FUSED, CO_BLOCK>(g, p, planes, w, flat, co);
            co += CO_BLOCK;
        } else {
            channel_block::<FUSED, 1>(g, p, planes, w, flat, co);
            co += 1;
        }
    }
}

/// Output channels `co..co + CB`, all vector steps.
#[inline(always)]
fn channel_block<const FUSED: bool, const CB: usize>(
    g: &Geometry,
    p: &Planes,
    planes: &[f32],
    w: &[f32],
    flat: &mut [f32],
    co: usize,
) {
    let taps = g.ci * 9;
    let w = &w[co * taps..(co + CB) * taps];
    let mut v = 0;
    while v < p.vectors {
        if p.vectors - v >= V_BLOCK {
            let acc = register_block::<FUSED, CB, V_BLOCK>(g, p, planes, w, v * LANES);
            store(p, flat, co, v, &acc);
            v += V_BLOCK;
        } else {
            let acc = register_block::<FUSED, CB, 1>(g, p, planes, w, v * LANES);
            store(p, flat, co, v, &acc);
            v += 1;
        }
    }
}

fn store<const CB: usize, const VB: usize>(
    p: &Planes,
    flat: &mut [f32],
    co: usize,
    v: usize,
    acc: &[[[f32; LANES]; VB]; CB],
) {
    for (c, acc) in acc.iter().enumerate() {
        let row = &mut flat[(co + c) * p.out_len() + v * LANES..][..VB * LANES];
        for (dst, a) in row.chunks_exact_mut(LANES).zip(acc) {
            dst.copy_from_slice(a);
        }
    }
}

/// The `CB x VB` accumulators of outputs `at..at + VB·LANES` of `CB` channels
/// (whose kernels are `w`, Ci·9 each).
#[inline(always)]
fn register_block<const FUSED: bool, const CB: usize, const VB: usize>(
    g: &Geometry,
    p: &Planes,
    planes: &[f32],
    w: &[f32],
    at: usize,
) -> [[[f32; LANES]; VB]; CB] {
    let taps = g.ci * 9;
    assert!(w.len() >= CB * taps && planes.len() >= g.ci * p.len);
    assert!(at + VB * LANES + 2 * p.wp + 2 <= p.len);
    let mut acc = [[[0f32; LANES]; VB]; CB];
    for ci in 0..g.ci {
        let plane = planes[ci * p.len..].as_ptr();
        for ky in 0..3 {
            for kx in 0..3 {
                let tap = ci * 9 + ky * 3 + kx;
                // SAFETY: at + VB·LANES + 2·Wp + 2 <= len, asserted above.
                let x: [[f32; LANES]; VB] = std::array::from_fn(|v| unsafe {
                    std::ptr::read_unaligned(plane.add(at + v * LANES + ky * p.wp + kx).cast())
                });
                for (c, acc) in acc.iter_mut().enumerate() {
                    // SAFETY: c·taps + tap < CB·taps <= w.len(), asserted above.
                    let wv = unsafe { *w.get_unchecked(c * taps + tap) };
                    for (acc, x) in acc.iter_mut().zip(&x) {
                        for (a, x) in acc.iter_mut().zip(x) {
                            *a = mul_add::<FUSED>(wv, *x, *a);
                        }
                    }
                }
            }
        }
    }
    acc
}

/// `a·b + c`, in one rounding where the CPU has FMA (the dispatch says so).
#[inline(always)]
fn mul_add<const FUSED: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FUSED {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `lanes[co][ci][tap] += Σ_j grads[co][j] · plane[ci][j + tap's shift]`, lane by lane.
fn accumulate_taps(g: &Geometry, p: &Planes, planes: &[f32], grads: &[f32], lanes: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fused(
            g: &Geometry,
            p: &Planes,
            planes: &[f32],
            grads: &[f32],
            lanes: &mut [f32],
        ) {
            accumulate_taps_with::<true>(g, p, planes, grads, lanes)
        }
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { fused(g, p, planes, grads, lanes) };
    }
    accumulate_taps_with::<false>(g, p, planes, grads, lanes)
}

#[inline(always)]
fn accumulate_taps_with<const FUSED: bool>(
    g: &Geometry,
    p: &Planes,
    planes: &[f32],
    grads: &[f32],
    lanes: &mut [f32],
) {
    assert!(planes.len() >= g.ci * p.len && grads.len() >= g.co * p.out_len());
    assert!(lanes.len() >= g.co * g.ci * 9 * LANES);
    assert!(p.out_len() + 2 * p.wp + 2 <= p.len);
    for co in 0..g.co {
        let d = grads[co * p.out_len()..].as_ptr();
        for ci in 0..g.ci {
            let plane = planes[ci * p.len..].as_ptr();
            let mut acc = [[0f32; LANES]; 9];
            for v in 0..p.vectors {
                let j = v * LANES;
                // SAFETY: j + LANES <= out_len, and j + LANES + 2·Wp + 2 <= len, asserted above.
                let dv: [f32; LANES] = unsafe { std::ptr::read_unaligned(d.add(j).cast()) };
                for (tap, acc) in acc.iter_mut().enumerate() {
                    let shift = tap / 3 * p.wp + tap % 3;
                    let x: [f32; LANES] =
                        unsafe { std::ptr::read_unaligned(plane.add(j + shift).cast()) };
                    for ((a, d), x) in acc.iter_mut().zip(&dv).zip(&x) {
                        *a = mul_add::<FUSED>(*d, *x, *a);
                    }
                }
            }
            let out = &mut lanes[(co * g.ci + ci) * 9 * LANES..][..9 * LANES];
            for (o, a) in out.chunks_exact_mut(LANES).zip(&acc) {
                for (o, a) in o.iter_mut().zip(a) {
                    *o += a;
                }
            }
        }
    }
}
