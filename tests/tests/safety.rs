//! Nothing lost, round two: kd replaces no file the user did not name, no
//! output is an input, one run holds a run folder, resume is self-contained,
//! NaN stays NaN, caches prove themselves, and no input panics. One test per
//! class of failure.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    std::fs::write(dir.join(name), bytes).unwrap();
    sha(&dir.join(name))
}

#[test]
fn outputs_never_replace_a_file_the_user_did_not_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The settings file beside --out is the config the run was started from.
    let config = write(d, "x.toml", b"epochs = 1\n");
    let err = fails(
        &train(&["--config", "x.toml", "--out", "x.safetensors"]),
        d,
        1,
    );
    assert!(
        err.contains("x.toml") && err.contains("--config file"),
        "{err}"
    );
    assert_eq!(sha(&d.join("x.toml")), config);
    // An existing settings file (or adapters file, or metrics file) is not replaced.
    let err = fails(&train(&["--out", "x.safetensors"]), d, 1);
    assert!(
        err.contains("x.toml") && err.contains("--overwrite"),
        "{err}"
    );
    let model = write(d, "model.safetensors", b"my model");
    let err = fails(
        &train(&["--out", "y.safetensors", "--metrics", "model.safetensors"]),
        d,
        1,
    );
    assert!(
        err.contains("--metrics") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(sha(&d.join("model.safetensors")), model);
    // --out model.toml: the weights and the settings would be one file.
    let err = fails(&train(&["--out", "model.toml"]), d, 1);
    assert!(err.contains("are the same file"), "{err}");
    // A best.safetensors of the user's own in the run folder.
    std::fs::create_dir(d.join("runs")).unwrap();
    let best = write(d, "runs/best.safetensors", b"my best");
    let err = fails(
        &train(&["--out", "z.safetensors", "--run-dir", "runs"]),
        d,
        1,
    );
    assert!(err.contains("runs") && err.contains("not empty"), "{err}");
    assert_eq!(sha(&d.join("runs/best.safetensors")), best);
    // kd reproduce into a folder that holds files.
    std::fs::create_dir(d.join("rep")).unwrap();
    let notes = write(d, "rep/notes.txt", b"mine");
    let err = fails(
        &["reproduce", "--dataset", "synthetic", "--out", "rep"],
        d,
        1,
    );
    assert!(
        err.contains("not empty") && err.contains("notes.txt"),
        "{err}"
    );
    assert_eq!(sha(&d.join("rep/notes.txt")), notes);
    // Nothing was written by any refused run.
    assert!(!d.join("x.safetensors").exists() && !d.join("y.safetensors").exists());
    assert!(!d.join("z.safetensors").exists() && !d.join("x.run").exists());
    // Told to, kd replaces its outputs; the replaced file keeps the umask's mode.
    ok(&train(&["--out", "x.safetensors", "--overwrite"]), d);
    assert_ne!(sha(&d.join("x.toml")), config);
}

#[test]
fn best_safetensors_is_a_model_that_eval_predict_and_teacher_take() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&train(&["--out", "s.safetensors", "--epochs", "2"]), d);
    let best = d.join("s.run/best.safetensors");
    let (names, meta) = tensors(&best);
    assert!(
        names.iter().any(|(n, _)| n == "features.0.weight"),
        "{names:?}"
    );
    assert_eq!(meta["kd.arch"], "light_nn");
    assert!(meta.contains_key("kd.accuracy"));
    let mut args = vec!["eval", "--model", "s.run/best.safetensors"];
    args.extend(DATA);
    ok(&args, d);
    ok(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "s.run/best.safetensors",
            "--out",
            "k.safetensors",
        ]),
        d,
    );
}

