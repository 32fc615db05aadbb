//! Tips end to end: the private conversation with media, the receipt, routing to the
//! responsible officer, the officer's buttons, status queries, anonymity, restarts.

use crate::app::{TestApp, import_example, press};
use crate::fake_telegram::{SentMessage, TgUser, buttons};
use crate::{app_test, on_both_engines};

pub const QIANDIAN: &str = "410184101202";
pub const GROUP: i64 = -1001000000002;

pub fn tipster() -> TgUser {
    TgUser::new(5101, "王大娘")
}

pub fn zhang() -> TgUser {
    TgUser::new(6001, "张建国")
}

/// Starts a tip for 前店村 in the tipster's private chat and picks 盗窃; returns the details prompt.
pub async fn start_theft_tip(app: &TestApp) -> (i64, SentMessage) {
    let t = tipster();
    let chat = app.fake.private_chat(t.clone());
    let categories = app.ask(chat, &t, &format!("/start tip_{QIANDIAN}")).await;
    assert!(categories.text.contains("前店村"), "{}", categories.text);
    let details = press(app, chat, &t, &categories, "盗窃").await;
    assert!(details.text.contains("发生了什么"), "{}", details.text);
    (chat, details)
}

/// Every value of every column of a table, as text, for privacy checks.
async fn dump(app: &TestApp, table: &'static str) -> String {
    use sqlx::{Column, Row};
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch_all(app.store().pool()).await.unwrap();
    let mut out = String::new();
    for row in rows {
        for (i, col) in row.columns().iter().enumerate() {
            let v = row
                .try_get::<Option<String>, _>(i)
                .ok()
                .flatten()
                .or_else(|| row.try_get::<Option<i64>, _>(i).ok().flatten().map(|n| n.to_string()))
                .unwrap_or_default();
            out.push_str(&format!("{}={v};", col.name()));
        }
        out.push('\n');
    }
    out
}

app_test!(a_resident_reports_a_theft_privately_and_anonymously_with_photo_voice_and_location, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _details) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "昨晚村东头王家的电动车被偷了").await;
    assert!(got.text.contains("第1条"), "{}", got.text);
    let mark = app.fake.mark();
    app.fake.send_photo(chat, &t, Some("车棚的锁被撬了"));
    app.fake.send_voice(chat, &t);
    app.fake.send_location(chat, &t, 34.39, 113.74);
    let last = app.fake.wait_for_new(mark, |m| m.chat_id == chat && m.text.contains("第5条")).await;
    let anonymity = press(&app, chat, &t, &last, "说完了").await;
    assert!(anonymity.text.contains("匿名"), "{}", anonymity.text);
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    for expected in ["前店村", "盗窃", "电动车被偷", "车棚的锁被撬了", "照片1张", "语音1条", "位置1个", "身份：匿名"]
    {
        assert!(summary.text.contains(expected), "summary lacks {expected:?}:\n{}", summary.text);
    }
    let mark = app.fake.mark();
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).expect("a tip number").to_string();
    assert!(number.starts_with('T') && number.len() == "T20261123-0001".len(), "{number}");
    assert!(receipt.text.contains("查询密码："), "{}", receipt.text);

    // The resident officer of 前店村 gets the card, then the media, in his private chat.
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && m.text.contains(&number)).await;
    assert!(card.text.contains("匿名（代号") && card.text.contains("电动车被偷"), "{}", card.text);
    let labels: Vec<String> = buttons(&card).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels, ["受理", "回复", "转派", "办结"]);
    app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && m.method == "sendLocation").await;
    let to_officer: Vec<String> = app.fake.sent_to(zhang().id).iter().skip(1).map(|m| m.method.clone()).collect();
    assert_eq!(to_officer[1..], ["sendPhoto", "sendVoice", "sendLocation"], "{to_officer:?}");
    assert!(app.fake.sent_to(zhang().id).iter().all(|m| !m.text.contains("王大娘")));

    // The tipster's account is in no table in the clear: the separate mapping holds it sealed.
    let id = t.id.to_string();
    for table in ["tips", "tip_items", "tip_events", "tip_reporters"] {
        assert!(!dump(&app, table).await.contains(&id), "{table} holds the tipster's id");
    }
    assert!(dump(&app, "tip_reporters").await.contains("chat_sealed=e1:"), "the mapping is there, sealed");
    assert!(dump(&app, "tips").await.contains("anonymous=1"));
});

