//! A labelled corpus of messages and how well the rules do on it: the evidence that the
//! rules work, for the test suite and for `cunjing triage --evaluate FILE` (so a city that
//! tunes its rules can check them against its own messages).
//!
//! The corpus is a tab-separated file, one message per line: `label<TAB>flags<TAB>text`,
//! where `label` is an intent with its detail (`emergency/fire`, `tip/theft`, `non_police`,
//! `contact_query` …), `flags` is `-` (a resident in a group), `fwd` (forwarded), `officer`
//! (written by an officer) or `private` (a resident in a private chat), and lines starting
//! with `#` are comments.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::anyhow;

use super::{Context, Triage};

/// Intents in the order the confusion matrix lists them.
pub const INTENTS: [&str; 6] = ["emergency", "contact_query", "tip", "non_police", "status_query", "chatter"];

/// One labelled message.
#[derive(Debug, Clone)]
pub struct Sample {
    /// 1-based line in the file.
    pub line: usize,
    /// The intent (`emergency`) …
    pub intent: String,
    /// … and its detail (`fire`), if the label has one. Non-police topics are not labelled.
    pub detail: Option<String>,
    pub context: Context,
    pub text: String,
}

/// Reads a corpus; a bad line is reported as `source:line: what is wrong`.
pub fn parse(raw: &str, source: &str) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (i, line) in raw.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [label, flags, text] = fields.as_slice() else {
            return Err(anyhow!(
                "{source}:{n}: expected 3 tab-separated fields (label, flags, text), found {}",
                fields.len()
            ));
        };
        let (intent, detail) = match label.split_once('/') {
            Some((i, d)) => (i, Some(d.to_string())),
            None => (*label, None),
        };
        if !INTENTS.contains(&intent) {
            return Err(anyhow!("{source}:{n}: unknown label {label:?}; use one of {}", INTENTS.join(", ")));
        }
        let context = match *flags {
            "-" => Context::default(),
            "fwd" => Context { forwarded: true, ..Context::default() },
            "officer" => Context { from_officer: true, ..Context::default() },
            "private" => Context { private: true, ..Context::default() },
            other => return Err(anyhow!("{source}:{n}: unknown flags {other:?}; use -, fwd, officer or private")),
        };
        samples.push(Sample { line: n, intent: intent.to_string(), detail, context, text: text.to_string() });
    }
    Ok(samples)
}

/// A message the rules got wrong.
#[derive(Debug, Clone)]
pub struct Miss {
    pub line: usize,
    pub expected: String,
    pub got: String,
    pub rule: Option<String>,
    pub text: String,
}

/// The rules' results on a corpus.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub total: usize,
    /// Samples whose intent was right.
    pub correct: usize,
    /// (expected intent, classified intent) → count.
    pub matrix: BTreeMap<(String, String), usize>,
    pub emergencies: usize,
    /// Emergencies classified as emergencies (of any kind).
    pub emergencies_found: usize,
    /// Samples with a labelled detail whose intent was right …
    pub detailed: usize,
    /// … and whose detail (emergency kind, tip category) was right too.
    pub detail_correct: usize,
    /// Wrong intent or wrong detail.
    pub misses: Vec<Miss>,
}

impl Evaluation {
    /// Share of samples whose intent was right.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.total)
    }

    /// Share of emergencies recognised as emergencies.
    pub fn emergency_recall(&self) -> f64 {
        ratio(self.emergencies_found, self.emergencies)
    }

    /// Share of right intents whose kind or category was right too.
    pub fn detail_accuracy(&self) -> f64 {
        ratio(self.detail_correct, self.detailed)
    }

    /// The figures and the confusion matrix as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} messages: intent accuracy {:.1} % ({} / {}), emergency recall {:.1} % ({} / {}), kind/category accuracy {:.1} % ({} / {}).\n",
            self.total,
            100.0 * self.accuracy(),
            self.correct,
            self.total,
            100.0 * self.emergency_recall(),
            self.emergencies_found,
            self.emergencies,
            100.0 * self.detail_accuracy(),
            self.detail_correct,
            self.detailed
        );
        let _ = writeln!(s, "| labelled ↓ / classified → | {} |", INTENTS.join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(INTENTS.len()));
        for expected in INTENTS {
            let cells: Vec<String> = INTENTS
                .iter()
                .map(|got| {
                    let n = self.matrix.get(&(expected.to_string(), got.to_string())).copied().unwrap_or(0);
                    if n > 0 && *got == expected { format!("**{n}**") } else { n.to_string() }
                })
                .collect();
            let _ = writeln!(s, "| {expected} | {} |", cells.join(" | "));
        }
        s
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Classifies every sample and counts.
pub fn evaluate(triage: &Triage, samples: &[Sample]) -> Evaluation {
    let mut e = Evaluation::default();
    for s in samples {
        let v = triage.classify_in(&s.text, s.context);
        let got = v.intent.as_str();
        e.total += 1;
        *e.matrix.entry((s.intent.clone(), got.to_string())).or_default() += 1;
        let intent_right = got == s.intent;
        if s.intent == "emergency" {
            e.emergencies += 1;
            e.emergencies_found += usize::from(intent_right);
        }
        let mut right = intent_right;
        if intent_right {
            e.correct += 1;
            if let Some(d) = &s.detail {
                e.detailed += 1;
                let detail_right = v.intent.detail() == Some(d.as_str());
                e.detail_correct += usize::from(detail_right);
                right = detail_right;
            }
        }
        if !right {
            let expected = match &s.detail {
                Some(d) => format!("{}/{d}", s.intent),
                None => s.intent.clone(),
            };
            e.misses.push(Miss { line: s.line, expected, got: v.intent.label(), rule: v.rule, text: s.text.clone() });
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corpus_line_without_three_fields_is_reported_with_its_line() {
        let err = parse("# c\nchatter\t-\t你好\nchatter 你好\n", "c.tsv").unwrap_err();
        assert!(err.to_string().starts_with("c.tsv:3: expected 3 tab-separated fields"), "{err}");
        let err = parse("gossip\t-\t你好\n", "c.tsv").unwrap_err();
        assert!(err.to_string().contains("unknown label \"gossip\""), "{err}");
    }

    #[test]
    fn the_matrix_counts_each_sample_once_by_label_and_result() {
        let rules = "[[rules]]\nname='f'\nintent='emergency'\nkind='fire'\npatterns=['着火']\n";
        let t = Triage::parse(rules, "r").unwrap();
        let samples =
            parse("emergency/fire\t-\t着火了\nemergency/police\t-\t有人打架\nchatter\t-\t你好\n", "c").unwrap();
        let e = evaluate(&t, &samples);
        assert_eq!((e.total, e.correct, e.emergencies, e.emergencies_found), (3, 2, 2, 1));
        assert_eq!(e.matrix[&("emergency".into(), "chatter".into())], 1);
        assert_eq!(e.misses.len(), 1);
        assert_eq!(e.misses[0].line, 2);
        assert!(e.markdown().contains("| emergency | **1** | 0 | 0 | 0 | 0 | 1 |"), "{}", e.markdown());
    }
}
