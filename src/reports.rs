//! The rows of the exports: tips as CSV records (the command line's `cunjing tips` and the
//! station console's export share the columns) and the monthly figures per officer
//! (`cunjing report monthly`). Nothing here ever reads who reported a tip.

use std::io::Write;

use crate::store::reports::OfficerFigures;
use crate::store::tip_list::TipListRow;

/// The CSV columns of a tip list and export (the station console exports the same, but for
/// the text, under the names of its templates).
pub const EXPORT_COLUMNS: [&str; 15] = [
    "number",
    "created_at",
    "station",
    "village_code",
    "village",
    "category",
    "source",
    "anonymous",
    "status",
    "officer_badge",
    "officer",
    "acknowledged_at",
    "resolved_at",
    "rating",
    "text",
];

/// An instant (UTC ms) as `YYYY-MM-DD HH:MM` in `tz`; empty for none.
pub fn local_time(tz: chrono_tz::Tz, ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// One tip as a row of [`EXPORT_COLUMNS`], times in `tz`.
pub fn export_record(tz: chrono_tz::Tz, r: &TipListRow) -> Vec<String> {
    let local = |ms| local_time(tz, ms);
    vec![
        r.number.clone(),
        local(Some(r.created_at)),
        r.station_code.clone(),
        r.village_code.clone(),
        r.village_name.clone(),
        r.category.clone(),
        r.source.to_string(),
        if r.anonymous { "yes".into() } else { "no".into() },
        r.status.to_string(),
        r.officer_badge.clone().unwrap_or_default(),
        r.officer_name.clone().unwrap_or_default(),
        local(r.acknowledged_at),
        local(r.resolved_at),
        r.rating.map(|r| r.to_string()).unwrap_or_default(),
        r.summary.clone(),
    ]
}

/// Tips as CSV: the [`EXPORT_COLUMNS`] header, then one [`export_record`] per tip (no
/// byte-order mark: the caller writes one where Excel reads the file).
pub fn write_tips_csv(tz: chrono_tz::Tz, rows: &[TipListRow], out: impl Write) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    crate::csv_cells::write_record(&mut w, EXPORT_COLUMNS)?;
    for r in rows {
        crate::csv_cells::write_record(&mut w, export_record(tz, r))?;
    }
    w.flush()?;
    Ok(())
}

/// The CSV columns of the monthly figures per officer.
pub const MONTHLY_COLUMNS: [&str; 12] = [
    "badge",
    "name",
    "station",
    "warnings",
    "notices",
    "tips_received",
    "tips_acknowledged",
    "tips_resolved",
    "median_ack_minutes",
    "rated_satisfied",
    "rated_fair",
    "rated_dissatisfied",
];

/// One officer's figures as a row of [`MONTHLY_COLUMNS`].
pub fn monthly_record(r: &OfficerFigures) -> Vec<String> {
    [r.badge.clone(), r.name.clone()].into_iter().chain(r.cells()).collect()
}

/// The monthly report as CSV (UTF-8 with a BOM, so Excel keeps the Chinese names).
pub fn write_monthly_csv(mut out: impl Write, rows: &[OfficerFigures]) -> anyhow::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    crate::csv_cells::write_record(&mut w, MONTHLY_COLUMNS)?;
    for r in rows {
        crate::csv_cells::write_record(&mut w, monthly_record(r))?;
    }
    w.flush()?;
    Ok(())
}
