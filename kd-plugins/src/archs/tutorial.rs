//! The tutorial's teacher `DeepNN` and student `LightNN`, layer for layer, for
//! any input channels and size. Variable names are PyTorch's `state_dict`
//! keys (`features.0.weight`, ..., `classifier.3.bias`): a layer's index in
//! the tutorial's `nn.Sequential` is its name, so weights move between kd and
//! the tutorial's classes with `load_state_dict(strict=True)`.
//!
//! Taps: `features` (last conv block output, N x C x H x W) and `flat` (that,
//! flattened): what the tutorial's "modified" classes returned.
use std::collections::BTreeMap;

use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::nn::{flatten, linear, relu, Conv2d, Conv2dConfig, Dropout, Linear};
use kd_core::registry::{ArchPlugin, TapShapes};
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

/// `nn.Conv2d(in, out, kernel_size=3, padding=1)` then `nn.ReLU()`.
const CONV_RELU: Conv2dConfig = Conv2dConfig::SAME_3X3.with_relu();
/// The same then `nn.MaxPool2d(2)`, fused into the convolution.
const CONV_RELU_POOL: Conv2dConfig = CONV_RELU.with_max_pool(2);

/// `nn.Sequential(Linear(flat, hidden), ReLU(), Dropout(0.1), Linear(hidden, classes))`.
struct Classifier {
    hidden: Linear,
    dropout: Dropout,
    out: Linear,
}

impl Classifier {
    fn new(flat: usize, hidden: usize, classes: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            hidden: linear(flat, hidden, vb.pp(0))?,
            dropout: Dropout::new(0.1, &vb.pp(2)),
            out: linear(hidden, classes, vb.pp(3))?,
        })
    }

    fn forward(&self, flat: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = relu(&self.hidden.forward(flat)?)?;
        Ok(self.out.forward(&self.dropout.forward(&h, mode)?)?)
    }
}

/// The logits and both taps from the conv features.
fn head(features: Tensor, classifier: &Classifier, mode: Mode) -> Result<Outputs> {
    let flat = flatten(&features)?;
    let logits = classifier.forward(&flat, mode)?;
    let taps = BTreeMap::from([("features".into(), features), ("flat".into(), flat)]);
    Ok(Outputs { logits, taps })
}

/// Both networks pool twice: the features are `channels` x H/4 x W/4.
fn tap_shapes(channels: usize, config: &ArchConfig) -> TapShapes {
    let [_, h, w] = config.input_shape;
    let (h, w) = (h / 4, w / 4);
    vec![
        ("features", vec![channels, h, w]),
        ("flat", vec![channels * h * w]),
    ]
}

fn flat_size(channels: usize, config: &ArchConfig) -> Result<usize> {
    let [_, h, w] = config.input_shape;
    match channels * (h / 4) * (w / 4) {
        0 => Err(kd_core::Error::config(format!(
            "input shape {:?} is too small for this network: its two 2x2 poolings reduce it to nothing (use at least 4x4)",
            config.input_shape
        ))),
        n => Ok(n),
    }
}

/// The teacher: conv 128, conv 64, pool, conv 64, conv 32, pool; MLP 512.
pub struct DeepNn {
    convs: [Conv2d; 4],
    classifier: Classifier,
}

impl DeepNn {
    pub fn new(config: &ArchConfig, vb: VarBuilder) -> Result<Self> {
        let f = vb.pp("features");
        let c = config.input_shape[0];
        Ok(Self {
            convs: [
                Conv2d::new(c, 128, CONV_RELU, f.pp(0))?,
                Conv2d::new(128, 64, CONV_RELU_POOL, f.pp(2))?,
                Conv2d::new(64, 64, CONV_RELU, f.pp(5))?,
                Conv2d::new(64, 32, CONV_RELU_POOL, f.pp(7))?,
            ],
            classifier: Classifier::new(
                flat_size(32, config)?,
                512,
                config.num_classes,
                vb.pp("classifier"),
            )?,
        })
    }
}

impl Network for DeepNn {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let [c1, c2, c3, c4] = &self.convs;
        let x = c2.forward(&c1.forward(images)?)?;
        let x = c4.forward(&c3.forward(&x)?)?;
        head(x, &self.classifier, mode)
    }
}

/// The student: conv 16, pool, conv 16, pool; MLP 256.
pub struct LightNn {
    convs: [Conv2d; 2],
    classifier: Classifier,
}

impl LightNn {
    pub fn new(config: &ArchConfig, vb: VarBuilder) -> Result<Self> {
        let f = vb.pp("features");
        let c = config.input_shape[0];
        Ok(Self {
            convs: [
                Conv2d::new(c, 16, CONV_RELU_POOL, f.pp(0))?,
                Conv2d::new(16, 16, CONV_RELU_POOL, f.pp(3))?,
            ],
            classifier: Classifier::new(
                flat_size(16, config)?,
                256,
                config.num_classes,
                vb.pp("classifier"),
            )?,
        })
    }
}

impl Network for LightNn {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let [c1, c2] = &self.convs;
        let x = c2.forward(&c1.forward(images)?)?;
        head(x, &self.classifier, mode)
    }
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "deep_nn",
        summary: "the tutorial's teacher DeepNN: 4 conv layers (128-64-64-32), 2 max-pools, MLP 512",
        build: |config, vb| Ok(Box::new(DeepNn::new(config, vb)?)),
        taps: |config| tap_shapes(32, config),
    }
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "light_nn",
        summary: "the tutorial's student LightNN: 2 conv layers (16-16), 2 max-pools, MLP 256",
        build: |config, vb| Ok(Box::new(LightNn::new(config, vb)?)),
        taps: |config| tap_shapes(16, config),
    }
}
