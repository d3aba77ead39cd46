//! Any rig-core model as a catena model (feature `rig`): Anthropic, Gemini, Cohere, Mistral,
//! DeepSeek, Groq, Ollama, OpenRouter and the rest of rig's providers, behind catena's
//! [`ChatModel`] and [`Embedder`], so chains, agents and `catena serve` use them unchanged.
//!
//! rig builds a provider's model (`Model<Wire, Transport>`) and erases it to its operation
//! (`DynModel<Completion>`, `DynModel<Embedding>`); [`RigChatModel`] and [`RigEmbedder`] take
//! either. What the adapter maps, both ways:
//! - messages: system, user, assistant text with tool calls (their ids kept), and tool results
//!   (consecutive results become one user turn of tool-result blocks, named after the call they
//!   answer, as rig's providers expect);
//! - tools, `tool_choice` (auto, none, required, one named tool), `response_format` (a JSON
//!   Schema becomes rig's `output_schema`; `json_object` the schema of any object; GBNF grammars
//!   are refused, they are a llama.cpp feature), temperature, top-p, seed, stop strings and
//!   `max_tokens` (top-k, min-p and repeat penalty have no portable rig field and are not sent);
//! - replies: text, tool calls (arguments that are not a JSON object arrive as the raw string, so
//!   an agent can show the model its mistake), reasoning dropped, usage, finish reason;
//! - streaming: rig's text events as deltas as they arrive, tool calls when their part ends, usage
//!   and the finish reason from rig's folded response at the end;
//! - errors: rig's retryable failures (connection resets, timeouts, 429, 5xx, truncated replies)
//!   are transient, `context_length_exceeded` is its own kind, rejected requests are invalid
//!   input, the rest permanent.
//!
//! Resilience is catena's, as for every remote model ([`CallLimits`]): a timeout per attempt,
//! retries of transient failures with exponential backoff and jitter honouring `Retry-After` (a
//! stream is retried only before its first delta), a per-model concurrency limit, and
//! cancellation through the [`RunContext`] at every wait.
//!
//! ```no_run
//! use catena_core::{ChatModel, ChatRequest, Message, RunContext};
//! use catena_models::rig::RigChatModel;
//! use catena_models::rig::rig_core::providers::anthropic;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // ANTHROPIC_API_KEY from the environment.
//! let claude = anthropic::Anthropic::from_env()?.completion(anthropic::CLAUDE_SONNET_4_6);
//! let model = RigChatModel::new(claude);
//! let reply = model.chat(ChatRequest::new(vec![Message::user("Hello!")]), &RunContext::new()).await?;
//! println!("{}", reply.message.content);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use catena_core::{CallLimits, Failure, Limiter};
use catena_core::{
    ChatDelta, ChatModel, ChatRequest, ChatResponse, Embedder, Error, Event, FinishReason, Message,
    ResponseFormat, Result, Role, RunContext, ToolCall, ToolChoice, Usage, async_trait,
};
use futures::StreamExt;
use futures::stream::BoxStream;
pub use rig_core;
use rig_core::DynModel;
use rig_core::completion::{self as rc, CompletionRequest, CompletionResponse, ToolDefinition};
use rig_core::error::ProviderError;
use rig_core::message::{self as rm, AssistantContent, CallId, ToolFunction, ToolName, UserContent};
use rig_core::operation::{Completion, Embedding};
use rig_core::streaming::{Item, Part, StreamEvent};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

