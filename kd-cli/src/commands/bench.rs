//! `kd bench`: what models cost to run on this machine, and so what a
//! student buys against its teacher.
use anyhow::Result;

use crate::cli::BenchArgs;
use crate::cost::{cost, Cost};
use crate::report::thousands;

pub fn run(args: &BenchArgs) -> Result<()> {
    let mut rows = Vec::new();
    for path in &args.models {
        let (model, _, local) = super::export::load(path, &args.model_args)?;
        eprintln!("timing {} ({}) ...", path.display(), model.arch.name);
        let cost = cost(&model, args.batch, args.runs, args.onnx)?;
        let bytes = std::fs::metadata(&local).map(|m| m.len()).unwrap_or(0);
        rows.push((path.display().to_string(), bytes, cost));
    }
    if args.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, b, c)| serde_json::json!({"model": p, "file_bytes": b, "cost": c}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{}", table(&rows, args.batch));
    println!(
        "Latency: batch 1, median and 95th percentile of {} runs after warm-up; throughput at batch {}. \
         Speed-up: the first model's batch-1 latency over each one's, same engine. {} CPU threads available.",
        args.runs,
        args.batch,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    Ok(())
}

/// The rows as a Markdown table, one line per model and engine.
fn table(rows: &[(String, u64, Cost)], batch: usize) -> String {
    let mut s = format!(
        "| model | arch | parameters | MACs | file | engine | batch 1 median | p95 | batch {batch} | speed-up |\n\
         |---|---|---:|---:|---:|---|---:|---:|---:|---:|\n"
    );
    let reference = rows.first().map(|r| (r.2.kd, r.2.onnx));
    for (path, bytes, c) in rows {
        let engines = [
            ("kd", Some(c.kd), reference.map(|r| r.0)),
            ("onnx (tract)", c.onnx, reference.and_then(|r| r.1)),
        ];
        for (engine, speed, base) in engines {
            let Some(sp) = speed else { continue };
            let up = base.map_or(String::new(), |b| {
                format!("{:.1}x", b.latency.median_ms / sp.latency.median_ms)
            });
            s.push_str(&format!(
                "| {path} | {} | {} | {} | {:.1} MB | {engine} | {:.2} ms | {:.2} ms | {:.0} img/s | {up} |\n",
                c.arch,
                thousands(c.parameters),
                thousands(c.macs as usize),
                *bytes as f64 / 1e6,
                sp.latency.median_ms,
                sp.latency.p95_ms,
                sp.images_per_second,
            ));
        }
    }
    s
}
