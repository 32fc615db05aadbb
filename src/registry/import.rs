//! Reading and validating the five registry CSV files, then writing them in one transaction.
//!
//! The directory is the whole registry: references are resolved between the files, every
//! line of every file is checked before anything is written, and any error leaves the
//! database untouched. Stations, offices, villages and officers that are missing from the
//! files are kept (groups may be bound to them); assignments missing from the file are ended
//! (`until` = today), never deleted, so the history of who served a village stays.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::NaiveDate;

use super::areas::{AreaRec, parse_areas};
use super::{ImportError, ImportSummary, LineError};
use crate::domain::{
    AssignmentRole, BadgeNumber, OfficeCode, OfficeKind, OfficerKind, Phone, StationCode, VillageCode, VillageKind,
};
use crate::store::{Backend, Store, batch, now_ms};

/// One column of a registry file: its English name and the Chinese headers accepted for it.
struct Col {
    name: &'static str,
    aliases: &'static [&'static str],
    required: bool,
    /// The most characters a value may have: a name goes into every contact card, and a
    /// 10 MB village name imported once would be sent with each of them (issue #20).
    max_chars: usize,
}

const fn col(name: &'static str, aliases: &'static [&'static str], required: bool) -> Col {
    let max_chars = match name.as_bytes() {
        b"name" => 64,
        b"address" => 200,
        b"hours" => 100,
        _ => 32,
    };
    Col { name, aliases, required, max_chars }
}

const STATIONS: &[Col] = &[
    col("code", &["编码", "代码", "派出所编码", "派出所代码"], true),
    col("name", &["名称", "派出所", "派出所名称"], true),
    col("duty_phone", &["值班电话", "24小时值班电话"], true),
    col("address", &["地址"], false),
];
const OFFICES: &[Col] = &[
    col("code", &["编码", "代码", "警务室编码", "警务室代码"], true),
    col("station", &["派出所", "所属派出所", "派出所编码"], true),
    col("name", &["名称", "警务室", "警务室名称"], true),
    col("kind", &["类型", "类别"], true),
    col("address", &["地址"], false),
    col("hours", &["办公时间", "开放时间"], false),
    col("phone", &["电话", "联系电话"], false),
];
const VILLAGES: &[Col] = &[
    col("code", &["编码", "代码", "村编码", "区划代码"], true),
    col("name", &["名称", "村名", "村（格）", "村(格)", "网格"], true),
    col("kind", &["类型", "类别"], true),
    col("office", &["警务室", "所属警务室", "警务室编码"], true),
    col("households", &["户数"], false),
    col("population", &["人口", "人数"], false),
];
const OFFICERS: &[Col] = &[
    col("badge", &["警号", "编号"], true),
    col("name", &["姓名"], true),
    col("kind", &["类型", "类别", "身份"], true),
    col("phone", &["电话", "手机", "联系电话"], false),
    col("station", &["派出所", "所属派出所", "派出所编码"], true),
];
const ASSIGNMENTS: &[Col] = &[
    col("village", &["村", "村（格）", "村(格)", "网格", "村编码"], true),
    col("badge", &["警号", "编号"], true),
    col("role", &["角色", "职责"], true),
    col("since", &["开始日期", "起始日期", "起始时间"], true),
    col("until", &["结束日期", "截止日期"], false),
];

/// The file names, in the order they are read and written.
pub const FILES: [&str; 5] = ["stations.csv", "offices.csv", "villages.csv", "officers.csv", "assignments.csv"];

/// One data line: its line number and its values in the column order of the spec (missing
/// optional columns are empty strings).
struct Line {
    number: usize,
    values: Vec<String>,
}

impl Line {
    fn get(&self, i: usize) -> &str {
        self.values.get(i).map(String::as_str).unwrap_or("")
    }
}

/// Collects the errors of one file.
struct Errors<'a> {
    file: &'a Path,
    list: &'a mut Vec<LineError>,
}

impl Errors<'_> {
    fn at(&mut self, line: usize, message: impl Into<String>) {
        self.list.push(LineError { file: self.file.to_path_buf(), line, feature: 0, message: message.into() });
    }
}

