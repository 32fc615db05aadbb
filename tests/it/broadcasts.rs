//! Broadcasts: officers compose warnings with buttons; every bound group gets them once,
//! through Telegram's failures; the ledger adds up; cancel takes messages back; the
//! scheduler runs its notices once; CAP 1.2 in and out; WeCom robots.

use std::time::Duration;

use cunjing::core::broadcast::Request;
use cunjing::domain::{BroadcastKind, Severity};
use cunjing::store::broadcasts::Target;

use crate::app::{TestApp, press};
use crate::app_test;
use crate::fake_telegram::{Fault, TgUser, buttons};

const HEZHUANG: &str = "410184101201";
const QIANDIAN: &str = "410184101202";
const HOUDIAN: &str = "410184101203";

/// Binds a (fake) supergroup to a village, as `/bind` would.
async fn bind(app: &TestApp, chat_id: i64, village: &str) {
    let title = format!("群{chat_id}");
    app.fake.group(chat_id, &title, true);
    let v = app.store().village_by_code(village).await.unwrap().expect("example village");
    app.store().bind_chat_to_village("telegram", chat_id, &title, v.id, None).await.unwrap();
}

/// Waits until broadcast `id` has no pending or in-flight target; returns its counts.
async fn settled(app: &TestApp, id: i64) -> cunjing::store::broadcasts::Counts {
    loop {
        let c = app.store().broadcast_counts(id).await.unwrap();
        if c.pending == 0 && c.sending == 0 {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn core(app: &TestApp) -> cunjing::core::Core {
    cunjing::daemon::build_core(&app.settings, app.store().clone(), std::sync::Arc::new(chrono::Utc::now)).unwrap()
}

app_test!(an_officer_composes_a_warning_with_buttons_and_each_of_their_groups_gets_it_once, |app| {
    let officer = TgUser::new(7001, "张建国");
    app.enrol("041201", &officer).await;
    bind(&app, -100_101, HEZHUANG).await;
    bind(&app, -100_102, QIANDIAN).await;
    bind(&app, -100_103, HOUDIAN).await; // not one of 张建国's villages
    app.store().set_bot_admin("telegram", -100_101, true).await.unwrap();
    let dm = app.fake.private_chat(officer.clone());

    let targets = app.ask(dm, &officer, "/alert").await;
    assert!(targets.text.contains("治安预警"), "{}", targets.text);
    let severity = press(&app, dm, &officer, &targets, "我负责的全部村").await;
    assert!(severity.text.contains("全部村（2 个）"), "{}", severity.text);
    let ask_text = press(&app, dm, &officer, &severity, "紧急").await;
    assert!(ask_text.text.contains("预警内容"), "{}", ask_text.text);
    let preview = app.ask(dm, &officer, "近期有人冒充快递客服让退款，千万不要点陌生链接。").await;
    assert!(preview.text.contains("共 2 个群") && preview.text.contains("冒充快递客服"), "{}", preview.text);
    let queued = press(&app, dm, &officer, &preview, "确认发送").await;
    assert!(queued.text.contains("已开始发送"), "{}", queued.text);

    let report = app.fake.wait_for_sent(|m| m.chat_id == dm && m.text.contains("发送完毕")).await;
    assert!(report.text.contains("已送达 2 / 2，失败 0"), "{}", report.text);
    let in_group = app.fake.sent_to(-100_101);
    assert_eq!(in_group.len(), 1, "one message per group");
    assert!(in_group[0].text.contains("🔴 治安预警") && in_group[0].text.contains("张建国"), "{}", in_group[0].text);
    assert_eq!(app.fake.sent_to(-100_102).len(), 1);
    assert!(app.fake.sent_to(-100_103).is_empty(), "a village the officer does not serve gets nothing");
    let pins = app.fake.calls("pinChatMessage");
    assert_eq!(pins.len(), 1, "pinned only where the bot is admin: {pins:?}");
    assert_eq!(pins[0]["chat_id"], -100_101);

    // Residents press 收到; a second press by the same person is not counted.
    let warning = &in_group[0];
    let (_, ack) = buttons(warning).into_iter().find(|(l, _)| l.contains("收到")).expect("收到 button");
    let resident = TgUser::new(8101, "村民甲");
    for _ in 0..2 {
        let n = app.fake.call_count("answerCallbackQuery");
        app.fake.press_button(-100_101, &resident, warning.message_id, &ack);
        app.fake.wait_for_calls("answerCallbackQuery", n + 1).await;
    }
    let answers: Vec<String> =
        app.fake.calls("answerCallbackQuery").iter().filter_map(|c| c["text"].as_str().map(str::to_string)).collect();
    assert_eq!(answers, ["已收到，谢谢！", "您已经点过收到了。"]);
    let ledger = press(&app, dm, &officer, &report, "各群情况").await;
    assert!(ledger.text.contains("和庄村：已送达，1 人收到"), "{}", ledger.text);
    assert!(ledger.text.contains("前店村：已送达") && !ledger.text.contains("前店村：已送达，"), "{}", ledger.text);
});

app_test!(a_resident_may_not_publish_a_warning, |app| {
    let resident = TgUser::new(8201, "村民乙");
    let dm = app.fake.private_chat(resident.clone());
    let answer = app.ask(dm, &resident, "/alert").await;
    assert!(answer.text.contains("只有负责本村"), "{}", answer.text);
    assert!(buttons(&answer).is_empty());
});

app_test!(a_broadcast_reaches_every_group_through_flood_control_errors_kicks_and_migrations, |app| {
    let groups: Vec<i64> = (1..=8).map(|n| -100_200 - n).collect();
    for g in &groups {
        bind(&app, *g, HEZHUANG).await;
    }
    // Stale state the daemon never heard about: one group kicked the bot, one became a
    // supergroup under a new id.
    app.fake.kick_silently(groups[0]);
    app.fake.migrate_silently(groups[1], -100_299);
    // And Telegram has a bad moment: flood control, then a server error.
    app.fake.fail_next("sendMessage", Fault::RetryAfter(1), 1);
    app.fake.fail_next("sendMessage", Fault::ServerError, 2);

    let mut req = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "今晚八点停水检修。",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    req.event = Some("警务通知".into());
    let created = core(&app).create_broadcast(req).await.unwrap();
    assert_eq!(created.targets, 8);
    let c = settled(&app, created.id).await;
    assert_eq!((c.sent, c.lost, c.failed), (7, 1, 0), "{c:?}");
    assert_eq!(c.targets, c.sent + c.lost + c.failed + c.expired + c.cancelled, "totals equal targets");
    assert!(app.fake.faults_served() >= 3, "the faults were met and got over");
    for g in &groups[2..] {
        assert_eq!(app.fake.sent_to(*g).len(), 1, "group {g} got it exactly once");
    }
    assert_eq!(app.fake.sent_to(-100_299).len(), 1, "the migrated group got it at its new id");
    let chat = app.store().chat("telegram", -100_299).await.unwrap().expect("binding moved");
    assert!(chat.village_id.is_some());
    let kicked = app.store().chat("telegram", groups[0]).await.unwrap().unwrap();
    assert!(!kicked.active, "a kicked group is marked lost");
    let ledger = app.store().broadcast_ledger(created.id).await.unwrap();
    let lost = ledger.iter().find(|r| r.state == "lost").unwrap();
    assert!(lost.detail.as_deref().unwrap_or("").contains("kicked"), "{lost:?}");
    assert!(!lost.detail.as_deref().unwrap_or("").contains(crate::fake_telegram::TOKEN));
});

app_test!(a_send_that_keeps_failing_is_recorded_as_failed_after_the_last_attempt, |app| {
    bind(&app, -100_301, HEZHUANG).await;
    app.fake.fail_next("sendMessage", Fault::ServerError, 50);
    let req =
        Request::new(BroadcastKind::Notice, Severity::Normal, "测试", vec![Target::Village(HEZHUANG.into())], "CLI");
    let created = core(&app).create_broadcast(req).await.unwrap();
    let c = settled(&app, created.id).await;
    assert_eq!((c.sent, c.failed), (0, 1));
    let row = &app.store().broadcast_ledger(created.id).await.unwrap()[0];
    assert_eq!(row.attempts, app.settings.file.broadcast.max_attempts);
});

app_test!(cancelling_a_broadcast_deletes_what_was_sent_and_sends_nothing_more, |app| {
    bind(&app, -100_401, HEZHUANG).await;
    bind(&app, -100_402, QIANDIAN).await;
    let core = core(&app);
    let req = Request::new(
        BroadcastKind::Warning,
        Severity::Important,
        "有人冒充民警上门",
        vec![Target::Office("HZ01".into())],
        "CLI",
    );
    let created = core.create_broadcast(req).await.unwrap();
    settled(&app, created.id).await;
    let sent: Vec<_> = [-100_401, -100_402].iter().map(|g| app.fake.sent_to(*g)[0].clone()).collect();
    assert!(core.cancel_broadcast(created.id).await.unwrap());
    assert!(!core.cancel_broadcast(created.id).await.unwrap(), "a second cancel changes nothing");
    // The worker records each retraction once Telegram has answered the delete.
    loop {
        let ledger = app.store().broadcast_ledger(created.id).await.unwrap();
        if ledger.iter().all(|r| r.retract.as_deref() == Some("deleted")) {
            break;
        }
        assert!(!ledger.iter().any(|r| r.retract.as_deref() == Some("failed")), "{ledger:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.fake.call_count("deleteMessage"), 2);
    for m in &sent {
        assert!(!app.fake.message_exists(m.chat_id, m.message_id), "message in {} deleted", m.chat_id);
    }
    // A scheduled broadcast cancelled before its time never goes out.
    let mut later = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "明天开会",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    later.send_at = Some(chrono::Utc::now().timestamp_millis() + 3_600_000);
    let later = core.create_broadcast(later).await.unwrap();
    core.cancel_broadcast(later.id).await.unwrap();
    let c = app.store().broadcast_counts(later.id).await.unwrap();
    assert_eq!((c.targets, c.cancelled), (1, 1));
    assert_eq!(app.fake.sent_to(-100_401).len(), 1);
});

app_test!(a_correction_replies_to_the_original_in_every_group_it_reached, |app| {
    bind(&app, -100_501, HEZHUANG).await;
    let core = core(&app);
    let req = Request::new(
        BroadcastKind::Warning,
        Severity::Normal,
        "周六停电",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    let first = core.create_broadcast(req).await.unwrap();
    settled(&app, first.id).await;
    let original = app.fake.sent_to(-100_501)[0].clone();
    let mut fix = Request::new(BroadcastKind::Warning, Severity::Normal, "更正：周日停电", vec![], "CLI");
    fix.references_id = Some(first.id);
    let second = core.create_broadcast(fix).await.unwrap();
    assert_eq!(second.targets, 1);
    settled(&app, second.id).await;
    let correction = app.fake.sent_to(-100_501)[1].clone();
    assert!(correction.text.contains("【更正】"), "{}", correction.text);
    assert_eq!(correction.body["reply_parameters"]["message_id"], original.message_id);
});

app_test!(an_expired_broadcast_is_not_sent_and_says_so_in_the_ledger, |app| {
    bind(&app, -100_601, HEZHUANG).await;
    let mut req = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "过期的通知",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    let now = chrono::Utc::now().timestamp_millis();
    req.send_at = Some(now + 60_000);
    req.expires_at = Some(now + 120_000);
    let created = core(&app).create_broadcast(req).await.unwrap();
    app.advance(Duration::from_secs(180)); // the daemon's clock is past the expiry
    let c = settled(&app, created.id).await;
    assert_eq!((c.expired, c.sent), (1, 0));
    assert!(app.fake.sent_to(-100_601).is_empty());
});

app_test!(a_scheduled_notice_runs_once_at_its_time_even_across_a_restart, |app| {
    bind(&app, -100_701, HEZHUANG).await;
    // Move the daemon's clock to 09:00:30 Shanghai time on the next 1st of a month.
    use chrono::{Datelike, TimeZone};
    let tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now().with_timezone(&tz);
    let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    let target = tz.with_ymd_and_hms(y, m, 1, 9, 0, 30).unwrap();
    let ahead = (target.timestamp_millis() - chrono::Utc::now().timestamp_millis()) as u64;
    app.advance(Duration::from_millis(ahead));
    let notice = app.fake.wait_for_sent(|m| m.chat_id == -100_701 && m.text.contains("防骗")).await;
    assert!(notice.text.contains("96110"), "{}", notice.text);
    app.advance(Duration::from_secs(60));
    app.restart().await;
    app.advance(Duration::from_secs(60));
    // The summary job runs at the same time: wait for its run record, then check no second notice.
    loop {
        if app.store().schedule_runs("builtin.monthly_summary").await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = app.store().schedule_runs("anti-fraud-monthly").await.unwrap();
    assert_eq!(runs, [target.timestamp_millis() - 30_000], "one run, at 09:00 Shanghai");
    let all = app.store().recent_broadcasts(None, 10).await.unwrap();
    assert_eq!(all.iter().filter(|b| b.text.contains("防骗")).count(), 1);
    assert_eq!(app.fake.sent_to(-100_701).iter().filter(|m| m.text.contains("防骗")).count(), 1);
});

/// The next 25th at `hour`:00:`sec` Shanghai time that is still ahead.
fn next_25th(hour: u32, sec: u32) -> chrono::DateTime<chrono_tz::Tz> {
    use chrono::{Datelike, TimeZone};
    let tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now().with_timezone(&tz);
    let (y, m) = if now.day() >= 24 {
        if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) }
    } else {
        (now.year(), now.month())
    };
    tz.with_ymd_and_hms(y, m, 25, hour, 0, sec).unwrap()
}

app_test!(officers_without_a_warning_this_month_are_reminded_on_the_25th, |app| {
    let zhang = TgUser::new(7101, "张建国");
    app.enrol("041201", &zhang).await;
    let li = TgUser::new(7102, "李卫东");
    app.enrol("041202", &li).await;
    let li_dm = app.fake.private_chat(li.clone());
    let zhang_dm = app.fake.private_chat(zhang.clone());
    // 09:00 on the 25th: 张建国 publishes a warning to each of his villages.
    let morning = next_25th(9, 0);
    let zhang_row = app.store().officer_by_badge("041201").await.unwrap().unwrap();
    let day = morning.date_naive().to_string();
    let villages: Vec<Target> = app
        .store()
        .officer_villages(zhang_row.id, &day)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, _, role)| role != "volunteer")
        .map(|(code, _, _)| Target::Village(code))
        .collect();
    assert!(!villages.is_empty());
    let mut req = Request::new(BroadcastKind::Warning, Severity::Normal, "注意防盗", villages, "");
    req.sender = Some(zhang_row);
    let at_morning = std::sync::Arc::new(move || morning.with_timezone(&chrono::Utc));
    let core = cunjing::daemon::build_core(&app.settings, app.store().clone(), at_morning).unwrap();
    core.create_broadcast(req).await.unwrap();
    // 10:00:05: the reminder job has run.
    let reminder_time = next_25th(10, 5);
    app.advance(Duration::from_millis(
        (reminder_time.timestamp_millis() - chrono::Utc::now().timestamp_millis()) as u64,
    ));
    let reminder = app.fake.wait_for_sent(|m| m.chat_id == li_dm && m.text.contains("还没有发布治安预警")).await;
    assert!(reminder.text.contains("后店村") && reminder.text.contains("王庄村"), "{}", reminder.text);
    assert!(reminder.text.contains("/alert"), "{}", reminder.text);
    // The month's figures count 张建国's warning and none for 李卫东.
    let month = morning.format("%Y-%m").to_string();
    let (from, to) = cunjing::calendar::month_bounds(chrono_tz::Asia::Shanghai, &month).unwrap();
    let figures = app.store().officer_figures(from, to, None).await.unwrap();
    let warnings = |badge: &str| figures.iter().find(|f| f.badge == badge).unwrap().warnings;
    assert_eq!((warnings("041201"), warnings("041202")), (1, 0));
    // Reminders go out in badge order, so 张建国's (041201) would have come before 李卫东's.
    assert!(
        !app.fake.sent_to(zhang_dm).iter().any(|m| m.text.contains("还没有发布治安预警")),
        "an officer who published to every village is not reminded"
    );
});

/// A fake WeCom robot endpoint: records posted bodies; the key `gone` answers 93000.
async fn fake_wecom() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>) {
    use axum::extract::{Query, State};
    type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;
    let posts: Posts = Default::default();
    async fn send(
        State(posts): State<Posts>,
        Query(q): Query<std::collections::HashMap<String, String>>,
        axum::Json(body): axum::Json<serde_json::Value>,
    ) -> axum::Json<serde_json::Value> {
        let key = q.get("key").cloned().unwrap_or_default();
        posts.lock().unwrap().push((key.clone(), body));
        if key == "gone" {
            axum::Json(serde_json::json!({"errcode": 93000, "errmsg": "invalid webhook url"}))
        } else {
            axum::Json(serde_json::json!({"errcode": 0, "errmsg": "ok"}))
        }
    }
    let app = axum::Router::new().route("/cgi-bin/webhook/send", axum::routing::post(send)).with_state(posts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/cgi-bin/webhook/send"), posts)
}

app_test!(warnings_are_also_posted_to_the_wecom_robots_of_villages_and_offices, |app| {
    let (url, posts) = fake_wecom().await;
    bind(&app, -100_801, HEZHUANG).await;
    app.store().set_village_wecom(HEZHUANG, Some(&format!("{url}?key=village"))).await.unwrap();
    app.store().set_office_wecom("HZ01", Some(&format!("{url}?key=office"))).await.unwrap();
    app.store().set_village_wecom(QIANDIAN, Some(&format!("{url}?key=gone"))).await.unwrap();
    let req = Request::new(
        BroadcastKind::Warning,
        Severity::Urgent,
        "暴雨天注意防汛",
        vec![Target::Office("HZ01".into())],
        "CLI",
    );
    let created = core(&app).create_broadcast(req).await.unwrap();
    assert_eq!(created.targets, 4, "one group and three robots");
    let c = settled(&app, created.id).await;
    assert_eq!((c.sent, c.lost), (3, 1), "{c:?}");
    let posts = posts.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<&str> = posts.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["gone", "office", "village"].into_iter().collect());
    let (_, body) = posts.iter().find(|(k, _)| k == "village").unwrap();
    assert_eq!(body["msgtype"], "markdown");
    let content = body["markdown"]["content"].as_str().unwrap();
    assert!(content.contains("**治安预警**") && content.contains("暴雨天注意防汛"), "{content}");
    let ledger = app.store().broadcast_ledger(created.id).await.unwrap();
    let lost = ledger.iter().find(|r| r.state == "lost").unwrap();
    assert!(lost.detail.as_deref().unwrap().contains("93000"), "{lost:?}");
    assert_eq!(app.fake.sent_to(-100_801).len(), 1, "the Telegram group got it too");
});

// Issue #20: after a crash, a lone daemon waited 3 heartbeats (30 s) — the takeover time
// for another daemon's rows — before sending again the rows its own dead run left in flight.
// Here the dead run's heartbeat is fresh and the clock does not move: only knowing the run
// is its own (same host, its process gone) lets the restarted daemon resume at once.
app_test!(a_restarted_daemon_resends_its_dead_runs_sends_at_once, |app| {
    bind(&app, -100_501, HEZHUANG).await;
    app.stop().await;
    let req = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "今晚停电检修。",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    let created = core(&app).create_broadcast(req).await.unwrap();
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into());
    // A run of this host whose process id no process has; it claimed the send and died.
    let dead = format!("{}-deadbeef", u32::MAX - 1);
    let now = app.now_ms();
    app.store().heartbeat(&dead, &host, now).await.unwrap();
    let claimed = app.store().claim_deliveries("telegram", &dead, now, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    app.restart().await;
    let c = tokio::time::timeout(Duration::from_secs(20), settled(&app, created.id))
        .await
        .expect("resent without waiting for the dead run's heartbeat to age");
    assert_eq!(c.sent, 1, "{c:?}");
    assert_eq!(app.fake.sent_to(-100_501).len(), 1);
});

/// Sends of broadcast `id` still on the wire: claimed and not yet settled (a cancel may have
/// taken their rows back already; they settle when the answer comes).
async fn in_flight(app: &TestApp, id: i64) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM broadcast_deliveries WHERE broadcast_id = $1 AND claimed_at IS NOT NULL")
        .bind(id)
        .fetch_one(app.store().pool())
        .await
        .unwrap()
}

/// The most of `times` in any window of `span` (half-open, starting at one of them).
fn most_in_any(times: &[std::time::Instant], span: Duration) -> usize {
    let mut times = times.to_vec();
    times.sort();
    (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t - times[i] < span).count()).max().unwrap_or(0)
}

