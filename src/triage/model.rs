//! The statistical layer of triage: a classifier trained at load time from the labelled
//! examples of `bot-config/triage-examples/`, so that a city improves triage by adding lines
//! to a file, with no build.
//!
//! Features are the character 1-, 2- and 3-grams of the normalised, dialect-rewritten text
//! (plus its first and last characters and a length bucket); long digit runs (phone numbers)
//! become one symbol, so an advertisement's number is a feature and not forty. Each feature
//! counts once per message. Two models are offered, chosen by `[model] kind` in
//! `intents.toml`; the README gives the held-out figures of both:
//!
//! - `logistic`: multinomial logistic regression, trained by stochastic gradient descent
//!   with a fixed seed (the same examples give the same model), on feature vectors scaled to
//!   unit length;
//! - `naive_bayes`: multinomial naive Bayes with Laplace smoothing, scores scaled by the
//!   number of features so that its probabilities are not all 0 or 1.
//!
//! The classes are the corpus labels (`emergency/fire`, `tip/theft`, `chatter` …); an
//! intent's probability is the sum over its labels.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::Intent;
use super::corpus::Sample;

/// Which learner `[model] kind` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Logistic,
    NaiveBayes,
}

/// The learner's settings (`[model]` in `intents.toml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    pub kind: ModelKind,
    /// Passes over the examples (logistic regression).
    pub epochs: usize,
    /// Step size at the first pass (logistic regression); it falls as 1/(1 + pass).
    pub learning_rate: f32,
    /// L2 penalty per step (logistic regression).
    pub l2: f32,
    /// Laplace smoothing (naive Bayes).
    pub alpha: f32,
    /// Naive Bayes adds one log-likelihood per feature as if the features were independent,
    /// which makes every posterior 0 or 1; the sum is divided by (number of known features) to
    /// this power (0: not tempered, 0.5: by its square root, 1: the mean).
    pub temper: f32,
}

impl Default for Training {
    fn default() -> Self {
        Training { kind: ModelKind::Logistic, epochs: 12, learning_rate: 0.5, l2: 1e-6, alpha: 0.2, temper: 0.5 }
    }
}

/// A trained classifier.
#[derive(Debug)]
pub struct Model {
    /// The intent of each class, in class order.
    classes: Vec<Intent>,
    /// Feature hash → row of `weights`, while training.
    rows: HashMap<u64, u32, Prehashed>,
    /// `rows.len() × classes.len()` weights, row-major; once trained, one row per slot of
    /// `slots`.
    weights: Vec<f32>,
    /// The trained model's features, open-addressed by their hash (0: an empty slot): a
    /// known feature costs two memory reads (its slot, its row of weights), an unknown one
    /// one, where a `HashMap` to a row index cost three and two. A message's features are
    /// new to the caches, so those reads are most of the model's time (BENCHMARKS.md).
    slots: Vec<u64>,
    /// How many distinct features it knows.
    features: usize,
    /// One bias (log prior for naive Bayes) per class.
    bias: Vec<f32>,
    kind: ModelKind,
    /// The settings it was trained with (cross-validation trains again with them).
    training: Training,
    /// How many examples it was trained on.
    examples: usize,
}

/// A model's reading of one message: the probability of every class.
#[derive(Debug, Clone)]
pub struct Scores<'m> {
    model: &'m Model,
    probs: Vec<f32>,
}

impl Scores<'_> {
    /// The probability that the message has this intent (any kind or category of it).
    pub fn intent_prob(&self, name: &str) -> f32 {
        self.model.classes.iter().zip(&self.probs).filter(|(c, _)| c.as_str() == name).map(|(_, p)| p).sum()
    }

    /// The most probable intent (summed over its labels) and its probability.
    pub fn best_intent(&self) -> (&'static str, f32) {
        let mut best = ("chatter", -1.0f32);
        for name in super::corpus::INTENTS {
            let p = self.intent_prob(name);
            if p > best.1 {
                best = (name, p);
            }
        }
        best
    }

    /// The most probable label of an intent: its kind or category.
    pub fn best_of(&self, name: &str) -> Option<(Intent, f32)> {
        self.model
            .classes
            .iter()
            .zip(&self.probs)
            .filter(|(c, _)| c.as_str() == name)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, p)| (c.clone(), *p))
    }

    /// The most probable label outside one intent.
    pub fn best_except(&self, name: &str) -> Option<(Intent, f32)> {
        self.model
            .classes
            .iter()
            .zip(&self.probs)
            .filter(|(c, _)| c.as_str() != name)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(c, p)| (c.clone(), *p))
    }
}

