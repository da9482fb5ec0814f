//! Property tests: every file loader takes arbitrary bytes without panicking,
//! and mutated valid files are either read or refused with an error.
use std::path::Path;

use proptest::prelude::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A valid safetensors file to mutate.
fn valid_safetensors() -> Vec<u8> {
    let data: Vec<u8> = (0..24u8).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &data).unwrap();
    safetensors::serialize(
        [("features.0.weight", view)],
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .unwrap()
}

fn valid_idx() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3];
    b.extend(0..18u8);
    b
}

// Case count: proptest's default (256), or PROPTEST_CASES.
proptest! {

    #[test]
    fn safetensors_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let dir = tempfile::tempdir().unwrap();
        let _ = kd_core::weights::read(&write(dir.path(), "x.safetensors", &bytes));
    }

    #[test]
    fn safetensors_loader_survives_mutations(pos in 0usize..200, value in any::<u8>(), cut in 0usize..200) {
        let mut bytes = valid_safetensors();
        let pos = pos % bytes.len();
        bytes[pos] = value;
        bytes.truncate(bytes.len() - cut.min(bytes.len()));
        let dir = tempfile::tempdir().unwrap();
        let _ = kd_core::weights::read(&write(dir.path(), "x.safetensors", &bytes));
    }

    #[test]
    fn idx_loaders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), pos in 0usize..34, value in any::<u8>()) {
        let dir = tempfile::tempdir().unwrap();
        let _ = kd_train::data::read_idx_images(&write(dir.path(), "a", &bytes));
        let _ = kd_train::data::read_idx_labels(&write(dir.path(), "b", &bytes));
        let mut idx = valid_idx();
        let p = pos % idx.len();
        idx[p] = value;
        let _ = kd_train::data::read_idx_images(&write(dir.path(), "c", &idx));
        // Huge dimensions in a header must not allocate or overflow.
        let mut huge = valid_idx();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        prop_assert!(kd_train::data::read_idx_images(&write(dir.path(), "d", &huge)).is_err());
    }

    #[test]
    fn cifar_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..8000)) {
        let dir = tempfile::tempdir().unwrap();
        for f in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"] {
            write(dir.path(), f, &bytes);
        }
        let _ = kd_train::data::load_cifar10_dir(dir.path());
    }

    #[test]
    fn parquet_loader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let dir = tempfile::tempdir().unwrap();
        let mut file = b"PAR1".to_vec();
        file.extend(&bytes);
        file.extend(b"PAR1");
        for (name, b) in [("a.parquet", &bytes), ("b.parquet", &file)] {
            let _ = kd_train::data::read_parquet_images(&write(dir.path(), name, b), "img", "label", [3, 32, 32], |_, _| {});
        }
    }
}
