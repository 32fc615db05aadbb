//! The station desk at work on many tips (issue #23): the list a page at a time, its
//! counters, search (by number, by words, by a named tipster's phone — audited), sorting,
//! the overdue queue measured from arrival, bulk 签收 / 转派 / 办结, and closed tips answered
//! and reopened.

use std::time::Duration;

use reqwest::StatusCode;

use crate::app::TestApp;
use crate::app_test;
use crate::seed::{SEED_TEXTS, SEED_WORD, seed_tips};
use crate::tips::{QIANDIAN, submit_anonymous_tip, zhang};
use crate::web::{Client, Page, audit, console};

const DAY_MS: i64 = 86_400_000;
const YEAR_MS: i64 = 365 * DAY_MS;

/// The villages of 和庄派出所 (ids), in code order.
async fn station_villages(app: &TestApp) -> Vec<i64> {
    let station = app.store().station_id("HZPCS").await.unwrap();
    let mut villages: Vec<_> =
        app.store().all_villages().await.unwrap().into_iter().filter(|v| Some(v.station_id) == station).collect();
    villages.sort_by(|a, b| a.code.cmp(&b.code));
    villages.into_iter().map(|v| v.id).collect()
}

/// The tip numbers of the list on `page`, in order.
fn numbers(page: &Page) -> Vec<String> {
    page.body
        .split("class=\"pick\"")
        .skip(1)
        .filter_map(|row| {
            let at = row.find("<a href=\"/tips/")? + 15;
            Some(row[at..].split('"').next()?.to_string())
        })
        .collect()
}

/// The address of the link with `id` on `page`, if there is one.
fn link(page: &Page, id: &str) -> Option<String> {
    let end = page.body.find(&format!("\" id=\"{id}\""))?;
    let start = page.body[..end].rfind("href=\"")? + 6;
    Some(page.body[start..end].replace("&amp;", "&"))
}

/// The number in `<… id="ID">N</…>` (or `>label N<`) of the element with `id`.
fn count_of(page: &Page, id: &str) -> i64 {
    let at = page.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}: {}", page.body));
    let text = &page.body[at..];
    let text = &text[text.find('>').unwrap() + 1..text.find('<').unwrap()];
    text.split_whitespace().last().unwrap().parse().unwrap_or_else(|_| panic!("#{id} is {text:?}"))
}

/// Checks that the counters kept by triggers (`tip_status_counts`, read for a filter by place
/// only) agree with a count of the tips themselves (any other filter counts the rows).
async fn assert_kept_counts_agree(app: &TestApp) {
    use cunjing::store::tip_list::{Sla, TipFilter};
    let sla = Sla { ack_ms: 2 * 3_600_000, resolve_ms: 7 * DAY_MS };
    let place = TipFilter {
        station: Some("HZPCS".into()),
        clock: Some((chrono::Utc::now().timestamp_millis(), sla)),
        ..Default::default()
    };
    for only_overdue in [false, true] {
        let place = TipFilter { only_overdue, ..place.clone() };
        let counted = TipFilter { since_ms: Some(0), ..place.clone() };
        let (mut kept, mut real) =
            (app.store().count_tips(&place).await.unwrap(), app.store().count_tips(&counted).await.unwrap());
        kept.by_status.sort();
        real.by_status.sort();
        assert_eq!((kept.total, kept.overdue, kept.by_status), (real.total, real.overdue, real.by_status));
    }
}

/// A tip number the seed gives tip `i`.
fn seeded(i: usize) -> String {
    format!("T{}-{:04}", 20250101 + i / 10000, i % 10000)
}

