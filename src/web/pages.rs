//! The console's pages: tips (list, filters, export, detail and actions), warnings and
//! notices (compose with preview, ledger, cancel), the registry (coverage gaps, enrolment
//! codes) and the monthly figures.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::error::WebError;
use super::figures::{bar_chart, column_chart};
use super::map::{self, Region};
use super::{Session, WebState, csrf_refused};
use crate::authz::{Action, Subject};
use crate::core::CoreError;
use crate::core::broadcast::Request;
use crate::domain::{BroadcastKind, Severity, StatusFilter, TipStatus};
use crate::store::broadcasts::Target;
use crate::store::reports::OfficerFigures;
use crate::store::tip_list::{PageAt, TipCounts, TipFilter, TipListRow, TipSearch, TipSort};

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/tips", get(tips))
        .route("/tips/export.csv", get(export_csv))
        .route("/tips/export.xlsx", get(export_xlsx))
        .route("/tips/print", get(print_list))
        .route("/tips/bulk", post(bulk))
        .route("/tips/{number}/print", get(print_tip))
        .route("/tips/{number}", get(tip))
        .route("/tips/{number}/{action}", post(tip_action))
        .route("/tips/{number}/media/{index}", get(tip_media))
        .route("/broadcasts", get(broadcasts).post(broadcast_create))
        .route("/broadcasts/new", get(broadcast_new))
        .route("/broadcasts/{id}", get(broadcast))
        .route("/broadcasts/{id}/cancel", post(broadcast_cancel))
        .route("/registry", get(registry))
        .route("/registry/enrol/{badge}", post(enrol))
        .route("/figures", get(figures))
        .route("/figures/export.csv", get(figures_csv))
}

type Page = Result<Response, WebError>;

/// 403 with the page layout: the account may not do this.
pub(super) fn refused(session: &Session) -> WebError {
    WebError::Refused(session.page())
}

// ----- tips -----

/// The list's filters, search, order and page, as the query string carries them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    #[serde(default)]
    village: String,
    #[serde(default)]
    officer: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    overdue: String,
    /// The search box: a tip number, a phone number or words of the text.
    #[serde(default)]
    q: String,
    /// `oldest`, `overdue`, `status`; newest first otherwise.
    #[serde(default)]
    sort: String,
    /// Kept as text: a page number typed by hand that is no number shows page 1.
    #[serde(default)]
    page: String,
    #[serde(default)]
    per: String,
    /// The page starts after this tip (`CREATED_AT.ID`, the last of the page before): the
    /// pager's 下一页, as cheap on page 2,000 as on page 2.
    #[serde(default)]
    after: String,
    /// The page ends before this tip (the first of the page after): 上一页.
    #[serde(default)]
    before: String,
}

/// The page sizes offered; the first one the list opens with.
const PAGE_SIZES: [i64; 3] = [50, 20, 100];

impl Filters {
    /// The store's filter for `station` (a station account always sees only its own), or the
    /// field that is wrong and the text that says why.
    fn to_filter(&self, station: Option<String>, state: &WebState) -> Result<TipFilter, (&'static str, &'static str)> {
        let core = &state.core;
        let tz = core.timezone();
        let day =
            |s: &str, field: &'static str| crate::calendar::parse_day_ms(tz, s).map_err(|_| (field, "date_format"));
        let since_ms = day(&self.from, "from")?;
        // "to" is inclusive: the day after it, at midnight.
        let until_ms = day(&self.to, "to")?.map(|t| t + 86_400_000);
        let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let sort = match self.sort.as_str() {
            "oldest" => TipSort::Oldest,
            "overdue" => TipSort::Overdue,
            "status" => TipSort::Status,
            _ => TipSort::Newest,
        };
        let status = some(&self.status)
            .map(|s| StatusFilter::parse(&s))
            .transpose()
            .map_err(|_| ("status", "filter_invalid"))?;
        let secrets = core.store().secrets();
        Ok(TipFilter {
            station,
            status,
            since_ms,
            village: some(&self.village),
            category: some(&self.category),
            officer: some(&self.officer),
            until_ms,
            clock: Some((core.now_ms(), state.opts.sla)),
            only_overdue: !self.overdue.is_empty(),
            search: TipSearch::parse(&self.q, |digits| secrets.phone_index(digits)),
            sort,
        })
    }

    /// The query string of the filters, search and order (`without` one of them), for the
    /// pager, the counters and the exports.
    fn query_without(&self, without: &str) -> String {
        let pairs = [
            ("status", &self.status),
            ("category", &self.category),
            ("village", &self.village),
            ("officer", &self.officer),
            ("from", &self.from),
            ("to", &self.to),
            ("overdue", &self.overdue),
            ("q", &self.q),
            ("sort", &self.sort),
        ];
        let kept: Vec<_> = pairs.into_iter().filter(|(k, _)| *k != without).collect();
        serde_urlencoded_pairs(&kept)
    }

    fn query(&self) -> String {
        self.query_without("")
    }

    fn per_page(&self) -> i64 {
        self.per.trim().parse().ok().filter(|n| PAGE_SIZES.contains(n)).unwrap_or(PAGE_SIZES[0])
    }

    fn page_number(&self) -> i64 {
        self.page.trim().parse().ok().filter(|n: &i64| *n >= 1).unwrap_or(1)
    }
}

/// `QUERY&`, to which a link adds its own parameter (empty for no query).
fn link_base(query: &str) -> String {
    if query.is_empty() { String::new() } else { format!("{query}&") }
}

fn serde_urlencoded_pairs(pairs: &[(&str, &String)]) -> String {
    let mut url = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            url.append_pair(k, v);
        }
    }
    url.finish()
}

/// The store's filter of the current list, after authorising the listing (audited as an
/// export) and, for a search by phone number, the looking up of a tipster's contact (audited
/// apart, without the number).
async fn authorised_filter(
    state: &WebState,
    session: &Session,
    filters: &Filters,
    what: &str,
) -> Result<Result<TipFilter, (&'static str, &'static str)>, WebError> {
    let core = &state.core;
    let station = session.station_code(core).await?;
    let subject = match session.user.station_id {
        Some(station_id) => Subject::Station { station_id },
        None => Subject::Everything,
    };
    if !core.authorize_desk(&session.actor, Action::Export, subject, what).await? {
        return Err(refused(session));
    }
    let filter = match filters.to_filter(station, state) {
        Ok(f) => f,
        Err(e) => return Ok(Err(e)),
    };
    if matches!(filter.search, Some(TipSearch::PhoneIndex(_)))
        && !core.authorize_desk(&session.actor, Action::ViewContact, subject, "tips search:phone").await?
    {
        return Ok(Err(("q", "phone_search_refused")));
    }
    Ok(Ok(filter))
}

