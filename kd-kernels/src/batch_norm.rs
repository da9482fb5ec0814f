//! BatchNorm for the CPU, forward and backward, fused: in training with the
//! batch's statistics, in evaluation with the running ones.
//!
//! Built from Candle's generic ops, a training BatchNorm is seven passes
//! over the activations forward (two reductions over dims 0, 2 and 3 among
//! them) and as many backward, an evaluation one three; here it is one pass
//! for the statistics (training only) and one for the output, and two for
//! the gradients, channels (or planes) in parallel. Statistics are summed in
//! f64, so they agree with PyTorch's to f32 rounding whatever the batch size.
//! The output is `(x - mean) * (weight / sqrt(var + eps)) + bias`, rounded
//! step by step as Candle's ops round it.
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::im2col::output_vec;

/// A batch's per-channel mean and biased variance, and what [`batch_norm_train`]
/// normalised with.
#[derive(Debug, Clone)]
pub struct BatchStats {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
}

/// `F.batch_norm(x, training=True)` on N x C x H x W with per-channel
/// `weight` and `bias`: the output, and the batch's statistics (for the
/// caller's running statistics). Gradients reach `x`, `weight` and `bias`.
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    let x = x.contiguous()?;
    check_channels(&x, weight, bias, None)?;
    let (n, c, h, w) = x.dims4()?;
    let values = x.flatten_all()?.to_vec1::<f32>()?;
    let plane = h * w;
    let stats: Vec<(f32, f32)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(|i| &values[(i * c + ch) * plane..][..plane]);
            let count = (n * plane) as f64;
            let sum: f64 = planes()
                .map(|p| p.iter().map(|&v| v as f64).sum::<f64>())
                .sum();
            let mean = sum / count;
            let sq: f64 = planes()
                .map(|p| p.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>())
                .sum();
            (mean as f32, (sq / count) as f32)
        })
        .collect();
    let (mean, var): (Vec<f32>, Vec<f32>) = stats.into_iter().unzip();
    let y = x.apply_op3(weight, bias, BatchNormOp::new(&mean, &var, eps, true))?;
    Ok((y, BatchStats { mean, var }))
}

/// `F.batch_norm(x, training=False)`: normalised with the running `mean`
/// and `var`. Gradients reach `x`, `weight` and `bias`.
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    (mean, var): (&[f32], &[f32]),
    eps: f64,
) -> Result<Tensor> {
    check_channels(x, weight, bias, Some([mean.len(), var.len()]))?;
    x.contiguous()?
        .apply_op3(weight, bias, BatchNormOp::new(mean, var, eps, false))
}

