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
mod datasets;
mod hub;
mod plot;
mod progress;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

/// Parses the command line, runs it, and maps the outcome to an exit code:
/// 0 success, 1 failure, 2 usage error (clap's).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.offline {
        // hf-hub does not read this variable; kd's own Hub code does.
        std::env::set_var("HF_HUB_OFFLINE", "1");
    }
    let level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the chain of contexts on one line; no backtrace for user errors.
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
