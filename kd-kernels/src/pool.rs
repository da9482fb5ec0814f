//! 2-D max-pooling for the CPU whose backward routes each output's gradient
//! to the one input that was the maximum, as PyTorch's does.
//!
//! Candle 0.11's `max_pool2d` backward spreads the gradient over the window
//! scaled by 1/k², and the reshape-and-reduce formulation is correct but
//! makes several full passes over the activations. Here one function
//! ([`pool_with_routes`]) pools and finds where each output came from (the
//! first maximum in row-major order, NaN counting as the largest, like
//! PyTorch), as a byte per output, and [`unpool`] sends the gradients back
//! along those routes. [`MaxPool2dOp`] finds the routes again in its backward
//! instead of keeping them between the passes; a pool fused into a
//! convolution (`conv::Conv2dOp`) keeps them.
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::im2col::output_vec;

/// `nn.MaxPool2d(k, stride=k)` on N x C x H x W; trailing rows and columns
/// that do not fill a window are dropped.
pub struct MaxPool2dOp {
    pub k: usize,
}

struct Planes {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
}

fn planes(l: &Layout, k: usize) -> Result<Planes> {
    let &[_, _, h, w] = l.dims() else {
        candle_core::bail!("max_pool2d: {:?} is not N x C x H x W", l.dims())
    };
    if !fits(k, h, w) {
        candle_core::bail!(
            "max_pool2d: window {k} does not fit the input {:?}: use a window from 1 to {MAX_WINDOW} and at most the input's size",
            l.dims()
        )
    }
    Ok(Planes {
        h,
        w,
        ho: h / k,
        wo: w / k,
    })
}

pub(crate) fn input<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("max_pool2d: the input must be contiguous"),
    }
}

/// The offset within a plane of window (oy, ox)'s maximum.
#[inline]
fn arg_max(plane: &[f32], w: usize, k: usize, oy: usize, ox: usize) -> usize {
    let mut best = oy * k * w + ox * k;
    for dy in 0..k {
        let row = (oy * k + dy) * w + ox * k;
        for i in row..row + k {
            if plane[i] > plane[best] || (plane[i].is_nan() && !plane[best].is_nan()) {
                best = i;
            }
        }
    }
    best
}

/// The largest window: a route is one byte, `dy·k + dx` below [`NO_ROUTE`].
pub(crate) const MAX_WINDOW: usize = 15;

/// Whether a `k x k` pool fits an `h x w` input.
pub(crate) fn fits(k: usize, h: usize, w: usize) -> bool {
    (1..=MAX_WINDOW).contains(&k) && h >= k && w >= k
}

/// The route of a pooled output whose gradient is 0: after a fused ReLU, its
/// window's maximum was not above 0 (see [`pool_with_routes`]).
pub(crate) const NO_ROUTE: u8 = u8::MAX;

/// `nn.MaxPool2d(k)` of `y` (planes of `h x w`), and where each output's
/// gradient goes in the backward: its window's arg-max by [`arg_max`]'s
/// rule, as `dy·k + dx`, or [`NO_ROUTE`] where `relu` (a ReLU fused before
/// the pool) and the maximum is not above 0, since the ReLU's gradient is 0
/// there (NaN included, as in PyTorch).
pub(crate) fn pool_with_routes(
    y: &[f32],
    h: usize,
    w: usize,
    k: usize,
    relu: bool,
) -> (Vec<f32>, Vec<u8>) {
    assert!(fits(k, h, w) && y.len().is_multiple_of(h * w));
    let (ho, wo) = (h / k, w / k);
    let outputs = y.len() / (h * w) * ho * wo;
    let (mut out, mut routes) = (output_vec(outputs), vec![0u8; outputs]);
    out.par_chunks_mut(ho * wo)
        .zip(routes.par_chunks_mut(ho * wo))
        .zip(y.par_chunks(h * w))
        .for_each(|((out, routes), plane)| plane_with_routes(plane, w, k, relu, out, routes));
    (out, routes)
}

/// 2x2 windows per step of [`plane_with_routes`] and [`unpool_plane`]: loops
/// over fixed-size arrays, which the compiler turns into vector instructions
/// (pairs deinterleaved with shuffles). One window at a time was scalar code,
/// a fifth of the student's train step in `perf`. Four, because the
/// networks' pooled rows are 7 and 14 windows (and 8 and 16 for CIFAR) and a
/// row's last step overlaps the one before rather than running one by one.
const STEP: usize = 4;

