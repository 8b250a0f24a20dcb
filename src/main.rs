//! `ballast`: parse the command line, set up logging, run the command.

// Input can reach almost any path: no unwrap, expect, panic, or indexing or slicing that can
// panic, outside tests (the code keeps this; the compiler makes sure it stays kept).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod cli;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc malloc: a profile of `ballast bench` had ~36% of its samples in
/// malloc/free (many small, short-lived allocations per event and per review).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("BALLAST_LOG")
                .unwrap_or_else(|_| EnvFilter::new("warn,apache_avro=error")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: never escape codes in a pipe or a log file.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(cli::run(cli))
}