app_test!(the_tips_list_comes_a_page_at_a_time_with_counters_search_and_sorting, |app| {
    let port = console(&mut app).await;
    let villages = station_villages(&app).await;
    let now = chrono::Utc::now().timestamp_millis();
    seed_tips(app.store(), &villages, 130, now, YEAR_MS).await;
    assert_kept_counts_agree(&app).await;
    let c = Client::logged_in(port, "neiqin").await;

    let first = c.get("/tips").await;
    assert_eq!(count_of(&first, "total"), 130);
    assert_eq!(numbers(&first).len(), 50, "a page of 50");
    assert_eq!(numbers(&first)[0], seeded(0), "newest first");
    assert!(first.body.contains("id=\"page-of\">第 1 / 3 页"), "{}", first.body);
    let last = c.get("/tips?page=3").await;
    assert_eq!(numbers(&last).len(), 30);
    assert_eq!(numbers(&c.get("/tips?page=99").await), numbers(&last), "past the end: the last page");
    assert_eq!(numbers(&c.get("/tips?page=abc").await), numbers(&first), "no number: the first page");
    let twenty = c.get("/tips?per=20&page=2").await;
    assert_eq!(numbers(&twenty).len(), 20);
    assert!(twenty.body.contains("第 2 / 7 页"), "{}", twenty.body);
    assert_eq!(numbers(&twenty)[0], seeded(20));
    assert_eq!(numbers(&c.get("/tips?per=33").await).len(), 50, "only the offered sizes");
    // Every tip is on exactly one page, by page number and by the pager's 下一页 (which starts
    // after the last tip shown) alike; 上一页 comes back to the same pages.
    let mut all: Vec<String> = vec![];
    for p in 1..=3 {
        all.extend(numbers(&c.get(&format!("/tips?page={p}")).await));
    }
    let (mut walked, mut page, mut seen) = (vec![], c.get("/tips").await, vec![]);
    loop {
        walked.extend(numbers(&page));
        seen.push(numbers(&page));
        let Some(next) = link(&page, "next") else { break };
        assert!(next.contains("after="), "{next}");
        page = c.get(&next).await;
    }
    assert_eq!(walked, all, "the same tips in the same order");
    let back = c.get(&link(&page, "prev").unwrap()).await;
    assert_eq!(numbers(&back), seen[1]);
    assert!(back.body.contains("第 2 / 3 页"));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 130);

    // The counters count by status and link to the list of that status.
    let expected_new = (0..130).filter(|i| i % 8 == 0).count() as i64;
    assert_eq!(count_of(&first, "count-new"), expected_new);
    assert!(first.body.contains("href=\"/tips?status=new\""), "{}", first.body);
    let new = c.get("/tips?status=new").await;
    assert_eq!(count_of(&new, "total"), expected_new);
    assert_eq!(count_of(&new, "count-resolved"), count_of(&first, "count-resolved"), "counters keep all statuses");

    // Search: a number as staff type it, words of the text, both narrowed by the filters.
    for typed in [seeded(42), "t20250101-42".to_string(), "20250101-0042".to_string()] {
        let found = c.get(&format!("/tips?q={typed}")).await;
        assert_eq!(numbers(&found), [seeded(42)], "{typed}");
    }
    let word = SEED_TEXTS.iter().position(|t| t.contains(SEED_WORD)).unwrap();
    let expected = (0..130).filter(|i| i % 7 == word).count() as i64;
    let q: String = url::form_urlencoded::byte_serialize(SEED_WORD.as_bytes()).collect();
    let found = c.get(&format!("/tips?q={q}")).await;
    assert_eq!(count_of(&found, "total"), expected);
    assert!(numbers(&found).iter().all(|n| {
        let i: usize = n.rsplit('-').next().unwrap().parse().unwrap();
        i % 7 == word
    }));
    let two_words: String = url::form_urlencoded::byte_serialize(format!("{SEED_WORD} 危险").as_bytes()).collect();
    assert_eq!(count_of(&c.get(&format!("/tips?q={two_words}")).await, "total"), expected, "every word");
    let nothing: String = url::form_urlencoded::byte_serialize(format!("{SEED_WORD} 电鱼").as_bytes()).collect();
    assert_eq!(count_of(&c.get(&format!("/tips?q={nothing}")).await, "total"), 0);
    assert_eq!(count_of(&c.get("/tips?q=100%25").await, "total"), 0, "a % is a character, not a wildcard");
    // The pager and the exports keep the search.
    let paged = c.get(&format!("/tips?q={q}&per=20")).await;
    assert!(paged.body.contains(&format!("href=\"/tips/export.csv?q={q}\"")), "{}", paged.body);

    // Sorting.
    let oldest = c.get("/tips?sort=oldest").await;
    assert_eq!(numbers(&oldest)[0], seeded(129));
    // The last page, read from the far end of the list, in the list's order all the same.
    let newest_last: Vec<String> = (0..30).rev().map(seeded).collect();
    assert_eq!(numbers(&c.get("/tips?sort=oldest&page=3").await), newest_last);
    let by_status = c.get("/tips?sort=status&per=100").await;
    let statuses: Vec<usize> = by_status
        .body
        .split("class=\"badge st-")
        .skip(1)
        .map(|s| {
            let code = s.split('"').next().unwrap();
            ["new", "acknowledged", "in_progress", "resolved", "rejected", "merged"]
                .iter()
                .position(|c| *c == code)
                .unwrap()
        })
        .collect();
    assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "lifecycle order: {statuses:?}");
    let overdue_first = c.get("/tips?sort=overdue").await;
    let overdue = count_of(&overdue_first, "count-overdue");
    assert!(overdue > 0);
    let rows: Vec<&str> = overdue_first.body.split("<tr class=\"").skip(1).collect();
    let late = rows.iter().take_while(|r| r.starts_with("overdue")).count() as i64;
    assert_eq!(late, overdue.min(50), "the overdue ones first");
});

