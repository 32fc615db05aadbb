//! `cunjing triage`: classify messages from stdin as JSON lines, or measure triage against
//! a labelled corpus or by cross-validating the model on its own examples.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// What `cunjing triage` does with the rules it loaded.
pub(super) enum Task {
    /// Classify each line of stdin, all in this context.
    Classify(crate::triage::Context),
    /// Measure triage against this corpus.
    Evaluate(std::path::PathBuf),
    /// K-fold cross-validation on the model's own examples.
    CrossValidate(usize),
}

/// Runs `cunjing triage` with the rules of `rules`, loaded `how`; `misses` lists what an
/// evaluation got wrong.
pub(super) fn run(rules: &Path, how: crate::triage::Load, task: Task, misses: bool) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let rules = crate::triage::Triage::load_as(rules, how)?;
    tracing::info!(loaded_ms = started.elapsed().as_millis() as u64, "triage loaded: {}", rules.describe());
    match task {
        Task::Evaluate(corpus) => evaluate_corpus(&rules, &corpus, misses),
        Task::CrossValidate(k) => cross_validate_examples(&rules, k, misses),
        Task::Classify(context) => triage_stdin(&rules, context),
    }
}

/// `cunjing triage`: stdin lines → JSON lines.
fn triage_stdin(rules: &crate::triage::Triage, context: crate::triage::Context) -> anyhow::Result<ExitCode> {
    use std::io::{BufRead, Write};
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.context("Failed to read stdin (is it UTF-8 text?)")?;
        writeln!(out, "{}", rules.classify_in(&line, context).to_json())?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `cunjing triage --cross-validate K`: the examples folder of the rules' [model].
fn cross_validate_examples(rules: &crate::triage::Triage, k: usize, misses: bool) -> anyhow::Result<ExitCode> {
    use crate::triage::corpus;
    let dir = rules.examples_dir().ok_or_else(|| anyhow::anyhow!("the rules have no [model] examples to validate"))?;
    let samples = corpus::read_dir(dir)?;
    let e = corpus::cross_validate(rules, &samples, k)?;
    print_evaluation(&e, misses);
    Ok(ExitCode::SUCCESS)
}

/// `cunjing triage --evaluate FILE`.
fn evaluate_corpus(rules: &crate::triage::Triage, corpus: &std::path::Path, misses: bool) -> anyhow::Result<ExitCode> {
    use crate::triage::corpus;
    let raw = std::fs::read_to_string(corpus).with_context(|| format!("Failed to read {}", corpus.display()))?;
    let samples = corpus::parse(&raw, &corpus.display().to_string())?;
    let e = corpus::evaluate(rules, &samples);
    print_evaluation(&e, misses);
    Ok(ExitCode::SUCCESS)
}

fn print_evaluation(e: &crate::triage::corpus::Evaluation, misses: bool) {
    print!("{}", e.markdown());
    if misses {
        println!();
        for m in &e.misses {
            let confidence = m.confidence.map(|c| format!(" {c:.2}")).unwrap_or_default();
            println!(
                "{}:{}: expected {}, got {} ({}{confidence}, rule {}): {}",
                m.source,
                m.line,
                m.expected,
                m.got,
                m.layer,
                m.rule.as_deref().unwrap_or("-"),
                m.text
            );
        }
    }
}
