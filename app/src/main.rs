//! `shop`: serve the whole shop, migrate its stores, or administer it. See `shop --help`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    shop::cli::run().await
}