app_test!(the_officer_acknowledges_and_resolves_and_the_tipster_can_follow_by_status, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "仓库的电缆昨晚被人偷了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let mark = app.fake.mark();
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    let password = receipt.text.lines().find_map(|l| l.strip_prefix("查询密码：")).unwrap().to_string();
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && m.text.contains(&number)).await;

    let waiting = app.ask(chat, &t, &format!("/status {number} {password}")).await;
    assert!(waiting.text.contains("等待民警受理"), "{}", waiting.text);
    let by_button = press(&app, chat, &t, &receipt, "查询进展").await;
    assert_eq!(by_button.text, waiting.text, "the receipt's button answers like /status");
    let wrong = app.ask(chat, &t, &format!("/status {number} 000000")).await;
    assert!(wrong.text.contains("没有找到"), "a wrong password finds nothing: {}", wrong.text);

    let mark = app.fake.mark();
    let done = press(&app, zhang().id, &zhang(), &card, "受理").await;
    assert!(done.text.contains("已受理"), "{}", done.text);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains(&number) && told.text.contains("受理"), "{}", told.text);
    let twice = press(&app, zhang().id, &zhang(), &card, "受理").await;
    assert!(twice.text.contains("已经处理过"), "a second press changes nothing: {}", twice.text);

    // 办结 asks for a word to the tipster, with the usual ones as buttons.
    let ask = press(&app, zhang().id, &zhang(), &card, "办结").await;
    assert!(ask.text.contains("给群众的说明"), "{}", ask.text);
    let choices: Vec<String> = buttons(&ask).into_iter().map(|(l, _)| l).collect();
    assert_eq!(choices, ["已调解，双方达成一致", "已处理完毕", "已移交相关部门处理", "不写说明，直接办结"]);
    let mark = app.fake.mark();
    let closed = press(&app, zhang().id, &zhang(), &ask, "已调解").await;
    assert!(closed.text.contains("已办结") && closed.text.contains("已调解"), "{}", closed.text);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains("已办结") && told.text.contains("民警说明：已调解，双方达成一致"), "{}", told.text);
    let rating: Vec<String> = buttons(&told).into_iter().map(|(l, _)| l).collect();
    assert!(rating.iter().any(|l| l.contains("满意")), "the note comes with the rating: {rating:?}");
    let status = app.ask(chat, &t, &format!("/status {number} {password}")).await;
    assert!(
        status.text.contains("已办结") && status.text.contains("民警说明：已调解，双方达成一致"),
        "{}",
        status.text
    );

    let tip = app.store().tip_for_status(&number, &password).await.unwrap().unwrap();
    let events = app.store().tip_event_kinds(tip.id).await.unwrap();
    assert_eq!(events, ["created", "routed", "acknowledged", "resolved"]);
});

app_test!(a_tip_skips_an_off_duty_resident_officer_for_the_contact_officer, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    sqlx::query("UPDATE officers SET on_duty = 0 WHERE badge = '041201'").execute(app.store().pool()).await.unwrap();
    app.store().registry_changed();
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "村口小卖部被撬了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let mark = app.fake.mark();
    press(&app, chat, &t, &summary, "确认提交").await;
    let card = app.fake.wait_for_new(mark, |m| m.text.contains("新线索")).await;
    assert_eq!(card.chat_id, zhao.id, "the contact officer gets it");
    assert!(app.fake.sent_to(zhang().id).iter().all(|m| !m.text.contains("新线索")));
});

app_test!(a_named_tip_asks_again_for_a_bad_phone_number_and_shows_a_good_one_to_the_officer, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "邻居家的羊丢了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let phone = press(&app, chat, &t, &anonymity, "留电话").await;
    assert!(phone.text.contains("手机号"), "{}", phone.text);
    let again = app.ask(chat, &t, "12345").await;
    assert!(again.text.contains("格式不对"), "{}", again.text);
    let summary = app.ask(chat, &t, "139 0371 5555").await;
    assert!(summary.text.contains("实名，电话 13903715555"), "{}", summary.text);
    let mark = app.fake.mark();
    press(&app, chat, &t, &summary, "确认提交").await;
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    assert!(card.text.contains("☎ 13903715555") && !card.text.contains("匿名"), "{}", card.text);
    // Stored sealed: a copy of the database does not show the phone.
    let tips = dump(&app, "tips").await;
    assert!(!tips.contains("13903715555") && tips.contains("contact_phone=e1:"), "{tips}");
});

app_test!(a_tip_in_progress_survives_a_restart_and_cancel_submits_nothing, |app| {
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    app.restart().await;
    let got = app.ask(chat, &t, "后院的鸡被偷了两只").await;
    assert!(got.text.contains("第1条"), "the conversation went on after the restart: {}", got.text);
    let cancelled = app.ask(chat, &t, "/cancel").await;
    assert!(cancelled.text.contains("已取消"), "{}", cancelled.text);
    let stale = press(&app, chat, &t, &got, "说完了").await;
    assert!(stale.text.contains("已经结束"), "{}", stale.text);
    assert_eq!(dump(&app, "tips").await, "", "nothing was submitted");
});

