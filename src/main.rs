//! The `replisnap` binary: everything lives in the library; see `replisnap::cli`.

// Decoding and (later) applying allocate many small values; mimalloc makes that ~2x
// cheaper than glibc's malloc here (measured in docs/decisions.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    replisnap::cli::main()
}