/// Where a row of `wo` windows' steps start: every [`STEP`] windows, the last
/// moved back to end at the row's end (its windows computed twice, to the
/// same values), or none when the row is shorter than a step.
fn steps(wo: usize) -> impl Iterator<Item = usize> {
    let last = wo.checked_sub(STEP).filter(|l| !l.is_multiple_of(STEP));
    (0..wo / STEP).map(|i| i * STEP).chain(last)
}

/// Whether a later value `b` takes an earlier `a`'s place as the maximum by
/// [`arg_max`]'s rule: when larger, or NaN where `a` is not.
#[inline(always)]
fn later_wins(a: f32, b: f32) -> bool {
    (b > a) | (b.is_nan() & !a.is_nan())
}

/// The maximum of a 2x2 window (`a b` over `c d`) and its route, `dy·2 + dx`,
/// as a knock-out of the rows and then between them: the first maximum in
/// row-major order, as [`arg_max`] finds it, with compares and selects
/// rather than branches, which mispredict on random activations.
#[inline(always)]
fn window2(a: f32, b: f32, c: f32, d: f32) -> (f32, u8) {
    let (b_wins, d_wins) = (later_wins(a, b), later_wins(c, d));
    let top = if b_wins { b } else { a };
    let bottom = if d_wins { d } else { c };
    let low = later_wins(top, bottom);
    let value = if low { bottom } else { top };
    let column = if low { d_wins } else { b_wins };
    (value, 2 * u8::from(low) + u8::from(column))
}

/// `route`, or [`NO_ROUTE`] where a fused ReLU's gradient is 0: the pooled
/// `value` is not above 0 (NaN included).
#[inline(always)]
fn routed(route: u8, value: f32, relu: bool) -> u8 {
    if !relu | (value > 0.0) {
        route
    } else {
        NO_ROUTE
    }
}

/// [`STEP`] 2x2 windows whose rows are `a` and `b`: split into the windows'
/// four corners first, so that [`window2`] runs on whole vectors.
#[inline(always)]
fn windows2(a: &[f32], b: &[f32], relu: bool, out: &mut [f32], routes: &mut [u8]) {
    let (a, b): (&[f32; 2 * STEP], &[f32; 2 * STEP]) =
        (a.try_into().unwrap(), b.try_into().unwrap());
    let mut corners = [[0f32; STEP]; 4];
    for i in 0..STEP {
        (corners[0][i], corners[1][i]) = (a[2 * i], a[2 * i + 1]);
        (corners[2][i], corners[3][i]) = (b[2 * i], b[2 * i + 1]);
    }
    for i in 0..STEP {
        let (value, route) = window2(corners[0][i], corners[1][i], corners[2][i], corners[3][i]);
        (out[i], routes[i]) = (value, routed(route, value, relu));
    }
}

avx2_and_baseline! {
/// One plane of [`pool_with_routes`]: 2x2 windows a row pair and [`STEP`]
/// windows at a time, others one by one through [`arg_max`].
fn plane_with_routes(plane: &[f32], w: usize, k: usize, relu: bool, out: &mut [f32], routes: &mut [u8]) {
    let wo = w / k;
    for (oy, (out, routes)) in out.chunks_exact_mut(wo).zip(routes.chunks_exact_mut(wo)).enumerate() {
        if k != 2 {
            for (ox, (o, r)) in out.iter_mut().zip(routes).enumerate() {
                let at = arg_max(plane, w, k, oy, ox);
                *o = plane[at];
                *r = routed(((at / w - oy * k) * k + at % w - ox * k) as u8, *o, relu);
            }
            continue;
        }
        let (r0, r1) = (&plane[2 * oy * w..][..2 * wo], &plane[(2 * oy + 1) * w..][..2 * wo]);
        for x in steps(wo) {
            let (a, b) = (&r0[2 * x..][..2 * STEP], &r1[2 * x..][..2 * STEP]);
            windows2(a, b, relu, &mut out[x..][..STEP], &mut routes[x..][..STEP]);
        }
        // Rows shorter than a step, one by one.
        for x in 0..if wo < STEP { wo } else { 0 } {
            let (value, route) = window2(r0[2 * x], r0[2 * x + 1], r1[2 * x], r1[2 * x + 1]);
            (out[x], routes[x]) = (value, routed(route, value, relu));
        }
    }
}
}

