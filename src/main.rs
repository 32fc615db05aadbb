//! The `cunjing` binary: parses the command line, sets up logging, runs [`cunjing::cli`].

use std::process::ExitCode;

use clap::Parser;

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
