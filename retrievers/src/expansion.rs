//! Query expansion with a chat model: [`HydeRetriever`] (search with the embedding of imagined
//! answers) and [`MultiQueryRetriever`] (search with rephrasings, then merge; with reciprocal-rank
//! fusion and the original query included, that is RAG-fusion).

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::ModelSchema;
use catena_core::{
    ChatModel, ChatRequest, Embedder, Error, Filter, Message, Result, Retriever, RunContext, ScoredDocument,
    VectorStore,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::document_id;
use crate::fusion::{Fusion, RankBase, fuse};

/// The model's rephrasings (at most 10 per call; the count is pinned per request).
#[derive(Deserialize, JsonSchema)]
struct Rephrasings {
    #[schemars(inner(length(min = 1, max = 300)))]
    queries: Vec<String>,
}

/// The default HyDE instruction; `{question}` is replaced by the query.
pub const HYDE_PROMPT: &str = "Write a short passage, as it would appear in a reference document, that answers the question.\nQuestion: {question}\nPassage:";

/// Hypothetical document embeddings (Gao et al., 2022): the chat model writes `n` passages that
/// would answer the query, their embeddings are averaged (optionally together with the query's
/// own), and the store is searched with that vector. Helps when questions and documents are
/// phrased very differently.
#[derive(Debug, Clone)]
pub struct HydeRetriever {
    model: Arc<dyn ChatModel>,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn VectorStore>,
    n: usize,
    include_query: bool,
    k: usize,
    filter: Option<Filter>,
    prompt: String,
    max_tokens: u32,
}

impl HydeRetriever {
    /// One hypothetical passage, query embedding not included, k 4.
    pub fn new(model: Arc<dyn ChatModel>, embedder: Arc<dyn Embedder>, store: Arc<dyn VectorStore>) -> Self {
        Self {
            model,
            embedder,
            store,
            n: 1,
            include_query: false,
            k: 4,
            filter: None,
            prompt: HYDE_PROMPT.to_owned(),
            max_tokens: 200,
        }
    }

    /// How many passages to imagine (each sampled with its own seed).
    #[must_use]
    pub fn with_passages(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Also average in the query's own embedding (as the HyDE paper does).
    #[must_use]
    pub fn with_query_embedding(mut self, include: bool) -> Self {
        self.include_query = include;
        self
    }

    /// How many documents to return.
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Only documents whose metadata match.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The instruction, with `{question}` where the query goes.
    #[must_use]
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// Longest passage, in tokens (default 200).
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// The passages the model imagines for `query`.
    ///
    /// # Errors
    /// Model errors; [`Error::Parse`] when the model returns only empty passages.
    pub async fn passages(&self, query: &str, ctx: &RunContext) -> Result<Vec<String>> {
        let prompt = self.prompt.replace("{question}", query);
        let requests = (0..self.n.max(1)).map(|i| {
            let mut request = ChatRequest::new(vec![Message::user(prompt.clone())]);
            request.sampling.max_tokens = Some(self.max_tokens);
            if self.n > 1 {
                request.sampling.temperature = Some(0.7);
                request.sampling.seed = Some(u32::try_from(i).unwrap_or(0) + 1);
            } else {
                request.sampling.temperature = Some(0.0);
            }
            self.model.chat(request, ctx)
        });
        let replies = futures::future::try_join_all(requests).await?;
        let passages: Vec<String> = replies
            .into_iter()
            .map(|r| r.message.content.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if passages.is_empty() {
            return Err(Error::parse("hypothetical passage", "the model wrote nothing to embed"));
        }
        Ok(passages)
    }
}

#[async_trait]
impl Retriever for HydeRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k)?;
        let mut texts = self.passages(query, ctx).await?;
        if self.include_query {
            texts.push(query.to_owned());
        }
        let vectors = self.embedder.embed(&texts, ctx).await?;
        let dims = vectors.first().map_or(0, Vec::len);
        if dims == 0 || vectors.iter().any(|v| v.len() != dims) {
            return Err(Error::model_permanent("the embedder returned vectors of different lengths"));
        }
        let mut mean = vec![0.0f32; dims];
        for v in &vectors {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += x / vectors.len() as f32;
            }
        }
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let hits = self.store.search(&mean, self.k, filter.as_ref()).await?;
        Ok(crate::retrieved(ctx, query, hits))
    }
}

