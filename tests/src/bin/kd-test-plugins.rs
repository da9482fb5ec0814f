//! `kd` with plugins that exist only for tests, registered from outside
//! kd-core and kd-plugins exactly as a user's crate would register them.
use kd_core::candle::Tensor;
use kd_core::functional::soft_kl;
use kd_core::loss::{MethodContext, Step};
use kd_core::registry::{MethodPlugin, ParamSpec};
use kd_core::{DistillLoss, Result};
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

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
