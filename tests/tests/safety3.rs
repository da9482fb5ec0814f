//! Nothing lost, round three: kd's own files, metadata as input, paths that
//! are not UTF-8, batches of one, inputs that are not regular files, paths
//! that leave their place, terminals, and exit codes. One test per class.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs kd with a deadline: an input that blocks (a FIFO) fails the test
/// instead of hanging it. Returns (exit code, stderr).
fn kd_within(args: &[&str], dir: &Path, seconds: u64) -> (Option<i32>, String) {
    let mut child = Command::new(kd_bin())
        .args(args)
        .current_dir(dir)
        .env("KD_CACHE", dir.join("kd-cache"))
        .env("HF_HOME", dir.join("hf-home"))
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("kd {args:?} was still running after {seconds} s: it blocked on an input");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn files_kd_keeps_and_files_the_user_has_are_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec!["reproduce", "--epochs", "1", "--out", "run", "--quiet"];
    args.extend(DATA);
    ok(&args, d);
    // kd report into a folder that holds the user's own report.md.
    std::fs::create_dir(d.join("mine")).unwrap();
    std::fs::write(d.join("mine/report.md"), "my notes").unwrap();
    let err = fails(&["report", "run", "--out", "mine"], d, 1);
    assert!(
        err.contains("report.md") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("mine/report.md")).unwrap(),
        "my notes"
    );
    ok(&["report", "run", "--out", "mine", "--overwrite"], d);
    // Into the run it reads from: its report would be replaced by itself.
    let err = fails(&["report", "run", "--out", "run", "--overwrite"], d, 1);
    assert!(err.contains("also the"), "{err}");

    // Files inside the run folder are kd's own: checkpoints, best model, lock.
    std::fs::create_dir(d.join("s.run")).unwrap();
    for (flag, path) in [
        ("--out", "s.run/best.safetensors"),
        ("--metrics", "s.run/.kd-lock"),
    ] {
        let mut a = train(&["--run-dir", "s.run"]);
        if flag == "--out" {
            a.extend(["--out", path]);
        } else {
            a.extend(["--out", "s.safetensors", "--metrics", path]);
        }
        let err = fails(&a, d, 1);
        assert!(
            err.contains("inside the run folder"),
            "{flag} {path}: {err}"
        );
    }

    // The folders inside a reproduce run are kd's own: a link there would make
    // the resumed phase write its checkpoints elsewhere.
    std::fs::create_dir(d.join("elsewhere")).unwrap();
    std::fs::remove_file(d.join("run/seed-42/kd.safetensors")).unwrap();
    let _ = std::fs::remove_dir_all(d.join("run/seed-42/checkpoints"));
    std::os::unix::fs::symlink(d.join("elsewhere"), d.join("run/seed-42/checkpoints")).unwrap();
    let mut again = args.clone();
    again.push("--overwrite");
    for a in [&["reproduce", "--resume", "run", "-q"][..], &again] {
        let err = fails(a, d, 1);
        assert!(
            err.contains("checkpoints is a symbolic link"),
            "{a:?}: {err}"
        );
        assert_eq!(std::fs::read_dir(d.join("elsewhere")).unwrap().count(), 0);
    }

    // A dangling symbolic link at --out is the user's: not replaced unasked.
    std::os::unix::fs::symlink(d.join("gone"), d.join("link.safetensors")).unwrap();
    let err = fails(&train(&["--out", "link.safetensors"]), d, 1);
    assert!(err.contains("already exists"), "{err}");
    assert!(std::fs::symlink_metadata(d.join("link.safetensors"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_model_records_only_what_it_was_made_with() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    // --teacher without --method used to train plain cross-entropy in silence.
    let err = fails(
        &train(&[
            "--teacher",
            teacher.to_str().unwrap(),
            "--out",
            "s.safetensors",
        ]),
        dir.path(),
        2,
    );
    assert!(
        err.contains("does not distil") && err.contains("--method"),
        "{err}"
    );
    assert!(!dir.path().join("s.safetensors").exists());

    // Each phase's file records its own seed; on --resume, a file at a
    // phase's place that is another phase's model (here the teacher copied
    // over the KD student) is refused instead of being reported as the student.
    let d = dir.path();
    let mut args = vec![
        "reproduce",
        "--seeds",
        "3,4",
        "--epochs",
        "1",
        "--out",
        "run",
        "-q",
    ];
    args.extend(DATA);
    ok(&args, d);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("run/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        summary["seeds"],
        serde_json::json!([3, 4]),
        "--seeds 3,4 alone means seeds 3 and 4"
    );
    let meta = tensors(&d.join("run/seed-4/kd.safetensors")).1;
    let made = &meta["kd.run_config"];
    assert!(made.contains("seed = 4"), "{made}");
    // The tutorial's loss weights, which the KD phase trained with; the CE
    // phase, which has none, records none.
    assert!(
        made.contains("ce_weight = 0.75") && made.contains("distill_weight = 0.25"),
        "{made}"
    );
    let ce = tensors(&d.join("run/seed-4/ce.safetensors")).1;
    assert!(
        !ce["kd.run_config"].contains("ce_weight"),
        "{}",
        ce["kd.run_config"]
    );
    // settings.toml edited between the stop and the resume is noticed.
    let settings = std::fs::read_to_string(d.join("run/settings.toml")).unwrap();
    assert!(settings.contains("lr = 0.001"), "{settings}");
    std::fs::write(
        d.join("run/settings.toml"),
        settings.replace("lr = 0.001", "lr = 0.01"),
    )
    .unwrap();
    let err = fails(&["reproduce", "--resume", "run", "-q"], d, 1);
    assert!(
        err.contains("`lr` = 0.001") && err.contains("edited"),
        "{err}"
    );
    std::fs::write(d.join("run/settings.toml"), settings).unwrap();
    // Another seed's model of the same phase is refused by its seed.
    let kd4 = std::fs::read(d.join("run/seed-4/kd.safetensors")).unwrap();
    std::fs::copy(
        d.join("run/seed-3/kd.safetensors"),
        d.join("run/seed-4/kd.safetensors"),
    )
    .unwrap();
    let err = fails(&["reproduce", "--resume", "run", "-q"], d, 1);
    assert!(
        err.contains("seed-4/kd.safetensors is not this run's finished phase"),
        "{err}"
    );
    std::fs::write(d.join("run/seed-4/kd.safetensors"), kd4).unwrap();
    std::fs::copy(
        d.join("run/seed-3/teacher.safetensors"),
        d.join("run/seed-3/kd.safetensors"),
    )
    .unwrap();
    let err = fails(&["reproduce", "--resume", "run", "-q"], d, 1);
    assert!(
        err.contains("kd.safetensors is not this run's finished phase"),
        "{err}"
    );
}

#[test]
fn metadata_is_checked_like_a_flag() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = kd_core::weights::read(teacher).unwrap();
    let tensors: Vec<_> = file.tensors.clone().into_iter().collect();
    for (norm, says) in [
        (r#"{"mean":[0.5,0.5,0.5],"std":[0.0,0.5,0.5]}"#, "std"),
        (r#"{"mean":[0.5,0.5,0.5],"std":[-1.0,0.5,0.5]}"#, "std"),
        (r#"{"mean":[0.5,0.5],"std":[0.5,0.5]}"#, "input channel"),
    ] {
        let mut meta: std::collections::HashMap<_, _> = file.metadata.clone().into_iter().collect();
        meta.insert("kd.normalization".into(), norm.into());
        kd_core::weights::save(&d.join("m.safetensors"), &tensors, meta).unwrap();
        let mut args = vec!["eval", "--model", "m.safetensors"];
        args.extend(DATA);
        let err = fails(&args, d, 1);
        assert!(
            err.contains("kd.normalization") && err.contains(says),
            "{norm}: {err}"
        );
    }
}

#[test]
fn paths_that_are_not_utf8_are_refused_cleanly() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let out = std::ffi::OsStr::from_bytes(b"s\xff.safetensors");
    let o = Command::new(kd_bin())
        .args(train(&[]))
        .arg("--out")
        .arg(out)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not valid UTF-8") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn rkd_trains_when_the_last_batch_holds_one_image() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "train",
        "--arch",
        "light_nn",
        "--dataset",
        "synthetic",
        "--synthetic-shape",
        "3,16,16",
        "--train-subset",
        "129",
        "--test-subset",
        "64",
        "--batch-size",
        "128",
        "--epochs",
        "1",
        "--method",
        "rkd",
        "--teacher",
        teacher.to_str().unwrap(),
        "--out",
        "s.safetensors",
        "-q",
    ];
    ok(&args, dir.path());
    let file = kd_core::weights::read(&dir.path().join("s.safetensors")).unwrap();
    file.check_finite().unwrap();
}

#[test]
fn fifos_and_devices_are_refused_as_inputs_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(Command::new("mkfifo")
        .arg(d.join("pipe"))
        .status()
        .unwrap()
        .success());
    // A config file is read as flags: a bad one is a usage error.
    let cases: [(&[&str], i32); 4] = [
        (&["inspect", "/dev/zero"], 1),
        (&["inspect", "pipe"], 1),
        (&["eval", "--model", "pipe"], 1),
        (&["train", "--config", "pipe", "--out", "s.safetensors"], 2),
    ];
    for (args, want) in cases {
        let (code, err) = kd_within(args, d, 30);
        assert_eq!(code, Some(want), "{args:?}: {err}");
        assert!(err.contains("not a file"), "{args:?}: {err}");
    }
    let (code, err) = kd_within(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "pipe",
            "--out",
            "s.safetensors",
        ]),
        d,
        30,
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("a FIFO"), "{err}");
    // A data folder whose file is a FIFO is refused, not read until it blocks.
    std::fs::create_dir(d.join("cifar")).unwrap();
    for f in [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
    ] {
        std::fs::write(d.join(format!("cifar/{f}.bin")), vec![0u8; 3073]).unwrap();
    }
    assert!(Command::new("mkfifo")
        .arg(d.join("cifar/test_batch.bin"))
        .status()
        .unwrap()
        .success());
    let data = [
        "train",
        "--arch",
        "light_nn",
        "--dataset",
        "cifar10",
        "--data-dir",
        "cifar",
        "--out",
        "s.safetensors",
        "--quiet",
    ];
    let (code, err) = kd_within(&data, d, 30);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("test_batch.bin"), "{err}");
}

