//! Nothing lost: a run killed at any point resumes to the same bits; Ctrl-C
//! checkpoints; numerical faults stop cleanly.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RUN: &[&str] = &[
    "train",
    "--arch",
    "light_nn",
    "--dataset",
    "synthetic",
    "--synthetic-shape",
    "3,16,16",
    "--train-subset",
    "384",
    "--test-subset",
    "64",
    "--batch-size",
    "32",
    "--epochs",
    "2",
    "--lr",
    "0.003",
    "--checkpoint-every",
    "3",
    "--quiet",
];

/// SGD with momentum and weight decay, a schedule that moves at epoch 1, and
/// random crops and flips: every piece of state a resume must restore.
const AUGMENTED_SGD: &[&str] = &[
    "--optimizer",
    "sgd",
    "--momentum",
    "0.9",
    "--weight-decay",
    "5e-4",
    "--lr-schedule",
    "multistep",
    "--milestones",
    "1",
    "--augment",
    "crop-flip",
];

fn start(dir: &Path, out: &str) -> std::process::Child {
    start_with(dir, out, &[])
}

fn start_with(dir: &Path, out: &str, extra: &[&str]) -> std::process::Child {
    let mut args = RUN.to_vec();
    args.extend(extra);
    args.extend(["--out", out]);
    Command::new(env!("CARGO_BIN_EXE_kd-e2e"))
        .args(&args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `run_dir` holds a checkpoint past the first epoch's third batch.
fn wait_for_checkpoint(run_dir: &Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = std::fs::read_dir(run_dir)
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("checkpoint-e0000-b000006")
                })
            })
            .unwrap_or(false);
        if found {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn uninterrupted() -> Vec<(String, Vec<u8>)> {
    uninterrupted_with(&[])
}

fn uninterrupted_with(extra: &[&str]) -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = RUN.to_vec();
    args.extend(extra);
    args.extend(["--out", "whole.safetensors"]);
    ok(&args, dir.path());
    weights_bits(&dir.path().join("whole.safetensors"))
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_bitwise_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "s.safetensors");
    wait_for_checkpoint(&dir.path().join("s.run"), &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    assert!(
        !dir.path().join("s.safetensors").exists(),
        "killed before the end"
    );
    let err = stderr(&ok(&["train", "--resume", "s.run"], dir.path()));
    assert!(!err.contains("error"), "{err}");
    assert_eq!(
        weights_bits(&dir.path().join("s.safetensors")),
        uninterrupted(),
        "resumed run == uninterrupted run, bit for bit"
    );
    assert!(dir.path().join("s.run/best.safetensors").exists());
    let kept = std::fs::read_dir(dir.path().join("s.run"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("checkpoint-")
        })
        .count();
    assert_eq!(kept, 2, "the last two checkpoints are kept");
}

#[test]
fn an_augmented_sgd_run_killed_mid_epoch_resumes_to_bitwise_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_with(dir.path(), "s.safetensors", AUGMENTED_SGD);
    wait_for_checkpoint(&dir.path().join("s.run"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.path().join("s.safetensors").exists(),
        "killed before the end"
    );
    ok(&["train", "--resume", "s.run"], dir.path());
    let whole = uninterrupted_with(AUGMENTED_SGD);
    assert_eq!(
        weights_bits(&dir.path().join("s.safetensors")),
        whole,
        "resumed run == uninterrupted run, bit for bit"
    );
    assert_ne!(whole, uninterrupted(), "the settings change the result");
}

/// Sends `signal` mid-run: the run checkpoints, exits with 128 + the signal's
/// number and the resume command, and the resumed run ends with the same bits.
fn stop_with(signal: &str, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "s.safetensors");
    wait_for_checkpoint(&dir.path().join("s.run"), &mut child);
    Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{signal}: {err}");
    // The hint names the run folder by its absolute path: it works from anywhere.
    let hint = format!(
        "Resume with: kd train --resume {}",
        dir.path().join("s.run").display()
    );
    assert!(err.contains(&hint), "{err}");
    // Resumed from another folder: every path the run used is found again.
    let elsewhere = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("s.run");
    ok(
        &["train", "--resume", run_dir.to_str().unwrap()],
        elsewhere.path(),
    );
    assert!(
        std::fs::read_dir(elsewhere.path()).unwrap().all(|e| {
            let n = e.unwrap().file_name();
            n == "kd-cache" || n == "hf-home"
        }),
        "nothing written to the folder kd was started from"
    );
    assert_eq!(
        weights_bits(&dir.path().join("s.safetensors")),
        uninterrupted()
    );
}

