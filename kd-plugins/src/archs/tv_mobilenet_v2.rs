//! torchvision's `mobilenet_v2` (`tv_mobilenet_v2`), under its `state_dict`
//! names, so a torchvision model fine-tuned on a user's classes is a teacher
//! as saved: `features.0` a stride-2 3x3 stem of 32 channels, `features.1..17`
//! inverted residuals in seven stages (Sandler et al.'s table 2: expansion,
//! channels, blocks, stride), `features.18` a 1x1 convolution to 1280
//! channels, each with BatchNorm and ReLU6 (none after a block's
//! projection), global average pooling (any input side), then
//! `classifier.0` (dropout 0.2) and `classifier.1`. A block is
//! `conv.0.0/0.1` expand, `conv.1.0/1.1` depthwise, `conv.2/3` project, or
//! without the expansion (the first stage) `conv.0.0/0.1` depthwise and
//! `conv.1/2` project. Convolutions start kaiming normal (fan out), the
//! head N(0, 0.01). Taps as the zoo's MobileNetV2: `feat0` (the stem),
//! `feat1..4` (after stages 1, 2, 4 and 6), `pooled`.
use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::{Init, VarBuilder};
use kd_core::nn::{add, global_avg_pool, linear_with, relu6, Conv2dConfig, Dropout, Linear};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

use super::{strided, zoo_taps, ConvBn, ZooOutputs};

/// `(t, c, n, s)` of each stage: expansion, output channels, blocks, the
/// first block's stride.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const STEM: usize = 32;
const LAST: usize = 1280;
const DROPOUT: f32 = 0.2;
/// The stages after which a `feat` tap is taken.
const TAPPED: [usize; 4] = [1, 2, 4, 6];

struct InvertedResidual {
    /// Expand (absent when t = 1) and depthwise, each followed by ReLU6.
    activated: Vec<ConvBn>,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    fn new(cin: usize, cout: usize, stride: usize, t: usize, vb: VarBuilder) -> Result<Self> {
        let (vb, hidden) = (vb.pp("conv"), cin * t);
        let mut activated = Vec::new();
        if t != 1 {
            let s = vb.pp(0);
            activated.push(ConvBn::new(
                cin,
                hidden,
                Conv2dConfig::new(1, 1, 0),
                s.pp(0),
                s.pp(1),
            )?);
        }
        let s = vb.pp(activated.len());
        let depthwise = Conv2dConfig::new(3, stride, 1).with_groups(hidden);
        activated.push(ConvBn::new(hidden, hidden, depthwise, s.pp(0), s.pp(1))?);
        let k = activated.len();
        let project = ConvBn::new(
            hidden,
            cout,
            Conv2dConfig::new(1, 1, 0),
            vb.pp(k),
            vb.pp(k + 1),
        )?;
        Ok(Self {
            activated,
            project,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for c in &self.activated {
            h = relu6(&c.forward(&h, mode)?)?;
        }
        let out = self.project.forward(&h, mode)?;
        match self.residual {
            true => add(x, &out),
            false => Ok(out),
        }
    }
}

pub struct TvMobileNetV2 {
    stem: ConvBn,
    stages: Vec<Vec<InvertedResidual>>,
    last: ConvBn,
    dropout: Dropout,
    classifier: Linear,
}

impl TvMobileNetV2 {
    pub fn new(config: &ArchConfig, vb: VarBuilder) -> Result<Self> {
        let features = vb.pp("features");
        let s = features.pp(0);
        let stem = ConvBn::new(
            config.input_shape[0],
            STEM,
            Conv2dConfig::new(3, 2, 1),
            s.pp(0),
            s.pp(1),
        )?;
        let (mut cin, mut index, mut stages) = (STEM, 1, Vec::new());
        for &(t, cout, n, stride) in &STAGES {
            let mut stage = Vec::new();
            for b in 0..n {
                let s = if b == 0 { stride } else { 1 };
                stage.push(InvertedResidual::new(cin, cout, s, t, features.pp(index))?);
                (cin, index) = (cout, index + 1);
            }
            stages.push(stage);
        }
        let s = features.pp(index);
        let last = ConvBn::new(cin, LAST, Conv2dConfig::new(1, 1, 0), s.pp(0), s.pp(1))?;
        let head = vb.pp("classifier");
        let init = (
            Init::Randn {
                mean: 0.0,
                stdev: 0.01,
            },
            Init::Const(0.0),
        );
        Ok(Self {
            stem,
            stages,
            last,
            dropout: Dropout::new(DROPOUT, &head.pp(0)),
            classifier: linear_with(LAST, config.num_classes, init, head.pp(1))?,
        })
    }

    pub fn taps(config: &ArchConfig) -> TapShapes {
        let [_, h, w] = config.input_shape;
        let mut side = (strided(h, 2), strided(w, 2));
        let mut feats = vec![[STEM, side.0, side.1]];
        for (i, &(_, c, _, stride)) in STAGES.iter().enumerate() {
            side = (strided(side.0, stride), strided(side.1, stride));
            if TAPPED.contains(&i) {
                feats.push([c, side.0, side.1]);
            }
        }
        zoo_taps(&feats, false, LAST)
    }
}

impl Network for TvMobileNetV2 {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = relu6(&self.stem.forward(images, mode)?)?;
        let mut feats = vec![x.clone()];
        for (i, stage) in self.stages.iter().enumerate() {
            for block in stage {
                x = block.forward(&x, mode)?;
            }
            if TAPPED.contains(&i) {
                feats.push(x.clone());
            }
        }
        let x = relu6(&self.last.forward(&x, mode)?)?;
        let pooled = global_avg_pool(&x)?;
        let logits = self
            .classifier
            .forward(&self.dropout.forward(&pooled, mode)?)?;
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
        name: "tv_mobilenet_v2",
        summary: "torchvision's mobilenet_v2 (width 1.0, ReLU6, features.N, classifier.1; any input from 32x32)",
        build: |config, vb| Ok(Box::new(TvMobileNetV2::new(config, vb)?)),
        taps: TvMobileNetV2::taps,
    }
}
