//! `cunjing tips …`: the station staff's view of the tips from the command line — list,
//! show with the timeline, and a CSV export that Excel opens with the Chinese intact (its
//! rows are [`crate::reports`]', shared with the station console).
//! Nothing here ever reads who reported a tip.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::TipsCommand;
use crate::config::Settings;
use crate::reports::{local_time, write_tips_csv};
use crate::store::Store;
use crate::store::tip_list::{TipFilter, TipListRow};

fn local(settings: &Settings, ms: Option<i64>) -> String {
    local_time(settings.timezone(), ms)
}

fn filter(
    settings: &Settings,
    station: Option<String>,
    status: Option<String>,
    since: Option<chrono::NaiveDate>,
) -> TipFilter {
    let since_ms = since.map(|d| crate::calendar::midnight_ms(settings.timezone(), d));
    TipFilter { station, status, since_ms, ..TipFilter::default() }
}

fn write_csv(settings: &Settings, rows: &[TipListRow], out: impl Write) -> anyhow::Result<()> {
    write_tips_csv(settings.timezone(), rows, out)
}

/// Runs `cunjing tips …`.
pub(super) async fn run(settings: &Settings, store: &Store, cmd: TipsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TipsCommand::List { station, status, since, json, csv } => {
            let rows = store.list_tips(&filter(settings, station, status, since)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if csv {
                write_csv(settings, &rows, std::io::stdout().lock())?;
            } else {
                for r in &rows {
                    println!(
                        "{}  {}  {:<10} {:<12} {:<13} {}",
                        r.number,
                        local(settings, Some(r.created_at)),
                        r.category,
                        r.status,
                        r.officer_badge.as_deref().unwrap_or("-"),
                        r.village_name
                    );
                }
                println!("{} tip(s)", rows.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        TipsCommand::Show { number } => {
            let Some(tip) = store.tip_by_number(&number).await? else {
                eprintln!("No tip {number:?}.");
                return Ok(ExitCode::FAILURE);
            };
            let village = store.village_by_id(tip.village_id).await?.map(|v| v.name).unwrap_or_default();
            println!("Tip {}  ({})", tip.number, tip.status);
            println!("Village:   {village}");
            println!("Category:  {}", tip.category);
            println!(
                "Reported:  {} ({})",
                local(settings, Some(tip.created_at)),
                if tip.anonymous == 1 { "anonymous" } else { "named" }
            );
            if let Some(phone) = store.tip_phone(&tip)? {
                println!("Phone:     {phone}");
            }
            println!("Text:\n  {}", tip.summary.replace('\n', "\n  "));
            println!("Timeline:");
            for (at, actor, badge, kind, detail) in store.tip_timeline(tip.id).await? {
                let who = badge.map(|b| format!("{actor} {b}")).unwrap_or(actor);
                println!("  {}  {:<10} {:<16} {}", local(settings, Some(at)), kind, who, detail);
            }
            Ok(ExitCode::SUCCESS)
        }
        TipsCommand::Export { csv, station, status, since } => {
            let rows = store.list_tips(&filter(settings, station, status, since)).await?;
            let mut file =
                std::fs::File::create(&csv).with_context(|| format!("Failed to create {}", csv.display()))?;
            // The byte-order mark makes Excel read the file as UTF-8, so Chinese shows.
            file.write_all("\u{feff}".as_bytes())?;
            write_csv(settings, &rows, &mut file)?;
            println!("{} tip(s) written to {}", rows.len(), csv.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