#[test]
fn no_output_may_be_an_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, teacher) = teacher();
    std::fs::copy(teacher, d.join("t.safetensors")).unwrap();
    let before = sha(&d.join("t.safetensors"));
    let err = fails(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "t.safetensors",
            "--out",
            "./t.safetensors",
            "--overwrite",
        ]),
        d,
        1,
    );
    assert!(err.contains("is also the --teacher"), "{err}");
    // predict: --out as the model, or as the input.
    ok(&train(&["--out", "s.safetensors"]), d);
    let mut images = vec![0u8; 0];
    images.extend(tensor_file(&[1, 3, 16, 16], &vec![0.1; 3 * 16 * 16]));
    std::fs::write(d.join("in.safetensors"), &images).unwrap();
    for (out, named) in [("s.safetensors", "--model"), ("in.safetensors", "--input")] {
        let err = fails(
            &[
                "predict",
                "--model",
                "s.safetensors",
                "--input",
                "in.safetensors",
                "--out",
                out,
                "--overwrite",
            ],
            d,
            1,
        );
        assert!(err.contains(&format!("is also the {named}")), "{err}");
    }
    // Side files: the metrics file as the teacher.
    let err = fails(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "t.safetensors",
            "--out",
            "u.safetensors",
            "--metrics",
            "t.safetensors",
            "--overwrite",
        ]),
        d,
        1,
    );
    assert!(
        err.contains("--metrics file") && err.contains("--teacher"),
        "{err}"
    );
    assert_eq!(sha(&d.join("t.safetensors")), before);
}

/// A one-tensor safetensors file `images` of f32 values.
fn tensor_file(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .unwrap();
    safetensors::serialize([("images", view)], None).unwrap()
}

#[test]
fn folders_fifos_and_devices_are_refused_as_outputs_before_any_data_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("folder")).unwrap();
    Command::new("mkfifo").arg(d.join("pipe")).status().unwrap();
    // A missing --data-dir would fail the load: the output is refused first.
    for (out, kind) in [
        ("folder", "a folder"),
        ("pipe", "a FIFO"),
        ("/dev/null", "a device"),
    ] {
        let err = fails(
            &[
                "train",
                "--arch",
                "light_nn",
                "--dataset",
                "mnist",
                "--data-dir",
                "nowhere",
                "--out",
                out,
            ],
            d,
            1,
        );
        assert!(
            err.contains(kind) && err.contains("not a file"),
            "{out}: {err}"
        );
    }
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "mnist",
            "--data-dir",
            "nowhere",
            "--out",
            "s.safetensors",
        ],
        d,
        1,
    );
    assert!(
        err.contains("--data-dir") && err.contains("nowhere does not exist"),
        "{err}"
    );
}

#[test]
fn a_run_folder_holds_one_run_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = train(&[
        "--out",
        "a.safetensors",
        "--run-dir",
        "shared.run",
        "--epochs",
        "30",
    ]);
    args.retain(|a| *a != "--quiet");
    let mut first = Command::new(env!("CARGO_BIN_EXE_kd-e2e"))
        .args(&args)
        .current_dir(d)
        .env("KD_CACHE", d.join("kd-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !d
        .join("shared.run/checkpoint-e0001-b000000.safetensors")
        .exists()
    {
        assert!(
            first.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the first run never checkpointed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let err = fails(
        &train(&[
            "--out",
            "b.safetensors",
            "--run-dir",
            "shared.run",
            "--overwrite",
        ]),
        d,
        1,
    );
    let _ = first.kill();
    let _ = first.wait();
    assert!(
        err.contains("in use by another kd run")
            && err.contains(&format!("process {}", first.id())),
        "{err}"
    );
    assert!(!d.join("b.safetensors").exists());
}

#[test]
fn resume_is_self_contained_and_refuses_another_teacher() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, teacher) = teacher();
    std::fs::copy(teacher, d.join("t.safetensors")).unwrap();
    ok(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "t.safetensors",
            "--out",
            "s.safetensors",
        ]),
        d,
    );
    // From another folder, with a different teacher.safetensors lying there:
    // the run's own teacher is found by its stored absolute path.
    let elsewhere = tempfile::tempdir().unwrap();
    let e = elsewhere.path();
    ok(&train(&["--epochs", "1", "--out", "t.safetensors"]), e);
    let run = d.join("s.run");
    ok(
        &[
            "train",
            "--resume",
            run.to_str().unwrap(),
            "--epochs",
            "2",
            "--quiet",
        ],
        e,
    );
    // The same path now holding other weights: refused by the stored fingerprint.
    std::fs::copy(e.join("t.safetensors"), d.join("t.safetensors")).unwrap();
    let err = fails(
        &["train", "--resume", run.to_str().unwrap(), "--epochs", "3"],
        e,
        1,
    );
    assert!(err.contains("not the one this run started with"), "{err}");
    // Resuming a run folder without a checkpoint says so, and no resume hint is invented.
    std::fs::create_dir(d.join("empty.run")).unwrap();
    let err = fails(&["train", "--resume", "empty.run"], d, 1);
    assert!(
        err.contains("holds no checkpoint") && err.contains("without --resume"),
        "{err}"
    );
}

