//! The station console over HTTP: logins (lockout, second factor, session timeout), CSRF,
//! station isolation, validation errors next to the field, every page and action — and what
//! the actions do in Telegram.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;

use crate::app::{TestApp, eventually, free_port};
use crate::app_test;
use crate::fake_telegram::TgUser;
use crate::tips::{QIANDIAN, submit_anonymous_tip, tipster, zhang};

pub const PASSWORD: &str = "correct horse battery";
pub const ADMIN_TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// A browser-like HTTP client: keeps cookies, does not follow redirects.
pub struct Client {
    base: String,
    http: reqwest::Client,
    cookies: Mutex<HashMap<String, String>>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: String,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Page {
    /// The CSRF token of the first form on the page.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
        self.body[at..at + 64].to_string()
    }
}

impl Client {
    pub fn new(port: u16) -> Client {
        Client {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            cookies: Mutex::default(),
        }
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Page {
        let cookie =
            self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let resp = req.header("cookie", cookie).send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
            let (kv, _) = c.split_once(';').unwrap();
            let (k, v) = kv.split_once('=').unwrap();
            let mut jar = self.cookies.lock().unwrap();
            if v.is_empty() {
                jar.remove(k)
            } else {
                jar.insert(k.into(), v.into())
            };
        }
        let status = resp.status();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap();
        Page { status, location, body, headers }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.finish(self.http.get(format!("{}{path}", self.base))).await
    }

    pub async fn get_bytes(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let cookie =
            self.cookies.lock().unwrap().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let resp = self.http.get(format!("{}{path}", self.base)).header("cookie", cookie).send().await.unwrap();
        (resp.status(), resp.headers().clone(), resp.bytes().await.unwrap().to_vec())
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.finish(self.http.post(format!("{}{path}", self.base)).form(form)).await
    }

    /// Logs in; returns the answer to the POST.
    pub async fn login(&self, username: &str, password: &str, totp: &str) -> Page {
        let form = self.get("/login").await;
        let csrf = form.csrf();
        self.post("/login", &[("csrf", &csrf), ("username", username), ("password", password), ("totp", totp)]).await
    }

    pub async fn logged_in(port: u16, username: &str) -> Client {
        let client = Client::new(port);
        let totp = if username.contains("admin") { totp_now() } else { String::new() };
        let done = client.login(username, PASSWORD, &totp).await;
        assert_eq!((done.status, done.location.as_str()), (StatusCode::SEE_OTHER, "/tips"), "{}", done.body);
        client
    }
}

fn totp_now() -> String {
    let secret = totp_rs::Secret::Encoded(ADMIN_TOTP.into()).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).unwrap();
    totp.generate(chrono::Utc::now().timestamp() as u64)
}

