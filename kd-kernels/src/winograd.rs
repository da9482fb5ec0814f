//! Winograd's minimal filtering for 3×3 stride-1 convolutions with enough
//! channels (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016): F(m×m, 3×3) computes each m×m block of outputs from an
//! (m+2)×(m+2) input tile with (m+2)² multiplications per channel pair
//! instead of 9m²: 2.25x fewer for F(2×2, 3×3), 4x fewer for F(4×4, 3×3).
//!
//! Every input tile `d` becomes `V = Bᵀ d B` and every kernel `g` becomes
//! `U = G g Gᵀ`; then, for each of the (m+2)² tile positions ξ, one matrix
//! product `M[ξ] (Co x T) = U[ξ] (Co x Ci) · V[ξ] (Ci x T)` over the T tiles
//! of a block of images, and the outputs are `Y = Aᵀ M A`. The kernel
//! gradient is the same product's adjoint: with `dM = A dY Aᵀ` for each
//! output-gradient tile, `dU[ξ] (Co x Ci) = Σ_tiles dM[ξ] · V[ξ]ᵀ` and
//! `dW = Gᵀ dU G`. Each [`Variant`] states its four matrices once, as 1-D
//! transforms that the 2-D code applies to rows and then to columns, on
//! single numbers (kernels) and on [`Lanes`] of eight tiles (images).
//!
//! A transform adds and subtracts its pixels in many combinations, so an
//! infinity meets itself with the other sign and becomes NaN where the direct
//! convolution (and PyTorch's) gives an infinity, and a NaN reaches outputs
//! whose window does not hold it. A block whose transformed input, gradient
//! or kernel is not finite is therefore computed by the direct path instead:
//! the transforms never turn a non-finite value finite, so checking them
//! checks the inputs.
use std::ops::{Add, Mul, Neg, Sub};

use rayon::prelude::*;

use crate::im2col::{direct_image, matmul, output_vec, relu_in_place, with_scratch, Geometry};

/// Fewer channels than this and the products per tile position are too thin
/// to pay for the transforms: the student's 16->16 layer took 4.8-6.0 ms
/// forward through F(2×2, 3×3) and 3.3 ms through im2col (`kd-ops 7
/// conv_16`, at 16x16); the direct correlation (`direct.rs`) now takes it.
const MIN_CHANNELS: usize = 32;

/// Bytes of transformed tiles per block of images (inputs and products):
/// enough columns for `gemm` to run near its peak, few enough to stay near
/// the core (this machine has 2 MiB of L2 per core). About 1, 2, 4 and 8 MB
/// gave teacher steps within this machine's run-to-run noise; 16 MB was
/// slower in both of two runs.
const SCRATCH_BYTES: usize = 4 << 20;

/// Whether `g` is a convolution Winograd computes here, and pays for.
pub(crate) fn applies(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.ci >= MIN_CHANNELS && g.co >= MIN_CHANNELS
}

/// The number arithmetic the 1-D transforms need: `f64` for kernels,
/// [`Lanes`] of `f32` for image tiles.
pub(crate) trait Arith:
    Copy
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Neg<Output = Self>
    + Mul<f64, Output = Self>
{
}
impl<T> Arith for T where
    T: Copy + Default + Add<Output = T> + Sub<Output = T> + Neg<Output = T> + Mul<f64, Output = T>
{
}

/// One F(m×m, 3×3): its tile sizes and its matrices as 1-D transforms.
/// Arrays are sized for the largest variant; entries past `A` (or `M`) are
/// neither read nor meaningful.
pub(crate) trait Variant {
    /// Outputs per tile side.
    const M: usize;
    /// Inputs per tile side: `M + 2`.
    const A: usize = Self::M + 2;
    /// `Bᵀ d` for one column of an input tile.
    fn input<T: Arith>(d: [T; 6]) -> [T; 6];
    /// `G g` for one column of a kernel.
    fn kernel<T: Arith>(g: [T; 3]) -> [T; 6];
    /// `Gᵀ u`, the adjoint of [`Variant::kernel`].
    fn kernel_adjoint<T: Arith>(u: [T; 6]) -> [T; 3];
    /// `Aᵀ m` for one column of a product tile.
    fn output<T: Arith>(m: [T; 6]) -> [T; 4];
    /// `A y`, the adjoint of [`Variant::output`].
    fn output_adjoint<T: Arith>(y: [T; 4]) -> [T; 6];
}

/// F(2×2, 3×3): Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
/// G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 -1 -1].
pub(crate) struct F2;

