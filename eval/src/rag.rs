//! RAG metrics with the Ragas definitions, judged by any [`ChatModel`] (local or remote) whose
//! replies are constrained to a JSON Schema, so verdicts always parse on models that honour
//! structured output (the local llama.cpp model decodes under the schema's grammar).
//!
//! | metric | definition (Ragas) | undefined when |
//! |---|---|---|
//! | [`Judge::faithfulness`] | the answer is broken into statements; each is verified against the contexts; supported / total | the answer has no statements |
//! | [`Judge::answer_relevancy`] | n questions are generated from the answer; mean cosine similarity of their embeddings to the question's; 0 when every generation calls the answer noncommittal | never (0 with no questions) |
//! | [`Judge::context_precision`] | each retrieved context, in rank order, is judged useful (1/0) for the reference (or, without one, for the answer); Σₖ precision@k · vₖ / Σₖ vₖ | no context |
//! | [`Judge::context_recall`] | each sentence of the reference is judged attributable (1/0) to the contexts; attributed / total | the reference has no sentences |
//! | [`Judge::answer_correctness`] | statements of the answer and of the reference sorted into TP/FP/FN; F1 = TP / (TP + ½(FP + FN)); 0.75 · F1 + 0.25 · cosine(answer, reference) | never |
//! | [`non_llm_context_precision`], [`non_llm_context_recall`] | as above with a context counted relevant when its normalised Levenshtein similarity to a reference context exceeds 0.5 | no context / no reference context |
//! | [`id_context_precision`], [`id_context_recall`] | by document id: \|retrieved ∩ reference\| over \|retrieved\| / over \|reference\| | no ids on the side divided by |
//!
//! Undefined is `None`, never a silent 0; a judge reply that does not fit its schema is an
//! [`Error::Parse`] naming the metric.

use std::collections::BTreeSet;
use std::sync::Arc;

use catena_core::{ChatModel, ChatRequest, Embedder, Error, Message, Result, RunContext};
use catena_core::{ModelSchema, structured_with};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One evaluated example: what was asked, what the pipeline answered and retrieved, and what it
/// should have.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RagSample {
    /// The question.
    pub question: String,
    /// The pipeline's answer.
    pub answer: String,
    /// The retrieved contexts, in rank order.
    #[serde(default)]
    pub contexts: Vec<String>,
    /// The reference answer, when known.
    #[serde(default)]
    pub reference: Option<String>,
    /// The reference contexts, when known (for the non-LLM metrics).
    #[serde(default)]
    pub reference_contexts: Vec<String>,
    /// Ids of the retrieved documents, in rank order.
    #[serde(default)]
    pub retrieved_ids: Vec<String>,
    /// Ids of the documents that should have been retrieved.
    #[serde(default)]
    pub reference_ids: Vec<String>,
}

