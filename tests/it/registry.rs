//! The registry in the database, on both engines: import counts, idempotent re-import,
//! history kept when assignments end, all-or-nothing on errors, export round trip, coverage.

use std::path::Path;

use cunjing::registry::{self, ImportError};
use cunjing::store::Store;

use crate::app::{example_dir, example_registry_with};
use crate::on_both_engines;
use crate::province;

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

/// Every stored area as (village code, datum, geometry text), by code.
async fn areas(store: &Store) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT v.code, a.datum, a.geometry FROM areas a JOIN villages v ON v.id = a.village_id ORDER BY v.code",
    )
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// Every village as (code, name), by code.
async fn villages(store: &Store) -> Vec<(String, String)> {
    sqlx::query_as("SELECT code, name FROM villages ORDER BY code").fetch_all(store.pool()).await.unwrap()
}

on_both_engines!(the_example_areas_are_exported_with_their_datum_and_import_again_to_the_same_rows, |db| {
    let first = registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    assert_eq!(first.areas, 12);
    let before = areas(&db.store).await;
    assert_eq!(before.len(), 12);
    assert!(before.iter().all(|a| a.1 == "WGS84"));
    let out = tempfile::tempdir().unwrap();
    registry::export_dir(&db.store, out.path()).await.unwrap();
    let text = std::fs::read_to_string(out.path().join("areas.geojson")).unwrap();
    assert_eq!(text.matches("\"datum\":\"WGS84\"").count(), 12, "each feature names its datum: {text}");
    let again = registry::import_dir(&db.store, out.path(), today()).await.unwrap();
    assert_eq!(again.areas, 12);
    assert_eq!(areas(&db.store).await, before);
    assert_eq!(db.store.area_index().await.unwrap().len(), 12);
});

on_both_engines!(a_registry_without_areas_imports_and_keeps_the_areas_already_stored, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let before = areas(&db.store).await;
    let no_areas = example_registry_with(&[]);
    let summary = registry::import_dir(&db.store, no_areas.path(), today()).await.unwrap();
    assert_eq!(summary.areas, 0);
    assert_eq!(areas(&db.store).await, before);
});

const SMALL: province::Plan = province::Plan { stations_x: 2, stations_y: 2, cols: 5, rows: 5 };

on_both_engines!(a_province_with_a_gcj02_layer_imports_without_a_false_overlap_or_gap_on_its_shared_edges, |db| {
    let dir = tempfile::tempdir().unwrap();
    let written = province::write_province(dir.path(), SMALL, false);
    let summary = match registry::import_dir(&db.store, dir.path(), today()).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!((summary.villages, summary.areas), (100, written.features));
    let stored = areas(&db.store).await;
    assert_eq!(stored.iter().filter(|a| a.1 == "GCJ02").count(), 50, "the checkerboard layer keeps its datum");
    // Every village's centre is found in its own area.
    let index = db.store.area_index().await.unwrap();
    let a = index.areas().iter().find(|a| &*a.code == province::village_code(3, 12).as_str()).unwrap();
    let (lo, hi) = cunjing::places::bounds(&a.shape).unwrap();
    let found = index.containing((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0).map(|a| a.code.to_string());
    assert_eq!(found.as_deref(), Some(province::village_code(3, 12).as_str()));
});

on_both_engines!(every_planted_defect_is_found_at_its_feature_and_nothing_else_and_nothing_is_written, |db| {
    let clean = tempfile::tempdir().unwrap();
    province::write_province(clean.path(), SMALL, false);
    registry::import_dir(&db.store, clean.path(), today()).await.unwrap();
    let (areas_before, villages_before) = (areas(&db.store).await, villages(&db.store).await);

    let dir = tempfile::tempdir().unwrap();
    let written = province::write_province(dir.path(), SMALL, true);
    // A valid rename in villages.csv must not be written either.
    let csv = std::fs::read_to_string(dir.path().join("villages.csv")).unwrap();
    std::fs::write(dir.path().join("villages.csv"), csv.replacen("村0-0,", "新村0-0,", 1)).unwrap();
    let Err(ImportError::Invalid(errors)) = registry::import_dir(&db.store, dir.path(), today()).await else {
        panic!("the planted defects must be refused")
    };
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let mut expected: Vec<(String, usize, &str)> = written
        .planted
        .iter()
        .map(|p| {
            let (file, feature) = *p.features.iter().min_by_key(|(f, n)| (*f != "base.geojson", *n)).unwrap();
            let what = match p.defect {
                province::Defect::Gap => "a gap of",
                province::Defect::Overlap => "overlaps",
                province::Defect::Unclosed => "is not closed",
                province::Defect::BowTie => "crosses itself",
                province::Defect::UnknownCode => "is not in villages.csv",
            };
            (file.to_string(), feature, what)
        })
        .collect();
    expected.sort();
    let mut found: Vec<(String, usize, &str)> = errors
        .iter()
        .map(|e| {
            let file = e.file.file_name().unwrap().to_string_lossy().into_owned();
            let what = expected.iter().map(|x| x.2).find(|w| e.message.contains(w)).unwrap_or("something else");
            (file, e.feature, what)
        })
        .collect();
    found.sort();
    assert_eq!(found, expected, "{shown:#?}");
    // The overlap and the gap name both villages, their size and a point.
    let overlap = shown.iter().find(|m| m.contains("overlaps")).unwrap();
    assert!(overlap.contains(" m² around (30.") && overlap.contains("move the shared boundary"), "{overlap}");
    let gap = shown.iter().find(|m| m.contains("a gap of")).unwrap();
    assert!(gap.contains("extend a neighbouring area over it") && gap.contains("it borders feature"), "{gap}");
    assert!(shown.iter().all(|m| m.contains("areas/") && m.contains(".geojson:feature ")), "{shown:#?}");

    assert_eq!(areas(&db.store).await, areas_before, "no area was written");
    assert_eq!(villages(&db.store).await, villages_before, "nor the CSVs");
});

on_both_engines!(the_coverage_check_lists_areas_nobody_is_on_duty_for_and_villages_without_an_area, |db| {
    registry::import_dir(&db.store, &example_dir(), today()).await.unwrap();
    let report = registry::check(&db.store, today(), 5).await.unwrap();
    assert!(report.villages_without_area.is_empty() && report.areas_without_officer_on_duty.is_empty());
    sqlx::query("DELETE FROM areas WHERE village_id = (SELECT id FROM villages WHERE code = '410184101206')")
        .execute(db.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE officers SET on_duty = 0").execute(db.store.pool()).await.unwrap();
    let report = registry::check(&db.store, today(), 5).await.unwrap();
    let codes: Vec<&str> = report.villages_without_area.iter().map(|v| v.code.as_str()).collect();
    assert_eq!(codes, ["410184101206"]);
    assert_eq!(report.areas_without_officer_on_duty.len(), 11, "every area left, nobody on duty");
    let shown = report.to_string();
    assert!(shown.contains("villages without an area (areas.geojson): 1"), "{shown}");
});
