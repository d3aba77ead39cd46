//! Rerankers and document compressors, and the retriever that applies them.

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::ModelSchema;
use catena_core::{ChatModel, Embedder, Error, Reranker, Result, Retriever, RunContext, ScoredDocument};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::ask;
use crate::mmr::cosine;

/// A pointwise judge's reply.
#[derive(Deserialize, JsonSchema)]
struct Rating {
    #[schemars(range(max = 10))]
    rating: u8,
}

/// A listwise judge's reply: candidate numbers, best first (bounded to 1..=n per call).
#[derive(Deserialize, JsonSchema)]
struct Ranking {
    ranking: Vec<usize>,
}

/// A filter's verdict.
#[derive(Deserialize, JsonSchema)]
struct Relevance {
    relevant: bool,
}

/// An extractor's reply: the document's own sentences that help answer the query.
#[derive(Deserialize, JsonSchema)]
struct Extract {
    #[schemars(length(max = 8), inner(length(min = 1)))]
    sentences: Vec<String>,
}

/// Longest document text shown to a judging model, in characters (the rest is cut: small local
/// models have small contexts).
const SHOWN_CHARS: usize = 1500;

fn shown(text: &str) -> &str {
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((at, _)) => text.get(..at).unwrap_or(text),
        None => text,
    }
}

/// Pointwise LLM reranking: the model rates each document's relevance from 0 to 10; documents
/// are sorted by rating (ties keep their incoming order) and the rating / 10 becomes the score.
/// Documents rated below `min_rating` (default 1) are dropped; `top_n` keeps the best few.
#[derive(Debug, Clone)]
pub struct LlmRelevanceReranker {
    model: Arc<dyn ChatModel>,
    top_n: Option<usize>,
    min_rating: u8,
}

impl LlmRelevanceReranker {
    /// Rates with `model`, keeps everything rated 1 or more.
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model, top_n: None, min_rating: 1 }
    }

    /// Keep at most `n` documents.
    #[must_use]
    pub fn with_top_n(mut self, n: usize) -> Self {
        self.top_n = Some(n);
        self
    }

    /// Drop documents rated below this (0 keeps everything).
    #[must_use]
    pub fn with_min_rating(mut self, rating: u8) -> Self {
        self.min_rating = rating;
        self
    }

    /// The model's 0-10 rating of one document.
    ///
    /// # Errors
    /// Model errors; [`Error::Parse`] when the reply has no rating in range.
    pub async fn rate(&self, query: &str, document: &str, ctx: &RunContext) -> Result<u8> {
        let prompt = format!(
            "Rate how relevant the document is to the query, from 0 (unrelated) to 10 (answers it directly).\n\nQuery: {query}\n\nDocument:\n{}",
            shown(document)
        );
        let reply: Rating = ask(self.model.as_ref(), prompt, &ModelSchema::of::<Rating>(), 16, ctx).await?;
        if reply.rating > 10 {
            return Err(Error::parse("relevance rating", format!("{} is not from 0 to 10", reply.rating)));
        }
        Ok(reply.rating)
    }
}

#[async_trait]
impl Reranker for LlmRelevanceReranker {
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, 1)?;
        let ratings = futures::future::try_join_all(
            documents.iter().map(|d| self.rate(query, &d.document.content, ctx)),
        )
        .await?;
        let mut rated: Vec<(u8, ScoredDocument)> =
            ratings.into_iter().zip(documents).filter(|(r, _)| *r >= self.min_rating).collect();
        rated.sort_by_key(|r| std::cmp::Reverse(r.0));
        let mut out: Vec<ScoredDocument> =
            rated.into_iter().map(|(r, d)| ScoredDocument::new(d.document, f32::from(r) / 10.0)).collect();
        if let Some(n) = self.top_n {
            out.truncate(n);
        }
        Ok(crate::retrieved(ctx, query, out))
    }
}

/// Listwise LLM reranking (RankGPT-style): the model sees every candidate, numbered, and returns
/// their order. Numbers it repeats or invents are ignored; candidates it leaves out follow in
/// their incoming order, so nothing is lost to a sloppy reply. Scores are `1 / (1 + position)`.
#[derive(Debug, Clone)]
pub struct LlmListwiseReranker {
    model: Arc<dyn ChatModel>,
    top_n: Option<usize>,
}

impl LlmListwiseReranker {
    /// Orders with `model`.
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model, top_n: None }
    }

    /// Keep at most `n` documents.
    #[must_use]
    pub fn with_top_n(mut self, n: usize) -> Self {
        self.top_n = Some(n);
        self
    }
}

