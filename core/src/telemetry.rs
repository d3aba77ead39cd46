//! Spans that follow OpenTelemetry's semantic conventions for generative AI, for the components
//! that do the work: chat models, embedders, tools, retrievers and agents call these helpers, so
//! every catena component reports the same way. Component authors use them too.
//!
//! The spans are `tracing` spans with target [`TARGET`] and the conventions' attribute names
//! (`gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
//! `gen_ai.usage.input_tokens`, ...), parented to the run's span ([`RunContext::span`]).
//! Exporting them is the application's choice: the `catena` crate's `telemetry` module sends them
//! over OTLP when the standard `OTEL_EXPORTER_OTLP_*` variables are set. With nothing listening,
//! a span costs a check of an atomic.
//!
//! Message, document and tool-argument content is recorded only when capture is on
//! ([`set_capture_content`], or `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true` as in
//! OpenTelemetry's own GenAI instrumentations): prompts carry what users typed.
//!
//! Each span also says its kind in the OpenInference convention (`openinference.span.kind`:
//! `LLM`, `TOOL`, `RETRIEVER`, ...), which Arize Phoenix shows. Attributes neither convention
//! defines carry a `catena.` prefix: `catena.usage.cost_usd`
//! (from the run's [`PriceTable`](crate::PriceTable)), `catena.retrieval.documents` (ids and
//! scores), `catena.time_to_first_chunk_s`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tracing::Span;
use tracing::field::Empty;

use crate::{
    ChatDelta, ChatRequest, ChatResponse, DeltaAccumulator, Error, FinishReason, Message, Result, Role,
    RunContext, ScoredDocument, ToolOutput, Usage,
};

/// The `tracing` target of every GenAI span: a subscriber (or an OTLP exporter) filters on it.
pub const TARGET: &str = "catena::gen_ai";

/// 0: not decided yet (read the environment), 1: off, 2: on.
static CAPTURE: AtomicU8 = AtomicU8::new(0);

/// Whether spans record content (messages, documents, tool arguments and results).
#[must_use]
pub fn capture_content() -> bool {
    match CAPTURE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let on = std::env::var("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            CAPTURE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns content capture on or off for the whole process (overrides the environment).
pub fn set_capture_content(on: bool) {
    CAPTURE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
}

/// Messages in the conventions' JSON shape (`[{"role", "parts": [{"type": "text", "content"}]}]`).
fn messages_json(messages: &[Message]) -> String {
    let messages: Vec<Value> = messages
        .iter()
        .map(|message| {
            let mut parts = Vec::new();
            if !message.content.is_empty() {
                parts.push(json!({"type": "text", "content": message.content}));
            }
            for call in &message.tool_calls {
                parts.push(json!({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}));
            }
            let role = match message.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            json!({"role": role, "parts": parts})
        })
        .collect();
    Value::Array(messages).to_string()
}

fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_call",
        FinishReason::Cancelled => "cancelled",
    }
}

/// Integers go to spans as `i64`: OpenTelemetry has no unsigned integers, and an exporter may
/// turn a `u64` into a string.
fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Marks the span failed, with the error's kind as `error.type`.
pub fn record_error(span: &Span, error: &Error) {
    span.record("otel.status_code", "ERROR");
    span.record("otel.status_description", error.to_string().as_str());
    span.record("error.type", format!("{:?}", error.kind()).as_str());
}

