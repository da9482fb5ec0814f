//! The tutorial's teacher `DeepNN` and student `LightNN`, layer for layer, for
//! any input channels and size. Variable names are PyTorch's `state_dict`
//! keys (`features.0.weight`, ..., `classifier.3.bias`), so weights move
//! between kd and the tutorial's classes with `load_state_dict(strict=True)`.
//!
//! Taps: `features` (last conv block output, N x C x H x W) and `flat` (that,
//! flattened): what the tutorial's "modified" classes returned.
use std::collections::BTreeMap;

use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::{Linear, VarBuilder};
use kd_core::nn::{linear, max_pool2d, Conv2d, Dropout};
use kd_core::registry::ArchPlugin;
use kd_core::{ArchConfig, Mode, Network, Outputs, Result};

/// One entry of an `nn.Sequential` feature extractor.
#[derive(Debug, Clone, Copy)]
enum Layer {
    /// `nn.Conv2d(in, out, kernel_size=3, padding=1)`.
    Conv(usize),
    Relu,
    /// `nn.MaxPool2d(kernel_size=2, stride=2)`.
    Pool,
}
use Layer::*;

const DEEP_FEATURES: &[Layer] = &[
    Conv(128),
    Relu,
    Conv(64),
    Relu,
    Pool,
    Conv(64),
    Relu,
    Conv(32),
    Relu,
    Pool,
];
const LIGHT_FEATURES: &[Layer] = &[Conv(16), Relu, Pool, Conv(16), Relu, Pool];

enum Built {
    /// A convolution, with the ReLU that follows it fused in when `true`.
    Conv(Conv2d, bool),
    Relu,
    Pool,
}

/// A conv feature extractor followed by Linear -> ReLU -> Dropout(0.1) -> Linear.
pub struct TutorialCnn {
    features: Vec<Built>,
    hidden: Linear,
    dropout: Dropout,
    out: Linear,
}

impl TutorialCnn {
    fn new(spec: &[Layer], hidden: usize, config: &ArchConfig, vb: VarBuilder) -> Result<Self> {
        let [mut c, mut h, mut w] = config.input_shape;
        let mut features: Vec<Built> = Vec::with_capacity(spec.len());
        for (i, layer) in spec.iter().enumerate() {
            // A ReLU right after a convolution is fused into it; the index `i`
            // still counts it, so later layers keep PyTorch's names.
            if let (Relu, Some(Built::Conv(_, fused @ false))) = (layer, features.last_mut()) {
                *fused = true;
                continue;
            }
            features.push(match *layer {
                Conv(out) => {
                    let conv = Conv2d::new(c, out, 3, 1, 1, vb.pp("features").pp(i))?;
                    c = out;
                    Built::Conv(conv, false)
                }
                Relu => Built::Relu,
                Pool => {
                    (h, w) = (h / 2, w / 2);
                    Built::Pool
                }
            });
        }
        let flat = c * h * w;
        if flat == 0 {
            return Err(kd_core::Error::config(format!(
                "input shape {:?} is too small for this network: its pooling layers reduce it to nothing",
                config.input_shape
            )));
        }
        let classifier = vb.pp("classifier");
        Ok(Self {
            features,
            hidden: linear(flat, hidden, classifier.pp(0))?,
            dropout: Dropout::new(0.1, format!("{}classifier.2", vb.prefix())),
            out: linear(hidden, config.num_classes, classifier.pp(3))?,
        })
    }
}

impl Network for TutorialCnn {
    fn forward(&self, images: &Tensor, mode: Mode) -> Result<Outputs> {
        let mut x = images.clone();
        for layer in &self.features {
            x = match layer {
                Built::Conv(conv, false) => conv.forward(&x)?,
                Built::Conv(conv, true) => conv.forward_relu(&x)?,
                Built::Relu => kd_core::nn::relu(&x)?,
                Built::Pool => max_pool2d(&x, 2)?,
            };
        }
        let flat = x.flatten_from(1)?;
        let h = kd_core::nn::relu(&self.hidden.forward(&flat)?)?;
        let h = self.dropout.forward(&h, mode)?;
        let logits = self.out.forward(&h)?;
        let taps = BTreeMap::from([("features".to_string(), x), ("flat".to_string(), flat)]);
        Ok(Outputs { logits, taps })
    }
}

/// `features` (the last conv block's output) and `flat` (that, flattened) for
/// a feature extractor `spec` on `config`'s input.
fn taps(spec: &[Layer], config: &ArchConfig) -> kd_core::registry::TapShapes {
    let [mut c, mut h, mut w] = config.input_shape;
    for layer in spec {
        match *layer {
            Conv(out) => c = out,
            Pool => (h, w) = (h / 2, w / 2),
            Relu => {}
        }
    }
    vec![("features", vec![c, h, w]), ("flat", vec![c * h * w])]
}

fn deep_nn_taps(config: &ArchConfig) -> kd_core::registry::TapShapes {
    taps(DEEP_FEATURES, config)
}

fn light_nn_taps(config: &ArchConfig) -> kd_core::registry::TapShapes {
    taps(LIGHT_FEATURES, config)
}

fn deep_nn(config: &ArchConfig, vb: VarBuilder) -> Result<Box<dyn Network>> {
    Ok(Box::new(TutorialCnn::new(DEEP_FEATURES, 512, config, vb)?))
}

fn light_nn(config: &ArchConfig, vb: VarBuilder) -> Result<Box<dyn Network>> {
    Ok(Box::new(TutorialCnn::new(LIGHT_FEATURES, 256, config, vb)?))
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "deep_nn",
        summary: "the tutorial's teacher DeepNN: 4 conv layers (128-64-64-32), 2 max-pools, MLP 512 (1,186,986 parameters at 3x32x32)",
        build: deep_nn,
        taps: deep_nn_taps,
    }
}

kd_core::inventory::submit! {
    ArchPlugin {
        name: "light_nn",
        summary: "the tutorial's student LightNN: 2 conv layers (16-16), 2 max-pools, MLP 256 (267,738 parameters at 3x32x32)",
        build: light_nn,
        taps: light_nn_taps,
    }
}
