//! Broadcasts and their delivery ledger: one row per target chat or WeCom robot, written in
//! the same transaction as the broadcast, claimed by the delivery worker, settled once.
//! Also the "收到" acknowledgements, and the targets: the registry's codes, and places on the
//! map (`area:CODE`, `near:LAT,LON,KM`) resolved to villages through the area index.

use serde::Serialize;
use sqlx::FromRow;

use super::{Backend, Store};
use crate::domain::{BroadcastKind, BroadcastStatus, CapStatus, DeliveryState, Severity};

/// Whom a broadcast goes to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Target {
    Village(String),
    Office(String),
    Station(String),
    All,
    /// `area:CODE`: the area of village (grid) CODE and every area that touches it (shares
    /// at least a point with it: an edge, or only a corner), i.e. this village and those
    /// around it. Resolved to villages when the broadcast is created.
    Area(String),
    /// `near:LAT,LON,KM`: the villages whose areas come within KM of a WGS-84 point.
    Near(Near),
}

/// The largest radius of a `near:` target, in kilometres.
pub const MAX_NEAR_KM: f64 = 50.0;

/// A circle around a WGS-84 point: the `near:LAT,LON,KM` target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    pub km: f64,
}

/// `x` rounded to `places` decimals, without trailing zeros.
fn decimal(x: f64, places: usize) -> String {
    let s = format!("{x:.places$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

impl Near {
    /// A checked circle: a latitude and longitude on Earth, a radius above 0 and at most
    /// [`MAX_NEAR_KM`]. Kept to 6 decimals of a degree (10 cm) and to the metre.
    pub fn new(lat: f64, lon: f64, km: f64) -> Result<Near, String> {
        if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
            return Err(format!("latitude {lat} is not between -90 and 90 (write LAT,LON,KM: latitude first)"));
        }
        if !lon.is_finite() || !(-180.0..=180.0).contains(&lon) {
            return Err(format!("longitude {lon} is not between -180 and 180"));
        }
        if !km.is_finite() || km <= 0.0 || km > MAX_NEAR_KM {
            return Err(format!("the radius must be more than 0 and at most {MAX_NEAR_KM} km, not {km}"));
        }
        let round = |x: f64, places: i32| (x * 10f64.powi(places)).round() / 10f64.powi(places);
        Ok(Near { lat: round(lat, 6), lon: round(lon, 6), km: round(km, 3).max(0.001) })
    }

    /// Parses `LAT,LON,KM` (commas or spaces between).
    pub fn parse(s: &str) -> Result<Near, String> {
        let parts: Vec<&str> = s.split([',', ' ']).filter(|p| !p.is_empty()).collect();
        let numbers: Option<Vec<f64>> = parts.iter().map(|p| p.parse::<f64>().ok()).collect();
        match numbers.as_deref() {
            Some([lat, lon, km]) => Near::new(*lat, *lon, *km),
            _ => Err(format!("{s:?} is not LAT,LON,KM (three numbers: WGS-84 latitude, longitude, radius in km)")),
        }
    }

    /// `LAT,LON,KM` as the target spec writes it.
    pub fn spec(&self) -> String {
        format!("{},{},{}", decimal(self.lat, 6), decimal(self.lon, 6), decimal(self.km, 3))
    }

    /// The radius as people write it: `3`, `0.5`.
    pub fn km_text(&self) -> String {
        decimal(self.km, 3)
    }

    pub fn metres(&self) -> f64 {
        self.km * 1000.0
    }
}

const HOW_TO_WRITE: &str = "write village:CODE, office:CODE, station:CODE, area:CODE, near:LAT,LON,KM or all";

impl Target {
    /// Parses `village:CODE` (or `grid:CODE`), `office:CODE`, `station:CODE`, `area:CODE`,
    /// `near:LAT,LON,KM` or `all`.
    pub fn parse(s: &str) -> Result<Target, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(Target::All);
        }
        let (kind, code) = s.split_once(':').ok_or_else(|| format!("target {s:?}: {HOW_TO_WRITE}"))?;
        let code = code.trim().to_string();
        if code.is_empty() {
            return Err(format!("target {s:?} has no code after the colon"));
        }
        match kind {
            "village" | "grid" => Ok(Target::Village(code)),
            "office" => Ok(Target::Office(code)),
            "station" => Ok(Target::Station(code)),
            "area" => Ok(Target::Area(code)),
            "near" => Near::parse(&code).map(Target::Near).map_err(|e| format!("target {s:?}: {e}")),
            _ => {
                Err(format!("target {s:?}: the kind must be village, office, station, area or near (or the word all)"))
            }
        }
    }

    pub fn to_spec(&self) -> String {
        match self {
            Target::Village(c) => format!("village:{c}"),
            Target::Office(c) => format!("office:{c}"),
            Target::Station(c) => format!("station:{c}"),
            Target::All => "all".to_string(),
            Target::Area(c) => format!("area:{c}"),
            Target::Near(n) => format!("near:{}", n.spec()),
        }
    }

    /// Whether the target is a place on the map (`area:`, `near:`), resolved through the
    /// areas rather than the registry's codes.
    pub fn is_place(&self) -> bool {
        matches!(self, Target::Area(_) | Target::Near(_))
    }
}

