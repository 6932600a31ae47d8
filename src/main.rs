//! The `portcullis` binary: the command lives in the library (`portcullis::cli`); this file
//! only picks the allocator.

use std::process::ExitCode;

/// mimalloc: per-thread free lists suit the data plane's threads, which allocate and free each
/// request's buffers on the thread that serves it (measured in `benches/RESULTS.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    portcullis::cli::run()
}
