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
    db.store.sync_registry().await.unwrap();
    let chain = duty_chain(&db.store, village.clone(), today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041201", "the chain is now in this process's cache");

    // Another process (the CLI, a second daemon, an operator's psql) takes the resident
    // officer off duty, through its own connection: this process's `Store` is not told.
    let other = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE officers SET on_duty = 0 WHERE badge = '041201'").execute(&other).await.unwrap();
    other.close().await;

    // The triggers moved `registry_version`; the look the watcher takes every second sees it.
    db.store.sync_registry().await.unwrap();
    let chain = duty_chain(&db.store, village, today).await.unwrap();
    assert_eq!(chain.members[0].badge, "041204", "the off-duty officer is skipped after the change is seen");
});
