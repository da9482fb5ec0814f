//! End-to-end: the kd binary on the synthetic data set, checking what it writes.
mod common;

use common::*;

const LIGHT_NN_KEYS: [&str; 8] = [
    "classifier.0.bias",
    "classifier.0.weight",
    "classifier.3.bias",
    "classifier.3.weight",
    "features.0.bias",
    "features.0.weight",
    "features.3.bias",
    "features.3.weight",
];

#[test]
fn list_shows_every_registered_thing_with_hyper_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&ok(&["list"], dir.path()));
    for name in [
        "ce",
        "kd",
        "cosine",
        "fitnets",
        "deep_nn",
        "light_nn",
        "tutorial",
        "cifar10",
        "fashion-mnist",
        "synthetic",
        "temperature=2",
    ] {
        assert!(text.contains(name), "`kd list` lacks {name}:\n{text}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ok(&["list", "--json"], dir.path()))).unwrap();
    let methods: Vec<_> = json["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        ["at", "ce", "cosine", "dist", "dkd", "fitnets", "kd", "ls_kd", "pkt", "rkd", "sp"]
    );
    assert_eq!(json["methods"][6]["params"][0]["default"], 2.0);
}

#[test]
fn teacher_file_has_pytorch_names_and_metadata() {
    let (_, teacher) = teacher();
    let (names, meta) = tensors(teacher);
    let keys: Vec<_> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        keys,
        [
            "classifier.0.bias",
            "classifier.0.weight",
            "classifier.3.bias",
            "classifier.3.weight",
            "features.0.bias",
            "features.0.weight",
            "features.2.bias",
            "features.2.weight",
            "features.5.bias",
            "features.5.weight",
            "features.7.bias",
            "features.7.weight",
        ]
    );
    assert_eq!(meta["format"], "pt");
    assert_eq!(meta["kd.arch"], "deep_nn");
    assert_eq!(meta["kd.method"], "ce");
    assert!(meta["kd.run_config"].contains("epochs = 2"));
    assert!(teacher.with_extension("toml").exists());
}

fn distil(method: &str) -> (tempfile::TempDir, String) {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let t = teacher.to_str().unwrap();
    let mut args = vec![
        "train",
        "--arch",
        "light_nn",
        "--method",
        method,
        "--teacher",
        t,
        "--epochs",
        "2",
        "--lr",
        "0.003",
        "--out",
        "student.safetensors",
        "--metrics",
        "m.jsonl",
    ];
    args.extend(DATA);
    let out = stdout(&ok(&args, dir.path()));
    (dir, out)
}

fn check_student(method: &str) {
    let (dir, out) = distil(method);
    let student = dir.path().join("student.safetensors");
    let (names, meta) = tensors(&student);
    let keys: Vec<_> = names.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        keys, LIGHT_NN_KEYS,
        "only the student's tensors, by PyTorch name"
    );
    assert_eq!(meta["kd.method"], method);
    // 10 classes: chance is 10 %.
    let trained = accuracy(&out);
    assert!(
        trained > 20.0,
        "{method}: {trained}% is not clearly above chance"
    );
    let eval = stdout(&ok(
        &[
            "eval",
            "--model",
            "student.safetensors",
            "--synthetic-shape",
            "3,16,16",
            "--test-subset",
            "200",
        ],
        dir.path(),
    ));
    assert_eq!(
        accuracy(&eval),
        trained,
        "kd eval agrees with the accuracy printed by kd train"
    );
    assert!(eval.contains("Confusion matrix") && eval.contains("Per class"));
    let metrics = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[1]["parts"][method].as_f64().is_some(), "{metrics}");
    assert!(lines[1]["images_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn distils_with_kd() {
    check_student("kd");
}

#[test]
fn distils_with_cosine() {
    check_student("cosine");
}

#[test]
fn distils_with_fitnets_and_saves_the_regressor_apart() {
    check_student("fitnets");
    let (dir, _) = distil("fitnets");
    let (names, _) = tensors(&dir.path().join("student.adapters.safetensors"));
    assert_eq!(
        names,
        vec![
            ("regressor.0.bias".to_string(), vec![32]),
            ("regressor.0.weight".to_string(), vec![32, 16, 3, 3])
        ]
    );
}

#[test]
fn predict_writes_logits_and_taps_and_classifies_pngs() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    // A batch of 3 images, written with the safetensors crate as a user would from numpy/torch.
    let data: Vec<f32> = (0..3 * 3 * 16 * 16)
        .map(|i| ((i % 17) as f32 - 8.0) / 8.0)
        .collect();
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 3, 16, 16], &bytes)
            .unwrap();
    std::fs::write(
        dir.path().join("x.safetensors"),
        safetensors::serialize([("images", view)], None).unwrap(),
    )
    .unwrap();
    let t = teacher.to_str().unwrap();
    ok(
        &[
            "predict",
            "--model",
            t,
            "--input",
            "x.safetensors",
            "--out",
            "y.safetensors",
            "--taps",
        ],
        dir.path(),
    );
    let (names, _) = tensors(&dir.path().join("y.safetensors"));
    assert_eq!(
        names,
        vec![
            ("features".to_string(), vec![3, 32, 4, 4]),
            ("flat".to_string(), vec![3, 512]),
            ("logits".to_string(), vec![3, 10]),
        ]
    );

    let png_path = dir.path().join("img.png");
    let file = std::fs::File::create(&png_path).unwrap();
    let mut enc = png::Encoder::new(file, 20, 20);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .unwrap()
        .write_image_data(&vec![120u8; 20 * 20 * 3])
        .unwrap();
    let out = stdout(&ok(
        &["predict", "--model", t, "--input", "img.png", "--top", "2"],
        dir.path(),
    ));
    assert!(
        out.contains("img.png") && out.contains("class") && out.matches('%').count() == 2,
        "{out}"
    );
}

