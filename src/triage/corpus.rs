//! A labelled corpus of messages and how well the rules do on it: the evidence that the
//! rules work, for the test suite and for `cunjing triage --evaluate FILE` (so a city that
//! tunes its rules can check them against its own messages).
//!
//! The corpus is a tab-separated file, one message per line: `label<TAB>flags<TAB>text`,
//! where `label` is an intent with its detail (`emergency/fire`, `tip/theft`, `non_police`,
//! `contact_query` …), `flags` is `-` (a resident in a group) or a comma-separated list of
//! `fwd` (forwarded), `officer` (written by an officer), `private` (a resident in a private
//! chat) and `hard` (a hard negative: chatter that looks like a report), and lines starting
//! with `#` are comments. The same format trains the model (`bot-config/triage-examples/`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};

use super::{Context, EmergencyKind, Intent, TipCategory, Triage};

/// Intents in the order the confusion matrix lists them.
pub const INTENTS: [&str; 6] = ["emergency", "contact_query", "tip", "non_police", "status_query", "chatter"];

/// One labelled message.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The file it was read from.
    pub source: Arc<str>,
    /// 1-based line in the file.
    pub line: usize,
    /// The intent (`emergency`) …
    pub intent: String,
    /// … and its detail (`fire`), if the label has one. Non-police topics are not labelled.
    pub detail: Option<String>,
    pub context: Context,
    /// A hard negative: chatter that looks like a report.
    pub hard: bool,
    pub text: String,
}

impl Sample {
    /// The label as an intent (a 12345 matter with no topic); `None` for a label whose
    /// detail is not known.
    pub fn label_intent(&self) -> Option<Intent> {
        let detail = self.detail.as_deref();
        Some(match self.intent.as_str() {
            "emergency" => Intent::Emergency(EmergencyKind::parse(detail?)?),
            "tip" => Intent::Tip(TipCategory::parse(detail.unwrap_or("other"))?),
            "non_police" => Intent::NonPolice(Arc::from(super::GENERAL_TOPIC)),
            "contact_query" => Intent::ContactQuery,
            "status_query" => Intent::StatusQuery,
            "chatter" => Intent::Chatter,
            _ => return None,
        })
    }
}

/// Reads every `*.tsv` file of a folder, in the order of their names.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("Failed to read the examples folder {}; create it or fix the path", dir.display()))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut samples = Vec::new();
    for path in files {
        let raw = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        samples.extend(parse(&raw, &path.display().to_string())?);
    }
    Ok(samples)
}

/// Reads a corpus; a bad line is reported as `source:line: what is wrong`.
pub fn parse(raw: &str, source: &str) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    let file: Arc<str> = Arc::from(source);
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
        let mut context = Context::default();
        let mut hard = false;
        for flag in flags.split(',').filter(|f| *f != "-") {
            match flag {
                "fwd" => context.forwarded = true,
                "officer" => context.from_officer = true,
                "private" => context.private = true,
                "hard" => hard = true,
                other => {
                    return Err(anyhow!(
                        "{source}:{n}: unknown flag {other:?}; use -, or a comma-separated list of fwd, officer, private, hard"
                    ));
                }
            }
        }
        if hard && intent != "chatter" {
            return Err(anyhow!(
                "{source}:{n}: the flag hard marks chatter that looks like a report; remove it or label the line chatter"
            ));
        }
        let known = match intent {
            "emergency" => detail.as_deref().and_then(EmergencyKind::parse).is_some(),
            "tip" => detail.as_deref().is_none_or(|d| TipCategory::parse(d).is_some()),
            _ => detail.is_none(),
        };
        if !known {
            return Err(anyhow!(
                "{source}:{n}: unknown label {label:?}; use emergency/police|fire|medical|traffic, tip/theft|fraud|dispute|hazard|suspicious|drugs|gambling|other, contact_query, non_police, status_query or chatter"
            ));
        }
        if text.trim().is_empty() {
            return Err(anyhow!("{source}:{n}: the message is empty; write the text after the second TAB"));
        }
        samples.push(Sample {
            source: file.clone(),
            line: n,
            intent: intent.to_string(),
            detail,
            context,
            hard,
            text: text.to_string(),
        });
    }
    Ok(samples)
}

/// A message the rules got wrong.
#[derive(Debug, Clone)]
pub struct Miss {
    pub source: Arc<str>,
    pub line: usize,
    pub expected: String,
    pub got: String,
    pub rule: Option<String>,
    pub layer: &'static str,
    pub confidence: Option<f32>,
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
    /// Hard negatives …
    pub hard: usize,
    /// … answered as a tip or an emergency.
    pub hard_false_alarms: usize,
    /// Verdicts by the layer that decided.
    pub layers: BTreeMap<&'static str, usize>,
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

    /// Share of hard negatives answered as a tip or an emergency (0 when there are none).
    pub fn hard_false_alarm_rate(&self) -> f64 {
        if self.hard == 0 { 0.0 } else { ratio(self.hard_false_alarms, self.hard) }
    }