app_test!(an_overdue_tip_stays_in_the_overdue_queue_however_often_it_is_escalated, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = crate::fake_telegram::TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    let port = console(&mut app).await;
    let (chat, number, _card) = submit_anonymous_tip(&app, "村委会门口的监控坏了").await;
    // A session ends after 30 idle minutes: each look at the desk after the clock moved on
    // logs in afresh.
    let queue = || async { Client::logged_in(port, "neiqin").await.get("/tips?overdue=1").await };
    assert_eq!(count_of(&queue().await, "total"), 0, "just arrived");
    let c = Client::logged_in(port, "neiqin").await;
    assert!(c.get("/tips").await.body.contains("收到后 2 小时内未受理，或 7 天内未办结"), "the times are on the page");

    // Two hours on, the escalation hands it to the contact officer and sets a new deadline;
    // it is overdue all the same: it arrived more than two hours ago and nobody took it.
    let mark = app.fake.mark();
    app.advance(Duration::from_secs(121 * 60));
    app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    let core_now = chrono::Utc::now().timestamp_millis() + 121 * 60_000;
    assert!(tip.ack_deadline.unwrap() > core_now, "the escalation set a new deadline");
    let late = queue().await;
    assert_eq!(numbers(&late), std::slice::from_ref(&number), "{}", late.body);
    let c = Client::logged_in(port, "neiqin").await;
    assert_eq!(count_of(&c.get("/tips").await, "count-overdue"), 1);
    let page = c.get(&format!("/tips/{number}")).await;
    assert!(page.body.contains("超时"), "{}", page.body);

    // 签收 at the desk: acknowledged, so no longer overdue; the tipster hears it.
    let mark = app.fake.mark();
    let signed = c.post(&format!("/tips/{number}/sign"), &[("csrf", &page.csrf())]).await;
    assert_eq!(signed.location, format!("/tips/{number}?ok=sign"), "{}", signed.body);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains("受理") && told.text.contains(&number), "{}", told.text);
    assert_eq!(count_of(&queue().await, "total"), 0);
    let again = c.post(&format!("/tips/{number}/sign"), &[("csrf", &page.csrf())]).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(again.body.contains("id=\"sign-error\">这条线索已经受理"), "{}", again.body);
    // Not resolved within 7 days of arriving: overdue again.
    app.advance(Duration::from_secs(7 * 86_400));
    assert_eq!(numbers(&queue().await), [number]);
});