/// A metric's value (`None`: undefined for this sample) and the judge's verdicts behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    /// The value in [0, 1], or `None` when the metric is undefined for the sample.
    pub value: Option<f64>,
    /// What the judge decided (statements and verdicts), for reports and debugging.
    pub detail: serde_json::Value,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Statements {
    statements: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct Verdict {
    /// The statement or context judged.
    statement: String,
    /// Why.
    reason: String,
    /// 1 if it holds, 0 if not.
    verdict: u8,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Verdicts {
    verdicts: Vec<Verdict>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct GeneratedQuestion {
    question: String,
    /// 1 if the answer is evasive or vague ("I don't know"), else 0.
    noncommittal: u8,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Classification {
    /// Answer statements supported by the reference.
    #[serde(rename = "TP")]
    tp: Vec<String>,
    /// Answer statements not supported by the reference.
    #[serde(rename = "FP")]
    fp: Vec<String>,
    /// Reference statements missing from the answer.
    #[serde(rename = "FN")]
    fn_: Vec<String>,
}

/// Judges RAG samples with a chat model (and, for the similarity-based metrics, an embedder).
pub struct Judge {
    model: Arc<dyn ChatModel>,
    embedder: Option<Arc<dyn Embedder>>,
    questions: usize,
    max_tokens: u32,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("model", &self.model.model_name())
            .field("embedder", &self.embedder.is_some())
            .field("questions", &self.questions)
            .finish()
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 { 0.0 } else { dot / denominator }
}

/// Ragas' average precision over ordered verdicts: Σₖ precision@k · vₖ / Σₖ vₖ (0 when nothing
/// is relevant).
#[must_use]
pub fn average_precision(verdicts: &[bool]) -> f64 {
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (i, v) in verdicts.iter().enumerate() {
        if *v {
            hits += 1;
            sum += hits as f64 / (i + 1) as f64;
        }
    }
    if hits == 0 { 0.0 } else { sum / hits as f64 }
}

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if matches!(c, '.' | '!' | '?' | '\n') {
            let s = current.trim();
            if !s.is_empty() {
                out.push(s.to_owned());
            }
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_owned());
    }
    out
}

impl Judge {
    /// A judge on `model`, generating 3 questions for answer relevancy.
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model, embedder: None, questions: 3, max_tokens: 512 }
    }

    /// The embedder answer relevancy and answer correctness compare texts with.
    #[must_use]
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// How many questions answer relevancy generates (at least 1).
    #[must_use]
    pub fn with_questions(mut self, n: usize) -> Self {
        self.questions = n.max(1);
        self
    }

    /// Asks the judge and reads its reply as `T`, constrained to `T`'s schema.
    async fn ask<T: DeserializeOwned + JsonSchema>(
        &self,
        metric: &str,
        prompt: String,
        ctx: &RunContext,
    ) -> Result<T> {
        self.ask_exactly(metric, prompt, None, ctx).await
    }

    /// Like [`ask`](Self::ask); with `items`, the reply's `verdicts` list must have exactly that
    /// many entries, so a model decoding under the schema cannot skip or add a verdict.
    async fn ask_exactly<T: DeserializeOwned + JsonSchema>(
        &self,
        metric: &str,
        prompt: String,
        items: Option<usize>,
        ctx: &RunContext,
    ) -> Result<T> {
        let mut schema = ModelSchema::of::<T>().named(metric.replace(' ', "_")).bounded(300, 30);
        if let Some(n) = items {
            schema = schema.with_items("/properties/verdicts", n, n)?;
        }
        let request = ChatRequest::new(vec![Message::user(prompt)])
            .with_temperature(0.0)
            .with_max_tokens(self.max_tokens);
        structured_with(self.model.as_ref(), request, &schema, ctx).await.map_err(|e| match e {
            Error::Parse { message, .. } => Error::parse(format!("{metric} judge reply"), message),
            other => other,
        })
    }

    fn embedder(&self, metric: &str) -> Result<&Arc<dyn Embedder>> {
        self.embedder
            .as_ref()
            .ok_or_else(|| Error::invalid_input(format!("{metric} needs an embedder: Judge::with_embedder")))
    }

    async fn statements(
        &self,
        metric: &str,
        question: &str,
        text: &str,
        ctx: &RunContext,
    ) -> Result<Vec<String>> {
        let prompt = format!(
            "Break the answer below into short, standalone statements: each one a single fact, with pronouns \
             replaced by what they refer to. Reply in JSON as {{\"statements\": [...]}}.\n\nQuestion: {question}\nAnswer: {text}"
        );
        let parsed: Statements = self.ask(metric, prompt, ctx).await?;
        Ok(parsed.statements.into_iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
    }

    /// Faithfulness: the share of the answer's statements that the contexts support.
    pub async fn faithfulness(&self, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        let statements = self.statements("faithfulness", &sample.question, &sample.answer, ctx).await?;
        if statements.is_empty() {
            return Ok(Score { value: None, detail: serde_json::json!({"statements": []}) });
        }
        let prompt = format!(
            "For each statement, decide whether it can be directly inferred from the context. Give verdict 1 if it \
             can, 0 if it cannot, with a short reason. Reply in JSON as {{\"verdicts\": [{{\"statement\", \"reason\", \
             \"verdict\"}}]}}, one per statement, in order.\n\nContext:\n{}\n\nStatements:\n{}",
            sample.contexts.join("\n\n"),
            numbered(&statements)
        );
        let judged: Verdicts = self.ask_exactly("faithfulness", prompt, Some(statements.len()), ctx).await?;
        let verdicts = aligned("faithfulness", &judged.verdicts, statements.len())?;
        let supported = verdicts.iter().filter(|v| **v).count();
        Ok(Score {
            value: Some(supported as f64 / statements.len() as f64),
            detail: serde_json::json!({"statements": statements, "verdicts": judged.verdicts}),
        })
    }

    /// Answer relevancy: how well questions generated back from the answer match the question.
    pub async fn answer_relevancy(&self, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        let embedder = self.embedder("answer relevancy")?;
        let mut generated = Vec::with_capacity(self.questions);
        for _ in 0..self.questions {
            let prompt = format!(
                "Write the question the answer below answers. Also say whether the answer is noncommittal (evasive, \
                 vague or \"I don't know\": 1) or not (0). Reply in JSON as {{\"question\", \"noncommittal\"}}.\n\nAnswer: {}",
                sample.answer
            );
            let q: GeneratedQuestion = self.ask("answer relevancy", prompt, ctx).await?;
            generated.push(q);
        }
        let all_noncommittal = generated.iter().all(|q| q.noncommittal == 1);
        let mut texts = vec![sample.question.clone()];
        texts.extend(generated.iter().map(|q| q.question.clone()));
        let vectors = embedder.embed(&texts, ctx).await?;
        let (question, rest) = vectors
            .split_first()
            .ok_or_else(|| Error::model_permanent("the embedder returned no vectors"))?;
        let mean = rest.iter().map(|v| cosine(question, v)).sum::<f64>() / rest.len().max(1) as f64;
        let value = if all_noncommittal { 0.0 } else { mean };
        Ok(Score {
            value: Some(value),
            detail: serde_json::json!({"questions": generated.iter().map(|q| &q.question).collect::<Vec<_>>(), "noncommittal": all_noncommittal}),
        })
    }

    /// Context precision: are the useful contexts ranked first? Judged against the reference
    /// answer, or the pipeline's answer when there is none.
    pub async fn context_precision(&self, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        if sample.contexts.is_empty() {
            return Ok(Score { value: None, detail: serde_json::json!({"verdicts": []}) });
        }
        let target = sample.reference.as_deref().unwrap_or(&sample.answer);
        let mut verdicts = Vec::with_capacity(sample.contexts.len());
        let mut detail = Vec::new();
        for context in &sample.contexts {
            let prompt = format!(
                "Was the context useful in arriving at the given answer to the question? Verdict 1 if yes, 0 if no, \
                 with a short reason. Reply in JSON as {{\"statement\", \"reason\", \"verdict\"}} with the context's \
                 first words as the statement.\n\nQuestion: {}\nAnswer: {target}\nContext: {context}",
                sample.question
            );
            let v: Verdict = self.ask("context precision", prompt, ctx).await?;
            verdicts.push(v.verdict == 1);
            detail.push(v);
        }
        Ok(Score {
            value: Some(average_precision(&verdicts)),
            detail: serde_json::json!({"verdicts": detail}),
        })
    }

    /// Context recall: the share of the reference's sentences the contexts support.
    pub async fn context_recall(&self, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        let reference = sample
            .reference
            .as_deref()
            .ok_or_else(|| Error::invalid_input("context recall needs a reference answer"))?;
        let claims = sentences(reference);
        if claims.is_empty() {
            return Ok(Score { value: None, detail: serde_json::json!({"sentences": []}) });
        }
        let prompt = format!(
            "For each sentence of the reference answer, decide whether it can be attributed to the context. Verdict 1 \
             if yes, 0 if no, with a short reason. Reply in JSON as {{\"verdicts\": [{{\"statement\", \"reason\", \
             \"verdict\"}}]}}, one per sentence, in order.\n\nQuestion: {}\nContext:\n{}\n\nSentences:\n{}",
            sample.question,
            sample.contexts.join("\n\n"),
            numbered(&claims)
        );
        let judged: Verdicts = self.ask_exactly("context recall", prompt, Some(claims.len()), ctx).await?;
        let verdicts = aligned("context recall", &judged.verdicts, claims.len())?;
        let attributed = verdicts.iter().filter(|v| **v).count();
        Ok(Score {
            value: Some(attributed as f64 / claims.len() as f64),
            detail: serde_json::json!({"sentences": claims, "verdicts": judged.verdicts}),
        })
    }

    /// Answer correctness: statement-level F1 against the reference (weight 0.75) plus the
    /// cosine similarity of answer and reference (weight 0.25).
    pub async fn answer_correctness(&self, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        let reference = sample
            .reference
            .as_deref()
            .ok_or_else(|| Error::invalid_input("answer correctness needs a reference answer"))?;
        let embedder = self.embedder("answer correctness")?;
        let answer_statements =
            self.statements("answer correctness", &sample.question, &sample.answer, ctx).await?;
        let reference_statements =
            self.statements("answer correctness", &sample.question, reference, ctx).await?;
        let prompt = format!(
            "Sort the statements. TP: answer statements supported by the reference statements. FP: answer statements \
             not supported by them. FN: reference statements missing from the answer. Reply in JSON as {{\"TP\": [...], \
             \"FP\": [...], \"FN\": [...]}}.\n\nQuestion: {}\nAnswer statements:\n{}\nReference statements:\n{}",
            sample.question,
            numbered(&answer_statements),
            numbered(&reference_statements)
        );
        let c: Classification = self.ask("answer correctness", prompt, ctx).await?;
        let (tp, fp, fn_) = (c.tp.len() as f64, c.fp.len() as f64, c.fn_.len() as f64);
        // Ragas' fbeta with beta 1, including its 1e-10 guards (so all-empty lists give 0).
        let precision = tp / (tp + fp + 1e-10);
        let recall = tp / (tp + fn_ + 1e-10);
        let f1 = 2.0 * precision * recall / (precision + recall + 1e-10);
        let vectors = embedder.embed(&[sample.answer.clone(), reference.to_owned()], ctx).await?;
        let similarity = match vectors.as_slice() {
            [a, b] => cosine(a, b),
            _ => return Err(Error::model_permanent("the embedder did not return two vectors")),
        };
        Ok(Score {
            value: Some(0.75 * f1 + 0.25 * similarity),
            detail: serde_json::json!({"TP": c.tp, "FP": c.fp, "FN": c.fn_, "f1": f1, "similarity": similarity}),
        })
    }
}

fn numbered(items: &[String]) -> String {
    items.iter().enumerate().map(|(i, s)| format!("{}. {s}", i + 1)).collect::<Vec<_>>().join("\n")
}

/// The verdicts as booleans, one per item judged; a judge that returned a different number of
/// verdicts is a parse error (counting what it gave would silently skew the score).
fn aligned(metric: &str, verdicts: &[Verdict], expected: usize) -> Result<Vec<bool>> {
    if verdicts.len() != expected {
        return Err(Error::parse(
            format!("{metric} judge reply"),
            format!("{} verdicts for {expected} statements", verdicts.len()),
        ));
    }
    Ok(verdicts.iter().map(|v| v.verdict == 1).collect())
}

/// Normalised Levenshtein similarity in [0, 1] (1 − distance / longer length, by characters), the
/// string measure Ragas' non-LLM context metrics use.
#[must_use]
pub fn string_similarity(a: &str, b: &str) -> f64 {
    strsim::normalized_levenshtein(a, b)
}

/// Non-LLM context precision: retrieved contexts count as relevant when some reference context
/// is more than 0.5 similar; then Ragas' average precision. `None` without retrieved contexts.
#[must_use]
pub fn non_llm_context_precision(sample: &RagSample) -> Option<f64> {
    if sample.contexts.is_empty() {
        return None;
    }
    let verdicts: Vec<bool> = sample
        .contexts
        .iter()
        .map(|c| sample.reference_contexts.iter().map(|r| string_similarity(c, r)).fold(0.0, f64::max) > 0.5)
        .collect();
    Some(average_precision(&verdicts))
}

/// Non-LLM context recall: the share of reference contexts some retrieved context matches (> 0.5
/// similar). `None` without reference contexts.
#[must_use]
pub fn non_llm_context_recall(sample: &RagSample) -> Option<f64> {
    if sample.reference_contexts.is_empty() {
        return None;
    }
    let found = sample
        .reference_contexts
        .iter()
        .filter(|r| sample.contexts.iter().map(|c| string_similarity(c, r)).fold(0.0, f64::max) > 0.5)
        .count();
    Some(found as f64 / sample.reference_contexts.len() as f64)
}

/// Id-based context precision: the share of (distinct) retrieved ids that are reference ids.
#[must_use]
pub fn id_context_precision(sample: &RagSample) -> Option<f64> {
    if sample.retrieved_ids.is_empty() {
        return None;
    }
    let retrieved: BTreeSet<&String> = sample.retrieved_ids.iter().collect();
    let reference: BTreeSet<&String> = sample.reference_ids.iter().collect();
    Some(retrieved.intersection(&reference).count() as f64 / retrieved.len() as f64)
}

/// Id-based context recall: the share of (distinct) reference ids that were retrieved.
#[must_use]
pub fn id_context_recall(sample: &RagSample) -> Option<f64> {
    if sample.reference_ids.is_empty() {
        return None;
    }
    let retrieved: BTreeSet<&String> = sample.retrieved_ids.iter().collect();
    let reference: BTreeSet<&String> = sample.reference_ids.iter().collect();
    Some(retrieved.intersection(&reference).count() as f64 / reference.len() as f64)
}