/// The span of one chat call (`chat {model}`, kind client).
#[must_use]
pub fn chat_span(ctx: &RunContext, provider: &str, model: &str, request: &ChatRequest) -> Span {
    let span = tracing::info_span!(
        target: TARGET, parent: ctx.span(), "chat",
        otel.name = %format!("chat {model}"), otel.kind = "client",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "LLM",
        gen_ai.operation.name = "chat", gen_ai.provider.name = provider, gen_ai.request.model = model,
        gen_ai.request.max_tokens = Empty, gen_ai.request.temperature = Empty, gen_ai.request.top_p = Empty,
        gen_ai.response.model = Empty, gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty, gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty, catena.usage.cost_usd = Empty,
        catena.time_to_first_chunk_s = Empty, catena.tools.offered = count(request.tools.len()),
        gen_ai.input.messages = Empty, gen_ai.output.messages = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(max_tokens) = request.sampling.max_tokens {
        span.record("gen_ai.request.max_tokens", i64::from(max_tokens));
    }
    if let Some(temperature) = request.sampling.temperature {
        span.record("gen_ai.request.temperature", f64::from(temperature));
    }
    if let Some(top_p) = request.sampling.top_p {
        span.record("gen_ai.request.top_p", f64::from(top_p));
    }
    if capture_content() {
        span.record("gen_ai.input.messages", messages_json(&request.messages).as_str());
    }
    span
}

/// Records a finished chat call on its span and counts its usage in the run
/// ([`RunContext::record_usage`]).
pub fn record_chat(
    span: &Span,
    ctx: &RunContext,
    provider: &str,
    model: &str,
    response: &ChatResponse,
    first_chunk: Option<Duration>,
) {
    let cost = ctx.record_usage(provider, model, response.usage);
    if span.is_disabled() {
        return;
    }
    record_usage(span, &response.usage);
    span.record("gen_ai.response.model", model);
    span.record(
        "gen_ai.response.finish_reasons",
        format!("[\"{}\"]", finish_reason_name(response.finish_reason)).as_str(),
    );
    if let Some(cost) = cost {
        span.record("catena.usage.cost_usd", cost);
    }
    if let Some(first) = first_chunk {
        span.record("catena.time_to_first_chunk_s", first.as_secs_f64());
    }
    if capture_content() {
        span.record(
            "gen_ai.output.messages",
            messages_json(std::slice::from_ref(&response.message)).as_str(),
        );
    }
}

fn record_usage(span: &Span, usage: &Usage) {
    span.record("gen_ai.usage.input_tokens", i64::from(usage.prompt_tokens));
    span.record("gen_ai.usage.output_tokens", i64::from(usage.completion_tokens));
    span.record("gen_ai.usage.cache_read.input_tokens", i64::from(usage.cached_prompt_tokens));
}

/// Runs a chat call under its span: the span ends when the call does, with usage and the
/// outcome recorded. For models whose `chat` is not built on their stream.
///
/// # Errors
/// The call's own error (also recorded on the span).
pub async fn observe_chat(
    ctx: &RunContext,
    provider: &str,
    model: &str,
    request: &ChatRequest,
    call: impl Future<Output = Result<ChatResponse>>,
) -> Result<ChatResponse> {
    use tracing::Instrument;
    let span = chat_span(ctx, provider, model, request);
    let result = call.instrument(span.clone()).await;
    match &result {
        Ok(response) => record_chat(&span, ctx, provider, model, response, None),
        Err(e) => record_error(&span, e),
    }
    result
}

/// A chat stream under its span (made by [`chat_span`] before the request is handed over): the
/// span records the time to the first chunk, and ends when the stream ends (usage and finish
/// reason from the last delta) or is dropped (marked cancelled, what was generated counted).
#[must_use]
pub fn observe_chat_stream<'a>(
    span: Span,
    ctx: &'a RunContext,
    provider: &'static str,
    model: &str,
    stream: BoxStream<'a, Result<ChatDelta>>,
) -> BoxStream<'a, Result<ChatDelta>> {
    Box::pin(ObservedStream {
        inner: stream,
        span,
        ctx,
        provider,
        model: model.to_owned(),
        started: Instant::now(),
        first_chunk: None,
        reply: DeltaAccumulator::default(),
        done: false,
    })
}

struct ObservedStream<'a> {
    inner: BoxStream<'a, Result<ChatDelta>>,
    span: Span,
    ctx: &'a RunContext,
    provider: &'static str,
    model: String,
    started: Instant,
    first_chunk: Option<Duration>,
    reply: DeltaAccumulator,
    done: bool,
}

impl Stream for ObservedStream<'_> {
    type Item = Result<ChatDelta>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let polled = {
            let _entered = this.span.enter();
            this.inner.as_mut().poll_next(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(delta))) => {
                if this.first_chunk.is_none() && (!delta.content.is_empty() || !delta.tool_calls.is_empty()) {
                    this.first_chunk = Some(this.started.elapsed());
                }
                this.reply.push(delta.clone());
            }
            Poll::Ready(Some(Err(e))) => {
                record_error(&this.span, e);
                this.done = true;
            }
            Poll::Ready(None) => {
                let reply = std::mem::take(&mut this.reply).finish();
                record_chat(&this.span, this.ctx, this.provider, &this.model, &reply, this.first_chunk);
                this.done = true;
            }
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for ObservedStream<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped before its end: the caller stopped reading (or was cancelled). What was
            // generated so far still counts.
            let reply = std::mem::take(&mut self.reply).finish();
            record_chat(&self.span, self.ctx, self.provider, &self.model, &reply, self.first_chunk);
            self.span.record("gen_ai.response.finish_reasons", "[\"cancelled\"]");
        }
    }
}

