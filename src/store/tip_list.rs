//! Lists of tips for staff: the console's pages, its exports and the CLI's. One `WHERE`
//! built from a [`TipFilter`] serves the page, its counters and the export, so what a
//! counter says is what a click on it lists. Search finds a tip by its number, by words of
//! its text, or by the phone a named tipster left (through the phone's blind index: the
//! phone itself is sealed). "Overdue" is measured from a tip's arrival against the
//! station's times ([`Sla`]), not from the escalation's deadline, which moves on each
//! hand-over.

use serde::Serialize;
use sqlx::FromRow;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::QueryAs;

use super::Store;
use crate::domain::{Rating, StatusFilter, TipSource, TipStatus};

/// A tip as staff list and export it: no reporter, only the alias-free facts.
#[derive(Debug, Clone, FromRow, Serialize)]
pub struct TipListRow {
    #[serde(skip)]
    pub id: i64,
    pub number: String,
    pub created_at: i64,
    pub station_code: String,
    pub station_name: String,
    pub village_code: String,
    /// The village (or grid) responsible: the one whose area holds the tip's location, else
    /// the one it was reported from.
    pub village_name: String,
    /// The village it was reported from, when its location put it in another (报告于 …).
    pub reported_village_name: Option<String>,
    pub category: String,
    pub source: TipSource,
    #[sqlx(try_from = "super::mapping::Flag")]
    #[serde(serialize_with = "super::mapping::serialize_flag")]
    pub anonymous: bool,
    pub status: TipStatus,
    pub officer_badge: Option<String>,
    pub officer_name: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub rating: Option<Rating>,
    pub summary: String,
    /// 1 when past the station's times (see [`Sla`]); 0 when no clock was given.
    pub overdue: i64,
}

/// The station's times for a tip, counted from its arrival: acknowledged (受理) within
/// `ack_ms`, resolved (办结) within `resolve_ms`. A tip past either is overdue, whatever the
/// escalation did meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sla {
    pub ack_ms: i64,
    pub resolve_ms: i64,
}

/// What the search box found to look for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TipSearch {
    /// A tip number (`T20261123-0007`).
    Number(String),
    /// The blind index of a phone number a named tipster left.
    PhoneIndex(String),
    /// Words that must all appear in the tip's text.
    Words(Vec<String>),
}

impl TipSearch {
    /// What `q`, typed into the search box, looks for: a tip number (`T20261123-7` or
    /// `20261123-0007`), a phone number (7 to 12 digits, spaces, dashes and +86 allowed:
    /// `phone_index` gives its blind index), else up to 5 words of the text. `None` for an
    /// empty box.
    pub fn parse(q: &str, phone_index: impl Fn(&str) -> String) -> Option<TipSearch> {
        let q = q.trim();
        if q.is_empty() {
            return None;
        }
        let number = regex::Regex::new(r"^[Tt]?(\d{8})-(\d{1,4})$").expect("a valid pattern");
        if let Some(c) = number.captures(q) {
            let n: u32 = c[2].parse().expect("digits");
            return Some(TipSearch::Number(format!("T{}-{n:04}", &c[1])));
        }
        let compact: String = q.chars().filter(|c| !matches!(c, ' ' | '-' | '\u{3000}')).collect();
        let digits = compact.strip_prefix("+86").unwrap_or(&compact);
        if (7..=12).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) {
            return Some(TipSearch::PhoneIndex(phone_index(digits)));
        }
        let words = q.split_whitespace().take(5).map(|w| w.chars().take(40).collect()).collect();
        Some(TipSearch::Words(words))
    }
}

/// The order of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TipSort {
    /// Newest first.
    #[default]
    Newest,
    /// Oldest first.
    Oldest,
    /// Overdue first, the longest overdue at the top; then newest first.
    Overdue,
    /// By status in lifecycle order (待受理 first), newest first within each.
    Status,
}

