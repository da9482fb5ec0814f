//! The `kd` command. `kd_cli::main()` is public so that a user can build a
//! `kd` that links more plugin crates:
//!
//! ```ignore
//! use kd_plugins as _;
//! use my_method as _;
//! fn main() -> std::process::ExitCode { kd_cli::main() }
//! ```
//!
//! Nothing here names a method or an architecture: it reads the registries.
mod cli;
mod commands;
mod config;
mod cost;
mod datasets;
mod hub;
mod models;
mod outputs;
mod phase;
mod plot;
mod progress;
mod report;
mod teacher_cache;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Once;

use clap::Parser;

pub use cli::Cli;

/// Set by the first Ctrl-C: the trainer finishes its batch, checkpoints and stops.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`] (SIGINT when unknown), for the exit code 128 + N.
static SIGNAL: AtomicI32 = AtomicI32::new(2);

/// The first SIGINT (Ctrl-C), SIGTERM or SIGHUP (a scheduler preempting the
/// job, a closed terminal): finish the batch, checkpoint and stop. A second
/// one: exit at once (the last checkpoint is whole, since checkpoints are
/// written atomically).
pub(crate) fn install_interrupt_handler(resume_hint: &str) {
    static ONCE: Once = Once::new();
    let hint = resume_hint.to_string();
    ONCE.call_once(move || {
        let on_signal = move |signal: i32| {
            if STOP.swap(true, Ordering::SeqCst) {
                eprintln!("\nstopped at once; the last checkpoint is intact. Resume with: {hint}");
                std::process::exit(128 + signal);
            }
            SIGNAL.store(signal, Ordering::SeqCst);
            eprintln!("\nstopping after this batch (Ctrl-C again to quit at once)...");
        };
        #[cfg(unix)]
        {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
                Ok(mut signals) => {
                    std::thread::spawn(move || signals.forever().for_each(on_signal));
                }
                Err(e) => tracing::warn!("cannot catch signals ({e}): a stop will not checkpoint"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrlc::set_handler(move || on_signal(2));
        }
    });
}

/// Marks an interruption as such, for the exit code, and says how to go on:
/// the `resume` command when there is something to resume, else to start again.
pub(crate) fn explain_stop(e: anyhow::Error, resume: Option<&str>) -> anyhow::Error {
    let has_checkpoint = resume.is_some();
    let resume = resume.unwrap_or_default();
    let next = if has_checkpoint {
        format!("Resume with: {resume}")
    } else {
        "No checkpoint was written yet: run the same command again to start over".to_string()
    };
    match e.downcast_ref::<kd_core::Error>() {
        Some(kd_core::Error::Interrupted(_)) => {
            anyhow::Error::new(Interrupted(format!("{e}. {next}")))
        }
        // A new --lr changes the result, so resuming with one needs --force.
        Some(kd_core::Error::Numerical(_)) if has_checkpoint => anyhow::anyhow!(
            "training stopped: {e}. {NAN_CAUSES} The last good checkpoint is kept: resume with the setting changed and --force (a change of --lr or a --param changes the run's result), e.g. `{resume} --lr SMALLER --force`, or without flags to retry as it was"
        ),
        Some(kd_core::Error::Numerical(_)) => anyhow::anyhow!(
            "training stopped: {e}. {NAN_CAUSES} No checkpoint was written yet: run the command again with the setting changed"
        ),
        _ => e,
    }
}

/// What makes a loss NaN or infinite, said whenever one stops a run: the
/// learning rate is the usual cause but not the only one.
const NAN_CAUSES: &str = "Usual causes: a learning rate too large for the optimizer (--lr), an extreme method parameter (a temperature near 0, a huge loss weight: --param), or NaN in the data or the teacher.";

/// A run stopped on request; exit code 128 + the signal, as a shell reports
/// it (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).
#[derive(Debug)]
pub(crate) struct Interrupted(String);
impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.0)
    }
}
impl std::error::Error for Interrupted {}

/// Parses the command line, runs it, and maps the outcome to an exit code:
/// 0 success, 1 failure, 2 usage error (clap's, an unknown name, a bad
/// config file, contradicting flags).
pub fn main() -> ExitCode {
    kd_core::malloc::keep_freed_memory();
    // A full disk or a file-size limit must surface as a write error (and leave
    // the old file in place), not kill the process mid-write with SIGXFSZ.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        // `kd list | head -1`: a closed pipe ends the process quietly, as it does
        // for other Unix tools, instead of a panic in `println!`.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Paths are written into settings, metadata and reports as text: a name
    // that is not UTF-8 is refused here, cleanly, rather than half-way.
    if let Some((i, a)) = args
        .iter()
        .enumerate()
        .skip(1)
        .find(|(_, a)| a.to_str().is_none())
    {
        eprintln!(
            "error: argument {i} ({}) is not valid UTF-8: kd takes UTF-8 paths and names. Rename the file, or give a link to it with a UTF-8 name",
            a.to_string_lossy()
        );
        return ExitCode::from(2);
    }
    let args = match config::expand_config_file(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    if cli.offline {
        // hf-hub does not read this variable; kd's own Hub code does.
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let level = if cli.quiet { "warn" } else { "info" };
    // hf-hub logs each failed attempt; kd says once what failed and what to do.
    // tract announces the CPU kernels it picked, which no user asked about.
    let filter = format!("{level},hf_hub=off,tract_linalg=warn");
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("{e}");
            ExitCode::from(128 + SIGNAL.load(Ordering::SeqCst) as u8)
        }
        Err(e) => {
            let unknown = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<kd_core::Error>(),
                    Some(kd_core::Error::Unknown { .. })
                )
            });
            let list = if unknown {
                " `kd list` shows them all."
            } else {
                ""
            };
            // `{:#}` prints the chain of contexts on one line; no backtrace for user errors.
            eprintln!("error: {e:#}{list}");
            match unknown || e.chain().any(|c| c.is::<Usage>()) {
                true => ExitCode::from(2),
                false => ExitCode::from(1),
            }
        }
    }
}

/// A command line that cannot mean anything (flags that contradict each
/// other, a name nothing registers): exit code 2, as clap's own usage errors.
#[derive(Debug)]
pub(crate) struct Usage(pub String);
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

/// Fails with a [`Usage`] error.
macro_rules! usage {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::Usage(format!($($arg)*))))
    };
}
pub(crate) use usage;