/// Reads one file into lines, checking encoding, header and field counts.
fn read_file(path: &Path, spec: &[Col], errors: &mut Vec<LineError>) -> Vec<Line> {
    let mut err = Errors { file: path, list: errors };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            err.at(0, format!("file not found; the registry directory needs all of {}", FILES.join(", ")));
            return vec![];
        }
        Err(e) => {
            err.at(0, format!("cannot be read: {e}"));
            return vec![];
        }
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
            err.at(
                line,
                "the file is not UTF-8 text (Excel often saves GBK); in Excel choose Save As → \"CSV UTF-8 (逗号分隔)\"",
            );
            return vec![];
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            err.at(1, format!("the header row cannot be read: {e}"));
            return vec![];
        }
    };
    let accepted = || {
        spec.iter()
            .map(|c| {
                if c.aliases.is_empty() { c.name.to_string() } else { format!("{} ({})", c.name, c.aliases.join("/")) }
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // Column of the file → index in the spec.
    let mut mapping = Vec::with_capacity(headers.len());
    let mut seen = vec![false; spec.len()];
    let mut header_ok = true;
    for h in headers.iter() {
        let found = spec.iter().position(|c| c.name.eq_ignore_ascii_case(h) || c.aliases.contains(&h));
        match found {
            Some(i) if seen[i] => {
                err.at(1, format!("column {:?} appears twice", spec[i].name));
                header_ok = false;
            }
            Some(i) => seen[i] = true,
            None => {
                err.at(1, format!("unknown column {h:?}; the columns of this file are: {}", accepted()));
                header_ok = false;
            }
        }
        mapping.push(found);
    }
    for (i, c) in spec.iter().enumerate() {
        if c.required && !seen[i] {
            err.at(
                1,
                format!("missing column {:?}; add it to the header row (the columns are: {})", c.name, accepted()),
            );
            header_ok = false;
        }
    }
    if !header_ok {
        return vec![];
    }
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                err.at(line, format!("cannot be read as CSV: {e}"));
                continue;
            }
        };
        let number = record.position().map(|p| p.line() as usize).unwrap_or(0);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if record.len() != headers.len() {
            err.at(
                number,
                format!(
                    "has {} fields but the header has {}; put values that contain commas in double quotes",
                    record.len(),
                    headers.len()
                ),
            );
            continue;
        }
        let mut values = vec![String::new(); spec.len()];
        for (field, target) in record.iter().zip(&mapping) {
            if let Some(i) = target {
                let chars = field.chars().count();
                if chars > spec[*i].max_chars {
                    err.at(
                        number,
                        format!(
                            "column {} is {chars} characters long; at most {} are allowed, shorten it",
                            spec[*i].name, spec[*i].max_chars
                        ),
                    );
                }
                // A cell the export made inert (`'=…`) comes back as it was.
                values[*i] = crate::csv_cells::restore(field).to_string();
            }
        }
        lines.push(Line { number, values });
    }
    lines
}

pub(crate) struct StationRec {
    pub code: StationCode,
    pub name: String,
    pub duty_phone: Phone,
    pub address: String,
}

pub(crate) struct OfficeRec {
    pub code: OfficeCode,
    pub station: StationCode,
    pub name: String,
    pub kind: OfficeKind,
    pub address: String,
    pub hours: String,
    pub phone: Option<Phone>,
}

pub(crate) struct VillageRec {
    pub code: VillageCode,
    pub name: String,
    pub kind: VillageKind,
    pub office: OfficeCode,
    pub households: Option<i64>,
    pub population: Option<i64>,
}

pub(crate) struct OfficerRec {
    pub badge: BadgeNumber,
    pub name: String,
    pub kind: OfficerKind,
    pub phone: Option<Phone>,
    pub station: StationCode,
}

pub(crate) struct AssignmentRec {
    pub village: VillageCode,
    pub badge: BadgeNumber,
    pub role: AssignmentRole,
    pub since: NaiveDate,
    pub until: Option<NaiveDate>,
}

/// The five files, parsed and checked.
pub struct RegistryFiles {
    pub(crate) stations: Vec<StationRec>,
    pub(crate) offices: Vec<OfficeRec>,
    pub(crate) villages: Vec<VillageRec>,
    pub(crate) officers: Vec<OfficerRec>,
    pub(crate) assignments: Vec<AssignmentRec>,
    /// The areas files' features (none when the registry has no areas).
    pub(crate) areas: Vec<AreaRec>,
}

/// Parses a field with a domain parser; on error records it and returns `None`.
fn parse_with<T>(
    err: &mut Errors<'_>,
    line: usize,
    f: impl FnOnce() -> Result<T, crate::domain::InvalidValue>,
) -> Option<T> {
    match f() {
        Ok(v) => Some(v),
        Err(e) => {
            err.at(line, e.0);
            None
        }
    }
}

