//! Running the `kd` binary and looking at what it wrote.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// The binary under test: this build's, or `KD_E2E_BIN` (to show that a
/// test fails on an older build).
pub fn kd_bin() -> PathBuf {
    std::env::var_os("KD_E2E_BIN")
        .map_or_else(|| env!("CARGO_BIN_EXE_kd-e2e").into(), PathBuf::from)
}

pub fn kd(args: &[&str], dir: &Path) -> Output {
    Command::new(kd_bin())
        .args(args)
        .current_dir(dir)
        .env("KD_CACHE", dir.join("kd-cache"))
        .env("HF_HOME", dir.join("hf-home"))
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("kd runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs kd and insists on success, showing its output otherwise.
pub fn ok(args: &[&str], dir: &Path) -> Output {
    let o = kd(args, dir);
    assert!(
        o.status.success(),
        "kd {args:?} failed:\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    o
}

/// Runs kd and insists on exit code `code`, returning stderr.
pub fn fails(args: &[&str], dir: &Path, code: i32) -> String {
    let o = kd(args, dir);
    assert_eq!(
        o.status.code(),
        Some(code),
        "kd {args:?}: stdout {}\nstderr {}",
        stdout(&o),
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(
        !err.contains("stack backtrace") && !err.contains("panicked"),
        "no panic or backtrace: {err}"
    );
    err
}

pub fn sha(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

/// The small synthetic set every test uses: fast on a CPU, yet learnable.
pub const DATA: &[&str] = &[
    "--dataset",
    "synthetic",
    "--synthetic-shape",
    "3,16,16",
    "--train-subset",
    "384",
    "--test-subset",
    "200",
];

/// `kd train` of the light student on [`DATA`], plus `extra`.
pub fn train_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["train", "--arch", "light_nn"];
    v.extend(DATA);
    v.extend(extra);
    v
}

/// `kd train` of the light student for one quiet epoch, plus `extra`.
pub fn train<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = train_args(&["--epochs", "1", "--quiet"]);
    v.extend(extra);
    v
}

/// One teacher, trained once and shared by the tests of this binary.
pub fn teacher() -> &'static (tempfile::TempDir, PathBuf) {
    static T: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec![
            "train",
            "--arch",
            "deep_nn",
            "--epochs",
            "2",
            "--lr",
            "0.002",
            "--out",
            "teacher.safetensors",
            "--quiet",
        ];
        args.extend(DATA);
        ok(&args, dir.path());
        let path = dir.path().join("teacher.safetensors");
        (dir, path)
    })
}

/// A safetensors file's (name, shape) pairs, sorted, and its metadata.
pub type Listing = (
    Vec<(String, Vec<usize>)>,
    std::collections::HashMap<String, String>,
);

pub fn tensors(path: &Path) -> Listing {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<(String, Vec<usize>)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec()))
        .collect();
    names.sort();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    (names, meta.metadata().clone().unwrap_or_default())
}

/// "Test accuracy: 12.34%" -> 12.34
pub fn accuracy(text: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.starts_with("Test accuracy:"))
        .unwrap_or_else(|| panic!("no accuracy in {text}"));
    line["Test accuracy:".len()..]
        .trim()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every tensor's name and raw bytes, sorted: for bitwise comparisons that
/// ignore metadata.
pub fn weights_bits(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut v: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.data().to_vec()))
        .collect();
    v.sort();
    v
}

/// A `width` x `height` RGB PNG of colour `rgb` with a faint pattern.
pub fn png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| [rgb[0], rgb[1].wrapping_add((i % 7) as u8), rgb[2]])
        .collect();
    enc.write_header()
        .unwrap()
        .write_image_data(&pixels)
        .unwrap();
    out
}
