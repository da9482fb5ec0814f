//! The zoo's wide ResNets (`wrn_16_1`, `wrn_16_2`, `wrn_40_1`, `wrn_40_2`):
//! pre-activation blocks (BatchNorm and ReLU before each convolution), a
//! `convShortcut` only where a block changes width, widths 16, 16k, 32k, 64k.
//! Names are RepDistiller's and mdistiller's `state_dict` keys
//! (`block1.layer.0.bn1.weight`, ...). Taps: `feat0` (the stem), `feat1..3`
//! (the stages), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::Init;
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{
    add, global_avg_pool, linear_with, relu, seeded, BatchNorm2d, Conv2d, Conv2dConfig, Linear,
};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Error, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ZooOutputs};

struct Block {
    bn1: BatchNorm2d,
    conv1: Conv2d,
    bn2: BatchNorm2d,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = (cin != cout)
            .then(|| {
                Conv2d::new(
                    cin,
                    cout,
                    Conv2dConfig::new(1, stride, 0)
                        .without_bias()
                        .with_kaiming_fan_out(),
                    vb.pp("convShortcut"),
                )
            })
            .transpose()?;
        Ok(Self {
            bn1: BatchNorm2d::new(cin, vb.pp("bn1"))?,
            conv1: Conv2d::new(
                cin,
                cout,
                Conv2dConfig::new(3, stride, 1)
                    .without_bias()
                    .with_kaiming_fan_out(),
                vb.pp("conv1"),
            )?,
            bn2: BatchNorm2d::new(cout, vb.pp("bn2"))?,
            conv2: Conv2d::new(
                cout,
                cout,
                Conv2dConfig::SAME_3X3.without_bias().with_kaiming_fan_out(),
                vb.pp("conv2"),
            )?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let o = relu(&self.bn1.forward(x, mode)?)?;
        let y = relu(&self.bn2.forward(&self.conv1.forward(&o)?, mode)?)?;
        let y = self.conv2.forward(&y)?;
        // A block that keeps its width adds its input; one that changes it
        // adds the shortcut of its normalised input.
        let skip = match &self.shortcut {
            Some(c) => c.forward(&o)?,
            None => x.clone(),
        };
        add(&skip, &y)
    }
}

/// `WideResNet(depth, widen)`: (depth - 4) / 6 blocks per stage.
pub struct WideResNet {
    conv1: Conv2d,
    stages: Vec<Vec<Block>>,
    bn1: BatchNorm2d,
    fc: Linear,
}

impl WideResNet {
    pub fn new(config: &ArchConfig, vb: VarBuilder, depth: usize, widen: usize) -> Result<Self> {
        if depth < 10 || !(depth - 4).is_multiple_of(6) {
            return Err(Error::config(format!(
                "a wide ResNet's depth is 6n + 4 (10, 16, 22, ...), not {depth}"
            )));
        }
        let n = (depth - 4) / 6;
        let widths = Self::widths(widen);
        let conv1 = Conv2d::new(
            config.input_shape[0],
            widths[0],
            Conv2dConfig::SAME_3X3.without_bias().with_kaiming_fan_out(),
            vb.pp("conv1"),
        )?;
        let mut stages = Vec::new();
        for (s, stride) in [1, 2, 2].into_iter().enumerate() {
            let layer = vb.pp(format!("block{}", s + 1)).pp("layer");
            let (cin, cout) = (widths[s], widths[s + 1]);
            let blocks = (0..n)
                .map(|i| match i {
                    0 => Block::new(cin, cout, stride, layer.pp(i)),
                    _ => Block::new(cout, cout, 1, layer.pp(i)),
                })
                .collect::<Result<Vec<_>>>()?;
            stages.push(blocks);
        }
        Ok(Self {
            conv1,
            stages,
            bn1: BatchNorm2d::new(widths[3], vb.pp("bn1"))?,
            // The original zeroes its head's bias and keeps nn.Linear's weight.
            fc: linear_with(
                widths[3],
                config.num_classes,
                (seeded::torch_default(widths[3]), Init::Const(0.0)),
                vb.pp("fc"),
            )?,
        })
    }

    fn widths(widen: usize) -> [usize; 4] {
        [16, 16 * widen, 32 * widen, 64 * widen]
    }

    pub fn taps(config: &ArchConfig, widen: usize) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let c = Self::widths(widen);
        let (h2, w2) = (strided(h, 2), strided(w, 2));
        let feats = [
            [c[0], h, w],
            [c[1], h, w],
            [c[2], h2, w2],
            [c[3], strided(h2, 2), strided(w2, 2)],
        ];
        zoo_taps(&feats, false, c[3])
    }
}

impl Network for WideResNet {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = self.conv1.forward(images)?;
        let mut feats = vec![x.clone()];
        for stage in &self.stages {
            for block in stage {
                x = block.forward(&x, mode)?;
            }
            feats.push(x.clone());
        }
        let pooled = global_avg_pool(&relu(&self.bn1.forward(&x, mode)?)?)?;
        let logits = self.fc.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts: Vec::new(),
            pooled,
        }
        .with_logits(logits))
    }
}

macro_rules! wrns {
    ($($name:literal: $depth:literal, $widen:literal;)*) => {$(
        kd_core::inventory::submit! {
            ArchPlugin {
                name: $name,
                summary: concat!("wide ResNet WRN-", $depth, "-", $widen, " (widths 16, ", $widen, "x 16-32-64; pre-activation blocks)"),
                build: |config, vb| Ok(Box::new(WideResNet::new(config, vb, $depth, $widen)?)),
                taps: |config| WideResNet::taps(config, $widen),
            }
        }
    )*};
}

wrns! {
    "wrn_16_1": 16, 1;
    "wrn_16_2": 16, 2;
    "wrn_40_1": 40, 1;
    "wrn_40_2": 40, 2;
}