#[test]
fn messages_tell_the_truth_about_checkpoints_and_resuming() {
    let dir = tempfile::tempdir().unwrap();
    // Diverging at the first steps: no checkpoint, so no resume hint.
    let err = fails(
        &train(&["--lr", "1e30", "--out", "s.safetensors"]),
        dir.path(),
        1,
    );
    assert!(
        err.contains("loss became") && err.contains("No checkpoint was written yet"),
        "{err}"
    );
    assert!(
        !err.contains("Resume with") && !err.contains("--resume"),
        "{err}"
    );
    assert!(!err.contains("checkpoint is intact"), "{err}");
    // Diverging after a checkpoint: resume, and a new --lr needs --force.
    ok(&train(&["--out", "t.safetensors"]), dir.path());
    let err = fails(
        &[
            "train", "--resume", "t.run", "--epochs", "2", "--lr", "1e30", "--force",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("last good checkpoint is kept") && err.contains("--lr SMALLER --force"),
        "{err}"
    );
}

#[test]
fn reproduce_resume_refuses_a_different_epoch_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut args = vec![
        "reproduce",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--out",
        "run",
        "--quiet",
    ];
    args.extend(DATA);
    ok(&args, d);
    let before = sha(&d.join("run/summary.json"));
    // One resume rule for every command: a changed result setting needs --force.
    let err = fails(&["reproduce", "--resume", "run", "--lr", "0.5"], d, 1);
    assert!(
        err.contains("lr (checkpoint") && err.contains("--force"),
        "{err}"
    );
    let err = fails(&["reproduce", "--resume", "run", "--epochs", "3"], d, 1);
    assert!(
        err.contains("started with 1 epochs") && err.contains("--epochs cannot change"),
        "{err}"
    );
    assert_eq!(sha(&d.join("run/summary.json")), before);
    // And starting over in it needs --overwrite, which replaces kd's files.
    let err = fails(&args, d, 1);
    assert!(err.contains("kd reproduce --resume"), "{err}");
    args.push("--overwrite");
    ok(&args, d);
}

