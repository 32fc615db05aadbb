//! Trust: authorisation through one module with every decision audited, membership checks,
//! rate-limited enrolment, the append-only audit log and retention, webhook mode, health and
//! metrics, several daemons on one PostgreSQL, and Telegram or database faults that lose
//! nothing.

use std::time::Duration;

use chrono::TimeZone;
use cunjing::domain::TipStatus;
use serde_json::json;

use crate::app::{TestApp, eventually, free_port};
use crate::app_test;
use crate::fake_telegram::{Fault, TgUser};
use crate::tips::{submit_anonymous_tip, zhang};

const GROUP: i64 = -1001000000031;
const HEZHUANG: &str = "410184101201";

async fn bound_group(app: &TestApp) {
    app.fake.group(GROUP, "和庄村村民群", true);
    let v = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "和庄村村民群", v.id, None).await.unwrap();
}

/// The audit records as `actor action target result detail` lines.
async fn audit_lines(app: &TestApp) -> Vec<String> {
    app.store()
        .audit_since(0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {} {} {}", r.actor, r.action, r.target, r.result, r.detail).trim_end().to_string())
        .collect()
}

/// The daemon's `/metrics` text.
async fn metrics(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap()
}

/// The value of one metric line (`name{labels}`), 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok())).unwrap_or(0.0)
}

app_test!(every_privileged_action_and_every_refusal_is_in_the_audit_log, |app| {
    app.fake.group(GROUP, "和庄村村民群", true);
    let resident = TgUser::new(5301, "村民");
    let refused = app.ask(GROUP, &resident, &format!("/bind {HEZHUANG}")).await;
    assert!(refused.text.contains("抱歉"), "{}", refused.text);
    app.enrol("041201", &zhang()).await;
    let done = app.ask(GROUP, &zhang(), &format!("/bind {HEZHUANG}")).await;
    assert!(done.text.contains("已绑定"), "{}", done.text);
    // An auxiliary may not warn a village he does not serve (F04122 serves 后店村, 王庄村).
    let aux = TgUser::new(6101, "周强");
    app.enrol("F04122", &aux).await;
    let dm = app.fake.private_chat(aux.clone());
    let targets = app.ask(dm, &aux, "/alert").await;
    let all = crate::fake_telegram::buttons(&targets);
    assert!(all.iter().all(|(_, data)| !data.contains(HEZHUANG)), "{all:?}");
    // A forged button for 和庄村 is refused all the same.
    let mark = app.fake.mark();
    app.fake.press_button(dm, &aux, targets.message_id, &format!("bc:t:v:{HEZHUANG}"));
    let forged = app.fake.wait_for_new(mark, |m| m.chat_id == dm).await;
    assert!(forged.text.contains("抱歉"), "{}", forged.text);

    let lines = audit_lines(&app).await;
    let has = |want: &str| lines.iter().any(|l| l == want);
    assert!(has(&format!("telegram:5301 bind village:{HEZHUANG} denied not enrolled")), "{lines:#?}");
    assert!(has("telegram:6001 enrol officer:041201 allowed"), "{lines:#?}");
    assert!(has(&format!("officer:041201 bind village:{HEZHUANG} allowed")), "{lines:#?}");
    assert!(has(&format!("officer:F04122 broadcast village:{HEZHUANG} denied")), "{lines:#?}");
});

app_test!(an_officer_who_has_left_the_group_cannot_use_its_admin_commands, |app| {
    app.enrol("041201", &zhang()).await;
    bound_group(&app).await;
    app.fake.set_member_status(GROUP, zhang().id, "left");
    let refused = app.ask(GROUP, &zhang(), "/unbind").await;
    assert!(refused.text.contains("抱歉"), "{}", refused.text);
    assert!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id.is_some());
    app.fake.set_member_status(GROUP, zhang().id, "administrator");
    let done = app.ask(GROUP, &zhang(), "/unbind").await;
    assert!(done.text.contains("解除"), "{}", done.text);
    let lines = audit_lines(&app).await;
    assert!(
        lines.contains(&format!("officer:041201 bind village:{HEZHUANG} denied not a member of the group")),
        "{lines:#?}"
    );
    assert!(app.fake.call_count("getChatMember") >= 2);
});

