//! Emergencies: the answer goes out at once, from the rules and the templates alone — even
//! with the database down — and the village's officers are alerted.

use std::sync::Arc;

use cunjing::core::{ChatKind, ChatRef, Core, CoreOptions, Event, Inbound, Outbound, Platform, Sender};
use cunjing::texts::Texts;
use cunjing::triage::Triage;

use crate::app::import_example;
use crate::app_test;
use crate::fake_telegram::TgUser;

const GROUP: i64 = -1001000000009;

app_test!(a_fight_reported_in_the_group_gets_110_at_once_and_the_officer_is_alerted, |app| {
    let zhang = TgUser::new(6001, "张建国");
    app.enrol("041201", &zhang).await;
    app.fake.group(GROUP, "和庄村村民群", true);
    let village = app.store().village_by_code("410184101201").await.unwrap().unwrap();
    app.store().bind_chat_to_village("telegram", GROUP, "和庄村村民群", village.id, None).await.unwrap();
    let resident = TgUser::new(5001, "李大爷");
    let mark = app.fake.mark();
    let reply = app.ask(GROUP, &resident, "有人在村口打架了，快来人").await;
    assert!(reply.text.contains("请立即拨打 110"), "{}", reply.text);
    let alert = app.fake.wait_for_new(mark, |m| m.chat_id == zhang.id).await;
    assert!(alert.text.contains("紧急") && alert.text.contains("村口打架"), "{}", alert.text);
    assert!(!alert.text.contains("李大爷"), "{}", alert.text);

    let fire = app.ask(GROUP, &resident, "村东头麦秸垛着火了").await;
    assert!(fire.text.contains("119"), "{}", fire.text);
    // Safety advice is not an emergency.
    let before = app.fake.sent_to(GROUP).len();
    app.fake.send_text(GROUP, &resident, "秋收季节大家注意防止失火");
    let help = app.ask(GROUP, &resident, "/help").await;
    assert!(help.text.contains("• "), "{}", help.text);
    assert_eq!(app.fake.sent_to(GROUP).len(), before + 1, "the advice got no answer");
});

// The core over a database that has gone away still answers an emergency.
crate::on_both_engines!(an_emergency_is_answered_even_with_the_database_down, |db| {
    import_example(&db.store).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config");
    let texts = Texts::load(&root.join("templates"), "zh-CN").unwrap();
    let triage = Triage::load(&root.join("intents.toml")).unwrap();
    let core =
        Core::new(db.store.clone(), Arc::new(texts), Arc::new(triage), CoreOptions::new(chrono_tz::Asia::Shanghai));
    db.store.close().await;
    let inbound = Inbound {
        platform: Platform::Telegram,
        chat: ChatRef { id: GROUP, kind: ChatKind::Group, title: "群".into() },
        sender: Sender::User { id: 5001, is_bot: false },
        event: Event::Text { message_id: 7, text: "路口撞车了有人受伤".into(), forwarded: false },
    };
    let out = core.handle(&inbound).await;
    let Some(Outbound::Message { chat_id, text, .. }) = out.first() else { panic!("no answer: {out:?}") };
    assert_eq!(*chat_id, GROUP);
    assert!(text.contains("122"), "{text}");
});
