//! A station's year of tips, written straight into the database for the desk's benchmark
//! (`benches/desk.rs`) and the browser test with thousands of tips: one `INSERT … SELECT`
//! per village over a recursive counter, so 100,000 tips take seconds, not the minutes the
//! bot's own path would. The rows are what the bot writes (numbers of the real form, text in
//! `summary`, statuses in lifecycle proportions); they have no items, no reporter and no
//! phone: tips that need those are made through the bot or `Store::create_tip`.

use cunjing::store::Store;

/// What the seeded texts say, one in seven each; `SEED_WORD` is in exactly one of them.
pub const SEED_TEXTS: [&str; 7] = [
    "村东头有人偷电动车电瓶",
    "有人冒充客服打电话让转账",
    "邻居因为宅基地吵起来了",
    "路口的井盖不见了很危险",
    "夜里有陌生车辆在村里转",
    "有人在河边电鱼",
    "小卖部门口有人卖假药",
];

/// A word of one seeded text in seven.
pub const SEED_WORD: &str = "井盖";

/// Writes `count` tips spread evenly over `villages` (ids) and over the `span_ms` before
/// `now_ms`, the newest first in number. Tip i gets the number `T{20250101 + i / 10000}-{i %
/// 10000:04}` (so `T20250101-0042` is tip 42), three in eight are still open (new, acknowledged, in progress), and one in
/// seven speaks of [`SEED_WORD`].
pub async fn seed_tips(store: &Store, villages: &[i64], count: usize, now_ms: i64, span_ms: i64) {
    let per = count.div_ceil(villages.len());
    let step = (span_ms / count.max(1) as i64).max(1);
    for (v, village) in villages.iter().enumerate() {
        let first = v * per;
        let last = ((v + 1) * per).min(count);
        if first >= last {
            break;
        }
        let texts: String = SEED_TEXTS.iter().enumerate().map(|(k, t)| format!(" WHEN {k} THEN '{t}'")).collect();
        let sql = format!(
            "INSERT INTO tips (number, village_id, category, platform, source, anonymous, status, summary, \
             password_hash, created_at, updated_at, acknowledged_at, resolved_at) \
             WITH RECURSIVE n(i) AS (SELECT CAST({first} AS BIGINT) UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {last}) \
             SELECT 'T' || CAST(20250101 + i / 10000 AS TEXT) || '-' || substr(CAST(10000 + i % 10000 AS TEXT), 2, 4), \
             {village}, CASE i % 4 WHEN 0 THEN 'theft' WHEN 1 THEN 'fraud' WHEN 2 THEN 'dispute' ELSE 'hazard' END, \
             'telegram', 'private', 1, \
             CASE i % 8 WHEN 0 THEN 'new' WHEN 1 THEN 'acknowledged' WHEN 2 THEN 'rejected' \
             WHEN 3 THEN 'in_progress' ELSE 'resolved' END, \
             CASE i % 7{texts} END || '（' || CAST(i AS TEXT) || '）', 'seeded', \
             {now_ms} - i * {step}, {now_ms} - i * {step}, \
             CASE WHEN i % 8 = 0 THEN NULL ELSE {now_ms} - i * {step} + 600000 END, \
             CASE WHEN i % 8 IN (2, 4, 5, 6, 7) THEN {now_ms} - i * {step} + 86400000 END \
             FROM n"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(store.writer()).await.expect("seeding tips");
    }
}
