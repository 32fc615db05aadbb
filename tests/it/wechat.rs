//! Residents on ordinary WeChat through WeCom customer service, against the fake WeCom of
//! `fake_wecom.rs`, in the same daemon as Telegram: encrypted callbacks, the pull cursor, the
//! welcome by a village's link, the contact card, emergencies, repeated messages, token
//! expiry and a restart.

use crate::app::eventually;
use crate::app_test;
use crate::fake_wecom::FakeWecom;

/// 和庄村, whose resident officer is 张建国 (041201, ☎ 13903710121).
const HEZHUANG: &str = "410184101201";
const RESIDENT: &str = "wmResidentA";

/// Turns the station console on for the next start, with the staff account `neiqin` of
/// 和庄派出所; returns its port.
async fn with_desk(app: &mut crate::app::TestApp) -> u16 {
    let port = crate::app::free_port();
    app.settings.file.web.enabled = true;
    app.settings.file.web.listen = format!("127.0.0.1:{port}");
    app.settings.file.web.secure_cookies = false;
    let hz = app.store().station_id("HZPCS").await.unwrap();
    let hash = cunjing::web::hash_password(crate::web::PASSWORD).unwrap();
    app.store().upsert_web_user("neiqin", hz, cunjing::domain::Grant::Staff, &hash, None, 0).await.unwrap();
    port
}

async fn replies(wecom: &FakeWecom, user: &str, at_least: usize) -> Vec<crate::fake_wecom::Sent> {
    eventually(&format!("{at_least} answers reach {user}"), || async { wecom.sent_to(user).len() >= at_least }).await;
    wecom.sent_to(user)
}

app_test!(a_wechat_resident_from_a_village_link_gets_a_welcome_then_the_officers_card, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;

    wecom.resident_enters(RESIDENT, HEZHUANG);
    assert_eq!(wecom.notify(&url).await, 200);
    let welcome = replies(&wecom, RESIDENT, 1).await;
    assert_eq!(welcome[0].via, "send_msg_on_event", "the first answer uses the welcome code");
    assert!(welcome[0].text.contains("和庄村"), "the link's village is known: {:?}", welcome[0]);

    wecom.resident_says(RESIDENT, "我们村民警电话多少");
    wecom.notify(&url).await;
    let all = replies(&wecom, RESIDENT, 2).await;
    let card = &all[1];
    assert_eq!(card.via, "send_msg");
    assert!(card.text.contains("张建国") && card.text.contains("13903710121"), "{card:?}");
});

app_test!(a_wechat_resident_reporting_a_fight_is_told_to_call_110_at_once, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    wecom.resident_says(RESIDENT, "村口有人拿刀打架，快来人");
    wecom.notify(&url).await;
    let answer = replies(&wecom, RESIDENT, 1).await;
    assert!(answer[0].text.contains("110"), "{:?}", answer[0]);
});

app_test!(a_wechat_callback_with_a_wrong_signature_is_refused_and_pulls_nothing, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    eventually("the start-up pull is done", || async { wecom.sync_calls() >= 1 }).await;
    let pulls = wecom.sync_calls();
    wecom.resident_says(RESIDENT, "我们村民警电话多少");
    let (query, body) = wecom.callback();
    let forged = query.replacen("msg_signature=", "msg_signature=0", 1);
    let status = reqwest::Client::new().post(format!("{url}?{forged}")).body(body).send().await.unwrap().status();
    assert_eq!(status.as_u16(), 403);
    assert_eq!(wecom.sync_calls(), pulls, "nothing was pulled on a forged callback");

    // WeCom's URL check: the decrypted echostr comes back as it is; a forged one is refused.
    let check = reqwest::get(format!("{url}?{}", wecom.url_check("echo-4711"))).await.unwrap();
    assert_eq!(check.status().as_u16(), 200);
    assert_eq!(check.text().await.unwrap(), "echo-4711");
    let forged = wecom.url_check("echo").replacen("msg_signature=", "msg_signature=f", 1);
    assert_eq!(reqwest::get(format!("{url}?{forged}")).await.unwrap().status().as_u16(), 403);
});

