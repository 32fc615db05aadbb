//! The foundation end to end through the real teloxide client and a fake Telegram: groups,
//! enrolment, binding, contact cards, re-import, restart, migration, failures.

use std::path::Path;

use crate::app::{TestApp, example_registry_with};
use crate::app_test;
use crate::fake_telegram::{Fault, TgUser};

const HEZHUANG: &str = "410184101201";
const GROUP: i64 = -1001000000001;

fn resident() -> TgUser {
    TgUser::new(5001, "李大爷")
}

fn officer_zhang() -> TgUser {
    TgUser::new(6001, "张建国")
}

/// Adds the bot to the test group and returns its greeting.
async fn group_with_bot(app: &TestApp) -> crate::fake_telegram::SentMessage {
    app.fake.group(GROUP, "和庄村村民群", true);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(GROUP, &resident());
    app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await
}

/// Enrols 张建国 (resident officer of 和庄村) and has him bind the group to 和庄村.
async fn bound_group(app: &TestApp) {
    group_with_bot(app).await;
    app.enrol("041201", &officer_zhang()).await;
    let done = app.ask(GROUP, &officer_zhang(), &format!("/bind {HEZHUANG}")).await;
    assert!(done.text.contains("已绑定"), "{}", done.text);
}

app_test!(bot_added_to_a_group_greets_and_explains_how_to_bind, |app| {
    let greeting = group_with_bot(&app).await;
    assert!(greeting.text.contains("村警助手"), "{}", greeting.text);
    assert!(greeting.text.contains("/bind"), "{}", greeting.text);
    assert!(greeting.text.contains("110"), "every greeting points to 110: {}", greeting.text);
    let chat = app.store().chat("telegram", GROUP).await.unwrap().expect("the group is recorded");
    assert!(chat.active);
    assert_eq!(chat.village_id, None);
});

app_test!(the_dispatcher_asks_telegram_for_membership_changes, |app| {
    group_with_bot(&app).await;
    let mut allowed = app.fake.allowed_updates().expect("allowed_updates is sent");
    allowed.sort();
    // Exactly what the handler tree takes: asking for every kind (reactions, edits, channel
    // posts) would fill the backlog with updates nobody answers.
    assert_eq!(allowed, ["callback_query", "message", "my_chat_member"]);
});

app_test!(an_officer_enrols_with_a_one_time_code_that_works_once, |app| {
    let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
    assert_eq!(code.code.len(), 32, "128 random bits as hex");
    let zhang = officer_zhang();
    let chat = app.fake.private_chat(zhang.clone());
    let done = app.ask(chat, &zhang, &format!("/start {}", code.code)).await;
    assert!(done.text.contains("登记成功") && done.text.contains("张建国"), "{}", done.text);

    let other = TgUser::new(6999, "冒名者");
    let other_chat = app.fake.private_chat(other.clone());
    let refused = app.ask(other_chat, &other, &format!("/start {}", code.code)).await;
    assert!(refused.text.contains("无效"), "{}", refused.text);
    assert!(app.store().officer_by_identity("telegram", 6999).await.unwrap().is_none(), "a used code enrols nobody");
    let zhang_row = app.store().officer_by_identity("telegram", 6001).await.unwrap().unwrap();
    assert_eq!(zhang_row.badge, "041201");

    let whoami = app.ask(chat, &zhang, "/whoami").await;
    assert!(
        whoami.text.contains("和庄村（驻村民警）") && whoami.text.contains("前店村（驻村民警）"),
        "{}",
        whoami.text
    );
});

app_test!(an_expired_enrolment_code_enrols_nobody, |app| {
    let code = app.store().issue_enrolment_code("041201", -1).await.unwrap().unwrap();
    let zhang = officer_zhang();
    let chat = app.fake.private_chat(zhang.clone());
    let answer = app.ask(chat, &zhang, &code.code).await;
    assert!(answer.text.contains("过期"), "{}", answer.text);
    assert!(app.store().officer_by_identity("telegram", 6001).await.unwrap().is_none());
});