/// Turns the console on (plain HTTP for the test) and creates the accounts: `neiqin` (张丽,
/// staff of 和庄派出所), `suozhang-admin` (its admin, with TOTP), `waisuo` (staff of another
/// station). Returns the port.
pub async fn console(app: &mut TestApp) -> u16 {
    let port = free_port();
    app.settings.file.web.enabled = true;
    app.settings.file.web.listen = format!("127.0.0.1:{port}");
    app.settings.file.web.secure_cookies = false;
    app.restart().await;
    let store = app.store();
    sqlx::query("INSERT INTO stations (code, name, duty_phone, address, updated_at) VALUES ('XZPCS', '新庄派出所', '0371-62580000', '', 0)")
        .execute(store.pool())
        .await
        .unwrap();
    let hz = store.station_id("HZPCS").await.unwrap();
    let xz = store.station_id("XZPCS").await.unwrap();
    let hash = cunjing::web::hash_password(PASSWORD).unwrap();
    store.upsert_web_user("neiqin", hz, cunjing::domain::Grant::Staff, &hash, None, 0).await.unwrap();
    store.set_web_user_display_name("neiqin", Some("张丽")).await.unwrap();
    store
        .upsert_web_user("suozhang-admin", hz, cunjing::domain::Grant::Admin, &hash, Some(ADMIN_TOTP), 0)
        .await
        .unwrap();
    store.upsert_web_user("waisuo", xz, cunjing::domain::Grant::Staff, &hash, None, 0).await.unwrap();
    eventually("the console answers", || async {
        reqwest::get(format!("http://127.0.0.1:{port}/login")).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    port
}

/// The audit log as `actor action target result` lines.
pub async fn audit(app: &TestApp) -> Vec<String> {
    app.store()
        .audit_since(0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {} {}", r.actor, r.action, r.target, r.result))
        .collect()
}

app_test!(the_console_needs_a_login_refuses_wrong_passwords_and_locks_the_account, |app| {
    let port = console(&mut app).await;
    let c = Client::new(port);
    let first = c.get("/tips").await;
    assert_eq!((first.status, first.location.as_str()), (StatusCode::SEE_OTHER, "/login"));
    let page = c.get("/login").await;
    assert!(page.body.contains("村警工作台") && page.body.contains("用户名"), "{}", page.body);
    // The login form's own CSRF token must come back.
    let forged = c.post("/login", &[("csrf", "x"), ("username", "neiqin"), ("password", PASSWORD)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    for _ in 0..4 {
        let wrong = c.login("neiqin", "wrong password", "").await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert!(wrong.body.contains("id=\"login-error\">用户名、密码或动态验证码不对"), "{}", wrong.body);
    }
    let unknown = c.login("nobody", PASSWORD, "").await;
    assert!(unknown.body.contains("用户名、密码或动态验证码不对"), "an unknown name is told the same");
    // The fifth wrong password locks it: even the right one is refused now.
    c.login("neiqin", "wrong password", "").await;
    let locked = c.login("neiqin", PASSWORD, "").await;
    assert!(locked.body.contains("已暂时锁定"), "{}", locked.body);
    app.advance(Duration::from_secs(16 * 60));
    let ok = c.login("neiqin", PASSWORD, "").await;
    assert_eq!((ok.status, ok.location.as_str()), (StatusCode::SEE_OTHER, "/tips"), "{}", ok.body);
    assert_eq!(c.get("/tips").await.status, StatusCode::OK);
    // Idle for longer than the session timeout: back to the login.
    app.advance(Duration::from_secs(31 * 60));
    assert_eq!(c.get("/tips").await.location, "/login");
    let lines = audit(&app).await;
    assert!(lines.contains(&"web:neiqin web_login console denied".to_string()), "{lines:#?}");
    assert!(lines.contains(&"web:neiqin web_login console allowed".to_string()), "{lines:#?}");
});

app_test!(an_admin_needs_the_second_factor_and_logging_out_ends_the_session, |app| {
    let port = console(&mut app).await;
    let c = Client::new(port);
    let without = c.login("suozhang-admin", PASSWORD, "").await;
    assert_eq!(without.status, StatusCode::UNAUTHORIZED);
    assert!(without.body.contains("id=\"login-error\">用户名、密码或动态验证码不对"), "{}", without.body);
    let wrong = c.login("suozhang-admin", PASSWORD, "123456").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let ok = c.login("suozhang-admin", PASSWORD, &totp_now()).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.body);
    let tips = c.get("/tips").await;
    let no_token = c.post("/logout", &[]).await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN, "logout needs the CSRF token too");
    let out = c.post("/logout", &[("csrf", &tips.csrf())]).await;
    assert_eq!(out.location, "/login");
    assert_eq!(c.get("/tips").await.location, "/login");
});

app_test!(staff_filter_open_and_work_a_tip_and_the_tipster_hears_it_in_telegram, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (chat, number, _card) = submit_anonymous_tip(&app, "村西头小卖部门口有人卖假药").await;
    let (_c2, second, _) = submit_anonymous_tip(&app, "小卖部门口又有人在卖假药").await;
    let c = Client::logged_in(port, "neiqin").await;

    let list = c.get("/tips").await;
    assert!(list.body.contains(&number) && list.body.contains(&second), "{}", list.body);
    assert!(list.body.contains("id=\"total\">2<"), "{}", list.body);
    let filtered = c.get("/tips?village=410184101205").await;
    assert!(filtered.body.contains("id=\"total\">0<"), "another village has none");
    let bad = c.get("/tips?from=11/01").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"from-error\">日期格式"), "the error is next to the field: {}", bad.body);

    let detail = c.get(&format!("/tips/{number}")).await;
    assert!(detail.body.contains("卖假药") && detail.body.contains("匿名"), "{}", detail.body);
    assert!(!detail.body.contains("王大娘") && !detail.body.contains("5101"), "the tipster is never named");
    let csrf = detail.csrf();
    let path = |a: &str| format!("/tips/{number}/{a}");

    // A reply typed here reaches the tipster in Telegram, from the bot, naming nobody.
    let mark = app.fake.mark();
    let replied = c.post(&path("reply"), &[("csrf", &csrf), ("text", "您好，我们已派人去核实，谢谢。")]).await;
    assert_eq!(replied.location, format!("/tips/{number}?ok=reply"));
    let relayed = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(relayed.text.contains("已派人去核实") && relayed.text.contains(&number), "{}", relayed.text);
    assert!(!relayed.text.contains("neiqin"), "{}", relayed.text);

    // Validation errors stand next to their field; nothing changes.
    let empty = c.post(&path("reply"), &[("csrf", &csrf), ("text", "  ")]).await;
    assert!(empty.body.contains("id=\"reply-error\""), "{}", empty.body);
    let no_note = c.post(&path("status"), &[("csrf", &csrf), ("status", "resolved"), ("note", "")]).await;
    assert_eq!(no_note.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(no_note.body.contains("id=\"note-error\""), "{}", no_note.body);
    let not_serving = c.post(&path("assign"), &[("csrf", &csrf), ("badge", "041206")]).await;
    assert!(not_serving.body.contains("id=\"badge-error\""), "041206 does not serve 前店村: {}", not_serving.body);
    // Without the session's token nothing happens at all.
    let forged = c.post(&path("status"), &[("csrf", "0000"), ("status", "acknowledged")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(app.store().tip_by_number(&number).await.unwrap().unwrap().status, "new");

    // Assign to the contact officer: his card arrives.
    let li = TgUser::new(6004, "赵明");
    app.enrol("041204", &li).await;
    let mark = app.fake.mark();
    let assigned = c.post(&path("assign"), &[("csrf", &csrf), ("badge", "041204")]).await;
    assert_eq!(assigned.status, StatusCode::SEE_OTHER, "{}", assigned.body);
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == li.id).await;
    assert!(card.text.contains(&number), "{}", card.text);
    c.post(&path("note"), &[("csrf", &csrf), ("text", "已电话联系村委")]).await;
    let merged = c.post(&format!("/tips/{second}/merge"), &[("csrf", &csrf), ("into", &number)]).await;
    assert_eq!(merged.status, StatusCode::SEE_OTHER, "{}", merged.body);
    let mark = app.fake.mark();
    let resolved =
        c.post(&path("status"), &[("csrf", &csrf), ("status", "resolved"), ("note", "已查处，药品已收缴")]).await;
    assert_eq!(resolved.status, StatusCode::SEE_OTHER, "{}", resolved.body);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat && m.text.contains(&number)).await;
    assert!(told.text.contains("已办结"), "the tipster hears it is done: {}", told.text);

    let done = c.get(&format!("/tips/{number}")).await;
    assert!(done.body.contains("已查处，药品已收缴") && done.body.contains("已电话联系村委"), "{}", done.body);
    assert!(done.body.contains("内勤 张丽"), "the timeline names the console account: {}", done.body);
    assert_eq!(app.store().tip_by_number(&second).await.unwrap().unwrap().status, "merged");
    let lines = audit(&app).await;
    for action in ["assign", "resolve"] {
        assert!(lines.iter().any(|l| l.starts_with(&format!("web:neiqin {action} tip:"))), "{action}: {lines:#?}");
    }
    let _ = tipster();
});

app_test!(exports_of_the_current_filter_open_in_excel, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, _) = submit_anonymous_tip(&app, "有人冒充客服打电话").await;
    let c = Client::logged_in(port, "neiqin").await;
    let (status, headers, csv) = c.get_bytes(&format!("/tips/export.csv?village={QIANDIAN}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"].to_str().unwrap().contains("tips.csv"));
    let text = String::from_utf8(csv).unwrap();
    assert!(text.starts_with("\u{feff}编号,时间,派出所"), "{text}");
    assert!(text.contains(&number) && text.contains("冒充客服"), "the tip's words for the station's use: {text}");
    let (status, _, xlsx) = c.get_bytes("/tips/export.xlsx").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&xlsx[..4], b"PK\x03\x04", "an XLSX is a zip");
    let lines = audit(&app).await;
    assert!(lines.contains(&"web:neiqin export tips csv allowed".to_string()), "{lines:#?}");
    assert!(lines.contains(&"web:neiqin export tips xlsx allowed".to_string()), "{lines:#?}");
});

