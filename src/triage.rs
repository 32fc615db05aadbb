//! Triage: what a plain-language message is — an emergency, a contact question, a tip, a
//! matter for the government hotline 12345, a question about an earlier report, or chatter —
//! decided by the ordered regex rules in `bot-config/intents.toml`, so that a city can tune
//! them without a new build.
//!
//! A message is first normalised (full-width → half-width, traditional → simplified, ASCII
//! lower case, everything but letters and digits dropped, long runs of one character cut to
//! two), then matched against every pattern of every rule in one pass of a single
//! [`regex::RegexSet`] compiled at load. The first rule (in file order) with a matching
//! pattern and no matching exclusion decides. Before the rules, the message's context
//! decides a few cases: forwarded messages, officers' own messages and long article-like
//! texts are not reports.
//!
//! Loading checks everything a city could get wrong: a bad regex is reported with the file,
//! the line, the rule and the position in the pattern; every rule's `examples` must be
//! classified by that rule and none of its `counter_examples` may be.

pub mod corpus;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use toml::Spanned;

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Something is happening now: the person is told at once whom to call.
    Emergency(EmergencyKind),
    /// "Who is our officer, what is the number": answered with the contact card.
    ContactQuery,
    /// A report for the police that is not an emergency: the tip flow.
    Tip(TipCategory),
    /// A matter for the government service hotline 12345 (street lights, rubbish, pensions …),
    /// with the rule's topic code.
    NonPolice(Arc<str>),
    /// "How is my report going": the status flow.
    StatusQuery,
    /// Everything else: silence in groups, a short menu in private chats.
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
    pub const ALL: [EmergencyKind; 4] =
        [EmergencyKind::Police, EmergencyKind::Fire, EmergencyKind::Medical, EmergencyKind::Traffic];

    pub fn as_str(self) -> &'static str {
        match self {
            EmergencyKind::Police => "police",
            EmergencyKind::Fire => "fire",
            EmergencyKind::Medical => "medical",
            EmergencyKind::Traffic => "traffic",
        }
    }

    pub fn parse(s: &str) -> Option<EmergencyKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a tip is about. The codes are the ones `tips.categories` and the templates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TipCategory {
    Theft,
    Fraud,
    Dispute,
    Hazard,
    Suspicious,
    Drugs,
    Gambling,
    Other,
}