#[test]
fn inspect_lists_tensors_and_parameter_count() {
    let (_, teacher) = teacher();
    let out = stdout(&ok(
        &["inspect", teacher.to_str().unwrap()],
        teacher.parent().unwrap(),
    ));
    assert!(
        out.contains("features.7.weight") && out.contains("[32, 64, 3, 3]"),
        "{out}"
    );
    assert!(out.contains("Parameters: 400,554"), "{out}");
    assert!(out.contains("kd.arch: deep_nn"), "{out}");
}

#[test]
fn reproduce_runs_the_whole_tutorial_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["reproduce", "--epochs", "1", "--out", "run", "--quiet"];
    args.extend(DATA);
    let out = stdout(&ok(&args, dir.path()));
    let run = dir.path().join("run");
    let seed = run.join("seed-42");
    for phase in ["teacher", "ce", "kd", "cosine", "fitnets"] {
        assert!(
            seed.join(format!("{phase}.safetensors")).exists(),
            "{phase} weights"
        );
        assert!(out.contains(&format!("| {phase} |")), "{out}");
    }
    assert!(seed.join("fitnets.adapters.safetensors").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    for phase in ["teacher", "ce", "kd", "cosine", "fitnets"] {
        let p = &summary["phases"][phase];
        assert!(
            p["accuracy"].as_f64().unwrap() >= 0.0 && p["seconds"].as_f64().unwrap() > 0.0,
            "{summary}"
        );
    }
    let metrics = std::fs::read_to_string(seed.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 5, "one epoch per phase");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| kd | kd |") && report.contains("plot.png"));
    assert!(report.contains("## What the student buys"), "{report}");
    assert!(report.contains("| teacher | deep_nn |") && report.contains("| kd | light_nn |"));
    assert!(
        summary["costs"]["kd"]["kd"]["latency"]["median_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let png = std::fs::read(run.join("plot.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
    // Every student started from the same initialisation: the ce and kd students
    // differ only through the teacher, so their accuracies are reported side by side.
    let ce: f64 = summary["phases"]["ce"]["accuracy"].as_f64().unwrap();
    let acc = accuracy(&stdout(&ok(
        &[
            "eval",
            "--model",
            "run/seed-42/ce.safetensors",
            "--synthetic-shape",
            "3,16,16",
            "--test-subset",
            "200",
        ],
        dir.path(),
    )));
    assert_eq!(acc, (ce * 100.0).round() / 100.0);
}

#[test]
fn a_config_file_sets_what_flags_do_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("run.toml"),
        "arch = \"light_nn\"\ndataset = \"synthetic\"\nsynthetic_shape = [1, 12, 12]\ntrain_subset = 64\ntest_subset = 32\nepochs = 3\nbatch_size = 32\n",
    )
    .unwrap();
    ok(
        &[
            "train",
            "--config",
            "run.toml",
            "--epochs",
            "1",
            "--out",
            "m.safetensors",
            "--quiet",
        ],
        dir.path(),
    );
    let written = std::fs::read_to_string(dir.path().join("m.toml")).unwrap();
    assert!(
        written.contains("epochs = 1")
            && written.contains("batch_size = 32")
            && written.contains("train_subset = 64"),
        "{written}"
    );
    std::fs::write(
        dir.path().join("bad.toml"),
        "arch = \"light_nn\"\nepoch = 3\n",
    )
    .unwrap();
    let err = fails(
        &["train", "--config", "bad.toml", "--out", "n.safetensors"],
        dir.path(),
        2,
    );
    assert!(
        err.contains("unknown setting `epoch`") && err.contains("epochs"),
        "{err}"
    );
}

