//! The house plan, checked: the command line is a leaf no library module imports, the
//! configuration is plain data below the core and the console, and every button the core
//! draws is spelled by `core/wire.rs`. A change that breaks the layout fails here with the
//! file and line, not in a review months later.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, with its path relative to the crate.
fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(&root.join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(root).unwrap().display().to_string(), text)
        })
        .collect()
}

/// `file:line: text` for each line of the files `keep` accepts that `bad` matches.
fn offending(files: &[(String, String)], keep: impl Fn(&str) -> bool, bad: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files.iter().filter(|(p, _)| keep(p)) {
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if !code.starts_with("//") && bad(line) {
                found.push(format!("{path}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn no_library_module_imports_the_command_line() {
    let found = offending(
        &sources("src"),
        |p| !p.starts_with("src/cli/") && p != "src/main.rs",
        |l| l.contains("crate::cli") || l.contains("cunjing::cli") || l.contains("super::cli"),
    );
    assert!(found.is_empty(), "the CLI is a leaf: move what these need into the library\n{}", found.join("\n"));
}

#[test]
fn the_configuration_imports_neither_the_core_nor_the_console() {
    let found =
        offending(&sources("src"), |p| p == "src/config.rs", |l| l.contains("crate::core") || l.contains("crate::web"));
    assert!(found.is_empty(), "config.rs is plain data: build options where they are used\n{}", found.join("\n"));
}

#[test]
fn every_button_and_deep_link_the_core_draws_is_spelled_by_the_wire_module() {
    let found = offending(
        &sources("src/core"),
        |p| p != "src/core/wire.rs",
        |l| {
            let l = l.trim();
            (l.starts_with("data:") || l.starts_with("payload:")) && (l.contains('"') || l.contains("format!"))
        },
    );
    assert!(found.is_empty(), "draw buttons with core::wire::ButtonData / StartPayload\n{}", found.join("\n"));
}

/// Where a stored spelling may still appear as a Rust string literal outside the domain and
/// the store's mapping, and why: each is a word of another vocabulary that happens to be
/// spelled the same.
const SAME_WORD_OTHER_MEANING: &[(&str, &str, &str)] = &[
    ("src/channels/console.rs", "resident", "the console's `/as resident` command"),
    ("src/channels/console.rs", "officer", "the console's `/as officer BADGE` command"),
    ("src/channels/telegram.rs", "officer", "the `/officer` command in Telegram's menu"),
    ("src/core/wire.rs", "officer", "the `/officer` command"),
    ("src/core/wire.rs", "police", "the `/police` command, an alias of `/officer`"),
    ("src/core/wire.rs", "notice", "the `/notice` command"),
    ("src/core/wire.rs", "done", "the data of the tip conversation's and the card's 办结 buttons"),
    ("src/triage/corpus.rs", "officer", "a context flag of the labelled corpus"),
    ("src/cap.rs", "sent", "CAP's <sent> element"),
    ("src/core/tips.rs", "resident", "the tipster as named on a tip's timeline"),
    ("src/store/tips.rs", "resident", "the tipster as named on a tip's timeline"),
    ("src/core/tips.rs", "officer", "an officer as named on a tip's timeline"),
    ("src/core/workflow.rs", "officer", "an officer as named on a tip's timeline"),
    ("src/store/tips.rs", "officer", "an officer as named on a tip's timeline"),
    ("src/reports.rs", "officer", "a column of the tips export"),
    ("src/web/pages.rs", "officer", "a column of the console's export"),
    ("src/core/tips.rs", "system", "the daemon as named on a timeline and in the audit log"),
    ("src/store/tips.rs", "system", "the daemon as named on a timeline and in the audit log"),
    ("src/core/broadcast.rs", "failed", "the outcome of taking back a sent message (retract)"),
    ("src/triage.rs", "police", "the emergency kind (police, fire, ambulance)"),
    ("src/metrics.rs", "contact", "the metric label of a contact question"),
    ("src/core/staff.rs", "village", "`/tips village`: the staff group's list by village"),
    ("src/reports.rs", "village", "a column of the tips export"),
    ("src/web/pages.rs", "village", "a column of the console's export"),
    ("src/registry/export.rs", "village", "a column of the registry's CSVs"),
    ("src/registry/export.rs", "office", "a column of the registry's CSVs"),
    ("src/registry/import.rs", "village", "a column of the registry's CSVs"),
    ("src/registry/import.rs", "office", "a column of the registry's CSVs"),
    ("src/store/broadcasts.rs", "village", "the target syntax `village:CODE`"),
    ("src/store/broadcasts.rs", "grid", "the target syntax `grid:CODE`"),
    ("src/store/broadcasts.rs", "office", "the target syntax `office:CODE`"),
];

#[test]
fn no_status_kind_or_role_is_spelled_outside_the_domain_and_the_stores_mapping() {
    use cunjing::domain::*;
    let mut words: Vec<&str> = Vec::new();
    words.extend(TipStatus::codes());
    words.extend(BroadcastKind::codes());
    words.extend(BroadcastStatus::codes());
    words.extend(DeliveryState::codes());
    words.extend(Severity::codes());
    words.extend(CapStatus::codes());
    words.extend(OfficerKind::codes());
    words.extend(AssignmentRole::codes());
    words.extend(Grant::codes());
    words.extend(Role::codes());
    words.extend(Rating::codes());
    words.extend(OfficeKind::codes());
    words.extend(VillageKind::codes());
    let files = sources("src");
    let mut found = Vec::new();
    for word in words {
        let quoted = format!("\"{word}\"");
        let allowed = |path: &str| SAME_WORD_OTHER_MEANING.iter().any(|(p, w, _)| *p == path && *w == word);
        found.extend(offending(
            &files,
            |p| p != "src/domain.rs" && p != "src/store/mapping.rs" && !allowed(p),
            |line| line.contains(&quoted),
        ));
    }
    found.sort();
    found.dedup();
    assert!(
        found.is_empty(),
        "compare and build the domain's enums instead of their spellings (or, for a word of \
         another vocabulary, add it to SAME_WORD_OTHER_MEANING with the reason)\n{}",
        found.join("\n")
    );
}