app_test!(wrong_enrolment_codes_are_limited_per_account_for_an_hour, |app| {
    let guesser = TgUser::new(5401, "试码的人");
    let chat = app.fake.private_chat(guesser.clone());
    for n in 0..5 {
        let wrong = app.ask(chat, &guesser, &format!("/start {:032x}", 0xdead_0000_u64 + n)).await;
        assert!(wrong.text.contains("登记码无效"), "{}", wrong.text);
    }
    // The sixth try is refused unread, even with a real code …
    let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
    let held = app.ask(chat, &guesser, &format!("/start {}", code.code)).await;
    assert!(held.text.contains("一小时"), "{}", held.text);
    assert!(app.store().officer_by_identity("telegram", guesser.id).await.unwrap().is_none());
    // … while another account is not affected …
    app.enrol("041202", &TgUser::new(5402, "李卫东")).await;
    // … and an hour later the code works.
    app.advance(Duration::from_secs(3601));
    let done = app.ask(chat, &guesser, &format!("/start {}", code.code)).await;
    assert!(done.text.contains("登记成功"), "{}", done.text);
});

crate::on_both_engines!(the_audit_log_refuses_updates_and_deletes_of_recent_records, |db| {
    let now = chrono::Utc::now().timestamp_millis();
    const DAY: i64 = 86_400_000;
    // Appended in time order, as the log is (the purge takes records from the head of the
    // chain, oldest first).
    db.store.audit(now - 400 * DAY, "officer:041201", "export", "tips", "allowed", "").await.unwrap();
    db.store.audit(now - 200 * DAY, "officer:041201", "export", "tips", "allowed", "").await.unwrap();
    db.store.audit(now, "officer:041201", "bind", "village:1", "allowed", "").await.unwrap();
    let update = sqlx::query("UPDATE audit_log SET result = 'denied'").execute(db.store.pool()).await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM audit_log").execute(db.store.pool()).await;
    assert!(delete.unwrap_err().to_string().contains("183 days"));
    // The retention purge removes what is past the configured year, and only that.
    let purged = db.store.purge_expired(now, 30 * DAY, 1095 * DAY, 365 * DAY).await.unwrap();
    assert_eq!(purged.audit, 1);
    let left: Vec<i64> = db.store.audit_since(0).await.unwrap().into_iter().map(|r| (now - r.at) / DAY).collect();
    assert_eq!(left, [200, 0]);
});

/// The daemon's clock for 03:30:30 Shanghai, `days` days from now (the nightly purge).
fn night_after(days: i64) -> i64 {
    let tz = chrono_tz::Asia::Shanghai;
    let day = (chrono::Utc::now() + chrono::Duration::days(days)).with_timezone(&tz).date_naive();
    tz.from_local_datetime(&day.and_hms_opt(3, 30, 30).unwrap()).unwrap().timestamp_millis()
}

app_test!(the_nightly_purge_forgets_a_closed_tips_tipster_then_the_tip, |app| {
    app.settings.file.retention.relay_days = 30;
    app.settings.file.retention.tips_days = 60;
    app.restart().await;
    app.enrol("041201", &zhang()).await;
    let (_chat, number, _card) = submit_anonymous_tip(&app, "有人在河边偷电缆").await;
    let (_open_chat, open, _) = submit_anonymous_tip(&app, "有人在桥下偷电缆").await;
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    let officer = app.store().officer_by_badge("041201").await.unwrap().unwrap();
    assert!(
        app.store().change_tip_status(tip.id, officer.id, &[TipStatus::New], TipStatus::Resolved, None).await.unwrap()
    );
    let open = app.store().tip_by_number(&open).await.unwrap().unwrap();

    app.advance(Duration::from_millis((night_after(31) - app.now_ms()) as u64));
    eventually("the closed tip's tipster mapping is purged", || async {
        app.store().tip_reporter(tip.id).await.unwrap().is_none()
    })
    .await;
    assert!(app.store().tip(tip.id).await.unwrap().is_some(), "the tip itself is kept for now");
    assert!(app.store().tip_reporter(open.id).await.unwrap().is_some(), "an open tip keeps its tipster");

    app.advance(Duration::from_millis((night_after(61) - app.now_ms()) as u64));
    eventually("the closed tip is purged", || async { app.store().tip(tip.id).await.unwrap().is_none() }).await;
    assert!(app.store().tip(open.id).await.unwrap().is_some(), "an open tip is never purged");
});