impl Variant for F2 {
    const M: usize = 2;
    #[inline(always)]
    fn input<T: Arith>(d: [T; 6]) -> [T; 6] {
        let z = T::default();
        [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3], z, z]
    }
    #[inline(always)]
    fn kernel<T: Arith>(g: [T; 3]) -> [T; 6] {
        let z = T::default();
        let (sum, odd) = ((g[0] + g[2]) * 0.5, g[1] * 0.5);
        [g[0], sum + odd, sum - odd, g[2], z, z]
    }
    #[inline(always)]
    fn kernel_adjoint<T: Arith>(u: [T; 6]) -> [T; 3] {
        let (sum, diff) = ((u[1] + u[2]) * 0.5, (u[1] - u[2]) * 0.5);
        [u[0] + sum, diff, sum + u[3]]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 6]) -> [T; 4] {
        let z = T::default();
        [m[0] + m[1] + m[2], m[1] - m[2] - m[3], z, z]
    }
    #[inline(always)]
    fn output_adjoint<T: Arith>(y: [T; 4]) -> [T; 6] {
        let z = T::default();
        [y[0], y[0] + y[1], y[0] - y[1], -y[1], z, z]
    }
}

/// F(4×4, 3×3) on the points 0, 1, -1, ½, -2 and ∞ (Barabasz et al.,
/// "Error analysis and improving the accuracy of Winograd convolution for
/// deep neural networks", 2020), built as Lavin & Gray build theirs:
/// Bᵀ = [1 -1.5 -2 1.5 1 0; 0 -1 0.5 2.5 1 0; 0 1 -2.5 0.5 1 0;
///       0 -2 -1 2 1 0; 0 0.5 -1 -0.5 1 0; 0 1 -1.5 -2 1.5 1],
/// G = [1 0 0; ⅓ ⅓ ⅓; -⅓ ⅓ -⅓; -16/15 -8/15 -4/15; 1/15 -2/15 4/15; 0 0 1],
/// Aᵀ = [1 1 1 1 1 0; 0 1 -1 0.5 -2 0; 0 1 1 0.25 4 0; 0 1 -1 0.125 -8 1];
/// written with their common sums. The usual points 0, ±1, ±2 gave the
/// 128->64 layer 1.6e-6 relative RMS error against an `f64` convolution and
/// these 1.1e-6 (the direct `f32` path: 2.5e-7), and a third of the worst
/// error.
pub(crate) struct F4;

impl Variant for F4 {
    const M: usize = 4;
    #[inline(always)]
    fn input<T: Arith>(d: [T; 6]) -> [T; 6] {
        let (a, b) = (d[3] - d[1], d[4] - d[2]);
        [
            (d[0] - d[2]) + b + a * 1.5,
            (d[4] - d[1]) + (d[2] * 0.5 + d[3] * 2.5),
            (d[4] + d[1]) + (d[3] * 0.5 - d[2] * 2.5),
            a * 2.0 + b,
            b - a * 0.5,
            (d[5] - d[3]) - a + b * 1.5,
        ]
    }
    #[inline(always)]
    fn kernel<T: Arith>(g: [T; 3]) -> [T; 6] {
        [
            g[0],
            (g[0] + g[1] + g[2]) * (1.0 / 3.0),
            (g[1] - g[0] - g[2]) * (1.0 / 3.0),
            -(g[0] * 16.0 + g[1] * 8.0 + g[2] * 4.0) * (1.0 / 15.0),
            (g[0] - g[1] * 2.0 + g[2] * 4.0) * (1.0 / 15.0),
            g[2],
        ]
    }
    #[inline(always)]
    fn kernel_adjoint<T: Arith>(u: [T; 6]) -> [T; 3] {
        let (sum, diff) = ((u[1] + u[2]) * (1.0 / 3.0), (u[1] - u[2]) * (1.0 / 3.0));
        [
            u[0] + diff + (u[4] - u[3] * 16.0) * (1.0 / 15.0),
            sum - (u[3] * 8.0 + u[4] * 2.0) * (1.0 / 15.0),
            diff + (u[4] - u[3]) * (4.0 / 15.0) + u[5],
        ]
    }
    #[inline(always)]
    fn output<T: Arith>(m: [T; 6]) -> [T; 4] {
        let (s, d) = (m[1] + m[2], m[1] - m[2]);
        [
            m[0] + s + m[3] + m[4],
            d + m[3] * 0.5 - m[4] * 2.0,
            s + m[3] * 0.25 + m[4] * 4.0,
            d + m[3] * 0.125 - m[4] * 8.0 + m[5],
        ]
    }
    #[inline(always)]
    fn output_adjoint<T: Arith>(y: [T; 4]) -> [T; 6] {
        let (even, odd) = (y[0] + y[2], y[1] + y[3]);
        [
            y[0],
            even + odd,
            even - odd,
            y[0] + y[1] * 0.5 + y[2] * 0.25 + y[3] * 0.125,
            y[0] - y[1] * 2.0 + y[2] * 4.0 - y[3] * 8.0,
            y[3],
        ]
    }
}

