//! The component traits. Each is object-safe and used behind `Arc<dyn _>`; each is also a
//! [`Runnable`], so components compose with the combinators of [`RunnableExt`](crate::RunnableExt).
//!
//! | trait | as a `Runnable` |
//! |---|---|
//! | [`ChatModel`] | `ChatRequest -> ChatResponse` (streams partial responses) |
//! | [`Embedder`] | `Vec<String> -> Vec<Vec<f32>>` |
//! | [`VectorStore`] | [`VectorQuery`] `-> Vec<ScoredDocument>` |
//! | [`Retriever`] | `String -> Vec<ScoredDocument>` |
//! | [`Reranker`] | [`RerankInput`] `-> Vec<ScoredDocument>` |
//! | [`Tool`] (and [`TypedTool`]) | `serde_json::Value -> ToolOutput` |
//! | [`Memory`] | `() -> Vec<Message>` |
//! | [`Loader`] | `() -> Vec<Document>` |
//! | [`Splitter`] | `Vec<Document> -> Vec<Document>` |

use async_trait::async_trait;
use futures::stream::{self, BoxStream, TryStreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    ChatDelta, ChatRequest, ChatResponse, Document, Error, Filter, Message, Result, RunContext, Runnable,
    ScoredDocument, ToolSpec,
};

/// A model that answers a conversation: local (llama.cpp), remote (OpenAI-compatible, rig), or
/// scripted for tests.
///
/// Implementors provide [`chat`](ChatModel::chat) and, when they can produce text incrementally,
/// [`chat_stream`](ChatModel::chat_stream). A model that emits tokens should also send
/// [`Event::Token`](crate::Event::Token) to the run context, so a chain's caller can stream tokens
/// even from inside `invoke`.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Produces the whole reply.
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse>;

    /// Produces the reply as deltas; the last one carries the finish reason and usage.
    /// The default yields one delta with the whole reply of [`chat`](ChatModel::chat).
    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        Box::pin(stream::once(async move { self.chat(request, ctx).await.map(ChatDelta::from) }))
    }

    /// A name for logs and `GET /v1/models`.
    fn model_name(&self) -> &str {
        "chat-model"
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> Runnable<ChatRequest, ChatResponse> for T {
    async fn invoke(&self, input: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        self.chat(input, ctx).await
    }

    /// Yields one partial [`ChatResponse`] per delta: its message holds that delta's text only.
    fn stream<'a>(&'a self, input: ChatRequest, ctx: &'a RunContext) -> BoxStream<'a, Result<ChatResponse>> {
        Box::pin(self.chat_stream(input, ctx).map_ok(|delta| {
            let mut acc = crate::DeltaAccumulator::default();
            acc.push(delta);
            acc.finish()
        }))
    }
}

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync {
    /// One vector per text, in order, each of [`dimensions`](Embedder::dimensions) floats.
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>>;

    /// The length of every vector.
    fn dimensions(&self) -> usize;

    /// Embeds one text.
    async fn embed_one(&self, text: &str, ctx: &RunContext) -> Result<Vec<f32>> {
        self.embed(&[text.to_owned()], ctx)
            .await?
            .pop()
            .ok_or_else(|| Error::model_permanent("embedder returned no vector for one input"))
    }
}

#[async_trait]
impl<T: Embedder + ?Sized> Runnable<Vec<String>, Vec<Vec<f32>>> for T {
    async fn invoke(&self, input: Vec<String>, ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        self.embed(&input, ctx).await
    }
}

/// A document and its vector, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedded {
    /// The document (its id is assigned on upsert when absent).
    pub document: Document,
    /// Its embedding.
    pub vector: Vec<f32>,
}

/// A nearest-neighbour query, for a [`VectorStore`] used as a [`Runnable`].
#[derive(Debug, Clone, PartialEq)]
pub struct VectorQuery {
    /// The query vector.
    pub vector: Vec<f32>,
    /// How many results.
    pub k: usize,
    /// Only documents whose metadata match.
    pub filter: Option<Filter>,
}