/// Every row of the current filter (exports, print), after authorising it.
async fn listed(
    state: &WebState,
    session: &Session,
    filters: &Filters,
    what: &str,
) -> Result<Result<Vec<TipListRow>, (&'static str, &'static str)>, WebError> {
    match authorised_filter(state, session, filters, what).await? {
        Ok(filter) => {
            Ok(Ok(state.core.store().list_tips(&filter).await.context("Failed to list the tips to export")?))
        }
        Err(e) => Ok(Err(e)),
    }
}

/// Villages and officers the account may filter by.
async fn choices(
    state: &WebState,
    session: &Session,
) -> anyhow::Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    let store = state.core.store();
    let villages = store
        .all_villages()
        .await
        .context("Failed to list the villages to filter by")?
        .into_iter()
        .filter(|v| session.covers(v.station_id))
        .map(|v| (v.code, v.name))
        .collect();
    let officers = store
        .all_officers()
        .await
        .context("Failed to list the officers to filter by")?
        .into_iter()
        .filter(|o| session.covers(o.station_id) && o.kind != crate::domain::OfficerKind::Volunteer)
        .map(|o| (o.badge, o.name))
        .collect();
    Ok((villages, officers))
}

/// GET /tips: one page of the list, its counters, the pager and the bulk actions.
async fn tips(State(state): State<WebState>, session: Session, Query(filters): Query<Filters>) -> Page {
    tips_page(&state, &session, &filters, None).await
}

/// The list page; `done` is what a bulk action just did (shown above the list).
async fn tips_page(state: &WebState, session: &Session, filters: &Filters, done: Option<minijinja::Value>) -> Page {
    let (villages, officers) = choices(state, session).await?;
    let per = filters.per_page();
    let mut page_no = filters.page_number();
    let (rows, counts, errors) = match authorised_filter(state, session, filters, "tips").await? {
        Ok(filter) => {
            let store = state.core.store();
            let counts = store.count_tips(&filter).await.context("Failed to count the tips of the list")?;
            // A page past the end shows the last one.
            let pages = ((counts.total + per - 1) / per).max(1);
            page_no = page_no.min(pages);
            let key = |s: &str| {
                let (at, id) = s.trim().split_once('.')?;
                Some((at.parse().ok()?, id.parse().ok()?))
            };
            let at = match (key(&filters.after), key(&filters.before)) {
                (Some((created_at, id)), _) => PageAt::After { created_at, id },
                (None, Some((created_at, id))) => PageAt::Before { created_at, id },
                // A page in the second half of a list by time is read from its far end.
                _ if matches!(filters.sort.as_str(), "" | "oldest") && (page_no - 1) * per > counts.total / 2 => {
                    let skip = (page_no - 1) * per;
                    let take = per.min(counts.total - skip);
                    PageAt::FromEnd { skip: counts.total - skip - take, take }
                }
                _ => PageAt::Skip((page_no - 1) * per),
            };
            let mut rows = store
                .list_tips_page(&filter, Some((per, at)))
                .await
                .context("Failed to read a page of the tips list")?;
            if rows.is_empty() && at != PageAt::Skip((page_no - 1) * per) {
                // The tips moved under the key (a tip deleted): the page by number.
                rows = store
                    .list_tips_page(&filter, Some((per, PageAt::Skip((page_no - 1) * per))))
                    .await
                    .context("Failed to read a page of the tips list")?;
            }
            (rows, counts, BTreeMap::new())
        }
        Err((field, key)) => (vec![], TipCounts::default(), BTreeMap::from([(field, state.t(key))])),
    };
    let pages = ((counts.total + per - 1) / per).max(1);
    // The pager's keys: the first and the last tip of this page, for the orders by time.
    let keyed = matches!(filters.sort.as_str(), "" | "oldest");
    let key_of = |r: Option<&TipListRow>| r.filter(|_| keyed).map(|r| format!("{}.{}", r.created_at, r.id));
    let (prev_key, next_key) = (key_of(rows.first()), key_of(rows.last()));
    let counters: Vec<_> =
        TipStatus::ALL.iter().map(|s| minijinja::context! { code => s.as_str(), count => counts.of(*s) }).collect();
    let sla = state.opts.sla;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let ctx = minijinja::context! {
        page => session.page(), tips => &rows, total => counts.total, counters, overdue => counts.overdue,
        all_count => counts.by_status.iter().map(|(_, n)| n).sum::<i64>(),
        filters => &filters, query => filters.query(), list_base => link_base(&filters.query()),
        status_base => link_base(&filters.query_without("status")),
        overdue_base => link_base(&filters.query_without("overdue")),
        status_all => filters.query_without("status"),
        back => format!("{}page={page_no}&per={per}", link_base(&filters.query())),
        errors, villages, officers, categories => state.core.tip_categories(), statuses => TipStatus::codes(),
        page_no, pages, per, page_sizes => PAGE_SIZES, prev_key, next_key, first_row => (page_no - 1) * per + 1,
        ack_hours => sla.ack_ms / 3_600_000, resolve_days => sla.resolve_ms / 86_400_000, done,
    };
    Ok(state.render(status, "tips.html", ctx))
}

/// The export's header and rows: the columns of `cunjing tips export`, the tip's text (内容)
/// included for the station's own use, named by the console's texts, and every coded value
/// (station, category, source, status, rating, anonymous) by the name the pages show. Who
/// reported a tip is no column: a tip list row does not even carry it.
fn export_table(state: &WebState, rows: &[TipListRow]) -> (Vec<String>, Vec<Vec<String>>) {
    use crate::reports::{EXPORT_COLUMNS, export_record};
    let header = EXPORT_COLUMNS.iter().map(|c| state.texts.column(c).to_string()).collect();
    let tz = state.core.timezone();
    let rows = rows
        .iter()
        .map(|r| {
            let mut record = export_record(tz, r);
            for (cell, column) in record.iter_mut().zip(EXPORT_COLUMNS) {
                *cell = match column {
                    "station" => r.station_name.clone(),
                    "category" | "source" | "status" => state.label(column, cell),
                    "rating" if !cell.is_empty() => state.label(column, cell),
                    "anonymous" => state.t(if r.anonymous { "yes" } else { "no" }),
                    _ => continue,
                };
            }
            record
        })
        .collect();
    (header, rows)
}

async fn export_csv(State(state): State<WebState>, session: Session, Query(filters): Query<Filters>) -> Page {
    let Ok(rows) = listed(&state, &session, &filters, "tips csv").await? else {
        return Err(WebError::BadRequest("filter_invalid"));
    };
    let (header, rows) = export_table(&state, &rows);
    let out = crate::csv_cells::file_with_bom(&header, rows).context("Failed to write the tips' CSV export")?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"tips.csv\""),
        ],
        out,
    )
        .into_response())
}

