//! `kd verify`: methods against their reference fixtures, or property checks.
use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use kd_core::loss::Params;
use kd_core::registry;
use kd_core::verify::{self, Fixture, Report, FD_TOLERANCE, TOLERANCE};

use crate::cli::VerifyArgs;

pub fn run(args: &VerifyArgs) -> Result<()> {
    let reports = if args.fixture.is_empty() {
        registered(args)?
    } else {
        let mut v = Vec::new();
        for path in &args.fixture {
            let fixture = Fixture::read(path)?;
            v.push(
                verify::check_fixture(&fixture, args.method.as_deref())
                    .with_context(|| format!("cannot check {}", path.display()))?,
            );
        }
        v
    };
    print!("{}", table(&reports, args.verbose));
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} verifications failed (details above)",
            reports.len()
        );
    }
    Ok(())
}

/// Every registered method with a loss: its fixtures, else its properties.
fn registered(args: &VerifyArgs) -> Result<Vec<Report>> {
    let methods = match &args.method {
        Some(name) => vec![registry::method(name)?],
        None => registry::methods(),
    };
    let mut reports = Vec::new();
    for m in methods.into_iter().filter(|m| m.needs_teacher()) {
        for (i, bytes) in m.fixtures.iter().enumerate() {
            let name = format!("{} fixture {}", m.name, i + 1);
            let fixture = Fixture::from_bytes(&name, bytes)?;
            reports.push(verify::check_fixture(&fixture, Some(m.name))?);
        }
        if m.fixtures.is_empty() || args.properties {
            reports.push(verify::check_properties(m, &Params::new())?);
        }
    }
    Ok(reports)
}

fn table(reports: &[Report], verbose: bool) -> String {
    let mut s = format!(
        "Fixtures pass when |got - expected| <= {TOLERANCE:.0e} x (|expected| + the largest |expected| of the tensor); errors below are |got - expected| / (|expected| + largest). \
finite differences: {FD_TOLERANCE:.0e}.\n\n"
    );
    let _ = writeln!(
        s,
        "{:<12} {:<22} {:>12} {:>14}  result",
        "method", "source", "|value err|", "max grad err"
    );
    let fmt = |e: Option<f64>| e.map_or("-".to_string(), |e| format!("{e:.2e}"));
    for r in reports {
        let source = r.source.rsplit('/').next().unwrap_or(&r.source);
        let _ = writeln!(
            s,
            "{:<12} {:<22} {:>12} {:>14}  {}",
            r.method,
            source,
            fmt(r.value_error()),
            fmt(r.max_gradient_error()),
            if r.passed() { "pass" } else { "FAIL" }
        );
        for c in &r.checks {
            if verbose || !c.passed {
                let _ = writeln!(
                    s,
                    "    {} {:<34} error {:.2e}  {}",
                    if c.passed { "ok  " } else { "FAIL" },
                    c.name,
                    c.error,
                    c.detail
                );
            }
        }
    }
    s
}
