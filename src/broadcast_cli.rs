//! `cunjing broadcast …` and `cunjing report monthly`: county and city staff queue warnings
//! and notices, follow their ledgers, cancel and correct them, exchange them as CAP 1.2
//! alerts, and read each officer's monthly figures. The running daemon does the sending;
//! these commands only read and write the database.

use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone};

use crate::cap;
use crate::cli::{BroadcastCommand, ReportCommand};
use crate::config::Settings;
use crate::core::Core;
use crate::core::broadcast::Request;
use crate::store::Store;
use crate::store::broadcasts::{BroadcastRow, Target, parse_targets};
use crate::store::reports::OfficerFigures;

fn core_for(settings: &Settings, store: Store) -> anyhow::Result<Core> {
    crate::daemon::build_core(settings, store, std::sync::Arc::new(chrono::Utc::now))
}

/// A local time (`YYYY-MM-DD HH:MM`) or RFC 3339, as UTC ms.
pub fn parse_time(settings: &Settings, s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M")
        .with_context(|| format!("{s:?} is not a time: write YYYY-MM-DD HH:MM (local) or 2026-11-23T09:00:00+08:00"))?;
    let local = settings
        .timezone()
        .from_local_datetime(&naive)
        .earliest()
        .with_context(|| format!("{s:?} does not exist in {}", settings.timezone()))?;
    Ok(local.timestamp_millis())
}

fn targets(specs: &[String]) -> anyhow::Result<Vec<Target>> {
    parse_targets(&specs.join(" ")).map_err(anyhow::Error::msg)
}