/// Every per-channel input must have one value per channel of `x`: the
/// kernels index them by channel, so a mismatch is refused here, by name.
fn check_channels(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    stats: Option<[usize; 2]>,
) -> Result<()> {
    let (_, c, _, _) = x.dims4()?;
    let (w, b) = (weight.elem_count(), bias.elem_count());
    if w != c || b != c || stats.is_some_and(|s| s != [c, c]) {
        candle_core::bail!(
            "batch norm: input {:?} has {c} channels but weight has {w}, bias {b}{}",
            x.dims(),
            stats
                .map(|[m, v]| format!(", running mean {m}, running variance {v}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// (x, weight, bias) -> y with the statistics already known; `training`:
/// they are the batch's own, so the gradient runs through them too.
struct BatchNormOp {
    mean: Vec<f32>,
    /// sqrt(var + eps) per channel.
    denom: Vec<f32>,
    invstd: Vec<f32>,
    training: bool,
}

impl BatchNormOp {
    fn new(mean: &[f32], var: &[f32], eps: f64, training: bool) -> Self {
        let denom: Vec<f32> = var.iter().map(|v| (v + eps as f32).sqrt()).collect();
        Self {
            mean: mean.to_vec(),
            invstd: denom.iter().map(|d| 1.0 / d).collect(),
            denom,
            training,
        }
    }
}

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<f32>()?[a..b]),
        None => candle_core::bail!("batch norm: inputs must be contiguous"),
    }
}

/// N, C and the plane size of an N x C x H x W layout.
fn sizes(l: &Layout) -> Result<(usize, usize, usize)> {
    let (n, c, h, w) = l.shape().dims4()?;
    Ok((n, c, h * w))
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "kd-batch-norm"
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
        let (_, c, plane) = sizes(l1)?;
        let (x, weight, bias) = (
            contiguous(s1, l1)?,
            contiguous(s2, l2)?,
            contiguous(s3, l3)?,
        );
        let mut y = output_vec(x.len());
        y.par_chunks_mut(plane).enumerate().for_each(|(p, y)| {
            let ch = p % c;
            let (m, scale, shift) = (self.mean[ch], weight[ch] / self.denom[ch], bias[ch]);
            let x = &x[p * plane..][..plane];
            y.iter_mut()
                .zip(x)
                .for_each(|(y, &x)| *y = (x - m) * scale + shift);
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let sums = grad.apply_op2_no_bwd(x, &GradSums { op: self })?;
        let [sum_dy, sum_dy_xhat]: [Vec<f32>; 2] =
            sums.to_vec2::<f32>()?.try_into().expect("two rows of sums");
        let dx = grad.apply_op2_no_bwd(
            x,
            &InputGrad {
                op: self,
                weight: weight.to_vec1::<f32>()?,
                sum_dy,
                sum_dy_xhat,
            },
        )?;
        Ok((Some(dx), Some(sums.get(1)?), Some(sums.get(0)?)))
    }
}

/// (dy, x) -> 2 x C: each channel's sum of dy, and of dy times x normalised.
struct GradSums<'a> {
    op: &'a BatchNormOp,
}

impl CustomOp2 for GradSums<'_> {
    fn name(&self) -> &'static str {
        "kd-batch-norm-grad-sums"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, plane) = sizes(l2)?;
        let (dy, x) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let sums: Vec<(f32, f32)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (m, invstd) = (self.op.mean[ch], self.op.invstd[ch]);
                let (mut a, mut b) = (0f64, 0f64);
                for i in 0..n {
                    let at = (i * c + ch) * plane;
                    let (dy, x) = (&dy[at..][..plane], &x[at..][..plane]);
                    a += dy.iter().map(|&g| g as f64).sum::<f64>();
                    b += dy
                        .iter()
                        .zip(x)
                        .map(|(&g, &x)| (g * (x - m)) as f64)
                        .sum::<f64>();
                }
                (a as f32, (b * invstd as f64) as f32)
            })
            .collect();
        let (a, b): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
        Ok((CpuStorage::F32([a, b].concat()), Shape::from((2, c))))
    }
}

/// (dy, x) -> dx = weight * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat)).
struct InputGrad<'a> {
    op: &'a BatchNormOp,
    weight: Vec<f32>,
    sum_dy: Vec<f32>,
    sum_dy_xhat: Vec<f32>,
}

