//! The `cunjing` binary as an operator uses it: the console demo, registry import with bad
//! files, enrolment codes, chat binding from the command line.

use std::path::{Path, PathBuf};
use std::process::Output;

use tokio::io::AsyncWriteExt;

use crate::app::{example_dir, example_registry_with};

fn config_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/cunjing.toml")
}

/// Runs `cunjing ARGS` with a clean environment (no token, the given database), feeding
/// `stdin`.
pub async fn cunjing(args: &[&str], db_url: &str, stdin: &str) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cunjing"));
    cmd.env_clear()
        .env("CUNJING_CONFIG", config_path())
        .env("CUNJING__DEMO__DATABASE_URL", db_url)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if !args.is_empty() {
        cmd.env("DATABASE_URL", db_url);
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// The daemon binary on `url`, serving `fake` (stdin closed; output to the caller to choose).
pub fn daemon_command(url: &str, fake: &crate::fake_telegram::FakeTelegram) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cunjing"));
    cmd.env_clear()
        .env("CUNJING_CONFIG", config_path())
        .env("DATABASE_URL", url)
        .env("TELOXIDE_TOKEN", crate::fake_telegram::TOKEN)
        .env("TELOXIDE_API_URL", fake.api_url().as_str())
        .env("CUNJING__TELEGRAM__POLL_TIMEOUT_SECS", "1")
        // A killed daemon's sends are taken over 3 heartbeats after its last.
        .env("CUNJING__GENERAL__HEARTBEAT_SECS", "1")
        .args(["run"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A second connection to the database the binary uses, for setting up and checking.
pub async fn open_store(url: &str) -> cunjing::store::Store {
    let options = cunjing::store::StoreOptions {
        url: url.to_string(),
        max_connections: 1,
        busy_timeout: std::time::Duration::from_secs(5),
    };
    cunjing::store::Store::connect(&options).await.unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("cunjing.sqlite").display())
}

#[tokio::test]
async fn the_console_demo_answers_a_newcomers_contact_question() {
    let dir = tempfile::tempdir().unwrap();
    let out = cunjing(&[], &sqlite_url(dir.path()), "我们村民警电话多少\n").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("DEMO"), "the demo announces itself:\n{stdout}");
    for expected in ["和庄村 警民联系卡", "张建国", "13903710121", "0371-62581110"] {
        assert!(stdout.contains(expected), "missing {expected:?}:\n{stdout}");
    }
}

#[tokio::test]
async fn the_console_plays_an_officer_and_a_private_chat() {
    let dir = tempfile::tempdir().unwrap();
    let script = "/as officer 041201\n/in private\n/whoami\n/as resident\n/in private\n前店\n/press 1\n";
    let out = cunjing(&[], &sqlite_url(dir.path()), script).await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("您已登记为：张建国"), "{stdout}");
    assert!(stdout.contains("和庄村（驻村民警）"), "{stdout}");
    assert!(stdout.contains("[1] 前店村"), "the name search offers buttons:\n{stdout}");
    assert!(stdout.contains("前店村 警民联系卡"), "pressing the button shows the card:\n{stdout}");
}

#[tokio::test]
async fn a_malformed_registry_is_rejected_with_every_bad_line_and_nothing_imported() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    let reg = example_registry_with(&[
        ("villages.csv", "410184101203,后店村,village,HZ01", "410184101203,后店村,village,HZ09"),
        ("officers.csv", "13903710122", "1390371"),
        ("assignments.csv", "410184101204,041202,resident,2024-03-01", "410184101204,041202,boss,2024-13-01"),
    ]);
    let dir = reg.path().to_str().unwrap();
    let out = cunjing(&["registry", "import", dir], &url, "").await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a bad registry must fail:\n{stderr}");
    for expected in ["villages.csv:4:", "officers.csv:3:", "assignments.csv:15:", "nothing was imported"] {
        assert!(stderr.contains(expected), "missing {expected:?}:\n{stderr}");
    }
    let store = open_store(&url).await;
    assert!(store.all_villages().await.unwrap().is_empty(), "nothing was half-imported");
}