/// Parses a target spec as stored in `broadcasts.target_spec` or given on the command line:
/// targets separated by spaces or commas (the commas inside `near:LAT,LON,KM` belong to it).
pub fn parse_targets(spec: &str) -> Result<Vec<Target>, String> {
    let mut pieces = spec.split([' ', ',', '\t', '\n']).filter(|s| !s.is_empty());
    let mut targets = Vec::new();
    while let Some(piece) = pieces.next() {
        if piece.starts_with("near:") {
            let mut parts = vec![piece];
            let wanted = if piece == "near:" { 4 } else { 3 };
            while parts.len() < wanted {
                match pieces.next() {
                    Some(p) => parts.push(p),
                    None => break,
                }
            }
            targets.push(Target::parse(&parts.join(","))?);
        } else {
            targets.push(Target::parse(piece)?);
        }
    }
    if targets.is_empty() {
        return Err(format!("no target given: {HOW_TO_WRITE}"));
    }
    Ok(targets)
}

/// What the place targets (`area:`, `near:`) of a broadcast reach: the villages, and why a
/// target reaches nothing.
#[derive(Debug, Clone, Default)]
pub struct Places {
    /// Village ids, each once, in order.
    pub villages: Vec<i64>,
    pub problems: Vec<PlaceProblem>,
}

/// Why a place target reaches nothing; `Display` says it for the command line, with the fix.
#[derive(Debug, Clone, PartialEq)]
pub enum PlaceProblem {
    /// No area is imported at all.
    NoAreas { spec: String },
    /// `area:CODE` names no village or grid.
    NoSuchVillage { spec: String },
    /// The village of `area:CODE` has no area.
    NoArea { spec: String, name: String },
    /// No area comes within the circle of `near:`.
    NothingNear { spec: String, km: String },
}

impl PlaceProblem {
    /// The target, as written.
    pub fn spec(&self) -> &str {
        match self {
            PlaceProblem::NoAreas { spec }
            | PlaceProblem::NoSuchVillage { spec }
            | PlaceProblem::NoArea { spec, .. }
            | PlaceProblem::NothingNear { spec, .. } => spec,
        }
    }
}

impl std::fmt::Display for PlaceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const IMPORT: &str = "add areas.geojson to the registry folder and run `cunjing registry import`";
        match self {
            PlaceProblem::NoAreas { spec } => write!(f, "{spec}: no areas are imported yet; {IMPORT}"),
            PlaceProblem::NoSuchVillage { spec } => write!(
                f,
                "{spec}: no such village or grid in the registry; check the code (`cunjing registry export` lists them)"
            ),
            PlaceProblem::NoArea { spec, name } => write!(f, "{spec} ({name}) has no area; {IMPORT} with its Feature"),
            PlaceProblem::NothingNear { spec, km } => write!(
                f,
                "{spec}: no village or grid area comes within {km} km of that point; check the point \
                 (WGS-84 latitude first) or widen the radius"
            ),
        }
    }
}

/// A broadcast to create.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub kind: BroadcastKind,
    pub severity: Severity,
    pub cap_status: CapStatus,
    pub cap_identifier: String,
    pub cap_references: Option<String>,
    pub references_id: Option<i64>,
    pub event: String,
    pub text: String,
    pub photo_file_id: Option<String>,
    pub targets: Vec<Target>,
    pub sender_officer_id: Option<i64>,
    pub sender_label: String,
    pub report: Option<(String, i64)>,
    pub schedule_job: Option<String>,
    pub send_at: i64,
    pub expires_at: Option<i64>,
    pub now: i64,
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct BroadcastRow {
    pub id: i64,
    pub kind: BroadcastKind,
    pub severity: Severity,
    pub status: BroadcastStatus,
    pub cap_status: CapStatus,
    pub cap_identifier: String,
    pub cap_references: Option<String>,
    pub references_id: Option<i64>,
    pub event: String,
    pub text: String,
    pub photo_file_id: Option<String>,
    pub target_spec: String,
    pub sender_officer_id: Option<i64>,
    pub sender_label: String,
    pub report_platform: Option<String>,
    pub report_chat_id: Option<i64>,
    pub last_report_at: Option<i64>,
    pub send_at: i64,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

const BROADCAST_COLUMNS: &str = "id, kind, severity, status, cap_status, cap_identifier, cap_references, references_id, \
     event, text, photo_file_id, target_spec, sender_officer_id, sender_label, report_platform, report_chat_id, \
     last_report_at, send_at, expires_at, created_at, finished_at";

/// A claimed delivery, with what the channel needs to send it.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub broadcast_id: i64,
    pub channel: String,
    pub chat_id: i64,
    pub address: Option<String>,
    pub reply_to: Option<i64>,
    pub attempts: i64,
    #[sqlx(try_from = "super::mapping::Flag")]
    pub bot_admin: bool,
}

/// A sent message to take back after a cancel.
#[derive(Debug, Clone, FromRow)]
pub struct Retraction {
    pub id: i64,
    pub broadcast_id: i64,
    pub chat_id: i64,
    pub address: Option<String>,
    pub message_id: Option<i64>,
    pub sent_at: Option<i64>,
}

/// How many targets are in each state; the states always add up to the targets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub targets: i64,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub lost: i64,
    pub expired: i64,
    pub cancelled: i64,
    pub acks: i64,
}

