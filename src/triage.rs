//! Triage: what a plain-language message is (a contact question, …), decided by the ordered
//! regex rules in `bot-config/intents.toml` so that a city can tune them without a build.
//!
//! All patterns are compiled once into one [`regex::RegexSet`]; a message is normalised
//! (full-width → half-width, ASCII lower case, white space removed) and matched in a single
//! pass. Loading checks every pattern (a bad one names the file, the rule and the position)
//! and every rule's examples.

use std::path::Path;

use anyhow::{Context, anyhow};
use regex::{Regex, RegexSet};
use serde::Deserialize;

/// What a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Something is happening now: the person is told at once whom to call.
    Emergency(EmergencyKind),
    /// "Who is our officer, what is the number": answered with the contact card.
    ContactQuery,
    /// Everything no rule takes: silence in groups.
    Chatter,
}

/// Which emergency number to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmergencyKind {
    /// 110
    Police,
    /// 119
    Fire,
    /// 120
    Medical,
    /// 122
    Traffic,
}

impl EmergencyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyKind::Police => "police",
            EmergencyKind::Fire => "fire",
            EmergencyKind::Medical => "medical",
            EmergencyKind::Traffic => "traffic",
        }
    }

    fn parse(s: &str) -> Option<EmergencyKind> {
        [EmergencyKind::Police, EmergencyKind::Fire, EmergencyKind::Medical, EmergencyKind::Traffic]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Emergency(_) => "emergency",
            Intent::ContactQuery => "contact_query",
            Intent::Chatter => "chatter",
        }
    }

    /// The intent a rule names: `emergency` needs its `kind`.
    fn parse(s: &str, kind: Option<&str>) -> Option<Intent> {
        match s {
            "emergency" => kind.and_then(EmergencyKind::parse).map(Intent::Emergency),
            "contact_query" => Some(Intent::ContactQuery),
            _ => None,
        }
    }
}

/// The outcome of triage: the intent and the name of the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub intent: Intent,
    /// `None` for chatter (no rule matched).
    pub rule: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    place_hints: Vec<String>,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    intent: String,
    /// For `emergency`: police, fire, medical or traffic.
    #[serde(default)]
    kind: Option<String>,
    patterns: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    examples: Vec<String>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    intent: Intent,
    /// Indexes of this rule's patterns in the shared set.
    patterns: std::ops::Range<usize>,
    exclude: Vec<Regex>,
}

/// The compiled rules.
#[derive(Debug)]
pub struct Triage {
    set: RegexSet,
    rules: Vec<Rule>,
    /// Words that make a short private message look like a village name.
    place_hints: Vec<String>,
    /// The first example of the first contact rule: what the demo suggests asking.
    first_example: Option<String>,
}

