//! Shared set-up for kd's benchmarks: the tutorial's networks at CIFAR-10
//! shape (and Fashion-MNIST's, where issue 16's targets are measured), a
//! batch of 128, and one optimizer step as the trainer takes it.
use kd_core::candle::{Device, Tensor};
use kd_core::loss::cross_entropy;
use kd_core::optim::{Adam, Optimizer};
use kd_core::{ArchConfig, Mode, Model, Student};
use kd_plugins as _;
use kd_train::data::{synthetic, Batch, Splits, SyntheticSpec};

pub const BATCH: usize = 128;

/// CIFAR-10's image shape (channels, height, width): the default.
pub const CIFAR: [usize; 3] = [3, 32, 32];
/// Fashion-MNIST's image shape.
pub const FASHION: [usize; 3] = [1, 28, 28];
/// The shapes `kd-steps` times, each with the prefix of its names (none for
/// CIFAR-10); `kd-bench/compare`'s `STEP_SHAPES` must list the same.
pub const STEP_SHAPES: [(&str, [usize; 3]); 2] = [("", CIFAR), ("fashion_", FASHION)];

pub fn cifar_shaped_data() -> Splits {
    shaped_data(CIFAR)
}

/// Two batches of random training images of `shape`, and one of test images.
pub fn shaped_data(shape: [usize; 3]) -> Splits {
    synthetic(&SyntheticSpec {
        train: BATCH * 2,
        test: BATCH,
        shape,
        classes: 10,
        seed: 0,
    })
    .unwrap()
}

pub fn model(arch: &str) -> Model {
    shaped_model(arch, CIFAR)
}

/// Network `arch` for images of `shape`, 10 classes.
pub fn shaped_model(arch: &str, shape: [usize; 3]) -> Model {
    Model::new(
        arch,
        ArchConfig {
            input_shape: shape,
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

/// The command line of the timing binaries, `[RUNS] [ONLY]`: how many timed
/// runs per figure (default 5), and a name prefix that selects what is timed
/// (for a profiler). Also sets up the allocator as `kd` does.
pub struct Timer {
    runs: usize,
    only: String,
}

impl Timer {
    pub fn from_args() -> Self {
        kd_core::malloc::keep_freed_memory();
        let mut args = std::env::args().skip(1);
        Self {
            runs: args.next().and_then(|s| s.parse().ok()).unwrap_or(5),
            only: args.next().unwrap_or_default(),
        }
    }

    /// Whether anything named `group...` may be timed: set-up for the
    /// others is skipped, so that it stays out of a profile.
    pub fn wants(&self, group: &str) -> bool {
        group.starts_with(&self.only) || self.only.starts_with(group)
    }

    /// Prints `name ms` (median of the runs) unless `name` is filtered out.
    pub fn report(&self, name: &str, f: &mut dyn FnMut()) {
        if name.starts_with(&self.only) {
            println!("{name} {:.1}", median_ms(self.runs, f));
        }
    }
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

/// One 3x3, padding-1 convolution of the tutorial's networks at batch 128.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub in_channels: usize,
    pub out_channels: usize,
    pub size: usize,
}

/// Every conv layer of DeepNN and LightNN at CIFAR-10 size (3 x 32 x 32),
/// then at Fashion-MNIST size (1 x 28 x 28), the data set issue 16's targets
/// are measured on.
pub const TUTORIAL_CONVS: [ConvShape; 12] = [
    ConvShape::new(3, 128, 32),
    ConvShape::new(128, 64, 32),
    ConvShape::new(64, 64, 16),
    ConvShape::new(64, 32, 16),
    ConvShape::new(3, 16, 32),
    ConvShape::new(16, 16, 16),
    ConvShape::new(1, 128, 28),
    ConvShape::new(128, 64, 28),
    ConvShape::new(64, 64, 14),
    ConvShape::new(64, 32, 14),
    ConvShape::new(1, 16, 28),
    ConvShape::new(16, 16, 14),
];

impl ConvShape {
    const fn new(in_channels: usize, out_channels: usize, size: usize) -> Self {
        Self {
            in_channels,
            out_channels,
            size,
        }
    }

    /// `conv_3_128_32`: the name `kd-ops` and `compare` print.
    pub fn key(&self) -> String {
        format!(
            "conv_{}_{}_{}",
            self.in_channels, self.out_channels, self.size
        )
    }

    /// The layer with its ReLU, with PyTorch's initialisation.
    pub fn layer(&self) -> kd_core::nn::Conv2d {
        let varmap = kd_core::candle_nn::VarMap::new();
        let vb =
            kd_core::nn::seeded::var_builder(&varmap, 0, kd_core::candle::DType::F32, &Device::Cpu);
        kd_core::nn::Conv2d::new(
            self.in_channels,
            self.out_channels,
            kd_core::nn::Conv2dConfig::SAME_3X3.with_relu(),
            vb,
        )
        .unwrap()
    }

    /// Whether the layer is a network's first, whose input is images (which
    /// need no gradient).
    pub fn holds_images(&self) -> bool {
        matches!(self.in_channels, 1 | 3)
    }

    /// A random batch; a gradient is tracked unless it holds input images
    /// (1 or 3 channels), as in the networks.
    pub fn input(&self) -> Tensor {
        let x = Tensor::randn(
            0f32,
            1.,
            (BATCH, self.in_channels, self.size, self.size),
            &Device::Cpu,
        )
        .unwrap();
        if self.holds_images() {
            x
        } else {
            kd_core::candle::Var::from_tensor(&x)
                .unwrap()
                .as_tensor()
                .clone()
        }
    }
}

/// The zoo's timed steps at batch [`ZOO_BATCH`] of 3x32x32 with 100 classes:
/// (name, architecture, whether a training step or an evaluation forward).
/// `kd-bench/compare --zoo` times the same in PyTorch.
pub const ZOO_STEPS: [(&str, &str, bool); 5] = [
    ("resnet8x4_train_step", "resnet8x4", true),
    ("resnet32x4_forward", "resnet32x4", false),
    ("wrn_16_2_train_step", "wrn_16_2", true),
    ("MobileNetV2_train_step", "MobileNetV2", true),
    ("ShuffleV2_train_step", "ShuffleV2", true),
];
pub const ZOO_BATCH: usize = 64;

/// Network `arch` of the zoo for 3x32x32 images and 100 classes.
pub fn zoo_model(arch: &str) -> Model {
    let config = ArchConfig {
        input_shape: CIFAR,
        num_classes: 100,
    };
    Model::new(arch, config, 42, &Device::Cpu).unwrap()
}

/// The CIFAR recipes' optimizer: SGD, momentum 0.9, weight decay 5e-4.
pub fn zoo_sgd(model: &Model) -> kd_core::optim::Sgd {
    let settings = kd_core::optim::OptimizerSettings {
        lr: 0.05,
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
        weight_decay: Some(5e-4),
    };
    kd_core::optim::Sgd::new(model.params(), &settings).unwrap()
}
