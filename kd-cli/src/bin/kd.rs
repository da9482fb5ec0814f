// The built-in plugins are linked by `use`; a crate that is only depended on
// would not be linked, and its registrations would vanish.
use kd_plugins as _;

fn main() -> std::process::ExitCode {
    kd_cli::main()
}
