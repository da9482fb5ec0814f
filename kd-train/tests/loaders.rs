//! Loaders read files written here in the real formats, and refuse bad ones clearly.
use std::io::Write;
use std::path::Path;

use kd_train::data::{
    load_cifar100_dir, load_cifar10_dir, load_idx_dir, read_idx_images, read_idx_labels,
    Cifar100Labels,
};

fn cifar_record(label: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend(std::iter::repeat_n(fill, 3072));
    r
}

fn write_cifar(dir: &Path, per_file: usize) {
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        let mut bytes = Vec::new();
        for i in 0..per_file {
            bytes.extend(cifar_record((i % 10) as u8, (i * 7) as u8));
        }
        std::fs::write(dir.join(f), bytes).unwrap();
    }
}

#[test]
fn cifar10_binary_records_load() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 4);
    let s = load_cifar10_dir(dir.path()).unwrap();
    assert_eq!(s.train.len(), 20);
    assert_eq!(s.test.len(), 4);
    assert_eq!(s.train.shape, [3, 32, 32]);
    assert_eq!(&s.train.labels[..4], &[0, 1, 2, 3]);
    assert_eq!(s.train.images[3072], 7, "second image's first red pixel");
    assert_eq!(s.train.normalization.mean, vec![0.485, 0.456, 0.406]);
    let b = s.train.batch(&[1], &kd_core::candle::Device::Cpu).unwrap();
    let v = b.images.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!((v[0] - (7.0 / 255.0 - 0.485) / 0.229).abs() < 1e-6);
}

#[test]
fn cifar10_truncated_file_and_bad_label_are_named() {
    let dir = tempfile::tempdir().unwrap();
    write_cifar(dir.path(), 2);
    let p = dir.path().join("data_batch_3.bin");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 100]).unwrap();
    let err = load_cifar10_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_3.bin") && err.contains("truncated"),
        "{err}"
    );

    write_cifar(dir.path(), 2);
    let mut bad = cifar_record(12, 0);
    bad.extend(cifar_record(1, 0));
    std::fs::write(dir.path().join("test_batch.bin"), bad).unwrap();
    let err = load_cifar10_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("test_batch.bin") && err.contains("label 12"),
        "{err}"
    );
}

#[test]
fn cifar10_missing_folder_lists_expected_files() {
    let dir = tempfile::tempdir().unwrap();
    let err = load_cifar10_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("data_batch_1.bin") && err.contains("test_batch.bin"),
        "{err}"
    );
}

fn idx_images(n: usize, h: usize, w: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, h, w] {
        b.extend((d as u32).to_be_bytes());
    }
    b.extend((0..n * h * w).map(|i| (i % 251) as u8));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_raw_and_gzipped_load_alike() {
    let classes = ["a", "b", "c"];
    let raw = tempfile::tempdir().unwrap();
    let zipped = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("train-images-idx3-ubyte", idx_images(6, 5, 4)),
        ("train-labels-idx1-ubyte", idx_labels(&[0, 1, 2, 0, 1, 2])),
        ("t10k-images-idx3-ubyte", idx_images(2, 5, 4)),
        ("t10k-labels-idx1-ubyte", idx_labels(&[2, 1])),
    ] {
        std::fs::write(raw.path().join(name), &bytes).unwrap();
        std::fs::write(zipped.path().join(format!("{name}.gz")), gz(&bytes)).unwrap();
    }
    let a = load_idx_dir(raw.path(), "t", &classes).unwrap();
    let b = load_idx_dir(zipped.path(), "t", &classes).unwrap();
    assert_eq!(a.train.images, b.train.images);
    assert_eq!(a.train.shape, [1, 5, 4]);
    assert_eq!(a.test.labels, vec![2, 1]);
    assert_eq!(a.train.normalization, b.train.normalization);
    let mean = a
        .train
        .images
        .iter()
        .map(|&v| v as f64 / 255.0)
        .sum::<f64>()
        / a.train.images.len() as f64;
    assert!((a.train.normalization.mean[0] as f64 - mean).abs() < 1e-5);
}