/// The default multi-query instruction; `{n}` and `{question}` are filled in.
pub const MULTI_QUERY_PROMPT: &str = "Write {n} different versions of the user's question, to search a document database \
from several angles: vary the wording, use synonyms, and make implicit terms explicit. Keep each one self-contained.\n\
Question: {question}";

/// Asks the chat model for `n` rephrasings of the query (as structured output, so nothing depends
/// on how the model formats a list), retrieves with each, and merges: by default the ordered
/// union of the results, each document once (LangChain's `MultiQueryRetriever`); with
/// [`with_fusion`](Self::with_fusion), reciprocal-rank fusion of the lists. [`rag_fusion`](Self::rag_fusion)
/// is the RAG-fusion recipe: the original query included, lists fused with RRF (ranks from 0).
#[derive(Debug, Clone)]
pub struct MultiQueryRetriever {
    model: Arc<dyn ChatModel>,
    retriever: Arc<dyn Retriever>,
    n: usize,
    include_original: bool,
    fusion: Option<Fusion>,
    k: Option<usize>,
    prompt: String,
}

impl MultiQueryRetriever {
    /// Three rephrasings, original not included, ordered unique union.
    pub fn new(model: Arc<dyn ChatModel>, retriever: Arc<dyn Retriever>) -> Self {
        Self {
            model,
            retriever,
            n: 3,
            include_original: false,
            fusion: None,
            k: None,
            prompt: MULTI_QUERY_PROMPT.to_owned(),
        }
    }

    /// RAG-fusion: four rephrasings plus the original, fused by RRF (c 60, ranks from 0).
    pub fn rag_fusion(model: Arc<dyn ChatModel>, retriever: Arc<dyn Retriever>) -> Self {
        Self::new(model, retriever)
            .with_queries(4)
            .with_original(true)
            .with_fusion(Fusion::Rrf { c: 60.0, rank_base: RankBase::Zero })
    }

    /// How many rephrasings to ask for (1 to 10).
    #[must_use]
    pub fn with_queries(mut self, n: usize) -> Self {
        self.n = n;
        self
    }

    /// Also retrieve with the query as given.
    #[must_use]
    pub fn with_original(mut self, include: bool) -> Self {
        self.include_original = include;
        self
    }

    /// Fuse the lists instead of taking their ordered union.
    #[must_use]
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = Some(fusion);
        self
    }

    /// Keep only the first `k` merged documents.
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = Some(k);
        self
    }

    /// The instruction, with `{n}` and `{question}` placeholders.
    #[must_use]
    pub fn with_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = prompt.into();
        self
    }

    /// The rephrasings the model writes for `query` (distinct, non-empty, at most `n`).
    ///
    /// # Errors
    /// Model errors; [`Error::Parse`] when the reply is not the expected structure.
    pub async fn rephrasings(&self, query: &str, ctx: &RunContext) -> Result<Vec<String>> {
        let schema = ModelSchema::of::<Rephrasings>().with_items("/properties/queries", 1, self.n)?;
        let prompt = self.prompt.replace("{n}", &self.n.to_string()).replace("{question}", query);
        let max_tokens = 120 * u32::try_from(self.n).unwrap_or(10);
        let reply: Rephrasings = crate::ask(self.model.as_ref(), prompt, &schema, max_tokens, ctx).await?;
        let mut out: Vec<String> = Vec::new();
        for text in &reply.queries {
            let text = text.trim();
            if !text.is_empty() && text != query.trim() && !out.iter().any(|q| q == text) {
                out.push(text.to_owned());
            }
        }
        out.truncate(self.n);
        Ok(out)
    }
}

