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
//! - [`InMemoryVectorStore`]: exact cosine search over vectors held in memory.
//! - [`VectorStoreRetriever`]: embeds the query and searches a store (k, filter, score threshold).
//! - [`index_documents`]: embeds documents in batches and upserts them, with stable ids.

mod index;
mod memory;
mod vector;

pub use index::{document_id, index_documents};
pub use memory::InMemoryVectorStore;
pub use vector::VectorStoreRetriever;