/// The seconds a `Retry-After` header asks for, when the error carries one.
fn retry_after(e: &ProviderError) -> Option<Duration> {
    let headers = e.provider_response()?.headers.as_ref()?;
    let seconds: f64 = headers.get("retry-after")?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// rig's failures in catena's kinds: what retrying can fix, what the caller must change.
fn failure(e: &ProviderError) -> Failure {
    Failure::from(map_error(e)).with_retry_after(retry_after(e))
}

fn map_error(e: &ProviderError) -> Error {
    let message = format!("rig: {e}");
    let code = e.provider_response().and_then(|r| r.machine_code());
    if code.as_deref() == Some("context_length_exceeded") {
        Error::context_length(message)
    } else if matches!(e, ProviderError::Request(_) | ProviderError::UnsupportedOption(_)) {
        Error::invalid_input(message)
    } else if e.is_retryable() {
        Error::model_transient(message)
    } else {
        Error::model_permanent(message)
    }
}

// ---- requests --------------------------------------------------------------------------------

fn tool_name(name: &str) -> Result<ToolName> {
    ToolName::new(name).map_err(|_| Error::invalid_input("a tool call or tool has an empty name"))
}

/// catena's conversation as rig's: tool results are named after the call they answer and
/// grouped into one user turn per run of consecutive results.
fn rig_messages(messages: &[Message]) -> Result<Vec<rm::Message>> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut out: Vec<rm::Message> = Vec::with_capacity(messages.len());
    for m in messages {
        match m.role {
            Role::System => out.push(rm::Message::system(&m.content)),
            Role::User => out.push(rm::Message::user(&m.content)),
            Role::Assistant => {
                let mut content = Vec::new();
                if !m.content.is_empty() {
                    content.push(AssistantContent::text(&m.content));
                }
                for call in &m.tool_calls {
                    names.insert(&call.id, &call.name);
                    let function = ToolFunction::new(tool_name(&call.name)?, call.arguments.clone());
                    content.push(AssistantContent::ToolCall(rm::ToolCall::from_wire(&call.id, function)));
                }
                if content.is_empty() {
                    content.push(AssistantContent::text(""));
                }
                out.push(rm::AssistantMessage::new(content).into());
            }
            Role::Tool => {
                let id = m.tool_call_id.as_deref().unwrap_or_default();
                let name = names.get(id).ok_or_else(|| {
                    Error::invalid_input(format!(
                        "a tool result answers call {id:?}, which no earlier assistant message made"
                    ))
                })?;
                let result = UserContent::tool_result(
                    CallId::from_wire(id),
                    tool_name(name)?,
                    vec![rm::ToolResultContent::text(&m.content)],
                );
                match out.last_mut() {
                    Some(rm::Message::User { content })
                        if content.iter().all(|c| matches!(c, UserContent::ToolResult(_))) =>
                    {
                        content.push(result);
                    }
                    _ => out.push(rm::Message::User { content: vec![result] }),
                }
            }
        }
    }
    Ok(out)
}

fn rig_request(request: &ChatRequest) -> Result<CompletionRequest> {
    let mut messages = rig_messages(&request.messages)?.into_iter();
    let first =
        messages.next().ok_or_else(|| Error::invalid_input("a chat request needs at least one message"))?;
    let mut out = CompletionRequest::new(first).messages(messages);
    out.tools = request
        .tools
        .iter()
        .map(|t| Ok(ToolDefinition::new(tool_name(&t.name)?, &t.description, t.parameters.clone())))
        .collect::<Result<_>>()?;
    if !request.tools.is_empty() {
        out.tool_choice = Some(match &request.tool_choice {
            ToolChoice::Auto => rm::ToolChoice::Auto,
            ToolChoice::None => rm::ToolChoice::None,
            ToolChoice::Required => rm::ToolChoice::Required,
            ToolChoice::Tool(name) => rm::ToolChoice::Specific { function_names: vec![tool_name(name)?] },
        });
    }
    out.output_schema = match &request.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(object_schema(serde_json::json!({"type": "object"}))?),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(object_schema(schema.clone())?),
        Some(ResponseFormat::Grammar { .. }) => {
            return Err(Error::invalid_input(
                "GBNF grammars are a llama.cpp feature; remote models take a JSON Schema (ResponseFormat::JsonSchema)",
            ));
        }
    };
    let s = &request.sampling;
    out.temperature = s.temperature.map(f64::from);
    out.max_tokens = s.max_tokens.map(u64::from);
    out.options.top_p = s.top_p.map(f64::from);
    out.options.seed = s.seed.map(u64::from);
    out.options.stop.clone_from(&s.stop);
    Ok(out)
}

fn object_schema(schema: Value) -> Result<rig_core::schemars::Schema> {
    rig_core::schemars::Schema::try_from(schema)
        .map_err(|e| Error::invalid_input(format!("response_format's schema is not a JSON Schema: {e}")))
}

// ---- replies ---------------------------------------------------------------------------------

/// A tool call from rig: arguments that did not parse as an object stay the model's raw text.
fn catena_call(call: &rm::ToolCall) -> ToolCall {
    let arguments = match &call.function.invalid_arguments {
        Some(raw) => Value::String(raw.clone()),
        None => call.function.arguments_value(),
    };
    ToolCall { id: call.id.wire().into_owned(), name: call.function.name.to_string(), arguments }
}

fn catena_usage(usage: &rc::Usage) -> Usage {
    let n = |v: Option<u64>| u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX);
    Usage {
        prompt_tokens: n(usage.input_tokens),
        completion_tokens: n(usage.output_tokens),
        cached_prompt_tokens: n(usage.cached_input_tokens),
        ..Usage::default()
    }
}

