//! Keyword search inside PostgreSQL: full-text search over the collection's `tsvector` column.

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Filter, Result, RunContext, ScoredDocument};

use super::PgVectorStore;

/// Keyword search over a [`PgVectorStore`] as a [`Retriever`](catena_core::Retriever):
/// PostgreSQL's full-text search, so hybrid retrieval (this plus a vector retriever in an
/// [`EnsembleRetriever`](crate::EnsembleRetriever)) runs inside one database.
#[derive(Debug, Clone)]
pub struct PgKeywordRetriever {
    store: Arc<PgVectorStore>,
    k: usize,
    filter: Option<Filter>,
}

impl PgKeywordRetriever {
    /// Searches `store`'s keyword column (every collection has one; nothing to build).
    #[must_use]
    pub fn new(store: Arc<PgVectorStore>) -> Self {
        Self { store, k: 4, filter: None }
    }

    /// How many documents to return (default 4).
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
}

#[async_trait]
impl catena_core::Retriever for PgKeywordRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let hits = self.store.keyword_search(query, self.k, filter.as_ref()).await?;
        crate::emit_retrieved(ctx, query, &hits);
        Ok(hits)
    }
}