/// Tiles transformed at once, side by side: one AVX2 register of `f32`.
const LANES: usize = 8;

/// One value for each of [`LANES`] neighbouring tiles; its arithmetic is
/// lane by lane, which the compiler turns into vector instructions.
#[derive(Clone, Copy, Default)]
pub(crate) struct Lanes([f32; LANES]);

impl Lanes {
    #[inline(always)]
    fn splat(v: f32) -> Self {
        Lanes([v; LANES])
    }
    /// `conv::relu_in_place`, lane by lane: NaN stays NaN.
    #[inline(always)]
    fn relu(mut self) -> Self {
        relu_in_place(&mut self.0);
        self
    }
    #[inline(always)]
    fn map(mut self, f: impl Fn(f32) -> f32) -> Self {
        for a in &mut self.0 {
            *a = f(*a);
        }
        self
    }
    #[inline(always)]
    fn zip(mut self, o: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a = f(*a, b);
        }
        self
    }
}

impl Add for Lanes {
    type Output = Self;
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.zip(o, |a, b| a + b)
    }
}

impl Sub for Lanes {
    type Output = Self;
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.zip(o, |a, b| a - b)
    }
}

impl Neg for Lanes {
    type Output = Self;
    #[inline(always)]
    fn neg(self) -> Self {
        self.map(|a| -a)
    }
}

impl Mul<f64> for Lanes {
    type Output = Self;
    /// By a transform's constant: exact in `f32` for all but F(4×4, 3×3)'s
    /// kernel fractions, which only kernels (in `f64`) meet.
    #[inline(always)]
    fn mul(self, c: f64) -> Self {
        let c = c as f32;
        self.map(|a| a * c)
    }
}

/// Whether every value seen so far was finite, kept lane by lane while the
/// transforms write (a separate pass over their output would read it all
/// again).
#[derive(Default)]
struct Finite([u32; LANES]);

impl Finite {
    #[inline(always)]
    fn check(&mut self, value: Lanes) {
        for (seen, v) in self.0.iter_mut().zip(value.0) {
            *seen |= u32::from(non_finite(v));
        }
    }
    fn all(&self) -> bool {
        self.0.iter().all(|&seen| seen == 0)
    }
}

/// `dst[..len] = src[..len]` in moves of eight, four and one floats: a copy of
/// run-time length is a call to `memcpy`, which cost the teacher's test pass
/// an eighth of its time (`perf`) on rows of 28. The empty `asm!` in the loop
/// keeps the compiler from turning the eight-float moves back into `memcpy`
/// (at 251ad34 it had: 5% of a teacher step in `perf`, from `transform_input`).
#[inline(always)]
fn copy(dst: &mut [f32], src: &[f32], len: usize) {
    let (mut dst, mut src) = (&mut dst[..len], &src[..len]);
    while dst.len() >= LANES {
        let (d, rest) = dst.split_at_mut(LANES);
        <&mut [f32; LANES]>::try_from(d)
            .unwrap()
            .copy_from_slice(&src[..LANES]);
        (dst, src) = (rest, &src[LANES..]);
        // SAFETY: an empty instruction list; it touches no memory, stack or flags.
        unsafe { std::arch::asm!("", options(nomem, nostack, preserves_flags)) };
    }
    if dst.len() >= 4 {
        let (d, rest) = dst.split_at_mut(4);
        <&mut [f32; 4]>::try_from(d)
            .unwrap()
            .copy_from_slice(&src[..4]);
        (dst, src) = (rest, &src[4..]);
    }
    // At most three: spelt out, or the compiler turns the loop back into `memcpy`.
    match dst.len() {
        3 => dst.copy_from_slice(<&[f32; 3]>::try_from(&src[..3]).unwrap()),
        2 => dst.copy_from_slice(<&[f32; 2]>::try_from(&src[..2]).unwrap()),
        1 => dst[0] = src[0],
        _ => {}
    }
}

