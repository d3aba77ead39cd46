//! Running a RAG pipeline over a dataset and scoring every answer: [`RagEvaluation`].

use std::collections::BTreeMap;
use std::sync::Arc;

use catena_core::{Error, Event, Result, RunContext, Runnable, ScoredDocument};
use futures::{StreamExt, stream};
use serde::{Deserialize, Serialize};

use crate::rag::{
    Judge, RagSample, Score, id_context_precision, id_context_recall, non_llm_context_precision,
    non_llm_context_recall,
};

/// One dataset line (JSONL): the question and what is known about its answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetItem {
    /// The question.
    pub question: String,
    /// The reference answer.
    #[serde(default)]
    pub reference: Option<String>,
    /// Reference context texts.
    #[serde(default)]
    pub reference_contexts: Vec<String>,
    /// Reference document ids.
    #[serde(default)]
    pub reference_ids: Vec<String>,
}

/// Reads a JSONL dataset; a bad line is an [`Error::Parse`] naming its number. Blank lines are
/// skipped; an empty dataset is an [`Error::InvalidInput`].
pub fn read_dataset(text: &str) -> Result<Vec<DatasetItem>> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item: DatasetItem = serde_json::from_str(line)
            .map_err(|e| Error::parse("dataset", format!("line {}: {e}", i + 1)))?;
        if item.question.trim().is_empty() {
            return Err(Error::parse("dataset", format!("line {}: the question is empty", i + 1)));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(Error::invalid_input("the dataset has no questions"));
    }
    Ok(items)
}

/// What a RAG pipeline returns for the evaluation: its answer and the contexts it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RagAnswer {
    /// The answer.
    pub answer: String,
    /// The retrieved documents, in rank order (their ids feed the id-based metrics).
    pub contexts: Vec<ScoredDocument>,
}

/// A metric the runner can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RagMetric {
    /// [`Judge::faithfulness`].
    Faithfulness,
    /// [`Judge::answer_relevancy`].
    AnswerRelevancy,
    /// [`Judge::context_precision`].
    ContextPrecision,
    /// [`Judge::context_recall`].
    ContextRecall,
    /// [`Judge::answer_correctness`].
    AnswerCorrectness,
    /// [`non_llm_context_precision`].
    NonLlmContextPrecision,
    /// [`non_llm_context_recall`].
    NonLlmContextRecall,
    /// [`id_context_precision`].
    IdContextPrecision,
    /// [`id_context_recall`].
    IdContextRecall,
}

impl RagMetric {
    /// Every metric, in the order of the declaration.
    pub const ALL: [Self; 9] = [
        Self::Faithfulness,
        Self::AnswerRelevancy,
        Self::ContextPrecision,
        Self::ContextRecall,
        Self::AnswerCorrectness,
        Self::NonLlmContextPrecision,
        Self::NonLlmContextRecall,
        Self::IdContextPrecision,
        Self::IdContextRecall,
    ];

    /// The metric's snake_case name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Faithfulness => "faithfulness",
            Self::AnswerRelevancy => "answer_relevancy",
            Self::ContextPrecision => "context_precision",
            Self::ContextRecall => "context_recall",
            Self::AnswerCorrectness => "answer_correctness",
            Self::NonLlmContextPrecision => "non_llm_context_precision",
            Self::NonLlmContextRecall => "non_llm_context_recall",
            Self::IdContextPrecision => "id_context_precision",
            Self::IdContextRecall => "id_context_recall",
        }
    }

    async fn score(self, judge: &Judge, sample: &RagSample, ctx: &RunContext) -> Result<Score> {
        let plain = |value: Option<f64>| Ok(Score { value, detail: serde_json::Value::Null });
        match self {
            Self::Faithfulness => judge.faithfulness(sample, ctx).await,
            Self::AnswerRelevancy => judge.answer_relevancy(sample, ctx).await,
            Self::ContextPrecision => judge.context_precision(sample, ctx).await,
            Self::ContextRecall => judge.context_recall(sample, ctx).await,
            Self::AnswerCorrectness => judge.answer_correctness(sample, ctx).await,
            Self::NonLlmContextPrecision => plain(non_llm_context_precision(sample)),
            Self::NonLlmContextRecall => plain(non_llm_context_recall(sample)),
            Self::IdContextPrecision => plain(id_context_precision(sample)),
            Self::IdContextRecall => plain(id_context_recall(sample)),
        }
    }
}

/// A name that is not one of [`RagMetric`]'s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownRagMetric(pub String);

impl std::fmt::Display for UnknownRagMetric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = RagMetric::ALL.iter().map(|m| m.name()).collect();
        write!(f, "unknown metric {:?}: use {}", self.0, names.join(", "))
    }
}

impl std::error::Error for UnknownRagMetric {}