async fn export_xlsx(State(state): State<WebState>, session: Session, Query(filters): Query<Filters>) -> Page {
    let Ok(rows) = listed(&state, &session, &filters, "tips xlsx").await? else {
        return Err(WebError::BadRequest("filter_invalid"));
    };
    let (header, rows) = export_table(&state, &rows);
    let xlsx = (|| -> Result<Vec<u8>, rust_xlsxwriter::XlsxError> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name(state.texts.get("sheet_name"))?;
        let bold = rust_xlsxwriter::Format::new().set_bold();
        for (c, name) in header.iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, name, &bold)?;
        }
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                sheet.write_string(r as u32 + 1, c as u16, value)?;
            }
        }
        book.save_to_buffer()
    })()
    .context("Failed to write the tips' xlsx export")?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"tips.xlsx\""),
        ],
        xlsx,
    )
        .into_response())
}

#[derive(Deserialize, Default)]
struct Notice {
    #[serde(default)]
    ok: String,
}

/// The detail page (also re-rendered with an error next to a form's field).
async fn tip_page(
    state: &WebState,
    session: &Session,
    number: &str,
    errors: BTreeMap<&'static str, String>,
    ok: &str,
) -> Page {
    tip_view(state, session, number, errors, ok, "tip.html").await
}

/// GET /tips/NUMBER/print: the tip for the case file (A4, the timeline, no forms).
async fn print_tip(State(state): State<WebState>, session: Session, Path(number): Path<String>) -> Page {
    tip_view(&state, &session, &number, BTreeMap::new(), "", "tip_print.html").await
}

/// Most rows a printed list holds (more: the Excel export).
const PRINT_ROWS: usize = 500;

/// GET /tips/print?FILTERS: the list as filtered, for printing (at most [`PRINT_ROWS`]).
async fn print_list(State(state): State<WebState>, session: Session, Query(filters): Query<Filters>) -> Page {
    let rows = match listed(&state, &session, &filters, "tips print").await? {
        Ok(rows) => rows,
        Err((_, key)) => {
            let ctx = minijinja::context! { page => session.page(), message => state.t(key) };
            return Ok(state.render(StatusCode::UNPROCESSABLE_ENTITY, "error.html", ctx));
        }
    };
    let total = rows.len();
    let shown: Vec<_> = rows.into_iter().take(PRINT_ROWS).collect();
    let ctx = minijinja::context! {
        page => session.page(), total, shown => shown.len(), capped => total > PRINT_ROWS, tips => shown,
        printed_at => state.core.now_ms(),
    };
    Ok(state.render(StatusCode::OK, "tips_print.html", ctx))
}

/// The tip page, or its print view (`template`).
async fn tip_view(
    state: &WebState,
    session: &Session,
    number: &str,
    errors: BTreeMap<&'static str, String>,
    ok: &str,
    template: &str,
) -> Page {
    let core = &state.core;
    // Reading a tip is recorded like an export of it.
    let tip = match core.desk_tip(&session.actor, Action::Export, number).await {
        Ok(tip) => tip,
        Err(CoreError::Refused) => return Err(refused(session)),
        Err(CoreError::Unexpected(e)) => return Err(WebError::Unexpected(e)),
        Err(_) => return Err(WebError::NotFound("no_tip")),
    };
    let store = core.store();
    let village = store
        .village_by_id(tip.village_id)
        .await
        .context("Failed to load the tip's village")?
        .context("The tip's village is not in the registry")?;
    // A phone the tipster left is shown only to who may see it, and each showing is audited.
    let phone = match (&store.tip_phone(&tip).context("Failed to open the tipster's phone")?, tip.anonymous) {
        (Some(p), false) => {
            let subject = Subject::Village { village_id: village.id, station_id: village.station_id };
            let target = format!("tip:{}", tip.number);
            core.authorize_desk(&session.actor, Action::ViewContact, subject, &target).await?.then(|| p.clone())
        }
        _ => None,
    };
    let mut timeline = vec![];
    let mut names: HashMap<String, String> = HashMap::new();
    for (at, actor, badge, kind, detail) in
        store.tip_timeline(tip.id).await.context("Failed to read the tip's timeline")?
    {
        // A console account by its role and name (内勤 张三), as the ledger names it.
        let name = match actor.strip_prefix("web:") {
            Some(_) => match names.get(&actor) {
                Some(name) => Some(name.clone()),
                None => {
                    let name = sender_name(state, &actor).await?;
                    names.insert(actor.clone(), name.clone());
                    Some(name)
                }
            },
            None => None,
        };
        timeline.push(minijinja::context! { at, actor, name, badge, kind, detail });
    }
    let raw_items = store.tip_items(tip.id).await.context("Failed to read the tip's items")?;
    let point = raw_items.iter().find_map(|item| match item {
        crate::store::tips::TipItem::Location { latitude, longitude, .. } => Some((*longitude, *latitude)),
        _ => None,
    });
    let reported = store
        .tip_reported_village(tip.id)
        .await
        .context("Failed to load the village the tip was reported from")?
        .map(|(_, name)| name);
    let map = tip_map(state, session, tip.village_id, point).await?;
    let items: Vec<_> = raw_items
        .into_iter()
        .map(|item| match item {
            crate::store::tips::TipItem::Text { text } => minijinja::context! { kind => "text", text },
            crate::store::tips::TipItem::Photo { .. } => minijinja::context! { kind => "photo" },
            crate::store::tips::TipItem::Voice { .. } => minijinja::context! { kind => "voice" },
            crate::store::tips::TipItem::Video { .. } => minijinja::context! { kind => "video" },
            crate::store::tips::TipItem::Location { latitude, longitude, .. } => {
                minijinja::context! { kind => "location", latitude, longitude }
            }
        })
        .collect();
    let officers: Vec<_> = store
        .assigned_officers(village.id, &core.today().to_string())
        .await
        .context("Failed to list the village's officers")?
        .into_iter()
        .filter(|o| o.role.is_on_duty_chain())
        .map(|o| minijinja::context! { badge => o.badge, name => o.name, role => o.role })
        .collect();
    let assigned = match tip.assigned_officer_id {
        Some(id) => store
            .officer_by_id(id)
            .await
            .context("Failed to load the tip's officer")?
            .map(|o| format!("{}（{}）", o.name, o.badge)),
        None => None,
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let overdue = tip.status == TipStatus::New && tip.ack_deadline.is_some_and(|d| d < core.now_ms());
    // The menu starts on the status that comes next (已受理 for a new tip, 处理中 once taken…).
    let next_statuses: Vec<&str> = tip.status.next_choices().into_iter().map(TipStatus::as_str).collect();
    let ctx = minijinja::context! {
        page => session.page(), tip => &tip, village => &village.name, reported, map, has_point => point.is_some(),
        phone, timeline, items, officers, assigned, errors, ok, overdue, open => tip.status.is_open(), next_statuses,
        printed_at => core.now_ms(),
    };
    Ok(state.render(status, template, ctx))
}

/// How far around a tip's area its neighbours are looked for (metres): as far as its map
/// reaches.
const NEIGHBOURS_M: f64 = 1_000.0;

/// The map of a tip's area (the village responsible): its outline, the neighbouring areas
/// of the account's station, lighter and named (each a link to its tips), and the tip's
/// point `(lon, lat)` if it has one (as stored: WGS-84 when its datum was known, so a
/// WeChat point is already converted; a Telegram point as sent). `None` when the village
/// has no area.
async fn tip_map(
    state: &WebState,
    session: &Session,
    village_id: i64,
    point: Option<(f64, f64)>,
) -> anyhow::Result<Option<String>> {
    let store = state.core.store();
    let index = store.area_index().await.context("Failed to load the areas for a tip's map")?;
    let Some(area) = index.of_village(village_id) else { return Ok(None) };
    let near: Vec<_> =
        index.neighbours(area, NEIGHBOURS_M).into_iter().filter(|a| session.covers(a.station_id)).collect();
    let mut names: HashMap<i64, String> = HashMap::new();
    for a in std::iter::once(area).chain(near.iter().copied()) {
        let village = store.village_by_id(a.village_id).await.context("Failed to load a village of a tip's map")?;
        names.insert(a.village_id, village.map_or_else(|| a.code.to_string(), |v| v.name));
    }
    let name = |id: i64| names.get(&id).map_or("", String::as_str);
    let mut regions = vec![Region::new(&area.code, name(area.village_id), &area.shape, "area")];
    for a in &near {
        regions.push(Region {
            fit: false,
            href: Some(format!("/tips?village={}", a.code)),
            ..Region::new(&a.code, name(a.village_id), &a.shape, "near")
        });
    }
    let point = point.map(|p| (p, state.texts.get("map_point")));
    Ok(map::draw(state.texts.get("map_tip"), &regions, point, 0.35))
}

/// A photo, voice message or video of a tip, fetched from the channel it came in on.
async fn tip_media(
    State(state): State<WebState>,
    session: Session,
    Path((number, index)): Path<(String, usize)>,
) -> Page {
    let core = &state.core;
    let tip = match core.desk_tip(&session.actor, Action::Export, &number).await {
        Ok(tip) => tip,
        Err(CoreError::Refused) => return Err(refused(&session)),
        Err(CoreError::Unexpected(e)) => return Err(WebError::Unexpected(e)),
        Err(_) => return Err(WebError::NoSuchPath),
    };
    let items = core.store().tip_items(tip.id).await.context("Failed to read the tip's items")?;
    let (file_id, mime) = match items.into_iter().nth(index) {
        Some(crate::store::tips::TipItem::Photo { file_id }) => (file_id, "image/jpeg"),
        Some(crate::store::tips::TipItem::Voice { file_id }) => (file_id, "audio/ogg"),
        Some(crate::store::tips::TipItem::Video { file_id }) => (file_id, "video/mp4"),
        _ => return Err(WebError::NoSuchPath),
    };
    let Some(source) = crate::core::Platform::parse(&tip.platform).and_then(|p| core.media_source(p)) else {
        return Err(WebError::NotFound("no_media_source"));
    };
    match source.fetch(&file_id).await {
        Ok(bytes) => {
            Ok(([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "private, no-store")], bytes).into_response())
        }
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "a tip's file could not be fetched");
            Err(WebError::Upstream("media_unavailable"))
        }
    }
}

