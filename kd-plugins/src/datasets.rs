//! The data sets kd knows, each with every way it can be had. The readers
//! are kd-train's (CIFAR binary batches, IDX files, parquet, image folders,
//! synthetic patterns);
//! a plugin crate adds a data set the same way.
use std::path::Path;

use kd_core::registry::{DatasetPlugin, HubSource, ImageFiles};
use kd_core::Result;
use kd_train::data::transform::Augment;
use kd_train::data::{self, Splits, SyntheticSpec};

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
        images: None,
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
        augment: Augment::None,
        offline_fallback: false,
    }
}

kd_core::inventory::submit! {
    DatasetPlugin {
        name: "folder",
        summary: "your own images: --data-dir DIR with DIR/train/CLASS/* and DIR/val/CLASS/* (or test/), PNG or JPEG, any size (resized and centre-cropped to --image-size, default the median), normalised by the training images' statistics or --mean/--std, decoded once into kd's cache",
        // Known only once the folder is read.
        shape: [0, 0, 0],
        classes: &[],
        normalization: None,
        read_dir: None,
        images: Some(ImageFiles {
            read: data::load_image_folder,
            files: data::image_folder_files,
        }),
        local: &[],
        hub: None,
        generate: None,
        default: false,
        augment: Augment::None,
        offline_fallback: false,
    }
}

/// CIFAR-100 with its fine or its coarse labels: the binary archive's files
/// with `--data-dir`, else the Hub's parquet files; the field's mean and std,
/// and its training transforms (RandomCrop 32 with padding 4, flip).
macro_rules! cifar100 {
    ($name:literal, $labels:ident, $classes:expr, $column:literal, $summary:literal) => {
        kd_core::inventory::submit! {
            DatasetPlugin {
                name: $name,
                summary: $summary,
                shape: [3, 32, 32],
                classes: &$classes,
                normalization: Some(data::cifar100_normalization),
                read_dir: Some(|dir| data::load_cifar100_dir(dir, $name, data::Cifar100Labels::$labels)),
                images: None,
                local: &[],
                hub: Some(HubSource {
                    repo: "uoft-cs/cifar100",
                    train: "cifar100/train-00000-of-00001.parquet",
                    test: "cifar100/test-00000-of-00001.parquet",
                    image_column: "img",
                    label_column: $column,
                }),
                generate: None,
                default: false,
                augment: Augment::CropFlip,
                offline_fallback: false,
            }
        }
    };
}

cifar100!(
    "cifar100",
    Fine,
    data::CIFAR100_CLASSES,
    "fine_label",
    "CIFAR-100: 50,000 + 10,000 colour images 3x32x32, 100 classes (the distillation zoo's data; crop + flip by default)"
);
cifar100!(
    "cifar100-coarse",
    Coarse,
    data::CIFAR100_COARSE_CLASSES,
    "coarse_label",
    "CIFAR-100 with its 20 superclasses as labels (the same images as cifar100)"
);

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
        images: None,
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
        augment: Augment::None,
        offline_fallback: false,
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
        images: None,
        local: &[],
        hub: None,
        generate: None,
        default: false,
        augment: Augment::None,
        offline_fallback: false,
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
        images: None,
        local: &[],
        hub: None,
        generate: Some(|shape| data::synthetic(&SyntheticSpec {
            shape: shape.unwrap_or(SyntheticSpec::DEFAULT.shape),
            ..SyntheticSpec::DEFAULT
        })),
        default: false,
        augment: Augment::None,
        offline_fallback: false,
    }
}

/// A real data set small enough to ship: the first 10,000 training images and
/// all 10,000 test images of Fashion-MNIST (MIT licence, Zalando SE; see
/// `data/fashion-mnist-sample/LICENSE`), compiled in behind the default
/// feature `embedded-sample`. `data/make-fashion-mnist-sample.py` made the files.
#[cfg(feature = "embedded-sample")]
mod sample {
    use std::path::PathBuf;

    use super::FASHION_CLASSES;
    use kd_core::registry::DatasetPlugin;
    use kd_core::Result;
    use kd_train::data::transform::Augment;
    use kd_train::data::{self, Splits};

    const NAME: &str = "fashion-mnist-sample";

    /// A file of the sample: its pieces (the script cuts them under 2 MiB), joined.
    macro_rules! embedded {
        ($file:literal: $($piece:literal),+) => {
            (
                PathBuf::from(concat!("<", "fashion-mnist-sample", ">/", $file)),
                [$(include_bytes!(concat!("../data/fashion-mnist-sample/", $file, ".", $piece)) as &[u8]),+].concat(),
            )
        };
    }

    fn load(_shape: Option<[usize; 3]>) -> Result<Splits> {
        let files = [
            embedded!("train-images-idx3-ubyte.gz": "0", "1", "2"),
            embedded!("train-labels-idx1-ubyte.gz": "0"),
            embedded!("t10k-images-idx3-ubyte.gz": "0", "1", "2"),
            embedded!("t10k-labels-idx1-ubyte.gz": "0"),
        ];
        data::idx_splits(NAME, FASHION_CLASSES, &files)
    }

    kd_core::inventory::submit! {
        DatasetPlugin {
            name: NAME,
            summary: "Fashion-MNIST sample compiled into kd: 10,000 + 10,000 greyscale images 1x28x28, 10 clothing classes (Zalando SE, MIT licence); what --dataset auto uses offline",
            shape: [1, 28, 28],
            classes: FASHION_CLASSES,
            normalization: None,
            read_dir: None,
            images: None,
            local: &[],
            hub: None,
            generate: Some(load),
            default: false,
            augment: Augment::None,
            offline_fallback: true,
        }
    }
}