#[tokio::test]
async fn officer_enrol_prints_a_one_time_code_and_its_deep_link() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    let imported = cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    assert!(imported.status.success(), "{}", text(&imported.stderr));

    let out = cunjing(&["officer", "enrol", "041201", "--json"], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    let code = json["code"].as_str().unwrap();
    assert_eq!(code.len(), 32);
    assert!(code.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(json["deep_link"].as_str().unwrap().ends_with(&format!("?start={code}")));
    assert_eq!(json["name"], "张建国");

    let unknown = cunjing(&["officer", "enrol", "999999"], &url, "").await;
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("No officer with badge"), "{}", text(&unknown.stderr));
}

#[tokio::test]
async fn a_console_account_is_made_with_the_name_its_actions_are_shown_by() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let args = ["staff", "add", "neiqin", "--station", "HZPCS", "--role", "staff", "--name", "张丽"];
    let made = cunjing(&args, &url, "a long passphrase\n").await;
    assert!(made.status.success(), "{}", text(&made.stderr));
    let long = "张".repeat(33);
    let refused = cunjing(
        &["staff", "add", "other", "--station", "HZPCS", "--role", "staff", "--name", &long],
        &url,
        "a long passphrase\n",
    )
    .await;
    assert!(!refused.status.success() && text(&refused.stderr).contains("--name"), "{}", text(&refused.stderr));
    let store = open_store(&url).await;
    let user = store.web_user_by_name("neiqin").await.unwrap().unwrap();
    assert_eq!(user.display_name.as_deref(), Some("张丽"));
    assert!(store.web_user_by_name("other").await.unwrap().is_none(), "nothing half made");
}

#[tokio::test]
async fn station_roles_are_granted_from_the_command_line_and_every_command_is_audited() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let granted = cunjing(&["officer", "grant", "041205", "--role", "staff"], &url, "").await;
    assert!(granted.status.success(), "{}", text(&granted.stderr));
    let bad = cunjing(&["officer", "grant", "041205", "--role", "boss"], &url, "").await;
    assert!(!bad.status.success() && text(&bad.stderr).contains("staff"), "{}", text(&bad.stderr));
    let store = open_store(&url).await;
    let officer = store.officer_by_badge("041205").await.unwrap().unwrap();
    let actor = store.actor_of_officer(officer.id, "2026-11-23").await.unwrap();
    assert_eq!(actor.role, cunjing::authz::Role::StationStaff);
    cunjing(&["officer", "revoke", "041205"], &url, "").await;
    let actor = store.actor_of_officer(officer.id, "2026-11-23").await.unwrap();
    assert_eq!(actor.role, cunjing::authz::Role::Officer);

    let out = cunjing(&["audit", "--since", "2000-01-01", "--csv"], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert!(csv.starts_with('\u{feff}'), "a BOM for Excel");
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "at,actor,action,target,result,detail");
    let rows: Vec<String> = lines[1..].iter().map(|l| l.split(',').skip(1).collect::<Vec<_>>().join(",")).collect();
    assert!(rows[0].starts_with("cli,registry_import,"), "{rows:?}");
    assert_eq!(rows[1], "cli,enrol,officer:041205 grant staff,allowed,");
    assert_eq!(rows[2], "cli,enrol,officer:041205 revoke,allowed,");
    assert_eq!(rows[3], "cli,audit_read,since 2000-01-01,allowed,", "reading the log is itself on record");
}

#[tokio::test]
async fn chat_bind_from_the_command_line_binds_a_group_to_a_village() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let out = cunjing(&["chat", "bind", "-1001234", "410184101205"], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list = cunjing(&["chat", "list", "--json"], &url, "").await;
    let chats: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(chats[0]["chat_id"], -1001234);
    assert!(chats[0]["village_id"].is_i64());
    assert_eq!(chats[0]["village_code"], "410184101205", "the code, not only the internal id (issue #20)");
    assert!(chats[0]["title"].is_string());
    // Not on a terminal: the log lines on stderr carry no colour codes, stdout only JSON.
    assert!(!text(&list.stderr).contains('\u{1b}'), "{}", text(&list.stderr));
}