app_test!(a_wechat_message_delivered_twice_is_answered_once_and_a_restart_keeps_the_cursor, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    let first = wecom.resident_says(RESIDENT, "我们村民警电话多少");
    wecom.notify(&url).await;
    replies(&wecom, RESIDENT, 1).await;
    // The same message again, then a new one: messages are handled in order, so when the
    // new one's answer (the greeting) is there, any second answer to the repeat would be too.
    wecom.repeat(&first);
    wecom.resident_says(RESIDENT, "/start");
    wecom.notify(&url).await;
    let greetings = |n: usize| {
        let wecom = wecom.clone();
        async move { wecom.sent_to(RESIDENT).iter().filter(|s| s.text.contains("我是村警助手")).count() >= n }
    };
    eventually("the greeting answers /start", || greetings(1)).await;
    assert_eq!(
        wecom.sent_to(RESIDENT).len(),
        2,
        "the repeated message was answered once: {:?}",
        wecom.sent_to(RESIDENT)
    );

    // A restart pulls from the stored cursor: nothing old is answered again.
    let url = app.restart_with_wechat(&wecom).await;
    wecom.resident_says(RESIDENT, "/start");
    wecom.notify(&url).await;
    eventually("the greeting answers /start after the restart", || greetings(2)).await;
    assert_eq!(wecom.sent_to(RESIDENT).len(), 3, "only the new message was answered: {:?}", wecom.sent_to(RESIDENT));
});

/// Taps the menu item labelled `label` in the latest answer that has it; returns the next
/// answer.
async fn tap(wecom: &FakeWecom, url: &str, label: &str) -> crate::fake_wecom::Sent {
    let sent = wecom.sent_to(RESIDENT);
    let id = sent
        .iter()
        .rev()
        .find_map(|s| s.menu.iter().find(|(l, _)| l.contains(label)).map(|(_, id)| id.clone()))
        .unwrap_or_else(|| panic!("no menu item {label:?} in {sent:?}"));
    wecom.resident_taps(RESIDENT, &id, label);
    wecom.notify(url).await;
    replies(wecom, RESIDENT, sent.len() + 1).await.pop().unwrap()
}

/// Writes `text`; returns the next answer.
async fn say(wecom: &FakeWecom, url: &str, text: &str) -> crate::fake_wecom::Sent {
    let before = wecom.sent_to(RESIDENT).len();
    wecom.resident_says(RESIDENT, text);
    wecom.notify(url).await;
    replies(wecom, RESIDENT, before + 1).await.pop().unwrap()
}

/// A WeChat resident reports a theft in 和庄村 anonymously, every step a menu tap; returns
/// the tip's number.
async fn file_anonymous_theft(app: &crate::app::TestApp, wecom: &FakeWecom, url: &str) -> String {
    let categories = say(wecom, url, &format!("/start tip_{HEZHUANG}")).await;
    assert!(categories.menu.iter().any(|(l, _)| l.contains("盗窃")), "{categories:?}");
    let details = tap(wecom, url, "盗窃").await;
    assert!(details.text.contains("发生了什么"), "{details:?}");
    let more = say(wecom, url, "昨晚我家院里的电动车被人偷走了").await;
    assert!(!more.menu.is_empty(), "{more:?}");
    tap(wecom, url, "说完了").await;
    let summary = tap(wecom, url, "匿名").await;
    let receipt = tap(wecom, url, "确认提交").await;
    let number: String = sqlx::query_scalar("SELECT number FROM tips ORDER BY id DESC LIMIT 1")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    assert!(receipt.text.contains(&number), "the receipt names the tip: {receipt:?} (summary {summary:?})");
    assert!(receipt.text.contains("48 小时内回复您"), "the receipt tells how to keep the line open: {receipt:?}");
    number
}