app_test!(the_villages_officer_binds_the_group_and_a_resident_is_refused, |app| {
    group_with_bot(&app).await;
    let refusal = app.ask(GROUP, &resident(), &format!("/bind {HEZHUANG}")).await;
    assert!(refusal.text.contains("抱歉") && refusal.text.contains("只有"), "{}", refusal.text);
    assert_eq!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id, None);

    app.enrol("041201", &officer_zhang()).await;
    let done = app.ask(GROUP, &officer_zhang(), &format!("/bind {HEZHUANG}")).await;
    assert!(done.text.contains("已绑定") && done.text.contains("和庄村"), "{}", done.text);
    let chat = app.store().chat("telegram", GROUP).await.unwrap().unwrap();
    let village = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap();
    assert_eq!(chat.village_id, Some(village.id));
    assert!(chat.bound_by.is_some(), "who bound the group is kept");
});

app_test!(a_volunteer_of_the_station_cannot_bind_a_group, |app| {
    group_with_bot(&app).await;
    let volunteer = TgUser::new(6101, "冯德山");
    app.enrol("V04101", &volunteer).await;
    let answer = app.ask(GROUP, &volunteer, &format!("/bind {HEZHUANG}")).await;
    assert!(answer.text.contains("抱歉"), "{}", answer.text);
    assert_eq!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id, None);
});

app_test!(a_message_sent_as_an_anonymous_admin_cannot_bind, |app| {
    group_with_bot(&app).await;
    let mark = app.fake.mark();
    app.fake.send_as_chat(GROUP, GROUP, &format!("/bind {HEZHUANG}"));
    let answer = app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    assert!(answer.text.contains("匿名") && answer.text.contains("本人"), "{}", answer.text);
    assert_eq!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id, None);
});

app_test!(a_residents_phone_question_in_a_bound_group_gets_the_village_officers_card, |app| {
    bound_group(&app).await;
    let card = app.ask(GROUP, &resident(), "我们村民警电话多少").await;
    for expected in [
        "和庄村 警民联系卡",
        "驻村民警：张建国",
        "13903710121",
        "包村民警：赵明",
        "辅警：孙磊",
        "和庄警务室",
        "0371-62581110",
        "110",
    ] {
        assert!(card.text.contains(expected), "card lacks {expected:?}:\n{}", card.text);
    }
    assert!(!card.text.contains("冯德山"), "volunteers are not on the card:\n{}", card.text);
    let buttons = crate::fake_telegram::buttons(&card);
    assert!(
        buttons.iter().any(|(_, target)| target == &format!("https://t.me/cunjing_test_bot?start=v_{HEZHUANG}")),
        "the card offers the private chat: {buttons:?}"
    );
});

app_test!(the_officer_command_and_the_question_give_the_same_card, |app| {
    bound_group(&app).await;
    let by_command = app.ask(GROUP, &resident(), "/officer").await;
    let by_question = app.ask(GROUP, &resident(), "警务室在哪").await;
    assert!(by_command.text.contains("联系卡"), "{}", by_command.text);
    assert_eq!(by_command.text, by_question.text);
});

app_test!(chatter_in_a_group_gets_no_answer, |app| {
    bound_group(&app).await;
    let before = app.fake.sent_to(GROUP).len();
    app.fake.send_text(GROUP, &resident(), "大家早上好，今天赶集吗");
    // Updates of one chat are handled in order: once /help is answered, the chatter was
    // handled too.
    let help = app.ask(GROUP, &resident(), "/help").await;
    assert!(help.text.contains("• "), "the first answer after the chatter is the help: {}", help.text);
    assert_eq!(app.fake.sent_to(GROUP).len(), before + 1, "only /help was answered");
});

app_test!(an_unbound_group_is_told_how_to_bind, |app| {
    group_with_bot(&app).await;
    let answer = app.ask(GROUP, &resident(), "民警电话多少").await;
    assert!(answer.text.contains("还没有绑定") && answer.text.contains("/bind"), "{}", answer.text);
});

