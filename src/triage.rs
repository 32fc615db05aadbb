//! Triage: what a plain-language message is — an emergency, a contact question, a tip, a
//! matter for the government hotline 12345, a question about an earlier report, or chatter.
//! Two layers decide, both the city's to change without a build:
//!
//! - [`rules`]: the ordered regex rules of `bot-config/intents.toml`, for what must never be
//!   missed and for precise exceptions;
//! - [`model`]: a classifier trained when the rules are loaded, from the labelled examples of
//!   `bot-config/triage-examples/*.tsv` (a city improves it by adding lines).
//!
//! Before both, the text is normalised ([`normalise`]: half-width, simplified, no
//! punctuation) and rewritten by the dialect table ([`dialect`]: 木有 → 没有, 叫人偷 → 被人偷).
//!
//! How the layers combine ([`Triage::classify_in`]), in this order:
//!
//! 1. Context: a forwarded message is chatter; so is a short private message that names a
//!    place and no rule takes (the resident is looking for their village). A message shorter
//!    than `[model] min_chars` is left to the rules: a few characters are too little evidence
//!    for the model.
//! 2. An emergency rule decides at once, unless the model is at least `[model] veto` sure
//!    that the message is chatter; so does a rule marked `before_model = true` (a precise
//!    exception a city wants kept whatever the model reads).
//! 3. Danger first: when the model gives emergencies together at least `[model] danger`, the
//!    message is an emergency (its most probable kind). A false alarm costs a line; a miss can
//!    cost a life.
//! 4. A probable tip is a tip: when the tip labels together reach `[model] tip_floor`, even
//!    if another intent is more probable (in a group the answer is one short line with the
//!    private-report button, and nothing is stored from the group text).
//! 5. The model decides when its most probable intent reaches that intent's threshold in
//!    `[model.confidence]`.
//! 6. Otherwise the rules: a long group text with no urgent words is an article (chatter),
//!    else the first rule that matches, else chatter.
//!
//! Then an officer's own message is never an emergency, tip or 12345 matter, and inside a tip
//! conversation the text is a detail of the tip: only an emergency rule still answers with
//! the emergency numbers there, and a fraud that already happened is not a new emergency.
//! Each [`Verdict`] says which layer decided and how sure the model was.

pub mod corpus;
pub mod dialect;
pub mod model;
pub mod rules;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use serde::Deserialize;
use toml::Spanned;

use dialect::Dialect;
use model::{Model, ModelKind, Training};
use rules::Rules;

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
    /// Written by a resident in the middle of a tip conversation: what they tell is a detail
    /// of the tip (a fraud that already happened is not a new emergency).
    pub in_tip: bool,
}

/// Why a message was taken as chatter before any rule was tried.
pub const RULE_FORWARDED: &str = "context.forwarded";
pub const RULE_OFFICER: &str = "context.officer";
pub const RULE_LONG_TEXT: &str = "context.long_text";
/// A fraud told inside a tip conversation: the tip's detail.
pub const RULE_IN_TIP: &str = "context.in_tip";
/// A short private message that names a place ("前店村"): the resident is looking for their
/// village, not reporting.
pub const RULE_PLACE: &str = "context.place";

/// Which layer of triage decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// What is known besides the text: forwarded, an officer's message, a long article.
    Context,
    /// A regex rule of `intents.toml`.
    Rule,
    /// The classifier trained from `triage-examples/`.
    Model,
    /// Nothing took the message: chatter by default.
    Default,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Context => "context",
            Layer::Rule => "rule",
            Layer::Model => "model",
            Layer::Default => "default",
        }
    }
}

/// The outcome of triage: the intent, the layer and rule that decided it, and how sure the
/// model was.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub intent: Intent,
    /// The rule that decided (or the context reason); `None` when the model decided or
    /// nothing took the message.
    pub rule: Option<String>,
    pub layer: Layer,
    /// The model's probability of the verdict's intent (absent without a model).
    pub confidence: Option<f32>,
}

impl Verdict {
    fn new(intent: Intent, layer: Layer, rule: Option<&str>, confidence: Option<f32>) -> Verdict {
        Verdict { intent, rule: rule.map(str::to_string), layer, confidence }
    }