app_test!(bulk_sign_assign_and_close_say_what_happened_to_each_tip, |app| {
    let port = console(&mut app).await;
    let villages = station_villages(&app).await;
    let qiandian = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap().id;
    let now = chrono::Utc::now().timestamp_millis();
    // Tips 0..16 in 前店村; 0 and 8 are new, 2 rejected, 3 in progress.
    seed_tips(app.store(), &[qiandian], 16, now, DAY_MS).await;
    let other = *villages.iter().find(|v| **v != qiandian && **v > qiandian).unwrap();
    let c = Client::logged_in(port, "neiqin").await;
    let list = c.get("/tips").await;
    let csrf = list.csrf();
    let post = |fields: Vec<(&'static str, String)>| {
        let c = &c;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.post("/tips/bulk", &fields).await
        }
    };
    let status = |n: usize| {
        let app = &app;
        async move { app.store().tip_by_number(&seeded(n)).await.unwrap().unwrap() }
    };

    let nothing = post(vec![("csrf", csrf.clone()), ("action", "sign".into())]).await;
    assert!(nothing.body.contains("id=\"bulk-error\">请先勾选线索"), "{}", nothing.body);
    let forged = post(vec![("csrf", "0".repeat(64)), ("action", "sign".into()), ("number", seeded(0))]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(status(0).await.status, "new");

    let signed = post(vec![
        ("csrf", csrf.clone()),
        ("action", "sign".into()),
        ("number", seeded(0)),
        ("number", seeded(8)),
        ("number", seeded(2)),
        ("back", "status=new".into()),
    ])
    .await;
    assert!(signed.body.contains("批量签收：成功 2 条，未办 1 条"), "{}", signed.body);
    assert!(signed.body.contains(&format!("{}</a>：这条线索已经受理、办结或合并", seeded(2))), "{}", signed.body);
    assert_eq!(count_of(&signed, "total"), 0, "the list it came from, filtered as it was");
    assert_eq!((status(0).await.status.as_str(), status(8).await.status.as_str()), ("acknowledged", "acknowledged"));

    // 转派 to 张建国: he serves 前店村; a tip of another village stays with its own officers.
    sqlx::query("UPDATE tips SET village_id = $1 WHERE number = $2")
        .bind(other)
        .bind(seeded(3))
        .execute(app.store().writer())
        .await
        .unwrap();
    let assigned = post(vec![
        ("csrf", csrf.clone()),
        ("action", "assign".into()),
        ("badge", "041201".into()),
        ("number", seeded(0)),
        ("number", seeded(3)),
    ])
    .await;
    assert!(assigned.body.contains("批量转派：成功 1 条，未办 1 条"), "{}", assigned.body);
    assert!(assigned.body.contains("请选择负责本村（格）的民警"), "{}", assigned.body);
    let zhang_id = app.store().officer_by_badge("041201").await.unwrap().unwrap().id;
    assert_eq!(status(0).await.assigned_officer_id, Some(zhang_id));

    // 办结 needs a note, which every tipster sees.
    let bare = post(vec![("csrf", csrf.clone()), ("action", "close".into()), ("number", seeded(0))]).await;
    assert!(bare.body.contains("id=\"bulk-error\""), "{}", bare.body);
    assert_eq!(status(0).await.status, "acknowledged");
    let closed = post(vec![
        ("csrf", csrf.clone()),
        ("action", "close".into()),
        ("note", "已到现场处理".into()),
        ("number", seeded(0)),
        ("number", seeded(8)),
    ])
    .await;
    assert!(closed.body.contains("批量办结：成功 2 条"), "{}", closed.body);
    let done = status(8).await;
    assert_eq!((done.status.as_str(), done.public_note.as_deref()), ("resolved", Some("已到现场处理")));
    let audit = audit(&app).await;
    let line = format!("web:neiqin resolve tip:{} allowed", seeded(8));
    assert!(audit.contains(&line), "each tip is authorised and audited: {audit:#?}");

    // Someone of another station ticks this station's tips: nothing happens to them.
    let outsider = Client::logged_in(port, "waisuo").await;
    let page = outsider.get("/tips").await;
    let refused =
        outsider.post("/tips/bulk", &[("csrf", &page.csrf()), ("action", "sign"), ("number", &seeded(1))]).await;
    assert!(refused.body.contains("无权操作这条线索"), "{}", refused.body);
    assert_eq!(status(1).await.status, "acknowledged", "tip 1 was seeded acknowledged and stays so");
    assert_kept_counts_agree(&app).await;
});