/// Asks the CPU to bring `data` into its caches while this thread works on
/// something else: the transforms read a channel's plane once, from memory
/// (the input batch is tens of MB), and the wait for it was a sixth of
/// [`transform_input`]'s time in `perf`.
#[inline(always)]
fn prefetch(data: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(16) {
        // SAFETY: a hint; the address is inside `data`.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
}

/// Pads a column of up to N values (`n` of them meaningful) to a transform's
/// input. A loop, not `array::from_fn`, which copies its result through
/// `memcpy` when the array is large.
#[inline(always)]
fn column<T: Arith, const N: usize>(n: usize, f: impl Fn(usize) -> T) -> [T; N] {
    let mut c = [T::default(); N];
    for (i, v) in c.iter_mut().enumerate().take(n) {
        *v = f(i);
    }
    c
}

/// `T d Tᵀ` for a 1-D transform `T` from `n` values to `n_out` (of arrays
/// of I and O): each column of `d`, then each row. `load(r, q)` reads entry
/// (r, q) of `d` and `store(i, j, value)` takes entry (i, j) of the result,
/// so a tile goes from its buffer to registers and back: a whole tile of
/// [`Lanes`] passed by value was copied with `memcpy` (5% of a teacher step
/// in `perf`). Loops, not `array::from_fn` or `map`, for the same reason.
#[inline(always)]
fn transform_2d<const I: usize, const O: usize>(
    n: usize,
    n_out: usize,
    load: impl Fn(usize, usize) -> Lanes,
    t: impl Fn([Lanes; I]) -> [Lanes; O],
    mut store: impl FnMut(usize, usize, Lanes),
) {
    let mut columns = [[Lanes::default(); I]; O];
    for q in 0..n {
        for (row, value) in columns
            .iter_mut()
            .zip(t(column(n, |r| load(r, q))))
            .take(n_out)
        {
            row[q] = value;
        }
    }
    for (i, row) in columns.iter().enumerate().take(n_out) {
        for (j, value) in t(*row).into_iter().enumerate().take(n_out) {
            store(i, j, value);
        }
    }
}

/// Where entry (i, j) of a `V::A × V::A` tile of [`Lanes`] lies from the
/// tile's first, and how far past it the farthest reaches (worked out once
/// per transform call), so that a tile's loads or stores are checked against
/// their buffer once, not once each.
struct Layout<F> {
    a: usize,
    at: F,
    reach: usize,
}

impl<F: Fn(usize, usize) -> usize> Layout<F> {
    fn new<V: Variant>(at: F) -> Self {
        let a = V::A;
        let farthest = (0..a * a).map(|e| at(e / a, e % a)).max();
        Layout {
            a,
            reach: farthest.unwrap() + LANES,
            at,
        }
    }

    /// Entry (i, j) of the tile at `base` in `src`.
    #[inline(always)]
    fn reader<'s>(&'s self, src: &'s [f32], base: usize) -> impl Fn(usize, usize) -> Lanes + 's {
        assert!(
            base + self.reach <= src.len(),
            "a tile reaches past its buffer"
        );
        let p = src[base..].as_ptr();
        #[inline(always)]
        move |i, j| {
            assert!(i < self.a && j < self.a);
            // SAFETY: at(i, j) + LANES <= reach, and base + reach <= src.len().
            Lanes(unsafe { std::ptr::read_unaligned(p.add((self.at)(i, j)).cast()) })
        }
    }

    /// Writes entry (i, j) of the tile at `base` in `dst`.
    #[inline(always)]
    fn writer<'s>(
        &'s self,
        dst: &'s mut [f32],
        base: usize,
    ) -> impl FnMut(usize, usize, Lanes) + 's {
        assert!(
            base + self.reach <= dst.len(),
            "a tile reaches past its buffer"
        );
        let p = dst[base..].as_mut_ptr();
        #[inline(always)]
        move |i, j, value| {
            assert!(i < self.a && j < self.a);
            // SAFETY: as in `reader`.
            unsafe { std::ptr::write_unaligned(p.add((self.at)(i, j)).cast(), value.0) }
        }
    }
}

/// The layout of entry ξ = (i, j) of the matrices `m[ξ]`, one `stride` apart.
fn matrices<V: Variant>(stride: usize) -> Layout<impl Fn(usize, usize) -> usize> {
    Layout::new::<V>(move |i, j| (i * V::A + j) * stride)
}

/// How a convolution is cut into blocks of images: tiles per image, images
/// per block.
struct Blocks {
    tiles: usize,
    per_block: usize,
}

impl Blocks {
    fn new<V: Variant>(g: &Geometry) -> Self {
        let tiles = g.ho.div_ceil(V::M) * g.wo.div_ceil(V::M);
        let per_image = V::A * V::A * (g.ci + g.co) * tiles * std::mem::size_of::<f32>();
        let per_block = (SCRATCH_BYTES / per_image).clamp(1, g.n.max(1));
        Blocks { tiles, per_block }
    }
}

/// Row stride of the tile matrices `v[ξ]` and `m[ξ]` for `t` tiles: [`LANES`]
/// columns of padding past the last tile, so that every group of eight tiles
/// is read and written whole, even the last of an image whose rows of tiles
/// are not a multiple of eight wide (Fashion-MNIST's 28 columns are 7 F(4×4)
/// tiles); the padding's columns are never multiplied.
fn row_stride(t: usize) -> usize {
    t + LANES
}