impl CustomOp2 for InputGrad<'_> {
    fn name(&self) -> &'static str {
        "kd-batch-norm-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, plane) = sizes(l2)?;
        let (dy, x) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        let count = (n * plane) as f32;
        let mut dx = output_vec(x.len());
        dx.par_chunks_mut(plane).enumerate().for_each(|(p, dx)| {
            let ch = p % c;
            let (m, invstd) = (self.op.mean[ch], self.op.invstd[ch]);
            let scale = self.weight[ch] * invstd;
            let (dy, x) = (&dy[p * plane..][..plane], &x[p * plane..][..plane]);
            if !self.op.training {
                // The running statistics are constants: dx = scale * dy.
                dx.iter_mut().zip(dy).for_each(|(d, &g)| *d = scale * g);
                return;
            }
            let mean_dy = self.sum_dy[ch] / count;
            let mean_dy_xhat = self.sum_dy_xhat[ch] / count;
            for ((d, &g), &x) in dx.iter_mut().zip(dy).zip(x) {
                let xhat = (x - m) * invstd;
                *d = scale * (g - mean_dy - xhat * mean_dy_xhat);
            }
        });
        Ok((CpuStorage::F32(dx), l2.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var, D};

    use super::{batch_norm_eval, batch_norm_train};

    /// Training BatchNorm from Candle's ops: the reference.
    fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Tensor {
        let mean = x.mean_keepdim((0, 2, 3)).unwrap();
        let centred = x.broadcast_sub(&mean).unwrap();
        let var = centred.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
        let shape = (1, (), 1, 1);
        centred
            .broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
            .unwrap()
            .broadcast_mul(&weight.reshape(shape).unwrap())
            .unwrap()
            .broadcast_add(&bias.reshape(shape).unwrap())
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
        d.max(D::Minus1).unwrap().to_scalar::<f32>().unwrap()
    }

    #[test]
    fn matches_candles_ops_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(
            &(Tensor::randn(0f32, 3.0, (4, 16, 32, 32), &dev).unwrap() + 2.0).unwrap(),
        )
        .unwrap();
        let weight = Var::from_tensor(&Tensor::randn(1f32, 0.5, 16, &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, 16, &dev).unwrap()).unwrap();
        // A weighted sum, so the gradient differs from element to element.
        let mix = Tensor::randn(0f32, 1.0, (4, 16, 32, 32), &dev).unwrap();
        let (y, stats) = batch_norm_train(&x, &weight, &bias, 1e-5).unwrap();
        let want = reference(&x, &weight, &bias);
        assert!(
            max_diff(&y, &want) < 1e-5,
            "forward: {}",
            max_diff(&y, &want)
        );
        let mean = x.mean_keepdim((0, 2, 3)).unwrap().flatten_all().unwrap();
        let got = Tensor::new(stats.mean.as_slice(), &dev).unwrap();
        assert!(max_diff(&got, &mean) < 1e-5);
        let grads = (y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
        let want_grads = (want * &mix)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("x", &x), ("weight", &weight), ("bias", &bias)] {
            let (g, w) = (grads.get(v).unwrap(), want_grads.get(v).unwrap());
            let scale = w
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(D::Minus1)
                .unwrap();
            let err = max_diff(g, w) / scale.to_scalar::<f32>().unwrap().max(1.0);
            assert!(err < 1e-5, "{name}: {err}");
        }
    }

    /// Evaluation: the same arithmetic as Candle's ops, to the bit, and their gradients.
    #[test]
    fn evaluation_matches_candles_ops_to_the_bit() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 3.0, (3, 5, 4, 6), &dev).unwrap()).unwrap();
        let weight = Var::from_tensor(&Tensor::randn(1f32, 0.5, 5, &dev).unwrap()).unwrap();
        let bias = Var::from_tensor(&Tensor::randn(0f32, 0.5, 5, &dev).unwrap()).unwrap();
        let (mean, var) = ([0.1f32, -0.2, 0.3, 0.0, 1.5], [0.5f32, 1.0, 2.0, 1e-6, 3.0]);
        let y = batch_norm_eval(&x, &weight, &bias, (&mean, &var), 1e-5).unwrap();
        let shape = (1, 5, 1, 1);
        let m = Tensor::new(&mean, &dev).unwrap().reshape(shape).unwrap();
        let v = Tensor::new(&var, &dev).unwrap().reshape(shape).unwrap();
        let scale = (weight.reshape(shape).unwrap() / (v + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let want = x
            .broadcast_sub(&m)
            .unwrap()
            .broadcast_mul(&scale)
            .unwrap()
            .broadcast_add(&bias.reshape(shape).unwrap())
            .unwrap();
        assert_eq!(max_diff(&y, &want), 0.0);
        let mix = Tensor::randn(0f32, 1.0, (3, 5, 4, 6), &dev).unwrap();
        let grads = (y * &mix).unwrap().sum_all().unwrap().backward().unwrap();
        let want_grads = (want * &mix)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for (name, v) in [("x", &x), ("weight", &weight), ("bias", &bias)] {
            let (g, w) = (grads.get(v).unwrap(), want_grads.get(v).unwrap());
            let scale = w
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(D::Minus1)
                .unwrap();
            let err = max_diff(g, w) / scale.to_scalar::<f32>().unwrap().max(1.0);
            assert!(err < 1e-5, "{name}: {err}");
        }
    }

    #[test]
    fn nan_in_is_nan_out() {
        let dev = Device::Cpu;
        let mut v = vec![1f32; 2 * 2 * 2 * 2];
        v[3] = f32::NAN;
        let x = Tensor::from_vec(v, (2, 2, 2, 2), &dev).unwrap();
        let (weight, bias) = (
            Tensor::ones(2, candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap(),
        );
        let (y, stats) = batch_norm_train(&x, &weight, &bias, 1e-5).unwrap();
        let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(y[..4].iter().chain(&y[8..12]).all(|v| v.is_nan()), "{y:?}");
        assert!(stats.mean[0].is_nan() && !stats.mean[1].is_nan());
    }

    #[test]
    fn a_weight_of_the_wrong_length_is_refused_by_name() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3, 2, 2), candle_core::DType::F32, &dev).unwrap();
        let (weight, bias) = (
            Tensor::ones(4, candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap(),
        );
        let err = batch_norm_train(&x, &weight, &bias, 1e-5).unwrap_err();
        assert!(
            err.to_string().contains("3 channels but weight has 4"),
            "{err}"
        );
        let stats = [0f32; 3];
        let err = batch_norm_eval(&x, &weight, &bias, (&stats, &stats), 1e-5).unwrap_err();
        assert!(err.to_string().contains("weight has 4"), "{err}");
    }
}
