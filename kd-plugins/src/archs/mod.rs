pub mod mobilenet;
pub mod resnet;
pub mod resnetv2;
pub mod shufflenet;
pub mod tutorial;
pub mod tv_mobilenet_v2;
pub mod vgg;
pub mod wrn;

use std::collections::BTreeMap;

use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{BatchNorm2d, Conv2d, Conv2dConfig};
use kd_core::registry::TapShapes;
use kd_core::{Mode, Outputs, Result};

const FEAT: [&str; 5] = ["feat0", "feat1", "feat2", "feat3", "feat4"];
const PREACT: [&str; 5] = ["preact0", "preact1", "preact2", "preact3", "preact4"];

/// What the zoo's networks hand out, named as mdistiller's `feats`,
/// `preact_feats` and `pooled_feat`: each stage's output (`feat0`, ...), the
/// pre-activation of stages 1 and up (`preact1`, ...) where the original
/// exposes them, and `pooled`. `features` (the last stage's output) and
/// `flat` (the pooled features) name the same tensors as the tutorial's nets
/// do, so a method that reads "the last feature map" or "the pooled features"
/// works on any pair.
struct ZooOutputs {
    feats: Vec<Tensor>,
    preacts: Vec<Tensor>,
    pooled: Tensor,
}

impl ZooOutputs {
    fn with_logits(self, logits: Tensor) -> Outputs {
        let mut taps = BTreeMap::new();
        taps.insert(
            "features".to_string(),
            self.feats.last().cloned().expect("a stage"),
        );
        taps.insert("flat".to_string(), self.pooled.clone());
        taps.insert("pooled".to_string(), self.pooled);
        for (name, t) in FEAT.iter().zip(self.feats) {
            taps.insert(name.to_string(), t);
        }
        for (name, t) in PREACT[1..].iter().zip(self.preacts) {
            taps.insert(name.to_string(), t);
        }
        Outputs { logits, taps }
    }
}

/// The taps [`ZooOutputs`] hands out: each stage's shape, whether stages 1 and
/// up have pre-activations, and the pooled width.
fn zoo_taps(feats: &[[usize; 3]], preacts: bool, pooled: usize) -> TapShapes {
    let mut taps: TapShapes = FEAT
        .iter()
        .zip(feats)
        .map(|(n, s)| (*n, s.to_vec()))
        .collect();
    if preacts {
        taps.extend(
            PREACT[1..]
                .iter()
                .zip(&feats[1..])
                .map(|(n, s)| (*n, s.to_vec())),
        );
    }
    taps.push(("features", feats.last().expect("a stage").to_vec()));
    taps.push(("flat", vec![pooled]));
    taps.push(("pooled", vec![pooled]));
    taps.sort();
    taps
}

/// The side of a feature map after a 3x3 convolution with padding 1 and this stride.
fn strided(side: usize, stride: usize) -> usize {
    (side - 1) / stride + 1
}

/// A bias-free convolution and the BatchNorm after it, initialised as the
/// zoo's classes do (kaiming normal, fan out).
pub(crate) struct ConvBn {
    conv: Conv2d,
    bn: BatchNorm2d,
}

impl ConvBn {
    pub(crate) fn new(
        cin: usize,
        cout: usize,
        config: Conv2dConfig,
        conv: VarBuilder,
        bn: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            conv: Conv2d::new(
                cin,
                cout,
                config.without_bias().with_kaiming_fan_out(),
                conv,
            )?,
            bn: BatchNorm2d::new(cout, bn)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.bn.forward(&self.conv.forward(x)?, mode)
    }
}