/// Runs `f(ts, v, m)` on this thread's scratch, cut into the input tiles'
/// matrices `v[ξ]` (Ci rows) and the products' `m[ξ]` (Co rows), for `t`
/// tiles with rows `ts` long. The matrices are interleaved by row: row `r`
/// of `m[ξ]` starts at `(r·A² + ξ)·ts`, so that a channel's tiles, which the
/// transforms write or read together, lie in one run of memory rather than
/// in A² (36 for F(4×4)) places a matrix apart; that many streams of stores
/// were slower (`kd-ops conv_128_64_28`, best of 6 rounds: forward+backward
/// 228.7 -> 192.3 ms, forward a tie).
fn with_tile_matrices<V: Variant, R>(
    g: &Geometry,
    t: usize,
    f: impl FnOnce(usize, &mut [f32], &mut [f32]) -> R,
) -> R {
    let (xis, ts) = (V::A * V::A, row_stride(t));
    with_scratch(xis * (g.ci + g.co) * ts, |scratch| {
        let (v, m) = scratch.split_at_mut(xis * g.ci * ts);
        f(ts, v, m)
    })
}

/// `relu?(conv(x, w) + b)` for a geometry [`applies`] accepts.
pub(crate) fn convolve(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    if use_f4(g) {
        convolve_with::<F4>(g, x, w, b, relu)
    } else {
        convolve_with::<F2>(g, x, w, b, relu)
    }
}

/// `dW` for a geometry [`applies`] accepts, or `None` when a transform holds
/// a NaN or an infinity (then the direct path computes it, as for the forward).
pub(crate) fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    if use_f4(g) {
        kernel_grad_with::<F4>(g, x, dy)
    } else {
        kernel_grad_with::<F2>(g, x, dy)
    }
}

/// F(4×4, 3×3) where a row of its tiles is more than half as wide as the
/// [`Lanes`] (17 or more output columns: Fashion-MNIST's 28, CIFAR's 32), so
/// that few lanes idle; not at 16 (4 tiles, half the lanes idle). At 32x32 it
/// beat F(2×2, 3×3) (the 128->64 layer: forward 71.9 against 110.9 ms, with
/// both gradients 265 against 387 ms); at 16x16 it lost (64->64: 24.7 against
/// 16.6 ms forward; `kd-ops 3 conv_`, best of 4).
fn use_f4(g: &Geometry) -> bool {
    g.wo.div_ceil(F4::M) > LANES / 2
}

fn convolve_with<V: Variant>(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let Blocks { tiles, per_block } = Blocks::new::<V>(g);
    let xis = V::A * V::A;
    let (image_in, image_out) = (g.ci * g.h * g.w, g.co * g.p());
    let u = transform_kernel::<V>(g, w);
    let finite_kernel = all_finite(&u);
    let mut out = output_vec(g.n * image_out);
    out.par_chunks_mut(per_block * image_out)
        .enumerate()
        .for_each(|(block, y)| {
            let first = block * per_block;
            let images = y.len() / image_out;
            let x = &x[first * image_in..(first + images) * image_in];
            let t = images * tiles;
            let finite = with_tile_matrices::<V, _>(g, t, |ts, v, m| {
                let mut finite = finite_kernel;
                for (i, image) in x.chunks(image_in).enumerate() {
                    finite &= transform_input::<V>(g, image, v, ts, i * tiles);
                }
                if !finite {
                    return false;
                }
                let (co, ci) = (g.co, g.ci);
                for xi in 0..xis {
                    // M[ξ] (Co x T) = U[ξ] (Co x Ci) · V[ξ] (Ci x T)
                    matmul(
                        &mut m[xi * ts..],
                        xis * ts,
                        false,
                        co,
                        t,
                        ci,
                        &u[xi * co * ci..][..co * ci],
                        ci,
                        1,
                        &v[xi * ts..],
                        xis * ts,
                        1,
                    );
                }
                for (i, y) in y.chunks_mut(image_out).enumerate() {
                    transform_output::<V>(g, m, ts, i * tiles, b, relu, y);
                }
                true
            });
            if !finite {
                // After `with_scratch` returns: the direct path takes the buffer too.
                for (image, y) in x.chunks(image_in).zip(y.chunks_mut(image_out)) {
                    direct_image(g, image, w, b, relu, y);
                }
            }
        });
    out
}