app_test!(webhook_mode_checks_the_secret_first_bounds_the_body_and_handles_an_update_once, |app| {
    let port = free_port();
    app.settings.file.http.listen = format!("127.0.0.1:{port}");
    app.settings.webhook = Some(url::Url::parse("https://bot.example.cn/tg/hook").unwrap());
    app.settings.webhook_secret = Some("s3cret-token_1".to_string().into());
    app.restart().await;
    let set = app.fake.wait_for_calls("setWebhook", 1).await;
    assert_eq!(set[0]["url"], "https://bot.example.cn/tg/hook");
    assert_eq!(set[0]["secret_token"], "s3cret-token_1");
    assert_eq!(set[0]["allowed_updates"], json!(["message", "callback_query", "my_chat_member"]));
    bound_group(&app).await;
    let polled = app.fake.call_count("getUpdates");

    let hook = format!("http://127.0.0.1:{port}/tg/hook");
    let client = reqwest::Client::new();
    let update = app.fake.text_update(GROUP, &TgUser::new(5501, "村民"), "俺村片警是谁啊");
    let post = |secret: Option<&'static str>, body: Vec<u8>| {
        let mut req = client.post(&hook).header("content-type", "application/json").body(body);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send()
    };
    let body = serde_json::to_vec(&update).unwrap();
    assert_eq!(post(None, body.clone()).await.unwrap().status(), 401);
    assert_eq!(post(Some("s3cret-token_2"), body.clone()).await.unwrap().status(), 401);
    assert_eq!(post(Some("s3cret-token_1"), vec![b' '; 300_000]).await.unwrap().status(), 413);
    assert!(app.fake.sent_to(GROUP).is_empty(), "nothing was handled yet");

    assert_eq!(post(Some("s3cret-token_1"), body.clone()).await.unwrap().status(), 200);
    // Answered after handling: the card is already there.
    let cards = app.fake.sent_to(GROUP);
    assert_eq!(cards.len(), 1, "{cards:?}");
    assert!(cards[0].text.contains("张建国"), "{}", cards[0].text);
    // Telegram delivers it again (its answer was lost): handled once all the same.
    assert_eq!(post(Some("s3cret-token_1"), body).await.unwrap().status(), 200);
    assert_eq!(app.fake.sent_to(GROUP).len(), 1);
    assert_eq!(app.fake.call_count("getUpdates"), polled, "no polling in webhook mode");

    let text = metrics(port).await;
    assert_eq!(metric(&text, "cunjing_updates_total{intent=\"contact_query\"}"), 1.0, "{text}");
    assert_eq!(metric(&text, "cunjing_duplicate_updates_total"), 1.0, "{text}");
    assert_eq!(metric(&text, "cunjing_handle_seconds_count"), 1.0, "{text}");
});

app_test!(healthz_says_what_is_wrong_and_metrics_count_what_the_daemon_did, |app| {
    let port = free_port();
    app.settings.file.http.listen = format!("127.0.0.1:{port}");
    app.restart().await;
    bound_group(&app).await;
    app.ask(GROUP, &TgUser::new(5601, "村民"), "俺村片警是谁啊").await;
    let health = format!("http://127.0.0.1:{port}/healthz");
    let ok = reqwest::get(&health).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!((body["database"].as_bool(), body["telegram"].as_bool()), (Some(true), Some(true)), "{body}");
    assert_eq!(body["queue_pending"], 0, "{body}");
    // Telegram answers getMe with 500: unavailable, and which part is down.
    app.fake.fail_next("getMe", Fault::ServerError, 1);
    let down = reqwest::get(&health).await.unwrap();
    assert_eq!(down.status(), 503);
    let body: serde_json::Value = down.json().await.unwrap();
    assert_eq!((body["database"].as_bool(), body["telegram"].as_bool()), (Some(true), Some(false)), "{body}");

    let text = metrics(port).await;
    assert_eq!(metric(&text, "cunjing_updates_total{intent=\"contact_query\"}"), 1.0, "{text}");
    assert!(metric(&text, "cunjing_replies_total") >= 1.0, "{text}");
    assert!(text.contains("cunjing_deliveries{state=\"sent\"} 0"), "{text}");
});

