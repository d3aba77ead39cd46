//! # catena-retrievers
//!
//! Where documents go after embedding, and how they come back for a query.
//!
//! ```
//! use std::sync::Arc;
//! use catena_core::{Document, Retriever, RunContext, testing::DeterministicEmbedder};
//! use catena_retrievers::{InMemoryVectorStore, VectorStoreRetriever, index_documents};
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let ctx = RunContext::new();
//! let embedder = Arc::new(DeterministicEmbedder::new(64));
//! let store = Arc::new(InMemoryVectorStore::new());
//! let docs = vec![Document::new("Rust has ownership and borrowing."), Document::new("Paris is in France.")];
//! index_documents(&docs, embedder.as_ref(), store.as_ref(), 32, &ctx).await.unwrap();
//!
//! let retriever = VectorStoreRetriever::new(store, embedder).with_k(1);
//! let hits = retriever.retrieve("borrowing in Rust", &ctx).await.unwrap();
//! assert_eq!(hits[0].document.content, "Rust has ownership and borrowing.");
//! # });
//! ```
//!
//! ## Contents
//! **Stores**
//! - [`InMemoryVectorStore`]: exact search (cosine, dot, L2) over vectors in memory; save/load.
//! - [`index_documents`]: embeds documents in batches and upserts them, with stable ids.
//!
//! **Retrievers** (each a [`Retriever`](catena_core::Retriever), so also a `Runnable`)
//! - [`VectorStoreRetriever`]: embeds the query and searches a store (k, filter, score threshold).
//! - [`MmrRetriever`]: maximal marginal relevance over a store ([`mmr`]).
//! - [`Bm25Retriever`]: Okapi BM25 keyword search ([`bm25`]), rank_bm25-exact on request.
//! - [`EnsembleRetriever`]: several retrievers fused by reciprocal rank or score ([`fusion`]).

pub mod bm25;
pub mod fusion;
mod index;
mod memory;
pub mod mmr;
mod vector;

pub use bm25::{Analyzer, Bm25Index, Bm25Params, Bm25Retriever};
pub use fusion::{EnsembleRetriever, Fusion, RankBase};
pub use index::{document_id, index_documents};
pub use memory::{Distance, InMemoryVectorStore};
pub use mmr::MmrRetriever;
pub use vector::VectorStoreRetriever;

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