/// Restarts the daemon with Telegram's sending limits set to these (per chat a second, per
/// group in `group_window`, over all a second).
async fn with_limits(app: &mut TestApp, per_chat: u32, per_group: u32, group_window: Duration, overall: u32) {
    let t = &mut app.settings.file.telegram;
    (t.messages_per_sec_chat, t.messages_per_min_group, t.messages_per_sec_overall) = (per_chat, per_group, overall);
    t.group_window_ms = Some(group_window.as_millis() as u64);
    app.restart().await;
}

app_test!(pacing_measured_at_a_strict_telegram_keeps_every_limit_and_sends_nothing_during_a_429, |app| {
    // Telegram's limits, with the group's minute shortened to 3 s so that the test takes
    // seconds; the fake refuses with 429 whatever goes over, as Telegram does.
    let window = Duration::from_secs(3);
    with_limits(&mut app, 1000, 20, window, 30).await;
    app.fake.enforce_flood_control(crate::fake_telegram::FloodControl {
        per_chat: 1000,
        per_group: 20,
        group_window: window,
        overall: 30,
        retry_after: 1,
    });
    bind(&app, -100_801, QIANDIAN).await;
    let groups: Vec<i64> = (0..60).map(|n| -100_900 - n).collect();
    for g in &groups {
        bind(&app, *g, HEZHUANG).await;
    }
    let core = core(&app);
    // Thirty notices to one group, and one to sixty groups; Telegram pauses the bot once.
    app.fake.fail_next("sendMessage", Fault::RetryAfter(1), 1);
    let mut ids = Vec::new();
    for n in 0..30 {
        let req = Request::new(
            BroadcastKind::Notice,
            Severity::Normal,
            &format!("通知{n}"),
            vec![Target::Village(QIANDIAN.into())],
            "CLI",
        );
        ids.push(core.create_broadcast(req).await.unwrap().id);
    }
    let req = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "停水通知",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    ids.push(core.create_broadcast(req).await.unwrap().id);
    for id in &ids {
        let c = settled(&app, *id).await;
        assert_eq!(c.sent, c.targets, "broadcast {id}: {c:?}");
    }
    let sent = app.fake.sent();
    let all: Vec<_> = sent.iter().map(|m| m.at).collect();
    let group: Vec<_> = sent.iter().filter(|m| m.chat_id == -100_801).map(|m| m.at).collect();
    assert_eq!(group.len(), 30);
    let per_group = most_in_any(&group, window);
    let overall = most_in_any(&all, Duration::from_secs(1));
    println!("pacing at the fake: {per_group} in any group window, {overall} in any second");
    assert_eq!(per_group, 20, "20 in any window to one group, and the budget used");
    assert!(overall <= 30, "{overall} in one second over all chats");
    assert_eq!(app.fake.flood_refusals().1, 0, "nothing sent during the pause once the 429 was answered");
    assert_eq!(app.fake.flood_refusals().0, app.fake.flood_refusals().2, "nothing over a limit");
    assert!(app.fake.faults_served() >= 1, "the 429 was met");
});