async fn tip(
    State(state): State<WebState>,
    session: Session,
    Path(number): Path<String>,
    Query(n): Query<Notice>,
) -> Page {
    tip_page(&state, &session, &number, BTreeMap::new(), &n.ok).await
}

#[derive(Deserialize, Default)]
struct TipForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    badge: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    into: String,
    #[serde(default)]
    text: String,
}

async fn tip_action(
    State(state): State<WebState>,
    session: Session,
    Path((number, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<TipForm>,
) -> Page {
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    let core = &state.core;
    let actor = &session.actor;
    let (result, field) = match action.as_str() {
        "assign" => (core.desk_assign(actor, &number, &form.badge).await, "badge"),
        "status" => {
            let result = match TipStatus::from_code(&form.status) {
                Some(to) => core.desk_status(actor, &number, to, &form.note).await,
                None => Err(CoreError::Invalid("status")),
            };
            (result, "status")
        }
        "merge" => (core.desk_merge(actor, &number, &form.into).await, "into"),
        "reply" => (core.desk_reply(actor, &number, &form.text).await, "reply"),
        "note" => (core.desk_note(actor, &number, &form.text).await, "memo"),
        "sign" => (core.desk_sign(actor, &number).await, "sign"),
        "reopen" => (core.desk_reopen(actor, &number, &form.note).await, "reopen"),
        _ => return Err(WebError::NoSuchPath),
    };
    match result {
        Ok((_, outbound)) => {
            let tip = core.store().tip_by_number(&number).await.context("Failed to reload the tip after the action")?;
            let platform = tip.map(|t| t.platform).unwrap_or_default();
            state.send(&platform, outbound);
            Ok(Redirect::to(&format!("/tips/{}?ok={action}", url_segment(&number))).into_response())
        }
        Err(CoreError::Refused) => Err(refused(&session)),
        Err(CoreError::Unexpected(e)) => Err(WebError::Unexpected(e)),
        Err(e) => {
            let message = state.t(desk_error_key(&e));
            let field = if action == "status" && matches!(e, CoreError::Invalid("note")) { "note" } else { field };
            tip_page(&state, &session, &number, BTreeMap::from([(field, message)]), "").await
        }
    }
}

/// The text (in `texts.toml`) that says why a desk action did not happen.
fn desk_error_key(e: &CoreError) -> &'static str {
    match e {
        CoreError::NotFound => "no_tip",
        CoreError::NotOpen => "tip_not_open",
        CoreError::NotClosed => "tip_not_closed",
        CoreError::NoOfficer => "officer_not_serving",
        CoreError::Invalid("note") => "note_required",
        CoreError::Invalid("reason") => "reason_required",
        CoreError::Invalid("into") => "into_required",
        CoreError::Invalid("gone") => "tipster_gone",
        CoreError::Invalid(_) => "text_required",
        CoreError::Refused | CoreError::Unexpected(_) => "refused",
    }
}

/// POST /tips/bulk: 签收, 转派 or 办结 (with one note) for the tips ticked on a page. Each
/// tip goes through the same action as on its own page; the answer lists what happened to
/// each, and those that could not be done say why.
async fn bulk(State(state): State<WebState>, session: Session, body: axum::body::Bytes) -> Page {
    let mut csrf = String::new();
    let (mut action, mut badge, mut note, mut back) = (String::new(), String::new(), String::new(), String::new());
    let mut numbers: Vec<String> = vec![];
    for (k, v) in url::form_urlencoded::parse(&body) {
        match k.as_ref() {
            "csrf" => csrf = v.into_owned(),
            "action" => action = v.into_owned(),
            "badge" => badge = v.into_owned(),
            "note" => note = v.into_owned(),
            "back" => back = v.into_owned(),
            "number" if numbers.len() < 100 && !numbers.contains(&v.to_string()) => numbers.push(v.into_owned()),
            _ => {}
        }
    }
    if !session.csrf_ok(&csrf) {
        return Err(csrf_refused());
    }
    // The list the tips were ticked on, shown again with what happened.
    let filters = format!("/tips?{back}")
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|uri| Query::<Filters>::try_from_uri(&uri).ok())
        .map(|Query(f)| f)
        .unwrap_or_default();
    let error = |key: &str| minijinja::context! { error => state.t(key) };
    if numbers.is_empty() {
        return tips_page(&state, &session, &filters, Some(error("bulk_none"))).await;
    }
    if action == "close" && note.trim().is_empty() {
        return tips_page(&state, &session, &filters, Some(error("note_required"))).await;
    }
    let core = &state.core;
    let mut results = vec![];
    for number in &numbers {
        let result = match action.as_str() {
            "sign" => core.desk_sign(&session.actor, number).await,
            "assign" => core.desk_assign(&session.actor, number, &badge).await,
            "close" => core.desk_status(&session.actor, number, TipStatus::Resolved, &note).await,
            _ => return Err(WebError::NoSuchPath),
        };
        match result {
            Err(CoreError::Unexpected(e)) => return Err(WebError::Unexpected(e)),
            Ok((_, outbound)) => {
                let tip =
                    core.store().tip_by_number(number).await.context("Failed to reload the tip after the action")?;
                state.send(&tip.map(|t| t.platform).unwrap_or_default(), outbound);
                results.push(minijinja::context! { number, ok => true });
            }
            Err(e) => results.push(minijinja::context! { number, ok => false, why => state.t(desk_error_key(&e)) }),
        }
    }
    let done = results.iter().filter(|r| r.get_attr("ok").is_ok_and(|v| v.is_true())).count();
    let summary = minijinja::context! { action, done, failed => results.len() - done, results };
    tips_page(&state, &session, &filters, Some(summary)).await
}

fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ----- broadcasts -----

/// The targets of `spec` (`station:HZPCS village:…`) by name: 和庄派出所（全所）, 前店村 …
async fn scope_names(state: &WebState, spec: &str) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for token in spec.split_whitespace() {
        let name = match Target::parse(token) {
            Ok(Target::All) => state.t("all_targets"),
            Ok(target @ Target::Station(_)) => {
                format!("{}{}", state.core.target_name(&target).await?, state.texts.get("whole_station"))
            }
            Ok(target) => state.core.target_name(&target).await?,
            Err(_) => String::new(),
        };
        // A code no longer in the registry still shows, as itself.
        names.push(if name.is_empty() { token.to_string() } else { name });
    }
    Ok(names)
}

/// Who sent a broadcast, as staff call them: an officer by name, a console account as its
/// role and name (内勤 neiqin) rather than `web:neiqin`.
async fn sender_name(state: &WebState, label: &str) -> anyhow::Result<String> {
    let Some(username) = label.strip_prefix("web:") else { return Ok(label.to_string()) };
    Ok(match state.core.store().web_user_by_name(username).await.context("Failed to look up a console account")? {
        Some(user) => {
            format!(
                "{} {}",
                state.label("account", user.role.as_str()),
                user.display_name.as_deref().unwrap_or(username)
            )
        }
        None => username.to_string(),
    })
}

/// A broadcast for a page: its row, and its scope and sender by name.
async fn broadcast_view(
    state: &WebState,
    b: &crate::store::broadcasts::BroadcastRow,
) -> anyhow::Result<minijinja::Value> {
    let scope = scope_names(state, &b.target_spec).await?.join("、");
    let sender = sender_name(state, &b.sender_label).await?;
    Ok(minijinja::context! { scope, sender, ..minijinja::Value::from_serialize(b) })
}

async fn broadcasts(State(state): State<WebState>, session: Session) -> Page {
    let rows = state
        .core
        .store()
        .station_broadcasts(session.user.station_id, 50)
        .await
        .context("Failed to list the station's broadcasts")?;
    let mut broadcasts = Vec::with_capacity(rows.len());
    for b in &rows {
        broadcasts.push(broadcast_view(&state, b).await?);
    }
    Ok(state.render(StatusCode::OK, "broadcasts.html", minijinja::context! { page => session.page(), broadcasts }))
}

/// The targets an account may choose: the station itself, its offices, its villages; and,
/// for `area:CODE`, its villages that have an area (code, name).
async fn target_choices(
    state: &WebState,
    session: &Session,
) -> anyhow::Result<(Vec<(String, String)>, Vec<(String, String)>)> {
    let store = state.core.store();
    let index = store.area_index().await.context("Failed to load the areas")?;
    let mut out = Vec::new();
    let mut areas = Vec::new();
    let stations: Vec<i64> = match session.user.station_id {
        Some(s) => vec![s],
        None => store.stations().await.context("Failed to list the stations")?.into_iter().map(|(id, _)| id).collect(),
    };
    for station_id in stations {
        let (code, name) = store.station_of(station_id).await.context("Failed to load a station")?;
        out.push((format!("station:{code}"), format!("{name}{}", state.texts.get("whole_station"))));
        for (code, name) in store.offices_of_station(station_id).await.context("Failed to list a station's offices")? {
            out.push((format!("office:{code}"), name));
        }
        for v in store
            .all_villages()
            .await
            .context("Failed to list the villages")?
            .into_iter()
            .filter(|v| v.station_id == station_id)
        {
            if index.of_village(v.id).is_some() {
                areas.push((v.code.clone(), v.name.clone()));
            }
            out.push((format!("village:{}", v.code), v.name));
        }
    }
    Ok((out, areas))
}

#[derive(Deserialize, Default, Serialize, Clone)]
struct BroadcastForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    send_at: String,
    #[serde(default)]
    confirm: String,
    /// `area:CODE`: the village (grid) whose area and neighbours are targeted.
    #[serde(default)]
    area: String,
    /// `near:`: a point and a radius, in the datum `near_datum` (WGS84 when empty).
    #[serde(default)]
    near_lat: String,
    #[serde(default)]
    near_lon: String,
    #[serde(default)]
    near_km: String,
    #[serde(default)]
    near_datum: String,
}

/// The place targets of the form (`area:`, `near:`); an error key when the point and
/// radius are not three numbers in range (the command line's rules).
fn place_targets(form: &BroadcastForm) -> Result<Vec<Target>, &'static str> {
    let mut out = Vec::new();
    if !form.area.trim().is_empty() {
        out.push(Target::Area(form.area.trim().to_string()));
    }
    let near = [&form.near_lat, &form.near_lon, &form.near_km];
    if near.iter().any(|f| !f.trim().is_empty()) {
        let datum = match form.near_datum.trim() {
            "" => crate::domain::Datum::Wgs84,
            d => crate::domain::Datum::parse(d).map_err(|_| "near_invalid")?,
        };
        let raw = near.map(|f| f.trim().to_string()).join(",");
        let n = crate::store::broadcasts::Near::parse(&raw).map_err(|_| "near_invalid")?;
        let (lon, lat) = datum.to_wgs84(n.lon, n.lat);
        out.push(Target::Near(crate::store::broadcasts::Near::new(lat, lon, n.km).map_err(|_| "near_invalid")?));
    }
    Ok(out)
}