app_test!(an_account_of_another_station_sees_and_does_nothing_here, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, _) = submit_anonymous_tip(&app, "有人偷电动车").await;
    let c = Client::logged_in(port, "waisuo").await;
    let list = c.get("/tips").await;
    assert!(list.body.contains("id=\"total\">0<") && !list.body.contains(&number), "{}", list.body);
    assert_eq!(c.get(&format!("/tips/{number}")).await.status, StatusCode::FORBIDDEN);
    let csrf = list.csrf();
    let reply = c.post(&format!("/tips/{number}/reply"), &[("csrf", &csrf), ("text", "你好")]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let warn = c.post("/broadcasts", &urgent_warning(&csrf, "village:410184101201", "注意")).await;
    assert_eq!(warn.status, StatusCode::FORBIDDEN);
    let registry = c.get("/registry").await;
    assert!(!registry.body.contains("和庄村"), "{}", registry.body);
    let lines = audit(&app).await;
    assert!(lines.contains(&format!("web:waisuo resolve tip:{number} denied")), "{lines:#?}");
});

app_test!(a_warning_is_previewed_sent_and_its_ledger_fills_then_it_is_taken_back, |app| {
    let port = console(&mut app).await;
    for (chat, village) in [(-100_501, "410184101201"), (-100_502, QIANDIAN)] {
        app.fake.group(chat, "群", true);
        let v = app.store().village_by_code(village).await.unwrap().unwrap();
        app.store().bind_chat_to_village("telegram", chat, "群", v.id, None).await.unwrap();
    }
    let c = Client::logged_in(port, "neiqin").await;
    let form = c.get("/broadcasts/new").await;
    assert!(form.body.contains("和庄派出所（全所）") && form.body.contains("前店村"), "{}", form.body);
    let csrf = form.csrf();
    let nothing =
        c.post("/broadcasts", &[("csrf", &csrf), ("kind", "warning"), ("severity", "urgent"), ("text", "")]).await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        nothing.body.contains("id=\"target-error\"") && nothing.body.contains("id=\"text-error\""),
        "{}",
        nothing.body
    );
    let mut fields = urgent_warning(&csrf, "village:410184101201", "近期有人冒充电力公司上门收费，请勿相信。");
    fields.push(("target", "village:410184101202"));
    let preview = c.post("/broadcasts", &fields).await;
    assert!(preview.body.contains("id=\"preview\">预览：将发送到 <strong>2</strong> 个群"), "{}", preview.body);
    assert!(app.fake.sent_to(-100_501).is_empty(), "a preview sends nothing");
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "1"));
    let sent = c.post("/broadcasts", &confirmed).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    let ledger_path = sent.location.clone();
    eventually("both groups have it", || async {
        !app.fake.sent_to(-100_501).is_empty() && !app.fake.sent_to(-100_502).is_empty()
    })
    .await;
    eventually("the ledger shows it", || async { c.get(&ledger_path).await.body.contains("id=\"sent\">2<") }).await;
    let ledger = c.get(&ledger_path).await;
    assert!(ledger.body.contains("已送达") && ledger.body.contains("冒充电力公司"), "{}", ledger.body);
    let list = c.get("/broadcasts").await;
    assert!(list.body.contains(ledger_path.as_str()), "{}", list.body);
    let cancelled = c.post(&format!("{ledger_path}/cancel"), &[("csrf", &csrf)]).await;
    assert_eq!(cancelled.status, StatusCode::SEE_OTHER);
    eventually("the messages are taken back", || async { app.fake.call_count("deleteMessage") >= 2 }).await;
});