app_test!(a_named_tipsters_phone_finds_their_tips_and_the_search_is_audited_without_the_number, |app| {
    let port = console(&mut app).await;
    let qiandian = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap().id;
    let tip = |phone: Option<&str>, text: &str| cunjing::store::tips::NewTip {
        village_id: qiandian,
        reported_village_id: None,
        category: "fraud".into(),
        source: cunjing::domain::TipSource::Private,
        anonymous: phone.is_none(),
        contact_phone: phone.map(str::to_string),
        items: vec![cunjing::store::tips::TipItem::Text { text: text.into() }],
        reporter_platform: "telegram".into(),
        reporter_chat_id: 987_654_321,
        day: "20261201".into(),
    };
    let named = app.store().create_tip(&tip(Some("13903710121"), "有人冒充客服")).await.unwrap();
    let anonymous = app.store().create_tip(&tip(None, "有人冒充客服打电话")).await.unwrap();
    let c = Client::logged_in(port, "neiqin").await;
    let found = c.get("/tips?q=139+0371+0121").await;
    assert_eq!(numbers(&found), std::slice::from_ref(&named.number), "{}", found.body);
    assert_eq!(count_of(&c.get("/tips?q=13903710122").await, "total"), 0, "another number finds nothing");
    let audit = audit(&app).await;
    assert!(audit.contains(&"web:neiqin view_contact tips search:phone allowed".to_string()), "{audit:#?}");
    assert!(audit.iter().all(|l| !l.contains("0371")), "the number itself is not in the log");
    let words = c.get("/tips?q=冒充客服").await;
    assert_eq!(numbers(&words).len(), 2, "{}", words.body);
    assert!(numbers(&words).contains(&anonymous.number));

    // Rows written before the index existed get it at the next start.
    sqlx::query("UPDATE tips SET phone_index = NULL").execute(app.store().writer()).await.unwrap();
    assert_eq!(count_of(&c.get("/tips?q=13903710121").await, "total"), 0);
    app.store().seal_contacts().await.unwrap();
    assert_eq!(numbers(&c.get("/tips?q=13903710121").await), [named.number]);
});

app_test!(a_closed_tip_can_still_be_answered_and_reopened_for_a_reason, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (chat, number, _card) = submit_anonymous_tip(&app, "有人偷了村里的变压器电缆").await;
    let c = Client::logged_in(port, "neiqin").await;
    let page = c.get(&format!("/tips/{number}")).await;
    let csrf = page.csrf();
    let path = |a: &str| format!("/tips/{number}/{a}");
    let not_closed = c.post(&path("reopen"), &[("csrf", &csrf), ("note", "再查")]).await;
    assert!(not_closed.body.contains("id=\"reopen-error\">这条线索没有办结"), "{}", not_closed.body);
    c.post(&path("status"), &[("csrf", &csrf), ("status", "resolved"), ("note", "电缆已追回")]).await;
    let closed = c.get(&format!("/tips/{number}")).await;
    assert!(closed.body.contains("id=\"reply-text\"") && closed.body.contains("id=\"reopen\""), "{}", closed.body);
    assert!(!closed.body.contains("id=\"set-status\""), "no status menu on a closed tip");

    let mark = app.fake.mark();
    let replied = c.post(&path("reply"), &[("csrf", &csrf), ("text", "嫌疑人已抓获，谢谢您。")]).await;
    assert_eq!(replied.location, format!("/tips/{number}?ok=reply"), "{}", replied.body);
    let relayed = app.fake.wait_for_new(mark, |m| m.chat_id == chat && m.text.contains("嫌疑人已抓获")).await;
    assert!(relayed.text.contains(&number), "{}", relayed.text);

    let no_reason = c.post(&path("reopen"), &[("csrf", &csrf), ("note", " ")]).await;
    assert!(no_reason.body.contains("id=\"reopen-error\">请写明重新办理的原因"), "{}", no_reason.body);
    let reopened = c.post(&path("reopen"), &[("csrf", &csrf), ("note", "群众反映电缆又被偷")]).await;
    assert_eq!(reopened.location, format!("/tips/{number}?ok=reopen"), "{}", reopened.body);
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!((tip.status.as_str(), tip.resolved_at), ("in_progress", None));
    let page = c.get(&format!("/tips/{number}")).await;
    assert!(page.body.contains("重新办理（内勤 张丽）：群众反映电缆又被偷"), "{}", page.body);
    assert!(page.body.contains("id=\"set-status\""), "open again: the status menu is back");
    assert_kept_counts_agree(&app).await;
    // Closing, answering, the refused and the done reopening: each authorised and audited.
    let audit = audit(&app).await;
    let line = format!("web:neiqin resolve tip:{number} allowed");
    assert_eq!(audit.iter().filter(|l| **l == line).count(), 4, "{audit:#?}");
    let outsider = Client::logged_in(port, "waisuo").await;
    let refused = outsider.post(&path("reopen"), &[("csrf", &outsider.get("/tips").await.csrf()), ("note", "x")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
});

// ----- places on the desk (issue #24) -----

const HEZHUANG: &str = "410184101201";
/// The example registry's grid 006 (和庄社区第六网格).
const GRID_6: &str = "410184101006";

/// Adds a location item (WGS-84 degrees) to tip `number`, as a pin sent with it.
pub async fn add_location(app: &TestApp, number: &str, lat: f64, lon: f64) {
    let tip = app.store().tip_by_number(number).await.unwrap().unwrap();
    sqlx::query(
        "INSERT INTO tip_items (tip_id, position, kind, latitude_e6, longitude_e6) VALUES ($1, 9, 'location', $2, $3)",
    )
    .bind(tip.id)
    .bind((lat * 1e6).round() as i64)
    .bind((lon * 1e6).round() as i64)
    .execute(app.store().pool())
    .await
    .unwrap();
}

/// The element `<g class="region CLASS" data-code="CODE">` of a map on `page`, up to its end.
fn region<'p>(page: &'p Page, code: &str) -> Option<(&'p str, &'p str)> {
    let at = page.body.find(&format!("data-code=\"{code}\""))?;
    let start = page.body[..at].rfind("<g class=\"region ")? + 17;
    let class = &page.body[start..at - 2];
    let rest = &page.body[at..];
    Some((class, &rest[..rest.find("</g>")?]))
}