app_test!(tip_in_a_group_points_to_a_private_chat_for_that_village, |app| {
    app.fake.group(GROUP, "前店村群", true);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(GROUP, &tipster());
    app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    app.store().bind_chat_to_village("telegram", GROUP, "前店村群", 2, None).await.unwrap();
    let pointer = app.ask(GROUP, &tipster(), "/tip").await;
    assert!(pointer.text.contains("公开"), "{}", pointer.text);
    let links = buttons(&pointer);
    assert_eq!(links[0].1, format!("https://t.me/cunjing_test_bot?start=tip_{QIANDIAN}"));
});

app_test!(an_officer_who_has_left_the_village_cannot_work_its_tip, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "有可疑人员").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let mark = app.fake.mark();
    press(&app, chat, &t, &summary, "确认提交").await;
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;

    // The registry moves 前店村 to 李卫东 before 张建国 gets to the card.
    let dir = crate::app::example_registry_with(&[(
        "assignments.csv",
        "410184101202,041201,resident,2024-03-01,",
        "410184101202,041202,resident,2024-03-01,",
    )]);
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    cunjing::registry::import_dir(app.store(), dir.path(), today).await.unwrap();

    let refused = press(&app, zhang().id, &zhang(), &card, "受理").await;
    assert!(refused.text.contains("无法操作"), "{}", refused.text);
    let tip = app.store().tip(1).await.unwrap().unwrap();
    assert_eq!(tip.status, "new");
});

/// Submits an anonymous theft tip for 前店村 with `text`; returns the tipster's chat, the
/// tip number and the officer's card (张建国 must be enrolled).
pub async fn submit_anonymous_tip(app: &TestApp, text: &str) -> (i64, String, SentMessage) {
    let t = tipster();
    let (chat, _) = start_theft_tip(app).await;
    let got = app.ask(chat, &t, text).await;
    let anonymity = press(app, chat, &t, &got, "说完了").await;
    let summary = press(app, chat, &t, &anonymity, "匿名").await;
    let mark = app.fake.mark();
    let receipt = press(app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && m.text.contains(&number)).await;
    (chat, number, card)
}

app_test!(officer_and_anonymous_tipster_talk_through_the_bot_without_the_tipster_being_named, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, number, card) = submit_anonymous_tip(&app, "有人半夜在仓库附近转悠").await;

    let prompt = press(&app, zhang().id, &zhang(), &card, "回复").await;
    assert!(prompt.text.contains("回复举报人"), "{}", prompt.text);
    let mark = app.fake.mark();
    let done = app.ask(zhang().id, &zhang(), "请问大概几点看到的？").await;
    assert!(done.text.contains("已转告举报人"), "{}", done.text);
    let relayed = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert_eq!(relayed.text, format!("民警回复（线索 {number}）：请问大概几点看到的？"));
    assert_eq!(app.fake.call_count("forwardMessage"), 0, "never a forward: no origin can leak");

    let prompt = press(&app, chat, &t, &relayed, "回复民警").await;
    assert!(prompt.text.contains("告诉民警"), "{}", prompt.text);
    let mark = app.fake.mark();
    let thanks = app.ask(chat, &t, "晚上十点左右，穿黑衣服").await;
    assert!(thanks.text.contains("已转告民警"), "{}", thanks.text);
    let to_officer = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    assert!(
        to_officer.text.starts_with("举报人 ")
            && to_officer.text.ends_with(&format!("（线索 {number}）：晚上十点左右，穿黑衣服")),
        "{}",
        to_officer.text
    );
    for m in app.fake.sent_to(zhang().id) {
        assert!(
            !m.text.contains("王大娘") && !m.text.contains(&t.id.to_string()),
            "the officer saw the tipster: {}",
            m.text
        );
    }

    // 办结 with the officer's own words: the tipster reads them before the rating.
    press(&app, zhang().id, &zhang(), &card, "办结").await;
    let mark = app.fake.mark();
    let closed = app.ask(zhang().id, &zhang(), "仓库加装了监控，巡逻已加密").await;
    assert!(closed.text.contains("已办结"), "{}", closed.text);
    let resolved = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(resolved.text.contains("民警说明：仓库加装了监控，巡逻已加密"), "{}", resolved.text);
    let thanks = press(&app, chat, &t, &resolved, "满意").await;
    assert!(thanks.text.contains("谢谢您的评价"), "{}", thanks.text);
    let again = press(&app, chat, &t, &resolved, "不满意").await;
    assert!(again.text.contains("已经评价过"), "{}", again.text);
    let tip = app.store().tip(1).await.unwrap().unwrap();
    assert_eq!(tip.rating.map(|r| r.as_str()), Some("satisfied"));
    let events = app.store().tip_event_kinds(tip.id).await.unwrap();
    assert_eq!(events, ["created", "routed", "message", "message", "resolved", "rated"]);
});

