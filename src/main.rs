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

/// mimalloc v3's `mi_option_purge_delay` (its `mimalloc.h` enum; the sys crate leaves the
/// newer options unnamed). The version is pinned by `Cargo.lock`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed by the daemon goes back to the system at once instead of after mimalloc's
/// default second. In a burst the daemon frees and reuses quickly, and a second's worth of
/// freed pages stayed resident: over 46,000 groups the peak RSS of the tips workload was
/// 77.3 MiB with the default, 70.5 MiB with 0, at the same rate (BENCHMARKS.md).
/// `MIMALLOC_PURGE_DELAY` in the environment still wins, to compare.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists (the
        // function is not thread-safe); it only stores the option's value.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

fn main() -> ExitCode {
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
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