app_test!(the_registry_shows_gaps_and_only_an_admin_issues_an_enrolment_code, |app| {
    let port = console(&mut app).await;
    let staff = Client::logged_in(port, "neiqin").await;
    let page = staff.get("/registry").await;
    assert!(page.body.contains("无群") && page.body.contains("未登记"), "{}", page.body);
    assert!(!page.body.contains("id=\"enrol-041201\""), "staff get no enrol button");
    let refused = staff.post("/registry/enrol/041201", &[("csrf", &page.csrf())]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let admin = Client::logged_in(port, "suozhang-admin").await;
    let page = admin.get("/registry").await;
    assert!(page.body.contains("id=\"enrol-041201\""), "{}", page.body);
    let issued = admin.post("/registry/enrol/041201", &[("csrf", &page.csrf())]).await;
    assert_eq!(issued.status, StatusCode::OK);
    assert_eq!(issued.headers["cache-control"], "no-store");
    let at = issued.body.find("id=\"code\">").unwrap() + 10;
    let code = &issued.body[at..at + 32];
    assert!(code.chars().all(|c| c.is_ascii_hexdigit()), "{code}");
    // The officer redeems it in Telegram.
    let officer = TgUser::new(6001, "张建国");
    let dm = app.fake.private_chat(officer.clone());
    let done = app.ask(dm, &officer, &format!("/start {code}")).await;
    assert!(done.text.contains("登记成功"), "{}", done.text);
});

app_test!(the_figures_page_opens_on_this_month_credits_each_sender_and_draws_titled_charts_on_one_scale, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    submit_anonymous_tip(&app, "有人偷井盖").await;
    app.fake.group(-100_701, "前店村群", true);
    let v = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", -100_701, "前店村群", v.id, None).await.unwrap();
    let c = Client::logged_in(port, "neiqin").await;
    let bad = c.get("/figures?month=2026-13").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"month-error\""), "{}", bad.body);

    // A warning sent from the desk counts for the station, not for an officer.
    let form = c.get("/broadcasts/new").await;
    let (csrf, target) = (form.csrf(), format!("village:{QIANDIAN}"));
    let mut fields = urgent_warning(&csrf, &target, "近期有人冒充电力公司上门收费。");
    fields.push(("confirm", "1"));
    assert_eq!(c.post("/broadcasts", &fields).await.status, StatusCode::SEE_OTHER);

    let month = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m").to_string();
    let page = c.get("/figures").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("<h2>{month} 各民警")), "opens on this month: {}", page.body);
    let row = |badge: &str| {
        let at = page.body.find(&format!("（{badge}）</td>")).unwrap_or_else(|| panic!("{badge}: {}", page.body));
        page.body[at..at + page.body[at..].find("</tr>").unwrap()].to_string()
    };
    assert!(row("041201").contains("未达每月 1 次"), "a police officer owes a warning a month");
    assert!(!row("F04121").contains("未达"), "an auxiliary does not: {}", row("F04121"));
    assert!(!row("V04101").contains("未达"), "nor a volunteer");
    let desk = &page.body[page.body.find("id=\"desk-figures\"").unwrap()..];
    assert!(desk.contains("<td>和庄派出所</td><td>1</td><td>0</td>"), "{desk}");
    // Titled charts; twelve months of tips for the station and for each village.
    assert!(page.body.contains("<h3>本月民警发布的治安预警</h3>") && page.body.contains("<h3>全所每月线索数</h3>"));
    assert!(page.body.contains("<h3>前店村（1 条）</h3>"), "this year's tips per village: {}", page.body);
    assert!(page.body.contains("<title>前店村 近 12 个月线索数</title>"), "{}", page.body);

    let (status, headers, csv) = c.get_bytes("/figures/export.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-disposition"].to_str().unwrap().contains(&format!("figures-{month}.csv")));
    let text = String::from_utf8(csv).unwrap();
    assert!(text.starts_with("\u{feff}民警,警号,派出所,发布预警"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("张建国,041201,HZPCS,0,0,1,")), "{text}");
});

