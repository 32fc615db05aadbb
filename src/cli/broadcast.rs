//! `cunjing broadcast …`: county and city staff queue warnings and notices, follow their
//! ledgers, cancel and correct them, and exchange them as CAP 1.2 alerts (the mapping
//! itself is [`crate::cap`]'s). The running daemon does the sending; these commands only
//! read and write the database.

use std::process::ExitCode;

use anyhow::Context;

use super::{BroadcastCommand, parse_time};
use crate::cap;
use crate::config::Settings;
use crate::core::Core;
use crate::core::broadcast::Request;
use crate::domain::{BroadcastKind, Datum};
use crate::store::Store;
use crate::store::broadcasts::{BroadcastRow, Near, Target, parse_targets};

fn core_for(settings: &Settings, store: Store) -> anyhow::Result<Core> {
    crate::daemon::build_core(settings, store, std::sync::Arc::new(chrono::Utc::now))
}

fn targets(specs: &[String]) -> anyhow::Result<Vec<Target>> {
    parse_targets(&specs.join(" ")).map_err(anyhow::Error::msg)
}

/// `--to …` and `--near LAT,LON,KM [--datum D]`: the point is converted to WGS-84, as
/// `near:` targets are written.
fn send_targets(to: &[String], near: Option<&str>, datum: Option<Datum>) -> anyhow::Result<Vec<Target>> {
    let mut out = if to.is_empty() { vec![] } else { targets(to)? };
    if let Some(raw) = near {
        let n = Near::parse(raw).map_err(|e| anyhow::anyhow!("--near {raw}: {e}"))?;
        let (lon, lat) = datum.unwrap_or(Datum::Wgs84).to_wgs84(n.lon, n.lat);
        out.push(Target::Near(Near::new(lat, lon, n.km).map_err(|e| anyhow::anyhow!("--near {raw}: {e}"))?));
    }
    Ok(out)
}

/// Runs `cunjing broadcast …`.
pub(super) async fn run(settings: &Settings, store: Store, cmd: BroadcastCommand) -> anyhow::Result<ExitCode> {
    let core = core_for(settings, store.clone())?;
    match cmd {
        BroadcastCommand::Send { to, near, datum, kind, severity, text, event, at, expires, json } => {
            let targets = send_targets(&to, near.as_deref(), datum)?;
            let mut req = Request::new(kind, severity, &text, targets, "CLI");
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
                    if r.pinned { "\tpinned" } else { "" },
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
    let mut req = Request::new(original.kind, original.severity, text, vec![], &original.sender_label);
    req.references_id = Some(original.id);
    req.event = Some(original.event.clone());
    req.cap_identifier = identifier;
    req.cap_references = Some(cap::reference_text(original));
    req
}

/// Broadcast `b` as a CAP alert, its areas named as the registry names them; an `area:`
/// target also carries the outlines of the areas it reaches, a `near:` target its circle.
async fn to_cap(settings: &Settings, core: &Core, b: &BroadcastRow) -> anyhow::Result<cap::Alert> {
    let store = core.store();
    let mut areas = Vec::new();
    for t in parse_targets(&b.target_spec).unwrap_or_default() {
        let name = match &t {
            Target::Village(code) => store.village_by_code(code).await?.map(|v| v.name).unwrap_or(code.clone()),
            Target::Office(code) => store.office_name(code).await?.unwrap_or(code.clone()),
            Target::Station(code) => match store.station_id(code).await? {
                Some(id) => store.station_of(id).await?.1,
                None => code.clone(),
            },
            Target::All => core.texts().plain(crate::texts::Msg::CapAreaAll),
            Target::Area(_) | Target::Near(_) => core.target_name(&t).await?,
        };
        let mut area = cap::Area::named(name);
        match &t {
            Target::Area(code) => {
                let index = store.area_index().await?;
                if let Some(v) = store.village_by_code(code).await?
                    && let Some(reached) = index.with_neighbours(v.id)
                {
                    area.polygons = reached.iter().flat_map(|a| cap::Area::polygons_of(&a.shape)).collect();
                }
            }
            Target::Near(n) => area.circles.push(cap::Area::circle(n.lat, n.lon, n.km)),
            _ => {}
        }
        areas.push(area);
    }
    if areas.is_empty() {
        areas.push(cap::Area::named(b.target_spec.clone()));
    }
    let original = match b.references_id {
        Some(id) => store.broadcast(id).await?,
        None => None,
    };
    Ok(cap::alert_of(b, original.as_ref(), areas, &settings.timezone(), &settings.file.general.locale))
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
    let text = info.resident_text();
    let own_reference = alert.own_reference();
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
        BroadcastKind::Warning,
        cap::severity_of(info),
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