/// A tip filed privately and anonymously from the Telegram chat 987654321, as the store
/// receives it.
fn anonymous_tip(village_id: i64, category: &str, text: &str, day: &str) -> cunjing::store::tips::NewTip {
    cunjing::store::tips::NewTip {
        village_id,
        reported_village_id: None,
        category: category.into(),
        source: cunjing::domain::TipSource::Private,
        anonymous: true,
        contact_phone: None,
        items: vec![cunjing::store::tips::TipItem::Text { text: text.into() }],
        reporter_platform: "telegram".into(),
        reporter_chat_id: 987_654_321,
        day: day.into(),
    }
}

#[tokio::test]
async fn tips_export_writes_an_excel_readable_csv_without_the_tipster() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let store = open_store(&url).await;
    let village = store.village_by_code("410184101202").await.unwrap().unwrap();
    let receipt =
        store.create_tip(&anonymous_tip(village.id, "fraud", "有人冒充客服打电话, 让转账", "20261123")).await.unwrap();
    store.close().await;

    let file = db.path().join("tips.csv");
    let out = cunjing(&["tips", "export", "--csv", file.to_str().unwrap()], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with("\u{feff}".as_bytes()), "a BOM, so Excel reads UTF-8");
    let body = String::from_utf8(bytes[3..].to_vec()).unwrap();
    assert!(!body.contains("987654321"), "the tipster's chat is not exported:\n{body}");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let field = |name: &str| rows[0][headers.iter().position(|h| h == name).unwrap()].to_string();
    assert_eq!(field("number"), receipt.number);
    assert_eq!(field("village"), "前店村");
    assert_eq!(field("anonymous"), "yes");
    assert_eq!(field("text"), "有人冒充客服打电话, 让转账", "a comma inside the text stays in one field");

    let shown = cunjing(&["tips", "show", &receipt.number], &url, "").await;
    let shown = text(&shown.stdout);
    assert!(shown.contains("created") && shown.contains("anonymous"), "{shown}");
    let listed = cunjing(&["tips", "list", "--status", "open", "--json"], &url, "").await;
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    let none = cunjing(&["tips", "list", "--status", "resolved", "--json"], &url, "").await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&none.stdout).unwrap().as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_cli_tips_export_shows_a_tip_that_begins_like_a_formula_as_text() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let store = open_store(&url).await;
    let village = store.village_by_code("410184101202").await.unwrap().unwrap();
    let formula = "=HYPERLINK(\"http://evil.example/\") 有人偷电瓶";
    for (text, day) in [(formula, "20261123"), ("-1+1 有人打架", "20261124"), ("@所有人 注意", "20261125")] {
        store.create_tip(&anonymous_tip(village.id, "theft", text, day)).await.unwrap();
    }
    store.close().await;
    let file = db.path().join("tips.csv");
    let out = cunjing(&["tips", "export", "--csv", file.to_str().unwrap()], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = std::fs::read_to_string(&file).unwrap();
    let mut reader = csv::Reader::from_reader(body.trim_start_matches('\u{feff}').as_bytes());
    let column = reader.headers().unwrap().iter().position(|h| h == "text").unwrap();
    let mut texts: Vec<String> = reader.records().map(|r| r.unwrap()[column].to_string()).collect();
    texts.sort();
    let mut expected = [format!("'{formula}"), "'-1+1 有人打架".to_string(), "'@所有人 注意".to_string()];
    expected.sort();
    assert_eq!(texts, expected, "each shown as text by a spreadsheet, not run");
}

