//! Winograd's F(2×2, 3×3) for 3×3 stride-1 convolutions with enough channels:
//! each 2×2 block of outputs costs 16 multiplications per channel pair
//! instead of 36 (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016).
//!
//! Every 4×4 input tile `d` becomes `V = Bᵀ d B` and every kernel `g` becomes
//! `U = G g Gᵀ`; then, for each of the 16 tile positions ξ, one matrix product
//! `M[ξ] (Co x T) = U[ξ] (Co x Ci) · V[ξ] (Ci x T)` over the T tiles of a block
//! of images, and the outputs are `Y = Aᵀ M A`. The transforms only add,
//! subtract and halve, so the results agree with the direct convolution to a
//! few ulps; the kernel tests hold both to Candle's reference.
//!
//! The kernel gradient is the same product's adjoint: with `dM = A dY Aᵀ`
//! for each output-gradient tile, `dU[ξ] (Co x Ci) = Σ_tiles dM[ξ] · V[ξ]ᵀ`
//! and `dW = Gᵀ dU G`.
//!
//! One difference matters: a tile adds and subtracts its pixels in several
//! combinations, so an infinity meets itself with the other sign and becomes
//! NaN where the direct convolution (and PyTorch's) gives an infinity. A
//! block whose transformed input or kernel is not finite is therefore
//! computed by the direct path instead; adding and subtracting never turns a
//! non-finite value finite, so checking the transforms checks the inputs.
//! (NaN itself lands on the same outputs either way: the transforms are
//! sparse enough that a pixel reaches only the outputs whose window holds it.)
use rayon::prelude::*;

/// Defines a function whose body is compiled twice, for AVX2 (8 floats a
/// step instead of SSE2's 4; picked at run time) and for the baseline; the
/// same additions in the same order, so the same bits either way.
macro_rules! avx2_and_baseline {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn baseline($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            unsafe fn avx2($($arg: $ty),*) {
                baseline($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2.
                return unsafe { avx2($($arg),*) };
            }
            baseline($($arg),*)
        }
    };
}

use crate::conv::{direct_image, matmul, relu_in_place, with_scratch, Geometry};

/// Fewer channels than this and the 16 products per tile are too thin to
/// beat one im2col product: the student's 16->16 layer took 4.8-6.0 ms
/// forward through Winograd and 3.3 ms direct (`kd-ops 7 conv_16`).
const MIN_CHANNELS: usize = 32;

/// Tiles per block of images: enough columns for `gemm` to run near its peak,
/// few enough that a block's transforms stay in the L2 cache.
const TILES_PER_BLOCK: usize = 256;

/// Whether `g` is a convolution Winograd computes here, and pays for.
pub(crate) fn applies(g: &Geometry) -> bool {
    g.k == 3 && g.stride == 1 && g.ci >= MIN_CHANNELS && g.co >= MIN_CHANNELS
}