/// The span of one embeddings call (`embeddings {model}`).
#[must_use]
pub fn embeddings_span(ctx: &RunContext, provider: &str, model: &str, texts: usize) -> Span {
    tracing::info_span!(
        target: TARGET, parent: ctx.span(), "embeddings",
        otel.name = %format!("embeddings {model}"), otel.kind = "client",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "EMBEDDING",
        gen_ai.operation.name = "embeddings", gen_ai.provider.name = provider, gen_ai.request.model = model,
        gen_ai.usage.input_tokens = Empty, catena.embeddings.inputs = count(texts), catena.usage.cost_usd = Empty,
    )
}

/// Records a finished embeddings call: its input tokens, when the provider reports them, are
/// counted in the run's usage.
pub fn record_embeddings(
    span: &Span,
    ctx: &RunContext,
    provider: &str,
    model: &str,
    input_tokens: Option<u32>,
) {
    if let Some(tokens) = input_tokens {
        let usage = Usage { prompt_tokens: tokens, ..Usage::default() };
        let cost = ctx.record_usage(provider, model, usage);
        span.record("gen_ai.usage.input_tokens", i64::from(tokens));
        if let Some(cost) = cost {
            span.record("catena.usage.cost_usd", cost);
        }
    }
}

/// The span of one tool call (`execute_tool {name}`, kind internal).
#[must_use]
pub fn tool_span(ctx: &RunContext, name: &str, call_id: &str, arguments: &Value) -> Span {
    let span = tracing::info_span!(
        target: TARGET, parent: ctx.span(), "execute_tool",
        otel.name = %format!("execute_tool {name}"), otel.kind = "internal",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "TOOL",
        gen_ai.operation.name = "execute_tool", gen_ai.tool.name = name, gen_ai.tool.call.id = call_id,
        gen_ai.tool.type = "function", gen_ai.tool.call.arguments = Empty, gen_ai.tool.call.result = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record("gen_ai.tool.call.arguments", arguments.to_string().as_str());
    }
    span
}

/// Records a tool call's outcome on its span.
pub fn record_tool(span: &Span, result: &Result<ToolOutput>) {
    match result {
        Ok(output) if capture_content() => {
            span.record("gen_ai.tool.call.result", output.content.as_str());
        }
        Ok(_) => {}
        Err(e) => record_error(span, e),
    }
}

/// The span of one retrieval or rerank (`retrieval {name}`, `rerank {name}`): `operation` is
/// `"retrieval"` or `"rerank"`, `name` says which component.
#[must_use]
pub fn retrieval_span(ctx: &RunContext, operation: &str, name: &str, query: &str) -> Span {
    let span = tracing::info_span!(
        target: TARGET, parent: ctx.span(), "retrieval",
        otel.name = %format!("{operation} {name}"), otel.kind = "internal",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = if operation == "rerank" { "RERANKER" } else { "RETRIEVER" },
        gen_ai.operation.name = operation, catena.retriever = name,
        gen_ai.retrieval.query.text = Empty, catena.retrieval.documents = Empty,
        catena.retrieval.returned = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record("gen_ai.retrieval.query.text", query);
    }
    span
}

/// Runs a retrieval (or rerank) under its span, recording the documents it returned.
///
/// # Errors
/// The retrieval's own error (also recorded on the span).
pub async fn observe_retrieval(
    ctx: &RunContext,
    operation: &str,
    name: &str,
    query: &str,
    retrieval: impl Future<Output = Result<Vec<ScoredDocument>>>,
) -> Result<Vec<ScoredDocument>> {
    use tracing::Instrument;
    let span = retrieval_span(ctx, operation, name, query);
    let result = retrieval.instrument(span.clone()).await;
    record_retrieval(&span, &result);
    result
}

