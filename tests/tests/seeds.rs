//! Several seeds: `kd reproduce --seeds` keeps every seed's numbers and their
//! aggregates, and `kd report` combines single-seed runs into the same aggregate.
mod common;

use common::*;
use serde_json::Value;

fn reproduce(dir: &std::path::Path, out: &str, seeds: &[&str]) -> Value {
    let mut args = vec!["reproduce", "--epochs", "1", "--out", out, "--quiet"];
    args.extend(seeds);
    args.extend(DATA);
    ok(&args, dir);
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("summary.json")).unwrap())
        .unwrap()
}

/// The numbers that do not depend on timing.
fn aggregates(summary: &Value) -> Vec<(String, Value, Value, Value)> {
    let phases = summary["phases"].as_object().unwrap();
    phases
        .iter()
        .map(|(k, p)| {
            (
                k.clone(),
                p["last"].clone(),
                p["best"].clone(),
                p["vs_ce"].clone(),
            )
        })
        .collect()
}

#[test]
fn two_seeds_give_per_seed_runs_aggregates_and_a_mergeable_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let both = reproduce(d, "both", &["--seed", "1", "--seeds", "1,2"]);
    assert_eq!(both["seeds"], serde_json::json!([1, 2]));
    let runs = both["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 10, "5 phases x 2 seeds");
    for seed in [1, 2] {
        assert!(d.join(format!("both/seed-{seed}/kd.safetensors")).exists());
        assert_eq!(runs.iter().filter(|r| r["seed"] == seed).count(), 5);
    }
    let kd = &both["phases"]["kd"];
    assert_eq!(kd["last"]["n"], 2);
    let (a, b) = (
        runs[2]["accuracy"].as_f64().unwrap(),
        runs[7]["accuracy"].as_f64().unwrap(),
    );
    assert_eq!(runs[2]["phase"], "kd");
    assert!((kd["last"]["mean"].as_f64().unwrap() - (a + b) / 2.0).abs() < 1e-9);
    assert_eq!(kd["vs_ce"]["differences"].as_array().unwrap().len(), 2);
    // As if the run had died in the second seed's last phase: resuming keeps the
    // nine finished seed x phase runs and trains the missing one.
    let kept = sha(&d.join("both/seed-2/kd.safetensors"));
    std::fs::remove_file(d.join("both/seed-2/fitnets.safetensors")).unwrap();
    std::fs::remove_file(d.join("both/summary.json")).unwrap();
    let err = stderr(&ok(&["reproduce", "--resume", "both"], d));
    assert_eq!(err.matches("finished before").count(), 9, "{err}");
    let settings = std::fs::read_to_string(d.join("both/settings.toml")).unwrap();
    assert!(
        settings.contains("recipe = \"tutorial\""),
        "the recipe is stored for --resume: {settings}"
    );
    assert_eq!(sha(&d.join("both/seed-2/kd.safetensors")), kept);
    let resumed: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("both/summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        aggregates(&resumed),
        aggregates(&both),
        "the same numbers as the uninterrupted run"
    );
    let table = stdout(&ok(&["report", "both", "--out", "again"], d));
    assert!(
        table.contains("| kd | kd |") && table.contains("/2 |"),
        "{table}"
    );
    let report = std::fs::read_to_string(d.join("both/report.md")).unwrap();
    assert!(
        report.contains("How to read it") && report.contains("paired difference"),
        "{report}"
    );

    // The same seeds run apart, then combined.
    reproduce(d, "one", &["--seed", "1"]);
    reproduce(d, "two", &["--seed", "2"]);
    ok(&["report", "one", "two", "--out", "merged", "--quiet"], d);
    let merged: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("merged/summary.json")).unwrap())
            .unwrap();
    assert_eq!(aggregates(&merged), aggregates(&both));
    assert!(d.join("merged/plot.png").exists() && d.join("merged/report.md").exists());

    // Runs that differ in more than the seed are not aggregated.
    let mut args = vec![
        "reproduce",
        "--epochs",
        "1",
        "--out",
        "fast",
        "--quiet",
        "--seed",
        "3",
        "--lr",
        "0.01",
    ];
    args.extend(DATA);
    ok(&args, d);
    let err = fails(&["report", "one", "fast", "--out", "mixed"], d, 1);
    assert!(err.contains("`lr`"), "{err}");
    assert!(!d.join("mixed/summary.json").exists());
}
