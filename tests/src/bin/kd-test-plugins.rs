//! `kd` with plugins that exist only for tests, registered from outside
//! kd-core and kd-plugins exactly as a user's crate would register them.
use std::collections::BTreeMap;

use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::VarBuilder;
use kd_core::functional::soft_kl;
use kd_core::loss::{MethodContext, Step};
use kd_core::nn::{linear, Linear};
use kd_core::registry::{ArchPlugin, DatasetPlugin, MethodPlugin, ParamSpec};
use kd_core::{ArchConfig, DistillLoss, Mode, Network, Outputs, Result};
use kd_plugins as _;
use kd_train::data::{Dataset, Normalization, Splits};

/// Hinton's loss with a classic mistake: the T² factor left out. `kd verify`
/// must catch it against the real method's fixture.
struct ForgotTSquared(f64);

impl DistillLoss for ForgotTSquared {
    fn loss(&self, step: &Step) -> Result<Tensor> {
        let t = self.0;
        Ok((soft_kl(&step.student.logits, &step.teacher.logits, t)? / (t * t))?)
    }
}

fn build(ctx: &MethodContext) -> Result<Box<dyn DistillLoss>> {
    Ok(Box::new(ForgotTSquared(ctx.param("temperature")?)))
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "kd_without_t2",
        summary: "test only: Hinton's KD without the T² factor (wrong on purpose)",
        params: &[ParamSpec::positive("temperature", 2.0, "softmax temperature T")],
        taps: &[],
        build: Some(build),
        fixtures: &[include_bytes!("../../fixtures/methods/kd.safetensors")],
    }
}

/// A one-hidden-layer perceptron: an architecture from outside kd-plugins.
struct Mlp {
    hidden: Linear,
    out: Linear,
}

impl Network for Mlp {
    fn forward(&self, images: &Tensor, _: Mode) -> Result<Outputs> {
        let flat = images.flatten_from(1)?;
        let hidden = self.hidden.forward(&flat)?.relu()?;
        let logits = self.out.forward(&hidden)?;
        Ok(Outputs {
            logits,
            taps: BTreeMap::from([("flat".to_string(), hidden)]),
        })
    }
}

fn mlp(config: &ArchConfig, vb: VarBuilder) -> Result<Box<dyn Network>> {
    let inputs: usize = config.input_shape.iter().product();
    Ok(Box::new(Mlp {
        hidden: linear(inputs, 32, vb.pp("hidden"))?,
        out: linear(32, config.num_classes, vb.pp("out"))?,
    }))
}

fn mlp_taps(_: &ArchConfig) -> kd_core::registry::TapShapes {
    vec![("flat", vec![32])]
}

kd_core::inventory::submit! {
    ArchPlugin { name: "test_mlp", summary: "test only: a one-hidden-layer perceptron", build: mlp, taps: mlp_taps }
}

/// Two classes of 1 x 8 x 8 images, horizontal or vertical stripes with a
/// seeded phase: a data set defined outside kd-core and kd-plugins.
fn stripes(shape: Option<[usize; 3]>) -> Result<Splits> {
    let [c, h, w] = shape.unwrap_or([1, 8, 8]);
    let make = |n: usize, offset: usize| -> Result<Dataset> {
        let mut images = Vec::with_capacity(n * c * h * w);
        let labels: Vec<u32> = (0..n).map(|i| ((i + offset) % 2) as u32).collect();
        for (i, &label) in labels.iter().enumerate() {
            let phase = (i * 7 + offset) % 4;
            for _ in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let along = if label == 0 { y } else { x };
                        images.push(if (along + phase) % 4 < 2 { 230 } else { 20 });
                    }
                }
            }
        }
        let classes = vec!["horizontal".to_string(), "vertical".to_string()];
        let norm = Normalization {
            mean: vec![0.5; c],
            std: vec![0.4; c],
        };
        Dataset::new("test_stripes", images, labels, [c, h, w], classes, norm)
    };
    Ok(Splits {
        train: make(256, 0)?,
        test: make(64, 1)?,
    })
}

use kd_train::data::transform::Augment;

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "test_stripes",
        summary: "horizontal or vertical stripes, 256 + 64 images 1x8x8 (a test data set)",
        shape: [1, 8, 8],
        classes: &["horizontal", "vertical"],
        normalization: None,
        read_dir: None,
        images: None,
        local: &[],
        hub: None,
        generate: Some(stripes),
        default: false,
        augment: Augment::None,
        offline_fallback: false,
    }
}

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