app_test!(the_card_changes_after_a_registry_reimport_reassigns_the_village, |app| {
    bound_group(&app).await;
    let dir = example_registry_with(&[(
        "assignments.csv",
        &format!("{HEZHUANG},041201,resident,2024-03-01,"),
        &format!("{HEZHUANG},041202,resident,2026-11-01,"),
    )]);
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    cunjing::registry::import_dir(app.store(), Path::new(dir.path()), today).await.unwrap();

    let card = app.ask(GROUP, &resident(), "我们村民警是谁").await;
    assert!(card.text.contains("驻村民警：李卫东"), "{}", card.text);
    assert!(!card.text.contains("张建国"), "the ended assignment is gone from the card:\n{}", card.text);
});

app_test!(a_restart_keeps_the_groups_binding, |app| {
    bound_group(&app).await;
    app.restart().await;
    let card = app.ask(GROUP, &resident(), "民警电话多少").await;
    assert!(card.text.contains("张建国"), "{}", card.text);
});

app_test!(a_group_migrated_to_a_supergroup_keeps_its_binding, |app| {
    let basic = -4000001;
    let supergroup = -1004000001;
    app.fake.group(basic, "前店村群", false);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(basic, &resident());
    app.fake.wait_for_new(mark, |m| m.chat_id == basic).await;
    app.enrol("041201", &officer_zhang()).await;
    let done = app.ask(basic, &officer_zhang(), "/bind 410184101202").await;
    assert!(done.text.contains("已绑定"), "{}", done.text);

    app.fake.migrate_group(basic, supergroup);
    let card = app.ask(supergroup, &resident(), "民警电话多少").await;
    assert!(card.text.contains("前店村 警民联系卡"), "{}", card.text);
    assert!(app.store().chat("telegram", basic).await.unwrap().is_none(), "the old id is gone");
});

app_test!(removing_the_bot_marks_the_group_inactive_and_readding_restores_it, |app| {
    bound_group(&app).await;
    app.fake.remove_bot_from_group(GROUP, &resident());
    // The removal is handled before the next update of the same chat.
    let greeting = group_with_bot(&app).await;
    assert!(greeting.text.contains("本群已绑定：和庄村"), "the binding survives: {}", greeting.text);
    let chat = app.store().chat("telegram", GROUP).await.unwrap().unwrap();
    assert!(chat.active);
});

app_test!(a_send_refused_with_403_is_recorded_and_the_group_marked_lost, |app| {
    bound_group(&app).await;
    app.fake.fail_next("sendMessage", Fault::Forbidden("Forbidden: bot was kicked from the supergroup chat"), 1);
    app.fake.send_text(GROUP, &resident(), "民警电话多少");
    // Handled in order: once /help is answered, the refused card was dealt with.
    let help = app.ask(GROUP, &resident(), "/help").await;
    assert!(help.text.contains("• "), "{}", help.text);
    let failures = app.store().send_failures().await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!((failures[0].1, failures[0].2.as_str()), (GROUP, "api"));
    assert!(!failures[0].3.contains(crate::fake_telegram::TOKEN), "no token in the record");
    assert!(!app.store().chat("telegram", GROUP).await.unwrap().unwrap().active);
});

app_test!(a_garbled_answer_to_a_send_is_retried_until_it_goes_through, |app| {
    bound_group(&app).await;
    // (A 500 is retried the same way, but teloxide itself pauses 10 s after one.)
    app.fake.fail_next("sendMessage", Fault::MalformedJson, 2);
    let card = app.ask(GROUP, &resident(), "民警电话多少").await;
    assert!(card.text.contains("联系卡"), "{}", card.text);
    assert_eq!(app.fake.faults_served(), 2);
    assert!(app.store().send_failures().await.unwrap().is_empty());
});