/// The whole daemon as a process against the fake Telegram: a tipster reports anonymously,
/// the officer replies; then the logs are searched for what must never be in them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_logs_hold_no_token_no_tipster_id_and_no_tip_text() {
    use crate::fake_telegram::{FakeTelegram, TOKEN, TgUser, buttons};
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let fake = FakeTelegram::start().await;
    let child = daemon_command(&url, &fake)
        .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "100")
        .env("RUST_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    let officer = TgUser::new(6001, "张建国");
    let ochat = fake.private_chat(officer.clone());
    let store = open_store(&url).await;
    let code = store.issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
    fake.send_text(ochat, &officer, &format!("/start {}", code.code));
    fake.wait_for_sent(|m| m.chat_id == ochat && m.text.contains("登记成功")).await;

    let secret_text = "隔壁老李家后院藏着偷来的电动车";
    let tipster = TgUser::new(5_123_456_789, "王秘密");
    let chat = fake.private_chat(tipster.clone());
    let step = |pred: &'static str| {
        let fake = fake.clone();
        async move { fake.wait_for_sent(|m| m.chat_id == 5_123_456_789 && m.text.contains(pred)).await }
    };
    // Telegram drops connections now and then: the errors are logged (reqwest's carry the
    // request URL, token included) and retried.
    fake.fail_next("getUpdates", crate::fake_telegram::Fault::Disconnect, 1);
    fake.fail_next("sendMessage", crate::fake_telegram::Fault::Disconnect, 1);
    fake.send_text(chat, &tipster, "/start tip_410184101202");
    let cats = step("请选择").await;
    fake.press_button(chat, &tipster, cats.message_id, "t:cat:theft");
    step("发生了什么").await;
    fake.send_text(chat, &tipster, secret_text);
    let got = step("第1条").await;
    fake.press_button(chat, &tipster, got.message_id, "t:done");
    let anon = step("是否匿名").await;
    fake.press_button(chat, &tipster, anon.message_id, "t:anon");
    let summary = step("请确认").await;
    let (_, confirm) = buttons(&summary).into_iter().find(|(l, _)| l.contains("确认")).unwrap();
    fake.press_button(chat, &tipster, summary.message_id, &confirm);
    step("已提交").await;
    fake.wait_for_sent(|m| m.chat_id == ochat && m.text.contains(secret_text)).await;

    let pid = child.id().unwrap().to_string();
    let term = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term.success());
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "SIGTERM ends the daemon cleanly: {:?}", out.status);
    let logs = text(&out.stderr);
    assert!(logs.contains("tip committed") && logs.contains("stopped cleanly"), "the logs were captured:\n{logs}");
    assert!(logs.contains("A network error"), "the dropped connections were logged:\n{logs}");
    // Before exiting, the daemon confirmed every update it took: none comes again.
    assert_eq!(fake.pending_updates(), 0, "the polling offset was confirmed at the stop");
    for secret in [TOKEN, "5123456789", secret_text, "王秘密"] {
        let hits: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).take(5).collect();
        assert!(hits.is_empty(), "the logs contain {secret:?}:\n{}", hits.join("\n"));
    }
}

#[tokio::test]
async fn triage_prints_one_json_verdict_per_line_of_stdin_and_evaluates_a_corpus() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let out =
        cunjing(&["triage"], &url, "有人在村口打架了\n我们村民警电话多少\n俺家羊被偷了\n路灯坏了\n今天赶集\n").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let verdicts: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(verdicts.len(), 5);
    assert_eq!((verdicts[0]["intent"].as_str(), verdicts[0]["kind"].as_str()), (Some("emergency"), Some("police")));
    assert_eq!(verdicts[1]["intent"], "contact_query");
    assert_eq!((verdicts[2]["intent"].as_str(), verdicts[2]["category"].as_str()), (Some("tip"), Some("theft")));
    assert_eq!(
        (verdicts[3]["intent"].as_str(), verdicts[3]["topic"].as_str()),
        (Some("non_police"), Some("streetlight"))
    );
    assert_eq!((verdicts[4]["intent"].as_str(), verdicts[4]["layer"].as_str()), (Some("chatter"), Some("model")));
    // Which layer decided, and how sure the model was (issue #19).
    assert_eq!(verdicts[0]["layer"], "rule");
    assert!(verdicts[4]["confidence"].as_f64().is_some_and(|c| c > 0.5), "{}", verdicts[4]);
    let rules_only = cunjing(&["triage", "--no-model"], &url, "今天赶集\n").await;
    let plain: serde_json::Value = serde_json::from_str(text(&rules_only.stdout).trim()).unwrap();
    assert_eq!(plain, serde_json::json!({"intent": "chatter", "layer": "default", "rule": null}));

    let forwarded = cunjing(&["triage", "--forwarded"], &url, "村东头着火了\n").await;
    assert!(text(&forwarded.stdout).contains("\"rule\":\"context.forwarded\""), "{}", text(&forwarded.stdout));

    let corpus = dir.path().join("corpus.tsv");
    std::fs::write(
        &corpus,
        "# two right, one wrong\nemergency/fire\t-\t着火了\nchatter\t-\t你好\ntip/theft\t-\t你好啊\n",
    )
    .unwrap();
    let eval = cunjing(&["triage", "--evaluate", corpus.to_str().unwrap(), "--misses"], &url, "").await;
    let report = text(&eval.stdout);
    assert!(report.contains("3 messages: intent accuracy 66.7 % (2 / 3)"), "{report}");
    assert!(report.contains("corpus.tsv:4: expected tip/theft, got chatter"), "{report}");
}