app_test!(a_cancel_stops_the_sends_a_worker_already_holds_within_a_second_and_takes_back_any_that_went, |app| {
    // 30 a second over all chats: 90 groups take three seconds, all claimed by one worker.
    with_limits(&mut app, 1000, 1000, Duration::from_secs(60), 30).await;
    let groups: Vec<i64> = (0..90).map(|n| -101_000 - n).collect();
    for g in &groups {
        bind(&app, *g, HEZHUANG).await;
    }
    let core = core(&app);
    let req = Request::new(
        BroadcastKind::Warning,
        Severity::Urgent,
        "有人冒充民警上门",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    let created = core.create_broadcast(req).await.unwrap();
    crate::app::eventually("a third went", || async { app.fake.sent().len() >= 30 }).await;
    let cancelled_at = std::time::Instant::now();
    // Another process cancels (a second Core, as the CLI or the desk of another daemon):
    // this daemon hears of it from the database.
    assert!(core.cancel_broadcast(created.id).await.unwrap());
    crate::app::eventually("the ledger is settled and every send taken back", || async {
        // A row the cancel took back while its send was on the wire is settled when the
        // answer comes (`claimed_at` cleared), and then taken back if it went.
        let ledger = app.store().broadcast_ledger(created.id).await.unwrap();
        in_flight(&app, created.id).await == 0
            && ledger.iter().all(|r| r.state != "sending" && r.state != "pending")
            && ledger.iter().filter(|r| r.state == "sent").all(|r| r.retract.as_deref() == Some("deleted"))
    })
    .await;
    let sent = app.fake.sent();
    let late = sent.iter().filter(|m| m.at > cancelled_at + Duration::from_secs(1)).count();
    let after = sent.iter().filter(|m| m.at > cancelled_at).count();
    println!("cancel: {} sent in all, {after} after the cancel, {late} more than a second after it", sent.len());
    assert_eq!(late, 0, "nothing goes out a second after the cancel");
    assert!(sent.len() < 90, "the cancel stopped the warning: {} of 90 sent", sent.len());
    for m in &sent {
        assert!(!app.fake.message_exists(m.chat_id, m.message_id), "the message in {} is taken back", m.chat_id);
    }
});

app_test!(an_expiry_stops_the_sends_a_worker_already_holds, |app| {
    with_limits(&mut app, 1000, 1000, Duration::from_secs(60), 30).await;
    let groups: Vec<i64> = (0..90).map(|n| -101_100 - n).collect();
    for g in &groups {
        bind(&app, *g, HEZHUANG).await;
    }
    let mut req = Request::new(
        BroadcastKind::Notice,
        Severity::Normal,
        "今天下午停电",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    // The core first: building it (templates, the triage model) can take seconds on a
    // loaded machine, and the expiry counts from now.
    let core = core(&app);
    req.expires_at = Some(app.now_ms() + 2_000);
    let expiry = std::time::Instant::now() + Duration::from_secs(2); // a little after it
    let created = core.create_broadcast(req).await.unwrap();
    let c = settled(&app, created.id).await;
    let after_expiry: Vec<_> =
        app.fake.sent().iter().filter(|m| m.at > expiry + Duration::from_millis(100)).map(|m| m.chat_id).collect();
    println!("expiry: {} sent, {} expired", c.sent, c.expired);
    assert!(c.expired > 0 && c.sent + c.expired == 90, "{c:?}");
    assert!(after_expiry.is_empty(), "sent after the expiry: {after_expiry:?}");
});

app_test!(a_correction_issued_before_the_original_went_everywhere_reaches_every_group_with_the_new_text, |app| {
    with_limits(&mut app, 1000, 1000, Duration::from_secs(60), 30).await;
    let groups: Vec<i64> = (0..60).map(|n| -101_200 - n).collect();
    for g in &groups {
        bind(&app, *g, HEZHUANG).await;
    }
    let core = core(&app);
    let req = Request::new(
        BroadcastKind::Warning,
        Severity::Normal,
        "周六停电",
        vec![Target::Village(HEZHUANG.into())],
        "CLI",
    );
    let first = core.create_broadcast(req).await.unwrap();
    crate::app::eventually("some groups have it", || async { app.fake.sent().len() >= 15 }).await;
    let mut fix = Request::new(BroadcastKind::Warning, Severity::Normal, "更正：周日停电", vec![], "CLI");
    fix.references_id = Some(first.id);
    let second = core.create_broadcast(fix).await.unwrap();
    assert_eq!(second.targets, 60, "the correction is for every group of the original");
    settled(&app, first.id).await;
    settled(&app, second.id).await;
    crate::app::eventually("stopped originals on the wire are taken back", || async {
        let ledger = app.store().broadcast_ledger(first.id).await.unwrap();
        in_flight(&app, first.id).await == 0
            && ledger.iter().all(|r| r.retract.is_none() || r.retract.as_deref() == Some("deleted"))
    })
    .await;
    for g in &groups {
        let visible: Vec<_> =
            app.fake.sent_to(*g).into_iter().filter(|m| app.fake.message_exists(*g, m.message_id)).collect();
        let fixes: Vec<_> = visible.iter().filter(|m| m.text.contains("周日停电")).collect();
        assert_eq!(fixes.len(), 1, "group {g} sees the correction once: {visible:?}");
        if let Some(old) = visible.iter().find(|m| m.text.contains("周六停电")) {
            assert_eq!(fixes[0].body["reply_parameters"]["message_id"], old.message_id, "group {g}");
        }
    }
});

app_test!(one_chat_gets_at_most_one_message_a_second_measured_at_a_strict_telegram, |app| {
    with_limits(&mut app, 1, 20, Duration::from_secs(60), 30).await;
    app.fake.enforce_flood_control(crate::fake_telegram::FloodControl {
        per_chat: 1,
        per_group: 20,
        group_window: Duration::from_secs(60),
        overall: 30,
        retry_after: 1,
    });
    bind(&app, -101_301, QIANDIAN).await;
    let core = core(&app);
    let mut ids = Vec::new();
    for n in 0..4 {
        let req = Request::new(
            BroadcastKind::Notice,
            Severity::Normal,
            &format!("通知{n}"),
            vec![Target::Village(QIANDIAN.into())],
            "CLI",
        );
        ids.push(core.create_broadcast(req).await.unwrap().id);
    }
    for id in &ids {
        assert_eq!(settled(&app, *id).await.sent, 1);
    }
    let times: Vec<_> = app.fake.sent_to(-101_301).iter().map(|m| m.at).collect();
    let most = most_in_any(&times, Duration::from_secs(1));
    println!("pacing at the fake: {most} in any second to one chat");
    assert_eq!(most, 1, "one message a second to one chat");
    assert_eq!(app.fake.flood_refusals(), (0, 0, 0), "Telegram refused nothing");
});

// ----- broadcasts by area (issue #24) -----

const WANGZHUANG: &str = "410184101204";
const DONGGANG: &str = "410184101205";
const GRID_5: &str = "410184101005";

/// The codes of the villages whose groups broadcast `id` went to, sorted.
async fn ledger_villages(app: &TestApp, id: i64) -> Vec<String> {
    let mut codes: Vec<String> =
        app.store().broadcast_ledger(id).await.unwrap().into_iter().filter_map(|r| r.village_code).collect();
    codes.sort();
    codes
}

app_test!(a_broadcast_to_an_area_reaches_that_village_and_those_around_it_and_no_other, |app| {
    // A group in each village around 和庄村, and in two that are not: 后店村 (two villages
    // east) and grid 005.
    for (chat, village) in [
        (-100_701, HEZHUANG),
        (-100_702, QIANDIAN),
        (-100_703, HOUDIAN),
        (-100_704, WANGZHUANG),
        (-100_705, DONGGANG),
        (-100_706, GRID_5),
    ] {
        bind(&app, chat, village).await;
    }
    let core = core(&app);
    let targets = cunjing::store::broadcasts::parse_targets(&format!("area:{HEZHUANG}")).unwrap();
    let groups = app.store().count_destinations(&targets).await.unwrap();
    let req = Request::new(BroadcastKind::Warning, Severity::Important, "村口发现可疑车辆。", targets, "CLI");
    let created = core.create_broadcast(req).await.unwrap();
    assert_eq!((groups, created.targets), (4, 4), "the preview counts what the send does");
    settled(&app, created.id).await;
    // Its own group, 前店村 (east) and 王庄村 (north) by an edge, 东岗村 by a corner.
    assert_eq!(ledger_villages(&app, created.id).await, [HEZHUANG, QIANDIAN, WANGZHUANG, DONGGANG]);
    for chat in [-100_701, -100_702, -100_704, -100_705] {
        assert_eq!(app.fake.sent_to(chat).len(), 1, "group {chat} got it once");
    }
    assert!(app.fake.sent_to(-100_703).is_empty() && app.fake.sent_to(-100_706).is_empty());
    let b = app.store().broadcast(created.id).await.unwrap().unwrap();
    assert_eq!(b.target_spec, format!("area:{HEZHUANG}"), "the ledger keeps what was targeted");

    // Around a point 50 m inside 和庄村 from 前店村: 100 m reaches both, 3 km all six villages.
    let near = |km: &str| cunjing::store::broadcasts::parse_targets(&format!("near:34.485,113.72125,{km}")).unwrap();
    let req = Request::new(BroadcastKind::Notice, Severity::Normal, "明天上午停电。", near("0.1"), "CLI");
    let created = core.create_broadcast(req).await.unwrap();
    settled(&app, created.id).await;
    assert_eq!(ledger_villages(&app, created.id).await, [HEZHUANG, QIANDIAN]);
    assert_eq!(app.fake.sent_to(-100_701).len(), 2);
    assert_eq!(app.fake.sent_to(-100_704).len(), 1, "王庄村 is 1.4 km away");
    assert_eq!(app.store().count_destinations(&near("3")).await.unwrap(), 6);
});

app_test!(an_area_target_that_reaches_nothing_is_refused_with_what_to_fix, |app| {
    let core = core(&app);
    let send = |spec: &str| {
        let targets = cunjing::store::broadcasts::parse_targets(spec).unwrap();
        let core = core.clone();
        async move {
            let req = Request::new(BroadcastKind::Notice, Severity::Normal, "测试", targets, "CLI");
            core.create_broadcast(req).await.map(|_| ()).unwrap_err().to_string()
        }
    };
    sqlx::query("DELETE FROM areas").execute(app.store().writer()).await.unwrap();
    let err = send(&format!("area:{HEZHUANG}")).await;
    assert!(err.contains("no areas are imported") && err.contains("areas.geojson"), "{err}");
    let err = send("near:34.485,113.72125,1").await;
    assert!(err.contains("no areas are imported"), "{err}");

    crate::app::import_example(app.store()).await;
    let err = send("area:410184101299").await;
    assert!(err.starts_with("area:410184101299: no such village"), "{err}");
    let err = send("near:34.6,113.9,5").await;
    assert!(err.contains("no village or grid area comes within 5 km"), "{err}");
    let houdian = app.store().village_by_code(HOUDIAN).await.unwrap().unwrap();
    sqlx::query("DELETE FROM areas WHERE village_id = $1")
        .bind(houdian.id)
        .execute(app.store().writer())
        .await
        .unwrap();
    let err = send(&format!("area:{HOUDIAN}")).await;
    assert!(err.contains("(后店村) has no area") && err.contains("areas.geojson"), "{err}");
    assert!(app.store().recent_broadcasts(None, 10).await.unwrap().is_empty(), "nothing was created");
});

app_test!(an_officer_warns_the_villages_around_a_location_they_share, |app| {
    let officer = TgUser::new(7101, "张建国");
    app.enrol("041201", &officer).await;
    bind(&app, -100_801, HEZHUANG).await;
    bind(&app, -100_802, QIANDIAN).await;
    bind(&app, -100_812, QIANDIAN).await;
    bind(&app, -100_803, HOUDIAN).await;
    let dm = app.fake.private_chat(officer.clone());

    let targets = app.ask(dm, &officer, "/alert").await;
    let ask_location = press(&app, dm, &officer, &targets, "按位置").await;
    assert!(ask_location.text.contains("请发送一个位置"), "{}", ask_location.text);
    // Something else than a location: asked again.
    let again = app.ask(dm, &officer, "和庄村").await;
    assert!(again.text.contains("请发送一个位置"), "{}", again.text);

    // A point in 后店村 first; then, instead of a radius, another: 50 m inside 和庄村 from
    // 前店村.
    let mark = app.fake.mark();
    app.fake.send_location(dm, &officer, 34.487, 113.756);
    let radius = app.fake.wait_for_new(mark, |m| m.chat_id == dm).await;
    assert_eq!(buttons(&radius)[0].0, "1 公里内：1 个村（格），1 个群", "{}", radius.text);
    let mark = app.fake.mark();
    app.fake.send_location(dm, &officer, 34.485, 113.72125);
    let radius = app.fake.wait_for_new(mark, |m| m.chat_id == dm).await;
    let labels: Vec<String> = buttons(&radius).into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        ["1 公里内：2 个村（格），3 个群", "3 公里内：12 个村（格），4 个群", "5 公里内：12 个村（格），4 个群"],
        "{}",
        radius.text
    );
    let severity = press(&app, dm, &officer, &radius, "1 公里").await;
    assert!(severity.text.contains("位置周边 1 公里（2 个村）"), "{}", severity.text);
    let ask_text = press(&app, dm, &officer, &severity, "紧急").await;
    assert!(ask_text.text.contains("预警内容"), "{}", ask_text.text);
    let preview = app.ask(dm, &officer, "附近发生入室盗窃，请锁好门窗。").await;
    assert!(preview.text.contains("共 3 个群"), "{}", preview.text);
    let queued = press(&app, dm, &officer, &preview, "确认发送").await;
    assert!(queued.text.contains("已开始发送"), "{}", queued.text);
    let report = app.fake.wait_for_sent(|m| m.chat_id == dm && m.text.contains("发送完毕")).await;
    assert!(report.text.contains("已送达 3 / 3"), "{}", report.text);
    for chat in [-100_801, -100_802, -100_812] {
        assert_eq!(app.fake.sent_to(chat).len(), 1, "group {chat}");
    }
    assert!(app.fake.sent_to(-100_803).is_empty(), "后店村 is 2 km away");
    let b = app.store().recent_broadcasts(None, 1).await.unwrap().remove(0);
    assert_eq!(b.target_spec, "near:34.485,113.72125,1");
});

#[tokio::test]
async fn the_command_line_sends_to_an_area_and_around_a_point_and_refuses_a_bad_circle() {
    use crate::cli::{cunjing, text};
    let db = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", db.path().join("cunjing.sqlite").display());
    cunjing(&["registry", "import", crate::app::example_dir().to_str().unwrap()], &url, "").await;
    cunjing(&["chat", "bind", "-1001", HEZHUANG], &url, "").await;
    cunjing(&["chat", "bind", "-1002", QIANDIAN], &url, "").await;
    cunjing(&["chat", "bind", "-1003", HOUDIAN], &url, "").await;
    let send = |extra: &[&str]| {
        let mut args = vec!["broadcast", "send", "--text", "注意防火", "--json"];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_string).collect();
        let url = url.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cunjing(&args, &url, "").await
        }
    };
    let targets = |out: &std::process::Output| {
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["targets"].as_i64().unwrap()
    };
    let area = send(&["--to", &format!("area:{HEZHUANG}")]).await;
    assert_eq!(targets(&area), 2, "和庄村 and 前店村 are bound");
    let near = send(&["--near", "34.485,113.72125,0.1"]).await;
    assert_eq!(targets(&near), 2);
    // As CAP: the area's outline and its neighbours', the circle.
    let id = |out: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"].to_string()
    };
    let cap = text(&cunjing(&["broadcast", "export-cap", &id(&area)], &url, "").await.stdout);
    assert!(cap.contains("<areaDesc>和庄村及相邻村（格）</areaDesc>"), "{cap}");
    assert_eq!(cap.matches("<polygon>").count(), 4, "和庄村, 前店村, 王庄村, 东岗村: {cap}");
    assert!(cap.contains("<polygon>34.480000,113.700000 34.480000,113.721795 "), "{cap}");
    let cap = text(&cunjing(&["broadcast", "export-cap", &id(&near)], &url, "").await.stdout);
    assert!(cap.contains("<circle>34.485,113.72125 0.1</circle>"), "{cap}");
    assert_eq!(targets(&send(&["--to", "near:34.485,113.72125,0.01"]).await), 1, "10 m: 和庄村 alone");
    // The same point as a Chinese web map gives it (GCJ-02, ~0.6 km off): the same villages.
    let (glon, glat) = cunjing::places::Datum::Gcj02.from_wgs84(113.72125, 34.485);
    let gcj = format!("{glat},{glon},0.01");
    assert_eq!(targets(&send(&["--near", &gcj, "--datum", "GCJ02"]).await), 1);

    let bad = send(&["--near", "34.485,113.72125,60"]).await;
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("at most 50 km"), "{}", text(&bad.stderr));
    let bad = send(&["--to", "area:410184101299"]).await;
    assert!(text(&bad.stderr).contains("area:410184101299: no such village"), "{}", text(&bad.stderr));
}

