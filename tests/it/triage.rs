//! Triage in plain Chinese: the labelled corpus that measures the shipped rules, and what
//! residents see when the bot recognises a tip, a matter for 12345 or a question about an
//! earlier report; officers' notices, forwarded articles and floods left alone; rules
//! reloaded by the staff group without a restart.

use std::path::Path;
use std::time::Duration;

use cunjing::triage::{Triage, corpus};

use crate::app::{TestApp, press};
use crate::app_test;
use crate::fake_telegram::{SentMessage, TgUser, buttons};

const HEZHUANG: &str = "410184101201";
const GROUP: i64 = -1001000000031;
const STAFF: i64 = -1001000000032;

fn resident(n: i64) -> TgUser {
    TgUser::new(5300 + n, "村民")
}

fn zhang() -> TgUser {
    TgUser::new(6001, "张建国")
}

/// The training set: rules and model together on the model's own examples. Training-set
/// figures say only that the two layers agree with what they were given; the held-out test
/// below is the evidence.
#[test]
fn the_shipped_triage_recognises_every_emergency_of_its_own_examples_and_95_percent_of_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let triage = Triage::load(&root.join("bot-config/intents.toml")).unwrap();
    let samples = corpus::read_dir(&root.join("bot-config/triage-examples")).unwrap();
    assert!(samples.len() >= 3000, "the examples have {} messages", samples.len());
    for intent in corpus::INTENTS {
        assert!(samples.iter().filter(|s| s.intent == intent).count() >= 100, "too few {intent} examples");
    }
    let hard = samples.iter().filter(|s| s.hard).count();
    assert!(3 * hard >= samples.len(), "a third are hard negatives: {hard} of {}", samples.len());
    let e = corpus::evaluate(&triage, &samples);
    let report = report(&e);
    assert_eq!(e.emergencies_found, e.emergencies, "every emergency is recognised:\n{report}");
    assert!(e.accuracy() >= 0.95, "intent accuracy below 95 %:\n{report}");
}

/// The held-out corpus (`tests/fixtures/triage-heldout.tsv`): 865 messages written before any
/// tuning by writers who saw neither the rules nor the examples, never trained on. These are
/// the figures the README reports; the test fails when triage falls below issue #19's targets.
#[test]
fn on_messages_it_never_saw_triage_answers_every_emergency_and_92_percent_right() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let triage = Triage::load(&root.join("bot-config/intents.toml")).unwrap();
    let raw = std::fs::read_to_string(root.join("tests/fixtures/triage-heldout.tsv")).unwrap();
    let samples = corpus::parse(&raw, "triage-heldout.tsv").unwrap();
    assert!(samples.len() >= 600, "the held-out set has {} messages", samples.len());
    let trained = corpus::read_dir(&root.join("bot-config/triage-examples")).unwrap();
    let seen: std::collections::HashSet<String> = trained.iter().map(|s| triage.rewrite(&s.text)).collect();
    let leaked: Vec<&str> =
        samples.iter().filter(|s| seen.contains(&triage.rewrite(&s.text))).map(|s| s.text.as_str()).collect();
    assert!(leaked.is_empty(), "held-out messages are among the training examples: {leaked:?}");
    let e = corpus::evaluate(&triage, &samples);
    let report = report(&e);
    assert!(e.emergency_recall() >= 0.99, "emergency recall below 99 %:\n{report}");
    assert!(e.accuracy() >= 0.92, "intent accuracy below 92 %:\n{report}");
    assert!(e.hard_false_alarm_rate() <= 0.03, "hard negatives answered as tip or emergency above 3 %:\n{report}");
}

fn report(e: &corpus::Evaluation) -> String {
    let misses: Vec<String> = e
        .misses
        .iter()
        .map(|m| {
            format!(
                "{}:{}: expected {}, got {} ({} {:?}): {}",
                m.source, m.line, m.expected, m.got, m.layer, m.rule, m.text
            )
        })
        .collect();
    format!("{}\n{}", e.markdown(), misses.join("\n"))
}

/// The shipped rules as text, with their dialect table and examples folder named by
/// absolute paths, so that a copy elsewhere (to edit it in a test) still finds them.
pub fn shipped_rules_anywhere() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config");
    let shipped = std::fs::read_to_string(root.join("intents.toml")).unwrap();
    let (dialect, examples) = ("dialect = \"dialect.toml\"", "examples = \"triage-examples\"");
    assert!(shipped.contains(dialect) && shipped.contains(examples), "the shipped rules name both files");
    shipped
        .replace(dialect, &format!("dialect = {:?}", root.join("dialect.toml").display().to_string()))
        .replace(examples, &format!("examples = {:?}", root.join("triage-examples").display().to_string()))
}