/// SIGHUP reloads the triage rules of a running daemon; a bad file is refused and the rules
/// in force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_triage_rules_without_a_restart() {
    use crate::fake_telegram::{FakeTelegram, TgUser};
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    let rules = db.path().join("intents.toml");
    let shipped = crate::triage::shipped_rules_anywhere();
    std::fs::write(&rules, &shipped).unwrap();
    let fake = FakeTelegram::start().await;
    let mut child = daemon_command(&url, &fake)
        .env("CUNJING__PATHS__INTENTS_FILE", &rules)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let log = DaemonLog::follow(child.stderr.take().unwrap());
    // The 12345 pointer goes once per person and topic: each question from someone new.
    let ask = |n: i64, text: &'static str| {
        let fake = fake.clone();
        let user = TgUser::new(5_400_000 + n, "村民");
        let chat = fake.private_chat(user.clone());
        async move {
            let mark = fake.mark();
            fake.send_text(chat, &user, text);
            fake.wait_for_new(mark, |m| m.chat_id == chat).await.text
        }
    };
    let question = "村里的老槐树让雷劈倒了";
    assert!(!ask(0, question).await.contains("12345"), "not a rule yet");
    let hangup = |pid: u32| std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    let pid = child.id().unwrap();

    let tree_rule = "\n[[rules]]\nname = \"non_police.trees\"\nintent = \"non_police\"\ntopic = \"trees\"\nbefore_model = true\npatterns = ['(槐树|大树).{0,6}(倒|断|劈)']\n";
    std::fs::write(&rules, format!("{shipped}{tree_rule}")).unwrap();
    assert!(hangup(pid).success());
    // The signal is handled beside the updates, and compiling the rules takes a while in a
    // debug build: wait for the daemon to say it reloaded them.
    log.wait_for("triage rules reloaded").await;
    assert!(ask(1, question).await.contains("12345"), "the new rule is in force after SIGHUP");

    std::fs::write(&rules, "[[rules]]\nname = 'broken'\nintent = 'chatter'\npatterns = ['(']\n").unwrap();
    assert!(hangup(pid).success());
    let refused = log.wait_for("triage rules not reloaded").await;
    assert!(refused.contains("intents.toml:4"), "the log names the bad line: {refused}");
    assert!(ask(2, question).await.contains("12345"), "the rules in force stay");
    let term = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(term.success());
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}\n{}", log.text());
}

/// A child's stderr, read line by line as it is written, so a test can wait for a line.
pub struct DaemonLog {
    lines: std::sync::Arc<std::sync::Mutex<String>>,
    more: std::sync::Arc<tokio::sync::Notify>,
}

impl DaemonLog {
    pub fn follow(stderr: tokio::process::ChildStderr) -> DaemonLog {
        use tokio::io::AsyncBufReadExt;
        let lines = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let more = std::sync::Arc::new(tokio::sync::Notify::new());
        let (into, tell) = (lines.clone(), more.clone());
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let mut all = into.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
                drop(all);
                tell.notify_waiters();
            }
            tell.notify_waiters();
        });
        DaemonLog { lines, more }
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().clone()
    }

    /// The first line containing `needle`, waiting for it (30 s at most, then the test fails
    /// with the log so far).
    pub async fn wait_for(&self, needle: &str) -> String {
        let found = async {
            loop {
                let more = self.more.notified();
                if let Some(line) = self.text().lines().find(|l| l.contains(needle)) {
                    return line.to_string();
                }
                more.await;
            }
        };
        match tokio::time::timeout(std::time::Duration::from_secs(30), found).await {
            Ok(line) => line,
            Err(_) => panic!("the daemon did not log {needle:?} within 30 s; its log:\n{}", self.text()),
        }
    }
}

