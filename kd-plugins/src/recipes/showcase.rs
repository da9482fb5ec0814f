//! Distillation where it pays, on data every machine has: a teacher trained
//! on all 10,000 training images of the embedded Fashion-MNIST sample, and a
//! student that sees only the first 1,000, trained with cross-entropy alone
//! and with Hinton's soft targets (T = 4, the CIFAR recipes' temperature, CE
//! and KD weighted 0.5 each), for four times the teacher's epochs.
//! Few labelled images are where soft targets carry the most: each one tells
//! the student how the teacher ranks every class, not just which is right
//! (Hinton et al. 2015, section 3, where a student trained on 3 % of the
//! data recovered most of the full model's accuracy from soft targets).
//! LightNN costs about a ninetieth of DeepNN's multiply-accumulates.
use kd_core::registry::{RecipePair, RecipePlugin, RecipeRun};

use super::tutorial::run;

/// The images the students see.
const STUDENT_IMAGES: Option<usize> = Some(1000);

fn runs() -> Vec<RecipeRun> {
    let student = |name, method| RecipeRun {
        train_subset: STUDENT_IMAGES,
        epoch_scale: 4,
        ..run(name, false, method)
    };
    vec![
        run("teacher", true, "ce"),
        student("ce", "ce"),
        RecipeRun {
            params: &[("temperature", 4.0)],
            ce_weight: 0.5,
            distill_weight: 0.5,
            ..student("kd", "kd")
        },
    ]
}

kd_core::inventory::submit! {
    RecipePlugin {
        name: "showcase",
        summary: "where distillation pays: DeepNN teacher on the 10,000-image Fashion-MNIST sample (10 epochs), LightNN students on its first 1,000 (40 epochs), CE against KD (T=4)",
        pairs: &[RecipePair::new("deep_nn", "light_nn")],
        runs,
        default: false,
        settings: r#"
dataset = "fashion-mnist-sample"
epochs = 10
batch_size = 32
eval_every = 5
"#,
    }
}
