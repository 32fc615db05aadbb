//! The `cunjing` binary: parses the command line, sets up logging, runs [`cunjing::cli`].

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: the daemon allocates on many threads at once (tokio's
/// workers, sqlx's connection threads), where glibc spent ~15 % of a tip's CPU in malloc and
/// free. Measured with `cargo bench --bench load`: +59 % contact questions, +46 % tips,
/// +48 % group mix per second, peak RSS about the same (BENCHMARKS.md). Built without its
/// transparent-huge-page advice (`no_thp`): with THP in `madvise` mode every 2 MiB region it
/// touched became resident, 72 instead of 41 MiB at idle.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cunjing::cli::Cli::parse();
    // The console demo shares the terminal with the conversation: only warnings by default.
    let quiet = matches!(cli.command, None | Some(cunjing::cli::Command::Run { .. }))
        && std::env::var_os("TELOXIDE_TOKEN").is_none();
    cunjing::telemetry::init(if quiet { "warn" } else { "info,teloxide=warn,sqlx=warn" });
    match cunjing::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
