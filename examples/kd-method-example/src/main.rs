//! `kd` with one more method: the built-in plugins and this crate's `nst`.
//! A `use ... as _;` links a crate so its `inventory::submit!`s register.
use kd_method_example as _;
use kd_plugins as _;

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
