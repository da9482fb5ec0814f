//! Test helpers for the kernels' unit tests: a 3x3 convolution and its
//! kernel gradient in `f64`, written as the definition reads, to test each
//! fast path on its own (the integration tests reach only the path a
//! layer's shape and the CPU pick).
use crate::conv::Geometry;

/// Pseudo-random values in -1..1, a fixed sequence per seed.
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `x` at input pixel (c, y, x) of image i, 0 in the padding.
fn pixel(g: &Geometry, x: &[f32], i: usize, c: usize, y: isize, xx: isize) -> f64 {
    if y < 0 || xx < 0 || y >= g.h as isize || xx >= g.w as isize {
        return 0.0;
    }
    f64::from(x[((i * g.ci + c) * g.h + y as usize) * g.w + xx as usize])
}

/// Each output of the convolution and each entry of the kernel gradient
/// under output gradient `dy`, in `f64`.
pub(crate) fn reference(g: &Geometry, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; g.n * g.co * g.p()];
    let mut dw = vec![0f64; g.co * g.ci * 9];
    for i in 0..g.n {
        for co in 0..g.co {
            for oy in 0..g.ho {
                for ox in 0..g.wo {
                    let at = ((i * g.co + co) * g.ho + oy) * g.wo + ox;
                    for ci in 0..g.ci {
                        for tap in 0..9 {
                            let v = pixel(
                                g,
                                x,
                                i,
                                ci,
                                (oy + tap / 3) as isize - g.pad as isize,
                                (ox + tap % 3) as isize - g.pad as isize,
                            );
                            let k = (co * g.ci + ci) * 9 + tap;
                            y[at] += f64::from(w[k]) * v;
                            dw[k] += f64::from(dy[at]) * v;
                        }
                    }
                }
            }
        }
    }
    (y, dw)
}

pub(crate) fn assert_close(tolerance: f64, what: &str, ours: &[f32], reference: &[f64]) {
    let scale = reference.iter().fold(0f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!(
            (f64::from(*a) - b).abs() <= tolerance * scale,
            "{what}[{i}]: {a} against {b}"
        );
    }
}
