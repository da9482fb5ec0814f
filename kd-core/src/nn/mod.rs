//! Layers with PyTorch's parameter names and semantics, small enough to read
//! at a glance (the scale of `candle_nn::conv`).
use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;
use rand::Rng;

use kd_kernels::{
    reference_conv2d, reference_max_pool2d, Conv2dOp, DepthwiseConv2dOp, MaxPool2dOp,
    MaxPool2dPaddedOp,
};

use crate::network::Mode;
use crate::Result;

mod batch_norm;
pub mod seeded;
pub mod trace;

pub use batch_norm::BatchNorm2d;

/// The shape of a [`Conv2d`]: square kernel, padding, stride, whether a
/// ReLU follows, and then a max-pool (both fused into the convolution on the
/// CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dConfig {
    pub kernel: usize,
    pub padding: usize,
    pub stride: usize,
    pub relu: bool,
    /// `nn.MaxPool2d(k)` after the convolution (and its ReLU).
    pub max_pool: Option<usize>,
    /// Whether it has a `bias` (`nn.Conv2d(..., bias=False)` has none).
    pub bias: bool,
    /// `kaiming_normal_(mode="fan_out", nonlinearity="relu")` and a zero bias,
    /// as the distillation zoo's classes initialise their convolutions, instead
    /// of `nn.Conv2d`'s default.
    pub kaiming_fan_out: bool,
    /// `groups=`: input and output channels split into this many groups, each
    /// convolved apart (`groups == in_channels` is a depthwise convolution).
    pub groups: usize,
}

impl Conv2dConfig {
    /// `nn.Conv2d(in, out, kernel_size=3, padding=1)`: the size-keeping 3x3.
    pub const SAME_3X3: Self = Self {
        kernel: 3,
        padding: 1,
        stride: 1,
        relu: false,
        max_pool: None,
        bias: true,
        kaiming_fan_out: false,
        groups: 1,
    };

    /// `nn.Conv2d(in, out, kernel_size, stride, padding)`, with a bias.
    pub const fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel,
            padding,
            stride,
            ..Self::SAME_3X3
        }
    }

    /// The same without a bias (`bias=False`, as before a BatchNorm).
    pub const fn without_bias(self) -> Self {
        Self {
            bias: false,
            ..self
        }
    }

    /// The same initialised as the zoo's classes do (see `kaiming_fan_out`).
    pub const fn with_kaiming_fan_out(self) -> Self {
        Self {
            kaiming_fan_out: true,
            ..self
        }
    }

    /// The same convolution followed by `nn.ReLU()`.
    pub const fn with_relu(self) -> Self {
        Self { relu: true, ..self }
    }

    /// The same split into `groups` (see the field).
    pub const fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }

    /// The same followed by `nn.MaxPool2d(k)`, as [`max_pool2d`] computes it.
    pub const fn with_max_pool(self, k: usize) -> Self {
        Self {
            max_pool: Some(k),
            ..self
        }
    }
}

/// `nn.Conv2d` with square kernels: `weight` (out, in, k, k) and `bias`
/// (out, unless the config has none), and the `nn.ReLU` and `nn.MaxPool2d`
/// after it when its config says so.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    config: Conv2dConfig,
}

impl Conv2d {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        config: Conv2dConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (k, groups) = (config.kernel, config.groups.max(1));
        if !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
            return Err(crate::Error::config(format!(
                "{}: a convolution of {in_channels} to {out_channels} channels cannot be split into {groups} groups",
                vb.prefix()
            )));
        }
        let per_group = in_channels / groups;
        let (weight_init, bias_init) = match config.kaiming_fan_out {
            true => (seeded::KAIMING_FAN_OUT, candle_nn::Init::Const(0.0)),
            false => {
                let init = seeded::torch_default(per_group * k * k);
                (init, init)
            }
        };
        let weight = vb.get_with_hints((out_channels, per_group, k, k), "weight", weight_init)?;
        // A bias-free convolution adds zeros: one kernel serves both.
        let bias = match config.bias {
            true => vb.get_with_hints(out_channels, "bias", bias_init)?,
            false => Tensor::zeros(out_channels, weight.dtype(), weight.device())?,
        };
        Ok(Self {
            weight,
            bias,
            config,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }
}