fn required(err: &mut Errors<'_>, line: &Line, i: usize, what: &str) -> Option<String> {
    let v = line.get(i);
    if v.is_empty() {
        err.at(line.number, format!("{what} is empty; fill it in"));
        None
    } else {
        Some(v.to_string())
    }
}

fn optional_phone(err: &mut Errors<'_>, line: &Line, i: usize) -> Option<Option<Phone>> {
    let v = line.get(i);
    if v.is_empty() { Some(None) } else { parse_with(err, line.number, || Phone::parse(v)).map(Some) }
}

fn optional_count(err: &mut Errors<'_>, line: &Line, i: usize, what: &str) -> Option<Option<i64>> {
    let v = line.get(i);
    if v.is_empty() {
        return Some(None);
    }
    match v.parse::<i64>() {
        Ok(n) if n >= 0 => Some(Some(n)),
        _ => {
            err.at(
                line.number,
                format!("{what} {v:?} is not a whole number; write digits only (e.g. 612) or leave it empty"),
            );
            None
        }
    }
}

fn date(err: &mut Errors<'_>, line: usize, v: &str, what: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            err.at(line, format!("{what} {v:?} is not a date; write YYYY-MM-DD (e.g. 2024-03-01)"));
            None
        }
    }
}

/// Reports a reference to a code that the referenced file does not have.
fn check_ref(err: &mut Errors<'_>, line: usize, what: &str, code: &str, known: &HashSet<&str>, file: &str, fix: &str) {
    if !known.contains(code) {
        err.at(line, format!("{what} {code:?} is not in {file}; {fix}"));
    }
}

/// The first column (code or badge) of each line that has one.
fn raw_codes(lines: &[Line]) -> impl Iterator<Item = (&str, usize)> {
    lines.iter().map(|l| (l.get(0), l.number)).filter(|(c, _)| !c.is_empty())
}

/// Reports codes that appear on two lines.
fn duplicates<'a>(err: &mut Errors<'_>, what: &str, items: impl Iterator<Item = (&'a str, usize)>) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (code, line) in items {
        if let Some(prev) = first.get(code) {
            err.at(line, format!("duplicate {what} {code:?} (also on line {prev}); each {what} may appear once"));
        } else {
            first.insert(code, line);
        }
    }
}

