//! Fuzzing with proptest (cargo fuzz needs a nightly compiler, which CI does not have): the
//! parsers that take outside input — the registry CSV importer, the triage normaliser and
//! matcher, the CAP parser and the Telegram update → `Inbound` conversion — get random and
//! mutated input and must answer (an error is fine) without panicking. The number of cases
//! is `PROPTEST_CASES` (256 by default; `.ci/run` keeps the default). Inputs that once broke
//! something, and hostile classics, live in `tests/fixtures/fuzz/` and run every time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;

fn fixtures(dir: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regression cases in {}", root.display());
    out
}

fn rules() -> &'static cunjing::triage::Triage {
    static RULES: OnceLock<cunjing::triage::Triage> = OnceLock::new();
    RULES.get_or_init(|| {
        cunjing::triage::Triage::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("bot-config/intents.toml")).unwrap()
    })
}

/// Classifies `text` in every context, and normalises it: must not panic.
fn triage_survives(text: &str) {
    let _ = cunjing::triage::normalise(text);
    for forwarded in [false, true] {
        for from_officer in [false, true] {
            for private in [false, true] {
                for in_tip in [false, true] {
                    let context = cunjing::triage::Context { forwarded, from_officer, private, in_tip };
                    let _ = rules().classify_in(text, context);
                }
            }
        }
    }
}

/// Writes `bytes` as registry file `file` (the other files from the example) and parses the
/// folder: errors must name the file and line, and never panic.
fn registry_survives(file: &str, bytes: &[u8]) {
    let dir = crate::app::example_registry_with(&[]);
    std::fs::write(dir.path().join(file), bytes).unwrap();
    if let Err(errors) = cunjing::registry::parse_dir(dir.path()) {
        assert!(!errors.is_empty());
        for e in errors {
            let text = e.to_string();
            assert!(text.contains(".csv"), "an error names its file: {text}");
        }
    }
}

/// A Telegram update built from a real message shape with fuzzed fields: parsed by teloxide
/// (an error is fine) and converted; must not panic.
fn update_survives(update: &serde_json::Value) {
    if let Ok(update) = serde_json::from_value::<teloxide::types::Update>(update.clone())
        && let teloxide::types::UpdateKind::Message(msg) = &update.kind
    {
        let _ = cunjing::channels::telegram::message_to_inbound(msg);
    }
}

fn message_update(text: &str, chat_type: &str, chat_id: i64, with_entity: Option<(u64, u64)>) -> serde_json::Value {
    let mut msg = serde_json::json!({
        "message_id": 7, "date": 1_700_000_000,
        "chat": {"id": chat_id, "type": chat_type, "title": "群", "first_name": "王"},
        "from": {"id": 5001, "is_bot": false, "first_name": "王"},
        "text": text,
    });
    if let Some((offset, length)) = with_entity {
        msg["entities"] = serde_json::json!([{"type": "bot_command", "offset": offset, "length": length}]);
    }
    serde_json::json!({"update_id": 1, "message": msg})
}

proptest! {
    #[test]
    fn triage_takes_any_text(text in any::<String>()) {
        triage_survives(&text);
    }

    #[test]
    fn triage_takes_chinese_like_text_with_digits_and_punctuation(
        text in "[\\u{4e00}-\\u{9fff}0-9０-９，。！？\\s/@a-zA-Z]{0,200}"
    ) {
        triage_survives(&text);
    }

    #[test]
    fn the_registry_importer_reports_any_file_content_without_panicking(
        file in prop::sample::select(cunjing::registry::FILES.to_vec()),
        bytes in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        registry_survives(file, &bytes);
    }

    #[test]
    fn the_registry_importer_takes_mutated_lines_of_the_example(
        file in prop::sample::select(cunjing::registry::FILES.to_vec()),
        cut in 0usize..2000,
        insert in "[,\"\\n\\r;\\u{feff}a-z0-9\\u{4e00}-\\u{4e10}]{0,12}",
    ) {
        let original = std::fs::read(crate::app::example_dir().join(file)).unwrap();
        let at = cut.min(original.len());
        let mut bytes = original[..at].to_vec();
        bytes.extend_from_slice(insert.as_bytes());
        bytes.extend_from_slice(&original[at..]);
        registry_survives(file, &bytes);
    }

    #[test]
    fn the_cap_parser_takes_any_text(text in any::<String>()) {
        let _ = cunjing::cap::Alert::parse(&text);
    }

    #[test]
    fn the_cap_parser_takes_mutated_alerts(cut in 0usize..4000, insert in "[<>/&;\"'a-z=\\s!\\[\\]-]{0,16}") {
        let xml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cap/cap12-appendix-a1-alert.xml"),
        ).unwrap();
        let mut at = cut.min(xml.len());
        while !xml.is_char_boundary(at) {
            at -= 1;
        }
        let mutated = format!("{}{insert}{}", &xml[..at], &xml[at..]);
        if let Ok(alert) = cunjing::cap::Alert::parse(&mutated) {
            let _ = alert.validate();
            let _ = alert.to_xml();
        }
    }

    #[test]
    fn any_message_update_converts_or_is_skipped(
        text in any::<String>(),
        chat_type in prop::sample::select(vec!["private", "group", "supergroup", "channel", "secret"]),
        chat_id in any::<i64>(),
        entity in prop::option::of((0u64..300, 0u64..300)),
    ) {
        update_survives(&message_update(&text, chat_type, chat_id, entity));
    }
}

#[test]
fn the_kept_regression_cases_still_pass() {
    for (path, bytes) in fixtures("triage") {
        triage_survives(&String::from_utf8_lossy(&bytes));
        let _ = path;
    }
    for (path, bytes) in fixtures("registry") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let file = cunjing::registry::FILES
            .iter()
            .find(|f| name.starts_with(f.trim_end_matches(".csv")))
            .unwrap_or_else(|| panic!("{name}: name a regression case after its registry file"));
        registry_survives(file, &bytes);
    }
    for (_, bytes) in fixtures("cap") {
        let _ = cunjing::cap::Alert::parse(&String::from_utf8_lossy(&bytes));
    }
    for (path, bytes) in fixtures("update") {
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        update_survives(&value);
    }
}