fn kernel_grad_with<V: Variant>(g: &Geometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    let Blocks { tiles, per_block } = Blocks::new::<V>(g);
    let xis = V::A * V::A;
    let (image_in, image_out) = (g.ci * g.h * g.w, g.co * g.p());
    let (co, ci) = (g.co, g.ci);
    let blocks: Vec<usize> = (0..g.n.div_ceil(per_block)).collect();
    // Each worker sums its blocks' dU in order, and the workers' sums are added
    // in order: the same bits for the same thread count.
    let chunk = blocks
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    let partial: Vec<Option<Vec<f32>>> = blocks
        .par_chunks(chunk)
        .map(|blocks| {
            let mut du = vec![0f32; xis * co * ci];
            for (j, &block) in blocks.iter().enumerate() {
                let first = block * per_block;
                let images = per_block.min(g.n - first);
                let t = images * tiles;
                let finite = with_tile_matrices::<V, _>(g, t, |ts, v, m| {
                    let mut finite = true;
                    for i in 0..images {
                        let image = first + i;
                        let (x, dy) = (
                            &x[image * image_in..][..image_in],
                            &dy[image * image_out..][..image_out],
                        );
                        finite &= transform_input::<V>(g, x, v, ts, i * tiles);
                        finite &= transform_grad::<V>(g, dy, m, ts, i * tiles);
                    }
                    if !finite {
                        return false;
                    }
                    for xi in 0..xis {
                        // dU[ξ] (Co x Ci) += dM[ξ] (Co x T) · V[ξ]ᵀ (T x Ci)
                        matmul(
                            &mut du[xi * co * ci..][..co * ci],
                            ci,
                            j > 0,
                            co,
                            ci,
                            t,
                            &m[xi * ts..],
                            xis * ts,
                            1,
                            &v[xi * ts..],
                            1,
                            xis * ts,
                        );
                    }
                    true
                });
                if !finite {
                    return None;
                }
            }
            Some(du)
        })
        .collect();
    let mut du = vec![0f32; xis * co * ci];
    for part in partial {
        for (a, b) in du.iter_mut().zip(part?) {
            *a += b;
        }
    }
    // dW = Gᵀ dU G: the columns of dU, then the rows of Gᵀ dU.
    let (a, pairs) = (V::A, co * ci);
    let mut dw = vec![0f32; pairs * 9];
    for (pair, k) in dw.chunks_exact_mut(9).enumerate() {
        let mut left = [[0f64; 6]; 3];
        for c in 0..a {
            let col = V::kernel_adjoint(column(a, |r| f64::from(du[(r * a + c) * pairs + pair])));
            for (row, v) in left.iter_mut().zip(col) {
                row[c] = v;
            }
        }
        for (r, row) in left.into_iter().enumerate() {
            for (k, v) in k[r * 3..r * 3 + 3].iter_mut().zip(V::kernel_adjoint(row)) {
                *k = v as f32;
            }
        }
    }
    Some(dw)
}

/// `U[ξ][co][ci] = (G g Gᵀ)[ξ]`: the columns of each kernel, then the rows
/// of `G g`. In `f64`, rounded once: F(4×4, 3×3)'s G holds thirds and
/// fifteenths. (Against an `f64` convolution this changed the 128->64
/// layer's error by 1%, on the points 0, ±1, ±2: the image transforms
/// dominate it.)
fn transform_kernel<V: Variant>(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let (a, pairs) = (V::A, g.co * g.ci);
    let mut u = vec![0f32; a * a * pairs];
    for (pair, k) in w.chunks_exact(9).enumerate() {
        let k = |i: usize| f64::from(k[i]);
        let mut gg = [[0f64; 3]; 6];
        for c in 0..3 {
            let col = V::kernel([k(c), k(3 + c), k(6 + c)]);
            for (row, v) in gg.iter_mut().zip(col) {
                row[c] = v;
            }
        }
        for (r, row) in gg.into_iter().take(a).enumerate() {
            for (c, v) in V::kernel(row).into_iter().take(a).enumerate() {
                u[(r * a + c) * pairs + pair] = v as f32;
            }
        }
    }
    u
}