app_test!(stop_forgets_the_tipster_and_the_officer_can_no_longer_reach_them, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _number, card) = submit_anonymous_tip(&app, "桥下有人聚众赌博").await;
    let stopped = app.ask(chat, &t, "/stop").await;
    assert!(stopped.text.contains("已删除"), "{}", stopped.text);
    assert_eq!(dump(&app, "tip_reporters").await, "", "the mapping is gone");
    press(&app, zhang().id, &zhang(), &card, "回复").await;
    let mark = app.fake.mark();
    let gone = app.ask(zhang().id, &zhang(), "还在吗？").await;
    assert!(gone.text.contains("无法"), "{}", gone.text);
    assert!(app.fake.sent().iter().skip(mark).all(|m| m.chat_id != chat), "nothing reached the tipster");
});

const HALF_AN_HOUR_AND_A_BIT: std::time::Duration = std::time::Duration::from_secs(31 * 60);

app_test!(an_unacknowledged_tip_goes_to_the_contact_officer_after_the_deadline, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    let (_chat, number, _card) = submit_anonymous_tip(&app, "村委会门口的监控坏了").await;
    let mark = app.fake.mark();
    app.advance(HALF_AN_HOUR_AND_A_BIT);
    let escalated = app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;
    assert!(escalated.text.contains("超时未受理"), "{}", escalated.text);
    let done = press(&app, zhao.id, &zhao, &escalated, "受理").await;
    assert!(done.text.contains("已受理"), "{}", done.text);
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(tip.status, "acknowledged");
    assert_eq!(app.store().tip_event_kinds(tip.id).await.unwrap(), ["created", "routed", "escalated", "acknowledged"]);
});

app_test!(an_escalation_deadline_survives_a_restart, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    let (_chat, number, _card) = submit_anonymous_tip(&app, "路边有个井盖丢了，很危险").await;
    app.restart().await;
    let mark = app.fake.mark();
    app.advance(HALF_AN_HOUR_AND_A_BIT);
    app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;
});

app_test!(at_the_end_of_the_chain_everyone_is_reminded_until_someone_acknowledges, |app| {
    app.enrol("041201", &zhang()).await;
    let (_chat, number, _card) = submit_anonymous_tip(&app, "有陌生人挨家挨户推销保健品").await;
    for round in 1..=2 {
        let mark = app.fake.mark();
        app.advance(HALF_AN_HOUR_AND_A_BIT);
        let reminder = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && m.text.contains(&number)).await;
        assert!(reminder.text.contains("超时未受理"), "round {round}: {}", reminder.text);
    }
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(app.store().tip_event_kinds(tip.id).await.unwrap(), ["created", "routed", "reminded", "reminded"]);
});

pub const STAFF: i64 = -1009000000001;

/// Makes the test group the staff group of 和庄派出所, bound by 张建国.
pub async fn staff_group(app: &TestApp) {
    app.fake.group(STAFF, "和庄派出所内勤", true);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(STAFF, &zhang());
    app.fake.wait_for_new(mark, |m| m.chat_id == STAFF).await;
    let refused = app.ask(STAFF, &tipster(), "/bindstation HZPCS").await;
    assert!(refused.text.contains("抱歉"), "{}", refused.text);
    let done = app.ask(STAFF, &zhang(), "/bindstation HZPCS").await;
    assert!(done.text.contains("内勤群"), "{}", done.text);
    // Reviewing the station's tips is the staff's job: 张建国 is granted the role.
    assert!(app.store().set_grant("041201", Some(cunjing::domain::Grant::Staff), 0).await.unwrap());
}

