//! The ResNets of torchvision's layout, in two flavours that differ only in
//! the stem and two names ([`Flavor`]): the CIFAR "resnetv2" of the
//! distillation zoo (mdistiller's and RepDistiller's `ResNet18`, `ResNet34`,
//! `ResNet50`: a 3x3 stem of 64 channels without pooling, `shortcut.0/1`,
//! `linear`) and torchvision's own `resnet18/34/50` (`tv_resnet*`: a 7x7
//! stride-2 stem and a 3x3 stride-2 max-pool, `downsample.0/1`, `fc`), so a
//! torchvision model fine-tuned on a user's classes loads as it is saved.
//! Both: four stages `layer1..4` of BasicBlocks or Bottlenecks (widths
//! 64-128-256-512, the Bottleneck's output 4x that, its stride in the 3x3
//! convolution as torchvision's v1.5), global average pooling (any input
//! side), then the linear head. Convolutions start kaiming normal (fan
//! out), the head as `nn.Linear`. Taps: `feat0` (the stem), `feat1..4` (the
//! stages), `preact1..4` (each stage's last sum before its ReLU), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{add, global_avg_pool, linear, max_pool2d_padded, relu, Conv2dConfig, Linear};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ConvBn, ZooOutputs};

const WIDTHS: [usize; 4] = [64, 128, 256, 512];
const STEM: usize = 64;

/// What tells the CIFAR file's ResNets from torchvision's.
#[derive(Clone, Copy)]
pub struct Flavor {
    /// The stem convolution's kernel and stride (padding: half the kernel).
    stem: (usize, usize),
    /// `nn.MaxPool2d(3, stride 2, padding 1)` after the stem.
    stem_pool: bool,
    /// The name of a block's projection and of the head.
    shortcut: &'static str,
    head: &'static str,
}

const CIFAR: Flavor = Flavor {
    stem: (3, 1),
    stem_pool: false,
    shortcut: "shortcut",
    head: "linear",
};

const TORCHVISION: Flavor = Flavor {
    stem: (7, 2),
    stem_pool: true,
    shortcut: "downsample",
    head: "fc",
};

/// The stem's max-pool: (kernel, stride, padding).
const STEM_POOL: (usize, usize, usize) = (3, 2, 1);

/// A residual block: its convolutions in order (each but the last followed
/// by a ReLU), and the projection of its input where the shape changes.
struct Block {
    convs: Vec<ConvBn>,
    shortcut: Option<ConvBn>,
}

impl Block {
    /// `conv1/bn1 .. convK/bnK` from `cin` with `stride`, as `shapes` (kernel,
    /// out channels) says; the output has the last shape's channels.
    fn new(
        cin: usize,
        shapes: &[(usize, usize)],
        (stride, shortcut): (usize, &str),
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut convs = Vec::new();
        let (mut from, mut left) = (cin, stride);
        for (i, &(k, out)) in shapes.iter().enumerate() {
            // The block's stride sits in its first 3x3 convolution.
            let s = if k == 3 {
                std::mem::replace(&mut left, 1)
            } else {
                1
            };
            let config = Conv2dConfig::new(k, s, k / 2);
            let (conv, bn) = (
                vb.pp(format!("conv{}", i + 1)),
                vb.pp(format!("bn{}", i + 1)),
            );
            convs.push(ConvBn::new(from, out, config, conv, bn)?);
            from = out;
        }
        let shortcut = (stride != 1 || cin != from)
            .then(|| {
                let s = vb.pp(shortcut);
                ConvBn::new(cin, from, Conv2dConfig::new(1, stride, 0), s.pp(0), s.pp(1))
            })
            .transpose()?;
        Ok(Self { convs, shortcut })
    }

    /// The block's output and the sum before its ReLU.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let (last, first) = self.convs.split_last().expect("a convolution");
        let mut h = x.clone();
        for c in first {
            h = relu(&c.forward(&h, mode)?)?;
        }
        let out = last.forward(&h, mode)?;
        let residual = match &self.shortcut {
            Some(s) => s.forward(x, mode)?,
            None => x.clone(),
        };
        let preact = add(&out, &residual)?;
        Ok((relu(&preact)?, preact))
    }
}

/// Which block a resnetv2 network is made of.
#[derive(Clone, Copy)]
pub enum Kind {
    Basic,
    Bottleneck,
}

impl Kind {
    fn expansion(self) -> usize {
        match self {
            Kind::Basic => 1,
            Kind::Bottleneck => 4,
        }
    }

    fn shapes(self, planes: usize) -> Vec<(usize, usize)> {
        match self {
            Kind::Basic => vec![(3, planes), (3, planes)],
            Kind::Bottleneck => vec![(1, planes), (3, planes), (1, planes * 4)],
        }
    }
}

