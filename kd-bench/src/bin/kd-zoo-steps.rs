//! Times the zoo's steps ([`kd_bench::ZOO_STEPS`]: training steps with SGD,
//! and the resnet32x4 teacher's evaluation forward) at batch 64 of 3x32x32
//! with 100 classes, and prints one `name ms` line each (median of N runs
//! after a warm-up): what `kd-bench/compare --zoo` sets beside PyTorch.
//!
//! `cargo run --release -p kd-bench --bin kd-zoo-steps -- [RUNS] [ONLY]`
use kd_bench::*;
use kd_core::candle::{Device, Tensor};
use kd_core::loss::cross_entropy;
use kd_core::optim::Optimizer;
use kd_core::Mode;

fn main() {
    let timer = Timer::from_args();
    let images = Tensor::randn(0f32, 1.0, (ZOO_BATCH, 3, 32, 32), &Device::Cpu).unwrap();
    let labels: Vec<u32> = (0..ZOO_BATCH as u32).map(|i| i * 37 % 100).collect();
    let labels = Tensor::new(labels, &Device::Cpu).unwrap();
    for (name, arch, train) in ZOO_STEPS {
        if !timer.wants(name) {
            continue;
        }
        let model = zoo_model(arch);
        let mut sgd = zoo_sgd(&model);
        timer.report(name, &mut || {
            if train {
                let out = model.forward(&images, Mode::Train { seed: 1 }).unwrap();
                let loss = cross_entropy(&out.logits, &labels).unwrap();
                sgd.step(&loss.backward().unwrap()).unwrap();
            } else {
                model.forward(&images, Mode::Eval).unwrap();
            }
        });
    }
}