fn catena_finish(reason: Option<rc::FinishReason>, has_calls: bool) -> FinishReason {
    match reason {
        Some(rc::FinishReason::Length) => FinishReason::Length,
        Some(rc::FinishReason::ToolCalls) => FinishReason::ToolCalls,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn catena_response(response: &CompletionResponse) -> Result<ChatResponse> {
    if let Some(error) = &response.error {
        return Err(Error::model_permanent(format!("rig: the provider failed the reply: {error}")));
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for block in &response.choice {
        match block {
            AssistantContent::Text(t) => text.push_str(t.text()),
            AssistantContent::ToolCall(call) => calls.push(catena_call(call)),
            _ => {}
        }
    }
    let finish_reason = catena_finish(response.finish_reason(), !calls.is_empty());
    Ok(ChatResponse {
        message: Message::assistant(text).with_tool_calls(calls),
        usage: catena_usage(&response.usage),
        finish_reason,
    })
}

// ---- the chat model --------------------------------------------------------------------------

/// A rig completion model as a catena [`ChatModel`]: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RigChatModel {
    model: DynModel<Completion>,
    name: String,
    limits: Limiter,
}

impl RigChatModel {
    /// Wraps a rig completion model (a provider's `Model` or an erased `DynModel<Completion>`)
    /// with the default [`CallLimits`].
    pub fn new(model: impl Into<DynModel<Completion>>) -> Self {
        Self::with_limits(model, CallLimits::default())
    }

    /// Wraps a rig completion model with these limits.
    pub fn with_limits(model: impl Into<DynModel<Completion>>, limits: CallLimits) -> Self {
        let model = model.into();
        let name = model.id().map_or_else(|| model.name().to_owned(), str::to_owned);
        Self { model, name, limits: limits.limiter() }
    }

    /// The rig model underneath.
    #[must_use]
    pub fn rig_model(&self) -> &DynModel<Completion> {
        &self.model
    }
}

#[async_trait]
impl ChatModel for RigChatModel {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let call = async {
            let request = rig_request(&request)?;
            let _permit = self.limits.permit(ctx).await?;
            let response = self
                .limits
                .run(ctx, "the rig completion", || async {
                    self.model.call(request.clone()).await.map_err(|e| failure(&e))
                })
                .await?;
            catena_response(&response)
        };
        catena_core::telemetry::observe_chat(ctx, "rig", &self.name, &request, call).await
    }

    fn chat_stream<'a>(
        &'a self,
        request: ChatRequest,
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<ChatDelta>> {
        let span = catena_core::telemetry::chat_span(ctx, "rig", &self.name, &request);
        let stream = Box::pin(
            futures::stream::once(async move {
                let request = rig_request(&request)?;
                let permit = self.limits.permit(ctx).await?;
                // A stream that fails before its first item is as good as a failed request:
                // it is opened again under the retry policy. After that, errors end it.
                let (stream, first) = self
                    .limits
                    .run(ctx, "opening the rig stream", || {
                        let opened = self.model.stream(request.clone());
                        async move {
                            let mut stream = opened.map_err(|e| failure(&e))?;
                            match stream.next().await {
                                Some(Err(e)) => Err(failure(&e)),
                                first => Ok((stream, first)),
                            }
                        }
                    })
                    .await?;
                Ok::<_, Error>(deltas(stream, first, permit, ctx))
            })
            .flat_map(|opened| match opened {
                Ok(deltas) => deltas,
                Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
            }),
        );
        catena_core::telemetry::observe_chat_stream(span, ctx, "rig", &self.name, stream)
    }

    fn model_name(&self) -> &str {
        &self.name
    }
}

/// What the stream folding keeps between items.
struct StreamState<'a> {
    /// The open stream; taken to be finished once it ends.
    stream: Option<rig_core::streaming::CompletionStream>,
    pending: Option<std::result::Result<Item<StreamEvent>, ProviderError>>,
    /// Parts whose text arrived as text events (their end event repeats it).
    streamed_text: HashSet<Part>,
    ctx: &'a RunContext,
    _permit: OwnedSemaphorePermit,
}