app_test!(the_desk_sends_to_an_area_and_around_a_point_and_says_what_is_wrong_with_a_bad_one, |app| {
    use crate::app::eventually;
    use crate::web::{Client, console};
    use reqwest::StatusCode;
    let port = console(&mut app).await;
    for (chat, village) in [(-100_901, HEZHUANG), (-100_902, QIANDIAN), (-100_903, HOUDIAN)] {
        bind(&app, chat, village).await;
    }
    let c = Client::logged_in(port, "neiqin").await;
    let form = c.get("/broadcasts/new").await;
    assert!(form.body.contains("<option value=\"410184101201\" >和庄村</option>"), "{}", form.body);
    let csrf = form.csrf();
    let base = [("csrf", csrf.as_str()), ("kind", "warning"), ("severity", "urgent"), ("text", "注意防范电信诈骗。")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields: Vec<(&str, &str)> = base.to_vec();
        fields.extend_from_slice(extra);
        fields
    };

    let bad =
        c.post("/broadcasts", &with(&[("near_lat", "34.485"), ("near_lon", "113.72125"), ("near_km", "80")])).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"place-error\">位置和半径不对"), "{}", bad.body);
    let far = c.post("/broadcasts", &with(&[("near_lat", "34.6"), ("near_lon", "113.9"), ("near_km", "5")])).await;
    assert!(far.body.contains("这个范围内没有村（格）"), "{}", far.body);

    let area = with(&[("area", HEZHUANG)]);
    let preview = c.post("/broadcasts", &area).await;
    assert!(preview.body.contains("将发送到 <strong>2</strong> 个群"), "和庄村 and 前店村: {}", preview.body);
    let mut confirmed = area.clone();
    confirmed.push(("confirm", "1"));
    let sent = c.post("/broadcasts", &confirmed).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let ledger = c.get(&sent.location).await;
    assert!(ledger.body.contains("和庄村及相邻村（格）"), "{}", ledger.body);

    // 10 m around a point in 和庄村 given as a Chinese web map gives it.
    let (glon, glat) = cunjing::places::Datum::Gcj02.from_wgs84(113.72125, 34.485);
    let (glat, glon) = (format!("{glat:.6}"), format!("{glon:.6}"));
    let near = [
        ("near_lat", glat.as_str()),
        ("near_lon", glon.as_str()),
        ("near_km", "0.01"),
        ("near_datum", "GCJ02"),
        ("confirm", "1"),
    ];
    let mut fields: Vec<(&str, &str)> = base.to_vec();
    fields.extend_from_slice(&near);
    let sent = c.post("/broadcasts", &fields).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    eventually("和庄村 has both", || async { app.fake.sent_to(-100_901).len() == 2 }).await;
    assert_eq!(app.fake.sent_to(-100_902).len(), 1);
    assert!(app.fake.sent_to(-100_903).is_empty());
});
