//! Shared set-up for kd's benchmarks: the tutorial's networks at CIFAR-10
//! shape, a batch of 128, and one optimizer step as the trainer takes it.
use kd_core::candle::{Device, Tensor};
use kd_core::data::{synthetic, Batch, Splits, SyntheticSpec};
use kd_core::loss::cross_entropy;
use kd_core::optim::Adam;
use kd_core::{ArchConfig, Mode, Model, Student};
use kd_plugins as _;

pub const BATCH: usize = 128;

pub fn cifar_shaped_data() -> Splits {
    synthetic(&SyntheticSpec {
        train: BATCH * 2,
        test: BATCH,
        shape: [3, 32, 32],
        classes: 10,
        seed: 0,
    })
    .unwrap()
}

pub fn model(arch: &str) -> Model {
    Model::new(
        arch,
        ArchConfig {
            input_shape: [3, 32, 32],
            num_classes: 10,
        },
        42,
        &Device::Cpu,
    )
    .unwrap()
}

pub fn batch(data: &Splits) -> Batch {
    data.train
        .batch(&(0..BATCH).collect::<Vec<_>>(), &Device::Cpu)
        .unwrap()
}

pub fn adam(model: &Model) -> Adam {
    let vars = model.varmap().all_vars();
    Adam::new(
        vars.into_iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        1e-3,
    )
    .unwrap()
}

/// One supervised step: forward in train mode, cross-entropy, backward, Adam.
pub fn train_step(model: &Model, adam: &mut Adam, batch: &Batch) -> f32 {
    let out = model
        .forward(&batch.images, Mode::Train { seed: 1 })
        .unwrap();
    let loss = cross_entropy(&out.logits, &batch.labels).unwrap();
    adam.step(&loss.backward().unwrap()).unwrap();
    loss.to_scalar::<f32>().unwrap()
}

pub fn eval_forward(model: &Model, images: &Tensor) -> Tensor {
    model.forward(images, Mode::Eval).unwrap().logits
}

/// Median wall time in milliseconds of `runs` calls of `f`, after one warm-up call.
pub fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let s = std::time::Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}