/// `relu?(conv(x, w) + b)` for a geometry [`applies`] accepts.
pub(crate) fn convolve(
    g: &Geometry,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    let tiles = g.ho.div_ceil(2) * g.wo.div_ceil(2);
    let per_block = (TILES_PER_BLOCK / tiles).clamp(1, g.n.max(1));
    let (image_in, image_out) = (g.ci * g.h * g.w, g.co * g.p());
    let u = transform_kernel(g, w);
    let finite_kernel = all_finite(&u);
    let mut out = vec![0f32; g.n * image_out];
    out.par_chunks_mut(per_block * image_out)
        .enumerate()
        .for_each(|(block, y)| {
            let first = block * per_block;
            let images = y.len() / image_out;
            let x = &x[first * image_in..(first + images) * image_in];
            let t = images * tiles;
            let finite = with_scratch(16 * (g.ci + g.co) * t, |scratch| {
                let (v, m) = scratch.split_at_mut(16 * g.ci * t);
                for (i, image) in x.chunks(image_in).enumerate() {
                    transform_input(g, image, v, t, i * tiles);
                }
                if !(finite_kernel && all_finite(v)) {
                    return false;
                }
                for xi in 0..16 {
                    let (co, ci) = (g.co, g.ci);
                    matmul(
                        &mut m[xi * co * t..][..co * t],
                        false,
                        co,
                        t,
                        ci,
                        &u[xi * co * ci..][..co * ci],
                        ci,
                        1,
                        &v[xi * ci * t..][..ci * t],
                        t,
                        1,
                    );
                }
                for (i, y) in y.chunks_mut(image_out).enumerate() {
                    transform_output(g, m, t, i * tiles, b, relu, y);
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

/// `dW` for a geometry [`applies`] accepts, or `None` when a transform holds
/// a NaN or an infinity (then the direct path computes it, as for the forward).
pub(crate) fn kernel_grad(g: &Geometry, x: &[f32], dy: &[f32]) -> Option<Vec<f32>> {
    let tiles = g.ho.div_ceil(2) * g.wo.div_ceil(2);
    let per_block = (TILES_PER_BLOCK / tiles).clamp(1, g.n.max(1));
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
            let mut du = vec![0f32; 16 * co * ci];
            for (j, &block) in blocks.iter().enumerate() {
                let first = block * per_block;
                let images = per_block.min(g.n - first);
                let t = images * tiles;
                let finite = with_scratch(16 * (ci + co) * t, |scratch| {
                    let (v, m) = scratch.split_at_mut(16 * ci * t);
                    for i in 0..images {
                        let image = first + i;
                        transform_input(g, &x[image * image_in..][..image_in], v, t, i * tiles);
                        transform_grad(g, &dy[image * image_out..][..image_out], m, t, i * tiles);
                    }
                    if !(all_finite(v) && all_finite(m)) {
                        return false;
                    }
                    for xi in 0..16 {
                        // dU[ξ] (Co x Ci) += dM[ξ] (Co x T) · V[ξ]ᵀ (T x Ci)
                        matmul(
                            &mut du[xi * co * ci..][..co * ci],
                            j > 0,
                            co,
                            ci,
                            t,
                            &m[xi * co * t..][..co * t],
                            t,
                            1,
                            &v[xi * ci * t..][..ci * t],
                            1,
                            t,
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
    let mut du = vec![0f32; 16 * co * ci];
    for part in partial {
        for (a, b) in du.iter_mut().zip(part?) {
            *a += b;
        }
    }
    // dW = Gᵀ dU G, with Gᵀ = [1 ½ ½ 0; 0 ½ -½ 0; 0 ½ ½ 1].
    let gt = |a: [f32; 4]| {
        [
            a[0] + 0.5 * (a[1] + a[2]),
            0.5 * (a[1] - a[2]),
            0.5 * (a[1] + a[2]) + a[3],
        ]
    };
    let mut dw = vec![0f32; co * ci * 9];
    for (pair, k) in dw.chunks_exact_mut(9).enumerate() {
        let at = |xi: usize| du[xi * co * ci + pair];
        // Gᵀ dU: 3 x 4, column by column.
        let mut left = [[0f32; 4]; 3];
        for c in 0..4 {
            let col = gt([at(c), at(4 + c), at(8 + c), at(12 + c)]);
            for (row, v) in left.iter_mut().zip(col) {
                row[c] = v;
            }
        }
        // (Gᵀ dU) G: 3 x 3, row by row.
        for (r, row) in left.iter().enumerate() {
            k[r * 3..r * 3 + 3].copy_from_slice(&gt(*row));
        }
    }
    Some(dw)
}

avx2_and_baseline! {
/// Writes `dM = A dY Aᵀ` of every 2x2 output-gradient tile of one image into
/// columns `first..` of the 16 matrices `m[ξ]` (Co x `t`): the adjoint of
/// [`transform_output`], with A = [1 0; 1 1; 1 -1; 0 -1] (outputs past the
/// edge count as 0).
fn transform_grad(g: &Geometry, dy: &[f32], m: &mut [f32], t: usize, first: usize) {
    let tw = g.wo.div_ceil(2);
    // [row][parity][tx]: dY at output row 2ty + row, column 2tx + parity.
    let mut y = vec![0f32; 4 * tw];
    // [r][parity][tx]: row r of A dY.
    let mut a = vec![0f32; 8 * tw];
    for (co, plane) in dy.chunks_exact(g.p()).enumerate() {
        for ty in 0..g.ho.div_ceil(2) {
            for row in 0..2 {
                let oy = 2 * ty + row;
                let dst = &mut y[row * 2 * tw..][..2 * tw];
                if oy >= g.ho {
                    dst.fill(0.0);
                    continue;
                }
                let src = &plane[oy * g.wo..][..g.wo];
                // Even columns, then odd ones (a last odd column past the edge is 0).
                let (even, odd) = dst.split_at_mut(tw);
                odd[tw - 1] = 0.0;
                for ((pair, e), o) in src.chunks(2).zip(even).zip(odd) {
                    *e = pair[0];
                    *o = pair.get(1).copied().unwrap_or(0.0);
                }
            }
            let (y0, y1) = y.split_at(2 * tw);
            for (r, out) in a.chunks_exact_mut(2 * tw).enumerate() {
                for ((o, &p), &q) in out.iter_mut().zip(y0).zip(y1) {
                    *o = match r {
                        0 => p,
                        1 => p + q,
                        2 => p - q,
                        _ => -q,
                    };
                }
            }
            let column = first + ty * tw;
            for r in 0..4 {
                let (even, odd) = (&a[r * 2 * tw..][..tw], &a[(r * 2 + 1) * tw..][..tw]);
                for c in 0..4 {
                    let dst = &mut m[((r * 4 + c) * g.co + co) * t + column..][..tw];
                    for ((o, &p), &q) in dst.iter_mut().zip(even).zip(odd) {
                        *o = match c {
                            0 => p,
                            1 => p + q,
                            2 => p - q,
                            _ => -q,
                        };
                    }
                }
            }
        }
    }
}
}

/// `U[ξ][co][ci] = (G g Gᵀ)[ξ]` with G = [1 0 0; ½ ½ ½; ½ -½ ½; 0 0 1].
fn transform_kernel(g: &Geometry, w: &[f32]) -> Vec<f32> {
    let (co, ci) = (g.co, g.ci);
    let mut u = vec![0f32; 16 * co * ci];
    let rows = |a: [f32; 3]| {
        [
            a[0],
            0.5 * (a[0] + a[1] + a[2]),
            0.5 * (a[0] - a[1] + a[2]),
            a[2],
        ]
    };
    for (pair, k) in w.chunks_exact(9).enumerate() {
        // G g: 4 x 3, column by column.
        let mut gg = [[0f32; 3]; 4];
        for c in 0..3 {
            let col = rows([k[c], k[3 + c], k[6 + c]]);
            for r in 0..4 {
                gg[r][c] = col[r];
            }
        }
        // (G g) Gᵀ: 4 x 4, row by row.
        for (r, row) in gg.iter().enumerate() {
            for (c, v) in rows(*row).into_iter().enumerate() {
                u[(r * 4 + c) * co * ci + pair] = v;
            }
        }
    }
    u
}

avx2_and_baseline! {
/// Writes `V = Bᵀ d B` of every tile of one image into columns `first..` of
/// the 16 matrices `v[ξ]` (Ci x `t`), with Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1].
///
/// A row of tiles at a time, as whole slices so that the loops vectorise:
/// tile `tx` covers padded columns `2tx..2tx+4`, which are entries `tx` and
/// `tx + 1` of the row's even and odd columns.
fn transform_input(g: &Geometry, image: &[f32], v: &mut [f32], t: usize, first: usize) {
    let (h, w, pad) = (g.h as isize, g.w as isize, g.pad as isize);
    let (th, tw) = (g.ho.div_ceil(2), g.wo.div_ceil(2));
    let (n, rows_padded) = (tw + 1, 2 * th + 2);
    // One channel split by column parity, once (tile rows overlap by two):
    // [parity][r][i] is input row r - pad, column 2i + parity - pad (0 outside).
    let mut split = vec![0f32; 2 * rows_padded * n];
    // [parity][k][i]: row k of Bᵀ d for one row of tiles.
    let mut e = vec![0f32; 8 * n];
    for (c, plane) in image.chunks_exact(g.h * g.w).enumerate() {
        split.fill(0.0);
        for r in 0..rows_padded {
            let iy = r as isize - pad;
            if !(0..h).contains(&iy) {
                continue;
            }
            let src = &plane[iy as usize * g.w..][..g.w];
            for parity in 0..2 {
                // The first entry whose column 2i + parity - pad lies in the image.
                let before = (pad - parity as isize).max(0);
                let i0 = (before / 2 + before % 2) as usize;
                let ix = 2 * i0 as isize + parity as isize - pad;
                if i0 >= n || ix >= w {
                    continue;
                }
                let dst = &mut split[(parity * rows_padded + r) * n..][..n];
                for (d, v) in dst[i0..]
                    .iter_mut()
                    .zip(src[ix as usize..].iter().step_by(2))
                {
                    *d = *v;
                }
            }
        }
        for ty in 0..th {
            let rows =
                |parity: usize, r: usize| &split[(parity * rows_padded + 2 * ty + r) * n..][..n];
            for (parity, e) in e.chunks_exact_mut(4 * n).enumerate() {
                let (d0, d1, d2, d3) = (
                    rows(parity, 0),
                    rows(parity, 1),
                    rows(parity, 2),
                    rows(parity, 3),
                );
                let (e0, rest) = e.split_at_mut(n);
                let (e1, rest) = rest.split_at_mut(n);
                let (e2, e3) = rest.split_at_mut(n);
                for i in 0..n {
                    e0[i] = d0[i] - d2[i];
                    e1[i] = d1[i] + d2[i];
                    e2[i] = d2[i] - d1[i];
                    e3[i] = d1[i] - d3[i];
                }
            }
            let column = first + ty * tw;
            for k in 0..4 {
                let (even, odd) = (&e[k * n..][..n], &e[(4 + k) * n..][..n]);
                // Columns 2tx..2tx+4 are even[tx], odd[tx], even[tx+1], odd[tx+1].
                let (e0, o0, e1, o1) = (&even[..tw], &odd[..tw], &even[1..], &odd[1..]);
                let rows: [(&[f32], &[f32], f32); 4] = [
                    (e0, e1, -1.0),
                    (o0, e1, 1.0),
                    (e1, o0, -1.0),
                    (o0, o1, -1.0),
                ];
                for (j, (a, b, sign)) in rows.into_iter().enumerate() {
                    let dst = &mut v[((k * 4 + j) * g.ci + c) * t + column..][..tw];
                    for ((o, a), b) in dst.iter_mut().zip(a).zip(b) {
                        // ±1 · b is exact: the same bits as a ± b.
                        *o = a + sign * b;
                    }
                }
            }
        }
    }
}
}

avx2_and_baseline! {
/// Reads each tile's `M` from columns `first..` of the 16 matrices `m[ξ]`
/// (Co x `t`) and writes `relu?(Aᵀ M A + b)` into one image's output, with
/// Aᵀ = [1 1 1 0; 0 1 -1 -1]; a row of tiles at a time, like [`transform_input`].
fn transform_output(
    g: &Geometry,
    m: &[f32],
    t: usize,
    first: usize,
    b: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let tw = g.wo.div_ceil(2);
    // [r][j][tx]: row r of Aᵀ M, column j.
    let mut a = vec![0f32; 8 * tw];
    // [s][tx]: output column 2tx + s of one output row.
    let mut out = vec![0f32; 2 * tw];
    for (co, plane) in y.chunks_exact_mut(g.p()).enumerate() {
        let bias = b.map_or(0.0, |b| b[co]);
        for ty in 0..g.ho.div_ceil(2) {
            let column = first + ty * tw;
            let s = |xi: usize| &m[(xi * g.co + co) * t + column..][..tw];
            for j in 0..4 {
                let (s0, s1, s2, s3) = (s(j), s(4 + j), s(8 + j), s(12 + j));
                let (top, bottom) = a.split_at_mut(4 * tw);
                let (top, bottom) = (&mut top[j * tw..][..tw], &mut bottom[j * tw..][..tw]);
                for tx in 0..tw {
                    top[tx] = s0[tx] + s1[tx] + s2[tx];
                    bottom[tx] = s1[tx] - s2[tx] - s3[tx];
                }
            }
            for r in 0..2 {
                let oy = 2 * ty + r;
                if oy >= g.ho {
                    break;
                }
                let a = &a[r * 4 * tw..][..4 * tw];
                let (a0, a1, a2, a3) = (&a[..tw], &a[tw..2 * tw], &a[2 * tw..3 * tw], &a[3 * tw..]);
                let (left, right) = out.split_at_mut(tw);
                for tx in 0..tw {
                    left[tx] = a0[tx] + a1[tx] + a2[tx] + bias;
                    right[tx] = a1[tx] - a2[tx] - a3[tx] + bias;
                }
                if relu {
                    relu_in_place(&mut out);
                }
                let row = &mut plane[oy * g.wo..][..g.wo];
                let (left, right) = out.split_at(tw);
                let mut pairs = row.chunks_exact_mut(2);
                for ((pair, &l), &r) in (&mut pairs).zip(left).zip(right) {
                    pair[0] = l;
                    pair[1] = r;
                }
                if let [last] = pairs.into_remainder() {
                    *last = left[tw - 1];
                }
            }
        }
    }
}
}

/// Whether every value is finite, in one vectorisable pass.
fn all_finite(v: &[f32]) -> bool {
    v.chunks(1024).all(|c| {
        c.iter().fold(true, |ok, x| {
            ok & (x.to_bits() & 0x7f80_0000 != 0x7f80_0000)
        })
    })
}
