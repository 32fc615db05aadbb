//! The first layer of triage: the ordered regex rules of `bot-config/intents.toml`, for what
//! must never be missed and for precise exceptions. A city tunes them without a new build.
//!
//! The first rule (in file order) with a matching pattern and no matching exclusion decides.
//! Matching is two steps, so that a message the daemon has never seen costs microseconds:
//! one Aho-Corasick pass finds the literals that each pattern must start and end with (taken
//! from the patterns at load by `regex-syntax`), and only the rules with a pattern whose
//! literals both occur run their own regex (all of a rule's patterns in one), tried anchored
//! where its first literal was found ([`Matcher`]). A single `RegexSet` of every pattern
//! did the same in one pass, but its lazy DFA built new states for almost every new message
//! (p99 1.8 ms on the held-out corpus; BENCHMARKS.md). Loading checks everything a city could
//! get wrong: a bad regex is reported with the file, the line, the rule and the position in
//! the pattern.

use std::sync::Arc;

use aho_corasick::AhoCorasick;
use anyhow::{Context as _, anyhow};
use regex::Regex;
use regex_automata::{Anchored, Input, meta};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use serde::Deserialize;
use toml::Spanned;

use super::{Context, EmergencyKind, Intent, ModelSpec, TipCategory};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RulesFile {
    /// The statistical layer: where its examples and the dialect table are, its learner
    /// and its thresholds.
    #[serde(default)]
    pub(super) model: Option<ModelSpec>,
    /// The dialect table, relative to this file.
    #[serde(default)]
    pub(super) dialect: Option<Spanned<String>>,
    #[serde(default)]
    place_hints: Vec<String>,
    /// Named fragments that patterns use as `{{name}}`.
    #[serde(default)]
    defs: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    long_text: Option<LongTextSpec>,
    pub(super) rules: Vec<RuleSpec>,
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
pub(super) struct RuleSpec {
    pub(super) name: Spanned<String>,
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
    pub(super) examples: Vec<String>,
    #[serde(default)]
    pub(super) counter_examples: Vec<String>,
    /// The rule decides before the model (a precise exception the city wants kept whatever
    /// the model reads); emergency rules always do.
    #[serde(default)]
    before_model: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    intent: Intent,
    before_model: bool,
    /// All of the rule's patterns in one.
    matcher: Matcher,
    /// All of its exclusions in one.
    exclude: Option<Matcher>,
    /// Whether a pattern has no literal to look for first, so the rule always runs.
    unfiltered: bool,
}

#[derive(Debug, Clone)]
struct LongText {
    min_chars: usize,
    urgent: Option<Matcher>,
}

/// The compiled rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The literals every match of a pattern starts with, and those it ends with, of all the
    /// rules.
    prefilter: AhoCorasick,
    /// For each literal of the prefilter, its pattern and whether it is an ending.
    literal_of: Vec<(usize, bool)>,
    /// For each pattern: its rule, and whether it has start and ending literals to look for.
    gates: Vec<Gate>,
    rules: Vec<Rule>,
    long_text: Option<LongText>,
    /// Words that make a short private message look like a village name.
    place_hints: Vec<String>,
    /// The first example of the first contact rule: what the demo suggests asking.
    first_example: Option<String>,
}

/// What a pattern needs to find in a text before its regex is worth running.
#[derive(Debug, Clone, Copy)]
struct Gate {
    rule: usize,
    /// Bit 1: one of its start literals; bit 2: one of its ending literals.
    needs: u8,
}

/// 1-based line of a byte offset.
pub(super) fn line_of(raw: &str, offset: usize) -> usize {
    raw[..offset.min(raw.len())].matches('\n').count() + 1
}