/// The backward of [`pool_with_routes`]: each output gradient at its route
/// in a plane of `h x w`, 0 everywhere else.
///
/// The result is not zeroed first: [`unpool_plane`] writes each plane whole.
/// Zeroing it was a single-threaded `memset` over the layer's output (26 MB
/// for the teacher's 128->64 layer at 28x28) while the other core waited,
/// half of the `memset` time in a student step (`perf`: 5.1 % of its samples
/// before, 2.7 % after).
pub(crate) fn unpool(routes: &[u8], dy: &[f32], h: usize, w: usize, k: usize) -> Vec<f32> {
    let (ho, wo) = (h / k, w / k);
    assert_eq!(routes.len(), dy.len());
    let mut dx = output_vec(dy.len() / (ho * wo) * h * w);
    dx.par_chunks_mut(h * w)
        .zip(routes.par_chunks(ho * wo).zip(dy.par_chunks(ho * wo)))
        .for_each(|(dx, (routes, dy))| unpool_plane(routes, dy, w, k, dx));
    dx
}

/// [`STEP`] 2x2 windows' gradients `g` at their routes `r`: the top rows'
/// values, then the bottom rows', each `g` or 0 by a compare.
#[inline(always)]
fn unroute2(r: &[u8; STEP], g: &[f32; STEP], quad: &mut [f32; 4 * STEP]) {
    let mut corners = [[0f32; STEP]; 4];
    for (c, corner) in corners.iter_mut().enumerate() {
        for i in 0..STEP {
            // A bit mask: written as a select, the compiler made a jump table.
            let hit = 0u32.wrapping_sub(u32::from(u32::from(r[i]) == c as u32));
            corner[i] = f32::from_bits(g[i].to_bits() & hit);
        }
    }
    let (top, bottom) = quad.split_at_mut(2 * STEP);
    for i in 0..STEP {
        (top[2 * i], top[2 * i + 1]) = (corners[0][i], corners[1][i]);
        (bottom[2 * i], bottom[2 * i + 1]) = (corners[2][i], corners[3][i]);
    }
}

avx2_and_baseline! {
/// One plane of [`unpool`], written whole. For 2x2 windows every input of
/// the window is written, `g` or 0 by a compare (a select, which
/// vectorises), so a plane they tile needs nothing more; others put `g` at
/// the route only, into a plane zeroed first (here, in cache, by this
/// plane's worker).
fn unpool_plane(routes: &[u8], dy: &[f32], w: usize, k: usize, dx: &mut [f32]) {
    let wo = w / k;
    let h = dx.len() / w;
    if !(k == 2 && h.is_multiple_of(2) && w.is_multiple_of(2)) {
        dx.fill(0.0);
    }
    for (oy, (routes, dy)) in routes.chunks_exact(wo).zip(dy.chunks_exact(wo)).enumerate() {
        if k != 2 {
            for (ox, (&r, &g)) in routes.iter().zip(dy).enumerate() {
                if r != NO_ROUTE {
                    let r = usize::from(r);
                    dx[(oy * k + r / k) * w + ox * k + r % k] = g;
                }
            }
            continue;
        }
        let (d0, d1) = dx[2 * oy * w..].split_at_mut(w);
        let (d0, d1) = (&mut d0[..2 * wo], &mut d1[..2 * wo]);
        for x in steps(wo) {
            let (r, g) = (&routes[x..][..STEP], &dy[x..][..STEP]);
            let mut quad = [0f32; 4 * STEP];
            unroute2(r.try_into().unwrap(), g.try_into().unwrap(), &mut quad);
            d0[2 * x..][..2 * STEP].copy_from_slice(&quad[..2 * STEP]);
            d1[2 * x..][..2 * STEP].copy_from_slice(&quad[2 * STEP..]);
        }
        // Rows shorter than a step, one by one.
        for x in 0..if wo < STEP { wo } else { 0 } {
            let pick = |c: u8| if routes[x] == c { dy[x] } else { 0.0 };
            (d0[2 * x], d0[2 * x + 1], d1[2 * x], d1[2 * x + 1]) = (pick(0), pick(1), pick(2), pick(3));
        }
    }
}
}

impl CustomOp1 for MaxPool2dOp {
    fn name(&self) -> &'static str {
        "kd-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let p = planes(l, self.k)?;
        let (out, _) = pool_with_routes(input(s, l)?, p.h, p.w, self.k, false);
        let &[n, c, ..] = l.dims() else {
            unreachable!()
        };
        Ok((CpuStorage::F32(out), Shape::from((n, c, p.ho, p.wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &MaxPoolGrad { k: self.k },
        )?))
    }
}

/// (x, dY) -> dx: each dY entry at its window's arg-max, zeros elsewhere.
struct MaxPoolGrad {
    k: usize,
}

impl CustomOp2 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "kd-max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let p = planes(l1, self.k)?;
        let (x, dy) = (input(s1, l1)?, input(s2, l2)?);
        let (_, routes) = pool_with_routes(x, p.h, p.w, self.k, false);
        let dx = unpool(&routes, dy, p.h, p.w, self.k);
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