    fn count(&self, expected: &str, got: &str) -> usize {
        self.matrix.get(&(expected.to_string(), got.to_string())).copied().unwrap_or(0)
    }

    /// Of the messages classified as `intent`, the share labelled so.
    pub fn precision(&self, intent: &str) -> f64 {
        let classified: usize = INTENTS.iter().map(|e| self.count(e, intent)).sum();
        ratio(self.count(intent, intent), classified)
    }

    /// Of the messages labelled `intent`, the share classified so.
    pub fn recall(&self, intent: &str) -> f64 {
        let labelled: usize = INTENTS.iter().map(|g| self.count(intent, g)).sum();
        ratio(self.count(intent, intent), labelled)
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
        let _ = writeln!(
            s,
            "Hard negatives answered as a tip or an emergency: {:.1} % ({} / {}).\n",
            100.0 * self.hard_false_alarm_rate(),
            self.hard_false_alarms,
            self.hard
        );
        let _ = writeln!(s, "| intent | precision | recall | labelled |\n|---|---:|---:|---:|");
        for intent in INTENTS {
            let labelled: usize = INTENTS.iter().map(|g| self.count(intent, g)).sum();
            let _ = writeln!(
                s,
                "| {intent} | {:.1} % | {:.1} % | {labelled} |",
                100.0 * self.precision(intent),
                100.0 * self.recall(intent)
            );
        }
        let layers: Vec<String> = self.layers.iter().map(|(l, n)| format!("{l} {n}")).collect();
        let _ = writeln!(s, "\nDecided by: {}.\n", layers.join(", "));
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

/// K-fold cross-validation of the model on its own examples: each fold is classified by a
/// model trained on the other folds (with the rules and thresholds of `triage`). This is how
/// thresholds are tuned without looking at a held-out set.
pub fn cross_validate(triage: &Triage, samples: &[Sample], folds: usize) -> anyhow::Result<Evaluation> {
    let training =
        triage.model().map(|m| m.training()).ok_or_else(|| anyhow!("the rules have no [model] to validate"))?;
    let folds = folds.clamp(2, samples.len().max(2));
    let mut total = Evaluation::default();
    for fold in 0..folds {
        let (test, train): (Vec<&Sample>, Vec<&Sample>) =
            samples.iter().enumerate().fold((Vec::new(), Vec::new()), |(mut test, mut train), (i, s)| {
                if i % folds == fold {
                    test.push(s)
                } else {
                    train.push(s)
                }
                (test, train)
            });
        let train: Vec<Sample> = train.into_iter().cloned().collect();
        let test: Vec<Sample> = test.into_iter().cloned().collect();
        let model = super::model::Model::train_on(
            &train,
            &train.iter().map(|s| triage.rewrite(&s.text)).collect::<Vec<_>>(),
            training,
        );
        let fold_triage = triage.with_model(Some(Arc::new(model)))?;
        total.merge(evaluate(&fold_triage, &test));
    }
    Ok(total)
}

impl Evaluation {
    /// Adds another evaluation's counts to this one.
    pub fn merge(&mut self, other: Evaluation) {
        self.total += other.total;
        self.correct += other.correct;
        for (k, n) in other.matrix {
            *self.matrix.entry(k).or_default() += n;
        }
        self.emergencies += other.emergencies;
        self.emergencies_found += other.emergencies_found;
        self.detailed += other.detailed;
        self.detail_correct += other.detail_correct;
        self.hard += other.hard;
        self.hard_false_alarms += other.hard_false_alarms;
        for (k, n) in other.layers {
            *self.layers.entry(k).or_default() += n;
        }
        self.misses.extend(other.misses);
    }
}

/// Classifies every sample and counts.
pub fn evaluate(triage: &Triage, samples: &[Sample]) -> Evaluation {
    let mut e = Evaluation::default();
    for s in samples {
        let v = triage.classify_in(&s.text, s.context);
        let got = v.intent.as_str();
        e.total += 1;
        *e.layers.entry(v.layer.as_str()).or_default() += 1;
        if s.hard {
            e.hard += 1;
            e.hard_false_alarms += usize::from(matches!(v.intent, Intent::Emergency(_) | Intent::Tip(_)));
        }
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
            e.misses.push(Miss {
                source: s.source.clone(),
                line: s.line,
                expected,
                got: v.intent.label(),
                rule: v.rule,
                layer: v.layer.as_str(),
                confidence: v.confidence,
                text: s.text.clone(),
            });
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
        let err = parse("tip/arson\t-\t放火\n", "c.tsv").unwrap_err();
        assert!(err.to_string().starts_with("c.tsv:1: unknown label \"tip/arson\""), "{err}");
        let err = parse("tip/theft\thard\t偷了\n", "c.tsv").unwrap_err();
        assert!(err.to_string().contains("the flag hard marks chatter"), "{err}");
        let ok = parse("chatter\tfwd,hard\t转发：有人被骗\n", "c.tsv").unwrap();
        assert!(ok[0].hard && ok[0].context.forwarded);
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