app_test!(the_station_staff_group_sees_new_tips_assigns_them_only_within_the_village_and_never_reopens_them, |app| {
    app.enrol("041201", &zhang()).await;
    // 赵明 is 前店村's contact officer; 李卫东 serves other villages.
    let zhao = TgUser::new(6002, "赵明");
    app.enrol("041204", &zhao).await;
    let li = TgUser::new(6003, "李卫东");
    app.enrol("041202", &li).await;
    staff_group(&app).await;
    let t = tipster();
    let mark = app.fake.mark();
    let (chat, number, _card) = submit_anonymous_tip(&app, "两家因为宅基地吵了好几天了").await;
    let notice = app.fake.wait_for_new(mark, |m| m.chat_id == STAFF).await;
    assert!(notice.text.contains(&number) && notice.text.contains("已派给 张建国"), "{}", notice.text);

    let list = app.ask(STAFF, &zhang(), "/tips").await;
    assert!(list.text.contains(&number) && list.text.contains("前店村"), "{}", list.text);
    let detail = app.ask(STAFF, &zhang(), &format!("/tip {number}")).await;
    assert!(detail.text.contains("宅基地") && detail.text.contains("routed"), "{}", detail.text);
    assert!(!detail.text.contains("王大娘") && !detail.text.contains(&t.id.to_string()), "{}", detail.text);

    let refused = app.ask(STAFF, &zhang(), &format!("/assign {number} 041202")).await;
    assert!(refused.text.contains("不负责前店村"), "an officer of another village is refused: {}", refused.text);
    assert!(app.fake.sent_to(li.id).iter().all(|m| !m.text.contains(&number)), "李卫东 never sees the tip");
    let mark = app.fake.mark();
    let assigned = app.ask(STAFF, &zhang(), &format!("/assign {number} 041204")).await;
    assert!(assigned.text.contains("赵明"), "{}", assigned.text);
    app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;

    let mark = app.fake.mark();
    let resolved = app.ask(STAFF, &zhang(), &format!("/resolve {number} 已当面调解，双方和好")).await;
    assert!(resolved.text.contains("已办结"), "{}", resolved.text);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains("已办结") && !buttons(&told).is_empty(), "the tipster is asked to rate: {}", told.text);
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!((tip.status.as_str(), tip.public_note.as_deref()), ("resolved", Some("已当面调解，双方和好")));
    assert_eq!(app.store().tip_event_kinds(tip.id).await.unwrap(), ["created", "routed", "assigned", "resolved"]);
    let reopened = app.ask(STAFF, &zhang(), &format!("/assign {number} 041201")).await;
    assert!(reopened.text.contains("已经处理过了"), "a closed tip is not reopened by /assign: {}", reopened.text);
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(tip.status, "resolved");

    let refused = app.ask(STAFF, &t, "/tips").await;
    assert!(refused.text.contains("抱歉"), "a resident in the staff group is refused: {}", refused.text);
    let refused = app.ask(STAFF, &zhao, "/tips").await;
    assert!(refused.text.contains("内勤"), "an officer without the staff role is refused: {}", refused.text);
    let none = app.ask(STAFF, &zhang(), "/tip T19990101-0001").await;
    assert!(none.text.contains("没有找到"), "{}", none.text);
});

app_test!(the_staff_group_hears_when_a_tip_is_not_acknowledged_in_time, |app| {
    app.enrol("041201", &zhang()).await;
    staff_group(&app).await;
    let (_chat, number, _card) = submit_anonymous_tip(&app, "河边护栏断了，小孩容易掉下去").await;
    // The new-tip notice follows the officer's card; let it arrive before time moves.
    app.fake.wait_for_sent(|m| m.chat_id == STAFF && m.text.contains(&number)).await;
    let mark = app.fake.mark();
    app.advance(HALF_AN_HOUR_AND_A_BIT);
    let notice = app.fake.wait_for_new(mark, |m| m.chat_id == STAFF).await;
    assert!(notice.text.contains(&number) && notice.text.contains("超时未受理"), "{}", notice.text);
});

/// 前店村's group with the bot added and bound, and the tipster's private chat with the bot.
async fn village_group_with_tipster(app: &TestApp) {
    app.fake.group(GROUP, "前店村群", true);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(GROUP, &tipster());
    app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    let village = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "前店村群", village.id, None).await.unwrap();
    app.fake.private_chat(tipster());
}

app_test!(a_tip_written_in_a_group_is_recorded_and_its_password_sent_privately, |app| {
    app.enrol("041201", &zhang()).await;
    village_group_with_tipster(&app).await;
    let mark = app.fake.mark();
    let public = app.ask(GROUP, &tipster(), "/tip 村口那辆白色面包车天天晚上来，很可疑").await;
    assert!(public.text.contains("已记录为线索") && public.text.contains("公开"), "{}", public.text);
    assert!(!public.text.contains("查询密码："), "no password in a public group: {}", public.text);
    let receipt = app.fake.wait_for_new(mark, |m| m.chat_id == tipster().id).await;
    assert!(receipt.text.contains("查询密码："), "{}", receipt.text);
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    assert!(card.text.contains("白色面包车") && !card.text.contains("匿名"), "{}", card.text);
    let tip = app.store().tip(1).await.unwrap().unwrap();
    assert_eq!((tip.source.as_str(), tip.anonymous), ("group", false));
    assert_eq!(tip.category, "suspicious", "filed under the category triage read (issue #20)");
    app.ask(GROUP, &tipster(), "/tip 俺家的电动车夜儿个叫人偷走了").await;
    assert_eq!(app.store().tip(2).await.unwrap().unwrap().category, "theft");
});

