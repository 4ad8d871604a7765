//! `shop`: serve the whole shop, migrate its stores, or administer it. See `shop --help`.

use std::process::ExitCode;

/// mimalloc rather than glibc's allocator: glibc keeps a freed password hash's 19 MiB in
/// each thread's arena, which left an idle shop at 300 MB after a few logins; mimalloc gives
/// such blocks back (docs/PERFORMANCE.md, "Memory").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    shop::cli::run().await
}