/// Restarts the daemon on the rules file `rules`, binds the test group, and makes 张建国 a
/// station admin in a bound staff group (who may /reload).
async fn reload_setup(app: &mut TestApp, rules: &Path) {
    app.settings.file.paths.intents_file = rules.to_path_buf();
    app.restart().await;
    bound_group(app).await;
    app.enrol("041201", &zhang()).await;
    app.fake.group(STAFF, "派出所内勤群", true);
    app.ask(STAFF, &zhang(), "/bindstation HZPCS").await;
    assert!(app.store().set_grant("041201", Some(cunjing::domain::Grant::Admin), 0).await.unwrap());
}

/// Binds the test group to 和庄村.
async fn bound_group(app: &TestApp) {
    app.fake.group(GROUP, "和庄村村民群", true);
    let village = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "和庄村村民群", village.id, None).await.unwrap();
}

/// Sends `text` to the group, then `/help` as a sentinel: returns what the bot sent to the
/// group in between (nothing, when it stayed quiet).
async fn answers_to(app: &TestApp, user: &TgUser, text: &str) -> Vec<SentMessage> {
    let mark = app.fake.mark();
    app.fake.send_text(GROUP, user, text);
    let help = help_after(app, mark).await;
    app.fake.sent()[mark..help].iter().filter(|m| m.chat_id == GROUP).cloned().collect()
}

/// Sends `/help` to the group and waits for its answer; returns its position in the sent
/// log. Updates of one chat are handled in order, so whatever the bot answers to earlier
/// messages is before it.
async fn help_after(app: &TestApp, mark: usize) -> usize {
    app.fake.send_text(GROUP, &resident(99), "/help");
    let help = app.fake.wait_for_new(mark, |m| m.chat_id == GROUP && m.text.contains("村警助手")).await;
    app.fake.sent().iter().position(|m| m.chat_id == GROUP && m.message_id == help.message_id).unwrap()
}

app_test!(a_theft_told_in_the_group_gets_a_private_button_that_starts_the_tip_in_its_category, |app| {
    bound_group(&app).await;
    let villager = resident(1);
    let reply = app.ask(GROUP, &villager, "俺家电动车昨晚在院里被偷了").await;
    assert!(reply.text.contains("盗窃") && reply.text.contains("私信"), "{}", reply.text);
    let all = buttons(&reply);
    let payload = format!("tip_{HEZHUANG}_theft");
    assert!(all.iter().any(|(_, url)| url.ends_with(&format!("start={payload}"))), "{all:?}");
    assert!(app.store().list_tips(&Default::default()).await.unwrap().is_empty(), "nothing recorded from the group");

    // The button opens the private chat at the details: village and category are known.
    let chat = app.fake.private_chat(villager.clone());
    let details = app.ask(chat, &villager, &format!("/start {payload}")).await;
    assert!(details.text.contains("发生了什么"), "{}", details.text);
    // It says what it understood (issue #20: the deep link used to start silently).
    assert!(details.text.contains("和庄村") && details.text.contains("盗窃"), "{}", details.text);
    app.fake.send_text(chat, &villager, "昨晚十点左右，院门没锁");
    let got = app.fake.wait_for_sent(|m| m.chat_id == chat && m.text.contains("第1条")).await;
    let anon = press(&app, chat, &villager, &got, "说完了").await;
    let summary = press(&app, chat, &villager, &anon, "匿名").await;
    assert!(summary.text.contains("盗窃") && summary.text.contains("和庄村"), "{}", summary.text);
});

app_test!(a_theft_told_privately_starts_the_tip_with_its_words_and_the_status_question_lists_it, |app| {
    let villager = resident(2);
    let chat = app.fake.private_chat(villager.clone());
    app.ask(chat, &villager, &format!("/start v_{HEZHUANG}")).await;
    let noted = app.ask(chat, &villager, "俺家电动车昨晚被偷了").await;
    assert!(noted.text.contains("已记下") && noted.text.contains("盗窃"), "{}", noted.text);
    let anon = press(&app, chat, &villager, &noted, "说完了").await;
    let summary = press(&app, chat, &villager, &anon, "匿名").await;
    assert!(summary.text.contains("电动车昨晚被偷了"), "the words are the tip's text: {}", summary.text);
    let receipt = press(&app, chat, &villager, &summary, "确认").await;
    assert!(receipt.text.contains("已提交"), "{}", receipt.text);
    let tips = app.store().list_tips(&Default::default()).await.unwrap();
    assert_eq!(tips.len(), 1);
    assert_eq!(tips[0].category, "theft");

    let status = app.ask(chat, &villager, "俺前天报的那个事咋样了").await;
    assert!(status.text.contains(&tips[0].number) && status.text.contains("待受理"), "{}", status.text);
    let detail = press(&app, chat, &villager, &status, &tips[0].number).await;
    assert!(detail.text.contains(&tips[0].number), "{}", detail.text);

    // Someone with no reports gets the way to ask with a number and password.
    let other = resident(3);
    let ochat = app.fake.private_chat(other.clone());
    let usage = app.ask(ochat, &other, "我举报的线索有结果了吗").await;
    assert!(usage.text.contains("/status"), "{}", usage.text);
});