app_test!(a_wechat_tip_reaches_the_officer_on_telegram_whose_acknowledgement_and_reply_reach_the_resident, |app| {
    let officer = crate::tips::zhang();
    app.enrol("041201", &officer).await;
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    let number = file_anonymous_theft(&app, &wecom, &url).await;

    // The card reaches 张建国 on Telegram, the platform he uses.
    let card = app.fake.wait_for_sent(|m| m.chat_id == officer.id && m.text.contains(&number)).await;
    assert!(card.text.contains("电动车"), "{}", card.text);
    assert!(!card.text.contains(RESIDENT), "the anonymous tipster's WeChat id is not on the card");

    // He acknowledges: the resident hears it on WeChat.
    let before = wecom.sent_to(RESIDENT).len();
    crate::app::press(&app, officer.id, &officer, &card, "受理").await;
    let told = replies(&wecom, RESIDENT, before + 1).await;
    assert!(told[before].text.contains(&number) && told[before].text.contains("受理"), "{:?}", told[before]);

    // He answers through the bot: relayed to WeChat under the tip's number.
    let prompt = crate::app::press(&app, officer.id, &officer, &card, "回复").await;
    assert!(prompt.text.contains("回复举报人"), "{}", prompt.text);
    let before = wecom.sent_to(RESIDENT).len();
    let done = app.ask(officer.id, &officer, "请问车是什么颜色的？").await;
    assert!(done.text.contains("已转告举报人"), "{}", done.text);
    let relayed = replies(&wecom, RESIDENT, before + 1).await;
    assert_eq!(relayed[before].text, format!("民警回复（线索 {number}）：请问车是什么颜色的？"));

    // The resident answers with the menu item under it: back to the officer on Telegram.
    let prompt = tap(&wecom, &url, "回复民警").await;
    assert!(!prompt.text.is_empty());
    let before = wecom.sent_to(RESIDENT).len();
    say(&wecom, &url, "黑色的雅迪").await;
    let back = app.fake.wait_for_sent(|m| m.chat_id == officer.id && m.text.contains("黑色的雅迪")).await;
    assert!(back.text.contains(&number), "{}", back.text);
    // The resident's own confirmation goes out on WeChat beside the relay: wait for it, so
    // it is not taken for an answer to what follows.
    replies(&wecom, RESIDENT, before + 1).await;

    // Two days later his next question cannot go out on WeChat: he is told it waits, and it
    // reaches the resident first when they write again.
    app.advance(std::time::Duration::from_secs(49 * 3600));
    crate::app::press(&app, officer.id, &officer, &card, "回复").await;
    let held = app.ask(officer.id, &officer, "车找到了，请来所里认领").await;
    assert!(held.text.contains("将在对方再次发消息后送达"), "{}", held.text);
    let before = wecom.sent_to(RESIDENT).len();
    wecom.resident_says(RESIDENT, "在吗");
    wecom.notify(&url).await;
    // The held answer, then the answer to 在吗.
    let after = replies(&wecom, RESIDENT, before + 2).await;
    assert!(after[before].text.contains("车找到了"), "the held answer first: {:?}", &after[before..]);

    // 查询进展 under the receipt answers on WeChat.
    let sent = wecom.sent_to(RESIDENT);
    let receipt = sent.iter().find(|m| m.text.contains("查询密码")).expect("the receipt");
    let (label, id) = receipt.menu.iter().find(|(l, _)| l.contains("查询进展")).expect("查询进展 under the receipt");
    wecom.resident_taps(RESIDENT, id, label);
    wecom.notify(&url).await;
    let progress = replies(&wecom, RESIDENT, sent.len() + 1).await.pop().unwrap();
    assert!(progress.text.contains(&number) && progress.text.contains("办理"), "{progress:?}");

    // He closes it with a usual note: the resident reads it above the rating, and rates.
    let ask = crate::app::press(&app, officer.id, &officer, &card, "办结").await;
    let before = wecom.sent_to(RESIDENT).len();
    crate::app::press(&app, officer.id, &officer, &ask, "已处理完毕").await;
    let closed = replies(&wecom, RESIDENT, before + 1).await;
    let closed = &closed[before];
    assert!(closed.text.contains("民警说明：已处理完毕"), "{closed:?}");
    assert!(closed.menu.iter().any(|(l, _)| l.contains("满意")), "the rating comes with the note: {closed:?}");
    let thanks = tap(&wecom, &url, "😊 满意").await;
    assert!(thanks.text.contains("谢谢您的评价"), "{thanks:?}");
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    assert_eq!(tip.rating.map(|r| r.as_str()), Some("satisfied"));
});