app_test!(a_tip_shows_its_area_and_where_it_was_reported_and_a_map_with_its_neighbours_and_its_point, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, _) = submit_anonymous_tip(&app, "路口的井盖丢了").await;
    let (_chat, plain, _) = submit_anonymous_tip(&app, "有人在河边电鱼").await;
    // The tip's pin lies in 前店村 (2–4 km east, 1 km north of the station's corner); it was
    // sent from 和庄村's group, so 前店村 is responsible and 和庄村 is where it was reported.
    add_location(&app, &number, 34.489044, 113.732693).await;
    let store = app.store();
    let tip = store.tip_by_number(&number).await.unwrap().unwrap();
    let hezhuang = store.village_by_code(HEZHUANG).await.unwrap().unwrap();
    sqlx::query("UPDATE tips SET reported_village_id = $1 WHERE id = $2")
        .bind(hezhuang.id)
        .bind(tip.id)
        .execute(store.pool())
        .await
        .unwrap();

    let c = Client::logged_in(port, "neiqin").await;
    let page = c.get(&format!("/tips/{number}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("id=\"area\">前店村<") && page.body.contains("id=\"reported\">报告于 和庄村<"),
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"tip-map\"><svg"), "the map is drawn in the page: {}", page.body);
    let (class, area) = region(&page, QIANDIAN).expect("the tip's area is drawn");
    assert_eq!(class, "area");
    assert!(area.contains("<title>前店村</title>"), "{area}");
    assert!(page.body.contains(">前店村</text>"), "the area is named on the map: {}", page.body);
    // Its neighbours, lighter, named, each a link to its tips.
    let (class, _) = region(&page, HEZHUANG).expect("和庄村 borders 前店村");
    assert_eq!(class, "near");
    assert!(page.body.contains(&format!("<a href=\"/tips?village={HEZHUANG}\">")), "{}", page.body);
    assert!(page.body.contains("<g class=\"point\"><title>线索位置</title><circle"), "{}", page.body);
    assert!(!page.body.contains(" style="), "the Content-Security-Policy allows no inline style");
    // The list says both; a tip without a location has a map of its area without a point.
    let list = c.get("/tips").await;
    assert!(list.body.contains("前店村<br><span class=\"muted reported\">报告于 和庄村</span>"), "{}", list.body);
    let page = c.get(&format!("/tips/{plain}")).await;
    assert!(page.body.contains("id=\"tip-map\"") && !page.body.contains("class=\"point\""), "{}", page.body);
    assert!(!page.body.contains("id=\"reported\""), "{}", page.body);
    let print = c.get(&format!("/tips/{number}/print")).await;
    assert!(print.body.contains("前店村（报告于 和庄村）") && print.body.contains("<svg"), "{}", print.body);
    // Without areas the page is as before.
    sqlx::query("DELETE FROM areas").execute(store.pool()).await.unwrap();
    let page = c.get(&format!("/tips/{number}")).await;
    assert!(page.status == StatusCode::OK && !page.body.contains("<svg"), "{}", page.body);
});