    /// One JSON object: `{"intent": …, "kind"|"category"|"topic": …, "layer": …, "rule": …,
    /// "confidence": …}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v =
            serde_json::json!({ "intent": self.intent.as_str(), "layer": self.layer.as_str(), "rule": self.rule });
        if let Some(c) = self.confidence {
            v["confidence"] = serde_json::Value::from((f64::from(c) * 1000.0).round() / 1000.0);
        }
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

/// `[model]` of `intents.toml`: the statistical layer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModelSpec {
    /// The folder of labelled examples, relative to `intents.toml`.
    examples: Spanned<String>,
    /// `logistic` or `naive_bayes`.
    #[serde(default = "default_kind")]
    kind: ModelKind,
    #[serde(default)]
    epochs: Option<usize>,
    #[serde(default)]
    learning_rate: Option<f32>,
    #[serde(default)]
    l2: Option<f32>,
    #[serde(default)]
    alpha: Option<f32>,
    #[serde(default)]
    temper: Option<f32>,
    /// The summed probability of the emergency labels at which a message is an emergency.
    danger: f32,
    /// The probability of chatter at which the model overrules an emergency rule (1.0: never).
    #[serde(default = "one")]
    veto: f32,
    /// The summed probability of the tip labels at which a message is a tip even when another
    /// intent is more probable: in a group the private-report button is one short line.
    #[serde(default = "above_one")]
    tip_floor: f32,
    /// Messages shorter than this (normalised characters) are left to the rules.
    #[serde(default)]
    min_chars: usize,
    /// Per intent: the probability at which the model's intent decides.
    confidence: ConfidenceSpec,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfidenceSpec {
    contact_query: f32,
    tip: f32,
    non_police: f32,
    status_query: f32,
    chatter: f32,
}

fn default_kind() -> ModelKind {
    ModelKind::Logistic
}

fn one() -> f32 {
    1.0
}

/// A threshold no probability reaches: the step is off.
fn above_one() -> f32 {
    1.01
}

/// How the model's probabilities are used (see the module's docs).
#[derive(Debug, Clone, Copy)]
struct Policy {
    danger: f32,
    veto: f32,
    tip_floor: f32,
    min_chars: usize,
    confidence: ConfidenceSpec,
}

impl Policy {
    fn threshold(&self, intent: &str) -> f32 {
        match intent {
            "contact_query" => self.confidence.contact_query,
            "tip" => self.confidence.tip,
            "non_police" => self.confidence.non_police,
            "status_query" => self.confidence.status_query,
            "chatter" => self.confidence.chatter,
            _ => self.danger,
        }
    }
}

/// How [`Triage::load_as`] treats `[model]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    /// The rules alone.
    pub without_model: bool,
    /// Another learner than `[model] kind`.
    pub learner: Option<ModelKind>,
}

/// A private message this short (normalised characters) that contains a place hint is a
/// village name.
const PLACE_CHARS: usize = 8;

/// The topic of a 12345 matter the model found and no rule named.
const GENERAL_TOPIC: &str = "services";

/// Triage: the rules, the dialect table and the model, loaded together.
#[derive(Debug)]
pub struct Triage {
    rules: Rules,
    dialect: Dialect,
    model: Option<(Arc<Model>, Policy)>,
    /// Where the model's examples were read from.
    examples_dir: Option<std::path::PathBuf>,
}

impl Triage {
    /// Reads and checks the rules file, its dialect table and examples, and trains the
    /// model. Errors start with `FILE:LINE:`.
    pub fn load(path: &Path) -> anyhow::Result<Triage> {
        Self::load_as(path, Load::default())
    }

    /// [`Triage::load`] with the model left out or trained by another learner (to compare
    /// them on a held-out set).
    pub fn load_as(path: &Path, how: Load) -> anyhow::Result<Triage> {
        let raw = std::fs::read_to_string(path)
            .with_context(|| format!("Failed to read the triage rules {}", path.display()))?;
        Self::parse_with(&raw, &path.display().to_string(), path.parent(), how)
    }

    /// Parses rules given as text; `source` names them in errors. Files named by the rules
    /// (`dialect`, `[model] examples`) need [`Triage::parse_at`].
    pub fn parse(raw: &str, source: &str) -> anyhow::Result<Triage> {
        Self::parse_at(raw, source, None)
    }

    /// Parses rules given as text, with the folder that relative paths start from.
    pub fn parse_at(raw: &str, source: &str, base: Option<&Path>) -> anyhow::Result<Triage> {
        Self::parse_with(raw, source, base, Load::default())
    }