app_test!(a_wechat_tip_is_filed_with_menus_and_a_desk_reply_after_48_hours_waits_for_the_resident, |app| {
    let wecom = FakeWecom::start().await;
    let port = with_desk(&mut app).await;
    let url = app.restart_with_wechat(&wecom).await;

    let number = file_anonymous_theft(&app, &wecom, &url).await;

    // Two days later the station answers at the desk: outside WeCom's window, so it waits.
    app.advance(std::time::Duration::from_secs(49 * 3600));
    let c = crate::web::Client::logged_in(port, "neiqin").await;
    let csrf = c.get(&format!("/tips/{number}")).await.csrf();
    c.post(&format!("/tips/{number}/reply"), &[("csrf", &csrf), ("text", "民警已到场查看，请放心")]).await;
    let store = app.store().clone();
    eventually("the answer is held for the resident", || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM wechat_held").fetch_one(store.pool()).await.unwrap() == 1
    })
    .await;
    assert!(!wecom.sent_to(RESIDENT).iter().any(|s| s.text.contains("民警已到场查看")), "not sent outside the window");

    // The resident writes again: the held answer goes first.
    let before = wecom.sent_to(RESIDENT).len();
    wecom.resident_says(RESIDENT, "还有人管吗");
    wecom.notify(&url).await;
    let after = replies(&wecom, RESIDENT, before + 2).await;
    assert!(after[before].text.contains("民警已到场查看"), "the held answer first: {:?}", &after[before..]);
});

app_test!(an_expired_wecom_token_is_fetched_again_and_the_answer_still_arrives, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    let before = wecom.tokens_issued();
    wecom.expire_token();
    wecom.resident_says(RESIDENT, "村口有人拿刀打架，快来人");
    wecom.notify(&url).await;
    let answer = replies(&wecom, RESIDENT, 1).await;
    assert!(answer[0].text.contains("110"));
    assert_eq!(wecom.tokens_issued(), before + 1, "one new token after errcode 42001");
});

app_test!(a_whole_wecom_journey_a_wechat_resident_reaches_the_officer_on_the_wecom_robot_and_back, |app| {
    use crate::fake_wecom::FakeRobot;
    const ZHANG: &str = "zhangjianguo";
    let wecom = FakeWecom::start().await;
    let robot = FakeRobot::start().await;
    let url = app.restart_with_wecom(&wecom, &robot).await;
    let robot_sent = |n: usize| {
        let robot = robot.clone();
        async move {
            eventually(&format!("{n} messages reach the officer on WeCom"), || async {
                robot.sent_to(ZHANG).len() >= n
            })
            .await;
            robot.sent_to(ZHANG)
        }
    };

    // 张建国 enrols on the robot with his one-time code.
    let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
    robot.user_says(ZHANG, &code.code);
    assert!(robot_sent(1).await[0].text.contains("登记成功"));

    // A resident on WeChat, from the village's board, reports a theft anonymously.
    wecom.resident_enters(RESIDENT, HEZHUANG);
    wecom.notify(&url).await;
    replies(&wecom, RESIDENT, 1).await;
    let number = file_anonymous_theft(&app, &wecom, &url).await;

    // The card reaches him on the robot; 受理 there reaches the resident on WeChat.
    let card = robot_sent(2).await.pop().unwrap();
    assert!(card.text.contains(&number) && card.text.contains("电动车"), "{card:?}");
    assert!(!card.text.contains(RESIDENT), "the anonymous tipster's WeChat id is not on the card");
    let key = |label: &str| card.buttons.iter().find(|(l, _)| l == label).unwrap().1.clone();
    let before = wecom.sent_to(RESIDENT).len();
    robot.user_presses(ZHANG, &key("受理"));
    let told = replies(&wecom, RESIDENT, before + 1).await;
    assert!(told[before].text.contains(&number) && told[before].text.contains("受理"), "{:?}", told[before]);

    // His answer, written on WeCom, reaches the resident on WeChat under the tip's number.
    let seen = robot.sent_to(ZHANG).len();
    robot.user_presses(ZHANG, &key("回复"));
    robot_sent(seen + 1).await;
    let before = wecom.sent_to(RESIDENT).len();
    robot.user_says(ZHANG, "请问车是什么颜色的？");
    let relayed = replies(&wecom, RESIDENT, before + 1).await;
    assert_eq!(relayed[before].text, format!("民警回复（线索 {number}）：请问车是什么颜色的？"));
});

