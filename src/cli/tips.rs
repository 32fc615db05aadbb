//! `cunjing tips …`: the station staff's view of the tips from the command line — list,
//! show with the timeline, and a CSV export that Excel opens with the Chinese intact (its
//! rows are [`crate::reports`]', shared with the station console) — and the tip workflow's
//! assign, close and reopen, as an operator of one station (`--station`) or of all.
//! Nothing here ever reads who reported a tip.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::TipsCommand;
use crate::authz::{Action, Actor, Role};
use crate::config::Settings;
use crate::core::workflow::By;
use crate::core::{Core, CoreError, Outbound, Platform};
use crate::domain::{StatusFilter, TipStatus};
use crate::reports::{local_time, write_tips_csv};
use crate::store::Store;
use crate::store::tip_list::{TipFilter, TipListRow};
use crate::store::tips::TipRow;

fn local(settings: &Settings, ms: Option<i64>) -> String {
    local_time(settings.timezone(), ms)
}

fn filter(
    settings: &Settings,
    station: Option<String>,
    status: Option<StatusFilter>,
    since: Option<chrono::NaiveDate>,
) -> TipFilter {
    let since_ms = since.map(|d| crate::calendar::midnight_ms(settings.timezone(), d));
    TipFilter { station, status, since_ms, ..TipFilter::default() }
}

fn write_csv(settings: &Settings, rows: &[TipListRow], out: impl Write) -> anyhow::Result<()> {
    write_tips_csv(settings.timezone(), rows, out)
}

/// The operator at the command line: of the station `code` (a station admin's reach), or of
/// every station without one.
async fn operator(store: &Store, station: Option<&str>) -> anyhow::Result<Result<Actor, String>> {
    let mut actor = Actor::system();
    actor.account = Some(super::cli_label());
    if let Some(code) = station {
        let Some(id) = store.station_id(code).await? else {
            return Ok(Err(format!("No station with code {code:?} in the registry.")));
        };
        actor.role = Role::StationAdmin;
        actor.station_id = Some(id);
    }
    Ok(Ok(actor))
}

/// A workflow action from the command line: its answer printed, a refusal in English with
/// exit code 1. The messages it makes (the officer's card, the tipster's notice) are queued
/// for the daemon, which sends them at its next timer round.
async fn workflow(
    settings: &Settings,
    store: &Store,
    station: Option<&str>,
    action: Action,
    number: &str,
    act: impl AsyncFnOnce(&Core, &Actor, TipRow) -> Result<(String, Vec<Outbound>), CoreError>,
) -> anyhow::Result<ExitCode> {
    let actor = match operator(store, station).await? {
        Ok(actor) => actor,
        Err(why) => {
            eprintln!("{why}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let core = crate::daemon::build_core(settings, store.clone(), std::sync::Arc::new(chrono::Utc::now))?;
    let result = match core.tip_for(&actor, action, number).await {
        Ok(tip) => {
            let platform = Platform::parse(&tip.platform).unwrap_or(Platform::Telegram);
            act(&core, &actor, tip).await.map(|done| (done, platform))
        }
        Err(e) => Err(e),
    };
    let why = match result {
        Ok(((done, messages), platform)) => {
            println!("{done}");
            let queued = core.queue_for_daemon(platform, messages).await?;
            if queued > 0 {
                println!("{queued} message(s) queued; the running daemon sends them at its next timer round.");
            }
            return Ok(ExitCode::SUCCESS);
        }
        Err(CoreError::Unexpected(e)) => return Err(e),
        Err(CoreError::NotFound) => format!("No tip {number:?}."),
        Err(CoreError::Refused) => format!("Refused: tip {number} is not of a station you may act for."),
        Err(CoreError::NotOpen) => format!("Refused: tip {number} is no longer open."),
        Err(CoreError::NotClosed) => format!("Refused: tip {number} is not closed."),
        Err(CoreError::NoOfficer) => "Refused: no such officer, or not serving the tip's village today.".to_string(),
        Err(CoreError::Invalid(what)) => format!("Refused: the {what} is missing or wrong."),
    };
    eprintln!("{why}");
    Ok(ExitCode::FAILURE)
}
/// Runs `cunjing tips …`.
pub(super) async fn run(settings: &Settings, store: &Store, cmd: TipsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TipsCommand::Assign { number, badge, station } => {
            workflow(
                settings,
                store,
                station.as_deref(),
                Action::Assign,
                &number,
                async |core: &Core, actor: &Actor, tip: TipRow| {
                    let officer = core.store().officer_by_badge(badge.trim()).await?;
                    let done = core.assign_tip(actor, By::Account, &tip, officer, "assigned").await?;
                    Ok((
                        format!("Tip {} assigned to {} ({}).", tip.number, done.officer.name, done.officer.badge),
                        done.out,
                    ))
                },
            )
            .await
        }
        TipsCommand::Close { number, note, reject, station } => {
            if note.trim().is_empty() {
                eprintln!("A note for the tipster is required: --note TEXT.");
                return Ok(ExitCode::FAILURE);
            }
            let to = if reject { TipStatus::Rejected } else { TipStatus::Resolved };
            workflow(
                settings,
                store,
                station.as_deref(),
                Action::Resolve,
                &number,
                async |core: &Core, actor: &Actor, tip: TipRow| {
                    let (updated, out) = core.close_tip(actor, By::Account, &tip, to, Some(&note)).await?;
                    Ok((format!("Tip {} is {} now.", updated.number, updated.status), out))
                },
            )
            .await
        }
        TipsCommand::Reopen { number, note, station } => {
            workflow(
                settings,
                store,
                station.as_deref(),
                Action::Resolve,
                &number,
                async |core: &Core, actor: &Actor, tip: TipRow| {
                    let updated = core.reopen_tip(actor, &tip, &note).await?;
                    Ok((format!("Tip {} is {} again.", updated.number, updated.status), Vec::new()))
                },
            )
            .await
        }
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
                if tip.anonymous { "anonymous" } else { "named" }
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
