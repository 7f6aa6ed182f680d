//! The `extrator` binary: everything is in the library; see `cli::main`.

fn main() -> std::process::ExitCode {
    extrator::cli::main()
}
