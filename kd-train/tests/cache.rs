//! The teacher-output cache serves exactly what the teacher computes, from
//! memory or from its file, and refuses files that are not its own.
use std::collections::BTreeMap;

use kd_core::candle::Device;
use kd_core::{Outputs, Result, Teacher};
use kd_train::cache::CachedTeacher;
use kd_train::data::{synthetic, Batch, SyntheticSpec};

/// A stand-in teacher: logits are the first pixels, the tap the whole image.
struct Echo;

impl Teacher for Echo {
    fn outputs(&self, batch: &Batch) -> Result<Outputs> {
        let flat = batch.images.flatten_from(1)?;
        Ok(Outputs {
            logits: flat.narrow(1, 0, 3)?,
            taps: BTreeMap::from([("image".to_string(), batch.images.clone())]),
        })
    }
}

fn bits(o: &Outputs) -> (Vec<f32>, Vec<f32>) {
    let v = |t: &kd_core::candle::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (v(&o.logits), v(o.tap("image").unwrap()))
}

#[test]
fn memory_and_file_serve_the_teachers_outputs_and_refuse_other_files() {
    let dev = Device::Cpu;
    // 300 samples: the cache's 256-image passes end in a partial batch.
    let data = synthetic(&SyntheticSpec {
        train: 300,
        test: 8,
        shape: [2, 5, 5],
        classes: 3,
        seed: 7,
    })
    .unwrap()
    .train;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let memory = CachedTeacher::build(&Echo, &data, &["image"], &dev, None).unwrap();
    let disk =
        CachedTeacher::build_on_disk(&Echo, &data, &["image"], &dev, None, &path, "k1").unwrap();
    assert_eq!(memory.bytes(), disk.bytes());
    for indices in [
        vec![0, 1, 2],
        vec![299, 3, 257, 256, 255],
        (0..300).rev().collect(),
    ] {
        let batch = data.batch(&indices, &dev).unwrap();
        let live = bits(&Echo.outputs(&batch).unwrap());
        assert_eq!(bits(&memory.outputs(&batch).unwrap()), live);
        assert_eq!(bits(&disk.outputs(&batch).unwrap()), live, "{indices:?}");
    }
    // Opened again later, by the key it was written with.
    let again = CachedTeacher::open(&path, "k1", 300, &["image"], &dev).unwrap();
    let batch = data.batch(&[5, 6], &dev).unwrap();
    assert_eq!(
        bits(&again.outputs(&batch).unwrap()),
        bits(&Echo.outputs(&batch).unwrap())
    );
    let refused = |key: &str, samples: usize, taps: &[&str]| {
        CachedTeacher::open(&path, key, samples, taps, &dev)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    assert!(refused("k2", 300, &["image"]).contains("another teacher or data set"));
    assert!(refused("k1", 299, &["image"]).contains("not 299 rows"));
    assert!(refused("k1", 300, &["features"]).contains("no `features` outputs"));
    // 4 KB overwritten inside the data, the length unchanged: caught by the checksum.
    let pristine = std::fs::read(&path).unwrap();
    let mut damaged = pristine.clone();
    let at = damaged.len() / 2;
    damaged[at..at + 4096].fill(0x3f);
    std::fs::write(&path, &damaged).unwrap();
    assert!(
        refused("k1", 300, &["image"]).contains("checksum"),
        "{}",
        refused("k1", 300, &["image"])
    );
    std::fs::write(&path, &pristine).unwrap();
    assert!(
        refused("k1", 300, &["image"]).is_empty(),
        "the pristine file opens"
    );
    // A stop asked for during the build: no cache file and no temporary file left.
    let stop = std::sync::atomic::AtomicBool::new(true);
    let stopped = dir.path().join("stopped.safetensors");
    let e =
        CachedTeacher::build_on_disk(&Echo, &data, &["image"], &dev, Some(&stop), &stopped, "k1")
            .err()
            .unwrap();
    assert!(matches!(e, kd_core::Error::Interrupted(_)), "{e}");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["c.safetensors".to_string()],
        "nothing else in the folder"
    );
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    assert!(
        !refused("k1", 300, &["image"]).is_empty(),
        "a truncated file is refused"
    );
}
