//! `nn.MaxPool2d(k, stride, padding)` for the CPU where windows overlap or
//! reach past the edge (torchvision's ResNet stem: 3x3, stride 2, padding 1).
//! Candle's max-pool has no padding and no backward for overlapping
//! windows. Padding counts as minus infinity, as in PyTorch; each output's
//! gradient goes to its window's first maximum in row-major order (NaN
//! counting as the largest), summed where windows overlap. The backward
//! finds the maxima again rather than keeping them between the passes: the
//! stem pools once per forward, so simplicity wins over speed here.
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::im2col::output_vec;
use crate::pool::input;

/// `nn.MaxPool2d(k, stride, padding)` (floor mode) on N x C x H x W.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2dPaddedOp {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl MaxPool2dPaddedOp {
    /// The output side for an input side `n`, as PyTorch computes it.
    pub fn output_size(&self, n: usize) -> Option<usize> {
        let padded = n + 2 * self.padding;
        (self.k >= 1 && self.stride >= 1 && padded >= self.k && 2 * self.padding <= self.k)
            .then(|| (padded - self.k) / self.stride + 1)
    }

    /// Height, width, and the output's height and width of layout `l`.
    fn sizes(&self, l: &Layout) -> Result<[usize; 4]> {
        let &[_, _, h, w] = l.dims() else {
            candle_core::bail!("max_pool2d: {:?} is not N x C x H x W", l.dims())
        };
        match (self.output_size(h), self.output_size(w)) {
            (Some(ho), Some(wo)) => Ok([h, w, ho, wo]),
            _ => candle_core::bail!(
                "max_pool2d: {self:?} does not fit the input {:?} (the padding must be at most half the window, and the padded input at least the window)",
                l.dims()
            ),
        }
    }

    /// The offset within a plane of output (oy, ox)'s maximum.
    fn arg_max(&self, plane: &[f32], [h, w, ..]: [usize; 4], oy: usize, ox: usize) -> usize {
        let (y0, x0) = (oy * self.stride, ox * self.stride);
        let rows = y0.max(self.padding)..(y0 + self.k).min(h + self.padding);
        let cols = x0.max(self.padding)..(x0 + self.k).min(w + self.padding);
        let mut best = None::<usize>;
        for y in rows {
            for x in cols.clone() {
                let i = (y - self.padding) * w + (x - self.padding);
                let wins = best.is_none_or(|b| {
                    plane[i] > plane[b] || (plane[i].is_nan() && !plane[b].is_nan())
                });
                if wins {
                    best = Some(i);
                }
            }
        }
        best.expect("a window holds at least one input: the padding is at most half of it")
    }
}

impl CustomOp1 for MaxPool2dPaddedOp {
    fn name(&self) -> &'static str {
        "kd-max-pool2d-padded"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let sizes @ [h, w, ho, wo] = self.sizes(l)?;
        let x = input(s, l)?;
        let mut out = output_vec(x.len() / (h * w) * ho * wo);
        out.par_chunks_mut(ho * wo)
            .zip(x.par_chunks(h * w))
            .for_each(|(out, plane)| {
                for (o, v) in out.iter_mut().enumerate() {
                    *v = plane[self.arg_max(plane, sizes, o / wo, o % wo)];
                }
            });
        let &[n, c, ..] = l.dims() else {
            unreachable!("checked by sizes")
        };
        Ok((CpuStorage::F32(out), Shape::from((n, c, ho, wo))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &PaddedPoolGrad(*self),
        )?))
    }
}

/// (x, dY) -> dx: each dY entry added at its window's maximum.
struct PaddedPoolGrad(MaxPool2dPaddedOp);

impl CustomOp2 for PaddedPoolGrad {
    fn name(&self) -> &'static str {
        "kd-max-pool2d-padded-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let sizes @ [h, w, ho, wo] = self.0.sizes(l1)?;
        let (x, dy) = (input(s1, l1)?, input(s2, l2)?);
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(dy.par_chunks(ho * wo)))
            .for_each(|(dx, (plane, dy))| {
                for (o, g) in dy.iter().enumerate() {
                    dx[self.0.arg_max(plane, sizes, o / wo, o % wo)] += g;
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::MaxPool2dPaddedOp;

    const STEM: MaxPool2dPaddedOp = MaxPool2dPaddedOp {
        k: 3,
        stride: 2,
        padding: 1,
    };

    /// 3x3, stride 2, padding 1 on a 1x1x4x4 ramp, worked by hand: each
    /// output is its window's bottom-right input, and the gradient of the
    /// sum lands there once per window.
    #[test]
    fn the_stems_pool_matches_a_hand_worked_example() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(
            &Tensor::arange(0f32, 16.0, &dev)
                .unwrap()
                .reshape((1, 1, 4, 4))
                .unwrap(),
        )
        .unwrap();
        let y = x.apply_op1(STEM).unwrap();
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, [5.0, 7.0, 13.0, 15.0]);
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut want = [0f32; 16];
        [5, 7, 13, 15].iter().for_each(|&i| want[i] = 1.0);
        assert_eq!(dx, want);
    }

    /// Overlapping windows that share a maximum add their gradients there;
    /// padding is never the maximum, even of negative inputs; NaN wins.
    #[test]
    fn overlaps_sum_padding_loses_and_nan_wins() {
        let dev = Device::Cpu;
        let mut v = vec![-5f32; 9];
        v[4] = -1.0;
        let x = Var::from_tensor(&Tensor::from_vec(v, (1, 1, 3, 3), &dev).unwrap()).unwrap();
        let y = x.apply_op1(STEM).unwrap();
        // Outputs 2x2, every window holding the centre.
        assert_eq!(
            y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            [-1.0; 4]
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        let dx = g
            .get(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(dx[4], 4.0);
        assert_eq!(dx.iter().sum::<f32>(), 4.0);
        let mut v = vec![0f32; 9];
        v[0] = f32::NAN;
        let y = Tensor::from_vec(v, (1, 1, 3, 3), &dev)
            .unwrap()
            .apply_op1(STEM)
            .unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(y[0].is_nan() && !y[3].is_nan(), "{y:?}");
    }

    #[test]
    fn a_padding_over_half_the_window_is_refused() {
        let x = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let op = MaxPool2dPaddedOp {
            k: 2,
            stride: 2,
            padding: 2,
        };
        let err = x.apply_op1(op).unwrap_err().to_string();
        assert!(err.contains("at most half the window"), "{err}");
    }
}