#[test]
fn the_teacher_cache_changes_speed_not_results() {
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let t = teacher.to_str().unwrap();
    let files = dir.path().join("kd-cache/teacher-outputs");
    let train_on = |subset: &str, mode: &str, out: &str| {
        let mut args = vec![
            "train",
            "--arch",
            "light_nn",
            "--method",
            "fitnets",
            "--teacher",
            t,
            "--epochs",
            "1",
            "--teacher-cache",
            mode,
            "--out",
            out,
        ];
        args.extend(DATA);
        let n = args.iter().position(|a| *a == "--train-subset").unwrap();
        args[n + 1] = subset;
        let err = stderr(&ok(&args, dir.path()));
        (err, weights_bits(&dir.path().join(out)))
    };
    let train = |mode: &str, out: &str| train_on("384", mode, out);
    let (log, off) = train("off", "off.safetensors");
    assert!(!log.contains("teacher cache:"), "{log}");
    let (log, memory) = train("memory", "memory.safetensors");
    assert!(
        log.contains("teacher cache:") && log.contains("in memory"),
        "{log}"
    );
    assert!(!files.exists(), "memory mode writes no file");
    assert_eq!(off, memory, "cached outputs give bitwise the same student");

    let (log, disk) = train("disk", "disk.safetensors");
    assert!(
        log.contains("memory-mapped from") && log.contains("computed once"),
        "{log}"
    );
    assert_eq!(off, disk, "memory-mapped outputs give the same student");
    let cached: Vec<_> = std::fs::read_dir(&files).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1, "one cache file");
    // `auto` finds the file of the same teacher and data and reuses it.
    let (log, auto) = train("auto", "auto.safetensors");
    assert!(log.contains("reused from an earlier run"), "{log}");
    assert_eq!(off, auto);

    // A damaged cache file is not trusted: it is computed again and replaced.
    let file = cached[0].path();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (log, again) = train("disk", "again.safetensors");
    assert!(
        log.contains("not reused") && log.contains("computed once"),
        "{log}"
    );
    assert_eq!(off, again);
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        len,
        "rewritten whole"
    );

    // Other data (a different subset) is another key: a second file beside the first.
    let (log, _) = train_on("256", "disk", "other.safetensors");
    assert!(log.contains("computed once"), "{log}");
    assert_eq!(std::fs::read_dir(&files).unwrap().count(), 2);

    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--method",
            "kd",
            "--teacher",
            t,
            "--teacher-cache",
            "mmap",
            "--out",
            "x.safetensors",
        ],
        dir.path(),
        2,
    );
    assert!(err.contains("auto, off, memory, disk"), "{err}");
}

#[test]
fn eval_every_tests_only_the_epochs_asked_for_and_always_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "train",
        "--arch",
        "light_nn",
        "--epochs",
        "3",
        "--eval-every",
        "2",
        "--metrics",
        "m.jsonl",
        "--out",
        "s.safetensors",
    ];
    args.extend(DATA);
    let log = stderr(&ok(&args, dir.path()));
    let tested: Vec<bool> = log
        .lines()
        .filter(|l| l.contains(" epoch "))
        .map(|l| l.contains("test accuracy"))
        .collect();
    assert_eq!(tested, [false, true, true], "{log}");
    let metrics = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
    let accuracies: Vec<bool> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("epoch").is_some())
        .map(|v| v["test_accuracy"].is_f64())
        .collect();
    assert_eq!(accuracies, [false, true, true], "{metrics}");
}