/// Hashes of a message's features, sorted and without repeats. `norm` is the normalised,
/// dialect-rewritten text.
pub fn features(norm: &str, out: &mut Vec<u64>) {
    out.clear();
    // Digit runs of five or more (phone numbers, accounts) become one symbol.
    let mut chars: Vec<char> = Vec::with_capacity(norm.len() / 2 + 2);
    let mut digits = 0;
    for c in norm.chars() {
        if c.is_ascii_digit() {
            digits += 1;
            chars.push(c);
            continue;
        }
        if digits >= 5 {
            chars.truncate(chars.len() - digits);
            chars.push('#');
        }
        digits = 0;
        chars.push(c);
    }
    if digits >= 5 {
        chars.truncate(chars.len() - digits);
        chars.push('#');
    }
    // A multiply-rotate mix per character (as rustc's FxHash) and a final avalanche: every
    // message makes a few hundred of these, and SipHash over a slice of chars cost more
    // than everything else in the model's reading (BENCHMARKS.md).
    let hash = |tag: u8, part: &[char]| {
        let mut h = u64::from(tag);
        for c in part {
            h = (h.rotate_left(5) ^ u64::from(*c)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        finish(h)
    };
    for n in 1..=3usize {
        for w in chars.windows(n) {
            out.push(hash(n as u8, w));
        }
    }
    if let (Some(first), Some(last)) = (chars.first(), chars.last()) {
        out.push(hash(b'^', &[*first]));
        out.push(hash(b'$', &[*last]));
    }
    let bucket = match chars.len() {
        0..=3 => 'a',
        4..=8 => 'b',
        9..=20 => 'c',
        21..=50 => 'd',
        _ => 'e',
    };
    out.push(hash(b'#', &[bucket]));
    out.sort_unstable();
    out.dedup();
}

/// The last step of the feature hash: spreads the bits (splitmix64's finaliser). Never
/// [`EMPTY`].
fn finish(mut h: u64) -> u64 {
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (h ^ (h >> 31)).max(1)
}

/// The hash that marks an empty slot of a trained model.
const EMPTY: u64 = 0;

/// The map of features: its keys are already well-mixed hashes, so it uses them as they are
/// instead of hashing them again.
#[derive(Debug, Clone, Copy, Default)]
struct Prehashed;

impl std::hash::BuildHasher for Prehashed {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[derive(Debug)]
struct PrehashedHasher(u64);

impl std::hash::Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One example made ready for training: its class and features.
struct Prepared {
    class: usize,
    feats: Vec<u32>,
}

/// The last model trained in this process and what it was trained from: a reload with the
/// same examples (SIGHUP, `/reload` after editing only the rules, many test apps in one
/// process) does not train again.
static LAST: Mutex<Vec<(u64, Arc<Model>)>> = Mutex::new(Vec::new());

/// How many trained models the cache keeps (the daemon needs one; tests and
/// cross-validation a few).
const CACHED: usize = 4;

impl Model {
    /// Trains a model on examples, or returns the one already trained on the same examples
    /// with the same settings. `rewrite` turns a message into the text the features are
    /// taken from (normalisation and the dialect table).
    pub fn train_cached(samples: &[Sample], training: Training, rewrite: &dyn Fn(&str) -> String) -> Arc<Model> {
        let texts: Vec<String> = samples.iter().map(|s| rewrite(&s.text)).collect();
        let mut h = std::hash::DefaultHasher::new();
        for (s, t) in samples.iter().zip(&texts) {
            (s.intent.as_str(), s.detail.as_deref(), t).hash(&mut h);
        }
        format!("{training:?}").hash(&mut h);
        let key = h.finish();
        if let Some((_, model)) = LAST.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(k, _)| *k == key) {
            return model.clone();
        }
        let model = Arc::new(Self::train_on(samples, &texts, training));
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        if last.len() >= CACHED {
            last.remove(0);
        }
        last.push((key, model.clone()));
        model
    }

    /// Trains a model (no cache); `texts` are the samples' rewritten texts.
    pub fn train_on(samples: &[Sample], texts: &[String], training: Training) -> Model {
        let mut classes: Vec<Intent> = Vec::new();
        let mut rows: HashMap<u64, u32, Prehashed> = HashMap::default();
        let mut prepared = Vec::with_capacity(samples.len());
        let mut buf = Vec::new();
        for (s, text) in samples.iter().zip(texts) {
            let Some(intent) = s.label_intent() else { continue };
            let class = match classes.iter().position(|c| *c == intent) {
                Some(i) => i,
                None => {
                    classes.push(intent);
                    classes.len() - 1
                }
            };
            features(text, &mut buf);
            let feats = buf
                .iter()
                .map(|f| {
                    let next = rows.len() as u32;
                    *rows.entry(*f).or_insert(next)
                })
                .collect();
            prepared.push(Prepared { class, feats });
        }
        let k = classes.len();
        let mut model = Model {
            weights: vec![0.0; rows.len() * k],
            slots: Vec::new(),
            features: rows.len(),
            bias: vec![0.0; k],
            classes,
            rows,
            kind: training.kind,
            training,
            examples: prepared.len(),
        };
        if k == 0 {
            return model;
        }
        match training.kind {
            ModelKind::NaiveBayes => model.fit_naive_bayes(&prepared, training.alpha),
            ModelKind::Logistic => model.fit_logistic(&prepared, training),
        }
        model.freeze();
        model
    }

    /// Lays the trained rows out in `slots`, at most three quarters full.
    fn freeze(&mut self) {
        let k = self.classes.len();
        let slots = (self.rows.len() * 4 / 3 + 1).next_power_of_two().max(2);
        let mut keys = vec![EMPTY; slots];
        let mut weights = vec![0f32; slots * k];
        for (&feature, &row) in &self.rows {
            let mut i = feature as usize & (slots - 1);
            while keys[i] != EMPTY {
                i = (i + 1) & (slots - 1);
            }
            keys[i] = feature;
            let row = row as usize;
            weights[i * k..i * k + k].copy_from_slice(&self.weights[row * k..row * k + k]);
        }
        self.slots = keys;
        self.weights = weights;
        self.rows = HashMap::default();
    }

    /// The slot of a feature the trained model knows.
    fn slot(&self, feature: u64) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = feature as usize & mask;
        loop {
            match self.slots[i] {
                key if key == feature => return Some(i),
                EMPTY => return None,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn fit_naive_bayes(&mut self, data: &[Prepared], alpha: f32) {
        let k = self.classes.len();
        let v = self.rows.len() as f32;
        let mut docs = vec![0f32; k];
        let mut totals = vec![0f32; k];
        for ex in data {
            docs[ex.class] += 1.0;
            totals[ex.class] += ex.feats.len() as f32;
            for &f in &ex.feats {
                self.weights[f as usize * k + ex.class] += 1.0;
            }
        }
        let n = data.len() as f32;
        for c in 0..k {
            self.bias[c] = ((docs[c] + 1.0) / (n + k as f32)).ln();
            let denominator = (totals[c] + alpha * v).ln();
            for row in 0..self.rows.len() {
                let w = &mut self.weights[row * k + c];
                *w = (*w + alpha).ln() - denominator;
            }
        }
    }

    fn fit_logistic(&mut self, data: &[Prepared], t: Training) {
        let k = self.classes.len();
        let mut order: Vec<usize> = (0..data.len()).collect();
        // A fixed seed: the same examples always give the same model.
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut scores = vec![0f32; k];
        for epoch in 0..t.epochs {
            for i in (1..order.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let rate = t.learning_rate / (1.0 + epoch as f32);
            for &i in &order {
                let ex = &data[i];
                let x = 1.0 / (ex.feats.len().max(1) as f32).sqrt();
                scores.copy_from_slice(&self.bias);
                for &f in &ex.feats {
                    let row = &self.weights[f as usize * k..f as usize * k + k];
                    for (s, w) in scores.iter_mut().zip(row) {
                        *s += w * x;
                    }
                }
                softmax(&mut scores);
                scores[ex.class] -= 1.0;
                for (b, g) in self.bias.iter_mut().zip(&scores) {
                    *b -= rate * g;
                }
                let decay = 1.0 - rate * t.l2;
                for &f in &ex.feats {
                    let row = &mut self.weights[f as usize * k..f as usize * k + k];
                    for (w, g) in row.iter_mut().zip(&scores) {
                        *w = *w * decay - rate * g * x;
                    }
                }
            }
        }
    }

    /// The probability of every class for a rewritten text.
    pub fn scores(&self, norm: &str) -> Scores<'_> {
        let k = self.classes.len();
        let mut feats = Vec::with_capacity(norm.len());
        features(norm, &mut feats);
        let known: Vec<usize> = feats.iter().filter_map(|f| self.slot(*f)).collect();
        let mut probs = self.bias.clone();
        let x = match self.kind {
            ModelKind::Logistic => 1.0 / (feats.len().max(1) as f32).sqrt(),
            ModelKind::NaiveBayes => 1.0,
        };
        for r in &known {
            for (p, w) in probs.iter_mut().zip(&self.weights[r * k..r * k + k]) {
                *p += w * x;
            }
        }
        if self.kind == ModelKind::NaiveBayes && !known.is_empty() {
            // See [`Training::temper`].
            let temper = 1.0 / (known.len() as f32).powf(self.training.temper);
            let prior = self.bias.clone();
            for (p, b) in probs.iter_mut().zip(prior) {
                *p = b + (*p - b) * temper;
            }
        }
        softmax(&mut probs);
        Scores { model: self, probs }
    }

    /// How many examples it learnt from.
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// How many distinct features it knows.
    pub fn feature_count(&self) -> usize {
        self.features
    }

    /// The memory its tables take, in bytes (an estimate of the hash map's share).
    pub fn memory_bytes(&self) -> usize {
        self.weights.len() * 4 + self.slots.len() * 8 + self.bias.len() * 4
    }

    /// Which learner it is.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// The settings it was trained with.
    pub fn training(&self) -> Training {
        self.training
    }
}

fn softmax(v: &mut [f32]) {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    for x in v.iter_mut() {
        *x /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triage::corpus;
    use crate::triage::{TipCategory, normalise};

    fn tiny() -> Vec<Sample> {
        let raw = "tip/theft\t-\t俺家的羊被偷了\ntip/theft\t-\t电动车被偷走了\ntip/theft\t-\t电瓶让人偷了\n\
                   chatter\t-\t今天天气真好\nchatter\t-\t大家早上好\nchatter\t-\t吃了没\n\
                   contact_query\t-\t民警电话多少\ncontact_query\t-\t警务室在哪\n";
        corpus::parse(raw, "tiny").unwrap()
    }

    #[test]
    fn both_learners_learn_a_tiny_corpus() {
        for kind in [ModelKind::Logistic, ModelKind::NaiveBayes] {
            let samples = tiny();
            let texts: Vec<String> = samples.iter().map(|s| normalise(&s.text)).collect();
            let m = Model::train_on(&samples, &texts, Training { kind, epochs: 30, ..Training::default() });
            let s = m.scores(&normalise("俺家的电动车被偷了"));
            assert_eq!(s.best_intent().0, "tip", "{kind:?}");
            assert_eq!(s.best_of("tip").unwrap().0, Intent::Tip(TipCategory::Theft));
            assert_eq!(m.scores(&normalise("早上好啊")).best_intent().0, "chatter", "{kind:?}");
            let total: f32 = super::super::corpus::INTENTS.iter().map(|i| s.intent_prob(i)).sum();
            assert!((total - 1.0).abs() < 1e-4, "{kind:?}: {total}");
        }
    }

    #[test]
    fn a_phone_number_is_one_feature() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        features("贷款13800001111", &mut a);
        features("贷款13911112222", &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn the_same_examples_give_the_same_model_and_are_not_trained_twice() {
        let samples = tiny();
        let m1 = Model::train_cached(&samples, Training::default(), &normalise);
        let m2 = Model::train_cached(&samples, Training::default(), &normalise);
        assert!(Arc::ptr_eq(&m1, &m2));
        let texts: Vec<String> = samples.iter().map(|s| normalise(&s.text)).collect();
        let fresh = Model::train_on(&samples, &texts, Training::default());
        assert_eq!(fresh.weights, m1.weights);
    }
}
