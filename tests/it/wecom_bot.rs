//! Officers on the WeCom smart robot (long connection), against the fake endpoint of
//! `fake_wecom.rs`, in the same daemon as Telegram: enrolment by code, a Telegram tip's card
//! with buttons, 受理 and a reply reaching the Telegram tipster, a wrong secret, a takeover.

use crate::app::{eventually, press};
use crate::app_test;
use crate::fake_wecom::{FakeRobot, ROBOT_SECRET, RobotSent};
use crate::tips::{start_theft_tip, tipster};

const ZHANG: &str = "zhangjianguo";

async fn robot_answers(robot: &FakeRobot, user: &str, at_least: usize) -> Vec<RobotSent> {
    eventually(&format!("{at_least} messages reach {user} on WeCom"), || async {
        robot.sent_to(user).len() >= at_least
    })
    .await;
    robot.sent_to(user)
}

app_test!(an_officer_on_the_wecom_robot_gets_a_telegram_tip_as_a_card_acknowledges_it_and_answers_the_tipster, |app| {
    let robot = FakeRobot::start().await;
    app.restart_with_robot(&robot, ROBOT_SECRET).await;
    eventually("the robot is subscribed", || async { robot.connections() == 1 }).await;

    // 张建国 enrols by sending his one-time code to the robot.
    let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
    robot.user_says(ZHANG, &code.code);
    let enrolled = robot_answers(&robot, ZHANG, 1).await;
    assert!(enrolled[0].text.contains("登记成功"), "{enrolled:?}");
    assert_eq!(enrolled[0].cmd, "aibot_respond_msg", "an answer is bound to the callback");

    // A resident on Telegram reports a theft anonymously.
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "仓库门口的电动车被人撬了锁").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();

    // The card reaches him on WeCom, as a card with the officer's buttons.
    let sent = robot_answers(&robot, ZHANG, 2).await;
    let card = &sent[1];
    assert_eq!(card.cmd, "aibot_send_msg");
    assert!(card.text.contains(&number) && card.text.contains("电动车"), "{card:?}");
    let labels: Vec<&str> = card.buttons.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(labels, ["受理", "回复", "转派", "办结"]);
    assert!(!card.text.contains(&t.id.to_string()), "the anonymous tipster is not on the card");

    // 受理 on WeCom: the tipster is told on Telegram.
    let key = |label: &str| card.buttons.iter().find(|(l, _)| l == label).unwrap().1.clone();
    let mark = app.fake.mark();
    let before = robot.sent_to(ZHANG).len();
    robot.user_presses(ZHANG, &key("受理"));
    let told = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert!(told.text.contains(&number) && told.text.contains("受理"), "{}", told.text);
    let done = robot_answers(&robot, ZHANG, before + 1).await;
    assert!(done[before].text.contains("已受理"), "{:?}", done[before]);

    // 回复, then his words reach the tipster under the tip's number.
    let before = robot.sent_to(ZHANG).len();
    robot.user_presses(ZHANG, &key("回复"));
    let prompt = robot_answers(&robot, ZHANG, before + 1).await;
    assert!(prompt[before].text.contains("回复举报人"), "{:?}", prompt[before]);
    let mark = app.fake.mark();
    robot.user_says(ZHANG, "请问车是什么颜色的？");
    let relayed = app.fake.wait_for_new(mark, |m| m.chat_id == chat).await;
    assert_eq!(relayed.text, format!("民警回复（线索 {number}）：请问车是什么颜色的？"));
});

app_test!(a_wrong_robot_secret_stops_the_start_with_a_clear_message, |app| {
    let robot = FakeRobot::start().await;
    app.restart_with_robot(&robot, "not-the-secret").await;
    let err = app.ended().await.expect("the daemon ended").expect_err("the start fails");
    assert!(format!("{err:#}").contains("CUNJING_WECOM_ROBOT_SECRET"), "{err:#}");
    assert!(!format!("{err:#}").contains("not-the-secret"), "the secret is never in a message");
});

app_test!(a_robot_connection_taken_over_by_a_newer_one_is_not_made_again, |app| {
    let robot = FakeRobot::start().await;
    // No wait before a new connection: one would follow the close at once.
    app.settings.file.wecom.robot.reconnect_min_ms = 0;
    app.restart_with_robot(&robot, ROBOT_SECRET).await;
    eventually("the robot is subscribed", || async { robot.connections() == 1 }).await;
    robot.user_says("someone", "/start");
    robot_answers(&robot, "someone", 1).await;
    robot.take_over();
    eventually("the daemon closes the connection taken over", || async { robot.closed() == 1 }).await;
    // With no wait, a connection made again would come while the daemon answers on Telegram.
    let t = tipster();
    let chat = app.fake.private_chat(t.clone());
    app.ask(chat, &t, "/start").await;
    app.ask(chat, &t, "/start").await;
    assert_eq!(robot.connections(), 1, "no new connection after disconnected_event");
});

