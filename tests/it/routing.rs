//! The duty chain every later feature routes through, on both engines.

use cunjing::core::routing::duty_chain;

use crate::app::import_example;
use crate::on_both_engines;

on_both_engines!(the_duty_chain_lists_reachable_officers_in_order_and_skips_the_rest, |db| {
    import_example(&db.store).await;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let village = db.store.village_by_code("410184101201").await.unwrap().unwrap();

    let chain = duty_chain(&db.store, village.clone(), today).await.unwrap();
    assert!(chain.members.is_empty(), "nobody is enrolled yet, so nobody is reachable");
    assert_eq!(chain.station_duty_phone, "0371-62581110", "the station's duty phone is the last resort");

    for (badge, user) in [("041201", 1), ("041204", 2), ("F04121", 3), ("041203", 4), ("V04101", 5)] {
        let officer = db.store.officer_by_badge(badge).await.unwrap().unwrap();
        db.store.link_identity_directly(officer.id, "telegram", user).await.unwrap();
    }
    let chain = duty_chain(&db.store, village.clone(), today).await.unwrap();
    let order: Vec<(&str, &str)> = chain.members.iter().map(|m| (m.role.as_str(), m.badge.as_str())).collect();
    assert_eq!(
        order,
        [("resident", "041201"), ("contact", "041204"), ("auxiliary", "F04121"), ("area_chief", "041203")],
        "resident, contact, auxiliary, area chief; the volunteer is never routed to"
    );

    sqlx::query("UPDATE officers SET on_duty = 0 WHERE badge = '041201'").execute(db.store.pool()).await.unwrap();
    db.store.registry_changed();
    let chain = duty_chain(&db.store, village, today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041204", "an off-duty resident officer is skipped");
});

on_both_engines!(assignments_count_only_between_their_dates, |db| {
    import_example(&db.store).await;
    // 张建国 served 东岗村 from 2023-01-01 until 2024-03-01, when 王海峰 took over.
    let village = db.store.village_by_code("410184101205").await.unwrap().unwrap();
    let then = db.store.assigned_officers(village.id, "2023-06-01").await.unwrap();
    assert_eq!(then.iter().map(|o| o.badge.as_str()).collect::<Vec<_>>(), ["041201"]);
    let on_the_day = db.store.assigned_officers(village.id, "2024-03-01").await.unwrap();
    let residents: Vec<&str> = on_the_day.iter().filter(|o| o.role == "resident").map(|o| o.badge.as_str()).collect();
    assert_eq!(residents, ["041203"], "until is the first day the assignment no longer holds");
});

on_both_engines!(a_registry_change_made_by_another_process_is_seen_once_the_version_is_read, |db| {
    import_example(&db.store).await;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let village = db.store.village_by_code("410184101201").await.unwrap().unwrap();
    for (badge, user) in [("041201", 1), ("041204", 2)] {
        let officer = db.store.officer_by_badge(badge).await.unwrap().unwrap();
        db.store.link_identity_directly(officer.id, "telegram", user).await.unwrap();
    }
    assert!(db.store.load_registry_now().await.unwrap());
    assert!(db.store.registry_in_memory());
    let chain = duty_chain(&db.store, village.clone(), today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041201", "the chain is now answered from memory");

    // Another process (the CLI, a second daemon, an operator's psql) takes the resident
    // officer off duty, through its own connection: this process's `Store` is not told.
    let other = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE officers SET on_duty = 0 WHERE badge = '041201'").execute(&other).await.unwrap();
    other.close().await;

    let chain = duty_chain(&db.store, village.clone(), today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041201", "until the version is read, memory still says so");

    // The triggers moved `registry_version`; the look the watcher takes every second sees it.
    db.store.sync_registry().await.unwrap();
    assert!(!db.store.registry_in_memory(), "the change dropped the registry in memory");
    let chain = duty_chain(&db.store, village, today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041204", "the off-duty officer is skipped after the change is seen");
});

/// Every lookup the registry in memory answers, as text: villages, duty chains on days
/// before, at and after assignment changes and a leave, officers by id and by account,
/// accounts on two platforms, chats (bound, staff, left, unknown) and staff groups.
async fn every_lookup(store: &cunjing::store::Store) -> String {
    let mut out = String::new();
    let villages = store.all_villages().await.unwrap();
    let officers = store.all_officers().await.unwrap();
    let mut stations: Vec<i64> = villages.iter().map(|v| v.station_id).collect();
    stations.dedup();
    for v in &villages {
        out += &format!("{:?}\n", store.village_by_id(v.id).await.unwrap());
        for day in ["2023-06-01", "2024-03-01", "2026-11-23", "2026-12-01", "2026-12-09"] {
            out += &format!("{day} {:?}\n", store.assigned_officers(v.id, day).await.unwrap());
        }
    }
    out += &format!("{:?}\n", store.village_by_id(999_999).await.unwrap());
    for f in &officers {
        out += &format!("{:?}\n", store.officer_by_id(f.id).await.unwrap());
        for platform in ["telegram", "console", "wecom"] {
            out += &format!("{platform} {:?}\n", store.officer_account(f.id, platform).await.unwrap());
        }
    }
    for user in 0..8 {
        for platform in ["telegram", "console"] {
            out += &format!("{platform} {user} {:?}\n", store.officer_by_identity(platform, user).await.unwrap());
        }
    }
    for chat in [-100, -101, -102, -103, -999] {
        out += &format!("{chat} {:?}\n", store.chat("telegram", chat).await.unwrap());
    }
    for station in stations {
        for platform in ["telegram", "console"] {
            out += &format!("{station} {platform} {:?}\n", store.station_chats(station, platform).await.unwrap());
        }
    }
    out
}

on_both_engines!(the_registry_in_memory_answers_every_lookup_as_the_database_does, |db| {
    import_example(&db.store).await;
    let store = &db.store;
    let villages = store.all_villages().await.unwrap();
    for (badge, platform, user) in [("041201", "telegram", 1), ("041204", "telegram", 2), ("041204", "console", 3)] {
        let officer = store.officer_by_badge(badge).await.unwrap().unwrap();
        store.link_identity_directly(officer.id, platform, user).await.unwrap();
    }
    let on_leave = store.officer_by_badge("041204").await.unwrap().unwrap();
    store.set_duty(on_leave.id, false, Some("2026-12-05")).await.unwrap();
    let off = store.officer_by_badge("F04121").await.unwrap().unwrap();
    store.set_duty(off.id, false, None).await.unwrap();
    store.bind_chat_to_village("telegram", -100, "和庄村民群", villages[0].id, None).await.unwrap();
    store.bind_chat_to_village("telegram", -101, "东岗村民群", villages[1].id, None).await.unwrap();
    store.bind_chat_to_station("telegram", -102, "内勤群", villages[0].station_id, None).await.unwrap();
    store.bind_chat_to_station("telegram", -103, "旧内勤群", villages[0].station_id, None).await.unwrap();
    store.chat_left("telegram", -103).await.unwrap();

    assert!(!store.registry_in_memory());
    let from_database = every_lookup(store).await;
    assert!(store.load_registry_now().await.unwrap());
    assert!(store.registry_in_memory());
    let from_memory = every_lookup(store).await;
    assert!(store.registry_in_memory(), "reading changed nothing");
    assert_eq!(from_memory, from_database);
    assert!(from_memory.contains("和庄村民群") && from_memory.contains("041204"), "the lookups found things");
});

on_both_engines!(a_registry_change_in_this_process_is_seen_at_once_with_the_registry_in_memory, |db| {
    import_example(&db.store).await;
    let store = &db.store;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
    let village = store.village_by_code("410184101201").await.unwrap().unwrap();
    let zhang = store.officer_by_badge("041201").await.unwrap().unwrap();
    store.link_identity_directly(zhang.id, "telegram", 1).await.unwrap();
    assert!(store.load_registry_now().await.unwrap());
    assert_eq!(duty_chain(store, village.clone(), today).await.unwrap().members.len(), 1);

    store.set_duty(zhang.id, false, None).await.unwrap();
    assert!(!store.registry_in_memory(), "the write dropped the registry in memory");
    assert!(
        duty_chain(store, village, today).await.unwrap().members.is_empty(),
        "the off-duty officer is gone at once"
    );
});
