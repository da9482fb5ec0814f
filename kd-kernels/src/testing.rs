//! Test helpers for the kernels' unit tests: a 3x3 convolution and its
//! kernel gradient in `f64`, written as the definition reads, to test each
//! fast path on its own (the integration tests reach only the path a
//! layer's shape and the CPU pick).
use crate::im2col::Geometry;

/// Random values in -1..1, a fixed sequence per seed.
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
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

/// A random layer with its `f64` outputs and kernel gradient.
pub(crate) struct Case {
    pub(crate) g: Geometry,
    pub(crate) x: Vec<f32>,
    pub(crate) k: Vec<f32>,
    pub(crate) dy: Vec<f32>,
    pub(crate) y: Vec<f64>,
    pub(crate) dw: Vec<f64>,
    /// `2x16x14x14 -> 16 p1`, for messages.
    pub(crate) what: String,
}

impl Case {
    /// Images N x Ci x H x W, Co 3x3 kernels, padding `pad`, stride 1.
    pub(crate) fn new((n, ci, h, w, co, pad): (usize, usize, usize, usize, usize, usize)) -> Self {
        let g = Geometry::new(&[n, ci, h, w], &[co, ci, 3, 3], pad, 1).unwrap();
        let x = values(n * ci * h * w, 1);
        let k = values(co * ci * 9, 2);
        let dy = values(n * co * g.p(), 3);
        let (y, dw) = reference(&g, &x, &k, &dy);
        let what = format!("{n}x{ci}x{h}x{w} -> {co} p{pad}");
        Case {
            g,
            x,
            k,
            dy,
            y,
            dw,
            what,
        }
    }
}
