//! Hub data sets: parquet files of PNG images, as the Hub stores them, read
//! from a Hub cache laid out as hf-hub lays it out, offline.
mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// Writes a parquet file in the Hub's layout: `img` {bytes, path} and `label`.
fn write_parquet(path: &Path, images: &[Vec<u8>], labels: &[i64]) {
    write_parquet_columns(path, images, &[("label", labels)]);
}

/// The same with integer label columns of these names (CIFAR-100's
/// `fine_label` and `coarse_label`).
fn write_parquet_columns(path: &Path, images: &[Vec<u8>], columns: &[(&str, &[i64])]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let labels: String = columns
        .iter()
        .map(|(name, _)| format!(" optional int64 {name};"))
        .collect();
    let schema = Arc::new(
        parse_message_type(&format!("message schema {{ optional group img {{ optional binary bytes; optional binary path (UTF8); }}{labels} }}")).unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer =
        SerializedFileWriter::new(std::fs::File::create(path).unwrap(), schema, props).unwrap();
    let mut rg = writer.next_row_group().unwrap();
    let n = images.len();
    let mut col = rg.next_column().unwrap().unwrap();
    let values: Vec<ByteArray> = images.iter().map(|b| ByteArray::from(b.clone())).collect();
    col.typed::<ByteArrayType>()
        .write_batch(&values, Some(&vec![2; n]), None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<ByteArrayType>()
        .write_batch(&[], Some(&vec![1; n]), None)
        .unwrap();
    col.close().unwrap();
    for (_, labels) in columns {
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(labels, Some(&vec![1; n]), None)
            .unwrap();
        col.close().unwrap();
    }
    rg.close().unwrap();
    writer.close().unwrap();
}

/// A tiny CIFAR-10 look-alike in a fake Hub cache under `dir/hf-home/hub`.
fn fake_hub(dir: &Path, repo: &str, train: (Vec<Vec<u8>>, Vec<i64>)) {
    let root = dir
        .join("hf-home/hub")
        .join(format!("datasets--{}", repo.replace('/', "--")));
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), COMMIT).unwrap();
    let snap = root.join("snapshots").join(COMMIT).join("plain_text");
    write_parquet(
        &snap.join("train-00000-of-00001.parquet"),
        &train.0,
        &train.1,
    );
    let test: Vec<Vec<u8>> = (0..10)
        .map(|i| png(32, 32, [i as u8 * 25, 0, 255 - i as u8 * 25]))
        .collect();
    write_parquet(
        &snap.join("test-00000-of-00001.parquet"),
        &test,
        &(0..10).collect::<Vec<_>>(),
    );
}

fn good_train() -> (Vec<Vec<u8>>, Vec<i64>) {
    let labels: Vec<i64> = (0..40).map(|i| i % 10).collect();
    let images = labels
        .iter()
        .map(|&l| png(32, 32, [l as u8 * 25, 0, 255 - l as u8 * 25]))
        .collect();
    (images, labels)
}

fn train_on_hub(dir: &Path, repo: &str, out: &str) -> std::process::Output {
    kd(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--hub-repo",
            repo,
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            out,
            "--quiet",
        ],
        dir,
    )
}

#[test]
fn cifar10_parquet_from_the_hub_cache_decodes_once_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    fake_hub(dir.path(), "kd-test/cifar-mini", good_train());
    let o = train_on_hub(dir.path(), "kd-test/cifar-mini", "s.safetensors");
    assert!(o.status.success(), "{}", stderr(&o));
    let (names, meta) = tensors(&dir.path().join("s.safetensors"));
    assert_eq!(names.len(), 8);
    assert_eq!(meta["kd.dataset"], "cifar10");
    let decoded = dir
        .path()
        .join("kd-cache/cifar10/kd-test--cifar-mini@main.safetensors");
    assert!(decoded.exists(), "a decoded copy is kept");
    // Without the Hub files, the decoded copy alone is enough.
    std::fs::remove_dir_all(dir.path().join("hf-home")).unwrap();
    let o = train_on_hub(dir.path(), "kd-test/cifar-mini", "again.safetensors");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_corrupt_png_or_a_wrong_size_is_reported_by_row() {
    let dir = tempfile::tempdir().unwrap();
    let (mut images, labels) = good_train();
    images[7] = b"\x89PNG not really".to_vec();
    fake_hub(dir.path(), "kd-test/corrupt", (images, labels.clone()));
    let err = stderr(&train_on_hub(
        dir.path(),
        "kd-test/corrupt",
        "s.safetensors",
    ));
    assert!(
        err.contains("row 7")
            && err.contains("not a valid PNG")
            && err.contains("train-00000-of-00001.parquet"),
        "{err}"
    );

    let (mut images, labels) = good_train();
    images[3] = png(28, 28, [1, 2, 3]);
    fake_hub(dir.path(), "kd-test/small", (images, labels));
    let err = stderr(&train_on_hub(dir.path(), "kd-test/small", "s.safetensors"));
    assert!(
        err.contains("row 3") && err.contains("28x28") && err.contains("32x32"),
        "{err}"
    );
    assert!(!dir.path().join("s.safetensors").exists());
}

#[test]
fn a_data_set_missing_offline_names_the_alternatives() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--hub-repo",
            "kd-test/absent",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("kd-test/absent") && err.contains("--data-dir") && err.contains("offline"),
        "{err}"
    );
}

/// A tiny CIFAR-100 look-alike in the Hub's layout (`cifar100/*.parquet`,
/// `img`, `fine_label`, `coarse_label`): the fine labels by default, the
/// coarse ones as `cifar100-coarse`, crop + flip as the default transforms.
#[test]
fn cifar100_parquet_reads_fine_or_coarse_labels_and_augments_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hf-home/hub/datasets--kd-test--c100");
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), COMMIT).unwrap();
    let snap = root.join("snapshots").join(COMMIT).join("cifar100");
    for (file, n) in [("train", 40), ("test", 20)] {
        let fine: Vec<i64> = (0..n).map(|i| (i * 7) % 100).collect();
        let coarse: Vec<i64> = fine.iter().map(|f| f % 20).collect();
        let images: Vec<Vec<u8>> = fine
            .iter()
            .map(|&l| png(32, 32, [l as u8 * 2, 9, 200]))
            .collect();
        write_parquet_columns(
            &snap.join(format!("{file}-00000-of-00001.parquet")),
            &images,
            &[("fine_label", &fine), ("coarse_label", &coarse)],
        );
    }
    for (dataset, classes) in [("cifar100", 100), ("cifar100-coarse", 20)] {
        let out = format!("{dataset}.safetensors");
        let args = [
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            dataset,
            "--hub-repo",
            "kd-test/c100",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            &out,
            "--quiet",
        ];
        ok(&args, dir.path());
        let (names, meta) = tensors(&dir.path().join(&out));
        let fc = names
            .iter()
            .find(|(n, _)| n == "classifier.3.weight")
            .unwrap();
        assert_eq!(fc.1[0], classes, "{dataset}");
        assert_eq!(meta["kd.dataset"], dataset);
        assert!(
            meta["kd.run_config"].contains("augment = \"crop-flip\""),
            "{}",
            meta["kd.run_config"]
        );
    }
    let classes: Vec<String> =
        serde_json::from_str(&tensors(&dir.path().join("cifar100.safetensors")).1["kd.classes"])
            .unwrap();
    assert_eq!(
        (classes[0].as_str(), classes[99].as_str()),
        ("apple", "worm")
    );
}