/// A resumed run records what made it: it cannot train fewer epochs than its
/// checkpoint holds, nor become another architecture, even with --force; and
/// a final model that cannot be written says the run finished and how to
/// write it without training again.
#[test]
fn a_resumed_run_is_the_run_it_continues() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        &train_args(&[
            "--epochs",
            "2",
            "--quiet",
            "--run-dir",
            "r.run",
            "--out",
            "s.safetensors",
        ]),
        d,
    );
    for extra in [&["--epochs", "1"][..], &["--epochs", "1", "--force"]] {
        let mut a = vec![
            "train",
            "--resume",
            "r.run",
            "--out",
            "s.safetensors",
            "--overwrite",
            "-q",
        ];
        a.extend(extra);
        let err = fails(&a, d, 1);
        assert!(
            err.contains("trained 2 epochs") && err.contains("--epochs 2"),
            "{err}"
        );
    }
    let err = fails(
        &[
            "train",
            "--resume",
            "r.run",
            "--arch",
            "deep_nn",
            "--force",
            "--out",
            "s.safetensors",
            "--overwrite",
            "-q",
        ],
        d,
        1,
    );
    assert!(
        err.contains("another architecture") && err.contains("deep_nn"),
        "{err}"
    );

    // The output's folder vanishes while the run trains: the run finishes,
    // the write fails, and resuming writes the model from the last checkpoint.
    std::fs::create_dir(d.join("out")).unwrap();
    let args = train_args(&[
        "--epochs",
        "15",
        "--quiet",
        "--run-dir",
        "w.run",
        "--out",
        "out/s.safetensors",
    ]);
    let child = Command::new(kd_bin())
        .args(&args)
        .current_dir(d)
        .env("KD_CACHE", d.join("kd-cache"))
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_dir(d.join("w.run"))
        .map(|e| {
            e.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "no checkpoint after 300 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_dir(d.join("out")).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("training finished") && err.contains("resume the run (--resume)"),
        "{err}"
    );
    std::fs::create_dir(d.join("out")).unwrap();
    ok(&["train", "--resume", "w.run", "-q"], d);
    assert!(d.join("out/s.safetensors").is_file());
}