app_test!(a_tips_photo_and_voice_message_are_shown_in_the_console, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let t = tipster();
    let (chat, _) = crate::tips::start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "车棚的锁被撬了").await;
    let mark = app.fake.mark();
    app.fake.send_photo(chat, &t, None);
    app.fake.send_voice(chat, &t);
    let last = app.fake.wait_for_new(mark, |m| m.chat_id == chat && m.text.contains("第3条")).await;
    let _ = got;
    let anonymity = crate::app::press(&app, chat, &t, &last, "说完了").await;
    let summary = crate::app::press(&app, chat, &t, &anonymity, "匿名").await;
    let receipt = crate::app::press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    let c = Client::logged_in(port, "neiqin").await;
    let page = c.get(&format!("/tips/{number}")).await;
    let photo = format!("/tips/{number}/media/1");
    assert!(page.body.contains(&format!("<img src=\"{photo}\"")), "{}", page.body);
    assert!(
        page.body.contains(&format!("<audio controls preload=\"none\" src=\"/tips/{number}/media/2\"")),
        "{}",
        page.body
    );
    let (status, headers, bytes) = c.get_bytes(&photo).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    // The fake serves `FILE:<path>`: the bytes are the photo's own file, fetched by its id.
    let items = app.store().tip_items(app.store().tip_by_number(&number).await.unwrap().unwrap().id).await.unwrap();
    let cunjing::store::tips::TipItem::Photo { file_id } = &items[1] else { panic!("{items:?}") };
    assert_eq!(String::from_utf8(bytes).unwrap(), format!("FILE:photos/{file_id}.jpg"));
    assert_eq!(c.get(&format!("/tips/{number}/media/0")).await.status, StatusCode::NOT_FOUND, "the text is no file");
    let outsider = Client::logged_in(port, "waisuo").await;
    assert_eq!(outsider.get(&photo).await.status, StatusCode::FORBIDDEN);
});

/// The headers every answer of the console must carry (issue #23): no script may run, no
/// other site may frame a page, no type guessing, no address leaks to links.
fn assert_security_headers(path: &str, headers: &reqwest::header::HeaderMap) {
    let csp = headers.get("content-security-policy").map(|v| v.to_str().unwrap()).unwrap_or("");
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: CSP {csp:?}");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{path}: no inline script: {csp:?}");
    assert_eq!(headers.get("x-content-type-options").map(|v| v.to_str().unwrap()), Some("nosniff"), "{path}");
    assert_eq!(headers.get("referrer-policy").map(|v| v.to_str().unwrap()), Some("no-referrer"), "{path}");
}