app_test!(a_street_light_gets_the_12345_pointer_once_per_person_and_a_status_question_goes_private, |app| {
    bound_group(&app).await;
    let first = answers_to(&app, &resident(4), "村口路灯坏了好几天了").await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].text.contains("12345"), "{}", first[0].text);
    assert!(answers_to(&app, &resident(4), "路灯还是不亮").await.is_empty(), "the same person is not told twice");
    assert_eq!(answers_to(&app, &resident(5), "俺家门口路灯也不亮").await.len(), 1, "another person is told");
    assert_eq!(answers_to(&app, &resident(4), "垃圾好几天没人拉了").await.len(), 1, "another topic is told");

    let status = app.ask(GROUP, &resident(4), "我上回举报的事咋样了").await;
    assert!(status.text.contains("私信"), "{}", status.text);
    assert!(buttons(&status).iter().any(|(_, url)| url.ends_with("start=status")), "{:?}", buttons(&status));
    // Chatter gets nothing.
    assert!(answers_to(&app, &resident(4), "今天赶集的人真多").await.is_empty());
});

app_test!(officers_notices_forwarded_articles_and_bots_get_no_answer, |app| {
    bound_group(&app).await;
    app.enrol("041201", &zhang()).await;
    let notice = "各位村民：近期电信诈骗高发，有人打架斗殴请拨打110，家里着火了打119";
    assert!(answers_to(&app, &zhang(), notice).await.is_empty(), "an officer's notice");
    let mark = app.fake.mark();
    app.fake.send_forwarded_text(GROUP, &resident(6), "村东头着火了快来人");
    let help = help_after(&app, mark).await;
    let between: Vec<_> = app.fake.sent()[mark..help].iter().filter(|m| m.chat_id == GROUP).cloned().collect();
    assert!(between.is_empty(), "a forwarded message: {between:?}");
    let other_bot = TgUser::bot(7_000_000_099, "天气机器人");
    assert!(answers_to(&app, &other_bot, "大风预警：村东头着火风险高，快来人").await.is_empty(), "another bot");
    // The same words from a resident are an emergency.
    let reply = app.ask(GROUP, &resident(6), "村东头着火了快来人").await;
    assert!(reply.text.contains("119"), "{}", reply.text);
});

app_test!(a_busy_group_gets_at_most_its_answers_per_minute_and_a_repeat_is_pointed_to_the_answer, |app| {
    app.settings.file.triage.max_answers_per_group_per_minute = 3;
    app.settings.file.triage.repeat_window_minutes = 10;
    app.restart().await;
    bound_group(&app).await;
    app.enrol("041201", &zhang()).await;
    let mark = app.fake.mark();
    let first = app.fake.send_text(GROUP, &resident(7), "村东头着火了");
    let fire = app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    assert!(fire.text.contains("119"), "{}", fire.text);
    // The same message again: not silence (issue #20) but one short line, a reply to the
    // earlier message, whose answer is right under it; the officers are not alerted twice.
    app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    let alerts = app.fake.sent_to(zhang().id).len();
    let again = answers_to(&app, &resident(8), "村东头着火了！").await;
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].text.contains("回答过") && again[0].text.contains("119"), "{}", again[0].text);
    assert_eq!(again[0].body["reply_parameters"]["message_id"], first, "{:?}", again[0].body);
    assert_eq!(app.fake.sent_to(zhang().id).len(), alerts, "no second alert");
    assert_eq!(answers_to(&app, &resident(9), "民警电话多少").await.len(), 1);
    // The minute's budget (3) is spent: a contact question waits …
    assert!(answers_to(&app, &resident(10), "俺村片警是谁啊").await.is_empty());
    // … and an emergency answer is held back, but the officer is still alerted.
    let mark = app.fake.mark();
    assert!(answers_to(&app, &resident(11), "西头有人打架了").await.is_empty());
    let alert = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    assert!(alert.text.contains("西头有人打架"), "{}", alert.text);
    // A minute later the group is answered again; commands were never limited.
    app.advance(Duration::from_secs(61));
    assert_eq!(answers_to(&app, &resident(10), "咱村民警电话多少").await.len(), 1);
});