#[async_trait]
impl Reranker for LlmListwiseReranker {
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, 1)?;
        if documents.len() <= 1 {
            return Ok(documents);
        }
        let n = documents.len();
        let mut prompt = format!(
            "Order the {n} passages below by how well they answer the query, most relevant first. Reply with their numbers.\n\nQuery: {query}\n"
        );
        for (i, d) in documents.iter().enumerate() {
            prompt.push_str(&format!("\n[{}] {}\n", i + 1, shown(&d.document.content).replace('\n', " ")));
        }
        let schema = ModelSchema::of::<Ranking>()
            .with_items("/properties/ranking", 1, n)?
            .with_enum("/properties/ranking/items", 1..=n)?;
        let max_tokens = 8 * u32::try_from(n).unwrap_or(100) + 16;
        let reply: Ranking = ask(self.model.as_ref(), prompt, &schema, max_tokens, ctx).await?;
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for i in reply.ranking {
            if (1..=n).contains(&i) && !order.contains(&(i - 1)) {
                order.push(i - 1);
            }
        }
        order.extend((0..n).filter(|i| !order.contains(i)).collect::<Vec<_>>());
        let mut slots: Vec<Option<ScoredDocument>> = documents.into_iter().map(Some).collect();
        let mut out: Vec<ScoredDocument> = order
            .into_iter()
            .enumerate()
            .filter_map(|(pos, i)| {
                slots
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|d| ScoredDocument::new(d.document, 1.0 / (1.0 + pos as f32)))
            })
            .collect();
        if let Some(n) = self.top_n {
            out.truncate(n);
        }
        Ok(crate::retrieved(ctx, query, out))
    }
}

/// Keeps the documents the model judges relevant to the query (yes/no each), in their order and
/// with their scores (LangChain's `LLMChainFilter`).
#[derive(Debug, Clone)]
pub struct LlmFilter {
    model: Arc<dyn ChatModel>,
}

impl LlmFilter {
    /// Judges with `model`.
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model }
    }
}

#[async_trait]
impl Reranker for LlmFilter {
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, 1)?;
        let schema = ModelSchema::of::<Relevance>();
        let verdicts = futures::future::try_join_all(documents.iter().map(|d| {
            let prompt = format!(
                "Does the document contain information relevant to the query? Answer true or false.\n\nQuery: {query}\n\nDocument:\n{}",
                shown(&d.document.content)
            );
            ask::<Relevance>(self.model.as_ref(), prompt, &schema, 12, ctx)
        }))
        .await?;
        Ok(verdicts.into_iter().zip(documents).filter(|(v, _)| v.relevant).map(|(_, d)| d).collect())
    }
}

/// Keeps, from each document, only the sentences relevant to the query, and drops documents with
/// none (LangChain's `LLMChainExtractor`). Sentences must be verbatim: any the model paraphrases
/// or invents are discarded, so the kept text is always the document's own words.
#[derive(Debug, Clone)]
pub struct LlmExtractor {
    model: Arc<dyn ChatModel>,
}

impl LlmExtractor {
    /// Extracts with `model`.
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self { model }
    }
}

#[async_trait]
impl Reranker for LlmExtractor {
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, 1)?;
        let schema = ModelSchema::of::<Extract>();
        let replies = futures::future::try_join_all(documents.iter().map(|d| {
            let prompt = format!(
                "Copy, word for word, the sentences of the document that help answer the query. \
                 If none do, reply with an empty list. Do not change or add anything.\n\nQuery: {query}\n\nDocument:\n{}",
                shown(&d.document.content)
            );
            ask::<Extract>(self.model.as_ref(), prompt, &schema, 400, ctx)
        }))
        .await?;
        let mut out = Vec::new();
        for (reply, mut d) in replies.into_iter().zip(documents) {
            let kept: Vec<&str> = reply
                .sentences
                .iter()
                .map(|s| s.trim())
                .filter(|s| !s.is_empty() && d.document.content.contains(*s))
                .collect();
            if kept.is_empty() {
                continue;
            }
            d.document.content = kept.join("\n");
            out.push(d);
        }
        Ok(out)
    }
}

/// Keeps documents by embedding similarity to the query: the `k` most similar and/or those at or
/// above `threshold` (LangChain's `EmbeddingsFilter`); scores become the cosine similarity.
#[derive(Debug, Clone)]
pub struct EmbeddingsFilter {
    embedder: Arc<dyn Embedder>,
    k: Option<usize>,
    threshold: Option<f32>,
}

