//! The `azb` binary: everything happens in `azb::cli`.

fn main() -> std::process::ExitCode {
    azb::cli::main()
}