/// The seams are registered like methods: `kd list` shows the optimizers, the
/// schedules and the embedded sample (with its licence).
#[test]
fn list_shows_optimizers_schedules_and_the_embedded_sample() {
    let dir = tempfile::tempdir().unwrap();
    let text = stdout(&ok(&["list"], dir.path()));
    for name in [
        "adam ",
        "adamw",
        "sgd",
        "constant",
        "multistep",
        "cosine",
        "fashion-mnist-sample",
        "MIT licence",
        "(offline fallback)",
    ] {
        assert!(text.contains(name), "`kd list` lacks {name}:\n{text}");
    }
}

/// A hyper-parameter no phase takes is refused before anything trains, with
/// the nearest name; so is an out-of-range value for a phase that takes it.
#[test]
fn reproduce_refuses_a_param_no_phase_takes_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["reproduce", "--dataset", "synthetic", "--out", "r"];
    let typo = [&base[..], &["--param", "temprature=3"]].concat();
    let err = fails(&typo, dir.path(), 1);
    assert!(err.contains("Did you mean `temperature`?"), "{err}");
    let zero = [&base[..], &["--param", "temperature=0"]].concat();
    let err = fails(&zero, dir.path(), 1);
    assert!(
        err.contains("temperature") && err.contains("out of range"),
        "{err}"
    );
    assert!(!dir.path().join("r").exists(), "nothing was written");
}

