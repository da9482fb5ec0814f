//! `nn.BatchNorm2d` with PyTorch's semantics and names.
use candle_core::{DType, Tensor, Var};
use candle_nn::{Init, VarBuilder};

use super::seeded::buffer;
use super::trace::{record, Op};
use crate::network::Mode;
use crate::{Error, Result};

/// `nn.BatchNorm2d(channels)` (eps 1e-5, momentum 0.1, affine, tracking
/// running statistics): `weight` 1 and `bias` 0 at the start; buffers
/// `running_mean`, `running_var` and `num_batches_tracked` (int64).
///
/// Training normalises with the batch's biased variance and moves the
/// running statistics towards the batch's mean and unbiased variance;
/// evaluation uses the running statistics.
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
    name: String,
}

const EPS: f64 = 1e-5;
const MOMENTUM: f64 = 0.1;

impl BatchNorm2d {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        // The buffers share storage with the model's variables, so an update
        // here is what the model saves.
        let stat = |name, init| -> Result<Var> {
            Ok(Var::from_tensor(&buffer(
                &vb,
                channels,
                name,
                init,
                DType::F32,
            )?)?)
        };
        let running_mean = stat("running_mean", Init::Const(0.0))?;
        let running_var = stat("running_var", Init::Const(1.0))?;
        let num_batches_tracked = Var::from_tensor(&buffer(
            &vb,
            (),
            "num_batches_tracked",
            Init::Const(0.0),
            DType::I64,
        )?)?;
        Ok(Self {
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
            name: vb.prefix(),
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if super::on_cpu_f32(x) {
            return match mode {
                Mode::Eval => self.eval_fused(x),
                Mode::Train { .. } => self.train_fused(x),
            };
        }
        let c = self.weight.dim(0)?;
        let shape = (1, c, 1, 1);
        let (mean, var) = match mode {
            Mode::Eval => (
                self.running_mean.as_tensor().reshape(shape)?,
                self.running_var.as_tensor().reshape(shape)?,
            ),
            Mode::Train { .. } => self.batch_statistics(x)?,
        };
        let scale = (self.weight.reshape(shape)? / (var + EPS)?.sqrt()?)?;
        let y = x
            .broadcast_sub(&mean)?
            .broadcast_mul(&scale)?
            .broadcast_add(&self.bias.reshape(shape)?)?;
        // Only evaluation is exported: training normalises with the batch.
        if mode == Mode::Eval {
            record(|| self.traced(), &[x], &y);
        }
        Ok(y)
    }

    /// Evaluation on the CPU: kd-kernels' fused BatchNorm with the running
    /// statistics (recorded for export as the generic path records it).
    fn eval_fused(&self, x: &Tensor) -> Result<Tensor> {
        let stats = (
            self.running_mean.as_tensor().to_vec1::<f32>()?,
            self.running_var.as_tensor().to_vec1::<f32>()?,
        );
        let y =
            kd_kernels::batch_norm_eval(x, &self.weight, &self.bias, (&stats.0, &stats.1), EPS)?;
        record(|| self.traced(), &[x], &y);
        Ok(y)
    }

    fn traced(&self) -> Op {
        Op::BatchNorm {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            mean: self.running_mean.as_tensor().clone(),
            var: self.running_var.as_tensor().clone(),
            eps: EPS,
        }
    }

    /// Training on the CPU: kd-kernels' fused BatchNorm, then the running
    /// statistics moved with the batch's.
    fn train_fused(&self, x: &Tensor) -> Result<Tensor> {
        let count = self.values_per_channel(x)?;
        let (y, stats) = kd_kernels::batch_norm_train(x, &self.weight, &self.bias, EPS)?;
        let c = stats.mean.len();
        let mean = Tensor::from_vec(stats.mean, c, x.device())?;
        let var = Tensor::from_vec(stats.var, c, x.device())?;
        self.track(&mean, &var, count)?;
        Ok(y)
    }

    /// The batch's mean and biased variance (as the normalisation uses them),
    /// after moving the running statistics.
    fn batch_statistics(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let count = self.values_per_channel(x)?;
        let mean = x.mean_keepdim((0, 2, 3))?;
        let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
        let c = mean.elem_count();
        self.track(&mean.detach().reshape(c)?, &var.detach().reshape(c)?, count)?;
        Ok((mean, var))
    }

    /// How many values each channel's statistics are taken over: at least 2.
    fn values_per_channel(&self, x: &Tensor) -> Result<usize> {
        let (n, _, h, w) = x.dims4()?;
        let count = n * h * w;
        if count < 2 {
            return Err(Error::config(format!(
                "BatchNorm `{}` cannot train on {count} value per channel (a batch of {n} image(s) of {h}x{w}): PyTorch refuses this too. Use a batch of at least 2 images",
                self.name
            )));
        }
        Ok(count)
    }

    /// Moves the running statistics towards a batch's mean and (biased)
    /// variance over `count` values, as PyTorch does: with the unbiased one.
    fn track(&self, mean: &Tensor, var: &Tensor, count: usize) -> Result<()> {
        let unbiased = (var * (count as f64 / (count - 1) as f64))?;
        let update = |stat: &Var, batch: &Tensor| -> Result<()> {
            let moved = ((stat.as_tensor() * (1.0 - MOMENTUM))? + (batch * MOMENTUM)?)?;
            Ok(stat.set(&moved)?)
        };
        update(&self.running_mean, mean)?;
        update(&self.running_var, &unbiased)?;
        let tracked = (self.num_batches_tracked.as_tensor() + 1.0)?;
        self.num_batches_tracked.set(&tracked)?;
        Ok(())
    }
}
