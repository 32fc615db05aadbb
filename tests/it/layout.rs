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