/// Which tips to list.
#[derive(Debug, Clone, Default)]
pub struct TipFilter {
    pub station: Option<String>,
    /// A status, or the open ones.
    pub status: Option<StatusFilter>,
    /// Created at or after this instant (UTC ms).
    pub since_ms: Option<i64>,
    /// Only this village (code).
    pub village: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only tips assigned to this officer (badge).
    pub officer: Option<String>,
    /// Created before this instant (UTC ms).
    pub until_ms: Option<i64>,
    /// The instant (UTC ms) and the station's times "overdue" is measured by; without them
    /// no tip is overdue.
    pub clock: Option<(i64, Sla)>,
    /// Only overdue tips.
    pub only_overdue: bool,
    pub search: Option<TipSearch>,
    pub sort: TipSort,
}

/// Where a page starts: after skipping rows, or next to a tip (keyset: the creation time
/// and id of the last tip of the page before, or the first of the page after), which costs
/// the same on page 1 and page 2,000. The keys are only for the time orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAt {
    Skip(i64),
    /// `take` rows after skipping `skip` from the end of the list: a page in the second half
    /// read from the far end, so no page walks more than half of the list (time orders
    /// only; others skip from the start).
    FromEnd {
        skip: i64,
        take: i64,
    },
    After {
        created_at: i64,
        id: i64,
    },
    Before {
        created_at: i64,
        id: i64,
    },
}

/// What the counters above a list show, for the filter without its status: per status,
/// and how many are overdue; `total` is what the filter itself lists.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TipCounts {
    pub total: i64,
    pub by_status: Vec<(TipStatus, i64)>,
    pub overdue: i64,
}

impl TipCounts {
    /// The count of one status (0 when none).
    pub fn of(&self, status: TipStatus) -> i64 {
        self.by_status.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
    }
}

enum Arg {
    Int(i64),
    Text(String),
    Status(TipStatus),
}

/// A `WHERE` clause with `$N` placeholders and what to bind to them, in order.
struct Where {
    sql: String,
    args: Vec<Arg>,
}

impl Where {
    fn new() -> Where {
        Where { sql: "TRUE".into(), args: vec![] }
    }

    /// `clause` with each `?` numbered as the next placeholder, taking the next of `args`.
    fn expr(&mut self, clause: &str, args: Vec<Arg>) -> String {
        let mut args = args.into_iter();
        let mut out = String::new();
        for (i, part) in clause.split('?').enumerate() {
            if i > 0 {
                self.args.push(args.next().expect("one argument for each ?"));
                out.push_str(&format!("${}", self.args.len()));
            }
            out.push_str(part);
        }
        out
    }

    /// Adds `AND (clause)` (see [`Where::expr`]).
    fn and(&mut self, clause: &str, args: Vec<Arg>) {
        let clause = self.expr(clause, args);
        self.sql.push_str(&format!(" AND ({clause})"));
    }

    fn bind<'q, O>(self, mut q: QueryAs<'q, Any, O, AnyArguments>) -> QueryAs<'q, Any, O, AnyArguments> {
        for arg in self.args {
            q = match arg {
                Arg::Int(n) => q.bind(n),
                Arg::Text(s) => q.bind(s),
                Arg::Status(s) => q.bind(s),
            };
        }
        q
    }
}

const FROM: &str = "FROM tips t JOIN villages v ON v.id = t.village_id JOIN offices o ON o.id = v.office_id \
     JOIN stations s ON s.id = o.station_id LEFT JOIN officers f ON f.id = t.assigned_officer_id \
     LEFT JOIN villages rv ON rv.id = t.reported_village_id AND rv.id <> t.village_id";

/// `statuses` as an SQL list of their codes: `'new', 'acknowledged'`.
fn sql_codes(statuses: &[TipStatus]) -> String {
    statuses.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
}