impl TipCategory {
    pub const ALL: [TipCategory; 8] = [
        TipCategory::Theft,
        TipCategory::Fraud,
        TipCategory::Dispute,
        TipCategory::Hazard,
        TipCategory::Suspicious,
        TipCategory::Drugs,
        TipCategory::Gambling,
        TipCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TipCategory::Theft => "theft",
            TipCategory::Fraud => "fraud",
            TipCategory::Dispute => "dispute",
            TipCategory::Hazard => "hazard",
            TipCategory::Suspicious => "suspicious",
            TipCategory::Drugs => "drugs",
            TipCategory::Gambling => "gambling",
            TipCategory::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<TipCategory> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Intent {
    /// The intent's name: emergency, contact_query, tip, non_police, status_query, chatter.
    pub fn as_str(&self) -> &'static str {
        match self {
            Intent::Emergency(_) => "emergency",
            Intent::ContactQuery => "contact_query",
            Intent::Tip(_) => "tip",
            Intent::NonPolice(_) => "non_police",
            Intent::StatusQuery => "status_query",
            Intent::Chatter => "chatter",
        }
    }

    /// The emergency kind, tip category or non-police topic, if the intent has one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Intent::Emergency(k) => Some(k.as_str()),
            Intent::Tip(c) => Some(c.as_str()),
            Intent::NonPolice(t) => Some(t),
            _ => None,
        }
    }

    /// `intent` or `intent/detail`: the labels of the corpus and of `cunjing triage`.
    pub fn label(&self) -> String {
        match self.detail() {
            Some(d) => format!("{}/{d}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// What is known about a message besides its text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Context {
    /// Forwarded from another chat or a public account: an article, not the sender's report.
    pub forwarded: bool,
    /// Written by an enrolled officer: a notice, not a report.
    pub from_officer: bool,
    /// Written in a private chat with the bot (not in a group): a long text there is the
    /// person's own account, not an article.
    pub private: bool,
}

/// Why a message was taken as chatter before any rule was tried.
pub const RULE_FORWARDED: &str = "context.forwarded";
pub const RULE_OFFICER: &str = "context.officer";
pub const RULE_LONG_TEXT: &str = "context.long_text";

/// The outcome of triage: the intent and the name of the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub intent: Intent,
    /// `None` for chatter that no rule took.
    pub rule: Option<String>,
}

impl Verdict {
    /// One JSON object: `{"intent": …, "kind"|"category"|"topic": …, "rule": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "intent": self.intent.as_str(), "rule": self.rule });
        let key = match self.intent {
            Intent::Emergency(_) => "kind",
            Intent::Tip(_) => "category",
            Intent::NonPolice(_) => "topic",
            _ => return v,
        };
        v[key] = serde_json::Value::from(self.intent.detail());
        v
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    place_hints: Vec<String>,
    /// Named fragments that patterns use as `{{name}}`.
    #[serde(default)]
    defs: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    long_text: Option<LongTextSpec>,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LongTextSpec {
    min_chars: usize,
    #[serde(default)]
    urgent: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Spanned<String>,
    intent: String,
    /// For `emergency`: police, fire, medical or traffic.
    #[serde(default)]
    kind: Option<String>,
    /// For `tip`: theft, fraud, dispute, hazard, suspicious, drugs, gambling or other.
    #[serde(default)]
    category: Option<String>,
    /// For `non_police`: a topic code the templates know (streetlight, rubbish …).
    #[serde(default)]
    topic: Option<String>,
    patterns: Vec<Spanned<String>>,
    #[serde(default)]
    exclude: Vec<Spanned<String>>,
    #[serde(default)]
    examples: Vec<String>,
    #[serde(default)]
    counter_examples: Vec<String>,
}

#[derive(Debug)]
struct Rule {
    name: String,
    intent: Intent,
    /// Indexes of this rule's patterns in the shared set.
    patterns: std::ops::Range<usize>,
    /// Indexes of this rule's exclusions in the shared exclusion set.
    exclude: std::ops::Range<usize>,
}

#[derive(Debug)]
struct LongText {
    min_chars: usize,
    urgent: Option<Regex>,
}

/// The compiled rules.
#[derive(Debug)]
pub struct Triage {
    set: RegexSet,
    /// Every rule's exclusions in one set: compiled one by one they held 3.5 MiB of
    /// automata (43 of them; heaptrack, BENCHMARKS.md).
    excludes: RegexSet,
    rules: Vec<Rule>,
    long_text: Option<LongText>,
    /// Words that make a short private message look like a village name.
    place_hints: Vec<String>,
    /// The first example of the first contact rule: what the demo suggests asking.
    first_example: Option<String>,
}

/// 1-based line of a byte offset.
fn line_of(raw: &str, offset: usize) -> usize {
    raw[..offset.min(raw.len())].matches('\n').count() + 1
}

impl Triage {
    /// Reads and checks the rules file. Errors start with `FILE:LINE:`.
    pub fn load(path: &Path) -> anyhow::Result<Triage> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read the triage rules {}", path.display()))?;
        Self::parse(&raw, &path.display().to_string())
    }

    /// Parses rules given as text; `source` names them in errors.
    pub fn parse(raw: &str, source: &str) -> anyhow::Result<Triage> {
        let file: RulesFile = toml::from_str(raw).map_err(|e| {
            let line = e.span().map(|s| line_of(raw, s.start)).unwrap_or(1);
            anyhow!("{source}:{line}: {}", e.message())
        })?;
        // A pattern with its `{{name}}` fragments expanded, compiled alone to report errors.
        let compile = |what: &str, rule: &str, p: &Spanned<String>| -> anyhow::Result<(String, Regex)> {
            let line = line_of(raw, p.span().start);
            let expanded = expand(p.get_ref(), &file.defs)
                .map_err(|why| anyhow!("{source}:{line}: rule {rule:?}, {what}: {why}"))?;
            let regex = Regex::new(&expanded).map_err(|e| {
                anyhow!("{source}:{line}: rule {rule:?}, {what}: the regex does not compile, fix it or escape the character:\n{e}")
            })?;
            Ok((expanded, regex))
        };
        for (name, def) in &file.defs {
            Regex::new(def).map_err(|e| anyhow!("{source}: [defs] {name}: the regex does not compile:\n{e}"))?;
        }
        let mut all_patterns = Vec::new();
        let mut all_excludes = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        for spec in &file.rules {
            let name = spec.name.get_ref();
            let at = line_of(raw, spec.name.span().start);
            if rules.iter().any(|r| &r.name == name) {
                return Err(anyhow!("{source}:{at}: rule {name:?} is defined twice; give each rule its own name"));
            }
            let intent = parse_intent(spec).map_err(|why| anyhow!("{source}:{at}: rule {name:?}: {why}"))?;
            if spec.patterns.is_empty() {
                return Err(anyhow!("{source}:{at}: rule {name:?} has no patterns; add at least one"));
            }
            let start = all_patterns.len();
            for (i, p) in spec.patterns.iter().enumerate() {
                all_patterns.push(compile(&format!("pattern {}", i + 1), name, p)?.0);
            }
            let first_exclude = all_excludes.len();
            for (i, p) in spec.exclude.iter().enumerate() {
                all_excludes.push(compile(&format!("exclusion {}", i + 1), name, p)?.0);
            }
            let (patterns, exclude) = (start..all_patterns.len(), first_exclude..all_excludes.len());
            rules.push(Rule { name: name.clone(), intent, patterns, exclude });
        }
        let set = RegexSet::new(&all_patterns).context("the patterns do not compile together")?;
        let excludes = RegexSet::new(&all_excludes).context("the exclusions do not compile together")?;
        let long_text = match &file.long_text {
            Some(spec) => {
                let urgent = match spec.urgent.as_slice() {
                    [] => None,
                    many => {
                        let mut joined = Vec::new();
                        for (i, p) in many.iter().enumerate() {
                            joined.push(format!(
                                "(?:{})",
                                compile(&format!("urgent pattern {}", i + 1), "long_text", p)?.0
                            ));
                        }
                        Some(Regex::new(&joined.join("|"))?)
                    }
                };
                Some(LongText { min_chars: spec.min_chars, urgent })
            }
            None => None,
        };
        let first_example =
            file.rules.iter().filter(|r| r.intent == "contact_query").find_map(|r| r.examples.first()).cloned();
        let triage = Triage { set, excludes, rules, long_text, place_hints: file.place_hints.clone(), first_example };
        for spec in &file.rules {
            let name = spec.name.get_ref();
            let at = line_of(raw, spec.name.span().start);
            for ex in &spec.examples {
                let v = triage.classify(ex);
                if v.rule.as_deref() != Some(name.as_str()) {
                    return Err(anyhow!(
                        "{source}:{at}: rule {name:?}: its example {ex:?} is classified as {} by rule {:?}; fix the patterns or the example",
                        v.intent,
                        v.rule.as_deref().unwrap_or("(none)")
                    ));
                }
            }
            for ex in &spec.counter_examples {
                if triage.classify(ex).rule.as_deref() == Some(name.as_str()) {
                    return Err(anyhow!(
                        "{source}:{at}: rule {name:?}: its counter-example {ex:?} is taken by the rule; add an exclusion or fix the counter-example"
                    ));
                }
            }
        }
        Ok(triage)
    }

    /// How many rules there are.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Whether a short private message looks like the name of a village.
    pub fn looks_like_a_place(&self, text: &str) -> bool {
        self.place_hints.iter().any(|h| text.contains(h.as_str()))
    }

    /// A question the rules recognise, for the demo's banner.
    pub fn first_example(&self) -> Option<&str> {
        self.first_example.as_deref()
    }

    /// Classifies one message with no context (as if a resident wrote it).
    pub fn classify(&self, text: &str) -> Verdict {
        self.classify_in(text, Context::default())
    }

    /// Classifies one message.
    pub fn classify_in(&self, text: &str, context: Context) -> Verdict {
        let decided = |intent: Intent, rule: &str| Verdict { intent, rule: Some(rule.to_string()) };
        if context.forwarded {
            return decided(Intent::Chatter, RULE_FORWARDED);
        }
        let norm = normalise(text);
        if let Some(long) = &self.long_text
            && !context.private
            && norm.chars().count() >= long.min_chars
            && !long.urgent.as_ref().is_some_and(|u| u.is_match(&norm))
        {
            return decided(Intent::Chatter, RULE_LONG_TEXT);
        }
        let hits = self.set.matches(&norm);
        // The exclusions are looked at once, if a rule that has some matched.
        let excluded = std::cell::OnceCell::new();
        let verdict = hits
            .matched_any()
            .then(|| {
                self.rules.iter().find(|rule| {
                    rule.patterns.clone().any(|i| hits.matched(i))
                        && !rule
                            .exclude
                            .clone()
                            .any(|i| excluded.get_or_init(|| self.excludes.matches(&norm)).matched(i))
                })
            })
            .flatten()
            .map(|rule| decided(rule.intent.clone(), &rule.name))
            .unwrap_or(Verdict { intent: Intent::Chatter, rule: None });
        // An officer's notice may quote anything; only their questions are answered.
        if context.from_officer
            && !matches!(verdict.intent, Intent::ContactQuery | Intent::StatusQuery | Intent::Chatter)
        {
            return decided(Intent::Chatter, RULE_OFFICER);
        }
        verdict
    }
}

/// Replaces each `{{name}}` with the fragment `(?:…)` of `[defs]`.
fn expand(pattern: &str, defs: &std::collections::BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let j = after.find("}}").ok_or("an opening {{ has no closing }}")?;
        let name = after[..j].trim();
        let def = defs
            .get(name)
            .ok_or_else(|| format!("{{{{{name}}}}} is not defined in [defs]; define it or fix the name"))?;
        out.push_str("(?:");
        out.push_str(def);
        out.push(')');
        rest = &after[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_intent(spec: &RuleSpec) -> Result<Intent, String> {
    let extra = |field: &str, value: &Option<String>| match value {
        Some(_) => Err(format!("intent {:?} takes no {field}; remove it", spec.intent)),
        None => Ok(()),
    };
    let only = |allowed: &str| -> Result<(), String> {
        for (field, value) in [("kind", &spec.kind), ("category", &spec.category), ("topic", &spec.topic)] {
            if field != allowed {
                extra(field, value)?;
            }
        }
        Ok(())
    };
    match spec.intent.as_str() {
        "emergency" => {
            only("kind")?;
            spec.kind
                .as_deref()
                .and_then(EmergencyKind::parse)
                .map(Intent::Emergency)
                .ok_or_else(|| "intent \"emergency\" needs kind = police, fire, medical or traffic".to_string())
        }
        "tip" => {
            only("category")?;
            spec.category.as_deref().and_then(TipCategory::parse).map(Intent::Tip).ok_or_else(|| {
                "intent \"tip\" needs category = theft, fraud, dispute, hazard, suspicious, drugs, gambling or other"
                    .to_string()
            })
        }
        "non_police" => {
            only("topic")?;
            match spec.topic.as_deref() {
                Some(t) if !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                    Ok(Intent::NonPolice(Arc::from(t)))
                }
                _ => {
                    Err("intent \"non_police\" needs a topic code in lower-case letters (e.g. topic = \"streetlight\")"
                        .to_string())
                }
            }
        }
        "contact_query" | "status_query" | "chatter" => {
            only("")?;
            Ok(match spec.intent.as_str() {
                "contact_query" => Intent::ContactQuery,
                "status_query" => Intent::StatusQuery,
                _ => Intent::Chatter,
            })
        }
        other => Err(format!(
            "intent {other:?} is not known; use emergency, contact_query, tip, non_police, status_query or chatter"
        )),
    }
}

/// The text the patterns see: full-width forms made half-width, traditional characters made
/// simplified (OpenCC's dictionaries), ASCII lower-cased, everything that is not a letter or
/// a digit dropped (spaces, punctuation and emoji, also inside words: "诈 骗", "打-架"), and
/// runs of one character cut to two ("快快快来人啊啊啊" → "快快来人啊啊"; digits are kept).
pub fn normalise(text: &str) -> String {
    let half: String = text
        .chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect();
    let simplified = hanconv::t2s(&half);
    let mut out = String::with_capacity(simplified.len());
    let (mut last, mut run) = ('\0', 0);
    for c in simplified.chars().filter(|c| c.is_alphanumeric()).map(|c| c.to_ascii_lowercase()) {
        run = if c == last { run + 1 } else { 1 };
        last = c;
        if run <= 2 || c.is_ascii_digit() {
            out.push(c);
        }
    }
    out
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
    fn a_bad_pattern_names_the_file_the_line_and_the_rule() {
        let raw = "[[rules]]\nname='x'\nintent='contact_query'\npatterns=[\n 'ok',\n '(unclosed',\n]\n";
        let msg = format!("{:#}", Triage::parse(raw, "intents.toml").unwrap_err());
        assert!(msg.starts_with("intents.toml:6: rule \"x\", pattern 2"), "{msg}");
        assert!(msg.contains("unclosed group"), "{msg}");
    }

    #[test]
    fn named_fragments_are_expanded_and_an_unknown_one_is_named() {
        let raw = "[defs]\nneg='(不是|没有)'\n[[rules]]\nname='x'\nintent='emergency'\nkind='fire'\npatterns=['着火']\nexclude=['{{neg}}着火']\nexamples=['着火了']\ncounter_examples=['没有着火']\n";
        assert!(Triage::parse(raw, "f").is_ok());
        let err = Triage::parse(&raw.replace("{{neg}}", "{{nope}}"), "f").unwrap_err();
        assert!(err.to_string().contains("{{nope}} is not defined"), "{err}");
    }

    #[test]
    fn a_rule_that_misses_its_own_example_is_refused_at_load() {
        let raw = "[[rules]]\nname='x'\nintent='contact_query'\npatterns=['电话']\nexamples=['你好']\n";
        let err = Triage::parse(raw, "f").unwrap_err();
        assert!(err.to_string().contains("its example \"你好\""), "{err}");
    }

    #[test]
    fn a_rule_that_takes_its_counter_example_is_refused_at_load() {
        let raw = "[[rules]]\nname='x'\nintent='contact_query'\npatterns=['电话']\ncounter_examples=['电话费多少']\n";
        let err = Triage::parse(raw, "f").unwrap_err();
        assert!(err.to_string().contains("counter-example"), "{err}");
    }

    #[test]
    fn a_tip_rule_without_a_known_category_is_refused() {
        let raw = "[[rules]]\nname='t'\nintent='tip'\ncategory='arson'\npatterns=['x']\n";
        let err = Triage::parse(raw, "f").unwrap_err();
        assert!(err.to_string().contains("needs category"), "{err}");
    }

    #[test]
    fn full_width_traditional_spaced_and_repeated_text_is_normalised() {
        assert_eq!(normalise("ＡＢＣ　民警電話"), "abc民警电话");
        assert_eq!(normalise("诈 骗!! 打-架🔥"), "诈骗打架");
        assert_eq!(normalise("快快快来人啊啊啊啊 110"), "快快来人啊啊110");
        assert_eq!(normalise("有人在打架快報警"), "有人在打架快报警");
    }

    #[test]
    fn forwarded_and_officers_messages_are_not_reports() {
        let t = shipped();
        let fire = "村东头麦秸垛着火了";
        assert!(matches!(t.classify(fire).intent, Intent::Emergency(EmergencyKind::Fire)));
        let fwd = t.classify_in(fire, Context { forwarded: true, ..Context::default() });
        assert_eq!((fwd.intent, fwd.rule.as_deref()), (Intent::Chatter, Some(RULE_FORWARDED)));
        let officer = t.classify_in(fire, Context { from_officer: true, ..Context::default() });
        assert_eq!((officer.intent, officer.rule.as_deref()), (Intent::Chatter, Some(RULE_OFFICER)));
        let question = t.classify_in("民警电话多少", Context { from_officer: true, ..Context::default() });
        assert_eq!(question.intent, Intent::ContactQuery);
    }

    #[test]
    fn the_verdict_as_json_names_the_detail_by_its_kind() {
        let v = Verdict { intent: Intent::Tip(TipCategory::Theft), rule: Some("tip.theft".into()) };
        assert_eq!(v.to_json().to_string(), r#"{"category":"theft","intent":"tip","rule":"tip.theft"}"#);
        let c = Verdict { intent: Intent::Chatter, rule: None };
        assert_eq!(c.to_json().to_string(), r#"{"intent":"chatter","rule":null}"#);
    }
}
