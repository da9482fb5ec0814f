//! A direct 3x3 stride-1 convolution, with no column matrix: forward, and
//! through it the input gradient, and the kernel gradient. It runs for layers
//! with few input channels (the student's 16) and, on AVX-512 CPUs, for
//! narrow images (the teacher's 14x14 and 16x16 layers).
//!
//! There im2col copies every input pixel nine times and hands `gemm` a
//! product only Ci·9 deep (9, 27, 144), too shallow for its packing to pay:
//! the student's 16->16 layer at 14x14 ran at 38 GFLOP/s forward, PyTorch's
//! at 115. Here each image's channels are first padded into planes whose
//! rows are `Wp = W + 2·pad` apart. Read flat, output `j = y·Wp + x` is then
//! `Σ w[ci][ky][kx] · plane[ci][j + ky·Wp + kx]`, a 1-D correlation computed
//! eight or sixteen outputs a vector step, in registers; the `Wp - Wo`
//! columns past each output row are computed too and dropped.
use rayon::prelude::*;

use crate::im2col::{output_vec, relu_in_place, with_scratch, Geometry};
use crate::winograd::all_finite;

/// Floats per vector step of the portable code: AVX2's eight (the AVX-512
/// code in [`avx512`] takes sixteen).
const LANES: usize = 8;
/// The portable code's register block: four output channels by two vectors
/// of outputs is eight accumulators, with two input vectors and a broadcast
/// weight (four by three spilled out of AVX2's sixteen registers).
const CO_BLOCK: usize = 4;
const V_BLOCK: usize = 2;
/// Input channels from which the direct path runs: below, images (1 or 3
/// channels) make a product so thin that it is bound by writing the outputs,
/// and im2col's one write beat this path's two with the AVX2 code (the
/// teacher's 1->128 layer at 28x28: forward 9.3 against 15.3 ms, with the
/// kernel gradient 38.4 against 60.2 ms; `kd-ops 3 conv_`, best of 4). The
/// AVX-512 code tied there and on 1->16, and won only on CIFAR's 3->16.
const MIN_CHANNELS: usize = 4;
/// Input channels up to which it runs; from 32 up Winograd does fewer
/// multiplications (the layers between are the FitNets regressor's 16 at most).
const MAX_CHANNELS: usize = 16;
/// Output columns up to which, where the CPU has AVX-512, the direct path
/// runs whatever the channels: on these narrow images Winograd takes
/// F(2×2, 3×3), whose transforms cost more than the multiplications they
/// save. With it the teacher's 14x14 layers went from 9.9 to 6.0 ms forward
/// (64->32) and its train step at Fashion-MNIST's shape from 444 to 408 ms
/// (`kd-ops` and `kd-steps`, best of 3-4 rounds); at 16 columns the 64->64
/// layer was a tie.
const MAX_COLUMNS: usize = 16;
/// Floats of planes and output gradients the kernel gradient holds at once:
/// a block of images whose every (output, input) channel pair is summed in
/// registers before the sums in memory are touched (per image, the 64->64
/// layer's 14x14 planes gave 14 vector steps per flush of 2.4 MB of sums).
const BLOCK_FLOATS: usize = 1 << 18;

/// Whether `g` is a convolution computed here.
pub(crate) fn applies(g: &Geometry) -> bool {
    g.k == 3
        && g.stride == 1
        && g.ci >= MIN_CHANNELS
        && (g.ci <= MAX_CHANNELS || (g.wo <= MAX_COLUMNS && Isa::detect().is_avx512()))
}

/// The vector code that runs, picked once per call from what the CPU has.
#[derive(Clone, Copy, Debug)]
enum Isa {
    /// Sixteen floats a step, with FMA, in 32 registers.
    #[cfg(target_arch = "x86_64")]
    Avx512,
    /// Eight floats a step, with FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// What the compiler makes of the portable code for the baseline.
    Baseline,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    fn is_avx512(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Isa::Avx512 = self {
            return true;
        }
        false
    }

    /// Floats per vector step.
    fn lanes(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => avx512::LANES,
            _ => LANES,
        }
    }
}

/// One image's padded channel planes, read flat.
struct Planes {
    /// Floats per vector step.
    lanes: usize,
    /// Padded row stride.
    wp: usize,
    /// Floats per plane: the padded image and what the last vector step reads past it.
    len: usize,
    /// Vector steps per output channel: `Ho·Wp` outputs, rounded up.
    vectors: usize,
}