/// Records what a retrieval returned: each document's id (its `id`, else `source#start_index`)
/// and score always, its content when capture is on.
pub fn record_retrieval(span: &Span, result: &Result<Vec<ScoredDocument>>) {
    let documents = match result {
        Ok(documents) => documents,
        Err(e) => return record_error(span, e),
    };
    if span.is_disabled() {
        return;
    }
    let content = capture_content();
    let listed: Vec<Value> = documents
        .iter()
        .map(|scored| {
            let document = &scored.document;
            let id = document.id.clone().unwrap_or_else(|| {
                let source = document.metadata.get("source").and_then(Value::as_str).unwrap_or("?");
                match document.metadata.get("start_index") {
                    Some(start) => format!("{source}#{start}"),
                    None => source.to_owned(),
                }
            });
            if content {
                json!({"id": id, "score": scored.score, "content": document.content})
            } else {
                json!({"id": id, "score": scored.score})
            }
        })
        .collect();
    span.record("catena.retrieval.returned", count(documents.len()));
    span.record("catena.retrieval.documents", Value::Array(listed).to_string().as_str());
}

/// The span of one agent run (`invoke_agent {name}`): the parent of its model and tool calls
/// when their context carries it ([`RunContext::with_span`]). `input` (the user's question) is
/// recorded when content capture is on and it is not empty.
#[must_use]
pub fn agent_span(ctx: &RunContext, agent: &str, input: &str) -> Span {
    let span = tracing::info_span!(
        target: TARGET, parent: ctx.span(), "invoke_agent",
        otel.name = %format!("invoke_agent {agent}"), otel.kind = "internal",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "AGENT",
        gen_ai.operation.name = "invoke_agent", gen_ai.agent.name = agent,
        gen_ai.usage.input_tokens = Empty, gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty, catena.usage.cost_usd = Empty,
        catena.agent.steps = Empty, gen_ai.input.messages = Empty, gen_ai.output.messages = Empty,
    );
    if !span.is_disabled() && !input.is_empty() && capture_content() {
        span.record("gen_ai.input.messages", messages_json(&[Message::user(input)]).as_str());
    }
    span
}

/// Records an agent run's outcome: its steps, the tokens of its model calls and their cost.
pub fn record_agent(
    span: &Span,
    result: std::result::Result<(&str, usize), &Error>,
    usage: &Usage,
    cost_usd: Option<f64>,
) {
    if span.is_disabled() {
        return;
    }
    record_usage(span, usage);
    if let Some(cost) = cost_usd {
        span.record("catena.usage.cost_usd", cost);
    }
    match result {
        Ok((answer, steps)) => {
            span.record("catena.agent.steps", count(steps));
            if capture_content() {
                span.record("gen_ai.output.messages", messages_json(&[Message::assistant(answer)]).as_str());
            }
        }
        Err(e) => record_error(span, e),
    }
}

/// The span of one task of a graph run (`step {node}`): the parent of what the node calls.
#[must_use]
pub fn graph_step_span(ctx: &RunContext, thread: &str, node: &str, step: i64) -> Span {
    tracing::info_span!(
        target: TARGET, parent: ctx.span(), "graph_step",
        otel.name = %format!("step {node}"), otel.kind = "internal",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        openinference.span.kind = "CHAIN",
        catena.graph.thread = thread, catena.graph.node = node, catena.graph.step = step,
    )
}

/// The span of loading one source (`load {kind}`): `kind` is the loader (`markdown`, `pdf`, ...),
/// `source` the file or URL it reads.
#[must_use]
pub fn loader_span(ctx: &RunContext, kind: &str, source: &str) -> Span {
    tracing::info_span!(
        target: TARGET, parent: ctx.span(), "load",
        otel.name = %format!("load {kind}"), otel.kind = "internal",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        catena.loader.kind = kind, catena.loader.source = source,
        catena.loader.documents = Empty, catena.loader.failed = Empty,
    )
}

/// Records what a load gave: documents, and failures (the first one as the span's error).
pub fn record_loaded<T>(span: &Span, results: &[Result<T>]) {
    if span.is_disabled() {
        return;
    }
    let failed = results.iter().filter(|r| r.is_err()).count();
    span.record("catena.loader.documents", count(results.len() - failed));
    span.record("catena.loader.failed", count(failed));
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        record_error(span, e);
    }
}