// Issue #20: a lone polling daemon on SQLite did not record handled updates, so the same
// `/tip <text>` update served again after a crash (before its offset was confirmed) became a
// second tip with a second password and a second officer card.
app_test!(a_group_tip_update_delivered_again_after_a_restart_is_one_tip, |app| {
    app.enrol("041201", &zhang()).await;
    village_group_with_tipster(&app).await;
    let mark = app.fake.mark();
    let (_, update) = app.fake.send_text_update(GROUP, &tipster(), "/tip 夜里有人在村东头偷电缆");
    app.fake.wait_for_new(mark, |m| m.chat_id == tipster().id && m.text.contains("查询密码：")).await;
    app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    app.stop().await;
    let sent = app.fake.sent().len();
    // The daemon died before confirming it: a restarted daemon polls from the start.
    app.fake.deliver_again(update);
    app.restart().await;
    // A sentinel after it: once it is answered, the redelivered update was handled too.
    app.ask(GROUP, &tipster(), "/help").await;
    assert!(app.fake.confirmed_offset() > update, "the update was taken again");
    assert_eq!(app.store().list_tips(&Default::default()).await.unwrap().len(), 1, "one update, one tip");
    let again: Vec<_> = app.fake.sent()[sent..].iter().filter(|m| m.chat_id != GROUP).cloned().collect();
    assert!(again.is_empty(), "no second receipt or card: {again:?}");
});

app_test!(a_sticker_while_writing_a_tip_gets_a_clear_answer, |app| {
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let mark = app.fake.mark();
    app.fake.push_raw_update(serde_json::json!({"message": {
        "message_id": 900, "date": 1_763_856_000, "chat": {"id": chat, "type": "private", "first_name": "王大娘"},
        "from": {"id": t.id, "is_bot": false, "first_name": "王大娘"},
        "sticker": {"file_id": "CAACAgIAAxk", "file_unique_id": "st1", "type": "regular", "width": 512, "height": 512, "is_animated": false, "is_video": false}
    }}));
    let answer = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(answer.text.contains("收不了这种文件"), "{}", answer.text);
    let got = app.ask(chat, &t, "还是用文字说吧").await;
    assert!(got.text.contains("第1条"), "the draft is intact: {}", got.text);
});

app_test!(a_tipster_over_the_hourly_limit_is_asked_to_wait, |app| {
    app.enrol("041201", &zhang()).await;
    for n in 0..5 {
        submit_anonymous_tip(&app, &format!("第{n}件事")).await;
    }
    let t = tipster();
    let chat = t.id;
    let refused = app.ask(chat, &t, &format!("/start tip_{QIANDIAN}")).await;
    assert!(refused.text.contains("一小时内已提交5条"), "{}", refused.text);
    assert!(refused.text.contains("110"), "{}", refused.text);
});

app_test!(a_group_tip_over_the_hourly_limit_is_refused_privately_and_not_recorded, |app| {
    app.enrol("041201", &zhang()).await;
    village_group_with_tipster(&app).await;
    for n in 0..5 {
        submit_anonymous_tip(&app, &format!("第{n}件事")).await;
    }
    let mark = app.fake.mark();
    app.fake.send_text(GROUP, &tipster(), "/tip 又看见那辆面包车了");
    let refused = app.fake.wait_for_new(mark, |m| m.chat_id == tipster().id).await;
    assert!(refused.text.contains("一小时内已提交5条"), "{}", refused.text);
    let tips: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tips").fetch_one(app.store().pool()).await.unwrap();
    assert_eq!(tips, 5, "the sixth was not recorded");
    assert!(app.fake.sent().into_iter().skip(mark).all(|m| m.chat_id != zhang().id), "the officer got no card for it");
});

app_test!(a_card_longer_than_telegram_allows_arrives_in_parts_with_the_buttons_last, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let mut last = None;
    for n in 0..3 {
        last = Some(app.ask(chat, &t, &format!("{n}{}", "详细情况".repeat(400))).await);
    }
    let anonymity = press(&app, chat, &t, &last.unwrap(), "说完了").await;
    let summary_mark = app.fake.mark();
    app.fake.press_button(chat, &t, anonymity.message_id, "t:anon");
    let summary = app.fake.wait_for_new(summary_mark, |m| m.chat_id == chat && !buttons(m).is_empty()).await;
    let mark = app.fake.mark();
    press(&app, chat, &t, &summary, "确认提交").await;
    let card_end = app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id && !buttons(m).is_empty()).await;
    let to_officer: Vec<SentMessage> =
        app.fake.sent().into_iter().skip(mark).filter(|m| m.chat_id == zhang().id).collect();
    assert!(to_officer.len() >= 2, "the card came in parts: {}", to_officer.len());
    assert!(to_officer.iter().all(|m| m.text.encode_utf16().count() <= 4096));
    assert_eq!(to_officer.iter().filter(|m| !buttons(m).is_empty()).count(), 1, "buttons only once");
    assert_eq!(card_end.message_id, to_officer.last().unwrap().message_id, "under the last part");
    assert!(app.store().send_failures().await.unwrap().is_empty());
});