/// The deltas of one open rig stream: text as it arrives, each tool call when its part ends,
/// and a last delta with the finish reason and usage from rig's folded response.
fn deltas<'a>(
    stream: rig_core::streaming::CompletionStream,
    first: Option<std::result::Result<Item<StreamEvent>, ProviderError>>,
    permit: OwnedSemaphorePermit,
    ctx: &'a RunContext,
) -> BoxStream<'a, Result<ChatDelta>> {
    let state = StreamState {
        stream: Some(stream),
        pending: first,
        streamed_text: HashSet::new(),
        ctx,
        _permit: permit,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            let stream = st.stream.as_mut()?;
            let item = match st.pending.take() {
                Some(item) => Some(item),
                None => tokio::select! {
                    item = stream.next() => item,
                    () = st.ctx.cancellation().cancelled() => {
                        st.stream = None;
                        return Some((Err(Error::Cancelled), st));
                    }
                },
            };
            let delta = match item {
                Some(Ok(Item::Event(StreamEvent::Text { part, text }))) => {
                    st.streamed_text.insert(part);
                    st.ctx.emit(Event::Token { text: text.clone() });
                    ChatDelta { content: text, ..ChatDelta::default() }
                }
                Some(Ok(Item::Event(StreamEvent::End { part, content }))) => match content {
                    AssistantContent::ToolCall(call) => {
                        ChatDelta { tool_calls: vec![catena_call(&call)], ..ChatDelta::default() }
                    }
                    // A provider that sent a text part whole, without text events.
                    AssistantContent::Text(t)
                        if !st.streamed_text.contains(&part) && !t.text().is_empty() =>
                    {
                        ChatDelta { content: t.text().to_owned(), ..ChatDelta::default() }
                    }
                    _ => continue,
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    st.stream = None;
                    return Some((Err(map_error(&e)), st));
                }
                None => {
                    let ended = st.stream.take()?;
                    // The stream has ended: finishing only folds what was read.
                    // The folded response holds every call already sent, so its finish reason
                    // and usage are the whole reply's.
                    let last = match ended.finish().await {
                        Ok(response) => catena_response(&response).map(|whole| ChatDelta {
                            finish_reason: Some(whole.finish_reason),
                            usage: Some(whole.usage),
                            ..ChatDelta::default()
                        }),
                        Err(e) => Err(map_error(&e)),
                    };
                    return Some((last, st));
                }
            };
            return Some((Ok(delta), st));
        }
    }))
}

// ---- the embedder ----------------------------------------------------------------------------

/// A rig embedding model as a catena [`Embedder`].
#[derive(Debug, Clone)]
pub struct RigEmbedder {
    model: DynModel<Embedding>,
    dimensions: usize,
    batch: usize,
    limits: Limiter,
}

impl RigEmbedder {
    /// Wraps a rig embedding model, asking it for one embedding to learn its dimensions.
    ///
    /// # Errors
    /// The probe's error: the model is unreachable, or answered with no vector.
    pub async fn connect(model: impl Into<DynModel<Embedding>>, limits: CallLimits) -> Result<Self> {
        let mut embedder = Self::with_dimensions(model, 0, limits);
        let probe = embedder.embed(&["dimensions".to_owned()], &RunContext::new()).await?;
        embedder.dimensions = probe.first().map_or(0, Vec::len);
        if embedder.dimensions == 0 {
            return Err(Error::model_permanent("rig: the embedding model returned an empty vector"));
        }
        Ok(embedder)
    }

    /// Wraps a rig embedding model whose dimensions are known (no probe request).
    pub fn with_dimensions(
        model: impl Into<DynModel<Embedding>>,
        dimensions: usize,
        limits: CallLimits,
    ) -> Self {
        Self { model: model.into(), dimensions, batch: 64, limits: limits.limiter() }
    }

    /// Texts per request (default 64, at least 1): providers cap their batch sizes.
    #[must_use]
    pub fn with_batch_size(mut self, batch: usize) -> Self {
        self.batch = batch.max(1);
        self
    }
}

#[async_trait]
impl Embedder for RigEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch) {
            let _permit = self.limits.permit(ctx).await?;
            let response = self
                .limits
                .run(ctx, "the rig embedding", || async {
                    self.model.call(batch.to_vec()).await.map_err(|e| failure(&e))
                })
                .await?;
            if response.embeddings.len() != batch.len() {
                return Err(Error::model_permanent(format!(
                    "rig: asked for {} embeddings, got {}",
                    batch.len(),
                    response.embeddings.len()
                )));
            }
            out.extend(
                response.embeddings.into_iter().map(|e| e.vec.into_iter().map(|x| x as f32).collect()),
            );
        }
        Ok(out)
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }
}
