//! Keyword search inside LanceDB: BM25 over the table's full-text index.

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::{Filter, Result, RunContext, ScoredDocument};

use super::LanceDbStore;

/// Keyword search over a [`LanceDbStore`]'s full-text index as a [`Retriever`](catena_core::Retriever):
/// BM25 inside LanceDB, for collections too large to index again in memory.
#[derive(Debug, Clone)]
pub struct LanceKeywordRetriever {
    store: Arc<LanceDbStore>,
    k: usize,
    filter: Option<Filter>,
}

impl LanceKeywordRetriever {
    /// Searches `store` (whose full-text index must exist: [`LanceDbStore::create_fts_index`]).
    #[must_use]
    pub fn new(store: Arc<LanceDbStore>) -> Self {
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
impl catena_core::Retriever for LanceKeywordRetriever {
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        let filter = catena_core::security::scoped_filter(self.filter.as_ref(), ctx);
        let hits = self.store.keyword_search(query, self.k, filter.as_ref()).await?;
        crate::emit_retrieved(ctx, query, &hits);
        Ok(hits)
    }
}