app_test!(telegram_faults_lose_no_tip_and_are_counted, |app| {
    let port = free_port();
    app.settings.file.http.listen = format!("127.0.0.1:{port}");
    app.restart().await;
    app.enrol("041201", &zhang()).await;
    bound_group(&app).await;
    // getUpdates answers garbage, then drops the connection (teloxide backs off 1 s, then
    // 2 s; a 5xx it waits out for 10 s, which the broadcast tests cover); an update of a kind
    // the daemon does not take arrives.
    app.fake.fail_next("getUpdates", Fault::MalformedJson, 1);
    app.fake.fail_next("getUpdates", Fault::Disconnect, 1);
    app.fake.push_raw_update(json!({"message_reaction_count": {"chat": {"id": GROUP, "type": "supergroup", "title": "和庄村村民群"}, "message_id": 1, "date": 0, "reactions": []}}));
    let answer = app.ask(GROUP, &TgUser::new(5701, "村民"), "俺村片警是谁啊").await;
    assert!(answer.text.contains("张建国"), "{}", answer.text);

    // An answer's send takes effect but its answer is lost: the send is tried again (a
    // message twice rather than none).
    app.fake.fail_next("sendMessage", Fault::LostAnswer, 1);
    let mark = app.fake.mark();
    app.fake.send_text(GROUP, &TgUser::new(5702, "村民"), "咱村民警电话多少");
    app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    eventually("the answer was sent again", || async { app.fake.sent_to(GROUP).len() == 3 }).await;
    // A send in the tip's conversation meets a dropped connection: the tip is recorded once
    // and reaches the officer.
    app.fake.fail_next("sendMessage", Fault::Disconnect, 1);
    let (_chat, number, card) = submit_anonymous_tip(&app, "仓库后门的锁被人撬了").await;
    assert!(card.text.contains(&number));
    let tips = app.store().list_tips(&Default::default()).await.unwrap();
    assert_eq!(tips.len(), 1, "one tip, however often a send was retried");

    let text = metrics(port).await;
    assert!(metric(&text, "cunjing_telegram_errors_total{kind=\"network\"}") >= 2.0, "{text}");
    assert!(metric(&text, "cunjing_telegram_errors_total{kind=\"invalid_json\"}") >= 1.0, "{text}");
    assert_eq!(metric(&text, "cunjing_updates_total{intent=\"unknown\"}"), 1.0, "{text}");
});

app_test!(sixteen_tipsters_writing_at_once_all_get_their_receipts, |app| {
    app.enrol("041201", &zhang()).await;
    let mut flows = Vec::new();
    for n in 0..16 {
        let user = TgUser::new(5800 + n, "村民");
        let chat = app.fake.private_chat(user.clone());
        flows.push((user, chat));
    }
    // Every tipster starts, picks, writes and confirms at the same time.
    let run = flows.iter().map(|(user, chat)| {
        let app = &app;
        async move {
            let categories = app.ask(*chat, user, "/start tip_410184101201").await;
            let details = crate::app::press(app, *chat, user, &categories, "盗窃").await;
            assert!(details.text.contains("发生了什么"), "{}", details.text);
            let got = app.ask(*chat, user, &format!("{} 号家的电动车被偷了", user.id)).await;
            let anonymity = crate::app::press(app, *chat, user, &got, "说完了").await;
            let summary = crate::app::press(app, *chat, user, &anonymity, "匿名").await;
            let receipt = crate::app::press(app, *chat, user, &summary, "确认提交").await;
            assert!(receipt.text.contains("线索编号"), "{}", receipt.text);
        }
    });
    futures::future::join_all(run).await;
    assert_eq!(app.store().list_tips(&Default::default()).await.unwrap().len(), 16);
    let errors = app.fake.sent().iter().filter(|m| m.text.contains("出了点问题")).count();
    assert_eq!(errors, 0, "no writer met a busy database");
});