thread_local! {
    static MACS: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `run` and returns what it returned with the multiply-accumulates of
/// the convolutions it ran (kd's [`Conv2d`] counts itself meanwhile).
pub fn count_conv_macs<T>(run: impl FnOnce() -> T) -> (T, u64) {
    let outer = MACS.with(|m| m.replace(Some(0)));
    let out = run();
    let counted = MACS.with(|m| m.replace(outer)).unwrap_or(0);
    (out, counted)
}

impl Conv2d {
    /// Adds this layer's multiply-accumulates on `x` to a running count.
    fn count(&self, x: &Tensor) {
        let Some(total) = MACS.with(|m| m.get()) else {
            return;
        };
        let (Ok((n, _, h, w)), Ok((co, c, k, _))) = (x.dims4(), self.weight.dims4()) else {
            return;
        };
        let Conv2dConfig {
            padding, stride, ..
        } = self.config;
        let out = |side: usize| (side + 2 * padding).saturating_sub(k) / stride + 1;
        let macs = (n * co * out(h) * out(w) * c * k * k) as u64;
        MACS.with(|m| m.set(Some(total + macs)));
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.count(x);
        let y = self.run(x)?;
        let c = self.config;
        let op = || trace::Op::Conv2d {
            weight: self.weight.clone(),
            bias: c.bias.then(|| self.bias.clone()),
            stride: c.stride,
            padding: c.padding,
            relu: c.relu,
            max_pool: c.max_pool,
            groups: c.groups.max(1),
        };
        trace::record(op, &[x], &y);
        Ok(y)
    }
}

impl Conv2d {
    fn run(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let Conv2dConfig {
            padding,
            stride,
            relu,
            max_pool,
            groups,
            ..
        } = self.config;
        if groups > 1 {
            let depthwise = self.weight.dim(1)? == 1 && groups == self.out_channels();
            let y = match depthwise && on_cpu_f32(x) {
                true => x
                    .contiguous()?
                    .apply_op2(&self.weight, DepthwiseConv2dOp { stride, padding })?,
                // Candle's grouped convolution: one per group, put together.
                false => x.conv2d(&self.weight, padding, stride, 1, groups)?,
            };
            let mut y = match self.config.bias {
                true => y.broadcast_add(&self.bias.reshape((1, (), 1, 1))?)?,
                false => y,
            };
            if relu {
                y = relu_values(&y)?;
            }
            return match max_pool {
                Some(k) => reference_max_pool2d(&y, k),
                None => Ok(y),
            };
        }
        if on_cpu_f32(x) {
            let op = Conv2dOp::new(padding, stride, relu);
            let op = match max_pool {
                Some(k) => op.with_max_pool(k),
                None => op,
            };
            return x.contiguous()?.apply_op3(&self.weight, &self.bias, op);
        }
        let mut y = reference_conv2d(x, &self.weight, &self.bias, padding, stride)?;
        if relu {
            // The convolution records itself with its ReLU: not twice.
            y = relu_values(&y)?;
        }
        match max_pool {
            Some(k) => reference_max_pool2d(&y, k),
            None => Ok(y),
        }
    }
}

/// Whether kd's own CPU kernels apply; elsewhere (CUDA, other dtypes) Candle's run.
fn on_cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// `nn.ReLU`: `max(x, 0)`, keeping NaN as NaN as PyTorch does (Candle's
/// `relu` uses `f32::max`, which turns NaN into 0 and so hides a broken
/// input or weight). The gradient is zero where `x <= 0`, as PyTorch's.
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    let y = relu_values(x)?;
    trace::record(|| trace::Op::Relu, &[x], &y);
    Ok(y)
}

/// `nn.ReLU6`: `min(max(x, 0), 6)`, NaN kept; the gradient is zero where
/// `x <= 0` or `x >= 6`, as PyTorch's `hardtanh` backward gives it.
pub fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    let y = relu_values(x)?;
    // `ge` is false for NaN too.
    let y = y.ge(6.0)?.where_cond(&(y.ones_like()? * 6.0)?, &y)?;
    trace::record(|| trace::Op::Relu6, &[x], &y);
    Ok(y)
}

fn relu_values(x: &Tensor) -> candle_core::Result<Tensor> {
    // `le` is false for NaN, so NaN takes the `x` branch.
    x.le(0.0)?.where_cond(&x.zeros_like()?, x)
}

/// `a + b` of one shape (a residual connection).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let y = (a + b)?;
    trace::record(|| trace::Op::Add, &[a, b], &y);
    Ok(y)
}

/// `torch.flatten(x, 1)`: N x (everything else).
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    let y = x.flatten_from(1)?;
    trace::record(|| trace::Op::Flatten, &[x], &y);
    Ok(y)
}

/// `AdaptiveAvgPool2d(1)` then flatten: N x C. The CIFAR nets' `AvgPool2d(8)`
/// is the same at a 32x32 input.
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    let y = x.mean((2, 3))?;
    trace::record(|| trace::Op::GlobalAvgPool, &[x], &y);
    Ok(y)
}

/// `torch.cat(xs, 1)`: feature maps side by side along the channels.
pub fn cat_channels(xs: &[&Tensor]) -> Result<Tensor> {
    let y = Tensor::cat(xs, 1)?;
    trace::record(|| trace::Op::Concat, xs, &y);
    Ok(y)
}

/// `x[:, start:start + len]`: a run of channels.
pub fn narrow_channels(x: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    let y = x.narrow(1, start, len)?;
    trace::record(|| trace::Op::Narrow { start, len }, &[x], &y);
    Ok(y)
}