impl std::str::FromStr for RagMetric {
    type Err = UnknownRagMetric;

    /// Parses a metric's snake_case [`name`](RagMetric::name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        Self::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| UnknownRagMetric(s.to_owned()))
    }
}

/// One sample's outcome: the pipeline's output and each metric's score or error.
#[derive(Debug, Clone, Serialize)]
pub struct SampleResult {
    /// The sample as scored.
    pub sample: RagSample,
    /// Metric name -> score.
    pub scores: BTreeMap<String, Score>,
    /// Metric name -> why it could not be computed (a judge reply that did not parse, say).
    pub errors: BTreeMap<String, String>,
}

/// Per-sample results and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RagReport {
    /// One result per dataset item, in dataset order (items whose pipeline run failed are in
    /// `failed` instead).
    pub samples: Vec<SampleResult>,
    /// Question -> why the pipeline failed on it.
    pub failed: BTreeMap<String, String>,
    /// Metric name -> mean over the samples where it is defined (`None` if it is defined nowhere).
    pub means: BTreeMap<String, Option<f64>>,
    /// Metric name -> samples where it is defined.
    pub counts: BTreeMap<String, usize>,
}

/// Runs a RAG pipeline over a dataset with bounded concurrency and scores every answer. A
/// pipeline failure or a metric that cannot be computed is recorded with its reason; the other
/// samples and metrics still count. Progress is reported as [`Event::Progress`].
pub struct RagEvaluation {
    pipeline: Arc<dyn Runnable<String, RagAnswer>>,
    judge: Judge,
    metrics: Vec<RagMetric>,
    concurrency: usize,
}

impl std::fmt::Debug for RagEvaluation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagEvaluation")
            .field("metrics", &self.metrics)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl RagEvaluation {
    /// Evaluates `pipeline` with `judge` on `metrics`, 4 samples at a time.
    #[must_use]
    pub fn new(
        pipeline: Arc<dyn Runnable<String, RagAnswer>>,
        judge: Judge,
        metrics: Vec<RagMetric>,
    ) -> Self {
        Self { pipeline, judge, metrics, concurrency: 4 }
    }

    /// Samples in flight at once (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Runs and scores every item.
    pub async fn run(&self, items: &[DatasetItem], ctx: &RunContext) -> Result<RagReport> {
        let total = items.len() as u64;
        let done = std::sync::atomic::AtomicU64::new(0);
        let outcomes: Vec<(usize, std::result::Result<SampleResult, String>)> =
            stream::iter(items.iter().enumerate())
                .map(|(i, item)| {
                    let done = &done;
                    async move {
                        let outcome = self.one(item, ctx).await;
                        let finished = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        ctx.emit(Event::Progress {
                            task: "evaluate".into(),
                            done: finished,
                            total: Some(total),
                        });
                        (i, outcome)
                    }
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        ctx.check_cancelled()?;
        let mut ordered = outcomes;
        ordered.sort_by_key(|(i, _)| *i);
        let mut samples = Vec::new();
        let mut failed = BTreeMap::new();
        for (i, outcome) in ordered {
            match outcome {
                Ok(result) => samples.push(result),
                Err(reason) => {
                    let question = items.get(i).map(|item| item.question.clone()).unwrap_or_default();
                    failed.insert(question, reason);
                }
            }
        }
        let mut means = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for metric in &self.metrics {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.scores.get(metric.name()).and_then(|score| score.value))
                .collect();
            counts.insert(metric.name().to_owned(), values.len());
            let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
            means.insert(metric.name().to_owned(), mean);
        }
        Ok(RagReport { samples, failed, means, counts })
    }

    async fn one(&self, item: &DatasetItem, ctx: &RunContext) -> std::result::Result<SampleResult, String> {
        let answer = self.pipeline.invoke(item.question.clone(), ctx).await.map_err(|e| e.to_string())?;
        let sample = RagSample {
            question: item.question.clone(),
            answer: answer.answer,
            contexts: answer.contexts.iter().map(|c| c.document.content.clone()).collect(),
            reference: item.reference.clone(),
            reference_contexts: item.reference_contexts.clone(),
            retrieved_ids: answer.contexts.iter().filter_map(|c| c.document.id.clone()).collect(),
            reference_ids: item.reference_ids.clone(),
        };
        let mut scores = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for metric in &self.metrics {
            match metric.score(&self.judge, &sample, ctx).await {
                Ok(score) => {
                    scores.insert(metric.name().to_owned(), score);
                }
                Err(Error::Cancelled) => return Err("cancelled".into()),
                Err(e) => {
                    errors.insert(metric.name().to_owned(), e.to_string());
                }
            }
        }
        Ok(SampleResult { sample, scores, errors })
    }
}
