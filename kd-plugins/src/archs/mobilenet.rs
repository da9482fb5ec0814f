//! The zoo's MobileNetV2 (mdistiller's and RepDistiller's `mobile_half`:
//! expansion T = 6, width 0.5): a stride-2 3x3 stem `conv1`, seven stages
//! `blocks.0..6` of inverted residuals (1x1 expand, depthwise 3x3, 1x1
//! project, each with BatchNorm; a residual sum where the shape allows), a
//! 1x1 `conv2` to 1280 channels, global average pooling and `classifier.0`.
//! Names are their `state_dict` keys (`blocks.1.0.conv.3.weight`, ...);
//! convolutions start as theirs (normal, std sqrt(2 / (k * k * out))), the head
//! N(0, 0.01). Taps: `feat0` (the stem), `feat1..4` (after stages 1, 2, 4
//! and 6, as the original's `feats`), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::{Init, VarBuilder};
use kd_core::nn::{add, global_avg_pool, linear_with, relu, Conv2dConfig, Linear};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Error, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ConvBn, ZooOutputs};

/// `(t, c, n, s)` of each stage: expansion (`None`: the network's T), output
/// channels before the width multiplier, blocks, first block's stride.
const STAGES: [(Option<usize>, usize, usize, usize); 7] = [
    (Some(1), 16, 1, 1),
    (None, 24, 2, 1),
    (None, 32, 3, 2),
    (None, 64, 4, 2),
    (None, 96, 3, 1),
    (None, 160, 3, 2),
    (None, 320, 1, 1),
];

/// The stages after which a `feat` tap is taken (the original's f1..f4).
const TAPPED: [usize; 4] = [1, 2, 4, 6];

const LAST_CHANNELS: usize = 1280;

/// `ConvBn` at `vb.pp(conv)` and `vb.pp(bn)` (an `nn.Sequential`'s indices).
fn conv_bn(
    (cin, cout): (usize, usize),
    config: Conv2dConfig,
    vb: &VarBuilder,
    (conv, bn): (usize, usize),
) -> Result<ConvBn> {
    ConvBn::new(cin, cout, config, vb.pp(conv), vb.pp(bn))
}

/// `InvertedResidual`: `conv.0/1` expand, `conv.3/4` depthwise, `conv.6/7` project.
struct InvertedResidual {
    expand: ConvBn,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn new(cin: usize, cout: usize, stride: usize, t: usize, vb: VarBuilder) -> Result<Self> {
        let (vb, hidden) = (vb.pp("conv"), cin * t);
        Ok(Self {
            expand: conv_bn((cin, hidden), Conv2dConfig::new(1, 1, 0), &vb, (0, 1))?,
            depthwise: conv_bn(
                (hidden, hidden),
                Conv2dConfig::new(3, stride, 1).with_groups(hidden),
                &vb,
                (3, 4),
            )?,
            project: conv_bn((hidden, cout), Conv2dConfig::new(1, 1, 0), &vb, (6, 7))?,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = relu(&self.expand.forward(x, mode)?)?;
        let h = relu(&self.depthwise.forward(&h, mode)?)?;
        let out = self.project.forward(&h, mode)?;
        match self.residual {
            true => add(x, &out),
            false => Ok(out),
        }
    }
}

/// MobileNetV2 with expansion `t` and width multiplier `width`.
pub struct MobileNetV2 {
    conv1: ConvBn,
    blocks: Vec<Vec<InvertedResidual>>,
    conv2: ConvBn,
    classifier: Linear,
}

/// Each stage's output channels at `width` (the original's `int(c * width)`).
fn widths(width: f64) -> Vec<usize> {
    STAGES
        .iter()
        .map(|s| (s.1 as f64 * width) as usize)
        .collect()
}

fn stem(width: f64) -> usize {
    (32.0 * width) as usize
}

impl MobileNetV2 {
    pub fn new(config: &ArchConfig, vb: VarBuilder, t: usize, width: f64) -> Result<Self> {
        let [c, h, w] = config.input_shape;
        if h % 32 != 0 || w % 32 != 0 {
            return Err(Error::config(format!(
                "MobileNetV2 takes images whose sides are multiples of 32 (as the original asserts), not {h}x{w}"
            )));
        }
        let mut cin = stem(width);
        let conv1 = conv_bn(
            (c, cin),
            Conv2dConfig::new(3, 2, 1),
            &vb.pp("conv1"),
            (0, 1),
        )?;
        let mut blocks = Vec::new();
        for (i, ((expansion, _, n, s), cout)) in STAGES.iter().zip(widths(width)).enumerate() {
            let stage = vb.pp("blocks").pp(i);
            let blocks_of_stage = (0..*n)
                .map(|b| {
                    let (from, stride) = if b == 0 { (cin, *s) } else { (cout, 1) };
                    InvertedResidual::new(from, cout, stride, expansion.unwrap_or(t), stage.pp(b))
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push(blocks_of_stage);
            cin = cout;
        }
        let last = Self::last_channels(width);
        Ok(Self {
            conv1,
            blocks,
            conv2: conv_bn(
                (cin, last),
                Conv2dConfig::new(1, 1, 0),
                &vb.pp("conv2"),
                (0, 1),
            )?,
            classifier: linear_with(
                last,
                config.num_classes,
                (
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                    Init::Const(0.0),
                ),
                vb.pp("classifier").pp(0),
            )?,
        })
    }

    /// The original widens the last convolution only for multipliers over 1.
    fn last_channels(width: f64) -> usize {
        match width > 1.0 {
            true => (LAST_CHANNELS as f64 * width) as usize,
            false => LAST_CHANNELS,
        }
    }

    pub fn taps(config: &ArchConfig, width: f64) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let mut side = (strided(h, 2), strided(w, 2));
        let mut feats = vec![[stem(width), side.0, side.1]];
        for (i, (stage, c)) in STAGES.iter().zip(widths(width)).enumerate() {
            side = (strided(side.0, stage.3), strided(side.1, stage.3));
            if TAPPED.contains(&i) {
                feats.push([c, side.0, side.1]);
            }
        }
        zoo_taps(&feats, false, Self::last_channels(width))
    }
}

impl Network for MobileNetV2 {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = relu(&self.conv1.forward(images, mode)?)?;
        let mut feats = vec![x.clone()];
        for (i, stage) in self.blocks.iter().enumerate() {
            for block in stage {
                x = block.forward(&x, mode)?;
            }
            if TAPPED.contains(&i) {
                feats.push(x.clone());
            }
        }
        let x = relu(&self.conv2.forward(&x, mode)?)?;
        let pooled = global_avg_pool(&x)?;
        let logits = self.classifier.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts: Vec::new(),
            pooled,
        }
        .with_logits(logits))
    }
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "MobileNetV2",
        summary: "MobileNetV2 of the CIFAR zoo (mdistiller's mobile_half: expansion 6, width 0.5; depthwise convolutions)",
        build: |config, vb| Ok(Box::new(MobileNetV2::new(config, vb, 6, 0.5)?)),
        taps: |config| MobileNetV2::taps(config, 0.5),
    }
}
