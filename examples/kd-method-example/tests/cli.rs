//! The example crate as its users meet it: its `kd-nst` binary lists, verifies
//! and trains with the crate's method beside the built-in ones.
use std::path::Path;
use std::process::{Command, Output};

fn kd(args: &[&str], dir: &Path) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_kd-nst"))
        .args(args)
        .current_dir(dir)
        .env("KD_CACHE", dir.join("kd-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("kd-nst runs");
    assert!(
        o.status.success(),
        "kd-nst {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

const DATA: &[&str] = &[
    "--dataset",
    "synthetic",
    "--synthetic-shape",
    "3,16,16",
    "--train-subset",
    "256",
    "--test-subset",
    "128",
    "--epochs",
    "1",
    "--quiet",
];

#[test]
fn lists_verifies_and_trains_with_the_crates_method() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let list = String::from_utf8(kd(&["list"], d).stdout).unwrap();
    assert!(
        list.contains("nst ") && list.contains("Neural Selectivity"),
        "{list}"
    );
    assert!(
        list.contains("kd ") && list.contains("fitnets"),
        "built-in methods too: {list}"
    );

    let verify =
        String::from_utf8(kd(&["verify", "--method", "nst", "--properties"], d).stdout).unwrap();
    let rows: Vec<&str> = verify.lines().filter(|l| l.starts_with("nst ")).collect();
    assert_eq!(
        rows.len(),
        2,
        "the fixture and the property checks: {verify}"
    );
    assert!(rows.iter().all(|r| r.ends_with("pass")), "{verify}");

    let mut teacher = vec!["train", "--arch", "deep_nn", "--out", "teacher.safetensors"];
    teacher.extend(DATA);
    kd(&teacher, d);
    let mut student = vec![
        "train",
        "--arch",
        "light_nn",
        "--method",
        "nst",
        "--teacher",
        "teacher.safetensors",
        "--out",
        "student.safetensors",
    ];
    student.extend(DATA);
    let out = String::from_utf8(kd(&student, d).stdout).unwrap();
    assert!(out.contains("Test accuracy:"), "{out}");
    let bytes = std::fs::read(d.join("student.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap_or_default();
    assert_eq!(meta.get("kd.method").map(String::as_str), Some("nst"));
}