#[test]
fn hub_names_stay_inside_the_cache_and_metadata_cannot_drive_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for flags in [
        ["--revision", "../../.."],
        ["--hub-repo", "o/.."],
        ["--hub-repo", "noslash"],
    ] {
        let mut args = vec![
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--out",
            "s.safetensors",
        ];
        args.extend(flags);
        let err = fails(&args, d, 2);
        assert!(err.contains(flags[0]), "{flags:?}: {err}");
    }
    assert!(
        !d.join("kd-cache").exists(),
        "nothing written for a refused name"
    );

    let (_, teacher) = teacher();
    let file = kd_core::weights::read(teacher).unwrap();
    let tensors: Vec<_> = file.tensors.clone().into_iter().collect();
    let mut meta: std::collections::HashMap<_, _> = file.metadata.clone().into_iter().collect();
    meta.insert("note".into(), "\u{1b}]0;pwned\u{7}\u{1b}[31mred".into());
    kd_core::weights::save(&d.join("m.safetensors"), &tensors, meta).unwrap();
    let shown = stdout(&ok(&["inspect", "m.safetensors"], d));
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown:?}"
    );
    assert!(shown.contains("\\u{1b}[31mred"), "{shown}");
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (flag, value) in [
        ("--arch", "lite_nn"),
        ("--method", "fitnet"),
        ("--dataset", "cifar11"),
    ] {
        let mut args = vec!["train", "--arch", "light_nn", "--out", "s.safetensors"];
        args.extend([flag, value]);
        let err = fails(&args, d, 2);
        assert!(err.contains(value), "{flag}: {err}");
    }
    fails(&["reproduce", "--recipe", "tutorail"], d, 2);
    std::fs::write(d.join("bad.toml"), "lr = nan\n").unwrap();
    fails(
        &["train", "--config", "bad.toml", "--out", "s.safetensors"],
        d,
        2,
    );
}

