//! Times kd's steps at the tutorial's batch of 128 CIFAR-10-shaped images and
//! prints milliseconds per step (median of N runs after a warm-up), one
//! `name ms` line each: what `kd-bench/compare` sets beside PyTorch.
//!
//! `cargo run --release -p kd-bench --bin kd-steps -- [RUNS] [ONLY]`: ONLY
//! times just the steps whose names start with it (for a profiler).

use kd_bench::*;
use kd_core::Teacher;

fn main() {
    let timer = Timer::from_args();
    let report = |name: &str, f: &mut dyn FnMut()| timer.report(name, f);
    let data = cifar_shaped_data();
    let b = batch(&data);
    let teacher = model("deep_nn");
    let student = model("light_nn");
    let mut opt_t = adam(&teacher);
    let mut opt_s = adam(&student);
    report("teacher_train_step", &mut || {
        train_step(&teacher, &mut opt_t, &b);
    });
    report("student_train_step", &mut || {
        train_step(&student, &mut opt_s, &b);
    });
    report("teacher_forward", &mut || {
        eval_forward(&teacher, &b.images);
    });
    report("kd_step", &mut || {
        let _ = teacher.outputs(&b).unwrap();
        train_step(&student, &mut opt_s, &b);
    });
}