    fn parse_with(raw: &str, source: &str, base: Option<&Path>, how: Load) -> anyhow::Result<Triage> {
        let (rules, file) = Rules::compile(raw, source)?;
        let resolve = |p: &Spanned<String>, what: &str| -> anyhow::Result<std::path::PathBuf> {
            let path = Path::new(p.get_ref());
            match (path.is_relative(), base) {
                (false, _) => Ok(path.to_path_buf()),
                (true, Some(base)) => Ok(base.join(path)),
                (true, None) => Err(anyhow!(
                    "{source}:{}: {what} {:?} is relative, but the rules were not read from a file",
                    rules::line_of(raw, p.span().start),
                    p.get_ref()
                )),
            }
        };
        let dialect = match &file.dialect {
            Some(p) => Dialect::load(&resolve(p, "the dialect table")?)
                .map_err(|e| anyhow!("{e:#}\n(named by {source}:{})", rules::line_of(raw, p.span().start)))?,
            None => Dialect::empty(),
        };
        let mut triage = Triage { rules, dialect, model: None, examples_dir: None };
        // Every rule's examples are its own, and none of its counter-examples are.
        for spec in &file.rules {
            let name = spec.name.get_ref();
            let at = rules::line_of(raw, spec.name.span().start);
            for ex in &spec.examples {
                let v = triage.rules_verdict(&triage.rewrite(ex), Context::default());
                if v.rule.as_deref() != Some(name.as_str()) {
                    return Err(anyhow!(
                        "{source}:{at}: rule {name:?}: its example {ex:?} is classified as {} by rule {:?}; fix the patterns or the example",
                        v.intent,
                        v.rule.as_deref().unwrap_or("(none)")
                    ));
                }
            }
            for ex in &spec.counter_examples {
                if triage.rules_verdict(&triage.rewrite(ex), Context::default()).rule.as_deref() == Some(name.as_str())
                {
                    return Err(anyhow!(
                        "{source}:{at}: rule {name:?}: its counter-example {ex:?} is taken by the rule; add an exclusion or fix the counter-example"
                    ));
                }
            }
        }
        if let Some(spec) = file.model.as_ref().filter(|_| !how.without_model) {
            let line = rules::line_of(raw, spec.examples.span().start);
            let dir = resolve(&spec.examples, "the examples folder")?;
            let samples =
                corpus::read_dir(&dir).map_err(|e| anyhow!("{e:#}\n(the examples folder named by {source}:{line})"))?;
            if samples.is_empty() {
                return Err(anyhow!(
                    "{source}:{line}: the examples folder {} has no labelled lines; add *.tsv files or remove [model]",
                    dir.display()
                ));
            }
            let policy = Policy {
                danger: spec.danger,
                veto: spec.veto,
                tip_floor: spec.tip_floor,
                min_chars: spec.min_chars,
                confidence: spec.confidence,
            };
            let mut training = spec.training();
            if let Some(kind) = how.learner {
                training.kind = kind;
            }
            triage.model = Some((triage.train(&samples, training), policy));
            triage.examples_dir = Some(dir);
        }
        Ok(triage)
    }

    /// Trains the model on examples, with this triage's normalisation and dialect.
    pub fn train(&self, samples: &[corpus::Sample], training: Training) -> Arc<Model> {
        Model::train_cached(samples, training, &|t| self.rewrite(t))
    }

    /// The same rules and dialect with another model (or none): cross-validation trains one
    /// per fold.
    pub fn with_model(&self, model: Option<Arc<Model>>) -> anyhow::Result<Triage> {
        let policy = self.model.as_ref().map(|(_, p)| *p);
        let model = match (model, policy) {
            (Some(m), Some(p)) => Some((m, p)),
            (None, _) => None,
            (Some(_), None) => return Err(anyhow!("the rules have no [model] section with thresholds")),
        };
        Ok(Triage {
            rules: self.rules.clone(),
            dialect: self.dialect.clone(),
            model,
            examples_dir: self.examples_dir.clone(),
        })
    }

