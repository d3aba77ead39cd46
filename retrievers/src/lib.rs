//! # catena-retrievers
//!
//! Where documents go after embedding, and how they come back for a query.
//!
//! ```
//! use std::sync::Arc;
//! use catena_core::{Document, Retriever, RunContext, testing::DeterministicEmbedder};
//! use catena_retrievers::{Bm25Retriever, EnsembleRetriever, InMemoryVectorStore, VectorStoreRetriever, index_documents};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let ctx = RunContext::new();
//! let embedder = Arc::new(DeterministicEmbedder::new(64));
//! let store = Arc::new(InMemoryVectorStore::new());
//! let docs = vec![Document::new("Rust has ownership and borrowing."), Document::new("Paris is in France.")];
//! index_documents(&docs, embedder.as_ref(), store.as_ref(), 32, &ctx).await.unwrap();
//!
//! let retriever = VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(1);
//! let hits = retriever.retrieve("borrowing in Rust", &ctx).await.unwrap();
//! assert_eq!(hits[0].document.content, "Rust has ownership and borrowing.");
//!
//! // Hybrid search: keywords and vectors, fused by reciprocal rank.
//! let keywords: Arc<dyn Retriever> = Arc::new(Bm25Retriever::from_documents(docs).unwrap());
//! let vectors: Arc<dyn Retriever> = Arc::new(VectorStoreRetriever::new(store, embedder));
//! let hybrid = EnsembleRetriever::new(vec![keywords, vectors]).with_k(1);
//! let hits = hybrid.retrieve("Which city is in France?", &ctx).await.unwrap();
//! assert_eq!(hits[0].document.content, "Paris is in France.");
//! # });
//! ```
//!
//! ## Contents
//! Every item is at the crate root (the modules are private: one path per item).
//!
//! **Stores**
//! - [`InMemoryVectorStore`]: exact search ([`Distance`]: cosine, dot, L2) over vectors in
//!   memory; save/load.
//! - [`LanceDbStore`] (feature `lancedb`, on by default): an embedded LanceDB table with typed
//!   metadata filters ([`FieldKind`]), ANN indexes ([`VectorIndex`]), full-text search
//!   ([`LanceKeywordRetriever`]).
//! - [`PgVectorStore`] (feature `pgvector`): a PostgreSQL table with the pgvector extension,
//!   shared by many servers: any-field metadata filters as parameterised SQL, HNSW/IVFFlat
//!   indexes ([`PgIndex`], [`PgVectorOptions`]), full-text search ([`PgKeywordRetriever`]).
//! - [`index_documents`]: embeds documents in batches and upserts them, with stable ids
//!   ([`document_id`]).
//!
//! **Retrievers** (each a [`Retriever`](catena_core::Retriever), so also a `Runnable`)
//! - [`VectorStoreRetriever`]: embeds the query and searches a store (k, filter, score threshold).
//! - [`MmrRetriever`]: [`maximal_marginal_relevance`] over a store: relevant and varied.
//! - [`Bm25Retriever`]: Okapi BM25 keyword search ([`Bm25Index`], [`Bm25Params`], [`Analyzer`]),
//!   rank_bm25-exact on request.
//! - [`EnsembleRetriever`]: several retrievers fused ([`Fusion`]: reciprocal rank, relative score,
//!   distribution-based; [`fuse`]); hybrid search is BM25 + vector.
//! - [`HydeRetriever`], [`MultiQueryRetriever`] (and RAG-fusion): query expansion with a chat model.
//! - [`RerankingRetriever`] with the rerankers and compressors: [`LlmRelevanceReranker`],
//!   [`LlmListwiseReranker`], [`LlmFilter`], [`LlmExtractor`], [`EmbeddingsFilter`],
//!   [`RedundancyFilter`], chained by [`RerankerChain`].
//! - [`ParentDocumentRetriever`]: search small chunks, return their parents ([`ParentStore`]).
//! - [`SelfQueryRetriever`]: the model writes the search text and a typed metadata filter
//!   ([`SelfQueryReply`], [`StructuredQuery`]).
//!
//! Every retriever reports what it found to the run's event sink ([`Event::Retrieved`](catena_core::Event)).
//!
//! **Answers**: [`CitedAnswer`] (retriever → numbered sources → model → answer citing `[n]`,
//! streamed) and [`numbered_sources`] / [`citation`], how sources are shown to a model.
//!
//! **Indexing**: [`Indexer`] / [`index_with_cleanup`] skip unchanged chunks and delete stale ones
//! ([`Cleanup`]: none, incremental, full); [`Shard`] splits an ingestion between workers that
//! fill one shared store.

mod bm25;
mod cited;
mod expansion;
mod fusion;
mod index;
#[cfg(feature = "lancedb")]
mod lance;
mod memory;
mod mmr;
mod parent;
#[cfg(feature = "pgvector")]
mod pgvector;
mod rerank;
mod scan;
mod self_query;
mod vector;

