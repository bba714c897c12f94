//! The `clm` command: runs the suite or one service, migrates, and talks to a running suite.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod client;
mod dashboard;
mod demo;
mod describe;
mod outboxes;
mod run;

use clap::Parser;

// mimalloc also stands in for the C library's malloc (the `override` feature), so SQLite's
// allocations use it too: under the ingest load glibc's malloc and free took about a
// quarter of the process's time, much of it consolidating arenas.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clm: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clm: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