/// Cosine similarity of two vectors (their dot product over the product of their lengths); 0
/// when either is all zeros. Vectors of different lengths are compared over the shorter one.
#[must_use]
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let denominator = (aa * bb).sqrt();
    if denominator > 0.0 { ab / denominator } else { 0.0 }
}

/// Stores documents with their vectors and finds the nearest ones.
#[async_trait]
pub trait VectorStore: Send + Sync {
    /// Inserts, or replaces those with the same id. Returns the ids, in order.
    /// Either every record is written or none is.
    async fn upsert(&self, records: Vec<Embedded>) -> Result<Vec<String>>;

    /// The `k` documents nearest to `query` that match `filter`, most similar first. Scores are
    /// similarities (higher is closer); the store documents their scale.
    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>>;

    /// [`search`](VectorStore::search) for many queries at once: one result list per query, in
    /// the order asked. The default searches them one by one; a store that can answer a batch
    /// in one pass overrides it (the in-memory store reads its vectors once per batch instead of
    /// once per query). An error in any query fails the whole batch.
    async fn search_batch(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Vec<ScoredDocument>>> {
        let mut results = Vec::with_capacity(queries.len());
        for query in queries {
            results.push(self.search(query, k, filter).await?);
        }
        Ok(results)
    }

    /// Deletes these ids; returns how many existed.
    async fn delete(&self, ids: &[String]) -> Result<usize>;

    /// Number of stored documents.
    async fn count(&self) -> Result<usize>;

    /// Like [`search`](VectorStore::search), with each document's stored vector (maximal marginal
    /// relevance needs them). Stores that cannot return vectors keep this default, an
    /// [`Error::Store`].
    async fn search_with_vectors(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<(ScoredDocument, Vec<f32>)>> {
        let _ = (query, k, filter);
        Err(Error::store(
            "this vector store cannot return stored vectors; use one that can (memory, LanceDB)",
        ))
    }

    /// The stored documents with these ids, in the order asked; unknown ids are left out.
    async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
        let _ = ids;
        Err(Error::store("this vector store cannot look documents up by id"))
    }

    /// Every stored document matching `filter`, in storage order (keyword indexes and parent
    /// lookups are built from it). Stores that cannot list keep this default, an [`Error::Store`].
    async fn documents(&self, filter: Option<&Filter>) -> Result<Vec<Document>> {
        let _ = filter;
        Err(Error::store("this vector store cannot list its documents"))
    }
}

#[async_trait]
impl<T: VectorStore + ?Sized> Runnable<VectorQuery, Vec<ScoredDocument>> for T {
    async fn invoke(&self, input: VectorQuery, _ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        self.search(&input.vector, input.k, input.filter.as_ref()).await
    }
}

/// Finds documents relevant to a query.
#[async_trait]
pub trait Retriever: Send + Sync {
    /// Relevant documents, most relevant first.
    async fn retrieve(&self, query: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>>;
}

#[async_trait]
impl<T: Retriever + ?Sized> Runnable<String, Vec<ScoredDocument>> for T {
    async fn invoke(&self, input: String, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        self.retrieve(&input, ctx).await
    }
}

/// The input of a [`Reranker`] used as a [`Runnable`].
#[derive(Debug, Clone, PartialEq)]
pub struct RerankInput {
    /// The query.
    pub query: String,
    /// Candidates to reorder.
    pub documents: Vec<ScoredDocument>,
}

/// Reorders (and may drop) candidate documents for a query.
#[async_trait]
pub trait Reranker: Send + Sync {
    /// The documents worth keeping, best first, with the reranker's scores.
    async fn rerank(
        &self,
        query: &str,
        documents: Vec<ScoredDocument>,
        ctx: &RunContext,
    ) -> Result<Vec<ScoredDocument>>;
}

#[async_trait]
impl<T: Reranker + ?Sized> Runnable<RerankInput, Vec<ScoredDocument>> for T {
    async fn invoke(&self, input: RerankInput, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        self.rerank(&input.query, input.documents, ctx).await
    }
}

/// What a tool returns: text for the model, plus an optional structured artifact for the program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ToolOutput {
    /// What the model sees as the observation.
    pub content: String,
    /// Data for the caller that the model does not see (rows, documents...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Value>,
}

impl ToolOutput {
    /// Text only.
    pub fn text(content: impl Into<String>) -> Self {
        Self { content: content.into(), artifact: None }
    }
}

impl From<String> for ToolOutput {
    fn from(content: String) -> Self {
        Self::text(content)
    }
}

impl From<&str> for ToolOutput {
    fn from(content: &str) -> Self {
        Self::text(content)
    }
}

/// Something an agent can call: a name, a description, a JSON Schema of its arguments.
///
/// Most tools are written as a [`TypedTool`], which derives the schema from an arguments struct and
/// gets this trait for free, or as an `async fn` under [`#[tool]`](crate::tool), which writes the
/// `TypedTool` for you. Implement `Tool` directly for tools whose schema is only known at run
/// time (say, one per database table).
#[async_trait]
pub trait Tool: Send + Sync {
    /// The name the model calls it by (letters, digits, `_`, `-`).
    fn name(&self) -> &str;