#[test]
fn idx_errors_name_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x-images");
    let mut bytes = idx_images(3, 4, 4);
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&p, &bytes).unwrap();
    let err = read_idx_images(&p).unwrap_err().to_string();
    assert!(
        err.contains("x-images") && err.contains("truncated"),
        "{err}"
    );

    let mut bytes = idx_images(1, 2, 2);
    bytes[3] = 9;
    std::fs::write(&p, &bytes).unwrap();
    let err = read_idx_images(&p).unwrap_err().to_string();
    assert!(err.contains("magic number"), "{err}");

    let l = dir.path().join("labels");
    std::fs::write(&l, &idx_labels(&[0, 1])[..9]).unwrap();
    assert!(read_idx_labels(&l)
        .unwrap_err()
        .to_string()
        .contains("promises 2 labels"));

    for (name, bytes) in [
        ("train-images-idx3-ubyte", idx_images(2, 2, 2)),
        ("train-labels-idx1-ubyte", idx_labels(&[0, 7])),
        ("t10k-images-idx3-ubyte", idx_images(1, 2, 2)),
        ("t10k-labels-idx1-ubyte", idx_labels(&[0])),
    ] {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let err = load_idx_dir(dir.path(), "t", &["a", "b"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("label 7") && err.contains("train-labels-idx1-ubyte"),
        "{err}"
    );
}

#[test]
fn subsets_and_shuffles_are_checked_and_seeded() {
    let s = kd_train::data::synthetic(&kd_train::data::SyntheticSpec {
        train: 50,
        test: 10,
        shape: [1, 8, 8],
        classes: 3,
        seed: 1,
    })
    .unwrap();
    assert_eq!(s.train.first(20).unwrap().len(), 20);
    let err = s.train.first(51).unwrap_err().to_string();
    assert!(err.contains("51") && err.contains("50"), "{err}");
    let a = s.train.batch_indices(16, Some((7, 0)));
    assert_eq!(a, s.train.batch_indices(16, Some((7, 0))));
    assert_ne!(a, s.train.batch_indices(16, Some((7, 1))));
    assert_eq!(
        a.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![16, 16, 16, 2]
    );
}

/// CIFAR-100's binary records: a coarse label byte, a fine label byte, the
/// pixels; fine labels or coarse ones; a truncated file or an impossible
/// label is named.
#[test]
fn cifar100_binary_records_load_with_fine_or_coarse_labels() {
    let dir = tempfile::tempdir().unwrap();
    let record = |coarse: u8, fine: u8, fill: u8| {
        let mut r = vec![coarse, fine];
        r.extend(std::iter::repeat_n(fill, 3072));
        r
    };
    let write = |name: &str, n: usize| {
        let bytes: Vec<u8> = (0..n)
            .flat_map(|i| record((i % 20) as u8, (i * 3 % 100) as u8, i as u8))
            .collect();
        std::fs::write(dir.path().join(name), bytes).unwrap();
    };
    write("train.bin", 30);
    write("test.bin", 10);
    let fine = load_cifar100_dir(dir.path(), "cifar100", Cifar100Labels::Fine).unwrap();
    assert_eq!(
        (fine.train.len(), fine.test.len(), fine.train.num_classes()),
        (30, 10, 100)
    );
    assert_eq!(&fine.train.labels[..3], &[0, 3, 6]);
    assert_eq!(fine.train.images[3072], 1, "second image's first pixel");
    assert_eq!(fine.train.normalization.mean, vec![0.5071, 0.4867, 0.4408]);
    let coarse = load_cifar100_dir(dir.path(), "cifar100-coarse", Cifar100Labels::Coarse).unwrap();
    assert_eq!(
        (coarse.train.num_classes(), coarse.train.labels[21]),
        (20, 1)
    );
    let bytes = std::fs::read(dir.path().join("test.bin")).unwrap();
    std::fs::write(dir.path().join("test.bin"), &bytes[..bytes.len() - 5]).unwrap();
    let err = load_cifar100_dir(dir.path(), "cifar100", Cifar100Labels::Fine)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test.bin") && err.contains("truncated"),
        "{err}"
    );
    std::fs::write(dir.path().join("test.bin"), record(3, 140, 0)).unwrap();
    let err = load_cifar100_dir(dir.path(), "cifar100", Cifar100Labels::Fine)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("record 0") && err.contains("fine 140"),
        "{err}"
    );
    std::fs::remove_file(dir.path().join("train.bin")).unwrap();
    let err = load_cifar100_dir(dir.path(), "cifar100", Cifar100Labels::Fine)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing train.bin"), "{err}");
}