/// Reads and checks the five files of `dir`. Every problem of every file comes back.
pub fn parse_dir(dir: &Path) -> Result<RegistryFiles, Vec<LineError>> {
    let mut errors = Vec::new();
    let paths: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();

    let station_lines = read_file(&paths[0], STATIONS, &mut errors);
    let office_lines = read_file(&paths[1], OFFICES, &mut errors);
    let village_lines = read_file(&paths[2], VILLAGES, &mut errors);
    let officer_lines = read_file(&paths[3], OFFICERS, &mut errors);
    let assignment_lines = read_file(&paths[4], ASSIGNMENTS, &mut errors);

    let mut stations = Vec::new();
    {
        let mut err = Errors { file: &paths[0], list: &mut errors };
        for l in &station_lines {
            let code = parse_with(&mut err, l.number, || StationCode::parse(l.get(0)));
            let name = required(&mut err, l, 1, "name");
            let phone = if l.get(2).is_empty() {
                err.at(l.number, "duty_phone is empty; every station needs its 24-hour duty phone");
                None
            } else {
                parse_with(&mut err, l.number, || Phone::parse(l.get(2)))
            };
            if let (Some(code), Some(name), Some(duty_phone)) = (code, name, phone) {
                stations.push(StationRec { code, name, duty_phone, address: l.get(3).to_string() });
            }
        }
        duplicates(&mut err, "code", raw_codes(&station_lines));
    }
    // References resolve against every code written in a file, so one bad field of a line does
    // not make every line that points to it an error too.
    let station_codes: HashSet<&str> = raw_codes(&station_lines).map(|(c, _)| c).collect();

    let mut offices = Vec::new();
    {
        let mut err = Errors { file: &paths[1], list: &mut errors };
        for l in &office_lines {
            let code = parse_with(&mut err, l.number, || OfficeCode::parse(l.get(0)));
            let station = parse_with(&mut err, l.number, || StationCode::parse(l.get(1)));
            let name = required(&mut err, l, 2, "name");
            let kind = parse_with(&mut err, l.number, || OfficeKind::parse(l.get(3)));
            let phone = optional_phone(&mut err, l, 6);
            if let Some(s) = &station {
                check_ref(
                    &mut err,
                    l.number,
                    "station",
                    s.as_str(),
                    &station_codes,
                    "stations.csv",
                    "add it there or correct the code",
                );
            }
            if let (Some(code), Some(station), Some(name), Some(kind), Some(phone)) = (code, station, name, kind, phone)
            {
                offices.push(OfficeRec {
                    code,
                    station,
                    name,
                    kind,
                    address: l.get(4).to_string(),
                    hours: l.get(5).to_string(),
                    phone,
                });
            }
        }
        duplicates(&mut err, "code", raw_codes(&office_lines));
    }
    let office_codes: HashSet<&str> = raw_codes(&office_lines).map(|(c, _)| c).collect();

    let mut villages = Vec::new();
    {
        let mut err = Errors { file: &paths[2], list: &mut errors };
        for l in &village_lines {
            let code = parse_with(&mut err, l.number, || VillageCode::parse(l.get(0)));
            let name = required(&mut err, l, 1, "name");
            let kind = parse_with(&mut err, l.number, || VillageKind::parse(l.get(2)));
            let office = parse_with(&mut err, l.number, || OfficeCode::parse(l.get(3)));
            let households = optional_count(&mut err, l, 4, "households");
            let population = optional_count(&mut err, l, 5, "population");
            if let Some(o) = &office {
                check_ref(
                    &mut err,
                    l.number,
                    "office",
                    o.as_str(),
                    &office_codes,
                    "offices.csv",
                    "add it there or correct the code",
                );
            }
            if let (Some(code), Some(name), Some(kind), Some(office), Some(households), Some(population)) =
                (code, name, kind, office, households, population)
            {
                villages.push(VillageRec { code, name, kind, office, households, population });
            }
        }
        duplicates(&mut err, "code", raw_codes(&village_lines));
    }

    let mut officers = Vec::new();
    {
        let mut err = Errors { file: &paths[3], list: &mut errors };
        for l in &officer_lines {
            let badge = parse_with(&mut err, l.number, || BadgeNumber::parse(l.get(0)));
            let name = required(&mut err, l, 1, "name");
            let kind = parse_with(&mut err, l.number, || OfficerKind::parse(l.get(2)));
            let phone = optional_phone(&mut err, l, 3);
            let station = parse_with(&mut err, l.number, || StationCode::parse(l.get(4)));
            if let Some(s) = &station {
                check_ref(
                    &mut err,
                    l.number,
                    "station",
                    s.as_str(),
                    &station_codes,
                    "stations.csv",
                    "add it there or correct the code",
                );
            }
            if let (Some(badge), Some(name), Some(kind), Some(phone), Some(station)) =
                (badge, name, kind, phone, station)
            {
                officers.push(OfficerRec { badge, name, kind, phone, station });
            }
        }
        duplicates(&mut err, "badge", raw_codes(&officer_lines));
    }
    let village_codes: HashSet<&str> = raw_codes(&village_lines).map(|(c, _)| c).collect();
    let officer_badges: HashSet<&str> = raw_codes(&officer_lines).map(|(c, _)| c).collect();
    let officer_by_badge: HashMap<&str, &OfficerRec> = officers.iter().map(|o| (o.badge.as_str(), o)).collect();

    let mut assignments = Vec::new();
    {
        let mut err = Errors { file: &paths[4], list: &mut errors };
        let mut seen: HashMap<(String, String, AssignmentRole, NaiveDate), usize> = HashMap::new();
        for l in &assignment_lines {
            let village = parse_with(&mut err, l.number, || VillageCode::parse(l.get(0)));
            let badge = parse_with(&mut err, l.number, || BadgeNumber::parse(l.get(1)));
            let role = parse_with(&mut err, l.number, || AssignmentRole::parse(l.get(2)));
            let since = if l.get(3).is_empty() {
                err.at(l.number, "since is empty; write the first day of the assignment as YYYY-MM-DD");
                None
            } else {
                date(&mut err, l.number, l.get(3), "since")
            };
            let until =
                if l.get(4).is_empty() { Some(None) } else { date(&mut err, l.number, l.get(4), "until").map(Some) };
            if let Some(v) = &village {
                check_ref(
                    &mut err,
                    l.number,
                    "village",
                    v.as_str(),
                    &village_codes,
                    "villages.csv",
                    "add it there or correct the code",
                );
            }
            let officer = badge.as_ref().and_then(|b| officer_by_badge.get(b.as_str()).copied());
            if let Some(b) = &badge {
                check_ref(
                    &mut err,
                    l.number,
                    "badge",
                    b.as_str(),
                    &officer_badges,
                    "officers.csv",
                    "add the officer there or correct the badge",
                );
            }
            if let (Some(o), Some(r)) = (officer, role) {
                let fits = match r {
                    AssignmentRole::Resident | AssignmentRole::Contact | AssignmentRole::AreaChief => {
                        o.kind == OfficerKind::Police
                    }
                    AssignmentRole::Auxiliary => o.kind == OfficerKind::Auxiliary,
                    AssignmentRole::Volunteer => true,
                };
                if !fits {
                    err.at(
                        l.number,
                        format!(
                            "{} ({}) is listed as {} in officers.csv and cannot have the role {}; correct the role or the officer's kind",
                            o.name,
                            o.badge,
                            o.kind,
                            r
                        ),
                    );
                }
            }
            if let (Some(s), Some(Some(u))) = (since, until)
                && u <= s
            {
                err.at(
                    l.number,
                    format!("until {u} is not after since {s}; until is the first day the assignment no longer holds"),
                );
            }
            if let (Some(village), Some(badge), Some(role), Some(since), Some(until)) =
                (village, badge, role, since, until)
            {
                let key = (village.as_str().to_string(), badge.as_str().to_string(), role, since);
                if let Some(prev) = seen.get(&key) {
                    err.at(
                        l.number,
                        format!("the same assignment (village, badge, role, since) is already on line {prev}"),
                    );
                    continue;
                }
                seen.insert(key, l.number);
                assignments.push(AssignmentRec { village, badge, role, since, until });
            }
        }
    }

    errors.sort_by(|a, b| {
        let fa = FILES.iter().position(|f| a.file.ends_with(f));
        let fb = FILES.iter().position(|f| b.file.ends_with(f));
        fa.cmp(&fb).then(a.line.cmp(&b.line))
    });
    // The areas, against the villages as written: village code → its station's code.
    let office_station: HashMap<&str, &str> =
        office_lines.iter().filter(|l| !l.get(0).is_empty()).map(|l| (l.get(0), l.get(1))).collect();
    let station_of: HashMap<&str, Option<&str>> = raw_codes(&village_lines)
        .map(|(c, _)| (c, None))
        .chain(village_lines.iter().filter_map(|l| {
            let station = office_station.get(l.get(3)).copied().filter(|s| station_codes.contains(s))?;
            Some((l.get(0), Some(station))).filter(|(c, _)| !c.is_empty())
        }))
        .collect();
    let areas = parse_areas(dir, &station_of, &mut errors);

    if errors.is_empty() {
        Ok(RegistryFiles { stations, offices, villages, officers, assignments, areas })
    } else {
        Err(errors)
    }
}