app_test!(every_console_answer_forbids_script_and_framing_and_no_page_with_personal_data_is_stored, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, _) = submit_anonymous_tip(&app, "有人在河边电鱼").await;
    let anonymous = Client::new(port);
    let login = anonymous.get("/login").await;
    assert_security_headers("/login", &login.headers);
    assert!(login.body.contains("<link rel=\"stylesheet\" href=\"/static/console.css\">"), "{}", login.body);
    let (status, headers, css) = anonymous.get_bytes("/static/console.css").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/css"));
    assert!(String::from_utf8(css).unwrap().contains("header {"), "the pages' style is in the stylesheet");
    assert_security_headers("/static/console.css", &headers);
    let (status, headers, js) = anonymous.get_bytes("/static/console.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(String::from_utf8(js).unwrap().contains("data-confirm"), "the cancel question is asked from here");

    let c = Client::logged_in(port, "neiqin").await;
    let csrf = c.get("/broadcasts/new").await.csrf();
    let mut fields = urgent_warning(&csrf, "village:410184101201", "近期有人电鱼");
    fields.push(("confirm", "1"));
    let ledger = c.post("/broadcasts", &fields).await.location;
    assert!(ledger.starts_with("/broadcasts/"), "{ledger}");
    let pages = [
        ledger,
        "/tips".to_string(),
        format!("/tips/{number}"),
        "/broadcasts".into(),
        "/broadcasts/new".into(),
        "/registry".into(),
        "/figures".into(),
        "/no/such/page".into(),
    ];
    for path in &pages {
        let page = c.get(path).await;
        assert_security_headers(path, &page.headers);
        assert_eq!(page.headers.get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"), "{path}");
        // What the policy forbids must not be on the page, or the page would break.
        for inline in ["<style", "style=", "onclick", "onchange", "onsubmit", "javascript:"] {
            assert!(!page.body.contains(inline), "{path} has {inline}: {}", page.body);
        }
        let scripts = page.body.matches("<script").count();
        assert_eq!(scripts, page.body.matches("<script src=\"/static/").count(), "{path}: inline script");
    }
    let (status, headers, _) = c.get_bytes("/tips/export.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_security_headers("export.csv", &headers);
    assert_eq!(headers["cache-control"], "no-store", "the export holds personal data");
    let outsider = Client::logged_in(port, "waisuo").await;
    let refused = outsider.get(&format!("/tips/{number}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_security_headers("a refusal", &refused.headers);
});

/// A login answer with what differs between two answers anyway taken out: the form's fresh
/// token and the name typed, given back in its field.
fn login_answer(page: &crate::web::Page, username: &str) -> (StatusCode, String) {
    let body = page.body.replace(&page.csrf(), "TOKEN").replace(&format!("value=\"{username}\""), "value=\"NAME\"");
    (page.status, body)
}

app_test!(a_refused_login_says_nothing_about_which_of_name_password_or_code_was_wrong, |app| {
    let port = console(&mut app).await;
    let c = Client::new(port);
    let wrong_password = c.login("suozhang-admin", "wrong password", "").await;
    let no_code = c.login("suozhang-admin", PASSWORD, "").await;
    let wrong_code = c.login("suozhang-admin", PASSWORD, "000000").await;
    let unknown = c.login("suozhang-admim", PASSWORD, "").await;
    let expected = login_answer(&wrong_password, "suozhang-admin");
    assert_eq!(expected.0, StatusCode::UNAUTHORIZED);
    assert!(expected.1.contains("id=\"login-error\">用户名、密码或动态验证码不对"), "{}", expected.1);
    assert!(expected.1.contains("id=\"password\""), "the form again: {}", expected.1);
    for (what, page, name) in [
        ("a right password without the code", &no_code, "suozhang-admin"),
        ("a right password with a wrong code", &wrong_code, "suozhang-admin"),
        ("an unknown name", &unknown, "suozhang-admim"),
    ] {
        assert_eq!(login_answer(page, name), expected, "{what} is answered as a wrong password is");
    }
    assert_eq!(audit(&app).await.iter().filter(|l| l.ends_with("web_login console denied")).count(), 4);
});

app_test!(sending_a_refused_login_form_again_shows_a_fresh_form_that_works, |app| {
    let port = console(&mut app).await;
    let c = Client::new(port);
    let old = c.get("/login").await.csrf();
    let form = [("csrf", old.as_str()), ("username", "neiqin"), ("password", "wrong password"), ("totp", "")];
    let refused = c.post("/login", &form).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let fresh = c.get("/login").await;
    assert_eq!(fresh.status, StatusCode::OK);
    assert!(fresh.body.contains("id=\"password\"") && !fresh.body.contains("login-error"), "{}", fresh.body);
    // The browser's refresh sends the same form again, with a token since replaced.
    let again = c.post("/login", &form).await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
    assert!(again.body.contains("id=\"password\"") && !again.body.contains("表单已过期"), "{}", again.body);
    assert_ne!(again.csrf(), old, "a fresh form");
    let csrf = again.csrf();
    let ok = c
        .post("/login", &[("csrf", csrf.as_str()), ("username", "neiqin"), ("password", PASSWORD), ("totp", "")])
        .await;
    assert_eq!((ok.status, ok.location.as_str()), (StatusCode::SEE_OTHER, "/tips"), "{}", ok.body);
    // Logged in, the header names the station, not its code.
    let tips = c.get("/tips").await;
    assert!(tips.body.contains("id=\"station\">和庄派出所<"), "{}", tips.body);
    assert!(!tips.body.contains("HZPCS"), "{}", tips.body);
});

/// Where each of `needles` first appears in `haystack` after `from`, in order; panics when one
/// is missing.
fn positions(haystack: &str, from: &str, needles: &[&str]) -> Vec<usize> {
    let start = haystack.find(from).unwrap_or_else(|| panic!("no {from:?} in {haystack}"));
    needles
        .iter()
        .map(|n| start + haystack[start..].find(n).unwrap_or_else(|| panic!("no {n:?} after {from:?}: {haystack}")))
        .collect()
}

fn ascending(v: &[usize]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

app_test!(menus_offer_statuses_by_lifecycle_warnings_before_notices_and_the_most_urgent_first, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, _) = submit_anonymous_tip(&app, "有人在桥下电鱼").await;
    let c = Client::logged_in(port, "neiqin").await;
    let list = c.get("/tips").await;
    let statuses = ["全部", "未办结", ">待受理<", ">已受理<", ">处理中<", ">已办结<", ">不予受理<", ">已合并<"];
    assert!(ascending(&positions(&list.body, "id=\"f-status\"", &statuses)), "{}", list.body);
    let compose = c.get("/broadcasts/new").await;
    assert!(
        ascending(&positions(&compose.body, "id=\"compose\"", &["> 治安预警</label>", "> 通知</label>"])),
        "{}",
        compose.body
    );
    assert!(
        ascending(&positions(&compose.body, "id=\"compose\"", &["> 紧急</label>", "> 重要</label>", "> 一般</label>"])),
        "{}",
        compose.body
    );

    // The 新状态 menu starts on what comes next, and offers nothing the tip has passed.
    let menu = |body: &str| -> Vec<String> {
        let start = body.find("id=\"status\"").expect("the status menu");
        let end = start + body[start..].find("</select>").unwrap();
        body[start..end].split("<option value=\"").skip(1).map(|o| o.split('"').next().unwrap().to_string()).collect()
    };
    let detail = c.get(&format!("/tips/{number}")).await;
    assert_eq!(menu(&detail.body), ["acknowledged", "in_progress", "resolved", "rejected"]);
    assert!(detail.body.contains("<option value=\"acknowledged\" selected>已受理"), "{}", detail.body);
    let csrf = detail.csrf();
    let taken = c.post(&format!("/tips/{number}/status"), &[("csrf", &csrf), ("status", "acknowledged")]).await;
    assert_eq!(taken.status, StatusCode::SEE_OTHER, "{}", taken.body);
    let detail = c.get(&format!("/tips/{number}")).await;
    assert_eq!(menu(&detail.body), ["in_progress", "resolved", "rejected"]);
    assert!(detail.body.contains("<option value=\"in_progress\" selected>处理中"), "{}", detail.body);
});

/// The rows of a CSV export as (header → value) maps, after its byte-order mark.
fn csv_rows(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let body = text.strip_prefix('\u{feff}').expect("a BOM, so Excel reads UTF-8");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| headers.iter().zip(r.unwrap().iter()).map(|(h, v)| (h.to_string(), v.to_string())).collect())
        .collect()
}

app_test!(the_export_speaks_chinese_carries_the_text_never_the_anonymous_tipster_and_runs_no_formula, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let formula = "=HYPERLINK(\"http://evil.example/\",\"点我\") 村口有人偷电瓶";
    let (chat, number, _) = submit_anonymous_tip(&app, formula).await;
    let c = Client::logged_in(port, "neiqin").await;
    let (status, _, bytes) = c.get_bytes("/tips/export.csv").await;
    assert_eq!(status, StatusCode::OK);
    let rows = csv_rows(&bytes);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["编号"], number);
    assert_eq!(row["派出所"], "和庄派出所");
    assert_eq!(row["类别"], "盗窃");
    assert_eq!(row["来源"], "私聊");
    assert_eq!(row["状态"], "待受理");
    assert_eq!(row["匿名"], "是");
    assert_eq!(row["内容"], format!("'{formula}"), "the text, shown as text, not run as a formula");
    let all = String::from_utf8(bytes).unwrap();
    let tipster = tipster();
    for identity in [tipster.first_name.as_str(), &tipster.id.to_string(), &chat.to_string()] {
        assert!(!all.contains(identity), "the anonymous tipster ({identity}) is in the export: {all}");
    }
    for code in ["theft", "private", "new", "HZPCS"] {
        assert!(!all.contains(code), "{code} is a code, not what the station reads: {all}");
    }
});

