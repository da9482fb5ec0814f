//! `kd verify`: every built-in method passes against its PyTorch fixture, and
//! a deliberately wrong loss registered from outside fails with its errors shown.
mod common;

use std::process::Command;

use common::*;

#[test]
fn every_built_in_method_passes_its_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let out = stdout(&ok(&["verify"], dir.path()));
    for m in [
        "kd", "cosine", "fitnets", "dkd", "dist", "ls_kd", "at", "sp", "rkd", "pkt",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{m} ")))
            .unwrap_or_else(|| panic!("no row for {m}:\n{out}"));
        assert!(row.ends_with("pass"), "{row}\n{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn a_fixture_file_is_checked_against_the_method_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/methods/dkd.safetensors"
    );
    let out = stdout(&ok(
        &["verify", "--fixture", fixture, "--verbose"],
        dir.path(),
    ));
    assert!(
        out.contains("dkd ") && out.contains("grad student.logits"),
        "{out}"
    );
}

#[test]
fn kd_without_t_squared_fails_verify_with_its_errors_printed() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kd-test-plugins"))
        .args(["verify", "--method", "kd_without_t2"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("kd_without_t2"))
        .unwrap();
    assert!(row.ends_with("FAIL"), "{out}");
    // T = 2: the value and every gradient are a quarter of the reference's.
    assert!(out.contains("FAIL loss"), "{out}");
    assert!(out.contains("FAIL grad student.logits"), "{out}");
    assert!(err.contains("1 of 1 verifications failed"), "{err}");
}

/// An architecture, a method and a data set registered from outside kd-core
/// and kd-plugins (tests/src/bin/kd-test-plugins.rs) list, train and distil
/// through the CLI.
#[test]
fn plugins_registered_outside_the_workspace_crates_train_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(DATA);
        let o = Command::new(env!("CARGO_BIN_EXE_kd-test-plugins"))
            .args(&all)
            .current_dir(dir.path())
            .env("KD_CACHE", dir.path().join("kd-cache"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{all:?}: {}", stderr(&o));
        stdout(&o)
    };
    let list = stdout(
        &Command::new(env!("CARGO_BIN_EXE_kd-test-plugins"))
            .arg("list")
            .output()
            .unwrap(),
    );
    assert!(
        list.contains("test_mlp")
            && list.contains("kd_without_t2")
            && list.contains("test_stripes"),
        "{list}"
    );
    // The test data set trains the test architecture, and the model records it.
    let o = Command::new(env!("CARGO_BIN_EXE_kd-test-plugins"))
        .args([
            "train",
            "--arch",
            "test_mlp",
            "--dataset",
            "test_stripes",
            "--epochs",
            "3",
            "--lr",
            "0.01",
            "--out",
            "stripes.safetensors",
            "--quiet",
        ])
        .current_dir(dir.path())
        .env("KD_CACHE", dir.path().join("kd-cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        accuracy(&stdout(&o)) > 60.0,
        "stripes are learnable: {}",
        stdout(&o)
    );
    let (_, meta) = tensors(&dir.path().join("stripes.safetensors"));
    assert_eq!(meta["kd.dataset"], "test_stripes");
    assert!(meta["kd.classes"].contains("vertical"));
    run(&[
        "train",
        "--arch",
        "test_mlp",
        "--epochs",
        "1",
        "--out",
        "t.safetensors",
        "--quiet",
    ]);
    let out = run(&[
        "train",
        "--arch",
        "test_mlp",
        "--method",
        "kd_without_t2",
        "--teacher",
        "t.safetensors",
        "--epochs",
        "1",
        "--out",
        "s.safetensors",
        "--quiet",
    ]);
    assert!(out.contains("Test accuracy:"), "{out}");
    // A method reading a tap the architecture lacks is refused before training.
    let mut args = vec![
        "train",
        "--arch",
        "test_mlp",
        "--method",
        "fitnets",
        "--teacher",
        "t.safetensors",
        "--out",
        "f.safetensors",
    ];
    args.extend(DATA);
    let o = Command::new(env!("CARGO_BIN_EXE_kd-test-plugins"))
        .args(&args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("`fitnets`") && err.contains("`features`") && err.contains("`test_mlp`"),
        "{err}"
    );
    assert!(!dir.path().join("f.safetensors").exists());
    let (names, meta) = tensors(&dir.path().join("s.safetensors"));
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!(meta["kd.arch"], "test_mlp");
    assert_eq!(meta["kd.method"], "kd_without_t2");
}