/// The status codes in lifecycle order, as SQL (for sorting by status).
fn status_rank() -> String {
    let cases: String =
        TipStatus::ALL.iter().enumerate().map(|(i, s)| format!(" WHEN '{}' THEN {i}", s.as_str())).collect();
    format!("CASE t.status{cases} ELSE 99 END")
}

/// `LIKE` pattern matching `word` anywhere, `%`, `_` and `\` taken literally.
fn like_anywhere(word: &str) -> String {
    let escaped: String = word
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

impl TipFilter {
    /// The SQL of "this tip is overdue" (binds: the two limits of the station's times).
    fn overdue_sql(&self) -> (String, Vec<Arg>) {
        let (ack_before, resolve_before) = match self.clock {
            Some((now, sla)) => (now.saturating_sub(sla.ack_ms), now.saturating_sub(sla.resolve_ms)),
            None => (i64::MIN, i64::MIN),
        };
        let working: Vec<TipStatus> =
            StatusFilter::Open.statuses().into_iter().filter(|s| *s != TipStatus::New).collect();
        (
            format!(
                "(t.status = '{}' AND t.created_at < ?) OR (t.status IN ({}) AND t.created_at < ?)",
                TipStatus::New,
                sql_codes(&working)
            ),
            vec![Arg::Int(ack_before), Arg::Int(resolve_before)],
        )
    }

    /// Adds the station and the village asked for, as conditions on the village id `column`.
    fn add_place(&self, w: &mut Where, column: &str) {
        let text = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        if let Some(station) = text(&self.station) {
            w.and(
                &format!(
                    "{column} IN (SELECT v2.id FROM villages v2 JOIN offices o2 ON o2.id = v2.office_id \
                     JOIN stations s2 ON s2.id = o2.station_id WHERE s2.code = ?)"
                ),
                vec![Arg::Text(station)],
            );
        }
        if let Some(village) = text(&self.village) {
            w.and(&format!("{column} IN (SELECT id FROM villages WHERE code = ?)"), vec![Arg::Text(village)]);
        }
    }

    /// Whether the filter asks only for a station or a village (and a status): its counters
    /// are then read from `tip_status_counts`.
    fn only_by_place(&self) -> bool {
        let empty = |s: &Option<String>| s.as_deref().is_none_or(|s| s.trim().is_empty());
        self.since_ms.is_none()
            && self.until_ms.is_none()
            && empty(&self.category)
            && empty(&self.officer)
            && self.search.is_none()
    }

    /// Adds the filter's conditions to `w` (its status only `with_status`).
    fn add_to(&self, w: &mut Where, with_status: bool) {
        let text = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        // Every condition is on the tip's own columns (the station's, the village's and the
        // officer's ids found once by subquery), so counting and paging read `tips` alone,
        // through its indexes, and the joins are made for the rows shown.
        self.add_place(w, "t.village_id");
        match self.status {
            Some(StatusFilter::Open) if with_status => {
                w.and(&format!("t.status IN ({})", sql_codes(&StatusFilter::Open.statuses())), vec![]);
            }
            Some(StatusFilter::Is(s)) if with_status => w.and("t.status = ?", vec![Arg::Status(s)]),
            _ => {}
        }
        if let Some(since) = self.since_ms {
            w.and("t.created_at >= ?", vec![Arg::Int(since)]);
        }
        if let Some(until) = self.until_ms {
            w.and("t.created_at < ?", vec![Arg::Int(until)]);
        }
        if let Some(category) = text(&self.category) {
            w.and("t.category = ?", vec![Arg::Text(category)]);
        }
        if let Some(badge) = text(&self.officer) {
            w.and("t.assigned_officer_id IN (SELECT id FROM officers WHERE badge = ?)", vec![Arg::Text(badge)]);
        }
        if self.only_overdue {
            let (sql, args) = self.overdue_sql();
            w.and(&sql, args);
        }
        match &self.search {
            Some(TipSearch::Number(n)) => w.and("t.number = ?", vec![Arg::Text(n.clone())]),
            Some(TipSearch::PhoneIndex(i)) => w.and("t.phone_index = ?", vec![Arg::Text(i.clone())]),
            Some(TipSearch::Words(words)) => {
                for word in words {
                    w.and("t.summary LIKE ? ESCAPE '\\'", vec![Arg::Text(like_anywhere(word))]);
                }
            }
            None => {}
        }
    }

    /// Whether a tip in `status` is listed by the filter's status.
    fn wants_status(&self, status: TipStatus) -> bool {
        self.status.is_none_or(|f| f.admits(status))
    }

    /// The `ORDER BY` (PostgreSQL takes an output column in it only by its bare name, so the
    /// overdue expression is written out again, with its own binds).
    fn order_by(&self, w: &mut Where) -> String {
        match self.sort {
            TipSort::Newest => "t.created_at DESC, t.id DESC".into(),
            TipSort::Oldest => "t.created_at, t.id".into(),
            // Every tip listed is overdue: the longest overdue first is the oldest first.
            TipSort::Overdue if self.only_overdue => "t.created_at, t.id".into(),
            TipSort::Overdue => {
                let (sql, args) = self.overdue_sql();
                let late = w.expr(&sql, args);
                format!(
                    "CASE WHEN {late} THEN 0 ELSE 1 END, CASE WHEN {late} THEN t.created_at END, t.created_at DESC, t.id DESC"
                )
            }
            TipSort::Status => format!("{}, t.created_at DESC, t.id DESC", status_rank()),
        }
    }
}

impl Store {
    /// Tips matching `filter`, in its order: all of them (exports), or `page` =
    /// (rows per page, rows to skip).
    pub async fn list_tips_page(
        &self,
        filter: &TipFilter,
        page: Option<(i64, PageAt)>,
    ) -> anyhow::Result<Vec<TipListRow>> {
        let (overdue, overdue_args) = filter.overdue_sql();
        // The overdue expression's binds come first: it stands in the SELECT.
        let mut w = Where::new();
        let overdue_sql = w.expr(&overdue, overdue_args);
        let ids = match page {
            // A page: the ids of its tips first, from `tips` alone, then those rows joined.
            Some((limit, at)) => {
                let mut page_w = Where::new();
                filter.add_to(&mut page_w, true);
                // SQLite's planner, given a station's villages or a status, reads those tips
                // through the village or status index and sorts them all for every page (40 ms
                // at 100,000 tips); walking the creation index, which holds the village and the
                // status, and skipping the others takes 4, and at most a walk of the whole
                // index. The embedded SQLite serves one station or county, where that is so, so
                // both are hidden from its indexes here (`+`). PostgreSQL, which serves a
                // province, chooses well by itself.
                if self.backend() == super::Backend::Sqlite {
                    page_w.sql = page_w.sql.replace("t.village_id", "+t.village_id").replace("t.status", "+t.status");
                }
                let newest = filter.sort == TipSort::Newest;
                let keyed = matches!(filter.sort, TipSort::Newest | TipSort::Oldest);
                let mut limit = limit;
                let (mut order, skip, reverse) = match at {
                    PageAt::After { created_at, id } | PageAt::Before { created_at, id } if keyed => {
                        let before = matches!(at, PageAt::Before { .. });
                        // Newest first: "after" is older; the page before is read backwards.
                        let older = newest != before;
                        let cmp = if older { "<" } else { ">" };
                        page_w.and(
                            &format!("t.created_at {cmp} ? OR (t.created_at = ? AND t.id {cmp} ?)"),
                            vec![Arg::Int(created_at), Arg::Int(created_at), Arg::Int(id)],
                        );
                        let dir = if older { "DESC" } else { "" };
                        (format!("t.created_at {dir}, t.id {dir}"), 0, before)
                    }
                    PageAt::FromEnd { skip, take } if keyed => {
                        limit = take;
                        let dir = if newest { "" } else { "DESC" };
                        (format!("t.created_at {dir}, t.id {dir}"), skip, true)
                    }
                    PageAt::Skip(skip) => (String::new(), skip, false),
                    PageAt::FromEnd { .. } => anyhow::bail!("a page from the end needs an order by time"),
                    // Keys of another order: the first page.
                    PageAt::After { .. } | PageAt::Before { .. } => (String::new(), 0, false),
                };
                if order.is_empty() {
                    order = filter.order_by(&mut page_w);
                }
                let sql = format!(
                    "SELECT t.id FROM tips t WHERE {} ORDER BY {order} LIMIT {} OFFSET {}",
                    page_w.sql,
                    limit.max(1),
                    skip.max(0)
                );
                let q = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql));
                let mut ids: Vec<i64> =
                    page_w.bind(q).fetch_all(self.pool()).await?.into_iter().map(|(id,)| id).collect();
                if reverse {
                    ids.reverse();
                }
                if ids.is_empty() {
                    return Ok(vec![]);
                }
                Some(ids)
            }
            None => None,
        };
        let (condition, order) = match &ids {
            Some(ids) => {
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
                (format!("t.id IN ({list})"), "t.id".to_string())
            }
            None => {
                filter.add_to(&mut w, true);
                let order = filter.order_by(&mut w);
                (w.sql.clone(), order)
            }
        };
        let sql = format!(
            "SELECT t.id, t.number, t.created_at, s.code AS station_code, s.name AS station_name, v.code AS village_code, \
             v.name AS village_name, rv.name AS reported_village_name, t.category, t.source, t.anonymous, t.status, f.badge AS officer_badge, \
             f.name AS officer_name, t.acknowledged_at, t.resolved_at, t.rating, t.summary, \
             CASE WHEN {overdue_sql} THEN 1 ELSE 0 END AS overdue {FROM} WHERE {condition} ORDER BY {order}"
        );
        let q = sqlx::query_as::<_, TipListRow>(sqlx::AssertSqlSafe(sql));
        let mut rows = w.bind(q).fetch_all(self.pool()).await?;
        if let Some(ids) = ids {
            // In the page's order.
            rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
        }
        Ok(rows)
    }

    /// The village tip `tip_id` was reported from, when its location put it in another:
    /// (id, name).
    pub async fn tip_reported_village(&self, tip_id: i64) -> anyhow::Result<Option<(i64, String)>> {
        Ok(sqlx::query_as(
            "SELECT v.id, v.name FROM tips t JOIN villages v ON v.id = t.reported_village_id \
             WHERE t.id = $1 AND t.reported_village_id <> t.village_id",
        )
        .bind(tip_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Every tip matching `filter`, in its order.
    pub async fn list_tips(&self, filter: &TipFilter) -> anyhow::Result<Vec<TipListRow>> {
        self.list_tips_page(filter, None).await
    }

    /// The counters of `filter` (see [`TipCounts`]).
    pub async fn count_tips(&self, filter: &TipFilter) -> anyhow::Result<TipCounts> {
        if filter.only_by_place() {
            return self.count_tips_by_place(filter).await;
        }
        let (overdue, overdue_args) = filter.overdue_sql();
        let mut w = Where::new();
        let overdue_sql = w.expr(&overdue, overdue_args);
        filter.add_to(&mut w, false);
        let sql = format!(
            "SELECT t.status, COUNT(*), SUM(CASE WHEN {overdue_sql} THEN 1 ELSE 0 END) FROM tips t WHERE {} \
             GROUP BY t.status",
            w.sql
        );
        let q = sqlx::query_as::<_, (TipStatus, i64, Option<i64>)>(sqlx::AssertSqlSafe(sql));
        let rows = w.bind(q).fetch_all(self.pool()).await?;
        let mut counts = TipCounts::default();
        for (status, n, late) in rows {
            if filter.wants_status(status) {
                counts.total += n;
            }
            counts.overdue += late.unwrap_or(0);
            counts.by_status.push((status, n));
        }
        Ok(counts)
    }

    /// [`Store::count_tips`] of a filter by place (and perhaps only the overdue): the counts
    /// by status kept by the triggers, and the overdue ones counted on the index
    /// `(village_id, status, created_at)` (for the overdue queue, they are its counts).
    async fn count_tips_by_place(&self, filter: &TipFilter) -> anyhow::Result<TipCounts> {
        let mut late: Vec<(TipStatus, i64)> = vec![];
        if let Some((now, sla)) = filter.clock {
            // One count per open status, each a range of (village_id, status, created_at); a
            // GROUP BY would have SQLite walk an index led by the status instead.
            for status in StatusFilter::Open.statuses() {
                let within = if status == TipStatus::New { sla.ack_ms } else { sla.resolve_ms };
                let mut w = Where::new();
                filter.add_place(&mut w, "t.village_id");
                let args = vec![Arg::Status(status), Arg::Int(now.saturating_sub(within))];
                w.and("t.status = ? AND t.created_at < ?", args);
                let sql = format!("SELECT COUNT(*) FROM tips t WHERE {}", w.sql);
                let q = sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql));
                late.push((status, w.bind(q).fetch_one(self.pool()).await?.0));
            }
        }
        let by_status = if filter.only_overdue {
            late.clone()
        } else {
            let mut w = Where::new();
            filter.add_place(&mut w, "c.village_id");
            let sql = format!(
                "SELECT c.status, CAST(SUM(c.n) AS BIGINT) FROM tip_status_counts c WHERE {} GROUP BY c.status",
                w.sql
            );
            let q = sqlx::query_as::<_, (TipStatus, Option<i64>)>(sqlx::AssertSqlSafe(sql));
            w.bind(q).fetch_all(self.pool()).await?.into_iter().map(|(s, n)| (s, n.unwrap_or(0))).collect()
        };
        let mut counts = TipCounts { overdue: late.iter().map(|(_, n)| n).sum(), ..TipCounts::default() };
        for (status, n) in by_status.into_iter().filter(|(_, n)| *n > 0) {
            if filter.wants_status(status) {
                counts.total += n;
            }
            counts.by_status.push((status, n));
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_question_mark_becomes_the_next_numbered_placeholder() {
        let mut w = Where::new();
        w.and("a = ?", vec![Arg::Text("x".into())]);
        w.and("b < ? OR c > ?", vec![Arg::Int(1), Arg::Int(2)]);
        assert_eq!(w.sql, "TRUE AND (a = $1) AND (b < $2 OR c > $3)");
        assert!(matches!(&w.args[..], [Arg::Text(x), Arg::Int(1), Arg::Int(2)] if x == "x"));
    }

    #[test]
    fn the_search_box_tells_a_number_a_phone_and_words_apart() {
        let index = |d: &str| format!("idx:{d}");
        assert_eq!(TipSearch::parse("  ", index), None);
        let number = Some(TipSearch::Number("T20261123-0007".into()));
        assert_eq!(TipSearch::parse("t20261123-7", index), number);
        assert_eq!(TipSearch::parse("20261123-0007", index), number);
        let phone = Some(TipSearch::PhoneIndex("idx:13903710121".into()));
        assert_eq!(TipSearch::parse("139 0371 0121", index), phone);
        assert_eq!(TipSearch::parse("+86 139-0371-0121", index), phone);
        assert_eq!(TipSearch::parse("0371-62581110", index), Some(TipSearch::PhoneIndex("idx:037162581110".into())));
        assert_eq!(
            TipSearch::parse("电动车 车棚", index),
            Some(TipSearch::Words(vec!["电动车".into(), "车棚".into()]))
        );
        assert_eq!(TipSearch::parse("110", index), Some(TipSearch::Words(vec!["110".into()])), "too short for a phone");
    }

    #[test]
    fn like_patterns_take_percent_and_underscore_literally() {
        assert_eq!(like_anywhere("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
