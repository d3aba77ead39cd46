//! # catena
//!
//! Agent and RAG orchestration in Rust, in the spirit of LangChain and LlamaIndex, built to run
//! whole on one machine: an in-process llama.cpp model, an embedded vector store, no network.
//! Components (loaders, splitters, embedders, stores, retrievers, models, tools) are small traits
//! behind `Arc<dyn _>`; chains are built by piping [`Runnable`](core::Runnable)s together.
//!
//! This crate re-exports the others and adds the `catena` command-line tool.
//!
//! ```
//! use std::sync::Arc;
//! use catena::prelude::*;
//! use catena::core::testing::{DeterministicEmbedder, ScriptedChatModel};
//! use serde_json::json;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> catena::core::Result<()> {
//! let ctx = RunContext::new();
//!
//! // Split, embed and index some text. (Real programs use LlamaEmbedder::load_default().)
//! let embedder: Arc<dyn Embedder> = Arc::new(DeterministicEmbedder::new(64));
//! let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
//! let splitter = RecursiveCharacterSplitter::new(60, 0)?;
//! let docs = splitter.split_documents(&[Document::new(
//!     "catena splits documents with a recursive splitter.\n\nIt stores vectors in memory or LanceDB.",
//! )])?;
//! index_documents(&docs, embedder.as_ref(), store.as_ref(), 16, &ctx).await?;
//!
//! // Retrieve, then answer through a prompt and a model. (Real programs use LlamaChatModel.)
//! let retriever = VectorStoreRetriever::new(store, embedder).with_k(1);
//! let context = retriever.retrieve("How are documents split?", &ctx).await?;
//! let prompt = ChatPromptTemplate::new()
//!     .system("Answer from this context:\n{context}")?
//!     .user("{question}")?;
//! let model = ScriptedChatModel::new(["With a recursive splitter."]);
//! let chain = prompt.pipe(model).pipe(StrOutputParser);
//! let answer = chain
//!     .invoke(json!({"context": context[0].document.content, "question": "How are documents split?"}), &ctx)
//!     .await?;
//! assert_eq!(answer, "With a recursive splitter.");
//! # Ok(()) }
//! ```
//!
//! ## Contents
//! - [`core`]: documents, messages, component traits, prompts, [`Runnable`](core::Runnable) composition.
//! - [`models`]: llama.cpp chat and embedding models, default model files.
//! - [`loaders`]: text, markdown, HTML, PDF, JSON, CSV, directory and URL loaders.
//! - [`splitters`]: recursive, markdown, token and semantic splitters.
//! - [`retrievers`]: vector stores (in memory, LanceDB), BM25, hybrid fusion, MMR, HyDE,
//!   multi-query, RAG-fusion, rerankers, parent-document and self-query retrievers.
//! - [`query`]: query construction: text-to-SQL (SQLite, PostgreSQL) and text-to-Cypher (Neo4j),
//!   read-only by construction.
//! - [`tools`]: the tool registry (schema validation, policy, confirmation, timeouts) and the
//!   built-in tools: calculator, document search, files, date/time, web page, SQL, Cypher.
//! - [`agents`]: ReAct and native tool-calling agents, the executor that runs them, memories
//!   (buffer, window, token, summary, summary-buffer, vector) and SQLite sessions.
//! - [`eval`]: retrieval (trec_eval), text (BLEU, ROUGE, SQuAD) and RAG (Ragas) metrics, and a
//!   runner that scores a RAG pipeline over a dataset.
//! - [`redteam`]: catena's probes of prompt injection, leakage, exfiltration, encoding and XSS,
//!   run with the defences of `core::security` on and off (`catena redteam`).
//! - [`serve`] (feature `serve`): an OpenAI-compatible HTTP server for models and chains.
//! - [`telemetry`] (feature `otel`): catena's GenAI spans exported over OTLP when the standard
//!   `OTEL_EXPORTER_OTLP_*` variables are set; the run's tokens and cost are in
//!   [`RunContext::usage`](core::RunContext::usage).
//! - [`traces`] (feature `sqlite`): a local trace store, each run's spans in an SQLite file with
//!   retention by age and size; what `catena serve --console` shows.
//! - [`prelude`]: the names most programs use.

pub mod redteam;
#[cfg(feature = "serve")]
pub mod serve;
#[cfg(feature = "otel")]
pub mod telemetry;
#[cfg(feature = "sqlite")]
pub mod traces;

pub use catena_agents as agents;
pub use catena_core as core;
pub use catena_eval as eval;
pub use catena_loaders as loaders;
pub use catena_models as models;
pub use catena_query as query;
pub use catena_retrievers as retrievers;
pub use catena_splitters as splitters;
pub use catena_tools as tools;

/// The names most programs need: `use catena::prelude::*;`.
pub mod prelude {
    pub use catena_agents::{AgentExecutor, ReActAgent, ToolCallingAgent};
    pub use catena_core::prelude::*;
    pub use catena_core::{Event, Loader, Splitter};
    pub use catena_loaders::{DirectoryLoader, TextLoader};
    #[cfg(feature = "llama")]
    pub use catena_models::{LlamaChatModel, LlamaEmbedder, LlamaOptions};
    #[cfg(feature = "lancedb")]
    pub use catena_retrievers::LanceDbStore;
    pub use catena_retrievers::{
        Bm25Retriever, CitedAnswer, Cleanup, EnsembleRetriever, InMemoryVectorStore, MmrRetriever,
        VectorStoreRetriever, index_documents, index_with_cleanup,
    };
    pub use catena_splitters::RecursiveCharacterSplitter;
    pub use catena_tools::ToolRegistry;
}

/// The README's and the book's Rust snippets, compiled (and, where they need no model, run) as
/// doctests, so what the documentation shows is what builds.
#[cfg(doctest)]
mod documentation {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/getting-started.md")]
    struct GettingStarted;
    #[doc = include_str!("../docs/guides/agents.md")]
    struct Agents;
    #[doc = include_str!("../docs/guides/composition.md")]
    struct Composition;
    #[doc = include_str!("../docs/guides/evaluation.md")]
    struct Evaluation;
    #[doc = include_str!("../docs/guides/graphs.md")]
    struct Graphs;
    #[doc = include_str!("../docs/guides/mcp.md")]
    struct Mcp;
    #[doc = include_str!("../docs/guides/observability.md")]
    struct Observability;
    #[doc = include_str!("../docs/guides/local-models.md")]
    struct LocalModels;
    #[doc = include_str!("../docs/guides/remote-and-serving.md")]
    struct RemoteAndServing;
    #[doc = include_str!("../docs/guides/retrieval.md")]
    struct Retrieval;
    #[doc = include_str!("../docs/security.md")]
    struct Security;
    #[doc = include_str!("../docs/deployment.md")]
    struct Deployment;
    #[doc = include_str!("../docs/guides/splitting.md")]
    struct Splitting;
    #[doc = include_str!("../docs/guides/structured-data.md")]
    struct StructuredData;
    #[doc = include_str!("../docs/guides/tools.md")]
    struct Tools;
}
