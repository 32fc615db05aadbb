//! A location finds its officer (issue #24): a resident shares a location in a private chat
//! and gets the card of the village whose area holds it, a question between two villages near
//! a boundary, or the duty line outside every area; a tip with a location goes to the officer
//! of the village where the location lies.
//!
//! The example registry's areas (`bot-config/example/areas.geojson`, WGS-84): a 6 km × 4 km
//! station whose south-west corner is 113.70 E, 34.48 N; 和庄村, 前店村, 后店村 in the south
//! row (2 km each), 王庄村, 东岗村, 西岗村 in the north row. Telegram does not say a point's
//! datum, so a point is read both as sent and as GCJ-02 (here that reading lies ~560 m west
//! and ~140 m north of the point); the points below are far enough from other villages for
//! both readings. Every test app has them: they come with the example registry's import.

use crate::app::{TestApp, press};
use crate::app_test;
use crate::fake_telegram::{TgUser, buttons};
use crate::tips::{start_theft_tip, tipster};

/// 50 m inside 和庄村 from 前店村.
const BOUNDARY: (f64, f64) = (34.489044, 113.72125);
/// The middle of 和庄村 (1 km from its neighbours).
const HEZHUANG: (f64, f64) = (34.489044, 113.710898);
/// In 王庄村, 800 m from its neighbours.
const WANGZHUANG: (f64, f64) = (34.505312, 113.71308);
/// The middle of 后店村 (its resident officer: 李卫东, 041202).
const HOUDIAN: (f64, f64) = (34.489044, 113.754488);
/// Ten kilometres south of the station.
const FAR_AWAY: (f64, f64) = (34.39, 113.74);

fn resident() -> TgUser {
    TgUser::new(5301, "刘大爷")
}

fn li() -> TgUser {
    TgUser::new(6002, "李卫东")
}

/// `user` shares `(lat, lon)` in their private chat; the bot's first answer there.
async fn share(app: &TestApp, user: &TgUser, (lat, lon): (f64, f64)) -> crate::fake_telegram::SentMessage {
    let chat = app.fake.private_chat(user.clone());
    let mark = app.fake.mark();
    app.fake.send_location(chat, user, lat, lon);
    app.fake.wait_for_new(mark, |m| m.chat_id == chat).await
}

app_test!(a_location_near_a_boundary_asks_which_village_and_the_pick_is_remembered, |app| {
    let r = resident();
    let question = share(&app, &r, BOUNDARY).await;
    assert!(question.text.contains("交界"), "{}", question.text);
    let labels: Vec<String> = buttons(&question).into_iter().map(|(l, _)| l).collect();
    assert_eq!(labels.len(), 2, "{labels:?}");
    assert!(labels[0].starts_with("和庄村") && labels[1].starts_with("前店村"), "the likelier first: {labels:?}");

    let card = press(&app, r.id, &r, &question, "前店村").await;
    assert!(card.text.contains("前店村 警民联系卡") && card.text.contains("张建国"), "{}", card.text);
    let again = app.ask(r.id, &r, "我们村民警电话多少").await;
    assert!(again.text.contains("前店村 警民联系卡"), "the village is remembered: {}", again.text);
});

app_test!(a_location_well_inside_a_village_gets_its_card_at_once_and_a_venue_too, |app| {
    let r = resident();
    let card = share(&app, &r, HEZHUANG).await;
    assert!(card.text.contains("和庄村 警民联系卡") && card.text.contains("张建国"), "{}", card.text);
    assert!(buttons(&card).is_empty(), "no question: {card:?}");
    let again = app.ask(r.id, &r, "我们村民警电话多少").await;
    assert!(again.text.contains("和庄村 警民联系卡"), "the village is remembered: {}", again.text);

    // A place picked from the map arrives as a venue with its location.
    let other = TgUser::new(5302, "孙大妈");
    let chat = app.fake.private_chat(other.clone());
    let mark = app.fake.mark();
    app.fake.send_venue(chat, &other, WANGZHUANG.0, WANGZHUANG.1, "王庄村委会");
    let card = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(card.text.contains("王庄村 警民联系卡") && card.text.contains("李卫东"), "{}", card.text);
});

app_test!(a_location_outside_every_area_gets_110_and_the_stations_duty_line, |app| {
    let answer = share(&app, &resident(), FAR_AWAY).await;
    for expected in ["不在", "110", "和庄派出所", "0371-62581110"] {
        assert!(answer.text.contains(expected), "lacks {expected:?}: {}", answer.text);
    }
});

/// In 前店村, 300 m east of 和庄村: read as GCJ-02 it lies ~560 m further west, in 和庄村.
const QIANDIAN_WEST: (f64, f64) = (34.489044, 113.725064);

app_test!(a_telegram_point_is_read_both_ways_unless_the_station_says_its_datum, |app| {
    app.settings.file.places.confirm_within_m = 100;
    app.restart().await;
    let asked = share(&app, &resident(), QIANDIAN_WEST).await;
    let labels: Vec<String> = buttons(&asked).into_iter().map(|(label, _)| label).collect();
    assert!(
        labels.len() == 2 && labels[0].contains("前店村") && labels[1].contains("和庄村"),
        "both readings are offered, the point as sent first: {labels:?}"
    );

    app.settings.file.places.unknown_datum = Some(cunjing::domain::Datum::Wgs84);
    app.restart().await;
    let card = share(&app, &resident(), QIANDIAN_WEST).await;
    assert!(
        card.text.contains("前店村 警民联系卡") && buttons(&card).iter().all(|(l, _)| !l.contains("和庄村")),
        "{}",
        card.text
    );
});