pub use bm25::{Analyzer, Bm25Index, Bm25Params, Bm25Retriever, Idf};
pub use cited::{
    Answer, CITED_ANSWER_PROMPT, CitedAnswer, NO_SOURCES, citation, marked_sources, numbered_sources,
};
pub use expansion::{HYDE_PROMPT, HydeRetriever, MULTI_QUERY_PROMPT, MultiQueryRetriever};
pub use fusion::{EnsembleRetriever, Fusion, RankBase, fuse};
pub use index::{Cleanup, IndexReport, Indexer, Shard, document_id, index_documents, index_with_cleanup};
#[cfg(feature = "lancedb")]
pub use lance::{
    EXACT_SEARCH_ROWS, FieldKind, LanceDbStore, LanceKeywordRetriever, READ_CONSISTENCY, VectorIndex,
};
pub use memory::{Distance, InMemoryVectorStore};
pub use mmr::{MmrRetriever, maximal_marginal_relevance};
pub use parent::{InMemoryParentStore, PARENT_ID, ParentDocumentRetriever, ParentStore};
#[cfg(feature = "pgvector")]
pub use pgvector::{PgIndex, PgKeywordRetriever, PgVectorOptions, PgVectorStore};
pub use rerank::{
    EmbeddingsFilter, LlmExtractor, LlmFilter, LlmListwiseReranker, LlmRelevanceReranker, RedundancyFilter,
    RerankerChain, RerankingRetriever,
};
pub use self_query::{
    AttributeInfo, AttributeType, SelfQueryCondition, SelfQueryReply, SelfQueryRetriever, StructuredQuery,
};
pub use vector::VectorStoreRetriever;

/// Asks `model` for a reply under `schema` (greedy, at most `max_tokens`), read as `T`: how this
/// crate's chat-model components (query expansion, rerankers, self-query) get structured answers.
/// A reply that does not read as `T` is an `Error::Parse`.
pub(crate) async fn ask<T: serde::de::DeserializeOwned>(
    model: &dyn catena_core::ChatModel,
    prompt: String,
    schema: &catena_core::ModelSchema,
    max_tokens: u32,
    ctx: &catena_core::RunContext,
) -> catena_core::Result<T> {
    let request = catena_core::ChatRequest::new(vec![catena_core::Message::user(prompt)])
        .with_temperature(0.0)
        .with_max_tokens(max_tokens);
    catena_core::structured_with(model, request, schema, ctx).await
}

/// Tells the run's event sink what a retriever found (sources only; free when nobody listens),
/// and hands the hits back: every retriever ends with `Ok(retrieved(ctx, query, hits))`.
pub(crate) fn retrieved(
    ctx: &catena_core::RunContext,
    query: &str,
    hits: Vec<catena_core::ScoredDocument>,
) -> Vec<catena_core::ScoredDocument> {
    emit_retrieved(ctx, query, &hits);
    hits
}

/// Tells the run's event sink what a retriever found (sources only; free when nobody listens).
pub(crate) fn emit_retrieved(
    ctx: &catena_core::RunContext,
    query: &str,
    hits: &[catena_core::ScoredDocument],
) {
    if ctx.has_event_sink() {
        ctx.emit(catena_core::Event::Retrieved {
            query: query.to_owned(),
            count: hits.len(),
            sources: hits.iter().map(|h| h.document.source().unwrap_or("").to_owned()).collect(),
        });
    }
}

/// The checks a vector store makes on a search before any I/O: k of at least 1, a finite query.
#[cfg(any(feature = "lancedb", feature = "pgvector"))]
pub(crate) fn check_vector_query(query: &[f32], k: usize) -> catena_core::Result<()> {
    if k == 0 {
        return Err(catena_core::Error::invalid_input("k must be at least 1"));
    }
    if query.iter().any(|x| !x.is_finite()) {
        return Err(catena_core::Error::invalid_input("the query vector contains NaN or infinity"));
    }
    Ok(())
}

/// A vector (`what`: "the query vector", "a vector") against the size collection `collection`
/// holds: a mismatch almost always means the embedder changed, and the message says so.
#[cfg(any(feature = "lancedb", feature = "pgvector"))]
pub(crate) fn check_dimensions(
    what: &str,
    len: usize,
    dimensions: usize,
    collection: &str,
) -> catena_core::Result<()> {
    if len != dimensions {
        return Err(catena_core::Error::invalid_input(format!(
            "{what} has {len} dimensions but collection {collection:?} holds {dimensions}-dimensional vectors (was the embedder changed?)"
        )));
    }
    Ok(())
}

/// A vector to be stored: not empty, of the collection's size, finite.
#[cfg(any(feature = "lancedb", feature = "pgvector"))]
pub(crate) fn check_stored_vector(
    vector: &[f32],
    dimensions: usize,
    collection: &str,
) -> catena_core::Result<()> {
    if vector.is_empty() {
        return Err(catena_core::Error::invalid_input("cannot store an empty vector"));
    }
    check_dimensions("a vector", vector.len(), dimensions, collection)?;
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(catena_core::Error::invalid_input("a vector contains NaN or infinity"));
    }
    Ok(())
}

/// The checks every retriever makes before doing work: a query with text, and k of at least 1.
pub(crate) fn check_query(query: &str, k: usize) -> catena_core::Result<()> {
    if query.trim().is_empty() {
        return Err(catena_core::Error::invalid_input("the query is empty: give some text to search for"));
    }
    if k == 0 {
        return Err(catena_core::Error::invalid_input("k must be at least 1"));
    }
    Ok(())
}