/// A place problem as the console says it.
fn place_problem_text(state: &WebState, p: &crate::store::broadcasts::PlaceProblem) -> String {
    use crate::store::broadcasts::PlaceProblem;
    let key = match p {
        PlaceProblem::NoAreas { .. } => "place_no_areas",
        PlaceProblem::NoSuchVillage { .. } => "place_no_such_village",
        PlaceProblem::NoArea { .. } => "place_no_area",
        PlaceProblem::NothingNear { .. } => "place_nothing_near",
    };
    format!("{}：{}", p.spec(), state.t(key))
}

async fn broadcast_form(
    state: &WebState,
    session: &Session,
    form: &BroadcastForm,
    errors: BTreeMap<&str, String>,
    preview: Option<i64>,
) -> Page {
    let (targets, areas) = target_choices(state, session).await?;
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let ctx = minijinja::context! {
        page => session.page(), form, targets, areas, errors, preview,
        kinds => BroadcastKind::codes(), severities => Severity::codes(),
    };
    Ok(state.render(status, "broadcast_new.html", ctx))
}

async fn broadcast_new(State(state): State<WebState>, session: Session) -> Page {
    let form = BroadcastForm {
        kind: BroadcastKind::Warning.as_str().into(),
        severity: Severity::Important.as_str().into(),
        ..BroadcastForm::default()
    };
    broadcast_form(&state, &session, &form, BTreeMap::new(), None).await
}

/// POST /broadcasts: without `confirm`, the preview (how many groups); with it, the send.
async fn broadcast_create(State(state): State<WebState>, session: Session, body: axum::body::Bytes) -> Page {
    // Repeated `target` fields: parsed by hand (axum's Form takes one value per name).
    let mut form = BroadcastForm::default();
    for (k, v) in url::form_urlencoded::parse(&body) {
        let v = v.into_owned();
        match k.as_ref() {
            "csrf" => form.csrf = v,
            "kind" => form.kind = v,
            "severity" => form.severity = v,
            "target" => form.target.push(v),
            "text" => form.text = v,
            "send_at" => form.send_at = v,
            "confirm" => form.confirm = v,
            "area" => form.area = v,
            "near_lat" => form.near_lat = v,
            "near_lon" => form.near_lon = v,
            "near_km" => form.near_km = v,
            "near_datum" => form.near_datum = v,
            _ => {}
        }
    }
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    let core = &state.core;
    let mut errors = BTreeMap::new();
    let kind = BroadcastKind::from_code(&form.kind);
    if kind.is_none() {
        errors.insert("kind", state.t("kind_required"));
    }
    let severity = Severity::from_code(&form.severity);
    if severity.is_none() {
        errors.insert("severity", state.t("severity_required"));
    }
    if form.text.trim().is_empty() {
        errors.insert("text", state.t("text_required"));
    } else if form.text.chars().count() > 3000 {
        errors.insert("text", state.t("text_too_long"));
    }
    let mut targets: Vec<Target> = form.target.iter().filter_map(|t| Target::parse(t).ok()).collect();
    match place_targets(&form) {
        Ok(places) => targets.extend(places),
        Err(key) => {
            errors.insert("place", state.t(key));
        }
    }
    if targets.is_empty() && !errors.contains_key("place") {
        errors.insert("target", state.t("target_required"));
    }
    if errors.is_empty() {
        // A place that reaches nothing is said before anything is authorised or counted.
        let places = core.store().resolve_places(&targets).await.context("Failed to resolve the places")?;
        if !places.problems.is_empty() {
            let said: Vec<String> = places.problems.iter().map(|p| place_problem_text(&state, p)).collect();
            errors.insert("place", said.join("；"));
        }
    }
    let send_at = match form.send_at.trim() {
        "" => None,
        s => match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M") {
            Ok(t) => {
                use chrono::TimeZone;
                core.timezone().from_local_datetime(&t).earliest().map(|t| t.timestamp_millis())
            }
            Err(_) => {
                errors.insert("send_at", state.t("time_invalid"));
                None
            }
        },
    };
    let (Some(kind), Some(severity), true) = (kind, severity, errors.is_empty()) else {
        return broadcast_form(&state, &session, &form, errors, None).await;
    };
    // Each target must be one the account may warn.
    for target in &targets {
        let subject = core.target_subject(target).await?;
        let allowed = match subject {
            Some(subject) => core.authorize_desk(&session.actor, Action::Broadcast, subject, &target.to_spec()).await?,
            None => false,
        };
        if !allowed {
            return Err(refused(&session));
        }
    }
    if form.confirm.is_empty() {
        let groups =
            core.store().count_destinations(&targets).await.context("Failed to count the broadcast's destinations")?;
        return broadcast_form(&state, &session, &form, BTreeMap::new(), Some(groups)).await;
    }
    let label = format!("web:{}", session.user.username);
    let mut req = Request::new(kind, severity, form.text.trim(), targets, &label);
    req.send_at = send_at;
    let created = core.create_broadcast(req).await?;
    Ok(Redirect::to(&format!("/broadcasts/{}", created.id)).into_response())
}

/// Whether the account may manage broadcast `id` (see and cancel it): all its villages are
/// in the account's station.
async fn may_manage(
    state: &WebState,
    session: &Session,
    id: i64,
) -> Result<crate::store::broadcasts::BroadcastRow, WebError> {
    let core = &state.core;
    let Some(b) = core.store().broadcast(id).await.context("Failed to load the broadcast")? else {
        return Err(WebError::NotFound("no_broadcast"));
    };
    let subject = core.broadcast_subject(&b).await?;
    if !core.authorize_desk(&session.actor, Action::Broadcast, subject, &format!("broadcast:{id}")).await? {
        return Err(refused(session));
    }
    Ok(b)
}

async fn broadcast(State(state): State<WebState>, session: Session, Path(id): Path<i64>) -> Page {
    let b = may_manage(&state, &session, id).await?;
    let store = state.core.store();
    let counts = store.broadcast_counts(id).await.context("Failed to count the broadcast's deliveries")?;
    let ledger = store.broadcast_ledger(id).await.context("Failed to read the broadcast's ledger")?;
    let done = counts.pending == 0 && counts.sending == 0;
    let b = broadcast_view(&state, &b).await?;
    let ctx = minijinja::context! { page => session.page(), b, counts, ledger, done };
    Ok(state.render(StatusCode::OK, "broadcast.html", ctx))
}

#[derive(Deserialize, Default)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn broadcast_cancel(
    State(state): State<WebState>,
    session: Session,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Page {
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    may_manage(&state, &session, id).await?;
    state.core.cancel_broadcast(id).await?;
    Ok(Redirect::to(&format!("/broadcasts/{id}")).into_response())
}

// ----- registry -----