app_test!(without_areas_a_location_is_answered_as_before, |app| {
    sqlx::query("DELETE FROM areas").execute(app.store().writer()).await.unwrap();
    let answer = share(&app, &resident(), WANGZHUANG).await;
    assert!(answer.text.contains("/tip"), "{}", answer.text);
});

app_test!(a_tip_located_in_another_village_goes_to_its_officer_and_keeps_the_reporting_village, |app| {
    app.enrol("041201", &crate::tips::zhang()).await;
    app.enrol("041202", &li()).await;
    let t = tipster();
    // Started from 前店村's group link; the location is in 后店村. Its datum is unknown and
    // its GCJ-02 reading lies 440 m from 前店村: the tip takes the likelier village, 后店村,
    // without asking.
    let (chat, _) = start_theft_tip(&app).await;
    app.ask(chat, &t, "后店村口的变压器电缆被人剪了").await;
    let mark = app.fake.mark();
    app.fake.send_location(chat, &t, HOUDIAN.0, HOUDIAN.1);
    let got = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(got.text.contains("第2条"), "{}", got.text);
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    assert!(summary.text.contains("村（格）：前店村") && summary.text.contains("位置在：后店村"), "{}", summary.text);
    let mark = app.fake.mark();
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).expect("a tip number").to_string();

    let card = app.fake.wait_for_new(mark, |m| m.chat_id == li().id && m.text.contains(&number)).await;
    assert!(card.text.contains("后店村") && card.text.contains("前店村反映"), "{}", card.text);
    app.fake.wait_for_new(mark, |m| m.chat_id == li().id && m.method == "sendLocation").await;
    assert!(
        app.fake.sent_to(crate::tips::zhang().id).iter().all(|m| !m.text.contains(&number)),
        "前店村's officer is not handed it"
    );
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    let houdian = app.store().village_by_code("410184101203").await.unwrap().unwrap();
    let qiandian = app.store().village_by_code(crate::tips::QIANDIAN).await.unwrap().unwrap();
    assert_eq!((tip.village_id, tip.reported_village_id), (houdian.id, Some(qiandian.id)));
});

app_test!(a_tip_with_a_location_outside_every_area_stays_with_the_reporting_village, |app| {
    app.enrol("041201", &crate::tips::zhang()).await;
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    app.ask(chat, &t, "有人在外地骗了我家老人").await;
    let mark = app.fake.mark();
    app.fake.send_location(chat, &t, FAR_AWAY.0, FAR_AWAY.1);
    let got = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    assert!(!summary.text.contains("位置在"), "{}", summary.text);
    let mark = app.fake.mark();
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    app.fake.wait_for_new(mark, |m| m.chat_id == crate::tips::zhang().id && m.text.contains(&number)).await;
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(tip.reported_village_id, None);
});

app_test!(a_location_answers_a_tips_question_which_village, |app| {
    let t = TgUser::new(5303, "周婶");
    let chat = app.fake.private_chat(t.clone());
    let ask = app.ask(chat, &t, "/tip").await;
    assert!(ask.text.contains("哪个村"), "{}", ask.text);
    let mark = app.fake.mark();
    app.fake.send_location(chat, &t, WANGZHUANG.0, WANGZHUANG.1);
    let categories = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(categories.text.contains("王庄村"), "the place is the tip's village: {}", categories.text);
    assert!(buttons(&categories).iter().any(|(l, _)| l.contains("盗窃")), "{categories:?}");
});

app_test!(a_location_typed_at_the_console_is_wgs84_and_finds_its_village, |app| {
    let mut console = app.restart_with_console().await;
    console.type_line("/in private").await;
    console.type_line(&format!("/loc {},{}", WANGZHUANG.0, WANGZHUANG.1)).await;
    crate::app::eventually("the console resident gets 王庄村's card", || async {
        console.screen().contains("王庄村 警民联系卡")
    })
    .await;
});

app_test!(a_location_near_a_boundary_asked_for_by_a_tip_is_answered_with_a_button, |app| {
    let t = TgUser::new(5304, "吴叔");
    let chat = app.fake.private_chat(t.clone());
    app.ask(chat, &t, "/tip").await;
    let mark = app.fake.mark();
    app.fake.send_location(chat, &t, BOUNDARY.0, BOUNDARY.1);
    let question = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(question.text.contains("交界"), "{}", question.text);
    let categories = press(&app, chat, &t, &question, "前店村").await;
    assert!(categories.text.contains("前店村"), "the tip goes on in the picked village: {}", categories.text);
    let details = press(&app, chat, &t, &categories, "盗窃").await;
    let anonymity = press(&app, chat, &t, &details, "说完了").await;
    assert!(anonymity.text.contains("匿名"), "the location is the tip's first item: {}", anonymity.text);
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    assert!(summary.text.contains("村（格）：前店村") && summary.text.contains("位置1个"), "{}", summary.text);
    assert!(!summary.text.contains("位置在"), "the picked village is the tip's own: {}", summary.text);
});

app_test!(a_location_sent_at_the_last_step_is_added_and_routes_the_tip, |app| {
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "麦场的抽水机被偷了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    assert!(!summary.text.contains("位置"), "{}", summary.text);
    let mark = app.fake.mark();
    app.fake.send_location(chat, &t, HOUDIAN.0, HOUDIAN.1);
    let added = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(added.text.contains("位置收到了"), "{}", added.text);
    let again = app.fake.wait_for_new(mark, |m| m.chat_id == chat && m.text.contains("请确认")).await;
    assert!(again.text.contains("位置在：后店村") && again.text.contains("位置1个"), "{}", again.text);
    let receipt = press(&app, chat, &t, &again, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    let houdian = app.store().village_by_code("410184101203").await.unwrap().unwrap();
    assert_eq!(tip.village_id, houdian.id);
});
