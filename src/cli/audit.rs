//! `cunjing audit …` and `cunjing secrets rotate`: read the audit log (as a table or CSV),
//! check its hash chain, and seal the tipsters' contact details again under the current
//! data key.

use std::process::ExitCode;

use super::open_store;
use crate::config::Settings;

/// `cunjing audit verify`.
pub(super) async fn verify(settings: &Settings) -> anyhow::Result<ExitCode> {
    use crate::store::audit::AuditCheck;
    match open_store(settings).await?.verify_audit().await? {
        AuditCheck::Intact { checked, before_chain } => {
            println!("The audit log's chain is intact: {checked} records verified.");
            if before_chain > 0 {
                println!("{before_chain} older records were written before the chain and cannot be verified.");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCheck::Broken { id, why } => {
            println!("The audit log's chain is broken at record {id}: {why}.");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `cunjing audit --since … [--csv]`.
pub(super) async fn list(settings: &Settings, since: &str, csv: bool) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let tz = settings.timezone();
    let since = match chrono::NaiveDate::parse_from_str(since.trim(), "%Y-%m-%d") {
        Ok(day) => crate::calendar::midnight_ms(tz, day),
        Err(_) => super::parse_time(settings, since)?,
    };
    let rows = store.audit_since(since).await?;
    let when = |at: i64| {
        chrono::DateTime::from_timestamp_millis(at).map(|t| t.with_timezone(&tz).to_rfc3339()).unwrap_or_default()
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if csv {
        use std::io::Write;
        out.write_all("\u{feff}".as_bytes())?;
        let mut w = ::csv::Writer::from_writer(out);
        crate::csv_cells::write_record(&mut w, ["at", "actor", "action", "target", "result", "detail"])?;
        for r in &rows {
            crate::csv_cells::write_record(
                &mut w,
                [when(r.at), r.actor.clone(), r.action.clone(), r.target.clone(), r.result.clone(), r.detail.clone()],
            )?;
        }
        w.flush()?;
    } else {
        use std::io::Write;
        for r in &rows {
            writeln!(
                out,
                "{}  {:<24} {:<14} {:<8} {} {}",
                when(r.at),
                r.actor,
                r.action,
                r.result,
                r.target,
                r.detail
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cunjing secrets rotate`.
pub(super) async fn rotate_keys(settings: &Settings) -> anyhow::Result<ExitCode> {
    let store = open_store(settings).await?;
    let (phones, chats) = store.seal_contacts().await?;
    println!("Sealed again under the current data key: {phones} phone numbers, {chats} reporter chats.");
    println!("Once no daemon runs with the old key, remove it from CUNJING_DATA_KEYS_OLD.");
    Ok(ExitCode::SUCCESS)
}