async fn registry(State(state): State<WebState>, session: Session) -> Page {
    let core = &state.core;
    let store = core.store();
    let day = core.today().to_string();
    let chats = store.list_chats(None).await.context("Failed to list the chats")?;
    let mut groups: HashMap<i64, usize> = HashMap::new();
    for c in chats.iter().filter(|c| c.active) {
        if let Some(v) = c.village_id {
            *groups.entry(v).or_default() += 1;
        }
    }
    let mut villages = Vec::new();
    let mut gaps = 0;
    let index = store.area_index().await.context("Failed to load the areas")?;
    // Per village with an area: (code, name, covered).
    let mut on_map: HashMap<i64, (String, String, bool)> = HashMap::new();
    let mut without_area = Vec::new();
    for v in store
        .all_villages()
        .await
        .context("Failed to list the villages")?
        .into_iter()
        .filter(|v| session.covers(v.station_id))
    {
        let officers = store.assigned_officers(v.id, &day).await.context("Failed to list a village's officers")?;
        let no_resident = !officers.iter().any(|o| o.role == crate::domain::AssignmentRole::Resident);
        // Nobody of the duty chain serves it today and is on duty: no tip can reach anyone.
        let no_officer = !officers.iter().any(|o| o.role.is_on_duty_chain() && o.on_duty);
        let group_count = groups.get(&v.id).copied().unwrap_or(0);
        let not_enrolled: Vec<String> =
            officers.iter().filter(|o| !o.enrolled && o.role.is_on_duty_chain()).map(|o| o.name.clone()).collect();
        if no_resident || no_officer || group_count == 0 || !not_enrolled.is_empty() {
            gaps += 1;
        }
        if index.of_village(v.id).is_some() {
            on_map.insert(v.id, (v.code.clone(), v.name.clone(), !no_officer));
        } else {
            without_area.push(minijinja::context! { code => &v.code, name => &v.name });
        }
        let officers: Vec<_> = officers
            .iter()
            .map(
                |o| minijinja::context! { name => &o.name, badge => &o.badge, role => &o.role, enrolled => o.enrolled },
            )
            .collect();
        villages.push(minijinja::context! {
            code => v.code, name => v.name, office => v.office_name, officers, groups => group_count,
            no_resident, no_officer, no_group => group_count == 0, not_enrolled,
        });
    }
    let coverage_map = coverage_map(&state, &index, &on_map);
    let officers: Vec<_> = store
        .all_officers()
        .await
        .context("Failed to list the officers")?
        .into_iter()
        .filter(|o| session.covers(o.station_id))
        .map(|o| minijinja::context! { badge => o.badge, name => o.name, kind => o.kind })
        .collect();
    let mut map_gaps: Vec<(&str, &str)> = on_map
        .values()
        .filter(|(_, _, covered)| !covered)
        .map(|(code, name, _)| (code.as_str(), name.as_str()))
        .collect();
    map_gaps.sort();
    let map_gaps: Vec<&str> = map_gaps.into_iter().map(|(_, name)| name).collect();
    let ctx = minijinja::context! {
        page => session.page(), villages, gaps, officers, coverage_map, map_gaps, without_area,
        mapped => on_map.len(),
    };
    Ok(state.render(StatusCode::OK, "registry.html", ctx))
}

/// Most areas a console map draws (a system account sees every station's: a province's are
/// too many for one page).
const MAX_MAP_AREAS: usize = 2_000;

/// The station's areas (`villages`: id → (code, name, covered)) coloured by coverage: a gap
/// (no officer of the duty chain on duty today) in one colour, the covered in another, each
/// a link to its tips. `None` without areas, or with too many.
fn coverage_map(
    state: &WebState,
    index: &crate::places::AreaIndex,
    villages: &HashMap<i64, (String, String, bool)>,
) -> Option<String> {
    if villages.len() > MAX_MAP_AREAS {
        return None;
    }
    let gap = state.texts.get("map_gap");
    let mut regions: Vec<Region<'_>> = villages
        .iter()
        .filter_map(|(id, (code, name, covered))| {
            let area = index.of_village(*id)?;
            Some(Region {
                title: (!covered).then(|| gap.to_string()),
                href: Some(format!("/tips?village={code}")),
                ..Region::new(code, name, &area.shape, if *covered { "covered" } else { "gap" })
            })
        })
        .collect();
    regions.sort_by(|a, b| a.code.cmp(b.code));
    map::draw(state.texts.get("map_coverage"), &regions, None, 0.03)
}

