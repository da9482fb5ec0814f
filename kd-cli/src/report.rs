//! What `kd reproduce` and `kd report` write: every seed's numbers, and per
//! phase the mean, spread and paired difference against the CE student.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The files [`Summary::write`] writes into a run folder.
pub const SUMMARY: &str = "summary.json";
pub const REPORT: &str = "report.md";
pub const PLOT: &str = "plot.png";
pub const FILES: [&str; 3] = [SUMMARY, REPORT, PLOT];

/// One phase of one seed, as trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseRun {
    pub seed: u64,
    pub phase: String,
    pub method: String,
    /// Whether the phase trained the teacher.
    pub teacher: bool,
    /// Whether the phase distilled from the teacher.
    pub distils: bool,
    /// Test accuracy (%) after the last epoch.
    pub accuracy: f64,
    /// The best test accuracy over the epochs; chosen on the test set, so optimistic.
    pub best_accuracy: f64,
    pub seconds: f64,
    /// Per epoch: (training loss, test accuracy where the epoch was tested).
    pub curve: crate::plot::Curve,
    /// The training images the phase saw (0 in summaries written before it was recorded).
    #[serde(default)]
    pub train_images: usize,
    /// The epochs the phase trained for (0 in summaries written before it was recorded).
    #[serde(default)]
    pub epochs: usize,
}

/// Mean, sample standard deviation (n − 1; none for one value), range and count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub mean: f64,
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stats {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
        Self {
            mean,
            std: (n > 1).then(|| var.sqrt()),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n,
        }
    }

    fn mean_std(&self, sign: bool) -> String {
        let mean = if sign {
            format!("{:+.2}", self.mean)
        } else {
            format!("{:.2}", self.mean)
        };
        match self.std {
            Some(sd) => format!("{mean} ± {sd:.2}"),
            None => mean,
        }
    }
}

/// A phase against the CE student of the same seed (same initialisation and data order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// (seed, accuracy − CE accuracy), last epoch.
    pub differences: Vec<(u64, f64)>,
    pub stats: Stats,
    /// Seeds on which the phase beat the CE student.
    pub wins: usize,
    /// The 95 % confidence interval of the mean difference (Student's t over
    /// the seeds); none for one seed.
    #[serde(default)]
    pub interval: Option<(f64, f64)>,
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (the
/// table's values to 30, then the Cornish-Fisher expansion around the
/// normal's 1.96, within 0.001 there).
fn t_975(df: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        1..=30 => TABLE[df - 1],
        _ => {
            let (z, n) = (1.959964f64, df as f64);
            z + (z.powi(3) + z) / (4.0 * n)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * n * n)
        }
    }
}

impl Stats {
    /// The 95 % confidence interval of the mean (t-distribution).
    pub fn interval(&self) -> Option<(f64, f64)> {
        let half =
            t_975(self.n.checked_sub(1).filter(|d| *d > 0)?) * self.std? / (self.n as f64).sqrt();
        Some((self.mean - half, self.mean + half))
    }
}

/// One phase over all seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseSummary {
    pub method: String,
    /// Mean last-epoch accuracy (the same as `last.mean`).
    pub accuracy: f64,
    pub last: Stats,
    /// Best epoch, chosen on the test set: optimistic.
    pub best: Stats,
    pub seconds: f64,
    pub vs_ce: Option<Paired>,
}

/// `summary.json`: how the runs were made, every run, and the aggregates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub recipe: String,
    pub dataset: String,
    pub train_images: usize,
    pub test_images: usize,
    pub device: String,
    pub seeds: Vec<u64>,
    pub shared_teacher: bool,
    /// The resolved settings (the run's settings.toml; `seed` is the first seed).
    pub settings: toml::Table,
    pub runs: Vec<PhaseRun>,
    /// Phase name -> aggregate, in the recipe's order (see `order`).
    pub phases: BTreeMap<String, PhaseSummary>,
    pub order: Vec<String>,
    /// The recipe's pair, TEACHER-STUDENT (empty in summaries written before pairs).
    #[serde(default)]
    pub pair: String,
    /// Published test accuracies (%) for this pair, by phase (the recipe names the source).
    #[serde(default)]
    pub published: BTreeMap<String, f64>,
    /// What each phase's model costs to run, measured on the run's device after training.
    #[serde(default)]
    pub costs: BTreeMap<String, crate::cost::Cost>,
}