/// Loads `code → id` of one registry table.
async fn id_map(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sql: &'static str,
) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<(i64, String)> = sqlx::query_as(sql).fetch_all(&mut **tx).await?;
    Ok(rows.into_iter().map(|(id, code)| (code, id)).collect())
}

/// Validates the files of `dir` and, if every line is right, writes them in one transaction.
pub async fn import_dir(store: &Store, dir: &Path, today: NaiveDate) -> Result<ImportSummary, ImportError> {
    let files = parse_dir(dir).map_err(ImportError::Invalid)?;
    write(store, &files, today).await.map_err(ImportError::Unexpected)
}

/// Rows in one multi-row statement: at most 8 columns × 500 rows, far under both engines'
/// bind limits (32,766 on SQLite, 65,535 on PostgreSQL). One statement a row made a province
/// import ~136,000 round trips to SQLite's connection thread (BENCHMARKS.md).
const ROWS_PER_STATEMENT: usize = 500;

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Writes `rows` as `head VALUES (…), (…) tail` in statements of [`ROWS_PER_STATEMENT`] rows,
/// `bind` binding one row's `cols` values in order.
#[allow(clippy::too_many_arguments)]
async fn insert_rows<T>(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    head: &str,
    tail: &str,
    cols: usize,
    rows: &[T],
    what: &str,
    bind: impl for<'q> Fn(AnyQuery<'q>, &'q T) -> AnyQuery<'q>,
) -> anyhow::Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!("{head} VALUES {} {tail}", batch::placeholders(backend, chunk.len(), cols));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false);
        for row in chunk {
            query = bind(query, row);
        }
        query.execute(&mut **tx).await.with_context(|| format!("Failed to write the {what}"))?;
    }
    Ok(())
}