impl Rules {
    /// Parses and compiles the rules of a file given as text; `source` names it in errors.
    /// The rules' examples are checked by the caller, once the dialect table is known.
    pub(super) fn compile(raw: &str, source: &str) -> anyhow::Result<(Rules, RulesFile)> {
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
        let mut literals: Vec<Vec<u8>> = Vec::new();
        let mut literal_of = Vec::new();
        let mut gates = Vec::new();
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
            let mut patterns = Vec::new();
            let mut unfiltered = false;
            for (i, p) in spec.patterns.iter().enumerate() {
                let expanded = compile(&format!("pattern {}", i + 1), name, p)?.0;
                let mut needs = 0;
                for (bit, kind) in [(1, ExtractKind::Prefix), (2, ExtractKind::Suffix)] {
                    if let Some(found) = required_literals(&expanded, kind) {
                        literal_of.extend(std::iter::repeat_n((gates.len(), bit == 2), found.len()));
                        literals.extend(found);
                        needs |= bit;
                    }
                }
                unfiltered |= needs == 0;
                gates.push(Gate { rule: rules.len(), needs });
                patterns.push(expanded);
            }
            let mut excludes = Vec::new();
            for (i, p) in spec.exclude.iter().enumerate() {
                excludes.push(compile(&format!("exclusion {}", i + 1), name, p)?.0);
            }
            let matcher = join(&patterns)
                .with_context(|| format!("{source}:{at}: rule {name:?}: the patterns do not compile together"))?;
            let exclude = match excludes.is_empty() {
                true => None,
                false => Some(join(&excludes).with_context(|| {
                    format!("{source}:{at}: rule {name:?}: the exclusions do not compile together")
                })?),
            };
            let before_model = spec.before_model || matches!(intent, Intent::Emergency(_));
            rules.push(Rule { name: name.clone(), intent, before_model, matcher, exclude, unfiltered });
        }
        let prefilter = AhoCorasick::new(&literals).context("the rules' literals do not compile")?;
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
                        Some(Matcher::new(&joined.join("|"))?)
                    }
                };
                Some(LongText { min_chars: spec.min_chars, urgent })
            }
            None => None,
        };
        let first_example =
            file.rules.iter().filter(|r| r.intent == "contact_query").find_map(|r| r.examples.first()).cloned();
        let place_hints = file.place_hints.clone();
        Ok((Rules { prefilter, literal_of, gates, rules, long_text, place_hints, first_example }, file))
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

    /// Whether a group message this long (normalised) with no urgent words reads as an
    /// article or a notice.
    pub(super) fn is_long_text(&self, norm: &str, context: Context) -> bool {
        self.long_text.as_ref().is_some_and(|long| {
            !context.private
                && norm.chars().count() >= long.min_chars
                && !long.urgent.as_ref().is_some_and(|u| u.is_match(norm))
        })
    }

    /// The first rule that takes a normalised text: its intent, its name and whether it
    /// decides before the model; `skip` leaves rules out by their intent.
    pub(super) fn first_match(&self, norm: &str, skip: &dyn Fn(&Intent) -> bool) -> Option<(&Intent, &str, bool)> {
        let mut found = vec![0u8; self.gates.len()];
        for hit in self.prefilter.find_overlapping_iter(norm) {
            let (pattern, ending) = self.literal_of[hit.pattern().as_usize()];
            found[pattern] |= if ending { 2 } else { 1 };
        }
        let mut candidate: Vec<bool> = self.rules.iter().map(|r| r.unfiltered).collect();
        for (gate, found) in self.gates.iter().zip(found) {
            if gate.needs != 0 && found & gate.needs == gate.needs {
                candidate[gate.rule] = true;
            }
        }
        self.rules
            .iter()
            .zip(candidate)
            .find(|(rule, candidate)| {
                *candidate
                    && !skip(&rule.intent)
                    && rule.matcher.is_match(norm)
                    && !rule.exclude.as_ref().is_some_and(|e| e.is_match(norm))
            })
            .map(|(rule, _)| (&rule.intent, rule.name.as_str(), rule.before_model))
    }
}

/// One matcher matching where any of `patterns` does.
fn join(patterns: &[String]) -> anyhow::Result<Matcher> {
    let joined: Vec<String> = patterns.iter().map(|p| format!("(?:{p})")).collect();
    Matcher::new(&joined.join("|"))
}

/// A compiled pattern (a rule's patterns, its exclusions, the urgent words).
///
/// When every match must begin with one of a few literals, an Aho-Corasick pass finds where
/// they occur and the regex is tried anchored there, by an engine that builds no states
/// (the bounded backtracker or the PikeVM over a short span). An unanchored search instead
/// runs a lazy DFA whose states remember every place a match might have begun: for patterns
/// with gaps (`(偷|盗).{0,8}(车|钱)`) a message the daemon has not seen needed many new
/// states, microseconds each (the rules' held-out p99 was 42–61 µs, now 17–20 µs;
/// BENCHMARKS.md).
#[derive(Debug, Clone)]
struct Matcher {
    regex: meta::Regex,
    /// The literals every match starts with; `None` when a match can start with anything.
    starts: Option<AhoCorasick>,
}

impl Matcher {
    fn new(pattern: &str) -> anyhow::Result<Matcher> {
        let starts = match required_literals(pattern, ExtractKind::Prefix) {
            Some(literals) => Some(AhoCorasick::new(literals)?),
            None => None,
        };
        let config = meta::Config::new().hybrid(starts.is_none()).dfa(false);
        let regex = meta::Builder::new().configure(config).build(pattern)?;
        Ok(Matcher { regex, starts })
    }

    /// Whether it matches somewhere in `text`.
    fn is_match(&self, text: &str) -> bool {
        let Some(starts) = &self.starts else { return self.regex.is_match(text) };
        let mut last = usize::MAX;
        starts.find_overlapping_iter(text).any(|hit| {
            let fresh = hit.start() != last;
            last = hit.start();
            fresh && self.regex.is_match(Input::new(text).range(hit.start()..).anchored(Anchored::Yes))
        })
    }
}

/// The literals that every match of a pattern starts with (`Prefix`) or ends with
/// (`Suffix`), one of them at least; `None` when a match can start (end) with anything.
fn required_literals(pattern: &str, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    let mut extractor = Extractor::new();
    extractor.kind(kind).limit_total(5_000).limit_class(16);
    let seq = extractor.extract(&hir);
    let literals = seq.literals()?;
    if literals.is_empty() || literals.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
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