impl Summary {
    /// Fills `phases` and `order` from `runs`. The baseline is the first phase
    /// that neither trains the teacher nor distils.
    pub fn aggregate(mut self) -> Self {
        let mut order: Vec<String> = Vec::new();
        for r in &self.runs {
            if !order.contains(&r.phase) {
                order.push(r.phase.clone());
            }
        }
        let baseline = self
            .runs
            .iter()
            .find(|r| !r.teacher && !r.distils)
            .map(|r| r.phase.clone());
        fn of<'a>(runs: &'a [PhaseRun], phase: &'a str) -> impl Iterator<Item = &'a PhaseRun> {
            runs.iter().filter(move |r| r.phase == phase)
        }
        let mut phases = BTreeMap::new();
        for name in &order {
            let runs: Vec<&PhaseRun> = of(&self.runs, name).collect();
            let last = Stats::of(&runs.iter().map(|r| r.accuracy).collect::<Vec<_>>());
            let best = Stats::of(&runs.iter().map(|r| r.best_accuracy).collect::<Vec<_>>());
            let vs_ce = match &baseline {
                Some(b) if b != name && !runs[0].teacher => {
                    let differences: Vec<(u64, f64)> = runs
                        .iter()
                        .filter_map(|r| {
                            of(&self.runs, b)
                                .find(|c| c.seed == r.seed)
                                .map(|c| (r.seed, r.accuracy - c.accuracy))
                        })
                        .collect();
                    (!differences.is_empty()).then(|| {
                        let stats = Stats::of(&differences.iter().map(|d| d.1).collect::<Vec<_>>());
                        Paired {
                            interval: stats.interval(),
                            stats,
                            wins: differences.iter().filter(|d| d.1 > 0.0).count(),
                            differences,
                        }
                    })
                }
                _ => None,
            };
            phases.insert(
                name.clone(),
                PhaseSummary {
                    method: runs[0].method.clone(),
                    accuracy: last.mean,
                    last,
                    best,
                    seconds: runs.iter().map(|r| r.seconds).sum::<f64>() / runs.len() as f64,
                    vs_ce,
                },
            );
        }
        self.phases = phases;
        self.order = order;
        self
    }

