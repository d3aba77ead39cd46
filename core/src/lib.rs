//! # catena-core
//!
//! The vocabulary every catena crate speaks: documents and messages, the component traits, prompt
//! templates, errors, the run context, and [`Runnable`], the one composition trait chains are built
//! from. It has no heavy dependencies; backends live in sibling crates.
//!
//! ```
//! use catena_core::prelude::*;
//! use catena_core::testing::ScriptedChatModel;
//! use serde_json::json;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! // A prompt, a model and a parser, piped into one chain.
//! let prompt = ChatPromptTemplate::new().user("Say hello to {name}.")?;
//! let model = ScriptedChatModel::new(["Hello, Ferris!"]);
//! let chain = prompt.pipe(model).pipe(StrOutputParser);
//!
//! let answer = chain.invoke(json!({"name": "Ferris"}), &RunContext::new()).await?;
//! assert_eq!(answer, "Hello, Ferris!");
//! # Ok::<(), catena_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## Contents
//! - [`document`]: [`Document`], [`ScoredDocument`], metadata.
//! - [`message`]: [`Message`], [`ChatRequest`], [`ChatResponse`], [`ChatDelta`], [`Usage`], sampling.
//! - [`traits`]: [`ChatModel`], [`Embedder`], [`VectorStore`], [`Retriever`], [`Reranker`], [`Tool`] /
//!   [`TypedTool`], [`Memory`], [`Loader`], [`Splitter`], [`Tokenizer`].
//! - [`runnable`]: [`Runnable`] and its combinators (pipe, map, parallel, assign, retry, fallbacks, timeout).
//! - [`prompt`]: [`PromptTemplate`], [`ChatPromptTemplate`], [`FewShotPromptTemplate`].
//! - [`output`]: [`StrOutputParser`], [`JsonOutputParser`], and structured replies:
//!   [`ModelSchema`](output::ModelSchema) (the schema a model sees) and [`structured`](output::structured).
//! - [`filter`]: [`Filter`], typed metadata filters.
//! - [`cache`]: [`CachedChatModel`](cache::CachedChatModel), replies to repeated requests from a
//!   [`ChatCache`](cache::ChatCache) in memory or on disk (evaluation re-runs for free).
//! - [`fallback`]: [`FallbackChatModel`](fallback::FallbackChatModel), the next model answers when
//!   one fails (streams fall back until their first delta).
//! - [`limits`]: [`CallLimits`](limits::CallLimits) and its [`Limiter`](limits::Limiter): timeout
//!   per attempt, retries honouring `Retry-After`, concurrency permits, all cancellable (remote models).
//! - [`context`]: [`RunContext`] (cancellation, tracing span, [`Event`]s, limits).
//! - [`error`]: [`Error`], [`ErrorKind`], [`Result`].
//! - [`tool`]: the `#[tool]` attribute, an `async fn` as a [`TypedTool`].
//! - `testing` (feature `testing`): a scripted chat model and a deterministic embedder.

pub mod cache;
pub mod context;
pub mod document;
pub mod error;
pub mod fallback;
pub mod filter;
pub mod limits;
pub mod message;
pub mod output;
pub mod prompt;
pub mod runnable;
#[cfg(feature = "testing")]
pub mod testing;
pub mod traits;

pub use async_trait::async_trait;
/// Turns an `async fn` into a tool: the function's doc comment is the description the model reads,
/// its parameters are the arguments (each parameter's doc comment describing it in the JSON
/// Schema), and a `&RunContext` parameter, if any, receives the run's context. The tool is a unit
/// struct named after the function in CamelCase (`convert_temperature` -> `ConvertTemperature`),
/// implementing [`TypedTool`]; the function stays callable as it was. The function returns
/// `Result<T>` for any `T: Into<ToolOutput>` (`String`, `&str`, [`ToolOutput`]).
/// `#[tool(name = "...")]` sets a name other than the function's.
///
/// ```
/// use catena_core::{Result, RunContext, Tool, tool};
///
/// /// Converts a temperature from Celsius to Fahrenheit.
/// #[tool]
/// async fn celsius_to_fahrenheit(
///     /// Degrees Celsius.
///     celsius: f64,
/// ) -> Result<String> {
///     Ok(format!("{:.1}", celsius * 9.0 / 5.0 + 32.0))
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let tool = CelsiusToFahrenheit;
/// assert_eq!(tool.name(), "celsius_to_fahrenheit");
/// assert_eq!(tool.description(), "Converts a temperature from Celsius to Fahrenheit.");
/// assert_eq!(tool.parameters()["properties"]["celsius"]["description"], "Degrees Celsius.");
/// let out = tool.call(serde_json::json!({"celsius": 100}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "212.0");
/// # });
/// ```
pub use catena_macros::tool;
pub use context::{Event, EventSink, Limits, RunContext};
pub use document::{Document, Metadata, ScoredDocument};
pub use error::{Error, ErrorKind, ModelErrorKind, Result};
pub use filter::Filter;
pub use message::{
    ChatDelta, ChatRequest, ChatResponse, DeltaAccumulator, FinishReason, Message, ResponseFormat, Role,
    Sampling, ToolCall, ToolChoice, ToolSpec, Usage,
};
pub use output::{JsonOutputParser, StrOutputParser};
pub use prompt::{ChatPromptTemplate, FewShotPromptTemplate, PromptTemplate};
pub use runnable::{BoxRunnable, Parallel, Passthrough, RetryPolicy, Runnable, RunnableExt};
pub use traits::{
    ChatModel, Embedded, Embedder, Loader, Memory, RerankInput, Reranker, Retriever, Splitter, Tokenizer,
    Tool, ToolOutput, TypedTool, VectorQuery, VectorStore, cosine_similarity,
};

/// The names most programs need: `use catena_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ChatModel, ChatPromptTemplate, ChatRequest, ChatResponse, Document, Embedder, Error, Message,
        PromptTemplate, Reranker, Result, Retriever, RetryPolicy, RunContext, Runnable, RunnableExt,
        ScoredDocument, StrOutputParser, Tool, TypedTool, VectorStore,
    };
}

/// What `#[tool]`'s generated code names, so it compiles without the user's crate depending on
/// serde or schemars itself. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}