    /// What it does and when to use it.
    fn description(&self) -> &str;

    /// JSON Schema of the arguments object.
    fn parameters(&self) -> Value;

    /// Runs it. Invalid arguments are an [`Error::Tool`] whose message the model can act on.
    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput>;

    /// Whether calling it changes nothing outside the call (reads, computes, searches). Tools
    /// are side-effecting unless they say so: an agent graph with a checkpointer pauses each
    /// call of a side-effecting tool for a person's approval (see `ApprovalPolicy` in
    /// `catena-agents`), so a tool that only reads should return `true`.
    fn read_only(&self) -> bool {
        false
    }

    /// The tool as offered in a [`ChatRequest`].
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name().to_owned(),
            description: self.description().to_owned(),
            parameters: self.parameters(),
        }
    }
}

#[async_trait]
impl<T: Tool + ?Sized> Runnable<Value, ToolOutput> for T {
    async fn invoke(&self, input: Value, ctx: &RunContext) -> Result<ToolOutput> {
        self.call(input, ctx).await
    }
}

/// A tool with typed arguments: a struct deriving `Deserialize` and `JsonSchema`.
///
/// ```
/// use catena_core::{RunContext, Result, Tool, ToolOutput, TypedTool, async_trait};
/// use schemars::JsonSchema;
/// use serde::Deserialize;
///
/// /// Adds two numbers.
/// struct Add;
///
/// #[derive(Deserialize, JsonSchema)]
/// struct AddArgs {
///     /// The first number.
///     a: f64,
///     /// The second number.
///     b: f64,
/// }
///
/// #[async_trait]
/// impl TypedTool for Add {
///     type Args = AddArgs;
///     const NAME: &'static str = "add";
///     const DESCRIPTION: &'static str = "Adds two numbers.";
///     async fn run(&self, args: AddArgs, _ctx: &RunContext) -> Result<ToolOutput> {
///         Ok(ToolOutput::text((args.a + args.b).to_string()))
///     }
/// }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let out = Add.call(serde_json::json!({"a": 2, "b": 3}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "5");
/// assert_eq!(Add.parameters()["properties"]["a"]["type"], "number");
/// assert!(Add.call(serde_json::json!({"a": 2}), &RunContext::new()).await.is_err());
/// # });
/// ```
#[async_trait]
pub trait TypedTool: Send + Sync {
    /// The arguments; their schema is generated with schemars, doc comments included.
    type Args: DeserializeOwned + JsonSchema + Send;
    /// See [`Tool::name`].
    const NAME: &'static str;
    /// See [`Tool::description`].
    const DESCRIPTION: &'static str;
    /// See [`Tool::read_only`].
    const READ_ONLY: bool = false;

    /// Runs the tool on parsed arguments.
    async fn run(&self, args: Self::Args, ctx: &RunContext) -> Result<ToolOutput>;
}

#[async_trait]
impl<T: TypedTool> Tool for T {
    fn name(&self) -> &str {
        T::NAME
    }

    fn description(&self) -> &str {
        T::DESCRIPTION
    }