    /// The comparison as a Markdown table.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| phase | method | last epoch (%) | min–max | n | vs CE (paired) | 95 % interval | won | best epoch (%, test-selected) | time |",
        );
        let published = !self.published.is_empty();
        s.push_str(if published {
            " published (%) |\n"
        } else {
            "\n"
        });
        s.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        s.push_str(if published { "---:|\n" } else { "\n" });
        for name in &self.order {
            let p = &self.phases[name];
            let (vs, interval, won) = match &p.vs_ce {
                Some(d) => (
                    d.stats.mean_std(true),
                    d.interval
                        .map_or(String::new(), |(lo, hi)| format!("{lo:+.2} to {hi:+.2}")),
                    format!("{}/{}", d.wins, d.stats.n),
                ),
                None => (String::new(), String::new(), String::new()),
            };
            let shown = match (published, self.published.get(name)) {
                (true, Some(a)) => format!(" {a:.2} |"),
                (true, None) => " |".to_string(),
                (false, _) => String::new(),
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {} | {:.2}–{:.2} | {} | {vs} | {interval} | {won} | {} | {:.1} s |{shown}",
                p.method,
                p.last.mean_std(false),
                p.last.min,
                p.last.max,
                p.last.n,
                p.best.mean_std(false),
                p.seconds
            );
        }
        s
    }

    /// "What the student buys": each phase's accuracy against its size and
    /// speed, with the speed-up over the teacher's batch-1 latency.
    pub fn costs_table(&self) -> Option<String> {
        let teacher = self.runs.iter().find(|r| r.teacher)?;
        let base = self.costs.get(&teacher.phase)?.kd.latency.median_ms;
        let mut s = String::from(
            "| phase | arch | last epoch (%) | parameters | MACs | batch 1 latency (median) | throughput | speed-up |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for name in &self.order {
            let (Some(c), Some(p)) = (self.costs.get(name), self.phases.get(name)) else {
                continue;
            };
            let _ = writeln!(
                s,
                "| {name} | {} | {:.2} | {} | {} | {:.2} ms | {:.0} img/s (batch {}) | {:.1}x |",
                c.arch,
                p.last.mean,
                thousands(c.parameters),
                thousands(c.macs as usize),
                c.kd.latency.median_ms,
                c.kd.images_per_second,
                c.kd.batch,
                base / c.kd.latency.median_ms
            );
        }
        Some(s)
    }

    /// Which phases trained on fewer images, or for other epochs, than the
    /// first phase, said plainly (a teacher that saw more than its students).
    fn image_note(&self) -> Option<String> {
        let first = self.runs.first()?;
        let differ: Vec<String> = self
            .order
            .iter()
            .filter_map(|p| {
                let r = self.runs.iter().find(|r| &r.phase == p)?;
                let fewer = r.train_images > 0 && r.train_images < self.train_images;
                (fewer || r.epochs != first.epochs)
                    .then(|| format!("`{p}` on {} images for {} epochs", r.train_images, r.epochs))
            })
            .collect();
        (!differ.is_empty()).then(|| {
            format!(
                "Training: `{}` on {} images for {} epochs; {}. The students and their CE baseline see the same images for the same epochs.",
                first.phase,
                first.train_images,
                first.epochs,
                differ.join(", ")
            )
        })
    }

    /// The settings that must agree for runs to be aggregated: all but the seed.
    fn comparable(&self) -> toml::Table {
        let mut t = self.settings.clone();
        t.remove("seed");
        t.insert("recipe".into(), self.recipe.clone().into());
        t.insert("dataset".into(), self.dataset.clone().into());
        t.insert("shared_teacher".into(), self.shared_teacher.into());
        t.insert("pair".into(), self.pair.clone().into());
        t
    }

    /// Merges summaries of runs that differ only in their seeds; refuses
    /// others, naming the first setting that differs, and repeated seeds.
    pub fn merge(parts: Vec<(String, Summary)>) -> Result<Summary> {
        let mut iter = parts.into_iter();
        let (first_name, mut merged) = iter.next().context("no run to report")?;
        let want = merged.comparable();
        for (name, s) in iter {
            let got = s.comparable();
            let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
            if let Some(k) = keys.into_iter().find(|k| want.get(*k) != got.get(*k)) {
                let show =
                    |v: Option<&toml::Value>| v.map_or("unset".to_string(), |v| v.to_string());
                bail!(
                    "{name} and {first_name} differ in `{k}` ({} against {}): only runs that differ in their seed can be aggregated",
                    show(got.get(k)),
                    show(want.get(k))
                );
            }
            for seed in &s.seeds {
                if merged.seeds.contains(seed) {
                    bail!("seed {seed} is in {name} and in an earlier run: each seed may be counted once");
                }
            }
            merged.seeds.extend(&s.seeds);
            merged.runs.extend(s.runs);
        }
        Ok(merged.aggregate())
    }

    pub fn read(dir: &Path) -> Result<Summary> {
        let path = dir.join(SUMMARY);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{} is not a finished kd reproduce run (no summary.json)",
                dir.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} cannot be read as a kd summary", path.display()))
    }

    /// Writes summary.json, report.md and plot.png into `dir`.
    pub fn write(&self, dir: &Path, summary_line: &str) -> Result<()> {
        kd_core::weights::write_atomic(
            &dir.join(SUMMARY),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )?;
        let mut report = String::new();
        writeln!(report, "# kd: `{}` on {}\n", self.recipe, self.dataset)?;
        writeln!(report, "{summary_line}\n")?;
        writeln!(
            report,
            "{} training images, {} test images, device {}, seeds {:?}{}.\n",
            self.train_images,
            self.test_images,
            self.device,
            self.seeds,
            if self.shared_teacher {
                " (one teacher, trained with the first seed)"
            } else {
                ""
            }
        )?;
        writeln!(report, "{}", self.table())?;
        if let Some(note) = self.image_note() {
            writeln!(report, "{note}\n")?;
        }
        if let Some(costs) = self.costs_table() {
            writeln!(
                report,
                "## What the student buys\n\n{costs}\nMeasured with kd's forward pass on {} after training (as `kd bench` does; MACs per image).\n",
                self.device
            )?;
        }
        writeln!(
            report,
            "How to read it: *last epoch* is each seed's test accuracy after its final epoch, as mean ± \
             sample standard deviation over the n seeds, with the range; *vs CE* is the paired difference \
             against the CE student trained with the same seed (same initialisation and data order), and \
             *won* counts the seeds on which the phase beat it. *Best epoch* picks each seed's best epoch \
             by its test accuracy, so it is optimistic; trust the last epoch, and a difference only when it \
             is large against its spread.\n"
        )?;
        writeln!(
            report,
            "![test accuracy per epoch, mean and min–max over seeds](plot.png)\n"
        )?;
        writeln!(
            report,
            "## Settings\n\n```toml\n{}```",
            toml::to_string(&self.settings).unwrap_or_default()
        )?;
        kd_core::weights::write_atomic(&dir.join(REPORT), report.as_bytes())?;
        let curves: Vec<(String, Vec<crate::plot::Curve>)> = self
            .order
            .iter()
            .map(|p| {
                let per_seed = self
                    .runs
                    .iter()
                    .filter(|r| &r.phase == p)
                    .map(|r| r.curve.clone())
                    .collect();
                (p.clone(), per_seed)
            })
            .collect();
        crate::plot::curves(&dir.join(PLOT), &curves)
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with control characters (but line breaks) shown as escapes: a
/// file's metadata must not drive the terminal (colours, cursor, title).
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' => c.to_string(),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, phase: &str, accuracy: f64) -> PhaseRun {
        PhaseRun {
            seed,
            phase: phase.into(),
            method: phase.into(),
            teacher: phase == "teacher",
            distils: phase != "teacher" && phase != "ce",
            accuracy,
            best_accuracy: accuracy + 1.0,
            seconds: 2.0,
            curve: vec![(1.0, Some(accuracy - 1.0)), (0.5, Some(accuracy))],
            train_images: 100,
            epochs: 2,
        }
    }

    fn summary(seeds: &[u64], rows: &[(u64, &str, f64)]) -> Summary {
        Summary {
            recipe: "tutorial".into(),
            dataset: "synthetic".into(),
            train_images: 10,
            test_images: 10,
            device: "cpu".into(),
            seeds: seeds.to_vec(),
            shared_teacher: false,
            settings: toml::toml! { lr = 0.001 seed = 42 },
            runs: rows.iter().map(|(s, p, a)| run(*s, p, *a)).collect(),
            phases: BTreeMap::new(),
            order: Vec::new(),
            pair: "deep_nn-light_nn".into(),
            published: BTreeMap::new(),
            costs: BTreeMap::new(),
        }
        .aggregate()
    }

    fn cost(arch: &str, median_ms: f64) -> crate::cost::Cost {
        let speed = crate::cost::Speed {
            latency: crate::cost::Latency {
                median_ms,
                p95_ms: median_ms * 1.5,
            },
            batch: 64,
            images_per_second: 1000.0 / median_ms,
        };
        crate::cost::Cost {
            arch: arch.into(),
            parameters: 1234567,
            macs: 89,
            kd: speed,
            onnx: None,
        }
    }

    #[test]
    fn what_the_student_buys_is_the_teachers_latency_over_each_phases() {
        let mut s = summary(
            &[1],
            &[(1, "teacher", 90.0), (1, "ce", 80.0), (1, "kd", 82.0)],
        );
        assert!(s.costs_table().is_none(), "no costs measured, no table");
        s.costs.insert("teacher".into(), cost("deep_nn", 10.0));
        s.costs.insert("kd".into(), cost("light_nn", 2.5));
        let table = s.costs_table().unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(lines[2].starts_with("| teacher | deep_nn | 90.00 | 1,234,567 | 89 | 10.00 ms"));
        assert!(lines[2].ends_with("| 1.0x |"), "{}", lines[2]);
        assert!(
            lines[3].starts_with("| kd | light_nn | 82.00 |"),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with("| 4.0x |"), "{}", lines[3]);
    }

    /// Hand-computed: kd at 80, 83, 86 has mean 83 and sample std 3; against
    /// CE at 81, 82, 86 the differences are -1, +1, 0: mean 0, std 1, one win.
    #[test]
    fn aggregates_match_hand_computed_values() {
        let s = summary(
            &[1, 2, 3],
            &[
                (1, "ce", 81.0),
                (2, "ce", 82.0),
                (3, "ce", 86.0),
                (1, "kd", 80.0),
                (2, "kd", 83.0),
                (3, "kd", 86.0),
            ],
        );
        let kd = &s.phases["kd"];
        assert_eq!(
            (
                kd.last.mean,
                kd.last.std,
                kd.last.min,
                kd.last.max,
                kd.last.n
            ),
            (83.0, Some(3.0), 80.0, 86.0, 3)
        );
        assert_eq!(kd.best.mean, 84.0);
        let d = kd.vs_ce.as_ref().unwrap();
        assert_eq!(d.differences, vec![(1, -1.0), (2, 1.0), (3, 0.0)]);
        assert_eq!((d.stats.mean, d.stats.std, d.wins), (0.0, Some(1.0), 1));
        // t(0.975, 2) = 4.303: the half-width is 4.303 / sqrt(3).
        let (lo, hi) = d.interval.unwrap();
        assert!((hi - 4.303 / 3f64.sqrt()).abs() < 1e-9 && (lo + hi).abs() < 1e-12);
        assert!(s.phases["ce"].vs_ce.is_none());
        assert_eq!(s.order, ["ce", "kd"]);
        assert!(
            s.table()
                .contains("| kd | kd | 83.00 ± 3.00 | 80.00–86.00 | 3 | +0.00 ± 1.00 | -2.48 to +2.48 | 1/3 |"),
            "{}",
            s.table()
        );
    }

    #[test]
    fn merging_single_seed_runs_equals_the_multi_seed_run() {
        let rows = [
            (1, "ce", 81.0),
            (1, "kd", 80.0),
            (2, "ce", 82.0),
            (2, "kd", 83.0),
        ];
        let both = summary(&[1, 2], &rows);
        let one = summary(&[1], &rows[..2]);
        let two = summary(&[2], &rows[2..]);
        let merged = Summary::merge(vec![("a".into(), one), ("b".into(), two)]).unwrap();
        assert_eq!(merged.phases, both.phases);
        assert_eq!(merged.seeds, both.seeds);
    }

    #[test]
    fn merging_runs_with_other_settings_is_refused_naming_the_setting() {
        let one = summary(&[1], &[(1, "ce", 81.0)]);
        let mut two = summary(&[2], &[(2, "ce", 82.0)]);
        two.settings.insert("lr".into(), 0.01.into());
        let err = Summary::merge(vec![("a".into(), one.clone()), ("b".into(), two)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`lr`"), "{err}");
        let err = Summary::merge(vec![("a".into(), one.clone()), ("b".into(), one)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("seed 1"), "{err}");
    }
}