/// Runs `xmllint --schema` on `file`; CI installs libxml2-utils, so a missing xmllint fails.
fn validates_against_cap_schema(file: &Path) -> (bool, String) {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap/CAP-v1.2.xsd");
    let out = std::process::Command::new("xmllint")
        .args(["--noout", "--schema"])
        .arg(&xsd)
        .arg(file)
        .output()
        .expect("xmllint runs (apt-get install libxml2-utils; .ci/run installs it)");
    (out.status.success(), text(&out.stderr))
}

#[tokio::test]
async fn broadcasts_are_queued_followed_cancelled_and_exchanged_as_valid_cap_from_the_command_line() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    cunjing(&["chat", "bind", "-1001", "410184101201"], &url, "").await;
    cunjing(&["chat", "bind", "-1002", "410184101202"], &url, "").await;

    let bad = cunjing(&["broadcast", "send", "--to", "village:NOPE", "--text", "x"], &url, "").await;
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("not in the registry: village:NOPE"), "{}", text(&bad.stderr));

    let sent = cunjing(
        &[
            "broadcast",
            "send",
            "--to",
            "office:HZ01",
            "--kind",
            "warning",
            "--severity",
            "urgent",
            "--text",
            "谨防冒充公检法诈骗 & 转账",
            "--json",
        ],
        &url,
        "",
    )
    .await;
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let created: serde_json::Value = serde_json::from_slice(&sent.stdout).unwrap();
    assert_eq!(created["targets"], 2, "both bound groups of the office");
    let id = created["id"].to_string();

    let status = cunjing(&["broadcast", "status", &id, "--json"], &url, "").await;
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!((s["counts"]["targets"].as_i64(), s["counts"]["pending"].as_i64()), (Some(2), Some(2)));

    let cap_file = db.path().join("alert.xml");
    let export = cunjing(&["broadcast", "export-cap", &id, "--out", cap_file.to_str().unwrap()], &url, "").await;
    assert!(export.status.success(), "{}", text(&export.stderr));
    let (valid, why) = validates_against_cap_schema(&cap_file);
    assert!(valid, "{why}");
    let xml = std::fs::read_to_string(&cap_file).unwrap();
    assert!(xml.contains("<msgType>Alert</msgType>") && xml.contains("<severity>Severe</severity>"), "{xml}");
    assert!(xml.contains("+08:00</sent>") && xml.contains("<areaDesc>和庄警务室</areaDesc>"), "{xml}");
    assert!(xml.contains("&amp; 转账"), "text is escaped: {xml}");

    let cancel = cunjing(&["broadcast", "cancel", &id], &url, "").await;
    assert!(text(&cancel.stdout).contains("cancelled"), "{}", text(&cancel.stdout));
    let status = cunjing(&["broadcast", "status", &id, "--json"], &url, "").await;
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["counts"]["cancelled"], 2);
    let cancel_file = db.path().join("cancel.xml");
    cunjing(&["broadcast", "export-cap", &id, "--out", cancel_file.to_str().unwrap()], &url, "").await;
    let (valid, why) = validates_against_cap_schema(&cancel_file);
    assert!(valid, "{why}");
    let xml = std::fs::read_to_string(&cancel_file).unwrap();
    assert!(xml.contains("<msgType>Cancel</msgType>") && xml.contains("<references>"), "{xml}");

    // The specification's examples: an Alert becomes a broadcast; its Update a correction.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap");
    let alert = fixtures.join("cap12-appendix-a1-alert.xml");
    let imported =
        cunjing(&["broadcast", "import-cap", alert.to_str().unwrap(), "--to", "village:410184101201"], &url, "").await;
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    assert!(text(&imported.stdout).contains("queued as broadcast"), "{}", text(&imported.stdout));
    let again = cunjing(&["broadcast", "import-cap", alert.to_str().unwrap(), "--to", "all"], &url, "").await;
    assert!(text(&again.stdout).contains("already imported"), "{}", text(&again.stdout));
    let store = open_store(&url).await;
    let b = store.broadcast_by_cap_identifier("43b080713727").await.unwrap().expect("imported");
    assert_eq!((b.severity.as_str(), b.event.as_str()), ("urgent", "Homeland Security Advisory System Update"));
    assert!(b.text.contains("Homeland Security Sets Code ORANGE"));
    // The update refers to an alert never imported here: it needs targets, and gets them.
    let update = fixtures.join("cap12-appendix-a3-update.xml");
    let out =
        cunjing(&["broadcast", "import-cap", update.to_str().unwrap(), "--to", "village:410184101202"], &url, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let u = store.broadcast_by_cap_identifier("TRI13970876.2").await.unwrap().expect("imported");
    assert!(u.cap_references.as_deref().unwrap_or("").contains("TRI13970876.2"));
    // Only Actual alerts reach groups.
    let exercise = db.path().join("exercise.xml");
    std::fs::write(
        &exercise,
        std::fs::read_to_string(&alert)
            .unwrap()
            .replace("43b080713727", "ex1")
            .replace("<status>Actual</status>", "<status>Exercise</status>"),
    )
    .unwrap();
    let out = cunjing(&["broadcast", "import-cap", exercise.to_str().unwrap(), "--to", "all"], &url, "").await;
    assert!(text(&out.stdout).contains("only Actual alerts reach real groups"), "{}", text(&out.stdout));
    assert!(store.broadcast_by_cap_identifier("ex1").await.unwrap().is_none());

    let report = cunjing(&["report", "monthly", "--month", "2026-10", "--csv"], &url, "").await;
    assert!(report.status.success(), "{}", text(&report.stderr));
    let csv = text(&report.stdout);
    assert!(csv.starts_with('\u{feff}') && csv.contains("badge,name,station,warnings"), "{csv}");
    assert!(csv.contains("041201,张建国,HZPCS,0,0,0,0,0,,0,0,0"), "{csv}");
}

