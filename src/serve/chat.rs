//! `POST /v1/chat/completions`: one reply as JSON, or a stream of server-sent events.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;

use super::error::{ApiError, ApiResult, parse_body};
use super::{ChatRunnable, Server, request_span, run_headers, unix_now};
use crate::core::{ChatRequest, FinishReason, Role, RunContext, Usage};
use crate::models::wire::{ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Delta};

fn completion_id() -> String {
    format!("chatcmpl-{:x}", rand::random::<u64>())
}

pub(super) async fn chat_completions(
    State(server): State<Arc<Server>>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body: ChatCompletionRequest = parse_body(body)?;
    let (model, stream, include_usage) = (body.model.clone(), body.stream, body.include_usage());
    let cap = server.max_tokens_cap;
    if let Some(n) = body.max_tokens()
        && (n == 0 || n > cap)
    {
        return Err(ApiError::invalid(format!("max_tokens must be between 1 and {cap}")).param("max_tokens"));
    }
    let mut request = ChatRequest::try_from(body)?;
    request.sampling.max_tokens = Some(request.sampling.max_tokens.unwrap_or(cap));
    let defaults = server.default_sampling;
    request.sampling.temperature = request.sampling.temperature.or(defaults.temperature);
    request.sampling.seed = request.sampling.seed.or(defaults.seed);
    let runnable = server
        .chat
        .get(&model)
        .cloned()
        .ok_or_else(|| ApiError::not_found_model(&model, server.chat.keys()))?;
    if request.messages.iter().all(|m| m.role == Role::System) {
        return Err(
            ApiError::invalid("messages need at least one user, assistant or tool message").param("messages")
        );
    }
    let (span, run_id) = request_span("chat", &model);
    let reply = Reply { id: completion_id(), created: unix_now(), model };
    if !stream {
        use tracing::Instrument as _;
        let ctx = RunContext::new().with_span(span.clone());
        let response = runnable.invoke(request, &ctx).instrument(span.clone()).await.inspect_err(|e| {
            crate::core::telemetry::record_error(&span, e);
        })?;
        // The run's tokens and cost in headers too: clients that read only the body's `usage`
        // lose nothing, and a gateway can meter without parsing bodies.
        let headers = run_headers(&run_id, Some(&ctx.usage()));
        return Ok((
            headers,
            axum::Json(ChatCompletion::new(reply.id, reply.created, reply.model, &response)),
        )
            .into_response());
    }
    // Streaming: the run is owned by the response stream; when the client goes away axum drops the
    // stream, which drops the run and with it the model's generation. A run that fails before its
    // first delta (a prompt over the context, say) is answered with an HTTP error, as OpenAI
    // does, not with a 200 whose stream holds the error.
    let (started_tx, started) = tokio::sync::oneshot::channel();
    let events = stream_events(runnable, request, reply, include_usage, started_tx, span);
    match started.await {
        Ok(Err(error)) => Err(error),
        // Ok(Ok(())), or the run ended without a word: the stream says the rest.
        _ => Ok((
            run_headers(&run_id, None),
            Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
        )
            .into_response()),
    }
}

/// Who a streamed reply's chunks say they belong to.
struct Reply {
    id: String,
    created: u64,
    model: String,
}

impl Reply {
    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, self.created, &self.model, delta, finish)
    }

    fn usage(&self, usage: Usage) -> ChatCompletionChunk {
        ChatCompletionChunk::usage(&self.id, self.created, &self.model, usage)
    }
}

fn event(data: &impl Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(data).unwrap_or_default())
}

/// The SSE events of one streamed completion, ending with `data: [DONE]`.
fn stream_events(
    runnable: ChatRunnable,
    request: ChatRequest,
    reply: Reply,
    include_usage: bool,
    started: tokio::sync::oneshot::Sender<ApiResult<()>>,
    span: tracing::Span,
) -> impl futures::Stream<Item = std::result::Result<SseEvent, Infallible>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    tokio::spawn(async move {
        let mut started = started;
        // The request's span lives as long as this task: it ends with the stream.
        let ctx = RunContext::new().with_span(span);
        let mut pieces = runnable.stream(request, &ctx);
        // The first piece decides between an HTTP error and a stream.
        let first = tokio::select! {
            first = pieces.next() => first,
            () = started.closed() => { ctx.cancel(); return; }
        };
        if let Some(Err(e)) = first {
            crate::core::telemetry::record_error(ctx.span(), &e);
            let _ = started.send(Err(ApiError::from(e)));
            return;
        }
        let _ = started.send(Ok(()));
        let hello =
            Delta { role: Some("assistant".into()), content: Some(String::new()), ..Delta::default() };
        if tx.send(event(&reply.chunk(hello, None))).await.is_err() {
            return;
        }
        let mut usage = None;
        let mut finish = FinishReason::Stop;
        let mut calls = 0usize;
        // The first piece, already read (None inside: the stream was empty).
        let mut pending = Some(first);
        loop {
            let next = match pending.take() {
                Some(first) => first,
                None => tokio::select! {
                    next = pieces.next() => next,
                    // The client hung up: stop generating now, not at the next token.
                    () = tx.closed() => { ctx.cancel(); return; }
                },
            };
            let Some(piece) = next else { break };
            match piece {
                Ok(response) => {
                    let delta = Delta::new(&response.message.content, &response.message.tool_calls, calls);
                    calls += response.message.tool_calls.len();
                    finish = response.finish_reason;
                    if response.usage.total_tokens() > 0 {
                        usage = Some(response.usage);
                    }
                    if !delta.is_empty() && tx.send(event(&reply.chunk(delta, None))).await.is_err() {
                        ctx.cancel();
                        return;
                    }
                }
                Err(e) => {
                    crate::core::telemetry::record_error(ctx.span(), &e);
                    let _ = tx.send(event(&ApiError::from(e).reply())).await;
                    let _ = tx.send(SseEvent::default().data("[DONE]")).await;
                    return;
                }
            }
        }
        let _ = tx.send(event(&reply.chunk(Delta::default(), Some(finish)))).await;
        if include_usage {
            let _ = tx.send(event(&reply.usage(usage.unwrap_or_default()))).await;
        }
        let _ = tx.send(SseEvent::default().data("[DONE]")).await;
    });
    let mut rx = rx;
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok)))
}