    /// The learner's settings of `[model]`, if the rules have a model.
    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref().map(|(m, _)| m.as_ref())
    }

    /// How many rules there are.
    pub fn rule_count(&self) -> usize {
        self.rules.rule_count()
    }

    /// The folder the model's examples were read from.
    pub fn examples_dir(&self) -> Option<&Path> {
        self.examples_dir.as_deref()
    }

    /// What is in force, for the logs: rules, dialect entries, examples.
    pub fn describe(&self) -> String {
        let model = match self.model() {
            Some(m) => format!("a {:?} model from {} examples", m.kind(), m.examples()),
            None => "no model".to_string(),
        };
        format!("{} rules, {} dialect words, {model}", self.rules.rule_count(), self.dialect.len())
    }

    /// Whether a short private message looks like the name of a village.
    pub fn looks_like_a_place(&self, text: &str) -> bool {
        self.rules.looks_like_a_place(text)
    }

    /// A question the rules recognise, for the demo's banner.
    pub fn first_example(&self) -> Option<&str> {
        self.rules.first_example()
    }

    /// The text both layers see: normalised, then the dialect table.
    pub fn rewrite(&self, text: &str) -> String {
        self.dialect.apply(&normalise(text))
    }

    /// Classifies one message with no context (as if a resident wrote it in a group).
    pub fn classify(&self, text: &str) -> Verdict {
        self.classify_in(text, Context::default())
    }

    /// Classifies one message (the module's docs say how the layers combine).
    pub fn classify_in(&self, text: &str, context: Context) -> Verdict {
        if context.forwarded {
            return Verdict::new(Intent::Chatter, Layer::Context, Some(RULE_FORWARDED), None);
        }
        let norm = self.rewrite(text);
        let mut verdict = self.decide(&norm, context);
        // An officer's notice may quote anything; only their questions are answered.
        if context.from_officer
            && !matches!(verdict.intent, Intent::ContactQuery | Intent::StatusQuery | Intent::Chatter)
        {
            return Verdict::new(Intent::Chatter, Layer::Context, Some(RULE_OFFICER), None);
        }
        // In a tip conversation the text is a detail of the tip the resident chose to file:
        // only the rules (what must never be missed) still answer an emergency there, and a
        // fraud told as one is the tip's detail.
        if context.in_tip && matches!(verdict.intent, Intent::Emergency(_)) && verdict.layer == Layer::Model {
            return Verdict::new(
                Intent::Tip(TipCategory::Other),
                Layer::Context,
                Some(RULE_IN_TIP),
                verdict.confidence,
            );
        }
        if context.in_tip && verdict.intent == Intent::Emergency(EmergencyKind::Police) {
            let not_emergency = |i: &Intent| matches!(i, Intent::Emergency(_));
            let rule_reading = self.rules.first_match(&norm, &not_emergency).map(|(i, _, _)| i.clone());
            // The model's reading counts when it would decide on its own (its tip threshold).
            let model_reading = self
                .model
                .as_ref()
                .and_then(|(m, policy)| {
                    m.scores(&norm).best_except("emergency").filter(|(_, p)| *p >= policy.threshold("tip"))
                })
                .map(|(i, _)| i);
            let fraud = Intent::Tip(TipCategory::Fraud);
            if rule_reading.as_ref() == Some(&fraud) || model_reading.as_ref() == Some(&fraud) {
                verdict = Verdict::new(fraud, Layer::Context, Some(RULE_IN_TIP), verdict.confidence);
            }
        }
        verdict
    }

    /// The rules alone on a rewritten text.
    fn rules_verdict(&self, norm: &str, context: Context) -> Verdict {
        self.rules_reading(norm, context).0
    }

    /// The rules' verdict, and whether it decides before the model.
    fn rules_reading(&self, norm: &str, context: Context) -> (Verdict, bool) {
        if self.rules.is_long_text(norm, context) {
            return (Verdict::new(Intent::Chatter, Layer::Context, Some(RULE_LONG_TEXT), None), false);
        }
        match self.rules.first_match(norm, &|_| false) {
            Some((intent, name, first)) => (Verdict::new(intent.clone(), Layer::Rule, Some(name), None), first),
            None => (Verdict::new(Intent::Chatter, Layer::Default, None, None), false),
        }
    }

    /// Steps 2–6 of the module's docs.
    fn decide(&self, norm: &str, context: Context) -> Verdict {
        let (by_rules, first) = self.rules_reading(norm, context);
        let short = norm.chars().count() <= PLACE_CHARS;
        if context.private && short && by_rules.layer == Layer::Default && self.rules.looks_like_a_place(norm) {
            return Verdict::new(Intent::Chatter, Layer::Context, Some(RULE_PLACE), None);
        }
        let Some((model, policy)) = &self.model else { return by_rules };
        // A few characters are too little evidence for the model ("火星村" is not a fire).
        if norm.chars().count() < policy.min_chars {
            return by_rules;
        }
        let scores = model.scores(norm);
        let sure = |v: Verdict| {
            let p = scores.intent_prob(v.intent.as_str());
            Verdict { confidence: Some(p), ..v }
        };
        match by_rules.intent {
            Intent::Emergency(_) if scores.intent_prob("chatter") < policy.veto => return sure(by_rules),
            Intent::Emergency(_) => {}
            _ if first => return sure(by_rules),
            _ => {}
        }
        let danger = scores.intent_prob("emergency");
        if danger >= policy.danger
            && let Some((kind, _)) = scores.best_of("emergency")
        {
            return Verdict::new(kind, Layer::Model, None, Some(danger));
        }
        let tips = scores.intent_prob("tip");
        if tips >= policy.tip_floor
            && let Some((category, _)) = scores.best_of("tip")
        {
            return Verdict::new(category, Layer::Model, None, Some(tips));
        }
        let (best, p) = scores.best_intent();
        if best != "emergency" && p >= policy.threshold(best) {
            let intent = match best {
                "non_police" => match &by_rules.intent {
                    Intent::NonPolice(topic) => Intent::NonPolice(topic.clone()),
                    _ => Intent::NonPolice(Arc::from(GENERAL_TOPIC)),
                },
                _ => match scores.best_of(best) {
                    Some((intent, _)) => intent,
                    None => return sure(by_rules),
                },
            };
            return Verdict::new(intent, Layer::Model, None, Some(p));
        }
        sure(by_rules)
    }
}