/// ShuffleNet's channel shuffle: the channels, read as `groups` x (C / groups),
/// are written out as (C / groups) x `groups`.
pub fn channel_shuffle(x: &Tensor, groups: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let y = x
        .reshape((n, groups, c / groups, h, w))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((n, c, h, w))?;
    let shape = [c, h, w];
    trace::record(|| trace::Op::ChannelShuffle { groups, shape }, &[x], &y);
    Ok(y)
}

/// `nn.AvgPool2d(k, stride, padding)` with PyTorch's default
/// `count_include_pad=True`: the padding's zeros count in every mean. A
/// depthwise convolution with weights 1/k² computes it, because Candle's own
/// average pool has no gradient when the stride is not the kernel.
pub fn avg_pool2d(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let c = x.dim(1)?;
    let weight =
        Tensor::full(1.0 / (k * k) as f32, (c, 1, k, k), x.device())?.to_dtype(x.dtype())?;
    let y = x.conv2d(&weight, padding, stride, 1, c)?;
    trace::record(|| trace::Op::AvgPool { k, stride, padding }, &[x], &y);
    Ok(y)
}

/// `nn.Linear`: `weight` (out, in) and `bias` (out).
#[derive(Debug, Clone)]
pub struct Linear(candle_nn::Linear);

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self(candle_nn::Linear::new(weight, bias))
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.0.forward(x)?;
        let op = || trace::Op::Linear {
            weight: self.0.weight().clone(),
            bias: self.0.bias().cloned(),
        };
        trace::record(op, &[x], &y);
        Ok(y)
    }
}

/// `nn.Linear`: `weight` (out, in) and `bias` (out), with PyTorch's default
/// initialisation.
pub fn linear(in_features: usize, out_features: usize, vb: VarBuilder) -> Result<Linear> {
    let init = seeded::torch_default(in_features);
    linear_with(in_features, out_features, (init, init), vb)
}

/// `nn.Linear` whose weight and bias start as `init` says (a class that
/// re-initialises its head, as the zoo's VGG and WRN do).
pub fn linear_with(
    in_features: usize,
    out_features: usize,
    (weight_init, bias_init): (candle_nn::Init, candle_nn::Init),
    vb: VarBuilder,
) -> Result<Linear> {
    let weight = vb.get_with_hints((out_features, in_features), "weight", weight_init)?;
    let bias = vb.get_with_hints(out_features, "bias", bias_init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// `nn.MaxPool2d(k, stride=k)`, its gradient going to the maximum with weight
/// 1 as in PyTorch (Candle 0.11's own `max_pool2d` backward scales it by
/// 1/k²). Odd trailing rows and columns are dropped, as PyTorch does.
pub fn max_pool2d(x: &Tensor, k: usize) -> Result<Tensor> {
    let y = match on_cpu_f32(x) {
        true => x.contiguous()?.apply_op1(MaxPool2dOp { k })?,
        false => reference_max_pool2d(x, k)?,
    };
    let op = trace::Op::MaxPool {
        k,
        stride: k,
        padding: 0,
    };
    trace::record(|| op, &[x], &y);
    Ok(y)
}

/// `nn.MaxPool2d(k, stride, padding)`, windows that may overlap and reach
/// past the edge (padding counts as minus infinity). Off the CPU, Candle's
/// pool runs on the padded input: forward only, as Candle has no backward
/// for overlapping windows.
pub fn max_pool2d_padded(x: &Tensor, k: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let op = MaxPool2dPaddedOp { k, stride, padding };
    let y = match on_cpu_f32(x) {
        true => x.contiguous()?.apply_op1(op)?,
        false => {
            let (_, _, h, w) = x.dims4()?;
            let padded = x
                .pad_with_zeros(2, padding, padding)?
                .pad_with_zeros(3, padding, padding)?;
            let inside = Tensor::ones((h, w), x.dtype(), x.device())?
                .pad_with_zeros(0, padding, padding)?
                .pad_with_zeros(1, padding, padding)?;
            // 0 inside, minus infinity in the padding (log of the mask).
            let padded = padded.broadcast_add(&inside.log()?)?;
            padded.max_pool2d_with_stride(k, stride)?
        }
    };
    trace::record(|| trace::Op::MaxPool { k, stride, padding }, &[x], &y);
    Ok(y)
}

/// `nn.Dropout(p)`. Masks come from kd's seeded generator, keyed by the
/// step's seed and this layer's name, so a training run is reproducible.
#[derive(Debug, Clone)]
pub struct Dropout {
    p: f32,
    name: String,
}

impl Dropout {
    /// `nn.Dropout(p)` at `vb`'s path (`classifier.2`): the path names its
    /// random stream, so each dropout layer draws its own masks.
    pub fn new(p: f32, vb: &VarBuilder) -> Self {
        Self {
            p,
            name: vb.prefix(),
        }
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let Mode::Train { seed } = mode else {
            return Ok(x.clone());
        };
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let mut rng = crate::init::rng_for(seed, &self.name);
        let scale = 1.0 / (1.0 - self.p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if rng.gen::<f32>() < self.p {
                    0.0
                } else {
                    scale
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok(x.mul(&mask)?)
    }
}