    fn read_only(&self) -> bool {
        T::READ_ONLY
    }

    /// The schemars schema of `Args`, without its `$schema` and `title` keys: models read every
    /// token of it, and those two tell them nothing about how to call the tool.
    fn parameters(&self) -> Value {
        crate::output::model_schema::<T::Args>()
    }

    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        let args: T::Args = serde_json::from_value(arguments)
            .map_err(|e| Error::tool(T::NAME, format!("invalid arguments: {e}")))?;
        self.run(args, ctx).await
    }
}

/// Gives any tool another name or description, keeping its arguments and behaviour:
/// `Calculator.with_name("calc")`, `RetrieverTool::new(..).with_description("Searches the
/// product manual ...")`.
///
/// Models choose tools by their descriptions, and a generic one ("searches the document
/// collection") does not tell a model that *this* collection is where questions about the
/// product are answered: small models then answer those from memory. Naming what a tool's data
/// holds is the application's job; this adapter lets it do that without re-implementing the tool.
///
/// ```
/// use catena_core::{RunContext, Result, Tool, ToolExt, ToolOutput, TypedTool, async_trait};
/// # use schemars::JsonSchema; use serde::Deserialize;
/// # #[derive(Deserialize, JsonSchema)] struct Args {}
/// struct Now;
/// #[async_trait]
/// impl TypedTool for Now {
///     type Args = Args;
///     const NAME: &'static str = "now";
///     const DESCRIPTION: &'static str = "The time.";
///     async fn run(&self, _: Args, _: &RunContext) -> Result<ToolOutput> { Ok("noon".into()) }
/// }
///
/// let tool = Now.with_name("clock").with_description("The time at the office.");
/// assert_eq!((tool.name(), tool.description()), ("clock", "The time at the office."));
/// assert_eq!(tool.parameters(), Now.parameters());
/// ```
pub trait ToolExt: Tool + Sized {
    /// The same tool under another name (errors it reports keep naming the original).
    fn with_name(self, name: impl Into<String>) -> Described<Self> {
        Described { tool: self, name: Some(name.into()), description: None }
    }

    /// The same tool with another description.
    fn with_description(self, description: impl Into<String>) -> Described<Self> {
        Described { tool: self, name: None, description: Some(description.into()) }
    }
}

impl<T: Tool> ToolExt for T {}

/// A tool with its name or description replaced; see [`ToolExt`].
#[derive(Debug, Clone)]
pub struct Described<T> {
    tool: T,
    name: Option<String>,
    description: Option<String>,
}

impl<T: Tool> Described<T> {
    /// Replaces the name again.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the description again.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// The tool inside.
    pub fn inner(&self) -> &T {
        &self.tool
    }
}

#[async_trait]
impl<T: Tool> Tool for Described<T> {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_else(|| self.tool.name())
    }

    fn description(&self) -> &str {
        self.description.as_deref().unwrap_or_else(|| self.tool.description())
    }

    fn parameters(&self) -> Value {
        self.tool.parameters()
    }

    fn read_only(&self) -> bool {
        self.tool.read_only()
    }

    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        self.tool.call(arguments, ctx).await
    }
}

// `Debug` for the trait objects components hold (`Arc<dyn ChatModel>`, ...), so a component
// can derive `Debug`: a model shows its name, the others that they are there.
impl std::fmt::Debug for dyn ChatModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ChatModel").field(&self.model_name()).finish()
    }
}

impl std::fmt::Debug for dyn Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("dimensions", &self.dimensions()).finish()
    }
}

impl std::fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tool").field(&self.name()).finish()
    }
}

macro_rules! opaque_debug {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for dyn $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!("dyn ", stringify!($name)))
            }
        }
    )*};
}
opaque_debug!(VectorStore, Retriever, Reranker, Memory, Loader, Splitter, Tokenizer);

/// Conversation memory: what an agent or chat chain remembers between turns.
///
/// A memory decides what of the past goes before the next turn: everything, a window, a token
/// budget, a running summary, or the past turns most relevant to the new input. It is written to
/// after each turn with [`add`](Memory::add) and read before the next with
/// [`messages_for`](Memory::messages_for).
#[async_trait]
pub trait Memory: Send + Sync {
    /// The messages to put before the next turn (possibly a summary plus recent turns).
    async fn messages(&self) -> Result<Vec<Message>>;

