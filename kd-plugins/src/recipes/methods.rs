//! Every registered distillation method side by side: the tutorial's teacher
//! and CE student, then one student per method that has a loss, each with the
//! loss weights its reference training script uses. Methods from plugin
//! crates linked in join with weights 1 and 1.
use kd_core::registry::{self, RecipePair, RecipePlugin, RecipeRun};

use super::tutorial::run;

/// (method, CE weight, weight of the method's term). The tutorial's three keep
/// its 0.75 / 0.25; the others follow their reference scripts: RepDistiller's
/// `-r 1 -b β` for AT (1000), SP (3000), PKT (30000) and RKD (1); mdistiller's
/// CE 1 + DKD 1; DIST's CE 1 + DIST 1; logit standardisation's CE 0.1 + KD 9.
const WEIGHTS: &[(&str, f64, f64)] = &[
    ("kd", 0.75, 0.25),
    ("cosine", 0.75, 0.25),
    ("fitnets", 0.75, 0.25),
    ("dkd", 1.0, 1.0),
    ("dist", 1.0, 1.0),
    ("ls_kd", 0.1, 9.0),
    ("at", 1.0, 1000.0),
    ("sp", 1.0, 3000.0),
    ("rkd", 1.0, 1.0),
    ("pkt", 1.0, 30000.0),
];

fn runs() -> Vec<RecipeRun> {
    let mut runs = vec![run("teacher", true, "ce"), run("ce", false, "ce")];
    for m in registry::methods()
        .into_iter()
        .filter(|m| m.needs_teacher())
    {
        let (ce_weight, distill_weight) = WEIGHTS
            .iter()
            .find(|w| w.0 == m.name)
            .map_or((1.0, 1.0), |w| (w.1, w.2));
        runs.push(RecipeRun {
            ce_weight,
            distill_weight,
            ..run(m.name, false, m.name)
        });
    }
    runs
}

kd_core::inventory::submit! {
    RecipePlugin {
        name: "methods",
        summary: "every registered distillation method on the tutorial's networks, each with its reference loss weights, beside the CE student",
        pairs: &[RecipePair::new("deep_nn", "light_nn")],
        runs,
        default: false,
        settings: "",
    }
}
