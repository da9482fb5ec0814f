//! Times kd's steps at the tutorial's batch of 128 CIFAR-10-shaped images and
//! prints milliseconds per step (median of N runs after a warm-up), one
//! `name ms` line each: what `kd-bench/compare` sets beside PyTorch.
//!
//! `cargo run --release -p kd-bench --bin kd-steps -- [RUNS]`

use kd_bench::*;
use kd_core::Teacher;

fn main() {
    kd_core::malloc::keep_freed_memory();
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let data = cifar_shaped_data();
    let b = batch(&data);
    let teacher = model("deep_nn");
    let student = model("light_nn");
    let mut opt_t = adam(&teacher);
    let mut opt_s = adam(&student);
    println!(
        "teacher_train_step {:.1}",
        median_ms(runs, || {
            train_step(&teacher, &mut opt_t, &b);
        })
    );
    println!(
        "student_train_step {:.1}",
        median_ms(runs, || {
            train_step(&student, &mut opt_s, &b);
        })
    );
    println!(
        "teacher_forward {:.1}",
        median_ms(runs, || {
            eval_forward(&teacher, &b.images);
        })
    );
    println!(
        "kd_step {:.1}",
        median_ms(runs, || {
            let _ = teacher.outputs(&b).unwrap();
            train_step(&student, &mut opt_s, &b);
        })
    );
}