#[async_trait]
impl Retriever for MultiQueryRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k.unwrap_or(1))?;
        if !(1..=10).contains(&self.n) {
            return Err(Error::invalid_input(format!("ask for 1 to 10 rephrasings, not {}", self.n)));
        }
        let mut queries = Vec::new();
        if self.include_original {
            queries.push(query.to_owned());
        }
        queries.extend(self.rephrasings(query, ctx).await?);
        if queries.is_empty() {
            // The model only repeated the question: search with it rather than with nothing.
            queries.push(query.to_owned());
        }
        let lists =
            futures::future::try_join_all(queries.iter().map(|q| self.retriever.retrieve(q, ctx))).await?;
        let mut merged = match self.fusion {
            Some(fusion) => fuse(&lists, &vec![1.0; lists.len()], fusion)?,
            None => {
                let mut seen = std::collections::HashSet::new();
                lists.into_iter().flatten().filter(|h| seen.insert(document_id(&h.document))).collect()
            }
        };
        if let Some(k) = self.k {
            merged.truncate(k);
        }
        Ok(crate::retrieved(ctx, query, merged))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::{Bm25Retriever, InMemoryVectorStore, index_documents};
    use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel};
    use catena_core::{Document, ErrorKind, ResponseFormat};

    fn bm25() -> Arc<dyn Retriever> {
        let docs = [
            "rust ownership and borrowing",
            "python garbage collection",
            "rust memory safety",
            "paris france",
        ];
        Arc::new(
            Bm25Retriever::from_documents(docs.iter().map(|d| Document::new(*d)).collect())
                .unwrap()
                .with_k(2),
        )
    }

    #[tokio::test]
    async fn multi_query_unions_in_order_and_fusion_ranks() {
        let model = Arc::new(ScriptedChatModel::new([
            r#"{"queries": ["memory safety", "garbage collection", "memory safety"]}"#,
        ]));
        let mq = MultiQueryRetriever::new(model.clone(), bm25());
        let hits = mq.retrieve("rust ownership", &RunContext::new()).await.unwrap();
        let contents: Vec<&str> = hits.iter().map(|h| h.document.content.as_str()).collect();
        assert_eq!(contents, ["rust memory safety", "python garbage collection"]);
        let request = &model.requests()[0];
        assert!(matches!(request.response_format, Some(ResponseFormat::JsonSchema { .. })));

        let model = Arc::new(ScriptedChatModel::new([r#"{"queries": ["rust memory"]}"#]));
        let fused = MultiQueryRetriever::rag_fusion(model, bm25())
            .retrieve("rust ownership", &RunContext::new())
            .await
            .unwrap();
        assert_eq!(fused.len(), 2);
        assert_eq!(
            fused[0].document.content, "rust ownership and borrowing",
            "equal fused scores keep first appearance"
        );
        assert!((f64::from(fused[0].score) - (1.0 / 60.0 + 1.0 / 61.0)).abs() < 1e-6, "ranks count from 0");
    }

    #[tokio::test]
    async fn a_reply_of_the_wrong_shape_is_a_parse_error() {
        let model = Arc::new(ScriptedChatModel::new([r#"{"questions": ["x"]}"#]));
        let err =
            MultiQueryRetriever::new(model, bm25()).retrieve("q", &RunContext::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Parse);
        let model = Arc::new(ScriptedChatModel::new(["1. first\n2. second"]));
        let err =
            MultiQueryRetriever::new(model, bm25()).retrieve("q", &RunContext::new()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Parse);
    }

    #[tokio::test]
    async fn hyde_searches_with_the_mean_of_passage_embeddings() {
        let embedder = Arc::new(DeterministicEmbedder::new(32));
        let store = Arc::new(InMemoryVectorStore::new());
        let docs: Vec<Document> =
            ["the mitochondria is the powerhouse of the cell", "tax forms are due in april"]
                .iter()
                .map(|d| Document::new(*d))
                .collect();
        index_documents(&docs, embedder.as_ref(), store.as_ref(), 8, &RunContext::new()).await.unwrap();
        let model = Arc::new(ScriptedChatModel::new(["the mitochondria is the powerhouse of the cell"]));
        let hyde = HydeRetriever::new(model.clone(), embedder, store).with_k(1);
        let hits = hyde.retrieve("what makes energy in cells?", &RunContext::new()).await.unwrap();
        assert_eq!(hits[0].document.content, docs[0].content);
        assert!(hits[0].score > 0.99, "the passage embeds exactly as the document");
        assert!(model.requests()[0].messages[0].content.contains("what makes energy in cells?"));
        let empty = HydeRetriever::new(
            Arc::new(ScriptedChatModel::new(["   "])),
            Arc::new(DeterministicEmbedder::new(32)),
            Arc::new(InMemoryVectorStore::new()),
        );
        assert_eq!(empty.retrieve("q", &RunContext::new()).await.unwrap_err().kind(), ErrorKind::Parse);
    }
}