/// A daemon killed with SIGKILL in the middle of a broadcast to thousands of groups finishes
/// it after a restart: every group gets the message; only sends in flight at the kill can
/// arrive twice. The fake also counts the sends per second against the configured rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_interrupted_by_sigkill_finishes_after_a_restart_and_misses_no_group() {
    use crate::fake_telegram::FakeTelegram;
    const GROUPS: i64 = 2000;
    const RATE: i64 = 60;
    const CONCURRENCY: i64 = 16;
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let fake = FakeTelegram::start().await;
    let store = open_store(&url).await;
    let village = store.village_by_code("410184101201").await.unwrap().unwrap();
    for n in 0..GROUPS {
        let id = -1_000_000 - n;
        fake.group(id, &format!("群{n}"), true);
        store.bind_chat_to_village("telegram", id, &format!("群{n}"), village.id, None).await.unwrap();
    }
    let daemon = || {
        daemon_command(&url, &fake)
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_OVERALL", "10000")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_SEC_CHAT", "10000")
            .env("CUNJING__TELEGRAM__MESSAGES_PER_MIN_GROUP", "10000")
            .env("CUNJING__BROADCAST__MESSAGES_PER_SEC", RATE.to_string())
            .env("CUNJING__BROADCAST__CONCURRENCY", CONCURRENCY.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = daemon();
    let sent =
        cunjing(&["broadcast", "send", "--to", "village:410184101201", "--text", "夜间巡逻通知", "--json"], &url, "")
            .await;
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    let id: i64 = serde_json::from_slice::<serde_json::Value>(&sent.stdout).unwrap()["id"].as_i64().unwrap();
    // Kill it about a quarter of the way through.
    while (fake.sent().len() as i64) < GROUPS / 4 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.kill().await.unwrap(); // SIGKILL
    let at_kill = fake.sent().len() as i64;
    assert!(at_kill < GROUPS, "killed mid-broadcast");
    let _second = daemon();
    loop {
        let c = store.broadcast_counts(id).await.unwrap();
        if c.pending == 0 && c.sending == 0 {
            assert_eq!((c.sent, c.targets), (GROUPS, GROUPS), "{c:?}");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sent = fake.sent();
    let mut per_group = std::collections::HashMap::<i64, i64>::new();
    for m in &sent {
        *per_group.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(per_group.len() as i64, GROUPS, "no group missed");
    let duplicates: i64 = per_group.values().map(|n| n - 1).sum();
    assert!(duplicates <= CONCURRENCY, "only sends in flight at the kill repeat: {duplicates}");
    // The configured rate, over the restarted daemon's sends (the killed one's last sends
    // were already on the wire): no one-second window, timed at the fake, holds more than
    // RATE sends, allowing the limiter's burst of one and 5 % for arrival jitter.
    let times: Vec<std::time::Instant> = sent[(at_kill + CONCURRENCY) as usize..].iter().map(|m| m.at).collect();
    let mut worst = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= std::time::Duration::from_secs(1) {
            start += 1;
        }
        worst = worst.max(end - start + 1);
    }
    assert!(worst as i64 <= RATE + RATE / 20 + 1, "{worst} sends in one second at {RATE}/s");
}

/// A named tip's phone is sealed at rest; after `CUNJING_DATA_KEY` is set (and later changed,
/// the old key kept in `CUNJING_DATA_KEYS_OLD`), `cunjing secrets rotate` seals it again under
/// the new key, and only that key opens it.
#[tokio::test]
async fn secrets_rotate_seals_a_tipsters_phone_again_under_the_new_key() {
    let db = tempfile::tempdir().unwrap();
    let url = sqlite_url(db.path());
    cunjing(&["registry", "import", example_dir().to_str().unwrap()], &url, "").await;
    let store = open_store(&url).await;
    let village = store.village_by_code("410184101202").await.unwrap().unwrap();
    let receipt = store
        .create_tip(&cunjing::store::tips::NewTip {
            anonymous: false,
            contact_phone: Some("13903715555".into()),
            ..anonymous_tip(village.id, "theft", "羊丢了", "20261203")
        })
        .await
        .unwrap();
    store.close().await;
    let stored = || async {
        let store = open_store(&url).await;
        let phone: String = sqlx::query_scalar("SELECT contact_phone FROM tips").fetch_one(store.pool()).await.unwrap();
        let chat: String =
            sqlx::query_scalar("SELECT chat_sealed FROM tip_reporters").fetch_one(store.pool()).await.unwrap();
        store.close().await;
        (phone, chat)
    };
    let (before, _) = stored().await;
    assert!(before.starts_with("e1:") && !before.contains("5555"), "{before}");

    let key = |byte: u8| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [byte; 32]);
    async fn run(url: &str, args: &[&str], envs: &[(&str, String)]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_cunjing"));
        cmd.env_clear().env("CUNJING_CONFIG", config_path()).env("DATABASE_URL", url).args(args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().await.unwrap()
    }
    let first = run(&url, &["secrets", "rotate"], &[("CUNJING_DATA_KEY", key(1))]).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("1 phone numbers, 1 reporter chats"), "{}", text(&first.stdout));
    let (sealed_by_1, chat_by_1) = stored().await;
    assert_ne!(sealed_by_1, before, "sealed again under the key from the environment");

    let second =
        run(&url, &["secrets", "rotate"], &[("CUNJING_DATA_KEY", key(2)), ("CUNJING_DATA_KEYS_OLD", key(1))]).await;
    assert!(second.status.success(), "{}", text(&second.stderr));
    let (sealed_by_2, chat_by_2) = stored().await;
    assert!(sealed_by_2 != sealed_by_1 && chat_by_2 != chat_by_1);
    let again = run(&url, &["secrets", "rotate"], &[("CUNJING_DATA_KEY", key(2))]).await;
    assert!(text(&again.stdout).contains("0 phone numbers, 0 reporter chats"), "{}", text(&again.stdout));

    // The tip shows its phone with the new key; without it (the old key only) it cannot.
    let shown = run(&url, &["tips", "show", &receipt.number], &[("CUNJING_DATA_KEY", key(2))]).await;
    assert!(text(&shown.stdout).contains("13903715555"), "{}{}", text(&shown.stdout), text(&shown.stderr));
    let refused = run(&url, &["tips", "show", &receipt.number], &[("CUNJING_DATA_KEY", key(1))]).await;
    assert!(!refused.status.success(), "the old key alone opens nothing");
    assert!(
        text(&refused.stderr).contains("CUNJING_DATA_KEYS_OLD"),
        "and says which key is missing: {}",
        text(&refused.stderr)
    );
}