/// A PostgreSQL-only scenario: `pg_test!(name, |app, admin| { … })` — `admin` is a
/// connection to the server's maintenance database.
macro_rules! pg_test {
    ($name:ident, |$app:ident, $admin:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            #[allow(unused_mut)]
            let Some(mut $app) = TestApp::spawn(crate::db::Engine::Postgres).await else { return };
            use sqlx::Connection;
            let url = std::env::var("CUNJING_TEST_POSTGRES_URL").unwrap();
            let mut $admin = sqlx::AnyConnection::connect(&url).await.unwrap();
            let run = async {
                $body
                $app.stop().await;
            };
            tokio::time::timeout(Duration::from_secs(90), run).await.expect("the scenario finished within 90 s");
        }
    };
}

fn database_name(app: &TestApp) -> String {
    url::Url::parse(&app.db.url).unwrap().path().trim_start_matches('/').to_string()
}

async fn terminate_connections(admin: &mut sqlx::AnyConnection, db: &str) {
    let sql = format!(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql)).execute(admin).await.unwrap();
}

pg_test!(postgres_connections_dropped_mid_run_are_replaced_and_nothing_is_lost, |app, admin| {
    app.enrol("041201", &zhang()).await;
    bound_group(&app).await;
    app.ask(GROUP, &TgUser::new(5901, "村民"), "俺村片警是谁啊").await;
    // The server restarts: every connection of the daemon is cut.
    terminate_connections(&mut admin, &database_name(&app)).await;
    let answer = app.ask(GROUP, &TgUser::new(5902, "村民"), "咱村民警电话多少").await;
    assert!(answer.text.contains("张建国"), "{}", answer.text);
    let (_chat, number, _card) = submit_anonymous_tip(&app, "村委会的电脑被偷了").await;
    assert!(app.store().tip_by_number(&number).await.unwrap().is_some());
});

pg_test!(the_emergency_answer_goes_out_while_the_database_is_unreachable, |app, admin| {
    bound_group(&app).await;
    // The daemon is up and serving before the database goes away.
    app.ask(GROUP, &TgUser::new(5904, "村民"), "俺村片警是谁啊").await;
    let db = database_name(&app);
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS false")))
        .execute(&mut admin)
        .await
        .unwrap();
    terminate_connections(&mut admin, &db).await;
    let reply = app.ask(GROUP, &TgUser::new(5903, "村民"), "有人在村口打架了，快来人").await;
    assert!(reply.text.contains("请立即拨打 110"), "{}", reply.text);
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{db}\" WITH ALLOW_CONNECTIONS true")))
        .execute(&mut admin)
        .await
        .unwrap();
});