avx2_and_baseline! {
/// Writes `V = Bᵀ d B` of every tile of one image into columns `first..` of
/// the matrices `v[ξ]` (Ci rows, interleaved), [`LANES`] tiles of a row of
/// tiles at a time. A group past the row's end spills into the columns of the
/// next row, the next image or the padding, all written later or never read.
///
/// Tile `tx` covers padded columns `M·tx .. M·tx + A`: column `M·tx + q` is
/// entry `tx + q / M` of the columns whose index is `q % M` modulo M, so each
/// channel is first split by column residue, once, and a tile column of
/// eight neighbouring tiles is then one contiguous load.
fn transform_input<V: Variant>(g: &Geometry, image: &[f32], v: &mut [f32], ts: usize, first: usize) -> bool {
    let (m, pad) = (V::M, g.pad);
    let (th, tw) = (g.ho.div_ceil(m), g.wo.div_ceil(m));
    let (rows, width) = (m * th + 2, tw.next_multiple_of(LANES) + 1);
    // [residue][row][i]: input row `row - pad`, column `M·i + residue - pad` (0 outside).
    let mut split = vec![0f32; m * rows * width];
    // The channel's padded input rows: `pad` zeros, the row, zeros to M·width.
    // All are copied before any is split: a vector load right after the
    // narrower stores of its row's copy waits for them (store forwarding
    // fails); in `perf` that load was this function's hottest instruction.
    let mut padded = vec![0f32; rows * m * width];
    // Tile row r, column q: entry `q / M` of residue `q % M`, row r.
    let tile_at = Layout::new::<V>(|r, q| ((q % m) * rows + r) * width + q / m);
    let xi_at = matrices::<V>(ts);
    let mut finite = Finite::default();
    // Rows outside the image are never written, so they stay 0; the others
    // are written whole, padding included, for every channel.
    for (c, plane) in image.chunks_exact(g.h * g.w).enumerate() {
        // The next channel's plane, a share per row of tiles: all at once,
        // the prefetches themselves waited for free fill buffers.
        let next = image.get((c + 1) * g.h * g.w..(c + 2) * g.h * g.w);
        let mut next = next.map(|n| n.chunks(n.len().div_ceil(th)));
        let inside = |r: usize| r.checked_sub(pad).filter(|&iy| iy < g.h);
        for (r, row) in padded.chunks_exact_mut(m * width).enumerate() {
            if let Some(iy) = inside(r) {
                copy(&mut row[pad..], &plane[iy * g.w..], g.w);
            }
        }
        for (r, row) in padded.chunks_exact(m * width).enumerate() {
            if inside(r).is_none() {
                continue;
            }
            // All M residues in one pass: the compiler vectorises the strided reads.
            for (i, group) in row.chunks_exact(m).enumerate() {
                for (p, &value) in group.iter().enumerate() {
                    split[(p * rows + r) * width + i] = value;
                }
            }
        }
        for ty in 0..th {
            if let Some(share) = next.as_mut().and_then(|n| n.next()) {
                prefetch(share);
            }
            for tx in (0..tw).step_by(LANES) {
                let mut write = xi_at.writer(v, c * V::A * V::A * ts + first + ty * tw + tx);
                transform_2d(
                    V::A,
                    V::A,
                    tile_at.reader(&split, m * ty * width + tx),
                    #[inline(always)]
                    |c| V::input(c),
                    #[inline(always)]
                    |i, j, value| {
                        finite.check(value);
                        write(i, j, value);
                    },
                );
            }
        }
    }
    finite.all()
}
}

avx2_and_baseline! {
/// Reads each tile's `M` from columns `first..` of the matrices `m[ξ]`
/// (Co rows, interleaved) and writes `relu?(Aᵀ M A + b)` into one image's
/// output, [`LANES`] tiles of a row of tiles at a time.
fn transform_output<V: Variant>(
    g: &Geometry,
    m: &[f32],
    ts: usize,
    first: usize,
    b: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let mm = V::M;
    let (th, tw) = (g.ho.div_ceil(mm), g.wo.div_ceil(mm));
    let xi_at = matrices::<V>(ts);
    for (co, plane) in y.chunks_exact_mut(g.p()).enumerate() {
        let bias = Lanes::splat(b.map_or(0.0, |b| b[co]));
        for ty in 0..th {
            let rows = mm.min(g.ho - mm * ty);
            for tx in (0..tw).step_by(LANES) {
                let x0 = mm * tx;
                let count = (g.wo - x0).min(mm * LANES);
                transform_2d(
                    V::A,
                    mm,
                    xi_at.reader(m, co * V::A * V::A * ts + first + ty * tw + tx),
                    #[inline(always)]
                    |c| V::output(c),
                    #[inline(always)]
                    |i, jj, value| {
                        if i >= rows {
                            return;
                        }
                        // Output columns M·(tx + lane) + jj, interleaved, stored one
                        // by one rather than through a row buffer whose copy's vector
                        // loads would wait for the single stores (store forwarding).
                        let out = &mut plane[(mm * ty + i) * g.wo + x0..][..count];
                        let mut value = value + bias;
                        if relu {
                            value = value.relu();
                        }
                        for (lane, v) in value.0.into_iter().enumerate() {
                            if let Some(o) = out.get_mut(lane * mm + jj) {
                                *o = v;
                            }
                        }
                    },
                );
            }
        }
    }
}
}

