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
//! Every item is at the crate root (the modules are private: one path per item), except the test
//! doubles in `testing` (feature `testing`), the output defences in [`security`] and the span helpers for component authors in
//! [`telemetry`] (OpenTelemetry's GenAI conventions).
//!
//! **Documents and messages**: [`Document`], [`ScoredDocument`], [`Metadata`], [`Filter`] (typed
//! metadata conditions every store evaluates); [`Message`], [`ChatRequest`] (messages, tools,
//! [`ToolChoice`], [`ResponseFormat`], [`Sampling`]), [`ChatResponse`], [`ChatDelta`] and
//! [`DeltaAccumulator`] for streams, [`Usage`], [`FinishReason`].
//!
//! **Components**, each object-safe, used behind `Arc<dyn _>`, and a [`Runnable`]:
//!
//! | trait | as a `Runnable` |
//! |---|---|
//! | [`ChatModel`] | `ChatRequest -> ChatResponse` (streams partial responses) |
//! | [`Embedder`] | `Vec<String> -> Vec<Vec<f32>>` |
//! | [`VectorStore`] | [`VectorQuery`] `-> Vec<ScoredDocument>` |
//! | [`Retriever`] | `String -> Vec<ScoredDocument>` |
//! | [`Reranker`] | [`RerankInput`] `-> Vec<ScoredDocument>` |
//! | [`Tool`] (and [`TypedTool`], [`macro@tool`]; [`ToolExt`] renames or redescribes one) | `serde_json::Value -> ToolOutput` |
//! | [`Memory`], [`Loader`], [`Splitter`], [`Tokenizer`] | |
//!
//! **Composition**: [`Runnable`] and the combinators of [`RunnableExt`] ([`Pipe`], [`Map`],
//! [`Parallel`], [`Passthrough`] / [`Assign`], [`Retry`] with a [`RetryPolicy`], [`Fallbacks`],
//! [`Timeout`]), [`from_fn`]; prompts ([`PromptTemplate`], [`ChatPromptTemplate`],
//! [`FewShotPromptTemplate`]); output parsers ([`StrOutputParser`], [`JsonOutputParser`]).
//!
//! **Structured output**: [`ModelSchema`] (the JSON Schema a model sees for a type, refined at run
//! time), [`structured`] / [`structured_with`] (ask and parse), [`model_schema`].
//!
//! **Running**: [`RunContext`] (cancellation, tracing span, [`Event`]s to an [`EventSink`],
//! [`Limits`], the run's tokens and cost as a [`UsageReport`] priced by a [`PriceTable`]); [`Error`] with its [`ErrorKind`] (and [`ModelErrorKind`]), causes kept as
//! [`BoxError`] sources.
//!
//! **Remote models and evaluation helpers**: [`CallLimits`] / [`Limiter`] / [`Failure`] (timeout
//! per attempt, retries honouring `Retry-After`, concurrency, all cancellable);
//! [`FallbackChatModel`] (the next model answers when one fails); [`CachedChatModel`] /
//! [`ChatCache`] and [`CachedEmbedder`] / [`EmbeddingCache`] (repeated calls answered from a
//! cache, evaluation re-runs for free).
//!
//! **Security** ([`security`]): [`Defences`](security::Defences) and the per-request
//! [`Guard`](security::Guard) — untrusted text marked as data (spotlighting), canaries and
//! secret patterns that stop a leaking output, and answers cleaned of links to unknown hosts.
//!
//! **Testing** (feature `testing`): the `testing` module, a scripted chat model and a deterministic embedder.

mod cache;
mod context;
mod document;
mod error;
mod fallback;
mod filter;
mod limits;
mod message;
mod output;
mod prompt;
mod replicas;
mod runnable;
pub mod security;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
mod traits;
mod usage;

pub use async_trait::async_trait;
pub use cache::{Cache, CachedChatModel, CachedEmbedder, ChatCache, EmbeddingCache};
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
pub use context::{Event, EventSink, Limits, LogLevel, RunContext};
pub use document::{Document, Metadata, ScoredDocument};
pub use error::{BoxError, Error, ErrorKind, ModelErrorKind, Result};
pub use fallback::FallbackChatModel;
pub use filter::Filter;
pub use limits::{CallLimits, Failure, Limiter};
pub use message::{
    ChatDelta, ChatRequest, ChatResponse, DeltaAccumulator, FinishReason, Message, ResponseFormat, Role,
    Sampling, ToolCall, ToolChoice, ToolSpec, Usage,
};
pub use output::{JsonOutputParser, ModelSchema, StrOutputParser, model_schema, structured, structured_with};
pub use prompt::{ChatPromptTemplate, FewShotPromptTemplate, PromptTemplate};
pub use replicas::{EjectionPolicy, HealthProbe, Replica, ReplicaSet, ReplicaStatus};
pub use runnable::{
    Assign, BoxRunnable, Fallbacks, FnRunnable, Map, Parallel, Passthrough, Pipe, Retry, RetryPolicy,
    Runnable, RunnableExt, Timeout, from_fn,
};
pub use traits::{
    ChatModel, Described, Embedded, Embedder, Loader, Memory, RerankInput, Reranker, Retriever, Splitter,
    Tokenizer, Tool, ToolExt, ToolOutput, TypedTool, VectorQuery, VectorStore, cosine_similarity,
};
pub use usage::{ModelPrice, ModelUsage, PriceTable, UsageReport};

/// The names most programs need: `use catena_core::prelude::*;`.
pub mod prelude {
    pub use crate::{
        ChatModel, ChatPromptTemplate, ChatRequest, ChatResponse, Document, Embedder, Error, Message,
        PromptTemplate, Reranker, Result, Retriever, RetryPolicy, RunContext, Runnable, RunnableExt,
        ScoredDocument, StrOutputParser, Tool, ToolExt, TypedTool, VectorStore,
    };
}

/// What `#[tool]`'s generated code names, so it compiles without the user's crate depending on
/// serde or schemars itself. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use schemars;
    pub use serde;
}