/// `--dataset auto` (the default) falls back to the embedded sample when
/// CIFAR-10 is neither cached nor downloadable (the tests run offline), and
/// says so; the run records the data set it really used.
#[test]
fn auto_falls_back_to_the_embedded_sample_offline() {
    let dir = tempfile::tempdir().unwrap();
    let o = ok(
        &[
            "train",
            "--arch",
            "light_nn",
            "--epochs",
            "1",
            "--train-subset",
            "256",
            "--test-subset",
            "128",
            "--out",
            "m.safetensors",
            "--metrics",
            "m.jsonl",
        ],
        dir.path(),
    );
    let err = stderr(&o);
    assert!(
        err.contains("cifar10 is not on this machine") && err.contains("fashion-mnist-sample"),
        "{err}"
    );
    let (_, meta) = tensors(&dir.path().join("m.safetensors"));
    assert_eq!(meta["kd.dataset"], "fashion-mnist-sample");
    let metrics = std::fs::read_to_string(dir.path().join("m.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(metrics.lines().next().unwrap()).unwrap();
    assert_eq!(line["lr"], 0.001, "{metrics}");
}

/// `--optimizer`, `--lr-schedule` and their settings reach the trainer: the
/// learning rate of each epoch is in the metrics; bad values are refused
/// before training, naming the setting.
#[test]
fn sgd_with_a_multistep_schedule_records_each_epochs_rate() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_args(&[
        "--optimizer",
        "sgd",
        "--momentum",
        "0.9",
        "--lr",
        "0.05",
        "--lr-schedule",
        "multistep",
        "--milestones",
        "1",
        "--epochs",
        "2",
        "--out",
        "s.safetensors",
        "--metrics",
        "s.jsonl",
    ]);
    ok(&run, dir.path());
    let metrics = std::fs::read_to_string(dir.path().join("s.jsonl")).unwrap();
    let lrs: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lr"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(lrs.len(), 2);
    assert!(
        (lrs[0] - 0.05).abs() < 1e-12 && (lrs[1] - 0.005).abs() < 1e-12,
        "{lrs:?}"
    );
    // An unknown name is a usage error (2); settings that contradict, a failure (1).
    for (flags, says, code) in [
        (&["--optimizer", "sgdd"][..], "Did you mean `sgd`?", 2),
        (&["--lr-schedule", "multistep"][..], "--milestones", 1),
        (&["--optimizer", "sgd", "--nesterov"][..], "Nesterov", 1),
    ] {
        let args = train_args(&[flags, &["--out", "x.safetensors"]].concat());
        let err = fails(&args, dir.path(), code);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    assert!(!dir.path().join("x.safetensors").exists());
}

/// A published-checkpoint stand-in (generate.py's `torch.save({"model":
/// state_dict, "epoch": 240})` of resnet8 at 100 classes).
fn resnet8_checkpoint() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo/resnet8_ckpt.pth")
}

/// A `torch.save` file is read without Python: `kd inspect` lists its
/// state_dict, `kd predict` runs it (the logits are PyTorch's), and `kd
/// convert --arch` writes a kd model that `kd inspect` describes.
#[test]
fn a_torch_save_checkpoint_is_inspected_run_and_converted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ckpt = resnet8_checkpoint();
    let ckpt = ckpt.to_str().unwrap();
    let listing = stdout(&ok(&["inspect", ckpt], d));
    assert!(
        listing.contains("layer3.0.downsample.1.running_var")
            && listing.contains("num_batches_tracked"),
        "{listing}"
    );
    let io = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/zoo/resnet8_io.safetensors");
    let shape = [
        "--arch",
        "resnet8",
        "--input-shape",
        "3,32,32",
        "--num-classes",
        "100",
    ];
    let predict = [
        &[
            "predict",
            "--model",
            ckpt,
            "--input",
            io.to_str().unwrap(),
            "--out",
            "logits.safetensors",
        ][..],
        &shape,
    ]
    .concat();
    ok(&predict, d);
    let read = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st
            .tensor(if p.ends_with("logits.safetensors") {
                "logits"
            } else {
                "eval.logits"
            })
            .unwrap();
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<f32>>()
    };
    let (ours, torch) = (read(&d.join("logits.safetensors")), read(&io));
    let worst = ours
        .iter()
        .zip(&torch)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "logits differ from PyTorch's by {worst}");
    let convert = [&["convert", ckpt, "--out", "t.safetensors"][..], &shape].concat();
    let said = stdout(&ok(&convert, d));
    assert!(said.contains("wrote t.safetensors"), "{said}");
    let (_, meta) = tensors(&d.join("t.safetensors"));
    assert_eq!(meta["kd.arch"], "resnet8");
    let err = fails(&convert, d, 1);
    assert!(
        err.contains("--overwrite"),
        "an existing --out is kept: {err}"
    );
    let err = fails(
        &[
            "convert",
            ckpt,
            "--arch",
            "resnet20",
            "--input-shape",
            "3,32,32",
            "--num-classes",
            "100",
            "--out",
            "u.safetensors",
        ],
        d,
        1,
    );
    assert!(
        err.contains("missing") && err.contains("layer1.1.conv1.weight"),
        "every missing tensor is named: {err}"
    );
    assert!(!d.join("u.safetensors").exists());
}

/// A recipe's own settings apply unless a flag says otherwise, and a phase
/// that trains on fewer images than the teacher is said so in the report.
#[test]
fn the_showcase_recipe_runs_with_its_settings_and_says_what_each_phase_saw() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "reproduce",
        "--recipe",
        "showcase",
        "--epochs",
        "1",
        "--batch-size",
        "100",
        "--test-subset",
        "200",
        "--out",
        "r",
        "--quiet",
    ];
    ok(&args, dir.path());
    let settings = std::fs::read_to_string(dir.path().join("r/settings.toml")).unwrap();
    assert!(
        settings.contains("dataset = \"fashion-mnist-sample\""),
        "{settings}"
    );
    // Each phase's own loss weights: none stored for a resume to take as flags.
    assert!(!settings.contains("ce_weight"), "{settings}");
    assert!(
        settings.contains("batch_size = 100") && settings.contains("eval_every = 5"),
        "{settings}"
    );
    let report = std::fs::read_to_string(dir.path().join("r/report.md")).unwrap();
    assert!(
        report.contains("`kd` on 1000 images for 4 epochs") && report.contains("95 % interval"),
        "{report}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r/summary.json")).unwrap())
            .unwrap();
    let images: Vec<u64> = summary["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["train_images"].as_u64().unwrap())
        .collect();
    assert_eq!(images, [10000, 1000, 1000]);
}