impl EmbeddingsFilter {
    /// Sorts by similarity, keeps the best 20 (LangChain's default k).
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self { embedder, k: Some(20), threshold: None }
    }

    /// Keep at most `k` (None: no count limit).
    #[must_use]
    pub fn with_k(mut self, k: Option<usize>) -> Self {
        self.k = k;
        self
    }

    /// Keep only similarities at or above `threshold`.
    #[must_use]
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = Some(threshold);
        self
    }
}

#[async_trait]
impl Reranker for EmbeddingsFilter {
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, 1)?;
        if self.k.is_none() && self.threshold.is_none() {
            return Err(Error::invalid_input("an embeddings filter needs k, a threshold, or both"));
        }
        if documents.is_empty() {
            return Ok(documents);
        }
        let mut texts: Vec<String> = vec![query.to_owned()];
        texts.extend(documents.iter().map(|d| d.document.content.clone()));
        let vectors = self.embedder.embed(&texts, ctx).await?;
        let (q, rest) =
            vectors.split_first().ok_or_else(|| Error::model_permanent("the embedder returned nothing"))?;
        let mut scored: Vec<ScoredDocument> =
            rest.iter().zip(documents).map(|(v, d)| ScoredDocument::new(d.document, cosine(q, v))).collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        if let Some(t) = self.threshold {
            scored.retain(|d| d.score >= t);
        }
        if let Some(k) = self.k {
            scored.truncate(k);
        }
        Ok(scored)
    }
}

/// Drops documents whose embedding is at least `threshold` (0.95) similar to a document kept
/// before them, so near-duplicates (the same paragraph from two copies of a file) do not crowd
/// the context (LangChain's `EmbeddingsRedundantFilter`). Order and scores are kept.
#[derive(Debug, Clone)]
pub struct RedundancyFilter {
    embedder: Arc<dyn Embedder>,
    threshold: f32,
}

impl RedundancyFilter {
    /// Similarity 0.95 or more counts as redundant.
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        Self { embedder, threshold: 0.95 }
    }

    /// The similarity from which a later document is dropped.
    #[must_use]
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }
}

#[async_trait]
impl Reranker for RedundancyFilter {
    async fn rerank(
        &self,
        _query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        if documents.len() <= 1 {
            return Ok(documents);
        }
        let texts: Vec<String> = documents.iter().map(|d| d.document.content.clone()).collect();
        let vectors = self.embedder.embed(&texts, ctx).await?;
        let mut kept: Vec<usize> = Vec::new();
        for (i, v) in vectors.iter().enumerate() {
            if kept.iter().all(|&j| vectors.get(j).is_none_or(|w| cosine(v, w) < self.threshold)) {
                kept.push(i);
            }
        }
        let mut slots: Vec<Option<ScoredDocument>> = documents.into_iter().map(Some).collect();
        Ok(kept.into_iter().filter_map(|i| slots.get_mut(i).and_then(Option::take)).collect())
    }
}

/// Rerankers applied one after the other (LangChain's `DocumentCompressorPipeline`).
#[derive(Debug, Clone, Default)]
pub struct RerankerChain {
    steps: Vec<Arc<dyn Reranker>>,
}

impl RerankerChain {
    /// An empty chain (passes documents through).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a step.
    #[must_use]
    pub fn then(mut self, step: Arc<dyn Reranker>) -> Self {
        self.steps.push(step);
        self
    }
}

#[async_trait]
impl Reranker for RerankerChain {
    async fn rerank(
        &self,
        query: &str,
        mut documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>> {
        for step in &self.steps {
            if documents.is_empty() {
                break;
            }
            documents = step.rerank(query, documents, ctx).await?;
        }
        Ok(documents)
    }
}

/// A retriever whose results pass through a reranker (or a [`RerankerChain`] of compressors),
/// keeping at most `top_n` (LangChain's `ContextualCompressionRetriever`).
///
/// The rerankers and compressors each take a query and candidate documents and return the ones
/// worth keeping, best first. They all implement [`Reranker`], so they chain ([`RerankerChain`])
/// and sit behind any retriever through this one.
///
/// | reranker | model | what it does |
/// |---|---|---|
/// | [`LlmRelevanceReranker`] | chat | rates each document 0-10 for the query (pointwise), sorts |
/// | [`LlmListwiseReranker`] | chat | orders all candidates in one call (RankGPT-style) |
/// | [`LlmFilter`] | chat | keeps documents the model says are relevant (yes/no) |
/// | [`LlmExtractor`] | chat | keeps only the sentences relevant to the query, verbatim |
/// | [`EmbeddingsFilter`] | embedder | keeps the `k` most similar and/or those above a threshold |
/// | [`RedundancyFilter`] | embedder | drops documents nearly identical to a better one |
///
/// Structured output (a JSON Schema the local model decodes under a grammar) means every verdict
/// parses; a reply that still does not fit is an [`Error::Parse`].
#[derive(Debug, Clone)]
pub struct RerankingRetriever {
    retriever: Arc<dyn Retriever>,
    reranker: Arc<dyn Reranker>,
    top_n: Option<usize>,
}

impl RerankingRetriever {
    /// Retrieves with `retriever`, then reranks with `reranker`.
    pub fn new(retriever: Arc<dyn Retriever>, reranker: Arc<dyn Reranker>) -> Self {
        Self { retriever, reranker, top_n: None }
    }

