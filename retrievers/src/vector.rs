//! [`VectorStoreRetriever`]: similarity search as a [`Retriever`].

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Embedder, Filter, Result, Retriever, RunContext, ScoredDocument, VectorStore};

/// Embeds the query with `embedder` and returns the `k` nearest documents of `store` (default 4),
/// optionally only those matching a metadata filter or scoring at least a threshold.
#[derive(Debug, Clone)]
pub struct VectorStoreRetriever {
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    k: usize,
    filter: Option<Filter>,
    score_threshold: Option<f32>,
}

impl VectorStoreRetriever {
    /// Searches `store` with vectors from `embedder`.
    pub fn new(store: Arc<dyn VectorStore>, embedder: Arc<dyn Embedder>) -> Self {
        Self { store, embedder, k: 4, filter: None, score_threshold: None }
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

    /// Drops documents scoring below `threshold`.
    #[must_use]
    pub fn with_score_threshold(mut self, threshold: f32) -> Self {
        self.score_threshold = Some(threshold);
        self
    }
}

#[async_trait]
impl Retriever for VectorStoreRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(query, self.k)?;
        let vector = self.embedder.embed_one(query, ctx).await?;
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let mut hits = self.store.search(&vector, self.k, filter.as_ref()).await?;
        if let Some(t) = self.score_threshold {
            hits.retain(|h| h.score >= t);
        }
        crate::emit_retrieved(ctx, query, &hits);
        Ok(hits)
    }
}