/// CIFAR-100 in its binary archive's layout, `n` training and `n / 2` test
/// records of (coarse, fine, pixels).
fn write_cifar100(dir: &std::path::Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, count) in [("train.bin", n), ("test.bin", n / 2)] {
        let bytes: Vec<u8> = (0..count)
            .flat_map(|i| {
                let fine = (i * 37 % 100) as u8;
                let mut r = vec![fine % 20, fine];
                r.extend((0..3072).map(|p| ((p * (fine as usize + 1)) % 251) as u8));
                r
            })
            .collect();
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

/// The field's recipe lists its pairs with the published numbers, and a smoke
/// run of one pair trains every phase with mdistiller's settings, stored
/// with the run, and reports the published number beside each of ours.
#[test]
fn the_cifar100_recipe_lists_its_pairs_and_runs_one_with_mdistillers_settings() {
    let dir = tempfile::tempdir().unwrap();
    let listing = stdout(&ok(
        &["reproduce", "--recipe", "cifar100", "--list-pairs"],
        dir.path(),
    ));
    assert!(
        listing.contains("resnet32x4-resnet8x4 (default)")
            && listing.contains("teacher 79.42")
            && listing.contains("dkd 76.32"),
        "{listing}"
    );
    write_cifar100(&dir.path().join("c100"), 32);
    // FitNets' weight of 100 diverged at mdistiller's rate of 0.05 on these
    // patterns, from a teacher trained for one epoch: the smoke run uses 0.005.
    let args = [
        "reproduce",
        "--recipe",
        "cifar100",
        "--pair",
        "resnet56-resnet20",
        "--data-dir",
        "c100",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--lr",
        "0.005",
        "--out",
        "r",
        "--quiet",
    ];
    ok(&args, dir.path());
    let settings = std::fs::read_to_string(dir.path().join("r/settings.toml")).unwrap();
    for line in [
        "dataset = \"cifar100\"",
        "optimizer = \"sgd\"",
        "momentum = 0.9",
        "weight_decay = 0.0005",
        "milestones = [150, 180, 210]",
        "augment = \"crop-flip\"",
        "pair = \"resnet56-resnet20\"",
        "batch_size = 8",
        "lr = 0.005",
    ] {
        assert!(settings.contains(line), "{line} in\n{settings}");
    }
    let report = std::fs::read_to_string(dir.path().join("r/report.md")).unwrap();
    assert!(
        report.contains("published (%)")
            && report.contains("| 72.34 |")
            && report.contains("| 71.97 |"),
        "{report}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("r/summary.json")).unwrap())
            .unwrap();
    let phases: Vec<&str> = summary["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        ["teacher", "ce", "kd", "dkd", "fitnets", "at", "sp", "rkd", "pkt"]
    );
    let err = fails(
        &[
            "reproduce",
            "--recipe",
            "cifar100",
            "--pair",
            "resnet32x4-resnet8",
            "--data-dir",
            "c100",
            "--out",
            "s",
        ],
        dir.path(),
        2,
    );
    assert!(
        err.contains("resnet32x4-resnet8x4"),
        "the nearest pair is named: {err}"
    );
}

/// A pair of two families (vgg13 -> MobileNetV2): the students train at the
/// pair's own learning rate (mdistiller's 0.01) while the teacher keeps the
/// recipe's, every phase records the rate it trained with, and the feature
/// methods (FitNets, AT) run across the two nets' different map sizes.
#[test]
fn a_cross_family_pair_trains_its_students_at_their_own_rate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listing = stdout(&ok(
        &["reproduce", "--recipe", "cifar100", "--list-pairs"],
        d,
    ));
    assert!(
        listing.contains("vgg13-MobileNetV2") && listing.contains("dkd 69.71"),
        "{listing}"
    );
    write_cifar100(&d.join("c100"), 16);
    let args = [
        "reproduce",
        "--recipe",
        "cifar100",
        "--pair",
        "vgg13-MobileNetV2",
        "--data-dir",
        "c100",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--out",
        "r",
        "--quiet",
    ];
    ok(&args, d);
    let settings = std::fs::read_to_string(d.join("r/settings.toml")).unwrap();
    assert!(settings.contains("student_lr = 0.01"), "{settings}");
    let lr = |phase: &str| {
        let meta = tensors(&d.join(format!("r/seed-42/{phase}.safetensors"))).1;
        let value = |key: &str| {
            let line = meta["kd.run_config"]
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{phase}: no {key}"))
                .to_string();
            line[key.len() + 3..].trim_matches('"').to_string()
        };
        (value("lr").parse::<f64>().unwrap(), value("arch"))
    };
    assert_eq!(lr("teacher"), (0.05, "vgg13".into()));
    for phase in ["ce", "kd", "fitnets", "at"] {
        assert_eq!(lr(phase), (0.01, "MobileNetV2".into()), "{phase}");
    }
}

/// `kd export` writes an ONNX file whose logits, run by tract, are `kd
/// predict`'s; it refuses to replace a file or to write over its input; `kd
/// bench` times the teacher and a student and says what the student buys.
#[test]
fn export_writes_an_onnx_file_that_gives_kds_logits_and_bench_times_models() {
    use kd_core::candle::{DType, Device, Tensor};
    let (_, teacher) = teacher();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = teacher.to_str().unwrap();
    let said = stdout(&ok(&["export", t, "--onnx", "t.onnx", "--check"], d));
    assert!(
        said.contains("opset 17") && said.contains("deep_nn"),
        "{said}"
    );
    let images = Tensor::randn(0f32, 1., (3, 3, 16, 16), &Device::Cpu).unwrap();
    kd_core::weights::save(
        &d.join("images.safetensors"),
        &[("images".into(), images.clone())],
        Default::default(),
    )
    .unwrap();
    let predict = ["predict", "--model", t, "--input", "images.safetensors"];
    ok(
        &[&predict[..], &["--out", "logits.safetensors"]].concat(),
        d,
    );
    let kd_logits = kd_core::weights::read(&d.join("logits.safetensors"))
        .unwrap()
        .tensors["logits"]
        .to_dtype(DType::F32)
        .unwrap();
    let onnx = std::fs::read(d.join("t.onnx")).unwrap();
    let onnx_logits = kd_export::evaluate(&onnx, &images).unwrap();
    let error = kd_export::relative_error(&onnx_logits, &kd_logits).unwrap();
    assert!(error < 1e-4, "tract against kd predict: {error:e}");

    let before = sha(&d.join("t.onnx"));
    let err = fails(&["export", t, "--onnx", "t.onnx"], d, 1);
    assert!(err.contains("--overwrite"), "{err}");
    assert_eq!(sha(&d.join("t.onnx")), before, "the first export is kept");
    let err = fails(&["export", t, "--onnx", t], d, 1);
    assert!(err.contains("also the"), "{err}");
    ok(&["export", t, "--onnx", "n.onnx", "--normalize-inside"], d);

    ok(
        &train_args(&["--epochs", "1", "--out", "s.safetensors", "-q"]),
        d,
    );
    let bench = ["bench", t, "s.safetensors", "--runs", "3", "--batch", "4"];
    let json = stdout(&ok(&[&bench[..], &["--json", "--onnx"]].concat(), d));
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{json}");
    assert_eq!(rows[0]["cost"]["arch"], "deep_nn");
    assert_eq!(rows[1]["cost"]["arch"], "light_nn");
    let macs = |i: usize| rows[i]["cost"]["macs"].as_u64().unwrap();
    assert!(
        macs(0) > 10 * macs(1),
        "the teacher does more arithmetic: {json}"
    );
    assert!(
        rows[1]["cost"]["onnx"]["latency"]["median_ms"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    let table = stdout(&ok(&bench, d));
    let student = table
        .lines()
        .find(|l| l.contains("| light_nn |"))
        .unwrap_or_default();
    let speed_up: f64 = student
        .trim_end_matches(" |")
        .rsplit("| ")
        .next()
        .and_then(|s| s.trim_end_matches('x').parse().ok())
        .unwrap_or(0.0);
    // Timings are the bench's to report, not a test's to assert (a loaded
    // machine reorders them): the column must hold a ratio, and the first
    // model's must be 1.0x.
    assert!(
        speed_up.is_finite() && speed_up > 0.0,
        "a speed-up for the student: {table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.contains("| deep_nn |") && l.ends_with("| 1.0x |")),
        "the teacher is the reference: {table}"
    );
}

/// A folder of images trains at the size and normalisation asked for and
/// records both; the second run reads kd's decoded copy instead of decoding;
/// a bad image stops the run naming the file, or is skipped and counted;
/// image flags on a data set with fixed images, and bad means and stds, are
/// refused before anything is read.
#[test]
fn a_folder_of_images_is_decoded_once_and_read_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (split, n) in [("train", 12), ("val", 4)] {
        for (c, class) in ["ants", "bees"].iter().enumerate() {
            let folder = d.join("imgs").join(split).join(class);
            std::fs::create_dir_all(&folder).unwrap();
            for i in 0..n {
                let colour = [200 * c as u8, 40 + i as u8, 90];
                let png = png(20 + i as u32, 24, colour);
                std::fs::write(folder.join(format!("{i}.png")), png).unwrap();
            }
        }
    }
    let args = |extra: &[&'static str]| {
        let mut v = vec![
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "folder",
            "--data-dir",
            "imgs",
            "--image-size",
            "16",
            "--mean",
            "0.5",
            "--std",
            "0.25",
            "--epochs",
            "1",
        ];
        v.extend(extra);
        v
    };
    let first = stderr(&ok(&args(&["--out", "a.safetensors"]), d));
    assert!(first.contains("decoded 32 images"), "{first}");
    let meta = tensors(&d.join("a.safetensors")).1;
    assert!(meta["kd.arch_config"].contains("[3,16,16]"), "{meta:?}");
    assert!(
        meta["kd.normalization"].contains("0.25") && meta["kd.classes"].contains("bees"),
        "{meta:?}"
    );
    let second = stderr(&ok(&args(&["--out", "b.safetensors"]), d));
    assert!(second.contains("from kd's decoded copy"), "{second}");
    // Evaluation cuts the folder to the size the model was trained at.
    let eval = stdout(&ok(
        &["eval", "--model", "a.safetensors", "--data-dir", "imgs"],
        d,
    ));
    assert!(eval.contains("(8 images of folder)"), "{eval}");

    let bad = d.join("imgs/train/bees/3.png");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&args(&["--out", "c.safetensors"]), d, 1);
    assert!(
        err.contains("3.png") && err.contains("--skip-bad-images"),
        "{err}"
    );
    let skipped = stderr(&ok(
        &args(&["--skip-bad-images", "--out", "c.safetensors"]),
        d,
    ));
    assert!(skipped.contains("skipped 1 of 24 images"), "{skipped}");

    for (extra, want) in [
        (
            &["--dataset", "synthetic", "--image-size", "16"][..],
            "--image-size",
        ),
        (
            &["--dataset", "synthetic", "--mean", "0.5,0.5", "--std", "1"][..],
            "has 2 values",
        ),
        (
            &["--dataset", "synthetic", "--mean", "0.5", "--std", "0"][..],
            "greater than 0",
        ),
        (
            &["--dataset", "synthetic", "--mean", "nan", "--std", "0.5"][..],
            "NaN is not a number from 0 to 1",
        ),
    ] {
        let mut v = vec!["train", "--arch", "light_nn", "--epochs", "1"];
        v.extend(extra);
        v.extend(["--out", "d.safetensors"]);
        let err = fails(&v, d, 2);
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    assert!(!d.join("d.safetensors").exists());
}

/// `--teacher-key` names the entry of a torch.save checkpoint that holds the
/// state_dict; an entry the file lacks is refused, naming it, before any
/// training.
#[test]
fn the_teacher_key_picks_a_checkpoints_entry() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_cifar100(&d.join("c100"), 16);
    let ckpt = resnet8_checkpoint();
    let args = |key| {
        vec![
            "train",
            "--arch",
            "resnet8",
            "--method",
            "kd",
            "--teacher",
            ckpt.to_str().unwrap(),
            "--teacher-arch",
            "resnet8",
            "--teacher-key",
            key,
            "--dataset",
            "cifar100",
            "--data-dir",
            "c100",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--quiet",
            "--out",
            "s.safetensors",
        ]
    };
    let err = fails(&args("state_dict"), d, 1);
    assert!(err.contains("`state_dict`"), "{err}");
    assert!(!d.join("s.safetensors").exists());
    ok(&args("model"), d);
    assert_eq!(tensors(&d.join("s.safetensors")).1["kd.method"], "kd");
}