app_test!(
    an_officer_on_the_wecom_robot_warns_his_villages_telegram_groups_with_card_buttons_and_hears_the_report,
    |app| {
        let robot = FakeRobot::start().await;
        app.restart_with_robot(&robot, ROBOT_SECRET).await;
        eventually("the robot is subscribed", || async { robot.connections() == 1 }).await;
        let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
        robot.user_says(ZHANG, &code.code);
        robot_answers(&robot, ZHANG, 1).await;
        // 和庄村's group on Telegram.
        let village = app.store().village_by_code("410184101201").await.unwrap().unwrap();
        app.fake.group(-100_101, "和庄村群", true);
        app.store().bind_chat_to_village("telegram", -100_101, "和庄村群", village.id, None).await.unwrap();

        let press_on = |label: &'static str, at: usize| {
            let robot = robot.clone();
            async move {
                let sent = robot_answers(&robot, ZHANG, at).await;
                let card = sent
                    .iter()
                    .rev()
                    .find(|s| s.buttons.iter().any(|(l, _)| l.contains(label)))
                    .unwrap_or_else(|| panic!("no {label:?} in {sent:?}"));
                let key = card.buttons.iter().find(|(l, _)| l.contains(label)).unwrap().1.clone();
                robot.user_presses(ZHANG, &key);
            }
        };
        robot.user_says(ZHANG, "/alert");
        press_on("我负责的全部村", 2).await;
        press_on("紧急", 3).await;
        robot_answers(&robot, ZHANG, 4).await;
        robot.user_says(ZHANG, "近期有人冒充快递客服让退款，千万不要点陌生链接。");
        press_on("确认发送", 5).await;

        let warning = app.fake.wait_for_sent(|m| m.chat_id == -100_101 && m.text.contains("冒充快递客服")).await;
        assert!(warning.text.contains("治安预警") && warning.text.contains("张建国"), "{}", warning.text);
        eventually("the report reaches the officer on WeCom", || async {
            robot.sent_to(ZHANG).iter().any(|s| s.text.contains("发送完毕"))
        })
        .await;
    }
);

app_test!(
    a_wecom_internal_group_bound_with_bindstation_is_the_station_staff_group_and_hears_of_a_telegram_tip,
    |app| {
        const STAFF: &str = "wrStaffGroupHZ";
        let robot = FakeRobot::start().await;
        app.restart_with_robot(&robot, ROBOT_SECRET).await;
        eventually("the robot is subscribed", || async { robot.connections() == 1 }).await;
        let code = app.store().issue_enrolment_code("041201", 3_600_000).await.unwrap().unwrap();
        robot.user_says(ZHANG, &code.code);
        robot_answers(&robot, ZHANG, 1).await;

        // 张建国 binds the station's WeCom group, where only the station's staff sit.
        robot.user_says_in_group(ZHANG, STAFF, "/bindstation HZPCS");
        let bound = robot_answers(&robot, STAFF, 1).await;
        assert!(bound[0].text.contains("内勤群"), "{bound:?}");
        assert!(app.store().set_grant("041201", Some(cunjing::domain::Grant::Staff), 0).await.unwrap());

        // A Telegram resident's tip: the WeCom staff group hears of it.
        let t = tipster();
        let (chat, _) = start_theft_tip(&app).await;
        let got = app.ask(chat, &t, "仓库门口的电动车被人撬了锁").await;
        let anonymity = press(&app, chat, &t, &got, "说完了").await;
        let summary = press(&app, chat, &t, &anonymity, "匿名").await;
        let receipt = press(&app, chat, &t, &summary, "确认提交").await;
        let number = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
        let notices = robot_answers(&robot, STAFF, 2).await;
        assert!(notices[1].text.contains(&number) && notices[1].text.contains("前店村"), "{:?}", notices[1]);

        // The staff's commands work there.
        robot.user_says_in_group(ZHANG, STAFF, "/tips");
        let list = robot_answers(&robot, STAFF, 3).await;
        assert!(list[2].text.contains(&number), "{:?}", list[2]);

        // And an officer's own: /duty off in a direct message takes him off the chain.
        let seen = robot.sent_to(ZHANG).len();
        robot.user_says(ZHANG, "/duty off");
        let off = robot_answers(&robot, ZHANG, seen + 1).await;
        assert!(off[seen].text.contains("不在岗"), "{:?}", off[seen]);
    }
);