    /// The messages to put before a turn that starts with `input`. Memories that retrieve past
    /// turns by relevance override it; the default is [`messages`](Memory::messages).
    async fn messages_for(&self, input: &str, ctx: &RunContext) -> Result<Vec<Message>> {
        let _ = (input, ctx);
        self.messages().await
    }

    /// Records new turns. Memories that summarise may call a model, under `ctx`.
    async fn add(&self, messages: &[Message], ctx: &RunContext) -> Result<()>;

    /// Forgets everything.
    async fn clear(&self) -> Result<()>;

    /// What the memory holds, as JSON, for saving a session; [`restore`](Memory::restore) reads
    /// it back. The default is the list of [`messages`](Memory::messages).
    async fn snapshot(&self) -> Result<Value> {
        serde_json::to_value(self.messages().await?)
            .map_err(|e| Error::parse("memory snapshot", e.to_string()))
    }

    /// Replaces the memory's content with a [`snapshot`](Memory::snapshot). A snapshot of the
    /// wrong shape is an [`Error::Parse`] and leaves the memory as it was.
    async fn restore(&self, snapshot: Value) -> Result<()> {
        let messages: Vec<Message> = serde_json::from_value(snapshot)
            .map_err(|e| Error::parse("memory snapshot", format!("expected a list of messages: {e}")))?;
        self.clear().await?;
        self.add(&messages, &RunContext::new()).await
    }
}

#[async_trait]
impl<T: Memory + ?Sized> Runnable<(), Vec<Message>> for T {
    async fn invoke(&self, _input: (), _ctx: &RunContext) -> Result<Vec<Message>> {
        self.messages().await
    }
}

/// Produces documents from a source (files, a directory, a URL), as a stream so large sources
/// never have to fit in memory.
pub trait Loader: Send + Sync {
    /// The documents, one at a time. A per-item error does not end the stream: callers decide
    /// whether to stop or to report and go on.
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>>;
}

#[async_trait]
impl<T: Loader + ?Sized> Runnable<(), Vec<Document>> for T {
    /// Collects every document; fails on the first error.
    async fn invoke(&self, _input: (), ctx: &RunContext) -> Result<Vec<Document>> {
        self.load(ctx).try_collect().await
    }
}

/// Turns text into model token ids and back: the tokenizer of a GGUF model, a tiktoken encoding.
///
/// Token-based splitting and token-counted chunk lengths are built on it, so chunks can be sized
/// in the units the embedding or chat model actually limits.
pub trait Tokenizer: Send + Sync {
    /// The token ids of `text` (no special tokens added).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;

    /// The text of `tokens`. A window that cuts a multi-byte character in two decodes lossily
    /// (U+FFFD), as tiktoken and Hugging Face tokenizers do.
    fn decode(&self, tokens: &[u32]) -> Result<String>;

    /// How many tokens `text` has; override when counting is cheaper than encoding.
    fn count(&self, text: &str) -> Result<usize> {
        Ok(self.encode(text)?.len())
    }
}

/// Cuts documents into chunks.
pub trait Splitter: Send + Sync {
    /// The chunks of one text.
    fn split_text(&self, text: &str) -> Result<Vec<String>>;

    /// The chunks of each document, each a [`Document`] carrying its parent's metadata.
    fn split_documents(&self, documents: &[Document]) -> Result<Vec<Document>> {
        let mut chunks = Vec::new();
        for document in documents {
            for text in self.split_text(&document.content)? {
                chunks.push(Document { id: None, content: text, metadata: document.metadata.clone() });
            }
        }
        Ok(chunks)
    }
}

#[async_trait]
impl<T: Splitter + ?Sized> Runnable<Vec<Document>, Vec<Document>> for T {
    async fn invoke(&self, input: Vec<Document>, _ctx: &RunContext) -> Result<Vec<Document>> {
        self.split_documents(&input)
    }
}
