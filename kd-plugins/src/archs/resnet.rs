//! The CIFAR ResNets of the distillation zoo (RepDistiller's and mdistiller's
//! `resnet8` ... `resnet110`, `resnet8x4`, `resnet32x4`): a 3x3 stem, three
//! stages of BasicBlocks (bias-free convolutions, BatchNorm, `downsample.0/1`
//! shortcuts), global average pooling and `fc`. Names are their `state_dict`
//! keys; convolutions start as theirs (kaiming normal, fan out). Taps: `feat0` (the stem), `feat1..3` (the stages), `preact1..3`
//! (each stage's last sum before its ReLU), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{add, global_avg_pool, linear, relu, Conv2dConfig, Linear};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Error, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ConvBn, ZooOutputs};

struct BasicBlock {
    first: ConvBn,
    second: ConvBn,
    downsample: Option<ConvBn>,
}

impl BasicBlock {
    fn new(inplanes: usize, planes: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let downsample = (stride != 1 || inplanes != planes)
            .then(|| {
                let d = vb.pp("downsample");
                ConvBn::new(
                    inplanes,
                    planes,
                    Conv2dConfig::new(1, stride, 0),
                    d.pp(0),
                    d.pp(1),
                )
            })
            .transpose()?;
        Ok(Self {
            first: ConvBn::new(
                inplanes,
                planes,
                Conv2dConfig::new(3, stride, 1),
                vb.pp("conv1"),
                vb.pp("bn1"),
            )?,
            second: ConvBn::new(
                planes,
                planes,
                Conv2dConfig::SAME_3X3,
                vb.pp("conv2"),
                vb.pp("bn2"),
            )?,
            downsample,
        })
    }

    /// The block's output and the sum before its ReLU.
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let out = self
            .second
            .forward(&relu(&self.first.forward(x, mode)?)?, mode)?;
        let residual = match &self.downsample {
            Some(d) => d.forward(x, mode)?,
            None => x.clone(),
        };
        let preact = add(&out, &residual)?;
        Ok((relu(&preact)?, preact))
    }
}

/// A CIFAR ResNet of `depth` (6n + 2) with stage widths `filters`.
pub struct ResNet {
    stem: ConvBn,
    stages: Vec<Vec<BasicBlock>>,
    fc: Linear,
}

impl ResNet {
    pub fn new(
        config: &ArchConfig,
        vb: VarBuilder,
        depth: usize,
        filters: [usize; 4],
    ) -> Result<Self> {
        let n = blocks_per_stage(depth)?;
        let stem = ConvBn::new(
            config.input_shape[0],
            filters[0],
            Conv2dConfig::SAME_3X3,
            vb.pp("conv1"),
            vb.pp("bn1"),
        )?;
        let mut inplanes = filters[0];
        let mut stages = Vec::new();
        for (s, (&planes, stride)) in filters[1..].iter().zip([1, 2, 2]).enumerate() {
            let layer = vb.pp(format!("layer{}", s + 1));
            let blocks = (0..n)
                .map(|i| {
                    let (cin, st) = if i == 0 {
                        (inplanes, stride)
                    } else {
                        (planes, 1)
                    };
                    BasicBlock::new(cin, planes, st, layer.pp(i))
                })
                .collect::<Result<Vec<_>>>()?;
            inplanes = planes;
            stages.push(blocks);
        }
        Ok(Self {
            stem,
            stages,
            fc: linear(filters[3], config.num_classes, vb.pp("fc"))?,
        })
    }

    pub fn taps(config: &ArchConfig, filters: [usize; 4]) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let (h2, w2) = (strided(h, 2), strided(w, 2));
        let feats = [
            [filters[0], h, w],
            [filters[1], h, w],
            [filters[2], h2, w2],
            [filters[3], strided(h2, 2), strided(w2, 2)],
        ];
        zoo_taps(&feats, true, filters[3])
    }
}

fn blocks_per_stage(depth: usize) -> Result<usize> {
    match depth {
        d if d >= 8 && (d - 2).is_multiple_of(6) => Ok((d - 2) / 6),
        d => Err(Error::config(format!(
            "a CIFAR ResNet's depth is 6n + 2 (8, 14, 20, ...), not {d}"
        ))),
    }
}

impl Network for ResNet {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = relu(&self.stem.forward(images, mode)?)?;
        let (mut feats, mut preacts) = (vec![x.clone()], Vec::new());
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
        let logits = self.fc.forward(&pooled)?;
        Ok(ZooOutputs {
            feats,
            preacts,
            pooled,
        }
        .with_logits(logits))
    }
}

const NARROW: [usize; 4] = [16, 16, 32, 64];
const WIDE: [usize; 4] = [32, 64, 128, 256];

macro_rules! resnets {
    ($($name:literal: $depth:literal, $filters:ident, $summary:literal;)*) => {$(
        kd_core::inventory::submit! {
            ArchPlugin {
                name: $name,
                summary: $summary,
                build: |config, vb| Ok(Box::new(ResNet::new(config, vb, $depth, $filters)?)),
                taps: |config| ResNet::taps(config, $filters),
            }
        }
    )*};
}

resnets! {
    "resnet8": 8, NARROW, "CIFAR ResNet-8 (widths 16-16-32-64, 1 BasicBlock per stage)";
    "resnet14": 14, NARROW, "CIFAR ResNet-14 (16-16-32-64, 2 blocks per stage)";
    "resnet20": 20, NARROW, "CIFAR ResNet-20 (16-16-32-64, 3 blocks per stage)";
    "resnet32": 32, NARROW, "CIFAR ResNet-32 (16-16-32-64, 5 blocks per stage)";
    "resnet44": 44, NARROW, "CIFAR ResNet-44 (16-16-32-64, 7 blocks per stage)";
    "resnet56": 56, NARROW, "CIFAR ResNet-56 (16-16-32-64, 9 blocks per stage)";
    "resnet110": 110, NARROW, "CIFAR ResNet-110 (16-16-32-64, 18 blocks per stage)";
    "resnet8x4": 8, WIDE, "CIFAR ResNet-8x4 (widths 32-64-128-256, 1 block per stage): the zoo's usual student";
    "resnet32x4": 32, WIDE, "CIFAR ResNet-32x4 (32-64-128-256, 5 blocks per stage): the zoo's usual teacher";
}
