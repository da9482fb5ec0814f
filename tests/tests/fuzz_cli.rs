//! Random command lines, drawn from a small vocabulary of subcommands, flags,
//! values and paths (good, bad, hostile), run through the real binary: kd
//! never panics or aborts, exits 0, 1 or 2, and changes no file outside the
//! folder it was started in. Cases: 40, or PROPTEST_CASES.
//!
//! `--overwrite` is left out of the vocabulary: with it, naming an existing
//! file outside the folder (`--out ../inputs/notes.txt`) rightly replaces it.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;

mod common;

const COMMANDS: &[&str] = &[
    "train",
    "eval",
    "predict",
    "inspect",
    "reproduce",
    "list",
    "verify",
    "report",
    "doctor",
    "convert",
    "export",
    "bench",
];

const FLAGS: &[&str] = &[
    "--arch",
    "--method",
    "--teacher",
    "--teacher-arch",
    "--out",
    "--config",
    "--metrics",
    "--run-dir",
    "--resume",
    "--force",
    "--epochs",
    "--batch-size",
    "--lr",
    "--seed",
    "--seeds",
    "--ce-weight",
    "--distill-weight",
    "--device",
    "--teacher-cache",
    "--param",
    "--dataset",
    "--data-dir",
    "--train-subset",
    "--test-subset",
    "--synthetic-shape",
    "--model",
    "--input",
    "--input-shape",
    "--num-classes",
    "--top",
    "--taps",
    "--json",
    "--eval-every",
    "--checkpoint-every",
    "--keep-checkpoints",
    "--recipe",
    "--fixture",
    "--properties",
    "--quiet",
    "--onnx",
    "--fold-bn",
    "--normalize-inside",
    "--check",
    "--runs",
    "--batch",
    "--hub-repo",
    "--revision",
];

const VALUES: &[&str] = &[
    "light_nn",
    "deep_nn",
    "kd",
    "fitnets",
    "nope",
    "0",
    "1",
    "2",
    "-1",
    "1e30",
    "NaN",
    "inf",
    "18446744073709551615",
    "9223372036854775808",
    "3,8,8",
    "0,0,0",
    "1,99999,99999",
    "cpu",
    "cuda:7",
    "gpu",
    "auto",
    "memory",
    "disk",
    "off",
    "temperature=4",
    "temperature=-1",
    "=",
    "synthetic",
    "mnist",
    "cifar10",
    "",
    " ",
    "x",
    "42,42",
    "3",
    "3,4",
    "true",
    "false",
    "../../..",
    "o/..",
    "resnet8",
];

/// Paths: the inputs next door (which must survive), files in the work
/// folder, hostile ones.
const PATHS: &[&str] = &[
    "../inputs/teacher.safetensors",
    "../inputs/config.toml",
    "../inputs/image.png",
    "../inputs/images.safetensors",
    "../inputs/notes.txt",
    "../inputs",
    "..",
    "/",
    "/dev/null",
    "/etc/passwd",
    "out.safetensors",
    "out.toml",
    "run",
    "m.jsonl",
    "hf://o/r/t.safetensors",
    "hf://../x/y",
    "teacher.safetensors",
    "missing.safetensors",
    "out.onnx",
    "/dev/zero",
    "../inputs/pipe",
    "../inputs/link.safetensors",
    "../inputs/dangling.safetensors",
    "../inputs/lying.safetensors",
    NON_UTF8,
];

/// Stands for a path that is not UTF-8 (`bad\xff.safetensors`), which a
/// `&str` cannot hold.
const NON_UTF8: &str = "<non-utf8>";

fn os_arg(token: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    match token {
        NON_UTF8 => std::ffi::OsStr::from_bytes(b"bad\xff.safetensors").to_owned(),
        t => t.into(),
    }
}