impl Planes {
    fn new(g: &Geometry, isa: Isa) -> Self {
        let (lanes, wp) = (isa.lanes(), g.w + 2 * g.pad);
        let vectors = (g.ho * wp).div_ceil(lanes);
        // The last step reads up to tap (2, 2) of its last lane.
        let len = ((g.h + 2 * g.pad) * wp).max(vectors * lanes + 2 * wp + 2);
        Self {
            lanes,
            wp,
            len,
            vectors,
        }
    }

    /// Floats of one output channel read flat: `Ho·Wp` and the last step's overhang.
    fn out_len(&self) -> usize {
        self.vectors * self.lanes
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
    convolve_on(Isa::detect(), g, x, w, b, relu)
}

fn convolve_on(
    isa: Isa,
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let p = Planes::new(g, isa);
    let (image_in, image_out) = (g.ci * g.h * g.w, g.co * g.p());
    let mut out = output_vec(g.n * image_out);
    out.par_chunks_mut(image_out)
        .zip(x.par_chunks(image_in))
        .for_each(|(y, x)| {
            with_scratch(g.ci * p.len + g.co * p.out_len(), |scratch| {
                let (planes, flat) = scratch.split_at_mut(g.ci * p.len);
                p.fill(g, x, planes);
                correlate(isa, g, &p, planes, w, flat);
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
    kernel_grad_on(Isa::detect(), g, x, dy)
}

fn kernel_grad_on(isa: Isa, g: &Geometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    let p = Planes::new(g, isa);
    let (image_in, image_out, taps) = (g.ci * g.h * g.w, g.co * g.p(), g.ci * 9);
    let images: Vec<usize> = (0..g.n).collect();
    let chunk = g.n.div_ceil(rayon::current_num_threads().max(1)).max(1);
    let per_image = g.ci * p.len + g.co * p.out_len();
    let per_block = (BLOCK_FLOATS / per_image).clamp(1, chunk);
    // Each worker sums its images' lanes in order, and the workers' sums are
    // added in order: the same bits for the same thread count.
    let partial: Vec<Option<Vec<f32>>> = images
        .par_chunks(chunk)
        .map(|images| {
            let mut lanes = vec![0f32; g.co * taps * p.lanes];
            with_scratch(per_block * per_image, |scratch| {
                for block in images.chunks(per_block) {
                    let (planes, grads) = scratch.split_at_mut(per_block * g.ci * p.len);
                    for (j, &i) in block.iter().enumerate() {
                        let image = &x[i * image_in..][..image_in];
                        // Checked here, in parallel, on the image about to be copied.
                        if !all_finite(image) {
                            return None;
                        }
                        let planes = &mut planes[j * g.ci * p.len..][..g.ci * p.len];
                        p.fill(g, image, planes);
                        // dY read flat like the outputs, zero in the dropped columns.
                        let grads = &mut grads[j * g.co * p.out_len()..][..g.co * p.out_len()];
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
                    }
                    accumulate_taps(isa, g, &p, block.len(), planes, grads, &mut lanes);
                }
                Some(())
            })?;
            Some(lanes)
        })
        .collect();
    let mut dw = vec![0f32; g.co * taps];
    for lanes in partial {
        for (d, l) in dw.iter_mut().zip(lanes?.chunks_exact(p.lanes)) {
            *d += l.iter().sum::<f32>();
        }
    }
    Some(dw)
}

/// `flat[co] = Σ w[co][ci][tap] · plane[ci] shifted by the tap`, for every
/// output channel, in register blocks.
fn correlate(isa: Isa, g: &Geometry, p: &Planes, planes: &[f32], w: &[f32], flat: &mut [f32]) {
    assert!(planes.len() >= g.ci * p.len && w.len() >= g.co * g.ci * 9);
    assert!(flat.len() >= g.co * p.out_len() && p.out_len() + 2 * p.wp + 2 <= p.len);
    match isa {
        // SAFETY: the CPU has AVX-512; the sizes are asserted above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::correlate(g, p, planes, w, flat) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fused(g: &Geometry, p: &Planes, planes: &[f32], w: &[f32], flat: &mut [f32]) {
                correlate_with::<true>(g, p, planes, w, flat)
            }
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { fused(g, p, planes, w, flat) }
        }
        Isa::Baseline => correlate_with::<false>(g, p, planes, w, flat),
    }
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

/// `lanes[co][ci][tap] += Σ_image Σ_j grads[image][co][j] ·
/// planes[image][ci][j + tap's shift]`, lane by lane, for `images` images.
fn accumulate_taps(
    isa: Isa,
    g: &Geometry,
    p: &Planes,
    images: usize,
    planes: &[f32],
    grads: &[f32],
    lanes: &mut [f32],
) {
    assert!(planes.len() >= images * g.ci * p.len && grads.len() >= images * g.co * p.out_len());
    assert!(lanes.len() >= g.co * g.ci * 9 * p.lanes);
    assert!(p.out_len() + 2 * p.wp + 2 <= p.len);
    match isa {
        // SAFETY: the CPU has AVX-512; the sizes are asserted above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::accumulate_taps(g, p, images, planes, grads, lanes) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn fused(
                g: &Geometry,
                p: &Planes,
                images: usize,
                planes: &[f32],
                grads: &[f32],
                lanes: &mut [f32],
            ) {
                accumulate_taps_with::<true>(g, p, images, planes, grads, lanes)
            }
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { fused(g, p, images, planes, grads, lanes) }
        }
        Isa::Baseline => accumulate_taps_with::<false>(g, p, images, planes, grads, lanes),
    }
}

#[inline(always)]
fn accumulate_taps_with<const FUSED: bool>(
    g: &Geometry,
    p: &Planes,
    images: usize,
    planes: &[f32],
    grads: &[f32],
    lanes: &mut [f32],
) {
    for co in 0..g.co {
        for ci in 0..g.ci {
            let mut acc = [[0f32; LANES]; 9];
            for image in 0..images {
                let d = grads[(image * g.co + co) * p.out_len()..].as_ptr();
                let plane = planes[(image * g.ci + ci) * p.len..].as_ptr();
                for v in 0..p.vectors {
                    let j = v * LANES;
                    // SAFETY: j + LANES <= out_len, and j + LANES + 2·Wp + 2 <= len, asserted
                    // by the caller.
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

/// The same two loops with AVX-512 intrinsics, sixteen floats a step: the
/// compiler's own vectorisation of the portable code for sixteen lanes
/// gathered across the wrong axis (20x slower), so the vectors are spelt out.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Geometry, Planes};

    pub(super) const LANES: usize = 16;
    /// Eight output channels by two vectors: sixteen accumulators of the 32 registers.
    const CO_BLOCK: usize = 8;
    const V_BLOCK: usize = 2;

    /// [`super::correlate`]'s loop. Safety: the CPU has AVX-512F, and the
    /// sizes are those `correlate` asserts.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn correlate(
        g: &Geometry,
        p: &Planes,
        planes: &[f32],
        w: &[f32],
        flat: &mut [f32],
    ) {
        let mut co = 0;
        while co < g.co {
            let cb = if g.co - co >= CO_BLOCK { CO_BLOCK } else { 1 };
            let mut v = 0;
            while v < p.vectors {
                let vb = if p.vectors - v >= V_BLOCK { V_BLOCK } else { 1 };
                match (cb, vb) {
                    (CO_BLOCK, V_BLOCK) => block::<CO_BLOCK, V_BLOCK>(g, p, planes, w, flat, co, v),
                    (CO_BLOCK, _) => block::<CO_BLOCK, 1>(g, p, planes, w, flat, co, v),
                    (_, V_BLOCK) => block::<1, V_BLOCK>(g, p, planes, w, flat, co, v),
                    _ => block::<1, 1>(g, p, planes, w, flat, co, v),
                }
                v += vb;
            }
            co += cb;
        }
    }

    /// Output channels `co..co + CB`, vector steps `v..v + VB`.
    #[inline(always)]
    unsafe fn block<const CB: usize, const VB: usize>(
        g: &Geometry,
        p: &Planes,
        planes: &[f32],
        w: &[f32],
        flat: &mut [f32],
        co: usize,
        v: usize,
    ) {
        let taps = g.ci * 9;
        let at = v * LANES;
        let w = w[co * taps..].as_ptr();
        let mut acc = [[_mm512_setzero_ps(); VB]; CB];
        for ci in 0..g.ci {
            let plane = planes[ci * p.len + at..].as_ptr();
            for tap in 0..9 {
                let src = plane.add(tap / 3 * p.wp + tap % 3);
                let x: [__m512; VB] = std::array::from_fn(|i| _mm512_loadu_ps(src.add(i * LANES)));
                for (c, acc) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*w.add(c * taps + ci * 9 + tap));
                    for (a, x) in acc.iter_mut().zip(x) {
                        *a = _mm512_fmadd_ps(wv, x, *a);
                    }
                }
            }
        }
        for (c, acc) in acc.iter().enumerate() {
            let dst = flat[(co + c) * p.out_len() + at..].as_mut_ptr();
            for (i, a) in acc.iter().enumerate() {
                _mm512_storeu_ps(dst.add(i * LANES), *a);
            }
        }
    }

    /// [`super::accumulate_taps`]'s loop, two output channels at a time so
    /// that each input vector loaded serves two accumulators. Safety: as
    /// for [`correlate`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate_taps(
        g: &Geometry,
        p: &Planes,
        images: usize,
        planes: &[f32],
        grads: &[f32],
        lanes: &mut [f32],
    ) {
        let mut co = 0;
        while co < g.co {
            if g.co - co >= 2 {
                taps::<2>(g, p, images, planes, grads, lanes, co);
                co += 2;
            } else {
                taps::<1>(g, p, images, planes, grads, lanes, co);
                co += 1;
            }
        }
    }

    #[inline(always)]
    unsafe fn taps<const CB: usize>(
        g: &Geometry,
        p: &Planes,
        images: usize,
        planes: &[f32],
        grads: &[f32],
        lanes: &mut [f32],
        co: usize,
    ) {
        for ci in 0..g.ci {
            let mut acc = [[_mm512_setzero_ps(); 9]; CB];
            for image in 0..images {
                let plane = planes[(image * g.ci + ci) * p.len..].as_ptr();
                let grads = grads[(image * g.co + co) * p.out_len()..].as_ptr();
                for v in 0..p.vectors {
                    let j = v * LANES;
                    let d: [__m512; CB] =
                        std::array::from_fn(|c| _mm512_loadu_ps(grads.add(c * p.out_len() + j)));
                    for tap in 0..9 {
                        let x = _mm512_loadu_ps(plane.add(j + tap / 3 * p.wp + tap % 3));
                        for (acc, d) in acc.iter_mut().zip(d) {
                            acc[tap] = _mm512_fmadd_ps(d, x, acc[tap]);
                        }
                    }
                }
            }
            for (c, acc) in acc.iter().enumerate() {
                let out = lanes[((co + c) * g.ci + ci) * 9 * LANES..][..9 * LANES].as_mut_ptr();
                for (tap, a) in acc.iter().enumerate() {
                    let o = out.add(tap * LANES);
                    _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), *a));
                }
            }
        }
    }
}