/// Two daemon processes on one PostgreSQL database and one fake Telegram: each update is
/// answered once, the warning's sends are shared, and when one daemon is killed with sends in
/// flight the other takes them over (3 heartbeats later) and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgres_answer_each_update_once_and_one_finishes_what_a_killed_one_left() {
    use crate::cli::{cunjing, daemon_command, text};
    let Some(db) = crate::db::fresh(crate::db::Engine::Postgres).await else { return };
    crate::app::import_example(&db.store).await;
    let fake = crate::fake_telegram::FakeTelegram::start().await;
    let store = &db.store;
    let v = store.village_by_code(HEZHUANG).await.unwrap().unwrap();
    fake.group(GROUP, "和庄村村民群", true);
    store.bind_chat_to_village("telegram", GROUP, "和庄村村民群", v.id, None).await.unwrap();
    let groups: Vec<i64> = (0..160).map(|n| -1002000000000 - n).collect();
    for g in &groups {
        fake.group(*g, "群", true);
        store.bind_chat_to_village("telegram", *g, "群", v.id, None).await.unwrap();
    }
    let daemon = || {
        daemon_command(&db.url, &fake)
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", "10000")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "10000")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_MIN_GROUP", "10000")
            .env("CUNJING__BROADCAST__MESSAGES_PER_SEC", "40")
            .env("CUNJING__BROADCAST__CONCURRENCY", "4")
            .env("CUNJING__BROADCAST__RETRY_BASE_MS", "100")
            // Ten residents ask the same question: triage's flood control would answer one.
            .env("CUNJING__TRIAGE__REPEAT_WINDOW_MINUTES", "0")
            .env("CUNJING__TRIAGE__MAX_ANSWERS_PER_GROUP_PER_MINUTE", "10000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = daemon();
    let second = daemon();
    let run = async {
        for n in 0..10 {
            fake.send_text(GROUP, &TgUser::new(6200 + n, "村民"), "俺村片警是谁啊");
        }
        let answers = || fake.sent_to(GROUP).iter().filter(|m| m.text.contains("张建国")).count();
        eventually("ten answers", || async { answers() >= 10 }).await;

        let sent = cunjing(
            &[
                "broadcast",
                "send",
                "--to",
                &format!("village:{HEZHUANG}"),
                "--severity",
                "urgent",
                "--text",
                "近期有冒充公检法的诈骗电话",
                "--json",
            ],
            &db.url,
            "",
        )
        .await;
        assert!(sent.status.success(), "{}", text(&sent.stderr));
        let id = serde_json::from_slice::<serde_json::Value>(&sent.stdout).unwrap()["id"].as_i64().unwrap();
        let reached = || groups.iter().filter(|g| !fake.sent_to(**g).is_empty()).count();
        eventually("a quarter of the groups have it", || async { reached() >= 40 }).await;
        first.kill().await.unwrap(); // SIGKILL: no sign-off, sends left in flight
        eventually("every group has it", || async { reached() == groups.len() }).await;
        eventually("the ledger is settled", || async {
            let c = store.broadcast_counts(id).await.unwrap();
            c.pending == 0 && c.sending == 0
        })
        .await;
        let c = store.broadcast_counts(id).await.unwrap();
        assert_eq!((c.sent, c.targets), (161, 161), "{c:?}");
        let twice = groups.iter().filter(|g| fake.sent_to(**g).len() > 1).count();
        assert!(twice <= 4, "{twice} groups got it twice: at most the 4 sends in flight when the daemon died");
        assert_eq!(answers(), 10, "no question was answered twice");
        let handled: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM handled_updates").fetch_one(store.pool()).await.unwrap();
        assert_eq!(handled, 10);
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("finished within 90 s");
    drop(second);
}

/// Two daemons of one bot on one PostgreSQL keep the bot's overall limit between them, as
/// measured at a fake that refuses what goes over it: each sends its half.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_of_one_bot_share_its_sending_limit_measured_at_a_strict_telegram() {
    use crate::cli::{cunjing, daemon_command, text};
    let Some(db) = crate::db::fresh(crate::db::Engine::Postgres).await else { return };
    crate::app::import_example(&db.store).await;
    let fake = crate::fake_telegram::FakeTelegram::start().await;
    fake.enforce_flood_control(crate::fake_telegram::FloodControl {
        per_chat: 1000,
        per_group: 1000,
        group_window: Duration::from_secs(60),
        overall: 20,
        retry_after: 1,
    });
    let store = &db.store;
    let v = store.village_by_code(HEZHUANG).await.unwrap().unwrap();
    let groups: Vec<i64> = (0..120).map(|n| -1003000000000 - n).collect();
    for g in &groups {
        fake.group(*g, "群", true);
        store.bind_chat_to_village("telegram", *g, "群", v.id, None).await.unwrap();
    }
    let daemon = || {
        daemon_command(&db.url, &fake)
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", "20")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "1000")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_MIN_GROUP", "1000")
            .env("CUNJING__BROADCAST__MESSAGES_PER_SEC", "0")
            // Batches of 16, so that both daemons claim some.
            .env("CUNJING__BROADCAST__CONCURRENCY", "4")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let (_first, _second) = (daemon(), daemon());
    let run = async {
        // Each has counted both once each has given a sign of life after the later one began.
        crate::app::eventually("both daemons know of each other", || async {
            let rows: Vec<(i64, i64)> =
                sqlx::query_as("SELECT started_at, heartbeat_at FROM daemons").fetch_all(store.pool()).await.unwrap();
            let last_start = rows.iter().map(|r| r.0).max().unwrap_or(0);
            rows.len() == 2 && rows.iter().all(|r| r.1 > last_start + 100)
        })
        .await;
        let sent = cunjing(
            &["broadcast", "send", "--to", &format!("village:{HEZHUANG}"), "--text", "今晚停水", "--json"],
            &db.url,
            "",
        )
        .await;
        assert!(sent.status.success(), "{}", text(&sent.stderr));
        let reached = || groups.iter().filter(|g| !fake.sent_to(**g).is_empty()).count();
        crate::app::eventually("every group has it", || async { reached() == groups.len() }).await;
        let times: Vec<_> = fake.sent().iter().map(|m| m.at).collect();
        let mut sorted = times.clone();
        sorted.sort();
        let most = (0..sorted.len())
            .map(|i| sorted[i..].iter().take_while(|t| **t - sorted[i] < Duration::from_secs(1)).count())
            .max()
            .unwrap_or(0);
        println!("two daemons: {most} sends in any second for the bot (limit 20)");
        assert!(most <= 20, "{most} in one second");
        assert_eq!(fake.flood_refusals(), (0, 0, 0), "Telegram refused nothing");
        let shared: Vec<(String, i64)> = sqlx::query_as(
            "SELECT claimed_by, COUNT(*) FROM broadcast_deliveries WHERE claimed_by IS NOT NULL GROUP BY claimed_by",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(shared.len(), 2, "both daemons sent: {shared:?}");
    };
    tokio::time::timeout(Duration::from_secs(90), run).await.expect("finished within 90 s");
}

/// The first of next month at 09:00:30 Shanghai, when the shipped monthly notice is due.
fn next_first_morning() -> chrono::DateTime<chrono::Utc> {
    use chrono::Datelike;
    let tz = chrono_tz::Asia::Shanghai;
    let now = chrono::Utc::now().with_timezone(&tz);
    let (y, m) = if now.month() == 12 { (now.year() + 1, 1) } else { (now.year(), now.month() + 1) };
    tz.with_ymd_and_hms(y, m, 1, 9, 0, 30).unwrap().with_timezone(&chrono::Utc)
}

// Two daemons' schedulers look at the same moment: the monthly notice is made once.
crate::on_both_engines!(two_schedulers_at_the_same_moment_run_a_notice_once, |db| {
    crate::app::import_example(&db.store).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml");
    let settings = cunjing::config::Settings::from_file(&path, false).unwrap();
    let at = next_first_morning();
    let clock = std::sync::Arc::new(move || at);
    let other = db.reopen().await;
    let a = cunjing::daemon::build_core(&settings, db.store.clone(), clock.clone()).unwrap();
    let b = cunjing::daemon::build_core(&settings, other, clock).unwrap();
    let platform = cunjing::core::Platform::Telegram;
    let (ra, rb) = tokio::join!(a.run_schedule(platform), b.run_schedule(platform));
    ra.unwrap();
    rb.unwrap();
    let made: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM broadcasts WHERE schedule_job = 'anti-fraud-monthly'")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(made, 1);
});

// Issue #20: the audit log could be emptied (TRUNCATE on PostgreSQL) or altered by someone
// with the database, and nothing would show it. Each record now carries the hash of the one
// before it; `verify_audit` (`cunjing audit verify`) names the first broken link.
crate::on_both_engines!(the_audit_chain_names_the_first_record_altered_or_removed, |db| {
    use cunjing::store::Backend;
    use cunjing::store::audit::AuditCheck;
    let s = &db.store;
    for i in 0..6 {
        s.audit(1_000 + i, "cli", "enrol", &format!("officer:04120{i}"), "allowed", "").await.unwrap();
    }
    assert_eq!(s.verify_audit().await.unwrap(), AuditCheck::Intact { checked: 6, before_chain: 0 });
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id").fetch_all(s.pool()).await.unwrap();
    if s.backend() == Backend::Postgres {
        let refused = sqlx::query("TRUNCATE audit_log").execute(s.writer()).await.unwrap_err().to_string();
        assert!(refused.contains("cannot be truncated"), "{refused}");
        // Someone who owns the table can switch the guards off; the chain still tells.
        sqlx::query("ALTER TABLE audit_log DISABLE TRIGGER USER").execute(s.writer()).await.unwrap();
    } else {
        for t in ["audit_log_no_update", "audit_log_no_early_delete"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {t}"))).execute(s.writer()).await.unwrap();
        }
    }
    sqlx::query("UPDATE audit_log SET target = 'officer:999999' WHERE id = $1")
        .bind(ids[2])
        .execute(s.writer())
        .await
        .unwrap();
    let altered = s.verify_audit().await.unwrap();
    assert!(
        matches!(altered, AuditCheck::Broken { id, why } if id == ids[2] && why.contains("altered")),
        "{altered:?}"
    );
    sqlx::query("DELETE FROM audit_log WHERE id <= $1").bind(ids[2]).execute(s.writer()).await.unwrap();
    let head_gone = s.verify_audit().await.unwrap();
    assert!(
        matches!(head_gone, AuditCheck::Broken { id, why } if id == ids[3] && why.contains("missing")),
        "{head_gone:?}"
    );
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(ids[4]).execute(s.writer()).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(ids[3]).execute(s.writer()).await.unwrap();
    let middle = s.verify_audit().await.unwrap();
    assert!(matches!(middle, AuditCheck::Broken { id, .. } if id == ids[5]), "{middle:?}");
});

// The retention purge removes old records from the head of the chain: what remains still
// verifies, from the anchor the purge leaves.
crate::on_both_engines!(the_audit_chain_survives_the_retention_purge, |db| {
    use cunjing::store::audit::AuditCheck;
    let s = &db.store;
    let day = 86_400_000i64;
    let now = 400 * day;
    for i in 0..4 {
        s.audit(i * day, "cli", "enrol", "old", "allowed", "").await.unwrap();
    }
    s.audit(now - day, "cli", "enrol", "recent", "allowed", "").await.unwrap();
    let purged = s.purge_expired(now, 30 * day, 365 * day, 200 * day).await.unwrap();
    assert_eq!(purged.audit, 4);
    assert_eq!(s.verify_audit().await.unwrap(), AuditCheck::Intact { checked: 1, before_chain: 0 });
    s.audit(now, "cli", "audit_read", "", "allowed", "").await.unwrap();
    assert_eq!(s.verify_audit().await.unwrap(), AuditCheck::Intact { checked: 2, before_chain: 0 });
});

// Group chatter is not recorded as handled (handling it again does nothing), a question is.
crate::app_test!(
    group_chatter_is_not_recorded_as_handled_and_a_question_is_answered_once_when_delivered_again,
    |app| {
        let v = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap();
        app.fake.group(GROUP, "和庄村村民群", true);
        app.store().bind_chat_to_village("telegram", GROUP, "和庄村村民群", v.id, None).await.unwrap();
        let someone = TgUser::new(6301, "村民");
        let (_, chatter) = app.fake.send_text_update(GROUP, &someone, "今天赶集的人真多啊");
        let (_, question) = app.fake.send_text_update(GROUP, &someone, "俺村片警是谁啊");
        let answer = app.fake.wait_for_sent(|m| m.chat_id == GROUP && m.text.contains("张建国")).await;
        assert!(answer.text.contains("张建国"));
        let handled = || async {
            let ids: Vec<i64> = sqlx::query_scalar("SELECT update_id FROM handled_updates ORDER BY update_id")
                .fetch_all(app.store().pool())
                .await
                .unwrap();
            ids
        };
        crate::app::eventually("the question is recorded", || async { handled().await == [question] }).await;
        assert!(!handled().await.contains(&chatter), "chatter leaves no record");
        let mark = app.fake.mark();
        app.fake.deliver_again(question);
        app.fake.deliver_again(chatter);
        let (_, probe) = app.fake.send_text_update(GROUP, &someone, "派出所电话多少");
        crate::app::eventually("the probe is recorded", || async { handled().await.contains(&probe) }).await;
        app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
        let cards = app.fake.sent().iter().skip(mark).filter(|m| m.chat_id == GROUP).count();
        assert_eq!(cards, 1, "only the new question is answered, not the redelivered one");
    }
);