#[test]
fn ctrl_c_checkpoints_says_how_to_resume_and_the_resume_matches() {
    stop_with("INT", 130);
}

#[test]
fn sigterm_and_sighup_stop_like_ctrl_c_with_their_own_exit_codes() {
    stop_with("TERM", 143);
    stop_with("HUP", 129);
}

#[test]
fn resuming_with_a_changed_setting_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let mut fixed: Vec<&str> = Vec::new();
    // RUN has "--epochs 2"; replace it by 1 epoch for a quick first run.
    let mut it = RUN.iter();
    while let Some(a) = it.next() {
        if *a == "--epochs" {
            it.next();
            continue;
        }
        fixed.push(a);
    }
    fixed.extend(["--epochs", "1", "--out", "s.safetensors"]);
    ok(&fixed, dir.path());
    let err = fails(
        &["train", "--resume", "s.run", "--seed", "7", "--epochs", "2"],
        dir.path(),
        1,
    );
    assert!(err.contains("seed") && err.contains("--force"), "{err}");
    let err = fails(
        &[
            "train",
            "--resume",
            "s.run",
            "--batch-size",
            "16",
            "--epochs",
            "2",
        ],
        dir.path(),
        1,
    );
    assert!(err.contains("batch_size"), "{err}");
    // More epochs are fine: the run continues.
    ok(
        &["train", "--resume", "s.run", "--epochs", "2", "--quiet"],
        dir.path(),
    );
    let err = fails(&["train", "--resume", "nowhere"], dir.path(), 1);
    assert!(
        err.contains("nowhere") && err.contains("no checkpoint"),
        "{err}"
    );
}

#[test]
fn a_diverging_run_stops_with_a_remedy_and_writes_no_nan_weights() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        &[
            "train",
            "--arch",
            "light_nn",
            "--dataset",
            "synthetic",
            "--synthetic-shape",
            "3,16,16",
            "--train-subset",
            "256",
            "--lr",
            "1e30",
            "--out",
            "s.safetensors",
        ],
        dir.path(),
        1,
    );
    assert!(
        err.contains("epoch 1, batch") && err.contains("--lr"),
        "{err}"
    );
    assert!(err.contains("NaN") || err.contains("inf"), "{err}");
    assert!(
        !dir.path().join("s.safetensors").exists(),
        "no weights written"
    );
}

#[test]
fn reproduce_resume_keeps_finished_phases_and_continues_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["reproduce", "--epochs", "1", "--out", "run", "--quiet"];
    args.extend(DATA);
    ok(&args, dir.path());
    let run = dir.path().join("run");
    let seed = run.join("seed-42");
    let kept = sha(&seed.join("kd.safetensors"));
    // As if the run had died during its last phase: its weights were never written.
    std::fs::remove_file(seed.join("fitnets.safetensors")).unwrap();
    std::fs::remove_file(run.join("summary.json")).unwrap();
    let o = ok(&["reproduce", "--resume", "run"], dir.path());
    let err = stderr(&o);
    assert_eq!(err.matches("finished before").count(), 4, "{err}");
    assert!(seed.join("fitnets.safetensors").exists() && run.join("summary.json").exists());
    assert_eq!(
        sha(&seed.join("kd.safetensors")),
        kept,
        "finished phases are kept as they were"
    );
    let err = fails(
        &["reproduce", "--resume", "run", "--seed", "3"],
        dir.path(),
        1,
    );
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn a_fresh_run_over_an_earlier_runs_checkpoints_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut args: Vec<&str> = RUN
        .iter()
        .copied()
        .filter(|a| *a != "--checkpoint-every" && *a != "3")
        .collect();
    args.extend(["--out", "s.safetensors"]);
    ok(&args, dir.path());
    let before = sha(&dir.path().join("s.safetensors"));
    let err = fails(&args, dir.path(), 1);
    assert!(
        err.contains("s.safetensors") && err.contains("--overwrite"),
        "{err}"
    );
    // Another output, the same run folder: the earlier run's checkpoints are refused.
    let mut args: Vec<&str> = args[..args.len() - 2].to_vec();
    args.extend(["--out", "t.safetensors", "--run-dir", "s.run"]);
    let err = fails(&args, dir.path(), 1);
    assert!(err.contains("s.run") && err.contains("--resume"), "{err}");
    assert!(!dir.path().join("t.safetensors").exists());
    assert_eq!(sha(&dir.path().join("s.safetensors")), before);
}