/// Every vector code this CPU can run against an `f64` convolution: the
/// integration tests reach only the one [`Isa::detect`] picks.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, Case};

    fn isas() -> Vec<Isa> {
        let mut all = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                all.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Isa::Avx512);
            }
        }
        all
    }

    #[test]
    fn every_vector_code_matches_an_f64_convolution() {
        // Partial register blocks of channels and of vector steps, paddings
        // 0 to 2, a 1x1 image, and the shapes of the networks' layers.
        let shapes = [
            (2, 16, 14, 14, 16, 1),
            (1, 4, 6, 5, 7, 0),
            (2, 8, 5, 9, 3, 2),
            (1, 5, 1, 1, 9, 1),
            (3, 64, 14, 14, 32, 1),
            (1, 33, 16, 16, 17, 1),
        ];
        for shape in shapes {
            let c = Case::new(shape);
            for isa in isas() {
                let what = format!("{isa:?} {}", c.what);
                let ours = convolve_on(isa, &c.g, &c.x, &c.k, None, false);
                assert_close(1e-5, &format!("{what} output"), &ours, &c.y);
                let ours = kernel_grad_on(isa, &c.g, &c.x, &c.dy).unwrap();
                assert_close(1e-5, &format!("{what} kernel gradient"), &ours, &c.dw);
            }
        }
    }
}