/// Runs one database query under its span (`{OPERATION} {system}`, OpenTelemetry's database
/// conventions: `db.system.name` is `sqlite`, `postgresql` or `neo4j`), with the rows it returned
/// and its error. The query text is recorded only when content capture is on: it may hold what
/// a user typed.
///
/// # Errors
/// The query's own error (also recorded on the span).
pub async fn observe_db<T>(
    system: &str,
    query: &str,
    rows: impl FnOnce(&T) -> usize,
    run: impl Future<Output = Result<T>>,
) -> Result<T> {
    use tracing::Instrument;
    let operation = query.split_whitespace().next().unwrap_or("QUERY").to_ascii_uppercase();
    let span = tracing::info_span!(
        target: TARGET, "db_query",
        otel.name = %format!("{operation} {system}"), otel.kind = "client",
        otel.status_code = Empty, otel.status_description = Empty, error.type = Empty,
        db.system.name = system, db.operation.name = operation.as_str(), db.query.text = Empty,
        db.response.returned_rows = Empty,
    );
    if !span.is_disabled() && capture_content() {
        span.record("db.query.text", query);
    }
    let result = run.instrument(span.clone()).await;
    match &result {
        Ok(value) => {
            span.record("db.response.returned_rows", count(rows(value)));
        }
        Err(e) => record_error(&span, e),
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use futures::StreamExt;

    use super::*;

    fn deltas() -> Vec<Result<ChatDelta>> {
        let usage =
            Usage { prompt_tokens: 12, cached_prompt_tokens: 4, completion_tokens: 3, ..Usage::default() };
        vec![
            Ok(ChatDelta { content: "Hel".into(), ..ChatDelta::default() }),
            Ok(ChatDelta { content: "lo".into(), ..ChatDelta::default() }),
            Ok(ChatDelta {
                finish_reason: Some(FinishReason::Stop),
                usage: Some(usage),
                ..ChatDelta::default()
            }),
        ]
    }

    #[tokio::test]
    async fn a_streamed_call_counts_its_usage_when_it_ends_and_when_it_is_dropped() {
        let ctx = RunContext::new();
        let request = ChatRequest::new(vec![Message::user("hi")]);
        let span = chat_span(&ctx, "openai", "gpt-4o-mini", &request);
        let stream = observe_chat_stream(
            span,
            &ctx,
            "openai",
            "gpt-4o-mini",
            Box::pin(futures::stream::iter(deltas())),
        );
        let text: Vec<String> = stream.map(|d| d.unwrap().content).collect().await;
        assert_eq!(text.concat(), "Hello");
        let report = ctx.usage();
        assert_eq!(report.calls(), 1);
        assert_eq!(report.total.prompt_tokens, 12);
        assert!(report.cost_usd > 0.0, "gpt-4o-mini is priced");

        // Read one delta, then drop: the call still counts (its usage is what arrived: none).
        let span = chat_span(&ctx, "llama.cpp", "local", &request);
        let mut stream =
            observe_chat_stream(span, &ctx, "llama.cpp", "local", Box::pin(futures::stream::iter(deltas())));
        assert_eq!(stream.next().await.unwrap().unwrap().content, "Hel");
        drop(stream);
        assert_eq!(ctx.usage().calls(), 2);
    }

    #[tokio::test]
    async fn a_failed_call_is_an_error_and_counts_nothing() {
        let ctx = RunContext::new();
        let request = ChatRequest::new(vec![Message::user("hi")]);
        let failed = observe_chat(&ctx, "openai", "gpt-4o", &request, async { Err(Error::Cancelled) }).await;
        assert!(failed.is_err());
        assert_eq!(ctx.usage().calls(), 0);
        let child = ctx.child();
        let answered = observe_chat(&child, "openai", "gpt-4o", &request, async {
            Ok(ChatResponse {
                message: Message::assistant("ok"),
                usage: Usage { prompt_tokens: 5, completion_tokens: 1, ..Usage::default() },
                finish_reason: FinishReason::Stop,
            })
        })
        .await;
        assert!(answered.is_ok());
        assert_eq!(ctx.usage().calls(), 1, "a child's calls count in its parent's run");
        assert_eq!(ctx.clone().with_new_usage().usage().calls(), 0);
    }
}