/// The number in `<strong>` after `marker` on a page.
fn number_after(body: &str, marker: &str) -> i64 {
    let at = body.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {body}")) + marker.len();
    let rest = &body[at..];
    let start = rest.find("<strong").unwrap();
    let start = start + rest[start..].find('>').unwrap() + 1;
    let end = start + rest[start..].find('<').unwrap();
    rest[start..end].trim().parse().unwrap_or_else(|_| panic!("no number after {marker:?}: {rest}"))
}

app_test!(the_preview_counts_every_group_and_robot_the_send_reaches_and_pages_name_the_scope_and_sender, |app| {
    let port = console(&mut app).await;
    let store = app.store();
    let hezhuang = store.village_by_code("410184101201").await.unwrap().unwrap();
    app.fake.group(-100_701, "和庄村村民群", true);
    store.bind_chat_to_village("telegram", -100_701, "和庄村村民群", hezhuang.id, None).await.unwrap();
    store.bind_chat_to_village("wecom", 9_001, "和庄村企业微信群", hezhuang.id, None).await.unwrap();
    for sql in [
        "UPDATE villages SET wecom_webhook = 'http://127.0.0.1:9/robot-qiandian' WHERE code = '410184101202'",
        "UPDATE offices SET wecom_webhook = 'http://127.0.0.1:9/robot-office' WHERE code = 'HZ01'",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    let c = Client::logged_in(port, "neiqin").await;
    let csrf = c.get("/broadcasts/new").await.csrf();
    let fields = urgent_warning(&csrf, "station:HZPCS", "近期有人冒充民警打电话，请勿转账。");
    let preview = c.post("/broadcasts", &fields).await;
    let promised = number_after(&preview.body, "id=\"preview\"");
    assert!(promised >= 4, "a Telegram group, a WeCom group and two robots at least: {}", preview.body);
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "1"));
    let ledger_path = c.post("/broadcasts", &confirmed).await.location;
    let ledger = c.get(&ledger_path).await;
    assert_eq!(number_after(&ledger.body, "<span>共 "), promised, "the send reaches what the preview said");
    assert!(ledger.body.contains("和庄村企业微信群") && ledger.body.contains("企业微信群机器人"), "{}", ledger.body);
    assert!(ledger.body.contains("id=\"scope\">和庄派出所（全所）<"), "{}", ledger.body);
    assert!(ledger.body.contains("id=\"sender\">内勤 张丽<"), "{}", ledger.body);
    let list = c.get("/broadcasts").await;
    for page in [&ledger.body, &list.body] {
        assert!(!page.contains("station:HZPCS") && !page.contains("web:neiqin"), "codes shown: {page}");
    }
    assert!(list.body.contains("和庄派出所（全所）") && list.body.contains("内勤 张丽"), "{}", list.body);
});

/// The compose form's fields for an urgent warning (a preview until `confirm` is added).
fn urgent_warning<'a>(csrf: &'a str, target: &'a str, text: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("csrf", csrf), ("kind", "warning"), ("severity", "urgent"), ("target", target), ("text", text)]
}

app_test!(a_tip_prints_for_the_case_file_with_its_timeline_and_no_forms_and_the_list_prints_as_filtered, |app| {
    app.enrol("041201", &zhang()).await;
    let port = console(&mut app).await;
    let (_chat, number, card) = submit_anonymous_tip(&app, "有人半夜在仓库附近转悠").await;
    crate::app::press(&app, zhang().id, &zhang(), &card, "受理").await;
    let c = Client::logged_in(port, "neiqin").await;

    let detail = c.get(&format!("/tips/{number}")).await;
    assert!(detail.body.contains(&format!("href=\"/tips/{number}/print\"")), "the tip page links its print view");
    let print = c.get(&format!("/tips/{number}/print")).await;
    assert_eq!(print.status, StatusCode::OK);
    assert!(
        !print.body.contains("<form") && !print.body.contains("<header"),
        "no forms, no navigation: {}",
        print.body
    );
    assert!(print.body.contains("和庄派出所"), "the station's name heads the page");
    assert!(print.body.contains(&number) && print.body.contains("仓库附近转悠"));
    assert!(
        print.body.contains("id=\"timeline\"") && print.body.contains("警号 041201"),
        "the timeline with who did what"
    );
    assert!(print.body.contains("匿名"));
    let t = tipster();
    assert!(
        !print.body.contains(&t.first_name) && !print.body.contains(&t.id.to_string()),
        "never the anonymous tipster"
    );
    assert_eq!(print.headers["cache-control"], "no-store");
    assert!(print.headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));

    let list = c.get("/tips/print?status=acknowledged").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&number) && !list.body.contains("<form"), "{}", list.body);
    let none = c.get("/tips/print?status=resolved").await;
    assert!(!none.body.contains(&number) && none.body.contains("id=\"total\">0<"), "the filter holds: {}", none.body);
    assert!(audit(&app).await.contains(&"web:neiqin export tips print allowed".to_string()), "printing is audited");
});