async fn write(store: &Store, f: &RegistryFiles, today: NaiveDate) -> anyhow::Result<ImportSummary> {
    let now = now_ms();
    let backend = store.backend();
    let mut tx = store.begin_write().await?;
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO stations (code, name, duty_phone, address, updated_at)",
        "ON CONFLICT (code) DO UPDATE SET name = excluded.name, duty_phone = excluded.duty_phone, \
         address = excluded.address, updated_at = excluded.updated_at",
        5,
        &f.stations,
        "stations",
        |q, s| q.bind(s.code.as_str()).bind(&s.name).bind(s.duty_phone.as_str()).bind(&s.address).bind(now),
    )
    .await?;
    let station_ids = id_map(&mut tx, "SELECT id, code FROM stations").await?;
    let offices: Vec<(&OfficeRec, i64)> = f.offices.iter().map(|o| (o, station_ids[o.station.as_str()])).collect();
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO offices (code, station_id, name, kind, address, hours, phone, updated_at)",
        "ON CONFLICT (code) DO UPDATE SET station_id = excluded.station_id, name = excluded.name, kind = excluded.kind, \
         address = excluded.address, hours = excluded.hours, phone = excluded.phone, updated_at = excluded.updated_at",
        8,
        &offices,
        "offices",
        |q, (o, station_id)| {
            q.bind(o.code.as_str())
                .bind(*station_id)
                .bind(&o.name)
                .bind(o.kind)
                .bind(&o.address)
                .bind(&o.hours)
                .bind(o.phone.as_ref().map(Phone::as_str))
                .bind(now)
        },
    )
    .await?;
    let office_ids = id_map(&mut tx, "SELECT id, code FROM offices").await?;
    let villages: Vec<(&VillageRec, i64)> = f.villages.iter().map(|v| (v, office_ids[v.office.as_str()])).collect();
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO villages (code, name, kind, office_id, households, population, updated_at)",
        "ON CONFLICT (code) DO UPDATE SET name = excluded.name, kind = excluded.kind, office_id = excluded.office_id, \
         households = excluded.households, population = excluded.population, updated_at = excluded.updated_at",
        7,
        &villages,
        "villages",
        |q, (v, office_id)| {
            q.bind(v.code.as_str())
                .bind(&v.name)
                .bind(v.kind)
                .bind(*office_id)
                .bind(v.households)
                .bind(v.population)
                .bind(now)
        },
    )
    .await?;
    let village_ids = id_map(&mut tx, "SELECT id, code FROM villages").await?;
    let officers: Vec<(&OfficerRec, i64)> = f.officers.iter().map(|o| (o, station_ids[o.station.as_str()])).collect();
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO officers (badge, name, kind, phone, station_id, updated_at)",
        "ON CONFLICT (badge) DO UPDATE SET name = excluded.name, kind = excluded.kind, phone = excluded.phone, \
         station_id = excluded.station_id, updated_at = excluded.updated_at",
        6,
        &officers,
        "officers",
        |q, (o, station_id)| {
            q.bind(o.badge.as_str())
                .bind(&o.name)
                .bind(o.kind)
                .bind(o.phone.as_ref().map(Phone::as_str))
                .bind(*station_id)
                .bind(now)
        },
    )
    .await?;
    let officer_ids = id_map(&mut tx, "SELECT id, badge FROM officers").await?;

    let assignments: Vec<(i64, i64, AssignmentRole, String, Option<String>)> = f
        .assignments
        .iter()
        .map(|a| {
            let village_id = village_ids[a.village.as_str()];
            let officer_id = officer_ids[a.badge.as_str()];
            (village_id, officer_id, a.role, a.since.to_string(), a.until.map(|d| d.to_string()))
        })
        .collect();
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO assignments (village_id, officer_id, role, since, until, updated_at)",
        "ON CONFLICT (village_id, officer_id, role, since) DO UPDATE SET until = excluded.until, \
         updated_at = excluded.updated_at",
        6,
        &assignments,
        "assignments",
        |q, (village_id, officer_id, role, since, until)| {
            q.bind(*village_id).bind(*officer_id).bind(*role).bind(since).bind(until).bind(now)
        },
    )
    .await?;
    let in_file: HashSet<(i64, i64, AssignmentRole, &str)> =
        assignments.iter().map(|(v, o, role, since, _)| (*v, *o, *role, since.as_str())).collect();

    // Assignments still open in the database but gone from the file end today; one that had
    // not started yet simply never held: it ends where it began.
    let today_s = today.to_string();
    let open: Vec<(i64, i64, i64, AssignmentRole, String)> = sqlx::query_as(
        "SELECT id, village_id, officer_id, role, since FROM assignments WHERE until IS NULL OR until > $1",
    )
    .bind(&today_s)
    .fetch_all(&mut *tx)
    .await?;
    let ended: Vec<(i64, String)> = open
        .into_iter()
        .filter(|(_, village_id, officer_id, role, since)| {
            !in_file.contains(&(*village_id, *officer_id, *role, since.as_str()))
        })
        .map(|(id, _, _, _, since)| (id, if since > today_s { since } else { today_s.clone() }))
        .collect();
    let mut by_until: HashMap<&str, Vec<i64>> = HashMap::new();
    for (id, until) in &ended {
        by_until.entry(until.as_str()).or_default().push(*id);
    }
    for (until, ids) in by_until {
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE assignments SET until = {}, updated_at = {} WHERE id IN {}",
                batch::param(backend, 1),
                batch::param(backend, 2),
                batch::placeholders_from(backend, 1, chunk.len(), 3)
            );
            let mut update = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false).bind(until).bind(now);
            for id in chunk {
                update = update.bind(*id);
            }
            update.execute(&mut *tx).await.context("Failed to end the assignments gone from the file")?;
        }
    }
    // Areas of villages that are not in the areas files are kept, as villages are.
    let areas: Vec<(i64, &AreaRec)> = f.areas.iter().map(|a| (village_ids[a.code.as_str()], a)).collect();
    insert_rows(
        &mut tx,
        backend,
        "INSERT INTO areas (village_id, datum, geometry, updated_at)",
        "ON CONFLICT (village_id) DO UPDATE SET datum = excluded.datum, geometry = excluded.geometry, \
         updated_at = excluded.updated_at",
        4,
        &areas,
        "areas",
        |q, (village_id, a)| q.bind(*village_id).bind(a.datum).bind(&a.geometry).bind(now),
    )
    .await?;
    tx.commit().await.context("Failed to commit the registry import")?;
    store.registry_changed();
    Ok(ImportSummary {
        stations: f.stations.len(),
        offices: f.offices.len(),
        villages: f.villages.len(),
        officers: f.officers.len(),
        assignments: f.assignments.len(),
        areas: f.areas.len(),
        assignments_ended: ended.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example registry with `edits` (file, from, to) applied, in a temp dir.
    fn example_with(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in FILES {
            let mut t = std::fs::read_to_string(Path::new("bot-config/example").join(f)).unwrap();
            for (file, from, to) in edits {
                if *file == f {
                    assert!(t.contains(from), "{from:?} not in {f}");
                    t = t.replacen(from, to, 1);
                }
            }
            std::fs::write(dir.path().join(f), t).unwrap();
        }
        dir
    }

    fn messages(dir: &Path) -> Vec<String> {
        match parse_dir(dir) {
            Ok(_) => vec![],
            Err(errs) => errs.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_example_registry_parses_without_errors() {
        let files = parse_dir(Path::new("bot-config/example")).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(files.stations.len(), 1);
        assert_eq!(files.offices.len(), 2);
        assert_eq!(files.villages.len(), 12);
        assert_eq!(files.officers.len(), 11);
    }

    #[test]
    fn a_field_longer_than_its_limit_is_refused_with_its_line() {
        let long = "村".repeat(65);
        let dir = example_with(&[("villages.csv", "410184101202,前店村,", &format!("410184101202,{long},"))]);
        let m = messages(dir.path());
        assert!(
            m.iter().any(|e| e.contains("villages.csv:3: column name is 65 characters long; at most 64")),
            "{m:#?}"
        );
        assert_eq!(m.len(), 1, "nothing else: {m:#?}");
    }

    #[test]
    fn every_bad_line_is_reported_with_its_file_and_line() {
        let dir = example_with(&[
            ("offices.csv", "HZ02,HZPCS", "HZ02,NOPE"),
            ("villages.csv", "410184101202,前店村,village,HZ01,438", "410184101202,前店村,hamlet,HZ01,many"),
            ("officers.csv", "041202,李卫东,police,13903710122", "041201,李卫东,police,1234567"),
            (
                "assignments.csv",
                "410184101203,041202,resident,2024-03-01,",
                "410184101203,F04122,resident,2024-03-01,2023-01-01",
            ),
        ]);
        let m = messages(dir.path());
        let has = |needle: &str| m.iter().any(|e| e.contains(needle));
        assert!(has("offices.csv:3: station \"NOPE\" is not in stations.csv"), "{m:#?}");
        assert!(has("villages.csv:3: unknown village kind \"hamlet\""), "{m:#?}");
        assert!(has("villages.csv:3: households \"many\" is not a whole number"), "{m:#?}");
        assert!(has("officers.csv:3: phone number \"1234567\" is not valid"), "{m:#?}");
        assert!(!has("assignments.csv:7:"), "a bad field of a village does not cascade to its assignments: {m:#?}");
        assert!(has("officers.csv:3: duplicate badge \"041201\" (also on line 2)"), "{m:#?}");
        assert!(has("assignments.csv:11: 周强 (F04122) is listed as auxiliary"), "{m:#?}");
        assert!(has("assignments.csv:11: until 2023-01-01 is not after since 2024-03-01"), "{m:#?}");
    }

    #[test]
    fn unknown_references_name_the_missing_code_and_the_fix() {
        let dir = example_with(&[("assignments.csv", "410184101201,041201,resident", "410184109999,999999,resident")]);
        let m = messages(dir.path());
        assert!(
            m.iter().any(|e| e.contains("assignments.csv:2: village \"410184109999\" is not in villages.csv")),
            "{m:#?}"
        );
        assert!(m.iter().any(|e| e.contains("assignments.csv:2: badge \"999999\" is not in officers.csv")), "{m:#?}");
    }

    #[test]
    fn chinese_headers_any_column_order_and_an_excel_bom_are_accepted() {
        let dir = example_with(&[]);
        std::fs::write(
            dir.path().join("stations.csv"),
            "\u{feff}名称,编码,地址,值班电话\n和庄派出所,HZPCS,新郑市,0371-62581110\n",
        )
        .unwrap();
        let files = parse_dir(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(files.stations[0].code.as_str(), "HZPCS");
        assert_eq!(files.stations[0].duty_phone.as_str(), "0371-62581110");
    }

    #[test]
    fn a_gbk_file_is_refused_with_the_excel_fix() {
        let dir = example_with(&[]);
        // "和庄派出所" in GBK.
        let gbk: &[u8] = &[0xBA, 0xCD, 0xD7, 0xAF, 0xC5, 0xC9, 0xB3, 0xF6, 0xCB, 0xF9];
        let mut bytes = b"code,name,duty_phone,address\nHZPCS,".to_vec();
        bytes.extend_from_slice(gbk);
        bytes.extend_from_slice(b",0371-62581110,x\n");
        std::fs::write(dir.path().join("stations.csv"), bytes).unwrap();
        let m = messages(dir.path());
        assert!(
            m.iter().any(|e| e.contains("stations.csv:2: the file is not UTF-8") && e.contains("CSV UTF-8")),
            "{m:#?}"
        );
    }

    #[test]
    fn an_unknown_or_missing_column_is_an_error_on_the_header_line() {
        let dir = example_with(&[("officers.csv", "badge,name,kind,phone,station", "badge,name,kind,phnoe,station")]);
        let m = messages(dir.path());
        assert!(m.iter().any(|e| e.contains("officers.csv:1: unknown column \"phnoe\"")), "{m:#?}");
        let dir = example_with(&[("stations.csv", "code,name,duty_phone,address", "code,name,address")]);
        let m = messages(dir.path());
        assert!(m.iter().any(|e| e.contains("stations.csv:1: missing column \"duty_phone\"")), "{m:#?}");
    }

    #[test]
    fn a_missing_file_and_a_wrong_field_count_are_reported() {
        let dir = example_with(&[(
            "villages.csv",
            "410184101205,东岗村,village,HZ01,287,1104",
            "410184101205,东岗村,village,HZ01,287,1104,extra",
        )]);
        std::fs::remove_file(dir.path().join("stations.csv")).unwrap();
        let m = messages(dir.path());
        assert!(m.iter().any(|e| e.contains("stations.csv: file not found")), "{m:#?}");
        assert!(m.iter().any(|e| e.contains("villages.csv:6: has 7 fields but the header has 6")), "{m:#?}");
    }
}