app_test!(a_photo_a_wechat_resident_sends_with_a_tip_opens_at_the_station_console, |app| {
    let wecom = FakeWecom::start().await;
    let port = with_desk(&mut app).await;
    let url = app.restart_with_wechat(&wecom).await;

    say(&wecom, &url, &format!("/start tip_{HEZHUANG}")).await;
    tap(&wecom, &url, "盗窃").await;
    let photo = b"\xff\xd8\xff\xe0 a photo of the broken lock";
    let before = wecom.sent_to(RESIDENT).len();
    wecom.resident_sends_image(RESIDENT, "media-lock-1", photo);
    wecom.notify(&url).await;
    replies(&wecom, RESIDENT, before + 1).await;
    say(&wecom, &url, "锁被撬了，这是照片").await;
    tap(&wecom, &url, "说完了").await;
    tap(&wecom, &url, "匿名").await;
    tap(&wecom, &url, "确认提交").await;
    let number: String = sqlx::query_scalar("SELECT number FROM tips ORDER BY id DESC LIMIT 1")
        .fetch_one(app.store().pool())
        .await
        .unwrap();

    // The desk shows the photo, fetched from WeCom with the media id the tip kept.
    let c = crate::web::Client::logged_in(port, "neiqin").await;
    let (status, headers, bytes) = c.get_bytes(&format!("/tips/{number}/media/0")).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(bytes, photo);
});

app_test!(a_wechat_location_is_read_as_gcj02_and_finds_its_village, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    // The middle of 和庄村 as Tencent Maps gives it: GCJ-02, ~580 m east of the point, which
    // read as WGS-84 would lie 440 m from 前店村 and ask which village.
    let (lon, lat) = cunjing::places::Datum::Gcj02.from_wgs84(113.710898, 34.489044);
    wecom.resident_sends_location(RESIDENT, lat, lon);
    wecom.notify(&url).await;
    let card = &replies(&wecom, RESIDENT, 1).await[0];
    assert!(card.text.contains("和庄村") && card.text.contains("张建国"), "{card:?}");
    assert!(!card.text.contains("交界"), "no question for a point of known datum: {card:?}");
});

app_test!(a_wechat_tip_with_a_location_in_another_village_is_routed_there_and_keeps_the_point_in_wgs84, |app| {
    let wecom = FakeWecom::start().await;
    let url = app.restart_with_wechat(&wecom).await;
    say(&wecom, &url, &format!("/start tip_{HEZHUANG}")).await;
    tap(&wecom, &url, "盗窃").await;
    say(&wecom, &url, "前店村西头的羊被人牵走了").await;
    // In the middle of 前店村, as Tencent Maps gives it.
    let (lon, lat) = (113.732693, 34.487235);
    let (glon, glat) = cunjing::places::Datum::Gcj02.from_wgs84(lon, lat);
    let before = wecom.sent_to(RESIDENT).len();
    wecom.resident_sends_location(RESIDENT, glat, glon);
    wecom.notify(&url).await;
    replies(&wecom, RESIDENT, before + 1).await;
    tap(&wecom, &url, "说完了").await;
    let summary = tap(&wecom, &url, "匿名").await;
    assert!(summary.text.contains("位置在：前店村"), "{summary:?}");
    tap(&wecom, &url, "确认提交").await;

    let number: String = sqlx::query_scalar("SELECT number FROM tips ORDER BY id DESC LIMIT 1")
        .fetch_one(app.store().pool())
        .await
        .unwrap();
    let tip = app.store().tip_by_number(&number).await.unwrap().unwrap();
    let qiandian = app.store().village_by_code("410184101202").await.unwrap().unwrap().id;
    let hezhuang = app.store().village_by_code(HEZHUANG).await.unwrap().unwrap().id;
    assert_eq!((tip.village_id, tip.reported_village_id), (qiandian, Some(hezhuang)));
    let items = app.store().tip_items(tip.id).await.unwrap();
    let point = items.iter().find_map(|i| match i {
        cunjing::store::tips::TipItem::Location { latitude, longitude } => Some((*latitude, *longitude)),
        _ => None,
    });
    let (plat, plon) = point.expect("the location is one of the tip's items");
    assert!((plat - lat).abs() < 1e-5 && (plon - lon).abs() < 1e-5, "kept in WGS-84: {plat}, {plon}");
});
