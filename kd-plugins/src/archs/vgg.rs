//! The zoo's VGGs with BatchNorm (`vgg8`, `vgg11`, `vgg13`, `vgg16`, `vgg19`):
//! five stages `block0..4` of conv (with bias) + BatchNorm + ReLU, the last
//! ReLU of each stage applied outside it, max-pools between the stages
//! (`pool0..3`, pool 3 only on 64-pixel inputs), global average pooling
//! (`pool4`) and `classifier`. Names are RepDistiller's and mdistiller's
//! `state_dict` keys (`block0.0.weight`, `block0.1.running_mean`, ...). Taps:
//! `feat0..4` (each stage after its ReLU), `preact1..4` (before), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::Init;
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{
    global_avg_pool, linear_with, max_pool2d, relu, BatchNorm2d, Conv2d, Conv2dConfig, Linear,
};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

use super::{zoo_taps, ZooOutputs};

/// One stage: `[conv, bn, relu] * k` in an `nn.Sequential`, the last ReLU dropped.
struct Stage(Vec<(Conv2d, BatchNorm2d)>);

impl Stage {
    fn new(cin: usize, widths: &[usize], vb: VarBuilder) -> Result<Self> {
        let mut layers = Vec::new();
        let mut c = cin;
        for (i, &w) in widths.iter().enumerate() {
            let config = Conv2dConfig::SAME_3X3.with_kaiming_fan_out();
            let conv = Conv2d::new(c, w, config, vb.pp(3 * i))?;
            layers.push((conv, BatchNorm2d::new(w, vb.pp(3 * i + 1))?));
            c = w;
        }
        Ok(Self(layers))
    }

    /// The stage's output before its last ReLU.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut x = x.clone();
        for (i, (conv, bn)) in self.0.iter().enumerate() {
            if i > 0 {
                x = relu(&x)?;
            }
            x = bn.forward(&conv.forward(&x)?, mode)?;
        }
        Ok(x)
    }
}

pub struct Vgg {
    stages: Vec<Stage>,
    classifier: Linear,
    /// Whether `pool3` runs (64-pixel inputs only, as in the original).
    pool3: bool,
}

impl Vgg {
    pub fn new(config: &ArchConfig, vb: VarBuilder, cfg: &[&[usize]; 5]) -> Result<Self> {
        let mut cin = config.input_shape[0];
        let mut stages = Vec::new();
        for (i, widths) in cfg.iter().enumerate() {
            stages.push(Stage::new(cin, widths, vb.pp(format!("block{i}")))?);
            cin = *widths.last().expect("a stage has a layer");
        }
        Ok(Self {
            stages,
            // The original draws its head from N(0, 0.01) with a zero bias.
            classifier: linear_with(
                cin,
                config.num_classes,
                (
                    Init::Randn {
                        mean: 0.0,
                        stdev: 0.01,
                    },
                    Init::Const(0.0),
                ),
                vb.pp("classifier"),
            )?,
            pool3: config.input_shape[1] == 64,
        })
    }

    pub fn taps(config: &ArchConfig, cfg: &[&[usize]; 5]) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let last = |i: usize| *cfg[i].last().expect("a stage has a layer");
        let mut side = (h, w);
        let mut feats = Vec::new();
        for i in 0..5 {
            if i > 0 && (i < 4 || h == 64) {
                side = (side.0 / 2, side.1 / 2);
            }
            feats.push([last(i), side.0, side.1]);
        }
        zoo_taps(&feats, true, last(4))
    }
}

impl Network for Vgg {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = images.clone();
        let (mut feats, mut preacts) = (Vec::new(), Vec::new());
        for (i, stage) in self.stages.iter().enumerate() {
            if i > 0 && (i < 4 || self.pool3) {
                x = max_pool2d(&x, 2)?;
            }
            let pre = stage.forward(&x, mode)?;
            x = relu(&pre)?;
            if i > 0 {
                preacts.push(pre);
            }
            feats.push(x.clone());
        }
        let pooled = global_avg_pool(&x)?;
        let logits = self.classifier.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts,
            pooled,
        }
        .with_logits(logits))
    }
}

const VGG8: [&[usize]; 5] = [&[64], &[128], &[256], &[512], &[512]];
const VGG11: [&[usize]; 5] = [&[64], &[128], &[256, 256], &[512, 512], &[512, 512]];
const VGG13: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256],
    &[512, 512],
    &[512, 512],
];
const VGG16: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256],
    &[512, 512, 512],
    &[512, 512, 512],
];
const VGG19: [&[usize]; 5] = [
    &[64, 64],
    &[128, 128],
    &[256, 256, 256, 256],
    &[512, 512, 512, 512],
    &[512, 512, 512, 512],
];

macro_rules! vggs {
    ($($name:literal: $cfg:ident, $summary:literal;)*) => {$(
        kd_core::inventory::submit! {
            ArchPlugin {
                name: $name,
                summary: $summary,
                build: |config, vb| Ok(Box::new(Vgg::new(config, vb, &$cfg)?)),
                taps: |config| Vgg::taps(config, &$cfg),
            }
        }
    )*};
}

vggs! {
    "vgg8": VGG8, "VGG-8 with BatchNorm (one conv per stage, 64-128-256-512-512): the zoo's student of vgg13";
    "vgg11": VGG11, "VGG-11 with BatchNorm (stages of 1, 1, 2, 2, 2 convs)";
    "vgg13": VGG13, "VGG-13 with BatchNorm (2 convs per stage): the zoo's VGG teacher";
    "vgg16": VGG16, "VGG-16 with BatchNorm (stages of 2, 2, 3, 3, 3 convs)";
    "vgg19": VGG19, "VGG-19 with BatchNorm (stages of 2, 2, 4, 4, 4 convs)";
}
