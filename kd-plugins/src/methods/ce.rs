//! Plain supervised training: cross-entropy on the labels, no teacher. How
//! teachers and the baseline student are trained.
kd_core::inventory::submit! {
    kd_core::registry::MethodPlugin {
        name: "ce",
        summary: "cross-entropy on the labels only, no teacher (trains teachers and the baseline student)",
        params: &[],
        taps: &[],
        build: None,
        fixtures: &[],
    }
}
