//! Times kd's steps at the tutorial's batch of 128 images, CIFAR-10-shaped
//! and then Fashion-MNIST-shaped (names prefixed `fashion_`), and prints
//! milliseconds per step (median of N runs after a warm-up), one `name ms`
//! line each: what `kd-bench/compare` sets beside PyTorch.
//!
//! `cargo run --release -p kd-bench --bin kd-steps -- [RUNS] [ONLY]`: ONLY
//! times just the steps whose names start with it (for a profiler).

use kd_bench::*;
use kd_core::Teacher;

fn main() {
    let timer = Timer::from_args();
    let report = |name: &str, f: &mut dyn FnMut()| timer.report(name, f);
    for (prefix, shape) in STEP_SHAPES {
        let data = shaped_data(shape);
        let b = batch(&data);
        let teacher = shaped_model("deep_nn", shape);
        let student = shaped_model("light_nn", shape);
        let mut opt_t = adam(&teacher);
        let mut opt_s = adam(&student);
        report(&format!("{prefix}teacher_train_step"), &mut || {
            train_step(&teacher, &mut opt_t, &b);
        });
        report(&format!("{prefix}student_train_step"), &mut || {
            train_step(&student, &mut opt_s, &b);
        });
        report(&format!("{prefix}teacher_forward"), &mut || {
            eval_forward(&teacher, &b.images);
        });
        report(&format!("{prefix}kd_step"), &mut || {
            let _ = teacher.outputs(&b).unwrap();
            train_step(&student, &mut opt_s, &b);
        });
    }
}