app_test!(an_officer_on_leave_is_skipped_until_the_leave_ends, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    let leave = app.ask(zhang().id, &zhang(), "/duty off 2099-01-01").await;
    assert!(leave.text.contains("请假到 2099-01-01"), "{}", leave.text);
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "晒的玉米被人拉走了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let mark = app.fake.mark();
    press(&app, chat, &t, &summary, "确认提交").await;
    let card = app.fake.wait_for_new(mark, |m| m.text.contains("新线索")).await;
    assert_eq!(card.chat_id, zhao.id, "the contact officer stands in");
    let back = app.ask(zhang().id, &zhang(), "/duty on").await;
    assert!(back.text.contains("恢复在岗"), "{}", back.text);
    let usage = app.ask(zhang().id, &zhang(), "/duty off yesterday").await;
    assert!(usage.text.contains("用法"), "{}", usage.text);
});

app_test!(an_officer_hands_a_tip_over_and_talking_with_the_tipster_marks_it_in_progress, |app| {
    app.enrol("041201", &zhang()).await;
    let zhao = TgUser::new(6004, "赵明");
    app.enrol("041204", &zhao).await;
    let (_chat, number, card) = submit_anonymous_tip(&app, "小卖部门口有人卖假烟").await;
    let choices = press(&app, zhang().id, &zhang(), &card, "转派").await;
    let mark = app.fake.mark();
    let done = press(&app, zhang().id, &zhang(), &choices, "赵明").await;
    assert!(done.text.contains("转派给 赵明"), "{}", done.text);
    let new_card = app.fake.wait_for_new(mark, |m| m.chat_id == zhao.id && m.text.contains(&number)).await;
    press(&app, zhao.id, &zhao, &new_card, "受理").await;
    press(&app, zhao.id, &zhao, &new_card, "回复").await;
    app.ask(zhao.id, &zhao, "收到，我们今晚去看看").await;
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(tip.status, "in_progress");
    assert_eq!(
        app.store().tip_event_kinds(tip.id).await.unwrap(),
        ["created", "routed", "reassigned", "acknowledged", "message", "in_progress"]
    );
});

app_test!(staff_merge_a_duplicate_tip_into_another, |app| {
    app.enrol("041201", &zhang()).await;
    staff_group(&app).await;
    let (_c1, first, _) = submit_anonymous_tip(&app, "水库边有人电鱼").await;
    let (chat, second, _) = submit_anonymous_tip(&app, "又看到有人在水库电鱼").await;
    // The staff group's notice of the second tip follows the officer's card.
    app.fake.wait_for_sent(|m| m.chat_id == STAFF && m.text.contains(&second)).await;
    let mark = app.fake.mark();
    let merged = app.ask(STAFF, &zhang(), &format!("/merge {second} {first}")).await;
    assert!(merged.text.contains(&format!("并入 {first}")), "{}", merged.text);
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains("合并办理"), "{}", told.text);
    let tip = app.store().tip_by_number(&second).await.unwrap().unwrap();
    assert_eq!(tip.status, "merged");
});

app_test!(a_tip_left_unfinished_times_out_politely, |app| {
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    app.advance(HALF_AN_HOUR_AND_A_BIT);
    let mark = app.fake.mark();
    app.fake.send_text(chat, &t, "前店村");
    let notice = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(notice.text.contains("超过30分钟没有完成"), "{}", notice.text);
    assert_eq!(dump(&app, "tips").await, "", "nothing was submitted");
});

app_test!(a_group_tip_is_deleted_from_the_group_where_the_bot_is_admin_and_configured_to, |app| {
    app.stop().await;
    app.settings.file.tips.delete_group_tips = true;
    app.restart().await;
    app.enrol("041201", &zhang()).await;
    app.fake.group(GROUP, "前店村群", true);
    let mark = app.fake.mark();
    app.fake.add_bot_to_group(GROUP, &tipster());
    app.fake.wait_for_new(mark, |m| m.chat_id == GROUP).await;
    app.fake.promote_bot(GROUP, &tipster());
    let village = app.store().village_by_code(QIANDIAN).await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "前店村群", village.id, None).await.unwrap();
    let mark = app.fake.mark();
    let posted = app.fake.send_text(GROUP, &tipster(), "/tip 李四家的狗咬了人，他还不认账");
    app.fake.wait_for_new(mark, |m| m.chat_id == zhang().id).await;
    let deletes = app.fake.wait_for_calls("deleteMessage", 1).await;
    assert_eq!(deletes[0]["chat_id"], GROUP);
    assert_eq!(deletes[0]["message_id"], posted);
    assert!(app.store().chat("telegram", GROUP).await.unwrap().unwrap().bot_admin);
});