pub async fn run(settings: &Settings, store: Store, cmd: BroadcastCommand) -> anyhow::Result<ExitCode> {
    let core = core_for(settings, store.clone())?;
    match cmd {
        BroadcastCommand::Send { to, kind, severity, text, event, at, expires, json } => {
            let mut req = Request::new(&kind, &severity, &text, targets(&to)?, "CLI");
            req.event = event;
            req.send_at = at.as_deref().map(|s| parse_time(settings, s)).transpose()?;
            req.expires_at = expires.as_deref().map(|s| parse_time(settings, s)).transpose()?;
            let created = core.create_broadcast(req).await?;
            let eta = core.broadcast_eta(created.targets).as_secs_f64();
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "id": created.id, "targets": created.targets, "eta_secs": eta.round() })
                );
            } else {
                println!(
                    "Broadcast {} queued for {} target(s), about {:.0} s to send them all; the running daemon sends it. Follow it with `cunjing broadcast status {}`.",
                    created.id, created.targets, eta, created.id
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::Status { id, ledger, json } => {
            let b = store.broadcast(id).await?.with_context(|| format!("there is no broadcast {id}"))?;
            let counts = store.broadcast_counts(id).await?;
            let rows = if ledger { store.broadcast_ledger(id).await? } else { vec![] };
            if json {
                println!("{}", serde_json::json!({ "broadcast": b, "counts": counts, "ledger": rows }));
                return Ok(ExitCode::SUCCESS);
            }
            println!("Broadcast {id}: {} {} ({}), {}, to {}", b.severity, b.kind, b.event, b.status, b.target_spec);
            println!(
                "targets {}: sent {}, pending {}, sending {}, failed {}, lost {}, expired {}, cancelled {}; acknowledged by {}",
                counts.targets,
                counts.sent,
                counts.pending,
                counts.sending,
                counts.failed,
                counts.lost,
                counts.expired,
                counts.cancelled,
                counts.acks
            );
            for r in rows {
                println!(
                    "{}\t{}\t{}\t{}\t{}\tattempts={}\tacks={}{}{}",
                    r.id,
                    r.channel,
                    r.chat_id,
                    r.village_code.as_deref().unwrap_or("-"),
                    r.state,
                    r.attempts,
                    r.acks,
                    if r.pinned == 1 { "\tpinned" } else { "" },
                    r.detail.map(|d| format!("\t{d}")).unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::Cancel { id } => {
            store.broadcast(id).await?.with_context(|| format!("there is no broadcast {id}"))?;
            if core.cancel_broadcast(id).await? {
                println!(
                    "Broadcast {id} cancelled: pending targets will not be sent; sent messages are taken back by the daemon."
                );
            } else {
                println!("Broadcast {id} was already cancelled.");
            }
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::Correct { id, text } => {
            let original = store.broadcast(id).await?.with_context(|| format!("there is no broadcast {id}"))?;
            let created = core.create_broadcast(correction(&original, &text, None)).await?;
            println!("Correction {} queued for the {} group(s) broadcast {id} reached.", created.id, created.targets);
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::ExportCap { id, out } => {
            let b = store.broadcast(id).await?.with_context(|| format!("there is no broadcast {id}"))?;
            let alert = to_cap(settings, &core, &b).await?;
            let xml = alert.to_xml();
            match out {
                Some(path) => {
                    std::fs::write(&path, xml).with_context(|| format!("Failed to write {}", path.display()))?
                }
                None => print!("{xml}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        BroadcastCommand::ImportCap { file, to } => {
            let raw = std::fs::read_to_string(&file).with_context(|| format!("Failed to read {}", file.display()))?;
            let alert = cap::Alert::parse(&raw).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            import_cap(&core, &alert, &to).await
        }
    }
}

/// A correction of `original`: the same kind, to the groups it reached, as replies.
fn correction(original: &BroadcastRow, text: &str, identifier: Option<String>) -> Request {
    let mut req = Request::new(&original.kind, &original.severity, text, vec![], &original.sender_label);
    req.references_id = Some(original.id);
    req.event = Some(original.event.clone());
    req.cap_identifier = identifier;
    req.cap_references = Some(reference_of(original));
    req
}

fn reference_of(b: &BroadcastRow) -> String {
    let sent = DateTime::from_timestamp_millis(b.created_at).unwrap_or_default().fixed_offset();
    format!("{},{},{}", cap_sender(b), b.cap_identifier, cap::format_datetime(&sent))
}

fn cap_sender(b: &BroadcastRow) -> String {
    // An imported alert keeps its sender in its identifier's reference; ours are cunjing's.
    let label: String = b.sender_label.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    if b.sender_officer_id.is_some() || label.is_empty() { "cunjing".to_string() } else { format!("cunjing.{label}") }
}

/// CAP's urgency, severity and certainty of our severities.
fn cap_levels(severity: &str) -> (&'static str, &'static str) {
    match severity {
        "urgent" => ("Immediate", "Severe"),
        "important" => ("Expected", "Moderate"),
        _ => ("Future", "Minor"),
    }
}

async fn to_cap(settings: &Settings, core: &Core, b: &BroadcastRow) -> anyhow::Result<cap::Alert> {
    let store = core.store();
    let tz = settings.timezone();
    let at = |ms: i64| -> DateTime<FixedOffset> {
        DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz).fixed_offset()
    };
    let (urgency, severity) = cap_levels(&b.severity);
    let mut areas = Vec::new();
    for t in parse_targets(&b.target_spec).unwrap_or_default() {
        areas.push(match &t {
            Target::Village(code) => store.village_by_code(code).await?.map(|v| v.name).unwrap_or(code.clone()),
            Target::Office(code) => store.office_name(code).await?.unwrap_or(code.clone()),
            Target::Station(code) => match store.station_id(code).await? {
                Some(id) => store.station_of(id).await?.1,
                None => code.clone(),
            },
            Target::All => core.texts().plain(crate::texts::Msg::CapAreaAll),
        });
    }
    if areas.is_empty() {
        areas.push(b.target_spec.clone());
    }
    let mut references = Vec::new();
    let mut msg_type = cap::MsgType::Alert;
    let mut identifier = b.cap_identifier.clone();
    let mut sent = at(b.created_at);
    if let Some(original) = b.references_id
        && let Some(o) = store.broadcast(original).await?
    {
        msg_type = cap::MsgType::Update;
        references.push(reference_from(&o, &tz));
    }
    if b.status == "cancelled" {
        // A cancelled broadcast is exported as the Cancel that withdraws it.
        references = vec![reference_from(b, &tz)];
        msg_type = cap::MsgType::Cancel;
        identifier = format!("{identifier}.cancel");
        sent = at(b.finished_at.unwrap_or(b.created_at));
    }
    let status = cap::Status::parse(&b.cap_status).unwrap_or(cap::Status::Actual);
    Ok(cap::Alert {
        identifier,
        sender: cap_sender(b),
        sent,
        status,
        msg_type,
        scope: "Public".into(),
        note: None,
        references,
        info: vec![cap::Info {
            language: Some(settings.file.general.locale.clone()),
            category: vec![if b.kind == "warning" { "Security" } else { "Safety" }.to_string()],
            event: b.event.clone(),
            urgency: urgency.into(),
            severity: severity.into(),
            certainty: if b.kind == "warning" { "Likely" } else { "Observed" }.into(),
            sender_name: Some(b.sender_label.clone()),
            headline: Some(b.event.clone()),
            description: Some(b.text.clone()),
            instruction: None,
            expires: b.expires_at.map(at),
            areas,
        }],
    })
}

fn reference_from(b: &BroadcastRow, tz: &chrono_tz::Tz) -> cap::Reference {
    // An imported alert's own reference came with it.
    if let Some(r) = b.cap_references.as_deref().and_then(|r| r.strip_prefix("self:")) {
        let mut parts = r.splitn(3, ',');
        if let (Some(sender), Some(identifier), Some(sent)) = (parts.next(), parts.next(), parts.next()) {
            return cap::Reference { sender: sender.into(), identifier: identifier.into(), sent: sent.into() };
        }
    }
    let sent = DateTime::from_timestamp_millis(b.created_at).unwrap_or_default().with_timezone(tz).fixed_offset();
    cap::Reference { sender: cap_sender(b), identifier: b.cap_identifier.clone(), sent: cap::format_datetime(&sent) }
}

/// Our severity of a CAP alert's info.
fn severity_of(info: &cap::Info) -> &'static str {
    match (info.severity.as_str(), info.urgency.as_str()) {
        ("Extreme" | "Severe", _) | (_, "Immediate") => "urgent",
        ("Moderate", _) => "important",
        _ => "normal",
    }
}

async fn import_cap(core: &Core, alert: &cap::Alert, to: &[String]) -> anyhow::Result<ExitCode> {
    if alert.status != cap::Status::Actual {
        println!(
            "CAP alert {} has status {}: only Actual alerts reach real groups, so nothing was sent.",
            alert.identifier,
            alert.status.as_str()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let store = core.store();
    if let Some(b) = store.broadcast_by_cap_identifier(&alert.identifier).await? {
        println!("CAP alert {} was already imported as broadcast {}; nothing done.", alert.identifier, b.id);
        return Ok(ExitCode::SUCCESS);
    }
    // The broadcast an Update or Cancel refers to, if it came through here.
    let mut earlier = None;
    for r in &alert.references {
        if let Some(b) = store.broadcast_by_cap_identifier(&r.identifier).await? {
            earlier = Some(b);
        }
    }
    let info = alert.info.first().context("the CAP alert has no <info>: there is nothing to tell residents")?;
    let text = [info.headline.as_deref(), info.description.as_deref(), info.instruction.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let own_reference = format!("self:{},{},{}", alert.sender, alert.identifier, cap::format_datetime(&alert.sent));
    match (alert.msg_type, earlier) {
        (cap::MsgType::Cancel, Some(b)) => {
            core.cancel_broadcast(b.id).await?;
            println!("CAP Cancel {}: broadcast {} cancelled.", alert.identifier, b.id);
            return Ok(ExitCode::SUCCESS);
        }
        (cap::MsgType::Cancel, None) => {
            anyhow::bail!("CAP Cancel {} refers to no alert imported here; nothing to cancel", alert.identifier)
        }
        (cap::MsgType::Update, Some(b)) => {
            let mut req = correction(&b, &text, Some(alert.identifier.clone()));
            req.cap_references = Some(own_reference);
            let created = core.create_broadcast(req).await?;
            println!(
                "CAP Update {}: correction {} of broadcast {} queued for {} group(s).",
                alert.identifier, created.id, b.id, created.targets
            );
            return Ok(ExitCode::SUCCESS);
        }
        (cap::MsgType::Alert | cap::MsgType::Update, _) => {}
        (other, _) => {
            println!("CAP {} {}: not an alert for residents; nothing sent.", other.as_str(), alert.identifier);
            return Ok(ExitCode::SUCCESS);
        }
    }
    anyhow::ensure!(!to.is_empty(), "say where the alert goes: --to village:CODE|office:CODE|station:CODE|all");
    let mut req = Request::new(
        "warning",
        severity_of(info),
        &text,
        targets(to)?,
        &info.sender_name.clone().unwrap_or_else(|| alert.sender.clone()),
    );
    req.event = Some(info.event.clone());
    req.expires_at = info.expires.map(|t| t.timestamp_millis());
    req.cap_identifier = Some(alert.identifier.clone());
    req.cap_references = Some(own_reference);
    let created = core.create_broadcast(req).await?;
    println!("CAP alert {} queued as broadcast {} for {} target(s).", alert.identifier, created.id, created.targets);
    Ok(ExitCode::SUCCESS)
}

/// The first and the day after the last day of `month` (YYYY-MM), local, as UTC ms.
pub fn month_bounds(tz: chrono_tz::Tz, month: &str) -> anyhow::Result<(i64, i64)> {
    let first = NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d")
        .with_context(|| format!("{month:?} is not a month: write YYYY-MM, e.g. 2026-10"))?;
    let next = first.checked_add_months(chrono::Months::new(1)).context("month out of range")?;
    Ok((crate::domain::midnight_ms(tz, first), crate::domain::midnight_ms(tz, next)))
}

/// The month before the one `now` is in, as YYYY-MM.
/// The month of `now_ms` in `tz`, as `YYYY-MM`.
pub fn current_month(tz: chrono_tz::Tz, now_ms: i64) -> String {
    DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz).format("%Y-%m").to_string()
}

pub fn previous_month(tz: chrono_tz::Tz, now_ms: i64) -> String {
    let today = DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz).date_naive();
    let first = today.with_day0(0).unwrap_or(today);
    first.checked_sub_months(chrono::Months::new(1)).unwrap_or(first).format("%Y-%m").to_string()
}

use chrono::Datelike;

pub async fn report(settings: &Settings, store: Store, cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Monthly { month, station, csv } = cmd;
    let tz = settings.timezone();
    let month = month.unwrap_or_else(|| previous_month(tz, chrono::Utc::now().timestamp_millis()));
    let (from, to) = month_bounds(tz, &month)?;
    let station_id = match &station {
        Some(code) => {
            Some(store.station_id(code).await?.with_context(|| format!("station {code} is not in the registry"))?)
        }
        None => None,
    };
    let rows = store.officer_figures(from, to, station_id).await?;
    if csv {
        write_csv(std::io::stdout().lock(), &rows)?;
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

/// The monthly report as CSV (UTF-8 with a BOM, so Excel keeps the Chinese names).
pub fn write_csv(mut out: impl std::io::Write, rows: &[OfficerFigures]) -> anyhow::Result<()> {
    out.write_all("\u{feff}".as_bytes())?;
    let mut w = csv::Writer::from_writer(out);
    crate::csv_cells::write_record(
        &mut w,
        [
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
        ],
    )?;
    for r in rows {
        let row: Vec<String> = [r.badge.clone(), r.name.clone()].into_iter().chain(r.cells()).collect();
        crate::csv_cells::write_record(&mut w, &row)?;
    }
    w.flush()?;
    Ok(())
}