impl Triage {
    /// Reads and checks the rules file.
    pub fn load(path: &Path) -> anyhow::Result<Triage> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read the triage rules {}", path.display()))?;
        Self::from_toml(&raw).with_context(|| format!("In the triage rules {}", path.display()))
    }

    pub fn from_toml(raw: &str) -> anyhow::Result<Triage> {
        let file: RulesFile = toml::from_str(raw).context("the file does not have the expected [[rules]] shape")?;
        let mut all_patterns = Vec::new();
        let mut rules = Vec::new();
        for spec in &file.rules {
            let intent = Intent::parse(&spec.intent, spec.kind.as_deref()).ok_or_else(|| {
                anyhow!(
                    "rule {:?}: intent {:?} (kind {:?}) is not known; use contact_query, or emergency with kind = police, fire, medical or traffic",
                    spec.name,
                    spec.intent,
                    spec.kind.as_deref().unwrap_or("")
                )
            })?;
            if spec.patterns.is_empty() {
                return Err(anyhow!("rule {:?} has no patterns", spec.name));
            }
            let start = all_patterns.len();
            for (i, p) in spec.patterns.iter().enumerate() {
                Regex::new(p).map_err(|e| anyhow!("rule {:?}, pattern {}: {}", spec.name, i + 1, e))?;
                all_patterns.push(p.clone());
            }
            let exclude = spec
                .exclude
                .iter()
                .enumerate()
                .map(|(i, p)| Regex::new(p).map_err(|e| anyhow!("rule {:?}, exclusion {}: {}", spec.name, i + 1, e)))
                .collect::<anyhow::Result<Vec<_>>>()?;
            rules.push(Rule { name: spec.name.clone(), intent, patterns: start..all_patterns.len(), exclude });
        }
        let set = RegexSet::new(&all_patterns).context("the patterns do not compile together")?;
        let first_example =
            file.rules.iter().filter(|r| r.intent == "contact_query").find_map(|r| r.examples.first()).cloned();
        let triage = Triage { set, rules, place_hints: file.place_hints.clone(), first_example };
        for spec in &file.rules {
            for ex in &spec.examples {
                let v = triage.classify(ex);
                if v.rule.as_deref() != Some(spec.name.as_str()) {
                    return Err(anyhow!(
                        "rule {:?}: its example {:?} is classified as {} by rule {:?}; fix the patterns or the example",
                        spec.name,
                        ex,
                        v.intent.as_str(),
                        v.rule.as_deref().unwrap_or("(none)")
                    ));
                }
            }
        }
        Ok(triage)
    }

    /// Whether a short private message looks like the name of a village.
    pub fn looks_like_a_place(&self, text: &str) -> bool {
        self.place_hints.iter().any(|h| text.contains(h.as_str()))
    }

    /// A question the rules recognise, for the demo's banner.
    pub fn first_example(&self) -> Option<&str> {
        self.first_example.as_deref()
    }

    /// Classifies one message.
    pub fn classify(&self, text: &str) -> Verdict {
        let norm = normalise(text);
        let hits = self.set.matches(&norm);
        if hits.matched_any() {
            for rule in &self.rules {
                if rule.patterns.clone().any(|i| hits.matched(i)) && !rule.exclude.iter().any(|x| x.is_match(&norm)) {
                    return Verdict { intent: rule.intent, rule: Some(rule.name.clone()) };
                }
            }
        }
        Verdict { intent: Intent::Chatter, rule: None }
    }
}

/// Full-width forms made half-width, ASCII lower-cased, white space removed, and the
/// traditional characters of the contact vocabulary made simplified.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter_map(|c| {
            let c = match c {
                '\u{3000}' => ' ',
                '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
                '電' => '电',
                '話' => '话',
                '碼' => '码',
                '問' => '问',
                '誰' => '谁',
                '聯' => '联',
                '係' | '繫' => '系',
                '務' => '务',
                '這' => '这',
                '們' => '们',
                '裡' | '裏' => '里',
                '處' => '处',
                '號' => '号',
                _ => c,
            };
            (!c.is_whitespace()).then(|| c.to_ascii_lowercase())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Triage {
        Triage::load(Path::new("bot-config/intents.toml")).unwrap()
    }

    #[test]
    fn a_newcomers_first_question_is_a_contact_query() {
        assert_eq!(shipped().classify("我们村民警电话多少").intent, Intent::ContactQuery);
        assert_eq!(shipped().classify("民警 电话 多少？").intent, Intent::ContactQuery);
    }

    #[test]
    fn ordinary_chatter_is_left_alone() {
        for t in ["大家早上好", "今天赶集吗", "谢谢", "收到"] {
            assert_eq!(shipped().classify(t).intent, Intent::Chatter, "{t}");
        }
    }

    #[test]
    fn a_bad_pattern_names_the_rule_and_the_pattern() {
        let err = Triage::from_toml("[[rules]]\nname='x'\nintent='contact_query'\npatterns=['ok','(unclosed']\n")
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("rule \"x\", pattern 2"), "{msg}");
    }

    #[test]
    fn a_rule_that_misses_its_own_example_is_refused_at_load() {
        let err =
            Triage::from_toml("[[rules]]\nname='x'\nintent='contact_query'\npatterns=['电话']\nexamples=['你好']\n")
                .unwrap_err();
        assert!(err.to_string().contains("its example"), "{err}");
    }

    #[test]
    fn full_width_and_traditional_text_is_normalised() {
        assert_eq!(normalise("ＡＢＣ　民警電話"), "abc民警电话");
    }
}