avx2_and_baseline! {
/// Writes `dM = A dY Aᵀ` of every output-gradient tile of one image into
/// columns `first..` of the matrices `m[ξ]` (Co rows, interleaved), as
/// [`transform_input`] writes: the adjoint of [`transform_output`] (outputs
/// past the edge count as 0).
fn transform_grad<V: Variant>(g: &Geometry, dy: &[f32], m: &mut [f32], ts: usize, first: usize) -> bool {
    let mm = V::M;
    let (th, tw) = (g.ho.div_ceil(mm), g.wo.div_ceil(mm));
    let xi_at = matrices::<V>(ts);
    let mut finite = Finite::default();
    for (co, plane) in dy.chunks_exact(g.p()).enumerate() {
        for ty in 0..th {
            for tx in (0..tw).step_by(LANES) {
                let x0 = mm * tx;
                let count = (g.wo - x0).min(mm * LANES);
                // dY: [i][jj], output row i of the tile, column jj.
                let mut tile = [[Lanes::default(); 4]; 4];
                for (i, tile_row) in tile.iter_mut().enumerate().take(mm.min(g.ho - mm * ty)) {
                    let oy = mm * ty + i;
                    let mut row = [0f32; 4 * LANES];
                    copy(&mut row, &plane[oy * g.wo + x0..], count);
                    for (jj, value) in tile_row.iter_mut().enumerate().take(mm) {
                        for (lane, v) in value.0.iter_mut().enumerate() {
                            *v = row[lane * mm + jj];
                        }
                    }
                }
                let mut write = xi_at.writer(m, co * V::A * V::A * ts + first + ty * tw + tx);
                transform_2d(
                    mm,
                    V::A,
                    #[inline(always)]
                    |i, jj| tile[i][jj],
                    #[inline(always)]
                    |c| V::output_adjoint(c),
                    #[inline(always)]
                    |i, j, value| {
                        finite.check(value);
                        write(i, j, value);
                    },
                );
            }
        }
    }
    finite.all()
}
}

/// Whether every value is finite, in one vectorisable pass.
pub(crate) fn all_finite(v: &[f32]) -> bool {
    v.chunks(1024)
        .all(|c| c.iter().fold(true, |ok, &x| ok & !non_finite(x)))
}

/// NaN or ±infinity, as a bit test that vectorises (all exponent bits set).
#[inline(always)]
fn non_finite(v: f32) -> bool {
    v.to_bits() & 0x7f80_0000 == 0x7f80_0000
}

/// Both variants against an `f64` convolution, whatever the CPU: where it has
/// AVX-512 the integration tests send the narrow layers F(2×2, 3×3) would
/// take to the direct path instead.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, reference, values, Case};

    #[test]
    fn both_variants_match_an_f64_convolution() {
        // F(2×2): partial tiles, paddings 0 and 2, several blocks of images
        // (the last short); F(4×4): 17 and 28 columns.
        let shapes = [
            (2, 32, 7, 9, 32, 1),
            (3, 40, 5, 5, 33, 0),
            (2, 32, 6, 3, 48, 2),
            (25, 32, 14, 14, 32, 1),
            (2, 32, 9, 17, 32, 1),
            (2, 32, 28, 28, 32, 1),
        ];
        for shape in shapes {
            let c = Case::new(shape);
            let ours = convolve(&c.g, &c.x, &c.k, None, false);
            assert_close(1e-4, &format!("{} output", c.what), &ours, &c.y);
            let ours = kernel_grad(&c.g, &c.x, &c.dy).unwrap();
            assert_close(1e-4, &format!("{} kernel gradient", c.what), &ours, &c.dw);
        }
    }

    /// A tile sums an infinity with both signs, which makes NaN: a block
    /// holding one takes the direct path, and the output is the
    /// convolution's infinity.
    #[test]
    fn an_infinity_comes_out_as_in_a_convolution() {
        for size in [8, 32] {
            let g = Geometry::new(&[2, 32, size, size], &[32, 32, 3, 3], 1, 1).unwrap();
            let mut x = values(2 * 32 * size * size, 1);
            x[(32 * size + 3) * size + 4] = f32::INFINITY; // image 1, channel 0, pixel (3, 4)
            let k = values(32 * 32 * 9, 2);
            let (y, _) = reference(&g, &x, &k, &vec![0.0; 2 * 32 * g.p()]);
            let ours = convolve(&g, &x, &k, None, false);
            let kinds = |v: Vec<f64>| -> Vec<(usize, f64)> {
                v.into_iter()
                    .enumerate()
                    .filter(|(_, v)| !v.is_finite())
                    .collect()
            };
            let ours = kinds(ours.into_iter().map(f64::from).collect());
            assert!(!ours.is_empty() && !ours.iter().any(|(_, v)| v.is_nan()));
            assert_eq!(ours, kinds(y), "{size}x{size}");
        }
    }
}
