//! The `kd` binary exactly as a user would build their own: link the plugin
//! crates, then hand over to `kd_cli::main()`. End-to-end tests run this.
use kd_plugins as _;

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
