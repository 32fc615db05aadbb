//! `cunjing report monthly`: each officer's figures for a month (warnings, notices, tips
//! received, acknowledged and resolved, the median time to acknowledge, ratings), as a
//! table or as CSV (the rows are [`crate::reports`]').

use std::process::ExitCode;

use anyhow::Context;

use super::ReportCommand;
use crate::calendar;
use crate::config::Settings;
use crate::store::Store;

/// Runs `cunjing report monthly`.
pub(super) async fn run(settings: &Settings, store: Store, cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Monthly { month, station, csv } = cmd;
    let tz = settings.timezone();
    let month = month.unwrap_or_else(|| calendar::previous_month(tz, chrono::Utc::now().timestamp_millis()));
    let (from, to) = calendar::month_bounds(tz, &month)?;
    let station_id = match &station {
        Some(code) => {
            Some(store.station_id(code).await?.with_context(|| format!("station {code} is not in the registry"))?)
        }
        None => None,
    };
    let rows = store.officer_figures(from, to, station_id).await?;
    if csv {
        crate::reports::write_monthly_csv(std::io::stdout().lock(), &rows)?;
    } else {
        println!("Month {month}");
        println!(
            "badge\tname\twarnings\tnotices\ttips received\tacknowledged\tresolved\tmedian ack (min)\tsatisfied/fair/dissatisfied"
        );
        for r in &rows {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}/{}/{}",
                r.badge,
                r.name,
                r.warnings,
                r.notices,
                r.tips_received,
                r.tips_acknowledged,
                r.tips_resolved,
                r.median_ack_minutes.map_or("-".to_string(), |m| m.to_string()),
                r.rated_satisfied,
                r.rated_fair,
                r.rated_dissatisfied
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