pub struct ResNetV2 {
    stem: ConvBn,
    stem_pool: bool,
    stages: Vec<Vec<Block>>,
    head: Linear,
}

impl ResNetV2 {
    pub fn new(
        config: &ArchConfig,
        vb: VarBuilder,
        (flavor, kind): (Flavor, Kind),
        blocks: [usize; 4],
    ) -> Result<Self> {
        let (k, stride) = flavor.stem;
        let stem = ConvBn::new(
            config.input_shape[0],
            STEM,
            Conv2dConfig::new(k, stride, k / 2),
            vb.pp("conv1"),
            vb.pp("bn1"),
        )?;
        let mut cin = STEM;
        let mut stages = Vec::new();
        for (s, (&planes, &n)) in WIDTHS.iter().zip(&blocks).enumerate() {
            let layer = vb.pp(format!("layer{}", s + 1));
            let stride = if s == 0 { 1 } else { 2 };
            let mut stage = Vec::new();
            for i in 0..n {
                let st = if i == 0 { stride } else { 1 };
                let shapes = kind.shapes(planes);
                stage.push(Block::new(
                    cin,
                    &shapes,
                    (st, flavor.shortcut),
                    layer.pp(i),
                )?);
                cin = planes * kind.expansion();
            }
            stages.push(stage);
        }
        Ok(Self {
            stem,
            stem_pool: flavor.stem_pool,
            stages,
            head: linear(cin, config.num_classes, vb.pp(flavor.head))?,
        })
    }

    pub fn taps(config: &ArchConfig, (flavor, kind): (Flavor, Kind)) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let (_, stride) = flavor.stem;
        let mut side = (strided(h, stride), strided(w, stride));
        let mut feats = vec![[STEM, side.0, side.1]];
        if flavor.stem_pool {
            // A 3x3 window with padding 1 strides as a 3x3 convolution does.
            side = (strided(side.0, STEM_POOL.1), strided(side.1, STEM_POOL.1));
        }
        for (s, planes) in WIDTHS.iter().enumerate() {
            if s > 0 {
                side = (strided(side.0, 2), strided(side.1, 2));
            }
            feats.push([planes * kind.expansion(), side.0, side.1]);
        }
        zoo_taps(&feats, true, WIDTHS[3] * kind.expansion())
    }
}

impl Network for ResNetV2 {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = relu(&self.stem.forward(images, mode)?)?;
        let (mut feats, mut preacts) = (vec![x.clone()], Vec::new());
        if self.stem_pool {
            let (k, stride, padding) = STEM_POOL;
            x = max_pool2d_padded(&x, k, stride, padding)?;
        }
        for stage in &self.stages {
            let mut preact = None;
            for block in stage {
                let (out, pre) = block.forward(&x, mode)?;
                (x, preact) = (out, Some(pre));
            }
            feats.push(x.clone());
            preacts.extend(preact);
        }
        let pooled = global_avg_pool(&x)?;
        let logits = self.head.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts,
            pooled,
        }
        .with_logits(logits))
    }
}

macro_rules! resnetv2s {
    ($($name:literal: $flavor:ident $kind:ident, $blocks:expr, $summary:literal;)*) => {$(
        kd_core::inventory::submit! {
            ArchPlugin {
                name: $name,
                summary: $summary,
                build: |config, vb| Ok(Box::new(ResNetV2::new(config, vb, ($flavor, Kind::$kind), $blocks)?)),
                taps: |config| ResNetV2::taps(config, ($flavor, Kind::$kind)),
            }
        }
    )*};
}

resnetv2s! {
    "ResNet18": CIFAR Basic, [2, 2, 2, 2], "CIFAR ResNet-18 (resnetv2: 64-128-256-512, BasicBlocks 2-2-2-2)";
    "ResNet34": CIFAR Basic, [3, 4, 6, 3], "CIFAR ResNet-34 (resnetv2: 64-128-256-512, BasicBlocks 3-4-6-3)";
    "ResNet50": CIFAR Bottleneck, [3, 4, 6, 3], "CIFAR ResNet-50 (resnetv2: Bottlenecks 3-4-6-3, outputs 256-512-1024-2048)";
    "tv_resnet18": TORCHVISION Basic, [2, 2, 2, 2], "torchvision's resnet18 (7x7 stem and max-pool, downsample, fc; any input from 32x32)";
    "tv_resnet34": TORCHVISION Basic, [3, 4, 6, 3], "torchvision's resnet34 (BasicBlocks 3-4-6-3; any input from 32x32)";
    "tv_resnet50": TORCHVISION Bottleneck, [3, 4, 6, 3], "torchvision's resnet50 (Bottlenecks 3-4-6-3, v1.5 strides; any input from 32x32)";
}
