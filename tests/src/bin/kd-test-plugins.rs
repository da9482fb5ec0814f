//! `kd` with plugins that exist only for tests, registered from outside
//! kd-core and kd-plugins exactly as a user's crate would register them.
use std::collections::BTreeMap;

use kd_core::candle::{Module, Tensor};
use kd_core::candle_nn::{Linear, VarBuilder};
use kd_core::functional::soft_kl;
use kd_core::loss::{MethodContext, Step};
use kd_core::nn::linear;
use kd_core::registry::{ArchPlugin, MethodPlugin, ParamSpec};
use kd_core::{ArchConfig, DistillLoss, Mode, Network, Outputs, Result};
use kd_plugins as _;

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

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
