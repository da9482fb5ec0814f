//! The data sets kd knows, each with every way it can be had. The readers
//! are kd-core's (CIFAR-10 binary batches, IDX files, synthetic patterns);
//! a plugin crate adds a data set the same way.
use std::path::Path;

use kd_core::data::{self, Splits, SyntheticSpec};
use kd_core::registry::{DatasetPlugin, HubSource};
use kd_core::Result;

const FASHION_CLASSES: &[&str] = &[
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const DIGITS: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "cifar10",
        summary: "CIFAR-10: 50,000 + 10,000 colour images 3x32x32, 10 classes (the tutorial's data)",
        shape: [3, 32, 32],
        classes: &data::CIFAR10_CLASSES,
        normalization: Some(data::tutorial_normalization),
        read_dir: Some(data::load_cifar10_dir),
        local: &[],
        hub: Some(HubSource {
            repo: "uoft-cs/cifar10",
            train: "plain_text/train-00000-of-00001.parquet",
            test: "plain_text/test-00000-of-00001.parquet",
            image_column: "img",
            label_column: "label",
        }),
        generate: None,
        default: true,
    }
}

fn fashion_dir(dir: &Path) -> Result<Splits> {
    data::load_idx_dir(dir, "fashion-mnist", FASHION_CLASSES)
}

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "fashion-mnist",
        summary: "Fashion-MNIST: 60,000 + 10,000 greyscale images 1x28x28, 10 clothing classes",
        shape: [1, 28, 28],
        classes: FASHION_CLASSES,
        normalization: None,
        read_dir: Some(fashion_dir),
        // Debian's `dataset-fashion-mnist` package.
        local: &["/usr/share/datasets/fashion-mnist"],
        hub: Some(HubSource {
            repo: "zalando-datasets/fashion_mnist",
            train: "fashion_mnist/train-00000-of-00001.parquet",
            test: "fashion_mnist/test-00000-of-00001.parquet",
            image_column: "image",
            label_column: "label",
        }),
        generate: None,
        default: false,
    }
}

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "mnist",
        summary: "MNIST: 60,000 + 10,000 greyscale digits 1x28x28 (needs --data-dir with the IDX files)",
        shape: [1, 28, 28],
        classes: DIGITS,
        normalization: None,
        read_dir: Some(|dir| data::load_idx_dir(dir, "mnist", DIGITS)),
        local: &[],
        hub: None,
        generate: None,
        default: false,
    }
}

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "synthetic",
        summary: "seeded synthetic patterns, 2,000 + 500 images (shape: --synthetic-shape), 10 classes; for tests and demos",
        shape: SyntheticSpec::DEFAULT.shape,
        classes: data::SYNTHETIC_CLASSES,
        normalization: None,
        read_dir: None,
        local: &[],
        hub: None,
        generate: Some(|shape| data::synthetic(&SyntheticSpec {
            shape: shape.unwrap_or(SyntheticSpec::DEFAULT.shape),
            ..SyntheticSpec::DEFAULT
        })),
        default: false,
    }
}
