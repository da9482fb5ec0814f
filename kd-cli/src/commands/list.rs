use anyhow::Result;
use kd_core::{optim, registry};
use serde_json::json;

use crate::cli::ListArgs;

/// Parameters and multiply-accumulates of `arch` at `config` (None where it
/// cannot be built at that shape).
fn size(arch: &str, config: &kd_core::ArchConfig) -> (Option<usize>, Option<u64>) {
    match kd_core::Model::sized(arch, config.clone()) {
        Ok(m) => (Some(m.parameter_count()), m.macs().ok()),
        Err(_) => (None, None),
    }
}

pub fn run(args: &ListArgs) -> Result<()> {
    let example = kd_core::ArchConfig {
        input_shape: args.input_shape,
        num_classes: args.num_classes,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&example))?);
        return Ok(());
    }
    print_methods();
    print_archs(&example);
    print_recipes();
    print_data_and_training();
    Ok(())
}

/// Everything registered, for machines.
fn as_json(example: &kd_core::ArchConfig) -> serde_json::Value {
    let (methods, archs, recipes) = (registry::methods(), registry::archs(), registry::recipes());
    json!({
            "methods": methods.iter().map(|m| json!({
                "name": m.name,
                "summary": m.summary,
                "needs_teacher": m.needs_teacher(),
                "teacher_taps": m.taps,
                "params": m.params.iter().map(|p| json!({"name": p.name, "default": p.default, "help": p.help})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "architectures": archs.iter().map(|a| {
                let (params, macs) = size(a.name, example);
                json!({"name": a.name, "summary": a.summary, "input_shape": example.input_shape, "num_classes": example.num_classes, "taps": (a.taps)(example), "parameters": params, "macs": macs})
            }).collect::<Vec<_>>(),
            "recipes": recipes.iter().map(|r| json!({
                "name": r.name, "summary": r.summary,
                "pairs": r.pairs.iter().map(|p| json!({"teacher": p.teacher, "student": p.student, "published": p.published.iter().map(|(k, v)| (k.to_string(), *v)).collect::<std::collections::BTreeMap<_, _>>()})).collect::<Vec<_>>(),
                "runs": (r.runs)().iter().map(|x| json!({"name": x.name, "method": x.method})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "datasets": registry::datasets().iter().map(|d| json!({"name": d.name, "summary": d.summary, "shape": d.shape, "classes": d.classes, "default": d.default, "offline_fallback": d.offline_fallback})).collect::<Vec<_>>(),
            "optimizers": optim::optimizers().iter().map(|o| json!({"name": o.name, "summary": o.summary})).collect::<Vec<_>>(),
            "lr_schedules": optim::schedules().iter().map(|s| json!({"name": s.name, "summary": s.summary})).collect::<Vec<_>>(),
    })
}

fn print_methods() {
    let methods = registry::methods();
    println!("Methods (kd train --method NAME):");
    for m in &methods {
        println!("  {:<10} {}", m.name, m.summary);
        if m.needs_teacher() {
            let taps = if m.taps.is_empty() {
                "logits".to_string()
            } else {
                format!("logits, {}", m.taps.join(", "))
            };
            println!("  {:<10} needs a teacher (uses its {taps})", "");
        }
        for p in m.params {
            println!(
                "  {:<10}   --param {}={}  {}",
                "", p.name, p.default, p.help
            );
        }
    }
}

fn print_archs(example: &kd_core::ArchConfig) {
    let archs = registry::archs();
    let [c, h, w] = example.input_shape;
    let at = format!("at {c}x{h}x{w}, {} classes", example.num_classes);
    println!("\nArchitectures (kd train --arch NAME; sizes {at}):");
    for a in &archs {
        println!("  {:<10} {}", a.name, a.summary);
        let (params, macs) = size(a.name, example);
        let count =
            |v: Option<u64>| v.map_or("n/a".to_string(), |v| crate::report::thousands(v as usize));
        println!(
            "  {:<10} {} parameters, {} multiply-accumulates per image",
            "",
            count(params.map(|p| p as u64)),
            count(macs)
        );
        let taps: Vec<String> = (a.taps)(example)
            .iter()
            .map(|(n, shape)| format!("{n} {shape:?}"))
            .collect();
        println!("  {:<10} taps: {}", "", taps.join(", "));
    }
}

fn print_recipes() {
    let recipes = registry::recipes();
    println!("\nRecipes (kd reproduce --recipe NAME):");
    for r in &recipes {
        let default = if r.default { " (default)" } else { "" };
        println!("  {:<10} {}{default}", r.name, r.summary);
        let runs: Vec<_> = (r.runs)()
            .iter()
            .map(|x| format!("{} ({})", x.name, x.method))
            .collect();
        let pairs: Vec<String> = r.pairs.iter().map(|p| p.name()).collect();
        println!(
            "  {:<10} {} {}; runs: {}",
            "",
            if pairs.len() == 1 {
                "teacher-student"
            } else {
                "pairs (--pair)"
            },
            pairs.join(", "),
            runs.join(", ")
        );
    }
}

fn print_data_and_training() {
    println!("\nData sets (--dataset NAME; auto: the default, else the offline fallback):");
    for d in registry::datasets() {
        let role = match (d.default, d.offline_fallback) {
            (true, _) => " (default)",
            (_, true) => " (offline fallback)",
            _ => "",
        };
        println!("  {:<20} {}{role}", d.name, d.summary);
    }
    println!("\nOptimizers (--optimizer NAME):");
    for o in optim::optimizers() {
        println!("  {:<10} {}", o.name, o.summary);
    }
    println!("\nLearning-rate schedules (--lr-schedule NAME; --warmup-epochs N before any):");
    for s in optim::schedules() {
        println!("  {:<10} {}", s.name, s.summary);
    }
}