/// The password on a reset page (`id="password"`).
fn shown(page: &Page, id: &str) -> String {
    let at =
        page.body.find(&format!("id=\"{id}\">")).unwrap_or_else(|| panic!("no #{id}: {}", page.body)) + id.len() + 6;
    page.body[at..at + page.body[at..].find('<').unwrap()].to_string()
}

app_test!(a_station_admin_locks_unlocks_and_resets_the_accounts_of_the_station_and_no_other, |app| {
    let port = console(&mut app).await;
    let hz = app.store().station_id("HZPCS").await.unwrap();
    let hash = cunjing::web::hash_password(PASSWORD).unwrap();
    app.store()
        .upsert_web_user("fuzhang", hz, cunjing::domain::Grant::Admin, &hash, Some(ADMIN_TOTP), 0)
        .await
        .unwrap();
    let staff = Client::logged_in(port, "neiqin").await;
    assert_eq!(staff.get("/accounts").await.status, StatusCode::FORBIDDEN);
    assert_eq!(staff.get("/audit").await.status, StatusCode::FORBIDDEN);
    assert!(!staff.get("/tips").await.body.contains("href=\"/accounts\""), "no such menu for staff");

    let admin = Client::logged_in(port, "suozhang-admin").await;
    let list = admin.get("/accounts").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains("id=\"account-neiqin\"") && list.body.contains("张丽"), "{}", list.body);
    assert!(!list.body.contains("waisuo"), "another station's account is not listed");
    let csrf = list.csrf();
    let post = |path: String| {
        let (admin, csrf) = (&admin, csrf.clone());
        async move { admin.post(&path, &[("csrf", csrf.as_str())]).await }
    };
    assert_eq!(post("/accounts/waisuo/lock".into()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(post("/accounts/suozhang-admin/lock".into()).await.status, StatusCode::FORBIDDEN, "not oneself");
    assert_eq!(admin.post("/accounts/neiqin/lock", &[("csrf", "0")]).await.status, StatusCode::FORBIDDEN);

    // Locked: the open session ends and the right password no longer logs in.
    assert_eq!(post("/accounts/neiqin/lock".into()).await.location, "/accounts?ok=lock");
    assert_eq!(staff.get("/tips").await.location, "/login");
    let refused = Client::new(port).login("neiqin", PASSWORD, "").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(admin.get("/accounts").await.body.contains("已停用"));
    post("/accounts/neiqin/unlock".into()).await;
    Client::logged_in(port, "neiqin").await;

    // A reset: a new password shown once; the old one no longer works.
    let reset = post("/accounts/neiqin/reset".into()).await;
    let password = shown(&reset, "password");
    assert_eq!(password.len(), 16, "{}", reset.body);
    assert!(!reset.body.contains("id=\"totp\""), "neiqin has no second factor to renew");
    assert_eq!(Client::new(port).login("neiqin", PASSWORD, "").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(Client::new(port).login("neiqin", &password, "").await.location, "/tips");
    // An admin's reset renews the second factor too.
    let reset = post("/accounts/fuzhang/reset".into()).await;
    let secret = shown(&reset, "totp");
    assert_ne!(secret, ADMIN_TOTP);
    let user = app.store().web_user_by_name("fuzhang").await.unwrap().unwrap();
    assert_eq!(user.totp_secret.as_deref(), Some(secret.as_str()));

    // The audit view: the station's people, filtered; another station's people never.
    Client::logged_in(port, "waisuo").await;
    let audit = admin.get("/audit?actor=web%3Aneiqin&action=web_login").await;
    assert!(audit.body.contains("登录工作台") && number_after(&audit.body, "<p>共 ") >= 3, "{}", audit.body);
    assert!(!audit.body.contains("<td>web:suozhang-admin</td>"), "filtered by actor: {}", audit.body);
    let denied = admin.get("/audit?result=denied").await;
    assert!(
        denied.body.contains("account:waisuo lock") && denied.body.contains("account:suozhang-admin lock"),
        "{}",
        denied.body
    );
    assert!(!denied.body.contains("<td>允许</td>"), "{}", denied.body);
    assert_eq!(number_after(&admin.get("/audit?actor=web%3Awaisuo").await.body, "<p>共 "), 0);
    let all = admin.get("/audit").await;
    assert!(all.body.contains("account:neiqin reset"), "the admin's own actions are in it: {}", all.body);
    let bad = admin.get("/audit?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.body.contains("id=\"from-error\""));
});
