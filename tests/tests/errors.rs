//! Every user error: a clear message, the right exit code, no file left behind or destroyed.
mod common;

use common::*;

#[test]
fn unknown_method_and_architecture_list_the_known_and_suggest_the_nearest() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &train_args(&["--method", "fitnet", "--out", "s.safetensors"]),
        dir.path(),
        2,
    );
    assert!(
        err.contains("unknown method `fitnet`")
            && err.contains("Did you mean `fitnets`")
            && err.contains("cosine"),
        "{err}"
    );
    let err = fails(
        &["train", "--arch", "lite_nn", "--out", "s.safetensors"],
        dir.path(),
        2,
    );
    assert!(
        err.contains("unknown architecture `lite_nn`") && err.contains("light_nn"),
        "{err}"
    );
    assert!(!dir.path().join("s.safetensors").exists());
}

#[test]
fn usage_errors_exit_with_2() {
    let dir = tempfile::tempdir().unwrap();
    fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--epochs",
            "many",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        2,
    );
    fails(&["train", "--out", "s.safetensors"], dir.path(), 2);
    fails(&["frobnicate"], dir.path(), 2);
}

#[test]
fn absurd_hyper_parameters_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    // Bad values of flags are usage errors (exit 2), named by their flag.
    for (flags, word) in [
        (vec!["--lr", "0"], "--lr"),
        (vec!["--lr", "-1"], "--lr"),
        (vec!["--lr", "inf"], "--lr"),
        (vec!["--epochs", "0"], "--epochs"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--ce-weight", "-1"], "--ce-weight"),
        (vec!["--device", "gpu"], "--device"),
        (vec!["--seed", "9223372036854775808"], "--seed"),
        (vec!["--train-subset", "0"], "--train-subset"),
        (vec!["--keep-checkpoints", "0"], "--keep-checkpoints"),
    ] {
        let mut args = train_args(&["--out", "s.safetensors"]);
        args.extend(flags);
        let err = fails(&args, dir.path(), 2);
        assert!(err.contains(word), "{word}: {err}");
    }
    // The same values from a config file: refused naming the key and its line.
    std::fs::write(
        dir.path().join("c.toml"),
        "arch = \"light_nn\"\n\nlr = -1\n",
    )
    .unwrap();
    let err = fails(
        &["train", "--config", "c.toml", "--out", "s.safetensors"],
        dir.path(),
        2,
    );
    assert!(err.contains("c.toml, line 3: `lr`"), "{err}");
    std::fs::write(dir.path().join("c.toml"), "epochs = \"ten\"\n").unwrap();
    let err = fails(
        &["train", "--config", "c.toml", "--out", "s.safetensors"],
        dir.path(),
        2,
    );
    assert!(
        err.contains("line 1: `epochs`") && err.contains("not a whole number"),
        "{err}"
    );
    // Nothing to learn: both loss weights 0 for a method that distils.
    let (_, kd_teacher) = common::teacher();
    let err = fails(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            kd_teacher.to_str().unwrap(),
            "--ce-weight",
            "0",
            "--distill-weight",
            "0",
            "--out",
            "s.safetensors",
        ]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("both 0") && err.contains("nothing would be learnt"),
        "{err}"
    );
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "synthetic",
            "--train-subset",
            "999999",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("--train-subset 999999: the training split") && err.contains("2000"),
        "{err}"
    );
    let (_, teacher) = teacher();
    let err = fails(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            teacher.to_str().unwrap(),
            "--param",
            "temperature=0",
            "--out",
            "s.safetensors",
        ]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("temperature") && err.contains("greater than 0"),
        "{err}"
    );
    let err = fails(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            teacher.to_str().unwrap(),
            "--param",
            "temp=3",
            "--out",
            "s.safetensors",
        ]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("no hyper-parameter `temp`") && err.contains("temperature"),
        "{err}"
    );
    assert!(!dir.path().join("s.safetensors").exists());
}

#[test]
fn weights_for_another_architecture_list_each_mismatch_and_leave_the_output_alone() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.safetensors"), b"precious").unwrap();
    let before = sha(&dir.path().join("s.safetensors"));
    let err = fails(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            teacher.to_str().unwrap(),
            "--teacher-arch",
            "light_nn",
            "--out",
            "s.safetensors",
            "--overwrite",
        ]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("does not fit architecture `light_nn`")
            && err.contains("unexpected features.7.weight")
            && err.contains("features.3.weight"),
        "{err}"
    );
    assert_eq!(
        sha(&dir.path().join("s.safetensors")),
        before,
        "the existing file is untouched"
    );
}