async fn enrol(
    State(state): State<WebState>,
    session: Session,
    Path(badge): Path<String>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Page {
    if !session.csrf_ok(&form.csrf) {
        return Err(csrf_refused());
    }
    let core = &state.core;
    let Some(officer) =
        core.store().officer_by_badge(&badge).await.context("Failed to look up the officer to enrol")?
    else {
        return Err(WebError::NotFound("no_badge"));
    };
    let subject = Subject::Station { station_id: officer.station_id };
    if !core.authorize_desk(&session.actor, Action::Enrol, subject, &format!("officer:{badge}")).await? {
        return Err(refused(&session));
    }
    let code = core
        .store()
        .issue_enrolment_code(&badge, 24 * 3_600_000)
        .await
        .context("Failed to issue an enrolment code")?
        .context("The officer vanished while their enrolment code was issued")?;
    let username = core.bot_username().unwrap_or_default();
    let ctx = minijinja::context! { page => session.page(), code, username };
    // Shown once: never cached.
    let mut response = state.render(StatusCode::OK, "enrolled.html", ctx);
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

// ----- figures -----

#[derive(Deserialize, Default)]
struct MonthQuery {
    #[serde(default)]
    month: String,
}

/// The month asked for (the current one when none), its bounds, and the officers' figures
/// for it, after authorising the reading (audited as an export, `what`). `Err(Ok(month))`
/// when the month is not one.
async fn month_figures(
    state: &WebState,
    session: &Session,
    q: &MonthQuery,
    what: &str,
) -> Result<Result<(String, i64, i64, Vec<OfficerFigures>), String>, WebError> {
    let core = &state.core;
    let tz = core.timezone();
    let subject = match session.user.station_id {
        Some(station_id) => Subject::Station { station_id },
        None => Subject::Everything,
    };
    if !core.authorize_desk(&session.actor, Action::Export, subject, what).await? {
        return Err(refused(session));
    }
    let current = crate::calendar::current_month(tz, core.now_ms());
    let month = Some(q.month.trim().to_string()).filter(|m| !m.is_empty()).unwrap_or(current.clone());
    let Ok((from, to)) = crate::calendar::month_bounds(tz, &month) else { return Ok(Err(current)) };
    let officers = core
        .store()
        .officer_figures(from, to, session.user.station_id)
        .await
        .context("Failed to compute the officers' figures")?;
    Ok(Ok((month, from, to, officers)))
}

/// The start of each of the last `n` months (the current one last) and the end of the
/// current one, in `tz`, with the months' labels (`2026-11`).
fn last_months(tz: chrono_tz::Tz, now_ms: i64, n: u32) -> (Vec<String>, Vec<i64>) {
    use chrono::Datelike;
    let today = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default().with_timezone(&tz).date_naive();
    let first = today.with_day(1).unwrap_or(today);
    let starts: Vec<chrono::NaiveDate> =
        (0..=n).rev().filter_map(|k| first.checked_sub_months(chrono::Months::new(k))).collect();
    let bounds: Vec<chrono::NaiveDate> =
        starts[1..].iter().copied().chain(first.checked_add_months(chrono::Months::new(1))).collect();
    let labels = bounds[..bounds.len() - 1].iter().map(|d| d.format("%Y-%m").to_string()).collect();
    (labels, bounds.iter().map(|d| crate::calendar::midnight_ms(tz, *d)).collect())
}

async fn figures(State(state): State<WebState>, session: Session, Query(q): Query<MonthQuery>) -> Page {
    let core = &state.core;
    let (month, from, to, officers) = match month_figures(&state, &session, &q, "figures").await? {
        Ok(figures) => figures,
        Err(current) => {
            let ctx = minijinja::context! {
                page => session.page(), month => current, error => state.t("month_format"), officers => Vec::<()>::new(),
            };
            return Ok(state.render(StatusCode::UNPROCESSABLE_ENTITY, "figures.html", ctx));
        }
    };
    let store = core.store();
    let desk = store
        .desk_broadcast_figures(from, to, session.user.station_id)
        .await
        .context("Failed to compute the console's broadcast figures")?;
    let warnings_chart = bar_chart(
        state.texts.get("chart_warnings"),
        &officers.iter().filter(|o| o.owes_warnings).map(|o| (o.name.clone(), o.warnings)).collect::<Vec<_>>(),
        None,
    );
    let tips_chart = bar_chart(
        state.texts.get("chart_tips"),
        &officers.iter().map(|o| (o.name.clone(), o.tips_received)).collect::<Vec<_>>(),
        None,
    );
    // Twelve months of tips, per village and for the whole station, each village on one scale.
    let (labels, bounds) = last_months(core.timezone(), core.now_ms(), 12);
    let per_month = store
        .village_month_counts(session.user.station_id, &bounds)
        .await
        .context("Failed to count the tips per village and month")?;
    let short: Vec<String> = labels.iter().map(|m| m[2..].to_string()).collect();
    let mut station_trend = vec![0i64; labels.len()];
    for (_, counts) in &per_month {
        for (total, n) in station_trend.iter_mut().zip(counts) {
            *total += n;
        }
    }
    let columns = |counts: &[i64]| short.iter().cloned().zip(counts.iter().copied()).collect::<Vec<_>>();
    let trend_title = state.texts.get("chart_trend");
    let trend = column_chart(trend_title, &columns(&station_trend), None);
    let village_scale = per_month.iter().flat_map(|(_, c)| c.iter().copied()).max();
    let year_ago = bounds[0];
    let counts = store
        .village_category_counts(session.user.station_id, year_ago)
        .await
        .context("Failed to count the tips per village and category")?;
    let category_scale = counts.iter().map(|(_, _, n)| *n).max();
    let mut per_village: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (village, category, n) in counts {
        per_village.entry(village).or_default().insert(category, n);
    }
    let known = core.tip_categories();
    let villages: Vec<_> = per_month
        .iter()
        .map(|(name, months)| {
            let cats = per_village.remove(name).unwrap_or_default();
            // Categories in the order the bot offers them, any no longer offered after.
            let rows: Vec<(String, i64)> = known
                .iter()
                .filter_map(|c| cats.get(c).map(|n| (c, *n)))
                .chain(cats.iter().filter(|(c, _)| !known.contains(c)).map(|(c, n)| (c, *n)))
                .map(|(c, n)| (core.category_label(c), n))
                .collect();
            minijinja::context! {
                name, total => months.iter().sum::<i64>(),
                chart => bar_chart(name, &rows, category_scale),
                trend => column_chart(&format!("{name} {trend_title}"), &columns(months), village_scale),
            }
        })
        .collect();
    // The month's tips per area: each counted in the village responsible for it.
    let per_area =
        store.village_tips(session.user.station_id, from, to).await.context("Failed to count the tips per village")?;
    let index = store.area_index().await.context("Failed to load the areas")?;
    let area_map = tips_map(&state, &index, &per_area);
    // The table: the villages that had tips, the most first (the map shows them all).
    let mut with_tips: Vec<_> = per_area.iter().filter(|v| v.tips > 0).collect();
    with_tips.sort_by(|a, b| b.tips.cmp(&a.tips).then(a.code.cmp(&b.code)));
    let ctx = minijinja::context! {
        page => session.page(), month, officers, minimum => 1, warnings_chart, tips_chart, villages, desk,
        trend, first_month => labels.first(), last_month => labels.last(), per_area => with_tips, area_map,
    };
    Ok(state.render(StatusCode::OK, "figures.html", ctx))
}

/// The areas of `villages` shaded by their tips (five shades, the most tips darkest), each
/// with its count and a link to its tips. `None` without areas, or with too many.
fn tips_map(
    state: &WebState,
    index: &crate::places::AreaIndex,
    villages: &[crate::store::reports::VillageTips],
) -> Option<String> {
    let drawn: Vec<_> = villages.iter().filter_map(|v| Some((v, index.of_village(v.village_id)?))).collect();
    if drawn.len() > MAX_MAP_AREAS {
        return None;
    }
    let most = drawn.iter().map(|(v, _)| v.tips).max().unwrap_or(0);
    let regions: Vec<Region<'_>> = drawn
        .iter()
        .map(|(v, area)| Region {
            note: Some(v.tips.to_string()),
            href: Some(format!("/tips?village={}", v.code)),
            ..Region::new(&v.code, &v.name, &area.shape, map::heat_class(v.tips, most))
        })
        .collect();
    map::draw(state.texts.get("map_tips"), &regions, None, 0.03)
}

/// GET /figures/export.csv?month=: the officers' figures of the month as CSV (UTF-8 with BOM,
/// cells made inert like every CSV the project writes).
async fn figures_csv(State(state): State<WebState>, session: Session, Query(q): Query<MonthQuery>) -> Page {
    let Ok((month, _, _, officers)) = month_figures(&state, &session, &q, "figures csv").await? else {
        return Err(WebError::BadRequest("month_format"));
    };
    let header: Vec<String> = state.texts.get("figures_columns").split(',').map(str::to_string).collect();
    let rows = officers.iter().map(|o| {
        let rate =
            if o.tips_received > 0 { format!("{}%", o.tips_resolved * 100 / o.tips_received) } else { String::new() };
        [o.name.clone(), o.badge.clone()].into_iter().chain(o.cells()).chain([rate]).collect::<Vec<_>>()
    });
    let out = crate::csv_cells::file_with_bom(&header, rows).context("Failed to write the figures' CSV export")?;
    let disposition = format!("attachment; filename=\"figures-{month}.csv\"");
    Ok((
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        out,
    )
        .into_response())
}