on_both_engines!(tips_sent_at_once_by_one_chat_never_pass_its_limit_together, |db| {
    use cunjing::store::tips::{NewTip, TipItem, TipLimit, TipOutcome};
    import_example(&db.store).await;
    let village = db.store.village_by_code(QIANDIAN).await.unwrap().unwrap();
    let tip = |chat: i64, n: usize| NewTip {
        village_id: village.id,
        reported_village_id: None,
        category: "theft".into(),
        source: cunjing::domain::TipSource::Private,
        anonymous: true,
        contact_phone: None,
        items: vec![TipItem::Text { text: format!("第{n}件事") }],
        reporter_platform: "telegram".into(),
        reporter_chat_id: chat,
        day: "20261202".into(),
    };
    let limit = TipLimit { max: 3, since: 0 };
    // Twelve at once, as a burst reaches the writer: eight from one chat, four from another.
    let outcomes = futures::future::join_all((0..12).map(|n| {
        let (store, new) = (db.store.clone(), tip(if n % 3 == 2 { 2002 } else { 1001 }, n));
        async move { store.create_routed_tip(&new, None, Some(limit)).await.unwrap() }
    }))
    .await;
    let created = |chat: i64| {
        outcomes
            .iter()
            .zip(0..)
            .filter(|(o, n)| (if n % 3 == 2 { 2002 } else { 1001 }) == chat && matches!(o, TipOutcome::Created(..)))
            .count()
    };
    assert_eq!(created(1001), 3, "the chat with eight gets three in");
    assert_eq!(created(2002), 3, "the other chat is held to its own count");
    let refused: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            TipOutcome::OverLimit { reported } => Some(*reported),
            TipOutcome::Created(..) => None,
        })
        .collect();
    assert_eq!(refused, [3; 6], "each refusal says how many were already in");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tips").fetch_one(db.store.pool()).await.unwrap();
    assert_eq!(stored, 6);
    let numbers: Vec<String> =
        sqlx::query_scalar("SELECT number FROM tips ORDER BY number").fetch_all(db.store.pool()).await.unwrap();
    assert_eq!(numbers, (1..=6).map(|n| format!("T20261202-{n:04}")).collect::<Vec<_>>(), "numbered without gaps");
});

app_test!(wrong_status_passwords_are_limited_per_account_and_per_tip_and_no_record_links_a_person_to_a_tip, |app| {
    app.enrol("041201", &zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "院里的三轮车被人偷了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    let password = receipt.text.lines().find_map(|l| l.strip_prefix("查询密码：")).unwrap().to_string();
    let wrong = if password == "000000" { "000001" } else { "000000" };

    // One account guessing: five wrong answers, then even the right password waits an hour.
    let guesser = TgUser::new(5301, "某人");
    let g_chat = app.fake.private_chat(guesser.clone());
    for _ in 0..5 {
        let a = app.ask(g_chat, &guesser, &format!("/status {number} {wrong}")).await;
        assert!(a.text.contains("没有找到"), "{}", a.text);
    }
    let refused = app.ask(g_chat, &guesser, &format!("/status {number} {password}")).await;
    assert!(refused.text.contains("一小时后再试"), "the sixth try is refused: {}", refused.text);
    let own = app.ask(chat, &t, &format!("/status {number} {password}")).await;
    assert!(own.text.contains("等待民警受理"), "another account is not held back: {}", own.text);

    // Many accounts guessing one tip: at ten wrong passwords in the hour the tip is locked.
    for n in 0..5 {
        let other = TgUser::new(5400 + n, "某人");
        let c = app.fake.private_chat(other.clone());
        app.ask(c, &other, &format!("/status {number} {wrong}")).await;
    }
    let locked = app.ask(chat, &t, &format!("/status {number} {password}")).await;
    assert!(locked.text.contains("一小时后再试"), "the tip is locked for the hour: {}", locked.text);
    app.advance(std::time::Duration::from_secs(3600));
    let later = app.ask(chat, &t, &format!("/status {number} {password}")).await;
    assert!(later.text.contains("等待民警受理"), "an hour later it answers again: {}", later.text);

    // The audit log counts the attempts without saying which tip a person asked about.
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT actor, target, detail FROM audit_log WHERE action IN ('status', 'status_lock')")
            .fetch_all(app.store().pool())
            .await
            .unwrap();
    assert!(rows.len() >= 11, "{rows:?}");
    for (actor, target, detail) in &rows {
        let names_tip = target.contains(&number) || detail.contains(&number);
        assert!(!(names_tip && actor != "system"), "a person linked to the tip: {actor} {target} {detail}");
    }
    assert!(rows.iter().any(|(a, t, _)| a == "system" && t.contains(&number)), "the lock is recorded: {rows:?}");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM tips WHERE number = $1")
        .bind(&number)
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert!(stored.starts_with("h1$"), "a keyed hash: {stored}");
    use sha2::Digest as _;
    let unkeyed: String =
        sha2::Sha256::digest(format!("{number}:{password}")).iter().map(|b| format!("{b:02x}")).collect();
    assert!(!stored.contains(&unkeyed), "not the unkeyed SHA-256 a database copy would reverse");
});
