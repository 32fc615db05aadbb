//! The composition root: one daemon serves several channels at once, beside one core and one
//! set of workers, so an officer on one platform reaches residents on another.

use crate::app::{eventually, press};
use crate::app_test;
use crate::tips::{start_theft_tip, submit_anonymous_tip, tipster, zhang};

/// 和庄村, whose resident officer is 张建国 (041201).
const HEZHUANG: &str = "410184101201";

app_test!(an_officer_on_telegram_warns_a_village_group_on_the_console_and_hears_how_it_went, |app| {
    app.enrol("041201", &zhang()).await;
    let village = app.store().village_by_code(HEZHUANG).await.unwrap().expect("the example village");
    let console_group = cunjing::channels::console::group_chat_id(village.id);
    app.store().bind_chat_to_village("console", console_group, &village.name, village.id, None).await.unwrap();
    let mut console = app.restart_with_console().await;

    // A resident on the console asks in the village group and gets the card.
    console.type_line(&format!("/in {HEZHUANG}")).await;
    console.type_line("我们村民警电话多少").await;
    eventually("the console resident gets the contact card", || async { console.screen().contains("13903710121") })
        .await;

    // The officer, on Telegram, sends a warning to every village they serve.
    let officer = zhang();
    let dm = app.fake.private_chat(officer.clone());
    let targets = app.ask(dm, &officer, "/alert").await;
    let severity = press(&app, dm, &officer, &targets, "我负责的全部村").await;
    press(&app, dm, &officer, &severity, "紧急").await;
    let preview = app.ask(dm, &officer, "近期有人冒充快递客服让退款，千万不要点陌生链接。").await;
    assert!(preview.text.contains("冒充快递客服"), "{}", preview.text);
    press(&app, dm, &officer, &preview, "确认发送").await;

    eventually("the warning reaches the village group on the console", || async {
        console.screen().contains("冒充快递客服") && console.screen().contains("治安预警")
    })
    .await;
    // The report goes back to the sender's platform, whichever worker finished the send.
    let report = app.fake.wait_for_sent(|m| m.chat_id == dm && m.text.contains("发送完毕")).await;
    assert!(report.text.contains("已送达 1 / 1"), "{}", report.text);
    assert!(!console.screen().contains("发送完毕"), "the sender's report is not shown to the console");
});

app_test!(an_officer_on_two_platforms_gets_tip_cards_on_the_one_they_used_last, |app| {
    app.enrol("041201", &zhang()).await;
    let mut console = app.restart_with_console().await;
    // 张建国 also works at the console, and was there last.
    console.type_line("/as officer 041201").await;
    console.type_line("/whoami").await;
    eventually("the console knows the officer", || async { console.screen().contains("041201") }).await;
    eventually("the console is recorded as where the officer was last", || async {
        let officer = app.store().officer_by_badge("041201").await.unwrap().unwrap();
        app.store().officer_last_platform(officer.id).await.unwrap().as_deref() == Some("console")
    })
    .await;

    // A resident on Telegram reports a theft in 前店村: the card goes to the console.
    let t = tipster();
    let (chat, _) = start_theft_tip(&app).await;
    let got = app.ask(chat, &t, "昨晚仓库的电动车被偷了").await;
    let anonymity = press(&app, chat, &t, &got, "说完了").await;
    let summary = press(&app, chat, &t, &anonymity, "匿名").await;
    let receipt = press(&app, chat, &t, &summary, "确认提交").await;
    let first = receipt.text.lines().find_map(|l| l.strip_prefix("线索编号：")).unwrap().to_string();
    eventually("the card reaches the officer at the console", || async { console.screen().contains(&first) }).await;
    assert!(
        !app.fake.sent().iter().any(|m| m.chat_id == zhang().id && m.text.contains(&first)),
        "the card is not also sent to Telegram"
    );

    // Back on Telegram, the next tip's card follows the officer there.
    let dm = app.fake.private_chat(zhang());
    app.ask(dm, &zhang(), "/whoami").await;
    eventually("Telegram is recorded as where the officer was last", || async {
        let officer = app.store().officer_by_badge("041201").await.unwrap().unwrap();
        app.store().officer_last_platform(officer.id).await.unwrap().as_deref() == Some("telegram")
    })
    .await;
    let (_, second, card) = submit_anonymous_tip(&app, "村口有人推销假药").await;
    assert!(card.text.contains(&second), "{}", card.text);
    assert!(!console.screen().contains(&second), "the second card is on Telegram only");
});
