//! Plain supervised training: cross-entropy only, no teacher. Also how a
//! teacher is trained.
use kd_core::loss::MethodContext;
use kd_core::registry::MethodPlugin;
use kd_core::{DistillLoss, Result};

fn build(_: &MethodContext) -> Result<Option<Box<dyn DistillLoss>>> {
    Ok(None)
}

kd_core::inventory::submit! {
    MethodPlugin {
        name: "ce",
        summary: "cross-entropy on the labels only, no teacher (trains teachers and the baseline student)",
        params: &[],
        teacher_taps: &[],
        needs_teacher: false,
        build,
    }
}
