//! One module per subcommand, plus what several of them share.
mod bench;
mod convert;
mod doctor;
mod eval;
mod export;
mod inspect;
mod list;
mod predict;
mod reproduce;
mod train;
mod verify;

use anyhow::Result;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> Result<()> {
    let quiet = cli.quiet;
    match cli.command {
        Command::List(a) => list::run(&a),
        Command::Train(a) => train::run(a, quiet),
        Command::Eval(a) => eval::run(&a),
        Command::Predict(a) => predict::run(&a),
        Command::Inspect(a) => inspect::run(&a),
        Command::Reproduce(a) => reproduce::run(a, quiet),
        Command::Verify(a) => verify::run(&a),
        Command::Report(a) => reproduce::report(&a),
        Command::Convert(a) => convert::run(&a),
        Command::Export(a) => export::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Doctor => doctor::run(),
    }
}