app_test!(flood_control_is_waited_out_and_the_card_still_arrives, |app| {
    bound_group(&app).await;
    app.fake.fail_next("sendMessage", Fault::RetryAfter(1), 1);
    let card = app.ask(GROUP, &resident(), "民警电话多少").await;
    assert!(card.text.contains("联系卡"), "{}", card.text);
    assert_eq!(app.fake.faults_served(), 1);
    assert!(app.store().send_failures().await.unwrap().is_empty());
});

app_test!(a_resident_in_a_private_chat_picks_the_village_by_link_or_by_name, |app| {
    let r = resident();
    let chat = app.fake.private_chat(r.clone());
    let card = app.ask(chat, &r, &format!("/start v_{HEZHUANG}")).await;
    assert!(card.text.contains("和庄村 警民联系卡"), "{}", card.text);

    let choice = app.ask(chat, &r, "前店村").await;
    let buttons = crate::fake_telegram::buttons(&choice);
    let (_, data) = buttons.iter().find(|(label, _)| label.contains("前店村")).expect("a button for 前店村");
    let mark = app.fake.mark();
    app.fake.press_button(chat, &r, choice.message_id, data);
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(card.text.contains("前店村 警民联系卡") && card.text.contains("张建国"), "{}", card.text);
    assert_eq!(app.fake.call_count("answerCallbackQuery"), 1, "the button's spinner is stopped");

    // The choice is remembered: the next question needs none.
    let again = app.ask(chat, &r, "民警电话多少").await;
    assert!(again.text.contains("前店村 警民联系卡"), "{}", again.text);
});

app_test!(a_resident_who_has_not_chosen_a_village_is_asked_which, |app| {
    let r = resident();
    let chat = app.fake.private_chat(r.clone());
    let answer = app.ask(chat, &r, "民警电话多少").await;
    assert!(answer.text.contains("哪个村"), "{}", answer.text);
    let none = app.ask(chat, &r, "火星村").await;
    assert!(none.text.contains("没有找到"), "{}", none.text);
});

app_test!(the_bot_registers_command_menus_for_private_chats_and_groups, |app| {
    group_with_bot(&app).await;
    let calls = app.fake.calls("setMyCommands");
    let scopes: Vec<String> = calls.iter().map(|c| c["scope"]["type"].as_str().unwrap_or("").to_string()).collect();
    assert!(scopes.contains(&"all_private_chats".to_string()), "{scopes:?}");
    assert!(scopes.contains(&"all_group_chats".to_string()), "{scopes:?}");
    let group_menu = calls.iter().find(|c| c["scope"]["type"] == "all_group_chats").unwrap();
    assert!(group_menu["commands"].as_array().unwrap().iter().any(|c| c["command"] == "bind"));
});

app_test!(a_failed_command_menu_registration_does_not_stop_the_bot, |app| {
    app.stop().await;
    app.fake.fail_next("setMyCommands", Fault::BadRequest("Bad Request: BOT_COMMANDS_TOO_MUCH".into()), 2);
    app.restart().await;
    let greeting = group_with_bot(&app).await;
    assert!(greeting.text.contains("村警助手"), "{}", greeting.text);
});

app_test!(the_officer_unbinds_the_group_and_a_resident_cannot, |app| {
    bound_group(&app).await;
    let refused = app.ask(GROUP, &resident(), "/unbind").await;
    assert!(refused.text.contains("抱歉"), "{}", refused.text);
    assert!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id.is_some());
    let done = app.ask(GROUP, &officer_zhang(), "/unbind").await;
    assert!(done.text.contains("解除") && done.text.contains("和庄村"), "{}", done.text);
    assert_eq!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().village_id, None);
    let answer = app.ask(GROUP, &resident(), "民警电话多少").await;
    assert!(answer.text.contains("还没有绑定"), "{}", answer.text);
});