// Issue #19: a city improves triage by adding lines to a file, no Rust and no build: the model
// is trained again from the examples on /reload. A bad line is refused and changes nothing.
app_test!(a_city_teaches_triage_new_words_by_adding_examples_and_reloading, |app| {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config");
    let examples = dir.path().join("examples");
    std::fs::create_dir(&examples).unwrap();
    for entry in std::fs::read_dir(root.join("triage-examples")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, examples.join(path.file_name().unwrap())).unwrap();
    }
    let rules = dir.path().join("intents.toml");
    let shipped = shipped_rules_anywhere();
    let examples_line = shipped.lines().find(|l| l.starts_with("examples = ")).unwrap().to_string();
    std::fs::write(&rules, shipped.replace(&examples_line, "examples = \"examples\"")).unwrap();
    reload_setup(&mut app, &rules).await;

    let question = "村里的老槐树让雷劈倒了";
    assert!(answers_to(&app, &resident(20), question).await.is_empty(), "chatter to the shipped triage");
    let city = "non_police\t-\t村口的大树叫风刮倒了 压着路了\nnon_police\t-\t老槐树让雷劈倒了横在路上\n\
                non_police\t-\t路边的杨树倒了 车过不去\nnon_police\t-\t大风把村里的树刮断了好几棵 堵着道\n\
                non_police\t-\t树倒了压住了电线杆子 谁来管管\nnon_police\t-\t村头那棵老树让雷给劈了 半边倒在路上\n\
                non_police\t-\t学校门口的树倒了 挡着门\nnon_police\t-\t路上横着一棵倒了的树 天黑了看不见\n";
    std::fs::write(examples.join("90-city.tsv"), format!("{city}tip/arson\t-\t放火\n")).unwrap();
    let refused = app.ask(STAFF, &zhang(), "/reload").await;
    assert!(refused.text.contains("90-city.tsv:9"), "the bad line is named: {}", refused.text);
    assert!(answers_to(&app, &resident(21), question).await.is_empty(), "the triage in force stays");
    std::fs::write(examples.join("90-city.tsv"), city).unwrap();
    let done = app.ask(STAFF, &zhang(), "/reload").await;
    assert!(done.text.contains("重新加载"), "{}", done.text);
    let now = answers_to(&app, &resident(22), question).await;
    assert!(now.len() == 1 && now[0].text.contains("12345"), "{now:?}");
});

app_test!(staff_reload_puts_new_rules_in_force_and_a_broken_file_changes_nothing, |app| {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("intents.toml");
    let shipped = shipped_rules_anywhere();
    std::fs::write(&rules, &shipped).unwrap();
    reload_setup(&mut app, &rules).await;

    let question = "村里的老槐树让雷劈倒了";
    assert!(answers_to(&app, &resident(12), question).await.is_empty(), "not a rule yet");
    let tree_rule = "\n[[rules]]\nname = \"non_police.trees\"\nintent = \"non_police\"\ntopic = \"trees\"\nbefore_model = true\npatterns = ['(槐树|大树).{0,6}(倒|断|劈)']\n";
    std::fs::write(&rules, format!("{shipped}{tree_rule}")).unwrap();
    let refused = app.ask(STAFF, &resident(12), "/reload").await;
    assert!(!refused.text.contains("重新加载"), "only station admins reload: {}", refused.text);
    let done = app.ask(STAFF, &zhang(), "/reload").await;
    assert!(done.text.contains("重新加载"), "{}", done.text);
    let now = answers_to(&app, &resident(13), question).await;
    assert!(now.len() == 1 && now[0].text.contains("12345"), "{now:?}");

    std::fs::write(&rules, format!("{shipped}{}", tree_rule.replace("(槐树|大树)", "(槐树|大树"))).unwrap();
    let failed = app.ask(STAFF, &zhang(), "/reload").await;
    assert!(failed.text.contains("intents.toml:") && failed.text.contains("non_police.trees"), "{}", failed.text);
    let still = answers_to(&app, &resident(14), question).await;
    assert_eq!(still.len(), 1, "the rules in force stay: {still:?}");
});