#[test]
fn new_files_get_the_umask_permissions_and_an_empty_kd_cache_means_unset() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let args: Vec<String> = train(&["--out", "s.safetensors"])
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (umask, mode) in [("022", 0o644), ("077", 0o600)] {
        let o = Command::new("bash")
            .args([
                "-c",
                &format!("umask {umask}; exec \"$@\""),
                "kd",
                env!("CARGO_BIN_EXE_kd-e2e"),
            ])
            .args(&args)
            .arg("--overwrite")
            .current_dir(d)
            .env("KD_CACHE", "")
            .env("HOME", d)
            .env("XDG_CACHE_HOME", d.join("xdg"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for f in ["s.safetensors", "s.toml"] {
            let m = std::fs::metadata(d.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{f} under umask {umask}");
        }
    }
    // KD_CACHE="" did not make a cache in the current folder.
    assert!(!d.join("teacher-outputs").exists() && !d.join(".kd-cache").exists());
}

#[test]
fn nan_stays_nan_and_nothing_non_finite_is_loaded_or_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&train(&["--out", "s.safetensors"]), d);
    // A NaN pixel gives NaN logits, as in PyTorch.
    let mut values = vec![0.1f32; 3 * 16 * 16];
    values[40] = f32::NAN;
    std::fs::write(
        d.join("nan.safetensors"),
        tensor_file(&[1, 3, 16, 16], &values),
    )
    .unwrap();
    ok(
        &[
            "predict",
            "--model",
            "s.safetensors",
            "--input",
            "nan.safetensors",
            "--out",
            "logits.safetensors",
            "--quiet",
        ],
        d,
    );
    let bytes = std::fs::read(d.join("logits.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let logits: Vec<f32> = st
        .tensor("logits")
        .unwrap()
        .data()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert!(logits.iter().all(|v| v.is_nan()), "{logits:?}");
    // A teacher whose first convolution is all NaN is refused, naming the tensor.
    let mut st_bytes = std::fs::read(d.join("s.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    let view = st.tensor("features.0.weight").unwrap();
    let start = view.data().as_ptr() as usize - st_bytes.as_ptr() as usize;
    let len = view.data().len();
    for c in st_bytes[start..start + len].chunks_mut(4) {
        c.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(d.join("nan-teacher.safetensors"), &st_bytes).unwrap();
    let err = fails(
        &train(&[
            "--method",
            "kd",
            "--teacher",
            "nan-teacher.safetensors",
            "--out",
            "k.safetensors",
        ]),
        d,
        1,
    );
    assert!(
        err.contains("features.0.weight") && err.contains("NaN or infinite"),
        "{err}"
    );
    assert!(!d.join("k.safetensors").exists());
}

#[test]
fn a_damaged_teacher_cache_is_reported_recomputed_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, teacher) = teacher();
    let t = teacher.to_str().unwrap();
    let run = |out: &str| {
        kd(
            &train(&[
                "--method",
                "kd",
                "--teacher",
                t,
                "--teacher-cache",
                "disk",
                "--out",
                out,
            ]),
            d,
        )
    };
    let first = run("a.safetensors");
    assert!(first.status.success(), "{}", stderr(&first));
    let cache_dir = d.join("kd-cache/teacher-outputs");
    let file = std::fs::read_dir(&cache_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pristine = std::fs::read(&file).unwrap();
    let outputs = weights_bits(&file);
    let mut damaged = pristine.clone();
    let at = damaged.len() / 2;
    damaged[at..at + 4096].fill(0);
    std::fs::write(&file, &damaged).unwrap();
    // An orphan left by a killed build.
    std::fs::write(cache_dir.join(".kd-tmp-orphan"), b"half").unwrap();
    let second = run("b.safetensors");
    assert!(second.status.success(), "{}", stderr(&second));
    let log = stderr(&second);
    assert!(
        log.contains("checksum") && log.contains("computing it again"),
        "{log}"
    );
    assert_eq!(
        weights_bits(&file),
        outputs,
        "the damaged file was replaced by a good one"
    );
    assert!(!cache_dir.join(".kd-tmp-orphan").exists());
    assert_eq!(
        weights_bits(&d.join("a.safetensors")),
        weights_bits(&d.join("b.safetensors"))
    );
}

#[test]
fn hub_references_stay_inside_the_hub_cache() {
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        "hf://../x/t.safetensors",
        "hf://o/r/../../../etc/passwd",
        "hf://o/r//etc/passwd",
        "hf://o/r@/t.safetensors",
        "hf://o/../t.safetensors",
    ] {
        let err = fails(
            &train(&[
                "--method",
                "kd",
                "--teacher",
                spec,
                "--out",
                "s.safetensors",
            ]),
            dir.path(),
            1,
        );
        // Each is refused by the reference check itself (the offline download
        // error also says "revision", so match the refusal's own words).
        assert!(
            err.contains("would lead outside the Hub cache")
                || err.contains("the revision after `@` is empty"),
            "{spec}: {err}"
        );
    }
}

#[test]
fn huge_sizes_and_damaged_metadata_are_errors_not_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "synthetic",
            "--synthetic-shape",
            "3,100000,100000",
            "--out",
            "s.safetensors",
        ],
        d,
        1,
    );
    assert!(
        err.contains("would need") && err.contains("of memory"),
        "{err}"
    );
    ok(&train(&["--out", "s.safetensors"]), d);
    for flags in [
        ["--input-shape", "3,90000,90000"],
        ["--num-classes", "999999999"],
    ] {
        let mut args = vec!["eval", "--model", "s.safetensors", "--arch", "light_nn"];
        args.extend(flags);
        args.extend(DATA);
        let err = fails(&args, d, 1);
        assert!(err.contains("not usable"), "{err}");
    }
    // A PNG header claiming 200000 x 200000 pixels.
    std::fs::write(d.join("huge.png"), huge_png()).unwrap();
    let err = fails(
        &["predict", "--model", "s.safetensors", "--input", "huge.png"],
        d,
        1,
    );
    assert!(
        err.contains("200000x200000") && err.contains("Resize"),
        "{err}"
    );
    // Normalisation metadata with the wrong channel count.
    let mut bytes = std::fs::read(d.join("s.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
    let start = header.find("\"kd.normalization\"").unwrap();
    let end = start + header[start..].find("}\"").unwrap() + 2;
    let replacement = "\"kd.normalization\":\"{\\\"mean\\\":[0.5],\\\"std\\\":[0.5]}\"";
    let mut new_header = format!("{}{}{}", &header[..start], replacement, &header[end..]);
    while new_header.len() < n {
        new_header.push(' ');
    }
    assert_eq!(
        new_header.len(),
        n,
        "the test's header edit keeps the length"
    );
    bytes.splice(8..8 + n, new_header.into_bytes());
    std::fs::write(d.join("bad-norm.safetensors"), &bytes).unwrap();
    let img = d.join("img.png");
    let file = std::fs::File::create(&img).unwrap();
    let mut enc = png::Encoder::new(file, 16, 16);
    enc.set_color(png::ColorType::Rgb);
    enc.write_header()
        .unwrap()
        .write_image_data(&[128u8; 16 * 16 * 3])
        .unwrap();
    let err = fails(
        &[
            "predict",
            "--model",
            "bad-norm.safetensors",
            "--input",
            "img.png",
        ],
        d,
        1,
    );
    assert!(
        err.contains("normalisation") && err.contains("3 channels"),
        "{err}"
    );
}

fn huge_png() -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend(data);
        c.extend(&body);
        c.extend(crc32(&body).to_be_bytes());
        c
    }
    let mut ihdr = 200000u32.to_be_bytes().to_vec();
    ihdr.extend(200000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    // A stored (uncompressed) zlib stream of one zero byte: enough to start decoding.
    png.extend(chunk(
        b"IDAT",
        &[
            0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01, 0x00, 0x01,
        ],
    ));
    png.extend(chunk(b"IEND", b""));
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A file that is not safetensors says what it is.
    std::fs::write(d.join("img.safetensors"), huge_png()).unwrap();
    std::fs::write(d.join("notes.safetensors"), b"just some notes\n").unwrap();
    std::fs::write(d.join("ckpt.safetensors"), b"PK\x03\x04rest of a zip").unwrap();
    for (file, what) in [
        ("img", "a PNG image"),
        ("notes", "a text file"),
        ("ckpt", "torch.save"),
    ] {
        let err = fails(&["inspect", &format!("{file}.safetensors")], d, 1);
        assert!(err.contains(what), "{file}: {err}");
    }
    // Every long flag of kd train is a config key.
    std::fs::write(
        d.join("all.toml"),
        "arch = \"light_nn\"\nteacher_cache = \"off\"\neval_every = 0\ncheckpoint_every = 5\nrun_dir = \"r\"\nmetrics = \"m.jsonl\"\nkeep_checkpoints = 1\nepochs = 1\nquiet = true\noffline = true\n",
    )
    .unwrap();
    let mut args = vec!["train", "--config", "all.toml", "--out", "c.safetensors"];
    args.extend(DATA);
    ok(&args, d);
    assert!(d.join("m.jsonl").exists() && d.join("r").is_dir());
    // predict: --out and --taps need a tensor input; --top 0 shows nothing.
    ok(&train(&["--out", "s.safetensors"]), d);
    std::fs::write(d.join("p.png"), huge_png()).unwrap();
    let err = fails(
        &[
            "predict",
            "--model",
            "s.safetensors",
            "--input",
            "p.png",
            "--out",
            "o.safetensors",
        ],
        d,
        1,
    );
    assert!(
        err.contains("--out and --taps work with one .safetensors tensor input"),
        "{err}"
    );
    fails(
        &[
            "predict",
            "--model",
            "s.safetensors",
            "--input",
            "p.png",
            "--top",
            "0",
        ],
        d,
        2,
    );
    // Integer images are refused: kd takes normalised floats.
    let bytes: Vec<u8> = vec![7; 3 * 16 * 16];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![1, 3, 16, 16], &bytes)
            .unwrap();
    std::fs::write(
        d.join("u8.safetensors"),
        safetensors::serialize([("images", view)], None).unwrap(),
    )
    .unwrap();
    let err = fails(
        &[
            "predict",
            "--model",
            "s.safetensors",
            "--input",
            "u8.safetensors",
            "--out",
            "o.safetensors",
        ],
        d,
        1,
    );
    assert!(err.contains("U8") && err.contains("float images"), "{err}");
}

#[test]
fn a_run_that_fails_before_writing_anything_leaves_no_empty_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // mnist needs --data-dir: the data load fails after the run folder was locked.
    let err = fails(
        &["reproduce", "--dataset", "mnist", "--out", "runs/here"],
        d,
        1,
    );
    assert!(err.contains("mnist"), "{err}");
    assert!(
        !d.join("runs").exists(),
        "no empty runs/ folder left behind"
    );
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "mnist",
            "--out",
            "s.safetensors",
        ],
        d,
        1,
    );
    assert!(err.contains("mnist"), "{err}");
    assert!(!d.join("s.run").exists(), "no empty run folder left behind");
}