impl ModelSpec {
    fn training(&self) -> Training {
        let d = Training { kind: self.kind, ..Training::default() };
        Training {
            kind: self.kind,
            epochs: self.epochs.unwrap_or(d.epochs),
            learning_rate: self.learning_rate.unwrap_or(d.learning_rate),
            l2: self.l2.unwrap_or(d.l2),
            alpha: self.alpha.unwrap_or(d.alpha),
            temper: self.temper.unwrap_or(d.temper),
        }
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

    /// Rules with a model trained on a few lines, in a folder of their own.
    fn two_layers(rules: &str, examples: &str, confidence: f32, danger: f32) -> Triage {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ex")).unwrap();
        std::fs::write(dir.path().join("ex/a.tsv"), examples).unwrap();
        std::fs::write(dir.path().join("dialect.toml"), "words = [[\"木有\", \"没有\"], [\"叫人\", \"被人\"]]")
            .unwrap();
        let c = confidence;
        let raw = format!(
            "dialect = 'dialect.toml'\n[model]\nexamples = 'ex'\nkind = 'naive_bayes'\ndanger = {danger}\n\
             [model.confidence]\ncontact_query = {c}\ntip = {c}\nnon_police = {c}\nstatus_query = {c}\nchatter = {c}\n{rules}"
        );
        std::fs::write(dir.path().join("intents.toml"), raw).unwrap();
        Triage::load(&dir.path().join("intents.toml")).unwrap()
    }

    const FEW: &str = "chatter\t-\t今天天气好\nchatter\t-\t热得要着火了\nchatter\t-\t热死了要着火了\nchatter\t-\t大家早上好\n\
                       tip/theft\t-\t俺家羊被偷了\ntip/theft\t-\t电动车被偷了\ntip/fraud\t-\t有人打电话骗钱\ntip/fraud\t-\t被骗了钱\n\
                       emergency/medical\t-\t老人倒地上不动了\nemergency/medical\t-\t人倒了不动了叫不醒\n";

    #[test]
    fn an_emergency_rule_decides_even_when_the_model_reads_chatter() {
        let rules = "[[rules]]\nname = 'fire'\nintent = 'emergency'\nkind = 'fire'\npatterns = ['着火']\n";
        let t = two_layers(rules, FEW, 0.5, 0.9);
        let v = t.classify("热得要着火了");
        assert_eq!((v.intent, v.layer), (Intent::Emergency(EmergencyKind::Fire), Layer::Rule));
        assert!(v.confidence.is_some(), "the model's view is reported beside the rule");
    }

    #[test]
    fn a_message_the_model_puts_near_emergency_is_answered_as_one() {
        let t = two_layers("[[rules]]\nname = 'x'\nintent = 'chatter'\npatterns = ['^$']\n", FEW, 0.5, 0.2);
        let v = t.classify("村口那个老人倒在地上一动不动");
        assert_eq!((&v.intent, v.layer), (&Intent::Emergency(EmergencyKind::Medical), Layer::Model), "{v:?}");
        // The same model with a danger threshold no message reaches leaves it to the others.
        let calm = two_layers("[[rules]]\nname = 'x'\nintent = 'chatter'\npatterns = ['^$']\n", FEW, 0.5, 1.01);
        assert!(!matches!(calm.classify("村口那个老人倒在地上一动不动").intent, Intent::Emergency(_)));
    }

    #[test]
    fn the_model_decides_when_sure_and_the_rules_otherwise() {
        let rules = "[[rules]]\nname = 'tip.any'\nintent = 'tip'\ncategory = 'other'\npatterns = ['钱']\n";
        let sure = two_layers(rules, FEW, 0.3, 1.01);
        let v = sure.classify("俺家电动车叫人偷了");
        assert_eq!((&v.intent, v.layer), (&Intent::Tip(TipCategory::Theft), Layer::Model), "{v:?}");
        let unsure = two_layers(rules, FEW, 1.01, 1.01);
        let v = unsure.classify("有人骗钱");
        assert_eq!(
            (v.intent, v.layer, v.rule.as_deref()),
            (Intent::Tip(TipCategory::Other), Layer::Rule, Some("tip.any"))
        );
        assert_eq!(unsure.classify("俺家电动车叫人偷了").layer, Layer::Default);
    }

    #[test]
    fn dialect_is_rewritten_before_the_rules_see_it() {
        let rules = "[[rules]]\nname = 'gone'\nintent = 'emergency'\nkind = 'police'\npatterns = ['孩子没有回来']\n";
        let t = two_layers(rules, FEW, 0.5, 1.01);
        assert_eq!(t.classify("俺家孩子木有回来").rule.as_deref(), Some("gone"));
        assert_eq!(t.rewrite("羊叫人偷了"), "羊被人偷了");
    }

    #[test]
    fn inside_a_tip_conversation_a_fraud_already_done_is_a_detail_not_an_emergency() {
        let rules = "[[rules]]\nname = 'fraud_now'\nintent = 'emergency'\nkind = 'police'\npatterns = ['被骗']\n\
                     [[rules]]\nname = 'tip.fraud'\nintent = 'tip'\ncategory = 'fraud'\npatterns = ['骗']\n\
                     [[rules]]\nname = 'fight'\nintent = 'emergency'\nkind = 'police'\npatterns = ['打人']\n";
        let t = two_layers(rules, FEW, 1.01, 1.01);
        let in_tip = Context { private: true, in_tip: true, ..Context::default() };
        assert_eq!(t.classify("我刚被骗了三万").intent, Intent::Emergency(EmergencyKind::Police));
        let v = t.classify_in("我刚被骗了三万", in_tip);
        assert_eq!((v.intent, v.rule.as_deref()), (Intent::Tip(TipCategory::Fraud), Some(RULE_IN_TIP)));
        assert_eq!(t.classify_in("有人在门口打人", in_tip).intent, Intent::Emergency(EmergencyKind::Police));
    }

    #[test]
    fn a_missing_examples_folder_names_the_rules_line_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let raw = "[model]\nexamples = 'nowhere'\ndanger = 0.3\n[model.confidence]\ncontact_query = 0.5\ntip = 0.5\nnon_police = 0.5\nstatus_query = 0.5\nchatter = 0.5\n\
                   [[rules]]\nname = 'x'\nintent = 'chatter'\npatterns = ['^$']\n";
        std::fs::write(dir.path().join("intents.toml"), raw).unwrap();
        let err = format!("{:#}", Triage::load(&dir.path().join("intents.toml")).unwrap_err());
        assert!(err.contains("create it or fix the path") && err.contains("intents.toml:2"), "{err}");
        std::fs::create_dir(dir.path().join("nowhere")).unwrap();
        let err = format!("{:#}", Triage::load(&dir.path().join("intents.toml")).unwrap_err());
        assert!(err.contains("has no labelled lines"), "{err}");
        std::fs::write(dir.path().join("nowhere/a.tsv"), "tip/theft\t-\t偷了\ncontact_query\t-\n").unwrap();
        let err = format!("{:#}", Triage::load(&dir.path().join("intents.toml")).unwrap_err());
        assert!(err.contains("a.tsv:2: expected 3 tab-separated fields"), "{err}");
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
        let v = Verdict::new(Intent::Tip(TipCategory::Theft), Layer::Rule, Some("tip.theft"), None);
        assert_eq!(v.to_json().to_string(), r#"{"category":"theft","intent":"tip","layer":"rule","rule":"tip.theft"}"#);
        let c = Verdict::new(Intent::Chatter, Layer::Model, None, Some(0.87654));
        assert_eq!(c.to_json().to_string(), r#"{"confidence":0.877,"intent":"chatter","layer":"model","rule":null}"#);
    }
}