/// One line of the ledger.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct LedgerRow {
    pub id: i64,
    pub channel: String,
    pub chat_id: i64,
    pub title: Option<String>,
    pub village_code: Option<String>,
    pub village_name: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub message_id: Option<i64>,
    #[sqlx(try_from = "super::mapping::Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub pinned: bool,
    pub retract: Option<String>,
    pub detail: Option<String>,
    pub acks: i64,
}

/// The final state of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    Sent {
        message_id: Option<i64>,
        pinned: bool,
        detail: Option<String>,
    },
    Retry {
        at: i64,
        detail: String,
    },
    Failed(String),
    Lost(String),
    /// Not sent: cancelled, corrected or expired while it waited its turn.
    Stopped,
}

/// The statement that records one attempt's outcome.
fn settle_query(id: i64, settle: &Settle, now: i64) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    match settle {
        // A send that went out although a cancel or a correction took its row back while it
        // was on the wire is taken back in turn.
        Settle::Sent { message_id, pinned, detail } => sqlx::query(
            "UPDATE broadcast_deliveries SET state = 'sent', message_id = $2, pinned = $3, detail = $4, sent_at = $5, \
             retract = CASE WHEN state = 'cancelled' THEN 'pending' ELSE retract END, \
             claimed_at = NULL, updated_at = $5 WHERE id = $1",
        )
        .bind(id)
        .bind(*message_id)
        .bind(i64::from(*pinned))
        .bind(detail.clone())
        .bind(now),
        // Only a row still being sent goes back to the queue, or to its end.
        Settle::Retry { at, detail } => sqlx::query(
            "UPDATE broadcast_deliveries SET state = CASE WHEN state = 'sending' THEN 'pending' ELSE state END, \
             next_attempt_at = $2, detail = $3, claimed_at = NULL, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(*at)
        .bind(detail.clone())
        .bind(now),
        Settle::Failed(detail) | Settle::Lost(detail) => sqlx::query(
            "UPDATE broadcast_deliveries SET state = CASE WHEN state = 'sending' THEN $2 ELSE state END, detail = $3, \
             claimed_at = NULL, updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(if matches!(settle, Settle::Lost(_)) { DeliveryState::Lost } else { DeliveryState::Failed })
        .bind(detail.clone())
        .bind(now),
        // Stopped by the expiry the worker saw before the database did: expired.
        Settle::Stopped => sqlx::query(
            "UPDATE broadcast_deliveries SET state = CASE WHEN state = 'sending' THEN 'expired' ELSE state END, \
             claimed_at = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now),
    }
}

/// The columns that select villages for a target, over `villages v JOIN offices o JOIN
/// stations s`; the codes are bound from `$first`. `places` are the villages the place
/// targets (`area:`, `near:`) reached ([`Store::resolve_places`]), written as numbers.
fn target_filter(targets: &[Target], first: usize, places: &[i64]) -> (String, Vec<String>) {
    let mut parts = Vec::new();
    let mut binds = Vec::new();
    for t in targets {
        let n = first + binds.len();
        match t {
            Target::All => parts.push("1 = 1".to_string()),
            Target::Village(c) => {
                parts.push(format!("v.code = ${n}"));
                binds.push(c.clone());
            }
            Target::Office(c) => {
                parts.push(format!("o.code = ${n}"));
                binds.push(c.clone());
            }
            Target::Station(c) => {
                parts.push(format!("s.code = ${n}"));
                binds.push(c.clone());
            }
            Target::Area(_) | Target::Near(_) => {}
        }
    }
    if targets.iter().any(Target::is_place) {
        parts.push(if places.is_empty() {
            "1 = 0".to_string()
        } else {
            format!("v.id IN ({})", places.iter().map(i64::to_string).collect::<Vec<_>>().join(", "))
        });
    }
    if parts.is_empty() {
        parts.push("1 = 0".to_string());
    }
    (format!("({})", parts.join(" OR ")), binds)
}

/// The offices whose own robot a target reaches (office, station or all; not a village nor
/// a place).
fn office_filter(targets: &[Target], first: usize) -> Option<(String, Vec<String>)> {
    let wide: Vec<Target> =
        targets.iter().filter(|t| matches!(t, Target::Office(_) | Target::Station(_) | Target::All)).cloned().collect();
    if wide.is_empty() { None } else { Some(target_filter(&wide, first, &[])) }
}

/// Where a broadcast to `targets` goes, each a SELECT of (channel, chat_id, address,
/// village_id, ord) with its binds numbered from `$first` (a robot has chat 0 and an address): every active group the targets
/// reach on every platform (Telegram, WeCom, the console's chats …), then each reached
/// village's WeCom robot, then the robot of each reached office. A new broadcast writes one
/// delivery per row ([`Store::create_broadcast`]); the preview counts the same rows
/// ([`Store::count_destinations`]), so it says what the send will do.
fn destinations(targets: &[Target], first: usize, places: &[i64]) -> Vec<(String, Vec<String>)> {
    let (filter, binds) = target_filter(targets, first, places);
    let mut out = vec![
        (
            format!(
                "SELECT c.platform AS channel, c.chat_id AS chat_id, CAST(NULL AS TEXT) AS address, \
                 c.village_id AS village_id, c.id AS ord FROM {CHAT_JOIN} WHERE c.active = 1 AND {filter}"
            ),
            binds.clone(),
        ),
        (
            format!(
                "SELECT 'wecom' AS channel, CAST(0 AS BIGINT) AS chat_id, v.wecom_webhook AS address, \
                 v.id AS village_id, v.id AS ord FROM {VILLAGE_JOIN} \
                 WHERE v.wecom_webhook IS NOT NULL AND v.wecom_webhook <> '' AND {filter}"
            ),
            binds,
        ),
    ];
    if let Some((filter, binds)) = office_filter(targets, first) {
        out.push((
            format!(
                "SELECT 'wecom' AS channel, CAST(0 AS BIGINT) AS chat_id, o.wecom_webhook AS address, \
                 CAST(NULL AS BIGINT) AS village_id, o.id AS ord FROM offices o JOIN stations s ON s.id = o.station_id \
                 WHERE o.wecom_webhook IS NOT NULL AND o.wecom_webhook <> '' AND {filter}"
            ),
            binds,
        ));
    }
    out
}

const VILLAGE_JOIN: &str = "villages v JOIN offices o ON o.id = v.office_id JOIN stations s ON s.id = o.station_id";
/// Active groups with their village, office and station.
const CHAT_JOIN: &str = "chats c JOIN villages v ON v.id = c.village_id JOIN offices o ON o.id = v.office_id \
     JOIN stations s ON s.id = o.station_id";

impl Store {
    /// The codes among `targets` that name nothing in the registry.
    pub async fn unknown_targets(&self, targets: &[Target]) -> anyhow::Result<Vec<String>> {
        let mut unknown = Vec::new();
        for t in targets {
            let (sql, code) = match t {
                // Places name what they reach through the areas: see `resolve_places`.
                Target::All | Target::Area(_) | Target::Near(_) => continue,
                Target::Village(c) => ("SELECT COUNT(*) FROM villages WHERE code = $1", c),
                Target::Office(c) => ("SELECT COUNT(*) FROM offices WHERE code = $1", c),
                Target::Station(c) => ("SELECT COUNT(*) FROM stations WHERE code = $1", c),
            };
            let n: i64 = sqlx::query_scalar(sql).bind(code).fetch_one(self.pool()).await?;
            if n == 0 {
                unknown.push(t.to_spec());
            }
        }
        Ok(unknown)
    }

    /// The villages the place targets (`area:`, `near:`) among `targets` reach, through the
    /// areas as they are now, and what stops a target from reaching any.
    pub async fn resolve_places(&self, targets: &[Target]) -> anyhow::Result<Places> {
        let mut places = Places::default();
        if !targets.iter().any(Target::is_place) {
            return Ok(places);
        }
        let index = self.area_index().await?;
        let mut seen = std::collections::HashSet::new();
        for t in targets {
            let spec = t.to_spec();
            if t.is_place() && index.is_empty() {
                places.problems.push(PlaceProblem::NoAreas { spec });
                continue;
            }
            let reached: Vec<i64> = match t {
                Target::Area(code) => {
                    let Some(v) = self.village_by_code(code).await? else {
                        places.problems.push(PlaceProblem::NoSuchVillage { spec });
                        continue;
                    };
                    match index.with_neighbours(v.id) {
                        Some(areas) => areas.iter().map(|a| a.village_id).collect(),
                        None => {
                            places.problems.push(PlaceProblem::NoArea { spec, name: v.name });
                            continue;
                        }
                    }
                }
                Target::Near(n) => {
                    let found: Vec<i64> = index.near(n.lon, n.lat, n.metres()).iter().map(|a| a.village_id).collect();
                    if found.is_empty() {
                        places.problems.push(PlaceProblem::NothingNear { spec, km: n.km_text() });
                    }
                    found
                }
                _ => continue,
            };
            places.villages.extend(reached.into_iter().filter(|id| seen.insert(*id)));
        }
        Ok(places)
    }

    /// The villages the place targets among `targets` reach; an error that says what to fix
    /// when one reaches none.
    pub async fn place_villages(&self, targets: &[Target]) -> anyhow::Result<Vec<i64>> {
        let places = self.resolve_places(targets).await?;
        anyhow::ensure!(
            places.problems.is_empty(),
            "{}",
            places.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
        );
        Ok(places.villages)
    }

    /// The villages `targets` reach: (id, station id).
    pub async fn target_villages(&self, targets: &[Target]) -> anyhow::Result<Vec<(i64, i64)>> {
        let places = self.place_villages(targets).await?;
        let (filter, binds) = target_filter(targets, 1, &places);
        let sql = format!("SELECT v.id, s.id FROM {VILLAGE_JOIN} WHERE {filter} ORDER BY v.id");
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(!targets.iter().any(Target::is_place));
        for b in &binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Creates a broadcast and, in the same transaction, one pending delivery per active
    /// group bound to a targeted village and per WeCom robot of the targets. A correction
    /// (`references_id`) goes to the chats the original reached, as a reply to it.
    /// Returns the id and the number of targets.
    ///
    /// Place targets (`area:`, `near:`) are resolved now, through the areas as they are, like
    /// the registry's codes: the villages they reached are in `broadcast_villages` and the
    /// target spec keeps what was asked for.
    pub async fn create_broadcast(&self, b: &NewBroadcast) -> anyhow::Result<(i64, i64)> {
        let spec = b.targets.iter().map(Target::to_spec).collect::<Vec<_>>().join(" ");
        let places = if b.references_id.is_some() { vec![] } else { self.place_villages(&b.targets).await? };
        // A statement naming the villages of a place is not used again: not kept prepared.
        let persistent = places.is_empty();
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO broadcasts (kind, severity, status, cap_status, cap_identifier, cap_references, references_id, \
             event, text, photo_file_id, target_spec, sender_officer_id, sender_label, report_platform, report_chat_id, \
             schedule_job, send_at, expires_at, created_at, updated_at) \
             VALUES ($1, $2, $19, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18) RETURNING id",
        )
        .bind(b.kind)
        .bind(b.severity)
        .bind(b.cap_status)
        .bind(&b.cap_identifier)
        .bind(&b.cap_references)
        .bind(b.references_id)
        .bind(&b.event)
        .bind(&b.text)
        .bind(&b.photo_file_id)
        .bind(&spec)
        .bind(b.sender_officer_id)
        .bind(&b.sender_label)
        .bind(b.report.as_ref().map(|r| r.0.clone()))
        .bind(b.report.as_ref().map(|r| r.1))
        .bind(&b.schedule_job)
        .bind(b.send_at)
        .bind(b.expires_at)
        .bind(b.now)
        .bind(BroadcastStatus::Scheduled)
        .fetch_one(&mut *tx)
        .await?;
        let (filter, binds) = target_filter(&b.targets, 2, &places);
        if let Some(original) = b.references_id {
            sqlx::query(
                "INSERT INTO broadcast_villages (broadcast_id, village_id) SELECT $1, village_id FROM broadcast_villages \
                 WHERE broadcast_id = $2",
            )
            .bind(id)
            .bind(original)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE broadcasts SET target_spec = (SELECT target_spec FROM broadcasts WHERE id = $2) WHERE id = $1",
            )
            .bind(id)
            .bind(original)
            .execute(&mut *tx)
            .await?;
        } else {
            let sql = format!(
                "INSERT INTO broadcast_villages (broadcast_id, village_id) SELECT $1, v.id FROM {VILLAGE_JOIN} WHERE {filter}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(persistent).bind(id);
            for c in &binds {
                q = q.bind(c);
            }
            q.execute(&mut *tx).await?;
        }
        if let Some(original) = b.references_id {
            self.lock_deliveries(&mut tx, "broadcast_id = $1", original).await?;
            // Where the original went, the correction answers it; where it has not gone yet
            // (or is on its way), the correction goes instead, as a message of its own, and the
            // original's send is stopped (taken back if it was already on the wire).
            sqlx::query(
                "INSERT INTO broadcast_deliveries (broadcast_id, channel, chat_id, address, village_id, state, reply_to, updated_at) \
                 SELECT $1, channel, chat_id, address, village_id, 'pending', CASE WHEN state = 'sent' THEN message_id END, $3 \
                 FROM broadcast_deliveries WHERE broadcast_id = $2 AND state IN ('sent', 'pending', 'sending') ORDER BY id",
            )
            .bind(id)
            .bind(original)
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE broadcast_deliveries SET state = 'cancelled', detail = $3, updated_at = $4 \
                 WHERE broadcast_id = $2 AND state IN ('pending', 'sending')",
            )
            .bind(id)
            .bind(original)
            .bind(format!("replaced by correction #{id}"))
            .bind(b.now)
            .execute(&mut *tx)
            .await?;
        } else {
            for (select, binds) in destinations(&b.targets, 3, &places) {
                let sql = format!(
                    "INSERT INTO broadcast_deliveries (broadcast_id, channel, chat_id, address, village_id, state, updated_at) \
                     SELECT $1, d.channel, d.chat_id, d.address, d.village_id, 'pending', $2 FROM ({select}) d ORDER BY d.ord"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(persistent).bind(id).bind(b.now);
                for c in &binds {
                    q = q.bind(c);
                }
                q.execute(&mut *tx).await?;
            }
        }
        let targets: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcast_deliveries WHERE broadcast_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((id, targets))
    }

    pub async fn broadcast(&self, id: i64) -> anyhow::Result<Option<BroadcastRow>> {
        let sql = format!("SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?)
    }

    /// The broadcasts (newest first) a sender made, or all when `sender` is `None`.
    pub async fn recent_broadcasts(&self, sender: Option<i64>, limit: i64) -> anyhow::Result<Vec<BroadcastRow>> {
        let sql = match sender {
            Some(_) => format!(
                "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE sender_officer_id = $1 ORDER BY id DESC LIMIT $2"
            ),
            None => format!("SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE $1 = 0 ORDER BY id DESC LIMIT $2"),
        };
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(sender.unwrap_or(0))
            .bind(limit)
            .fetch_all(self.pool())
            .await?)
    }

    /// Deliveries left in flight by a daemon that stopped (killed, or silent since
    /// `alive_since`) are pending again, whatever the channel: another daemon, or this one
    /// after a restart, sends them (a target whose send was in flight may get it twice; none
    /// is missed). Rows claimed by a live daemon are left to it.
    pub async fn requeue_orphans(&self, alive_since: i64) -> anyhow::Result<u64> {
        Ok(sqlx::query(
            "UPDATE broadcast_deliveries SET state = 'pending', claimed_at = NULL, claimed_by = NULL \
             WHERE state = 'sending' AND (claimed_by IS NULL OR claimed_by NOT IN \
             (SELECT id FROM daemons WHERE heartbeat_at >= $1))",
        )
        .bind(alive_since)
        .execute(self.writer())
        .await?
        .rows_affected())
    }

    /// How many delivery rows are in each state (for `/metrics` and `/healthz`).
    pub async fn delivery_states(&self) -> anyhow::Result<Vec<(DeliveryState, i64)>> {
        Ok(sqlx::query_as("SELECT state, COUNT(*) FROM broadcast_deliveries GROUP BY state")
            .fetch_all(self.pool())
            .await?)
    }

    /// Pending deliveries of broadcasts past their expiry are not sent any more.
    pub async fn expire_deliveries(&self, now: i64) -> anyhow::Result<u64> {
        let due = "state IN ('pending', 'sending') AND broadcast_id IN \
             (SELECT id FROM broadcasts WHERE status = 'scheduled' AND expires_at IS NOT NULL AND expires_at <= $1)";
        let mut tx = self.begin_write().await?;
        self.lock_deliveries(&mut tx, due, now).await?;
        let sql = format!("UPDATE broadcast_deliveries SET state = 'expired', updated_at = $1 WHERE {due}");
        let n = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// On PostgreSQL, locks the delivery rows `filter` (with one bound value, `$1`) selects,
    /// in id order. Every statement that changes several rows a worker may be settling takes
    /// its locks this way first, and the worker settles in id order too: two transactions
    /// that lock the same rows in different orders deadlock (a cancel during a send did).
    async fn lock_deliveries(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        filter: &str,
        value: i64,
    ) -> anyhow::Result<()> {
        if self.backend() == super::Backend::Postgres {
            let sql = format!("SELECT id FROM broadcast_deliveries WHERE {filter} ORDER BY id FOR UPDATE");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).fetch_all(&mut **tx).await?;
        }
        Ok(())
    }

    /// Claims up to `limit` due deliveries of `channel`: urgent broadcasts first, then in
    /// order. On PostgreSQL several daemons claim disjoint rows (`SKIP LOCKED`).
    pub async fn claim_deliveries(
        &self,
        channel: &str,
        daemon: &str,
        now: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<ClaimedDelivery>> {
        // The broadcasts being sent, most urgent first; then each one's pending targets in id
        // order. One query over all pending targets sorted them all on every round (by a
        // severity the index cannot give), which made a 46,000-group warning quadratic.
        let order = "SELECT id FROM broadcasts WHERE status = 'scheduled' AND send_at <= $1 \
             ORDER BY CASE severity WHEN 'urgent' THEN 0 WHEN 'important' THEN 1 ELSE 2 END, id";
        let sending: Vec<i64> = sqlx::query_scalar(order).bind(now).fetch_all(self.pool()).await?;
        let lock = if self.backend() == Backend::Postgres { "FOR UPDATE OF d SKIP LOCKED" } else { "" };
        let sql = format!(
            "UPDATE broadcast_deliveries SET state = 'sending', claimed_at = $2, claimed_by = $4, \
             attempts = attempts + 1, updated_at = $2 WHERE id IN (SELECT d.id FROM broadcast_deliveries d \
             JOIN broadcasts b ON b.id = d.broadcast_id WHERE d.broadcast_id = $5 AND d.state = 'pending' \
             AND d.channel = $1 AND d.next_attempt_at <= $2 AND b.status = 'scheduled' ORDER BY d.id LIMIT $3 {lock}) \
             RETURNING id"
        );
        let mut ids: Vec<i64> = Vec::new();
        for broadcast in sending {
            let room = limit - ids.len() as i64;
            if room <= 0 {
                break;
            }
            let claimed: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(channel)
                .bind(now)
                .bind(room)
                .bind(daemon)
                .bind(broadcast)
                .fetch_all(self.writer())
                .await?;
            ids.extend(claimed);
        }
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "SELECT d.id, d.broadcast_id, d.channel, d.chat_id, d.address, d.reply_to, d.attempts, \
             COALESCE(c.bot_admin, 0) AS bot_admin FROM broadcast_deliveries d \
             LEFT JOIN chats c ON c.platform = d.channel AND c.chat_id = d.chat_id WHERE d.id IN ({list}) ORDER BY d.id"
        );
        // The ids are in the text: a statement never used again, not kept prepared.
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).persistent(false).fetch_all(self.pool()).await?)
    }

    /// Records the outcomes of attempts, in one transaction (one commit for a whole batch of
    /// sends, not one each).
    pub async fn settle_deliveries(&self, settled: &[(i64, Settle)], now: i64) -> anyhow::Result<()> {
        if settled.is_empty() {
            return Ok(());
        }
        let mut in_order: Vec<&(i64, Settle)> = settled.iter().collect();
        in_order.sort_by_key(|(id, _)| *id); // see `lock_deliveries`
        let mut tx = self.begin_write().await?;
        for (id, settle) in in_order {
            settle_query(*id, settle, now).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A delivery whose group became a supergroup now goes to the new chat.
    pub async fn delivery_migrated(&self, id: i64, to_chat_id: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE broadcast_deliveries SET chat_id = $2 WHERE id = $1")
            .bind(id)
            .bind(to_chat_id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn broadcast_counts(&self, id: i64) -> anyhow::Result<Counts> {
        let rows: Vec<(DeliveryState, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM broadcast_deliveries WHERE broadcast_id = $1 GROUP BY state")
                .bind(id)
                .fetch_all(self.pool())
                .await?;
        let mut c = Counts::default();
        for (state, n) in rows {
            c.targets += n;
            match state {
                DeliveryState::Pending => c.pending = n,
                DeliveryState::Sending => c.sending = n,
                DeliveryState::Sent => c.sent = n,
                DeliveryState::Failed => c.failed = n,
                DeliveryState::Lost => c.lost = n,
                DeliveryState::Expired => c.expired = n,
                DeliveryState::Cancelled => c.cancelled = n,
            }
        }
        c.acks = sqlx::query_scalar(
            "SELECT COUNT(*) FROM broadcast_acks a JOIN broadcast_deliveries d ON d.id = a.delivery_id WHERE d.broadcast_id = $1",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(c)
    }

    pub async fn broadcast_ledger(&self, id: i64) -> anyhow::Result<Vec<LedgerRow>> {
        Ok(sqlx::query_as(
            "SELECT d.id, d.channel, d.chat_id, c.title, v.code AS village_code, v.name AS village_name, d.state, d.attempts, \
             d.message_id, d.pinned, d.retract, d.detail, \
             (SELECT COUNT(*) FROM broadcast_acks a WHERE a.delivery_id = d.id) AS acks \
             FROM broadcast_deliveries d LEFT JOIN chats c ON c.platform = d.channel AND c.chat_id = d.chat_id \
             LEFT JOIN villages v ON v.id = d.village_id WHERE d.broadcast_id = $1 ORDER BY d.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }

    /// Broadcasts whose every target is settled, marked done; returned so their senders can
    /// be told.
    pub async fn finish_broadcasts(&self, now: i64) -> anyhow::Result<Vec<BroadcastRow>> {
        let sql = format!(
            "UPDATE broadcasts SET status = $2, finished_at = $1, updated_at = $1 WHERE status = $3 \
             AND send_at <= $1 AND NOT EXISTS (SELECT 1 FROM broadcast_deliveries d WHERE d.broadcast_id = broadcasts.id \
             AND d.state IN ($4, $5)) RETURNING {BROADCAST_COLUMNS}"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(BroadcastStatus::Done)
            .bind(BroadcastStatus::Scheduled)
            .bind(DeliveryState::Pending)
            .bind(DeliveryState::Sending)
            .fetch_all(self.writer())
            .await?)
    }

    /// Broadcasts being sent whose sender was last told of the progress before `before`.
    pub async fn broadcasts_due_progress(&self, platform: &str, before: i64) -> anyhow::Result<Vec<BroadcastRow>> {
        let sql = format!(
            "SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE status = $3 AND report_platform = $1 \
             AND send_at <= $2 AND COALESCE(last_report_at, created_at) <= $2 ORDER BY id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(platform)
            .bind(before)
            .bind(BroadcastStatus::Scheduled)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn broadcast_reported(&self, id: i64, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE broadcasts SET last_report_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Cancels a broadcast: pending targets are not sent; sent messages are queued to be
    /// taken back. Returns false when it was already cancelled.
    pub async fn cancel_broadcast(&self, id: i64, now: i64) -> anyhow::Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE broadcasts SET status = $3, finished_at = $2, updated_at = $2 WHERE id = $1 AND status <> $3",
        )
        .bind(id)
        .bind(now)
        .bind(BroadcastStatus::Cancelled)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        self.lock_deliveries(&mut tx, "broadcast_id = $1", id).await?;
        sqlx::query(
            "UPDATE broadcast_deliveries SET state = $3, updated_at = $2 WHERE broadcast_id = $1 AND state IN ($4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(DeliveryState::Cancelled)
        .bind(DeliveryState::Pending)
        .bind(DeliveryState::Sending)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE broadcast_deliveries SET retract = 'pending', updated_at = $2 WHERE broadcast_id = $1 AND state = 'sent' \
             AND retract IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Of the claimed rows `ids`, those a cancel, a correction or an expiry took back.
    pub async fn stopped_deliveries(&self, ids: &[i64]) -> anyhow::Result<Vec<i64>> {
        if ids.is_empty() {
            return Ok(vec![]);
        }
        let marks: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id FROM broadcast_deliveries WHERE state IN ('cancelled', 'expired') AND id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for id in ids {
            q = q.bind(*id);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// Claims sent messages of `channel` to take back after a cancel.
    pub async fn claim_retractions(&self, channel: &str, limit: i64) -> anyhow::Result<Vec<Retraction>> {
        let rows: Vec<Retraction> = sqlx::query_as(
            "SELECT id, broadcast_id, chat_id, address, message_id, sent_at FROM broadcast_deliveries \
             WHERE channel = $1 AND retract = 'pending' ORDER BY id LIMIT $2",
        )
        .bind(channel)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows)
    }

    pub async fn settle_retraction(&self, id: i64, outcome: &str, now: i64) -> anyhow::Result<()> {
        sqlx::query("UPDATE broadcast_deliveries SET retract = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(outcome)
            .bind(now)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// A "收到" press. Returns false for a second press by the same person (or an unknown
    /// delivery).
    pub async fn acknowledge_delivery(&self, delivery_id: i64, user_id: i64, now: i64) -> anyhow::Result<bool> {
        let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcast_deliveries WHERE id = $1")
            .bind(delivery_id)
            .fetch_one(self.pool())
            .await?;
        if known == 0 {
            return Ok(false);
        }
        let n = sqlx::query(
            "INSERT INTO broadcast_acks (delivery_id, user_id, at) VALUES ($1, $2, $3) ON CONFLICT (delivery_id, user_id) DO NOTHING",
        )
        .bind(delivery_id)
        .bind(user_id)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected();
        Ok(n > 0)
    }
}

impl Store {
    /// How many deliveries a new broadcast to `targets` would make: every group on every
    /// platform and every WeCom robot it reaches (the rows [`Store::create_broadcast`] writes).
    pub async fn count_destinations(&self, targets: &[Target]) -> anyhow::Result<i64> {
        let places = self.place_villages(targets).await?;
        let mut total = 0;
        for (select, binds) in destinations(targets, 1, &places) {
            let sql = format!("SELECT COUNT(*) FROM ({select}) d");
            let mut q = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql)).persistent(places.is_empty());
            for b in &binds {
                q = q.bind(b);
            }
            total += q.fetch_one(self.pool()).await?;
        }
        Ok(total)
    }
}

impl Store {
    /// The villages broadcast `id` reached when it was created: (id, station id).
    pub async fn broadcast_villages(&self, id: i64) -> anyhow::Result<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT v.id, o.station_id FROM broadcast_villages bv JOIN villages v ON v.id = bv.village_id \
             JOIN offices o ON o.id = v.office_id WHERE bv.broadcast_id = $1 ORDER BY v.id",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn broadcast_by_cap_identifier(&self, identifier: &str) -> anyhow::Result<Option<BroadcastRow>> {
        let sql = format!("SELECT {BROADCAST_COLUMNS} FROM broadcasts WHERE cap_identifier = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(identifier).fetch_optional(self.pool()).await?)
    }
}

impl Store {
    /// The latest broadcasts that reached a village of `station_id` (all with `None`).
    pub async fn station_broadcasts(&self, station_id: Option<i64>, limit: i64) -> anyhow::Result<Vec<BroadcastRow>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, severity, status, cap_status, cap_identifier, cap_references, references_id, event, text, \
             photo_file_id, target_spec, sender_officer_id, sender_label, report_platform, report_chat_id, \
             last_report_at, send_at, expires_at, created_at, finished_at FROM broadcasts b \
             WHERE $1 = 0 OR b.id IN (SELECT bv.broadcast_id FROM broadcast_villages bv \
             JOIN villages v ON v.id = bv.village_id JOIN offices o ON o.id = v.office_id WHERE o.station_id = $1) \
             ORDER BY b.id DESC LIMIT $2",
        )
        .bind(station_id.unwrap_or(0))
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_a_bad_one_says_how_to_write_it() {
        assert_eq!(parse_targets("village:V1, office:O1 all").unwrap().len(), 3);
        assert!(Target::parse("county:X").unwrap_err().contains("village, office, station, area or near"));
        assert!(parse_targets(" ").unwrap_err().contains("no target"));
    }

    #[test]
    fn place_targets_parse_and_write_back_as_themselves() {
        let near = Target::Near(Near { lat: 34.489044, lon: 113.710898, km: 3.0 });
        // Commas inside near: belong to it, wherever the list is split.
        for spec in [
            "area:410184101201 near:34.489044,113.710898,3",
            "area:410184101201,near:34.489044,113.710898,3",
            "area:410184101201 near:34.489044 113.710898 3",
            "area:410184101201, near: 34.489044, 113.710898, 3",
        ] {
            assert_eq!(parse_targets(spec).unwrap(), [Target::Area("410184101201".into()), near.clone()], "{spec}");
        }
        assert_eq!(near.to_spec(), "near:34.489044,113.710898,3");
        assert_eq!(Target::parse("near:34.4,113.7,0.5").unwrap().to_spec(), "near:34.4,113.7,0.5");
        assert_eq!(Target::parse("near:-33.8688,151.2093,2").unwrap().to_spec(), "near:-33.8688,151.2093,2");
        // Kept to 10 cm.
        assert_eq!(Target::parse("near:34.1234567891,113.7,1").unwrap().to_spec(), "near:34.123457,113.7,1");
    }

    #[test]
    fn a_bad_circle_is_refused_with_what_to_write() {
        let err = |s: &str| Target::parse(s).unwrap_err();
        assert!(err("near:34.4,113.7,51").contains("at most 50 km"), "{}", err("near:34.4,113.7,51"));
        assert!(err("near:34.4,113.7,0").contains("more than 0"));
        assert!(err("near:34.4,113.7,-1").contains("more than 0"));
        assert!(err("near:113.7,34.4,3").contains("latitude 113.7"), "swapped: {}", err("near:113.7,34.4,3"));
        assert!(err("near:34.4,113.7").contains("LAT,LON,KM"));
        assert!(err("near:34.4,east,3").contains("LAT,LON,KM"));
        assert!(err("near:NaN,113.7,3").contains("latitude"));
        assert!(err("area:").contains("no code"));
    }
}