#[test]
fn corrupt_and_truncated_weights_are_named() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(teacher).unwrap();
    std::fs::write(
        dir.path().join("cut.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(dir.path().join("huge.safetensors"), &huge).unwrap();
    std::fs::write(dir.path().join("text.safetensors"), b"hello").unwrap();
    for f in ["cut.safetensors", "huge.safetensors", "text.safetensors"] {
        let before = sha(&dir.path().join(f));
        let err = fails(&["inspect", f], dir.path(), 1);
        assert!(
            err.contains(f)
                && (err.contains("not a valid safetensors file")
                    || err.contains("a text file, not a safetensors file")),
            "{f}: {err}"
        );
        let err = fails(
            &[
                "eval",
                "--model",
                f,
                "--synthetic-shape",
                "3,16,16",
                "--test-subset",
                "10",
            ],
            dir.path(),
            1,
        );
        assert!(err.contains(f), "{f}: {err}");
        assert_eq!(sha(&dir.path().join(f)), before);
    }
    let err = fails(&["inspect", "absent.safetensors"], dir.path(), 1);
    assert!(err.contains("absent.safetensors"), "{err}");
}

#[test]
fn a_plain_state_dict_needs_its_architecture_named() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    // Strip kd's metadata, as `safetensors.torch.save_file(model.state_dict(), f)` would write it.
    let bytes = std::fs::read(teacher).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let plain = safetensors::serialize(
        st.tensors(),
        Some([("format".to_string(), "pt".to_string())].into()),
    )
    .unwrap();
    std::fs::write(dir.path().join("plain.safetensors"), plain).unwrap();
    let err = fails(
        &[
            "eval",
            "--model",
            "plain.safetensors",
            "--synthetic-shape",
            "3,16,16",
            "--dataset",
            "synthetic",
        ],
        dir.path(),
        1,
    );
    assert!(err.contains("--arch"), "{err}");
    ok(
        &[
            "eval",
            "--model",
            "plain.safetensors",
            "--arch",
            "deep_nn",
            "--dataset",
            "synthetic",
            "--synthetic-shape",
            "3,16,16",
            "--test-subset",
            "20",
        ],
        dir.path(),
    );
    let err = fails(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            "plain.safetensors",
            "--out",
            "s.safetensors",
        ]),
        dir.path(),
        1,
    );
    assert!(err.contains("--teacher-arch"), "{err}");
    ok(
        &train_args(&[
            "--method",
            "kd",
            "--teacher",
            "plain.safetensors",
            "--teacher-arch",
            "deep_nn",
            "--epochs",
            "1",
            "--out",
            "s.safetensors",
            "--quiet",
        ]),
        dir.path(),
    );
}

#[test]
fn wrong_input_shape_for_the_model_is_refused() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &[
            "eval",
            "--model",
            teacher.to_str().unwrap(),
            "--dataset",
            "synthetic",
            "--synthetic-shape",
            "1,16,16",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("[3, 16, 16]") && err.contains("[1, 16, 16]"),
        "{err}"
    );
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--method",
            "kd",
            "--teacher",
            teacher.to_str().unwrap(),
            "--dataset",
            "synthetic",
            "--synthetic-shape",
            "3,12,12",
            "--train-subset",
            "32",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(err.contains("teacher takes images of [3, 16, 16]"), "{err}");
}

#[test]
fn missing_data_folder_says_which_files_were_expected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--data-dir",
            "empty",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("data_batch_1.bin") && err.contains("test_batch.bin"),
        "{err}"
    );
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "mnist",
            "--data-dir",
            "empty",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(err.contains("train-images-idx3-ubyte"), "{err}");
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "imagenet",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        2,
    );
    assert!(
        err.contains("unknown data set `imagenet`") && err.contains("cifar10"),
        "{err}"
    );
}

#[test]
fn an_output_in_a_missing_folder_fails_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &train_args(&["--out", "no/such/dir/s.safetensors"]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("does not exist") && err.contains("no/such/dir"),
        "{err}"
    );
    assert!(!dir.path().join("no").exists());
}

#[test]
fn a_distillation_method_without_teacher_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &train_args(&["--method", "cosine", "--out", "s.safetensors"]),
        dir.path(),
        2,
    );
    assert!(err.contains("--teacher"), "{err}");
}