/// A fixture with labels that are not class indices, or no rows, is refused
/// as the fixture's fault (the method is not failed); a class without test
/// images shows n/a, not 0.00 %.
#[test]
fn bad_fixtures_are_the_fixtures_fault_and_empty_classes_are_not_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/methods/kd.safetensors"
    );
    let file = kd_core::weights::read(Path::new(src)).unwrap();
    let meta: std::collections::HashMap<_, _> = file.metadata.clone().into_iter().collect();
    let n = file.tensors["labels"].dim(0).unwrap();
    let dtype = file.tensors["labels"].dtype();
    for (labels, says) in [(vec![999i64; n], "999"), (vec![-1; n], "-1")] {
        let mut tensors = file.tensors.clone();
        let t = kd_core::candle::Tensor::new(labels, &kd_core::candle::Device::Cpu).unwrap();
        tensors.insert("labels".into(), t.to_dtype(dtype).unwrap());
        let tensors: Vec<_> = tensors.into_iter().collect();
        kd_core::weights::save(&d.join("f.safetensors"), &tensors, meta.clone()).unwrap();
        let err = fails(&["verify", "--fixture", "f.safetensors"], d, 1);
        assert!(
            err.contains("`labels` holds") && err.contains(says),
            "{err}"
        );
    }

    let (_, teacher) = teacher();
    let args = [
        "eval",
        "--model",
        teacher.to_str().unwrap(),
        "--dataset",
        "synthetic",
        "--synthetic-shape",
        "3,16,16",
        "--test-subset",
        "3",
    ];
    let shown = stdout(&ok(&args, d));
    assert!(shown.contains("n/a (no test image)"), "{shown}");
}
