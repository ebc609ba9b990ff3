//! The `orquesta` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    orquesta::cli::main()
}
