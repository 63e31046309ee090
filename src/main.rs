//! The `replisnap` binary: everything lives in the library; see `replisnap::cli`.

fn main() -> std::process::ExitCode {
    replisnap::cli::main()
}
