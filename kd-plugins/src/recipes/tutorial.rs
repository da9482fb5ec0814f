//! The whole tutorial as one recipe: the teacher with cross-entropy, then the
//! student with cross-entropy, CE + KD, CE + cosine and CE + FitNets, every
//! student from the same seeded initialisation.
use kd_core::registry::{RecipePair, RecipePlugin, RecipeRun};

/// A run with the tutorial's loss weights (0.75 CE + 0.25 the method's term).
pub const fn run(name: &'static str, trains_teacher: bool, method: &'static str) -> RecipeRun {
    RecipeRun {
        name,
        trains_teacher,
        method,
        params: &[],
        ce_weight: 0.75,
        distill_weight: 0.25,
        train_subset: None,
        epoch_scale: 1,
    }
}

fn runs() -> Vec<RecipeRun> {
    vec![
        run("teacher", true, "ce"),
        run("ce", false, "ce"),
        RecipeRun {
            params: &[("temperature", 2.0)],
            ..run("kd", false, "kd")
        },
        run("cosine", false, "cosine"),
        run("fitnets", false, "fitnets"),
    ]
}

kd_core::inventory::submit! {
    RecipePlugin {
        name: "tutorial",
        summary: "PyTorch's Knowledge Distillation Tutorial: DeepNN teacher, LightNN students with CE, KD (T=2), cosine and FitNets",
        pairs: &[RecipePair::new("deep_nn", "light_nn")],
        runs,
        default: true,
        settings: "",
    }
}