app_test!(the_registry_map_shows_an_area_left_without_an_officer_on_duty_as_a_gap, |app| {
    let port = console(&mut app).await;
    // Both assignments of grid 6 ended: nobody serves it today.
    let dir = crate::app::example_registry_with(&[
        (
            "assignments.csv",
            "410184101006,041206,resident,2024-06-01,\n",
            "410184101006,041206,resident,2024-06-01,2025-06-01\n",
        ),
        (
            "assignments.csv",
            "410184101006,F04124,auxiliary,2024-06-01,\n",
            "410184101006,F04124,auxiliary,2024-06-01,2025-06-01\n",
        ),
    ]);
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    cunjing::registry::import_dir(app.store(), dir.path(), today).await.unwrap();
    let xigang = app.store().village_by_code("410184101206").await.unwrap().unwrap();
    sqlx::query("DELETE FROM areas WHERE village_id = $1").bind(xigang.id).execute(app.store().pool()).await.unwrap();

    let c = Client::logged_in(port, "neiqin").await;
    let page = c.get("/registry").await;
    assert!(page.body.contains("id=\"coverage-map\"><svg"), "{}", page.body);
    let (class, grid) = region(&page, GRID_6).expect("grid 6 is drawn");
    assert_eq!(class, "gap", "{grid}");
    assert!(grid.contains("和庄社区第六网格 缺口：今天没有在岗民警"), "the tooltip says why: {grid}");
    assert_eq!(region(&page, HEZHUANG).map(|(class, _)| class), Some("covered"));
    assert!(page.body.contains("id=\"map-gaps\">1</strong> 个：和庄社区第六网格）"), "{}", page.body);
    assert!(page.body.contains("今天无在岗民警"), "the table says it too: {}", page.body);
    // A village without an area is listed under the map, and not drawn.
    assert!(region(&page, "410184101206").is_none());
    let at = page.body.find("id=\"without-area\"").expect("the villages without an area are listed");
    assert!(page.body[at..].contains("西岗村（410184101206）"), "{}", page.body);
    // Another station's staff see none of this station's areas.
    let outsider = Client::logged_in(port, "waisuo").await;
    let theirs = outsider.get("/registry").await;
    assert!(!theirs.body.contains("data-code=") && !theirs.body.contains("和庄"), "{}", theirs.body);
});

app_test!(the_figures_count_the_months_tips_per_area_and_those_that_came_from_elsewhere, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_, first, _) = submit_anonymous_tip(&app, "有人在村口乱倒垃圾").await;
    submit_anonymous_tip(&app, "又有人在村口乱倒垃圾").await;
    // The first was sent from 和庄村's group with a pin in 前店村.
    let store = app.store();
    let hezhuang = store.village_by_code(HEZHUANG).await.unwrap().unwrap();
    sqlx::query("UPDATE tips SET reported_village_id = $1 WHERE number = $2")
        .bind(hezhuang.id)
        .bind(&first)
        .execute(store.pool())
        .await
        .unwrap();
    let c = Client::logged_in(port, "neiqin").await;
    let page = c.get("/figures").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let row = format!("<tr><td><a href=\"/tips?village={QIANDIAN}\">前店村</a></td><td>2</td><td>1</td></tr>");
    assert!(page.body.contains(&row), "{}", page.body);
    let table = &page.body[page.body.find("id=\"area-figures\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(!table.contains("和庄村"), "the tip is not counted where it was reported: {table}");
    assert!(page.body.contains("id=\"tips-map\"><svg"), "{}", page.body);
    assert_eq!(region(&page, QIANDIAN).map(|(class, _)| class), Some("heat-4"));
    assert_eq!(region(&page, HEZHUANG).map(|(class, _)| class), Some("heat-0"));
    assert!(region(&page, QIANDIAN).unwrap().1.contains("<title>前店村（2）</title>"), "{}", page.body);
});
