//! The registry in the database, on both engines: import counts, idempotent re-import,
//! history kept when assignments end, all-or-nothing on errors, export round trip, coverage.

use std::path::Path;

use cunjing::registry::{self, ImportError};
use cunjing::store::Store;

use crate::app::{example_dir, example_registry_with};
use crate::on_both_engines;

fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
}

/// Every assignment as (village, badge, role, since, until), sorted.
async fn assignments(store: &Store) -> Vec<(String, String, String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT v.code, f.badge, a.role, a.since, a.until FROM assignments a JOIN villages v ON v.id = a.village_id \
         JOIN officers f ON f.id = a.officer_id ORDER BY v.code, f.badge, a.role, a.since",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn count(store: &Store, table: &'static str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap()
}

on_both_engines!(importing_the_example_loads_every_row_and_reimporting_changes_nothing, |db| {
    let first = registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    assert_eq!((first.stations, first.offices, first.villages, first.officers), (1, 2, 12, 11));
    assert_eq!(first.assignments, 36);
    let before = assignments(&db.store).await;
    let second = registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    assert_eq!(second.assignments_ended, 0);
    assert_eq!(assignments(&db.store).await, before, "a re-import is idempotent");
    assert_eq!(count(&db.store, "villages").await, 12);
});

/// A registry of `villages` villages in one office, each with a resident officer (two
/// officers take turns), written as the five CSV files.
fn generated_registry(villages: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |file: &str, text: String| std::fs::write(dir.path().join(file), text).unwrap();
    write("stations.csv", "code,name,duty_phone,address\nGS,甲派出所,0371-62581110,\n".into());
    write("offices.csv", "code,station,name,kind,address,hours,phone\nG1,GS,甲警务室,office,,,\n".into());
    write("officers.csv", "badge,name,kind,phone,station\n100001,甲,police,,GS\n100002,乙,police,,GS\n".into());
    let mut v = String::from("code,name,kind,office,households,population\n");
    let mut a = String::from("village,badge,role,since,until\n");
    for i in 0..villages {
        v.push_str(&format!("4101{i:08},村{i},village,G1,,\n"));
        a.push_str(&format!("4101{i:08},10000{},resident,2024-03-01,\n", 1 + i % 2));
    }
    write("villages.csv", v);
    write("assignments.csv", a);
    dir
}

on_both_engines!(a_registry_larger_than_one_statement_is_imported_whole_and_ended_whole, |db| {
    // 1,234 villages: the importer writes 500 rows a statement, so this crosses its chunks.
    let dir = generated_registry(1_234);
    let first = registry::import_dir(&db.store, dir.path(), today()).await.unwrap();
    assert_eq!((first.villages, first.assignments), (1_234, 1_234));
    assert_eq!(count(&db.store, "villages").await, 1_234);
    let rows = assignments(&db.store).await;
    assert_eq!(rows.len(), 1_234);
    assert!(rows.iter().all(|r| r.4.is_none()), "every assignment is open");
    assert_eq!(rows.iter().filter(|r| r.1 == "100002").count(), 617);
    let last = db.store.village_by_code("410100001233").await.unwrap().expect("the last village");
    assert_eq!(last.name, "村1233");

    // Officer 100002 leaves: all 617 of his assignments end today, none of the others.
    let text = std::fs::read_to_string(dir.path().join("assignments.csv")).unwrap();
    let kept: String = text.lines().filter(|l| !l.contains(",100002,")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.path().join("assignments.csv"), kept).unwrap();
    let second = registry::import_dir(&db.store, dir.path(), today()).await.unwrap();
    assert_eq!(second.assignments_ended, 617);
    let rows = assignments(&db.store).await;
    assert_eq!(rows.len(), 1_234, "ended assignments are kept");
    let today_s = today().to_string();
    assert!(rows.iter().filter(|r| r.1 == "100002").all(|r| r.4.as_deref() == Some(today_s.as_str())));
    assert!(rows.iter().filter(|r| r.1 == "100001").all(|r| r.4.is_none()));
});

on_both_engines!(an_assignment_removed_from_the_file_is_ended_today_and_kept, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let dir = example_registry_with(&[("assignments.csv", "410184101201,F04121,auxiliary,2024-03-01,\n", "")]);
    let summary = registry::import_dir(&db.store, dir.path(), today()).await.unwrap();
    assert_eq!(summary.assignments_ended, 1);
    let rows = assignments(&db.store).await;
    let ended = rows.iter().find(|r| r.0 == "410184101201" && r.1 == "F04121").expect("the row is kept");
    assert_eq!(ended.4.as_deref(), Some("2026-11-23"));
});

