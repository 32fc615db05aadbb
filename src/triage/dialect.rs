//! Dialect normalisation: a small table, editable by the city, that rewrites the words of
//! Central-Plains and neighbouring dialects (木有 → 没有, 恁 → 你, 叫人偷 → 被人偷) into the
//! Mandarin that the rules and the model see. It is applied after [`super::normalise`], so
//! its entries are written in simplified characters without spaces or punctuation.
//!
//! All entries are replaced in one left-to-right pass (Aho-Corasick, leftmost-longest), so a
//! longer entry wins over a shorter one that starts at the same place and no replacement is
//! rewritten again: the order of the file does not matter.
//!
//! The file (`dialect.toml`):
//!
//! ```toml
//! words = [
//!   ["木有", "没有"],
//!   ["叫人偷", "被人偷"],
//! ]
//! ```

use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use anyhow::{Context as _, anyhow};
use serde::Deserialize;
use toml::Spanned;

/// The compiled table.
#[derive(Debug, Clone)]
pub struct Dialect {
    /// `None` for an empty table.
    matcher: Option<AhoCorasick>,
    /// The replacement of each pattern, by pattern index.
    to: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DialectFile {
    #[serde(default)]
    words: Vec<Spanned<(String, String)>>,
}

impl Dialect {
    /// A table that changes nothing.
    pub fn empty() -> Dialect {
        Dialect { matcher: None, to: Vec::new() }
    }

    /// Reads and checks a table. Errors start with `FILE:LINE:`.
    pub fn load(path: &Path) -> anyhow::Result<Dialect> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read the dialect table {}", path.display()))?;
        Self::parse(&raw, &path.display().to_string())
    }

    /// Parses a table given as text; `source` names it in errors.
    pub fn parse(raw: &str, source: &str) -> anyhow::Result<Dialect> {
        let line_of = |offset: usize| raw[..offset.min(raw.len())].matches('\n').count() + 1;
        let file: DialectFile = toml::from_str(raw).map_err(|e| {
            let line = e.span().map(|s| line_of(s.start)).unwrap_or(1);
            anyhow!("{source}:{line}: {}; each entry is [\"dialect word\", \"Mandarin word\"]", e.message())
        })?;
        let mut from: Vec<String> = Vec::new();
        let mut to = Vec::new();
        for entry in &file.words {
            let line = line_of(entry.span().start);
            let (dialect, mandarin) = entry.get_ref();
            let normalised = super::normalise(dialect);
            if normalised.is_empty() {
                return Err(anyhow!(
                    "{source}:{line}: the dialect word {dialect:?} is empty; write the word to replace"
                ));
            }
            if normalised != *dialect {
                return Err(anyhow!(
                    "{source}:{line}: {dialect:?} is not how triage sees text; write it as {normalised:?} (simplified characters, no spaces or punctuation)"
                ));
            }
            if from.contains(dialect) {
                return Err(anyhow!("{source}:{line}: {dialect:?} is listed twice; keep one entry"));
            }
            let target = super::normalise(mandarin);
            if target != *mandarin {
                return Err(anyhow!("{source}:{line}: write the replacement {mandarin:?} as {target:?}"));
            }
            from.push(dialect.clone());
            to.push(mandarin.clone());
        }
        if from.is_empty() {
            return Ok(Dialect::empty());
        }
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&from)
            .with_context(|| format!("{source}: the table does not compile"))?;
        Ok(Dialect { matcher: Some(matcher), to })
    }

    /// How many entries the table has.
    pub fn len(&self) -> usize {
        self.to.len()
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.to.is_empty()
    }

    /// Rewrites a normalised text.
    pub fn apply(&self, norm: &str) -> String {
        match &self.matcher {
            Some(m) => m.replace_all(norm, &self.to),
            None => norm.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_dialect_word_wins_and_nothing_is_rewritten_twice() {
        let d = Dialect::parse(
            "words = [[\"木\", \"没\"], [\"木有\", \"没有\"], [\"恁\", \"你\"], [\"没有\", \"x\"]]",
            "d",
        )
        .unwrap();
        assert_eq!(d.apply("俺家木有人恁知道不"), "俺家没有人你知道不");
        assert_eq!(d.apply("木头"), "没头", "a city writes longer entries (木头) to keep a word");
    }

    #[test]
    fn an_entry_with_punctuation_or_traditional_characters_names_its_line_and_the_fix() {
        let err = Dialect::parse("words = [\n  [\"木有\", \"没有\"],\n  [\"叫 人\", \"被人\"],\n]\n", "dialect.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("dialect.toml:3:") && err.contains("\"叫人\""), "{err}");
        let err = Dialect::parse("words = [[\"沒有\", \"没有\"]]", "d").unwrap_err().to_string();
        assert!(err.contains("write it as \"没有\""), "{err}");
        let err = Dialect::parse("words = [[\"恁\", \"你\"], [\"恁\", \"您\"]]", "d").unwrap_err().to_string();
        assert!(err.contains("listed twice"), "{err}");
    }

    #[test]
    fn the_shipped_table_loads() {
        let d = Dialect::load(Path::new("bot-config/dialect.toml")).unwrap();
        assert!(d.len() >= 20);
        assert_eq!(d.apply("俺家的羊叫人偷走了木有人管"), "俺家的羊被人偷走了没有人管");
    }
}