app_test!(a_basic_group_that_kicked_the_bot_is_marked_lost_too, |app| {
    let basic = -4000002;
    app.fake.group(basic, "王庄村群", false);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(basic, &resident());
    app.fake.wait_for_new(mark, |m| m.chat_id == basic).await;
    // Telegram words this one differently from supergroups, and teloxide has no variant for it.
    app.fake.fail_next("sendMessage", Fault::Forbidden("Forbidden: bot was kicked from the group chat"), 1);
    app.fake.send_text(basic, &resident(), "/officer");
    let help = app.ask(basic, &resident(), "/help").await;
    assert!(help.text.contains("• "), "{}", help.text);
    assert!(!app.store().chat("telegram", basic).await.unwrap().unwrap().active);
    assert_eq!(app.store().send_failures().await.unwrap().len(), 1);
});

// Telegram announces a migration in both chats; the two handlers may record it at once.
crate::on_both_engines!(a_migration_recorded_twice_at_once_keeps_the_binding, |db| {
    crate::app::import_example(&db.store).await;
    let village = db.store.village_by_code(HEZHUANG).await.unwrap().unwrap();
    for round in 0..20_i64 {
        let (old, new) = (-5_000_000 - round, -1_005_000_000 - round);
        db.store.bind_chat_to_village("telegram", old, "和庄村群", village.id, None).await.unwrap();
        let (a, b) =
            tokio::join!(db.store.chat_migrated("telegram", old, new), db.store.chat_migrated("telegram", old, new));
        a.unwrap();
        b.unwrap();
        let chat = db.store.chat("telegram", new).await.unwrap();
        assert_eq!(chat.and_then(|c| c.village_id), Some(village.id), "round {round}: the binding moved to the new id");
        assert!(db.store.chat("telegram", old).await.unwrap().is_none());
    }
});

/// Issue #20: teloxide's default HTTP client gives up after 17 s, so on a quiet bot every
/// long poll longer than that failed as a network error and polling backed off (gaps of up
/// to 49 s before an emergency was even fetched). The fake holds each poll for its whole
/// timeout, as Telegram does; an 18-second poll must be answered, not abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_bot_keeps_its_long_polls_open_and_answers_an_emergency_at_once() {
    let mut app = TestApp::spawn(crate::db::Engine::Sqlite).await.expect("SQLite is always there");
    app.stop().await;
    app.settings.file.telegram.poll_timeout_secs = 18;
    let before = app.fake.call_count("getUpdates");
    // The first daemon's last poll was dropped at its shutdown: count from here.
    let dropped = app.fake.abandoned_polls();
    app.restart().await;
    let scenario = async {
        bound_group_quietly(&app).await;
        // Nothing happens: the fake holds the poll for the full 18 s, then the next starts.
        let polls = app.fake.call_count("getUpdates");
        app.fake.wait_for_calls_within("getUpdates", polls + 2, std::time::Duration::from_secs(40)).await;
        assert_eq!(app.fake.abandoned_polls(), dropped, "the client hung up on a quiet long poll");
        let mark = app.fake.mark();
        let sent_at = std::time::Instant::now();
        app.fake.send_text(GROUP, &resident(), "快来人啊，有人在村口拿刀砍人");
        let answer = app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
        assert!(answer.text.contains("110"), "{}", answer.text);
        assert!(sent_at.elapsed() < std::time::Duration::from_secs(1), "answered in {:?}", sent_at.elapsed());
        // The poll that brought it has returned; the next one follows it at once (waited
        // for: on a loaded machine it may not have reached the fake yet).
        app.fake.wait_for_calls_within("getUpdates", before + 3, std::time::Duration::from_secs(5)).await;
        assert!(app.fake.call_count("getUpdates") > before + 2);
    };
    tokio::time::timeout(std::time::Duration::from_secs(90), scenario).await.expect("finished within 90 s");
    app.stop().await;
}

/// The test group bound to 和庄村 directly in the store (no messages, so the bot stays quiet).
async fn bound_group_quietly(app: &TestApp) {
    app.fake.group(GROUP, "和庄村村民群", true);
    let village = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "和庄村村民群", village.id, None).await.unwrap();
}