/// The folder of inputs: a teacher, a config, an image, a tensor file, a note.
fn inputs() -> &'static (tempfile::TempDir, BTreeMap<PathBuf, String>) {
    static I: OnceLock<(tempfile::TempDir, BTreeMap<PathBuf, String>)> = OnceLock::new();
    I.get_or_init(|| {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("inputs");
        std::fs::create_dir(&dir).unwrap();
        let (_, teacher) = common::teacher();
        std::fs::copy(teacher, dir.join("teacher.safetensors")).unwrap();
        std::fs::write(dir.join("config.toml"), "arch = \"light_nn\"\nepochs = 1\n").unwrap();
        std::fs::write(dir.join("notes.txt"), "keep me\n").unwrap();
        let file = std::fs::File::create(dir.join("image.png")).unwrap();
        let mut enc = png::Encoder::new(file, 8, 8);
        enc.set_color(png::ColorType::Rgb);
        enc.write_header()
            .unwrap()
            .write_image_data(&[90u8; 8 * 8 * 3])
            .unwrap();
        let values: Vec<u8> = (0..3 * 16 * 16)
            .flat_map(|i| (i as f32 / 100.0).to_le_bytes())
            .collect();
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![1, 3, 16, 16],
            &values,
        )
        .unwrap();
        std::fs::write(
            dir.join("images.safetensors"),
            safetensors::serialize([("images", view)], None).unwrap(),
        )
        .unwrap();
        // Inputs that are not plain files: a FIFO, a link, a dangling link,
        // and a model whose metadata lies (a zero std).
        Command::new("mkfifo")
            .arg(dir.join("pipe"))
            .status()
            .unwrap();
        std::os::unix::fs::symlink(
            dir.join("teacher.safetensors"),
            dir.join("link.safetensors"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling.safetensors")).unwrap();
        let file = kd_core::weights::read(teacher).unwrap();
        let mut meta: std::collections::HashMap<_, _> = file.metadata.clone().into_iter().collect();
        meta.insert(
            "kd.normalization".into(),
            r#"{"mean":[0.5,0.5,0.5],"std":[0.0,0.0,0.0]}"#.into(),
        );
        let tensors: Vec<_> = file.tensors.into_iter().collect();
        kd_core::weights::save(&dir.join("lying.safetensors"), &tensors, meta).unwrap();
        let hashes = snapshot(root.path());
        (root, hashes)
    })
}

/// Every file under `dir` (but the work folders) with its hash.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("work"))
            {
                continue;
            }
            // Links are recorded by target and FIFOs by name: reading one would block.
            let kind = std::fs::symlink_metadata(&p).unwrap().file_type();
            if kind.is_symlink() {
                out.insert(
                    p.clone(),
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if kind.is_dir() {
                stack.push(p);
            } else if kind.is_file() {
                out.insert(p.clone(), common::sha(&p));
            } else {
                out.insert(p.clone(), "special".into());
            }
        }
    }
    out
}

/// A flag with a value or a path (most draws, so that many command lines
/// get past parsing into the command itself), or a lone token.
fn tokens() -> impl Strategy<Value = Vec<String>> {
    let value = prop_oneof![
        proptest::sample::select(VALUES).prop_map(str::to_string),
        proptest::sample::select(PATHS).prop_map(str::to_string),
    ];
    let lone = prop_oneof![
        proptest::sample::select(FLAGS).prop_map(str::to_string),
        proptest::sample::select(VALUES).prop_map(str::to_string),
        proptest::sample::select(PATHS).prop_map(str::to_string),
    ];
    prop_oneof![
        4 => (proptest::sample::select(FLAGS), value).prop_map(|(f, v)| vec![f.to_string(), v]),
        1 => lone.prop_map(|t| vec![t]),
    ]
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(40);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_command_lines_never_panic_or_touch_other_files(
        command in proptest::sample::select(COMMANDS),
        tokens in proptest::collection::vec(tokens(), 0..5),
    ) {
        let (root, before) = inputs();
        let work = tempfile::Builder::new().prefix("work").tempdir_in(root.path()).unwrap();
        let mut args: Vec<String> = vec![command.to_string()];
        if matches!(command, "train" | "reproduce" | "eval") {
            // A small, fast default that the drawn flags may override.
            args.extend(["--dataset", "synthetic", "--synthetic-shape", "3,8,8", "--train-subset", "32", "--test-subset", "16"].map(String::from));
            if command != "eval" {
                args.extend(["--epochs", "1"].map(String::from));
            }
        }
        args.extend(tokens.into_iter().flatten());
        let mut child = Command::new(env!("CARGO_BIN_EXE_kd-e2e"))
            .args(args.iter().map(|a| os_arg(a)))
            .current_dir(work.path())
            .env("KD_CACHE", work.path().join("kd-cache"))
            .env("HF_HOME", work.path().join("hf-home"))
            .env("HF_HUB_OFFLINE", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A drawn command line may ask for hours of training: past the
        // deadline it is stopped, which is not a failure.
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        if let Some(status) = status {
            prop_assert!(
                matches!(status.code(), Some(0..=2)),
                "kd {:?} ended with {:?}:\n{}", args, status, err
            );
        }
        prop_assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "kd {:?}:\n{}", args, err);
        prop_assert_eq!(&snapshot(root.path()), before, "kd {:?} changed a file outside its folder", args);
        let stray: Vec<_> = std::fs::read_dir(root.path()).unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "inputs" && !n.starts_with("work"))
            .collect();
        prop_assert!(stray.is_empty(), "kd {:?} wrote {:?} beside its folder", args, stray);
    }
}