#[test]
fn hub_references_resolve_from_the_cache_offline_and_say_what_is_missing() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    // Lay out a Hub cache as hf-hub does: refs/main -> commit, snapshots/<commit>/FILE -> ../../blobs/<hash>.
    let repo = dir
        .path()
        .join("hf-home/hub/models--kd-test--tutorial-teacher");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(commit)).unwrap();
    std::fs::write(repo.join("refs/main"), commit).unwrap();
    std::fs::copy(teacher, repo.join("blobs/abc123")).unwrap();
    std::os::unix::fs::symlink(
        "../../blobs/abc123",
        repo.join("snapshots")
            .join(commit)
            .join("teacher.safetensors"),
    )
    .unwrap();
    let out = stdout(&ok(
        &[
            "inspect",
            "hf://kd-test/tutorial-teacher/teacher.safetensors",
        ],
        dir.path(),
    ));
    assert!(out.contains("features.0.weight"), "{out}");
    let at_commit = format!("hf://kd-test/tutorial-teacher@{commit}/teacher.safetensors");
    ok(&["inspect", &at_commit], dir.path());
    let err = fails(
        &[
            "inspect",
            "hf://kd-test/tutorial-teacher/student.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("student.safetensors")
            && err.contains("kd-test/tutorial-teacher")
            && err.contains("offline"),
        "{err}"
    );
    let err = fails(&["inspect", "hf://only-owner"], dir.path(), 1);
    assert!(err.contains("hf://OWNER/REPO"), "{err}");
}

#[test]
fn a_full_disk_leaves_the_old_file_and_no_half_written_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("s.safetensors"), b"the previous model").unwrap();
    let before = sha(&dir.path().join("s.safetensors"));
    // A 64 KiB file-size limit stands in for a full disk: the student (~1 MB) cannot be written.
    let mut cmd = vec![env!("CARGO_BIN_EXE_kd-e2e").to_string()];
    cmd.extend(
        train_args(&["--epochs", "1", "--out", "s.safetensors", "--overwrite"])
            .iter()
            .map(|s| s.to_string()),
    );
    let o = std::process::Command::new("bash")
        .args(["-c", "ulimit -f 64; exec \"$@\"", "kd"])
        .args(&cmd)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write")
            || err.contains("cannot replace")
            || err.contains("File too large"),
        "{err}"
    );
    assert_eq!(
        sha(&dir.path().join("s.safetensors")),
        before,
        "the old file is untouched"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp") || n.starts_with(".kd-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no half-written files: {leftovers:?}");
}

/// A safetensors file with a hand-written header.
fn raw_safetensors(header: &str, data_len: usize) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(vec![0u8; data_len]);
    out
}

#[test]
fn unknown_dtypes_and_overlapping_offsets_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "dtype.safetensors",
            r#"{"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}}"#,
            8,
            "unknown dtype",
        ),
        (
            "overlap.safetensors",
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            12,
            "overlap",
        ),
        (
            "short.safetensors",
            r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
            8,
            "not a valid safetensors file",
        ),
    ];
    for (name, header, len, word) in cases {
        std::fs::write(dir.path().join(name), raw_safetensors(header, len)).unwrap();
        let before = sha(&dir.path().join(name));
        let err = fails(&["inspect", name], dir.path(), 1);
        assert!(err.contains(name) && err.contains(word), "{name}: {err}");
        assert_eq!(sha(&dir.path().join(name)), before);
    }
}

#[test]
fn bad_data_files_are_named_and_left_as_they_were() {
    let dir = tempfile::tempdir().unwrap();
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    let record = |label: u8| {
        let mut r = vec![label];
        r.extend(vec![9u8; 3072]);
        r
    };
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(cifar.join(f), [record(1), record(2)].concat()).unwrap();
    }
    // Truncated.
    std::fs::write(cifar.join("data_batch_3.bin"), &record(1)[..2000]).unwrap();
    let before = sha(&cifar.join("data_batch_3.bin"));
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--data-dir",
            "cifar",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("data_batch_3.bin") && err.contains("truncated"),
        "{err}"
    );
    assert_eq!(sha(&cifar.join("data_batch_3.bin")), before);
    // A label outside the ten classes.
    std::fs::write(
        cifar.join("data_batch_3.bin"),
        [record(1), record(11)].concat(),
    )
    .unwrap();
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "cifar10",
            "--data-dir",
            "cifar",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(err.contains("label 11"), "{err}");
    // An IDX file of the wrong kind where MNIST images belong.
    let mnist = dir.path().join("mnist");
    std::fs::create_dir(&mnist).unwrap();
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(
            mnist.join(f),
            [vec![0u8, 0, 8, 1, 0, 0, 0, 12], vec![3u8; 12]].concat(),
        )
        .unwrap();
    }
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "mnist",
            "--data-dir",
            "mnist",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("magic number"),
        "{err}"
    );
    // An empty subset.
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "synthetic",
            "--test-subset",
            "99999999",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("--test-subset 99999999: the test split"),
        "{err}"
    );
    assert!(!dir.path().join("s.safetensors").exists() && !dir.path().join("s.run").exists());
}