    /// Keep at most `n` documents after reranking.
    #[must_use]
    pub fn with_top_n(mut self, n: usize) -> Self {
        self.top_n = Some(n);
        self
    }
}

#[async_trait]
impl Retriever for RerankingRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.top_n.unwrap_or(1))?;
        let candidates = self.retriever.retrieve(query, ctx).await?;
        let mut out = catena_core::telemetry::observe_retrieval(
            ctx,
            "rerank",
            "reranker",
            query,
            self.reranker.rerank(query, candidates, ctx),
        )
        .await?;
        if let Some(n) = self.top_n {
            out.truncate(n);
        }
        Ok(crate::retrieved(ctx, query, out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel};
    use catena_core::{Document, ErrorKind};

    fn docs(texts: &[&str]) -> Vec<ScoredDocument> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| ScoredDocument::new(Document::new(*t), 1.0 - i as f32 * 0.1))
            .collect()
    }

    #[tokio::test]
    async fn pointwise_sorts_by_rating_and_drops_zeros() {
        let model =
            Arc::new(ScriptedChatModel::new([r#"{"rating": 2}"#, r#"{"rating": 9}"#, r#"{"rating": 0}"#]));
        let out = LlmRelevanceReranker::new(model)
            .rerank("q", docs(&["a", "b", "c"]), &RunContext::new())
            .await
            .unwrap();
        assert_eq!(out.iter().map(|d| d.document.content.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert!((out[0].score - 0.9).abs() < 1e-6);
        let bad = Arc::new(ScriptedChatModel::new([r#"{"rating": 11}"#]));
        let err =
            LlmRelevanceReranker::new(bad).rerank("q", docs(&["a"]), &RunContext::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Parse);
    }

    #[tokio::test]
    async fn listwise_repairs_sloppy_rankings() {
        let model = Arc::new(ScriptedChatModel::new([r#"{"ranking": [3, 3, 9, 1]}"#]));
        let out = LlmListwiseReranker::new(model)
            .rerank("q", docs(&["a", "b", "c"]), &RunContext::new())
            .await
            .unwrap();
        assert_eq!(out.iter().map(|d| d.document.content.as_str()).collect::<Vec<_>>(), ["c", "a", "b"]);
    }

    #[tokio::test]
    async fn filter_and_extractor() {
        let model = Arc::new(ScriptedChatModel::new([r#"{"relevant": false}"#, r#"{"relevant": true}"#]));
        let out = LlmFilter::new(model).rerank("q", docs(&["a", "b"]), &RunContext::new()).await.unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].document.content, "b");
        let model = Arc::new(ScriptedChatModel::new([
            r#"{"sentences": ["Rust is fast.", "Made up sentence."]}"#,
            r#"{"sentences": []}"#,
        ]));
        let out = LlmExtractor::new(model)
            .rerank("speed?", docs(&["Rust is fast. It is also safe.", "Unrelated."]), &RunContext::new())
            .await
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].document.content, "Rust is fast.", "only verbatim sentences survive");
    }

    #[tokio::test]
    async fn embedding_filters() {
        let e = Arc::new(DeterministicEmbedder::new(64));
        let out = EmbeddingsFilter::new(e.clone())
            .with_k(Some(1))
            .rerank("rust borrow checker", docs(&["python", "rust borrow checker", "go"]), &RunContext::new())
            .await
            .unwrap();
        assert_eq!(out[0].document.content, "rust borrow checker");
        assert!(out[0].score > 0.99);
        let out = RedundancyFilter::new(e.clone())
            .rerank("q", docs(&["same text", "other", "same text"]), &RunContext::new())
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|d| d.document.content.as_str()).collect::<Vec<_>>(),
            ["same text", "other"]
        );
        let err = EmbeddingsFilter::new(e)
            .with_k(None)
            .rerank("q", docs(&["a"]), &RunContext::new())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