on_both_engines!(reassigning_a_village_ends_the_old_officer_and_opens_the_new_one, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let dir = example_registry_with(&[(
        "assignments.csv",
        "410184101201,041201,resident,2024-03-01,",
        "410184101201,041202,resident,2026-11-23,",
    )]);
    registry::import_dir(&db.store, dir.path(), today()).await.unwrap();
    let rows = assignments(&db.store).await;
    let old = rows.iter().find(|r| r.0 == "410184101201" && r.1 == "041201" && r.2 == "resident").unwrap();
    assert_eq!(old.4.as_deref(), Some("2026-11-23"));
    let new = rows.iter().find(|r| r.0 == "410184101201" && r.1 == "041202" && r.2 == "resident").unwrap();
    assert_eq!(new.4, None);
    let village = db.store.village_by_code("410184101201").await.unwrap().unwrap();
    let on_duty = db.store.assigned_officers(village.id, "2026-11-23").await.unwrap();
    assert_eq!(on_duty[0].badge, "041202", "the new resident officer heads the duty chain");
});

on_both_engines!(a_registry_with_errors_reports_every_line_and_leaves_the_database_as_it_was, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let before = assignments(&db.store).await;
    let dir = example_registry_with(&[
        ("stations.csv", "0371-62581110", "call us"),
        ("villages.csv", "410184101201,和庄村", "410184101201,和庄新村"),
        ("villages.csv", "410184101206,西岗村,village,HZ01", "410184101206,西岗村,village,HZ07"),
        (
            "assignments.csv",
            "410184101202,041201,resident,2024-03-01,",
            "410184101202,041201,resident,2024-03-01,someday",
        ),
    ]);
    let err = registry::import_dir(&db.store, dir.path(), today()).await.unwrap_err();
    let ImportError::Invalid(errors) = err else { panic!("expected line errors") };
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 3, "{text:#?}");
    assert!(text[0].contains("stations.csv:2: phone number"), "{text:#?}");
    assert!(text[1].contains("villages.csv:7: office \"HZ07\""), "{text:#?}");
    assert!(text[2].contains("assignments.csv:7: until \"someday\" is not a date"), "{text:#?}");
    let village = db.store.village_by_code("410184101201").await.unwrap().unwrap();
    assert_eq!(village.name, "和庄村", "the valid rename on another line was not written either");
    assert_eq!(assignments(&db.store).await, before);
});

on_both_engines!(an_export_imports_again_to_the_same_registry, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    registry::export_dir(&db.store, out.path()).await.unwrap();
    let before = assignments(&db.store).await;
    let summary = registry::import_dir(&db.store, out.path(), today()).await.unwrap();
    assert_eq!(summary.assignments_ended, 0);
    assert_eq!(assignments(&db.store).await, before);
    let stations = std::fs::read_to_string(out.path().join("stations.csv")).unwrap();
    assert!(stations.starts_with("code,name,duty_phone,address\nHZPCS,和庄派出所,0371-62581110"), "{stations}");
    assert!(Path::new(&out.path().join("assignments.csv")).exists());
});

on_both_engines!(the_coverage_check_names_the_gaps_staff_must_fix, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let report = registry::check(&db.store, today(), 5).await.unwrap();
    let codes: Vec<&str> = report.villages_without_resident_officer.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(codes, ["410184101206"], "西岗村 has only a contact officer");
    assert_eq!(report.villages_without_group.len(), 12, "no group is bound yet");
    let over: Vec<(&str, i64)> = report.officers_over_limit.iter().map(|o| (o.badge.as_str(), o.villages)).collect();
    assert_eq!(
        over,
        [("041206", 6), ("F04124", 6)],
        "陈静 and the auxiliary 郑华 serve six each; area chiefs are not counted"
    );
    assert!(report.officers_without_phone.iter().any(|o| o.badge == "F04124"), "郑华 has no phone");
    assert_eq!(report.officers_not_enrolled.len(), 10, "every police officer and auxiliary (not the volunteer)");
    let shown = report.to_string();
    assert!(shown.contains("410184101206 西岗村"), "{shown}");

    let village = db.store.village_by_code("410184101206").await.unwrap().unwrap();
    db.store.bind_chat_to_village("telegram", -100, "西岗村群", village.id, None).await.unwrap();
    let report = registry::check(&db.store, today(), 5).await.unwrap();
    assert_eq!(report.villages_without_group.len(), 11);
});

on_both_engines!(a_name_that_begins_like_a_formula_is_exported_as_text_and_imports_unchanged, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    sqlx::query("UPDATE villages SET name = '=1+1村' WHERE code = '410184101201'")
        .execute(db.store.pool())
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    registry::export_dir(&db.store, out.path()).await.unwrap();
    let villages = std::fs::read_to_string(out.path().join("villages.csv")).unwrap();
    assert!(villages.contains(",'=1+1村,"), "a spreadsheet shows it as text: {villages}");
    registry::import_dir(&db.store, out.path(), today()).await.unwrap();
    let village = db.store.village_by_code("410184101201").await.unwrap().unwrap();
    assert_eq!(village.name, "=1+1村", "the import takes the quote off again");
});