/// A folder of images as torchvision's `ImageFolder` reads it: PNG and JPEG,
/// greyscale, RGB and RGBA, odd sizes, at the median size or the one asked
/// for; a truncated file is named, or skipped and left out when asked.
#[test]
fn an_image_folder_loads_any_sizes_and_kinds_and_names_a_bad_file() {
    use image::{GrayImage, RgbImage, RgbaImage};
    use kd_train::data::{image_folder_files, ImageOptions};
    let load_image_folder =
        |d: &std::path::Path| kd_train::data::load_image_folder(d, &ImageOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["train/cat", "train/dog", "val/cat", "val/dog"] {
        std::fs::create_dir_all(d.join(sub)).unwrap();
    }
    RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 200]))
        .save(d.join("train/cat/a.png"))
        .unwrap();
    GrayImage::from_fn(50, 60, |x, _| image::Luma([x as u8 * 5]))
        .save(d.join("train/cat/b.jpg"))
        .unwrap();
    RgbaImage::from_fn(33, 33, |x, y| image::Rgba([x as u8, y as u8, 9, 128]))
        .save(d.join("train/dog/c.png"))
        .unwrap();
    RgbImage::from_fn(17, 90, |x, _| image::Rgb([x as u8, 0, 0]))
        .save(d.join("val/cat/d.png"))
        .unwrap();
    GrayImage::from_fn(64, 64, |_, y| image::Luma([y as u8]))
        .save(d.join("val/dog/e.jpg"))
        .unwrap();
    let s = load_image_folder(d).unwrap();
    assert_eq!(s.train.classes, ["cat", "dog"]);
    // Shorter sides 30, 50, 33: the median 33, rounded to a multiple of 4.
    assert_eq!((s.train.shape, s.test.shape), ([3, 32, 32], [3, 32, 32]));
    assert_eq!(
        (s.train.labels.clone(), s.test.labels.clone()),
        (vec![0, 0, 1], vec![0, 1])
    );
    assert_eq!(s.train.normalization.mean.len(), 3);
    // A grey image becomes three equal planes.
    let plane = 32 * 32;
    let b = &s.train.images[3 * plane..3 * plane * 2];
    assert_eq!(&b[..plane], &b[plane..2 * plane]);
    let sized = |image_size, skip_bad_images| ImageOptions {
        image_size,
        skip_bad_images,
    };
    let big = kd_train::data::load_image_folder(d, &sized(Some(48), false)).unwrap();
    assert_eq!(
        (big.train.shape, big.test.shape),
        ([3, 48, 48], [3, 48, 48])
    );
    let err = kd_train::data::load_image_folder(d, &sized(Some(5000), false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--image-size 5000"), "{err}");
    assert_eq!(image_folder_files(d).unwrap().len(), 5);

    let bytes = std::fs::read(d.join("train/dog/c.png")).unwrap();
    std::fs::write(d.join("train/dog/c.png"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_image_folder(d).unwrap_err().to_string();
    assert!(
        err.contains("c.png") && err.contains("cannot be read as an image"),
        "{err}"
    );
    assert!(err.contains("--skip-bad-images"), "{err}");
    // Skipped, c.png leaves its class without images: refused, as an empty class is.
    let err = kd_train::data::load_image_folder(d, &sized(None, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dog holds no readable images"), "{err}");
    GrayImage::from_fn(36, 36, |x, y| image::Luma([(x * y) as u8]))
        .save(d.join("train/dog/f.jpg"))
        .unwrap();
    let skipped = kd_train::data::load_image_folder(d, &sized(None, true)).unwrap();
    assert_eq!(skipped.train.labels, vec![0, 0, 1], "c.png left out");
    std::fs::remove_file(d.join("train/dog/c.png")).unwrap();
    std::fs::remove_file(d.join("train/cat/a.png")).unwrap();
    std::fs::remove_file(d.join("val/cat/d.png")).unwrap();
    let grey = load_image_folder(d).unwrap();
    assert_eq!(
        grey.train.shape[0], 1,
        "every training image is grey: one channel"
    );
    // An empty class folder would shift the labels of every class after it.
    std::fs::create_dir_all(d.join("train/ant")).unwrap();
    for read in [
        image_folder_files(d).map(|_| ()),
        load_image_folder(d).map(|_| ()),
    ] {
        let err = read.unwrap_err().to_string();
        assert!(err.contains("ant holds no readable images"), "{err}");
    }
    std::fs::remove_dir(d.join("train/ant")).unwrap();
    std::fs::create_dir_all(d.join("val/bird")).unwrap();
    let err = load_image_folder(d).unwrap_err().to_string();
    assert!(err.contains("class `bird`"), "{err}");
}
