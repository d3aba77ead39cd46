//! Agent threads over HTTP: a served agent's runs are saved per thread, pause when a tool needs a
//! person's approval, and resume with the decisions, from any client, after any restart.

use std::sync::Arc;

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, parse_body};
use super::{Server, request_span, run_headers};
use crate::agents::graph::{
    CompiledGraph, GraphEvent, Interrupt, Outcome, Resume, Source, StreamMode, Thread,
};
use crate::agents::{AgentRun, AgentStep, Approval, StopReason};
use crate::core::{Message, RunContext, Usage};

/// `POST /v1/threads/{thread}/runs`: a question.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    input: String,
    #[serde(flatten)]
    stream: StreamRequest,
}

/// `POST /v1/threads/{thread}/resume`: the decisions.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    decisions: std::collections::BTreeMap<String, crate::agents::Decision>,
    #[serde(flatten)]
    stream: StreamRequest,
}

/// Whether to answer as server-sent events, and which.
#[derive(Deserialize, Default)]
struct StreamRequest {
    #[serde(default)]
    stream: bool,
    /// Default: `updates` and `messages`.
    #[serde(default)]
    stream_mode: Option<Vec<Mode>>,
}

/// A stream mode as the wire names it.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Values,
    Updates,
    Messages,
    Custom,
}

impl StreamRequest {
    fn modes(&self) -> Vec<StreamMode> {
        let modes = self.stream_mode.clone().unwrap_or_else(|| vec![Mode::Updates, Mode::Messages]);
        modes
            .into_iter()
            .map(|m| match m {
                Mode::Values => StreamMode::Values,
                Mode::Updates => StreamMode::Updates,
                Mode::Messages => StreamMode::Messages,
                Mode::Custom => StreamMode::Custom,
            })
            .collect()
    }
}

/// How a streamed run starts.
enum Start {
    Ask(String),
    Resume(Resume),
}

/// A run answered as server-sent events, one per graph event, named by kind: `values`
/// (`{checkpoint, step, state}`), `updates` (`{step, node, update}`), `messages` (`{node,
/// text}`: model tokens), `custom` (`{node, value}`), then `end` (the same body a plain request
/// gets) or `error` (an OpenAI-shaped error). The run belongs to the server, not the
/// connection: a client that hangs up finds the result in `GET /v1/threads/{thread}`.
fn streamed(server: Arc<Server>, thread: Thread, start: Start, modes: Vec<StreamMode>) -> Response {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    let (span, run_id) = request_span("thread", thread.id());
    tokio::spawn(async move {
        let Some(graph) = server.agent.as_ref() else { return };
        // The request's span lives as long as this task: it ends with the stream.
        let ctx = RunContext::new().with_span(span);
        let mut events = match start {
            Start::Ask(input) => graph.stream(&thread, AgentRun::ask(input), &modes, &ctx),
            Start::Resume(resume) => graph.stream_resume(&thread, resume, &modes, &ctx),
        };
        while let Some(item) = events.next().await {
            let event = match item {
                Ok(GraphEvent::Values { checkpoint, step, state }) => sse(
                    "values",
                    &serde_json::json!({"checkpoint": checkpoint, "step": step, "state": state}),
                ),
                Ok(GraphEvent::Update { step, node, update }) => {
                    sse("updates", &serde_json::json!({"step": step, "node": node, "update": update}))
                }
                Ok(GraphEvent::Token { node, text }) => {
                    sse("messages", &serde_json::json!({"node": node, "text": text}))
                }
                Ok(GraphEvent::Custom { node, value }) => {
                    sse("custom", &serde_json::json!({"node": node, "value": value}))
                }
                Ok(GraphEvent::Finished(outcome)) => sse("end", &reply(&thread, outcome)),
                Err(e) => {
                    crate::core::telemetry::record_error(ctx.span(), &e);
                    sse("error", &ApiError::from(e).reply())
                }
            };
            // A closed connection is ignored: the run goes on and is saved.
            let _ = tx.send(event).await;
        }
    });
    let events = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    (
        run_headers(&run_id, None),
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
        .into_response()
}

fn sse(kind: &str, data: &impl Serialize) -> SseEvent {
    SseEvent::default().event(kind).data(serde_json::to_string(data).unwrap_or_default())
}

/// A run's outcome: done with an answer, or waiting for approval.
#[derive(Serialize)]
pub(super) struct RunReply {
    thread: String,
    /// `done` or `interrupted`.
    status: &'static str,
    answer: Option<String>,
    stop: Option<StopReason>,
    steps: Vec<AgentStep>,
    /// What waits for a decision (each payload an `ApprovalRequest`: the calls, by id).
    interrupts: Vec<Interrupt>,
    usage: Usage,
}

/// `GET /v1/threads/{thread}`: where the thread stands.
#[derive(Serialize)]
pub(super) struct ThreadReply {
    thread: String,
    checkpoint: u64,
    /// The nodes that run next (empty when the last run finished).
    next: Vec<String>,
    interrupts: Vec<Interrupt>,
    /// The conversation so far.
    history: Vec<Message>,
    answer: Option<String>,
    stop: Option<StopReason>,
}

/// One entry of `GET /v1/threads/{thread}/history`.
#[derive(Serialize)]
pub(super) struct CheckpointReply {
    checkpoint: u64,
    parent: Option<u64>,
    step: i64,
    source: Source,
    next: Vec<String>,
    interrupts: usize,
    created_at_ms: u64,
}

fn agent(server: &Server) -> ApiResult<&CompiledGraph<AgentRun>> {
    server.agent.as_ref().ok_or_else(|| {
        ApiError::refused(
            StatusCode::NOT_FOUND,
            "This server runs no agent threads: serve one with Server::with_agent (catena serve --agent).",
            "unknown_url",
        )
    })
}

fn thread_id(id: &str) -> ApiResult<Thread> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(Thread::new(id))
    } else {
        Err(ApiError::invalid("A thread id is 1 to 128 letters, digits, `-`, `_` or `.`.").param("thread"))
    }
}

fn reply(thread: &Thread, outcome: Outcome<AgentRun>) -> RunReply {
    let (status, interrupts) = match &outcome {
        Outcome::Done(_) => ("done", Vec::new()),
        Outcome::Interrupted { interrupts, .. } => ("interrupted", interrupts.clone()),
    };
    let run = outcome.into_state();
    RunReply {
        thread: thread.id().to_owned(),
        status,
        answer: run.answer,
        stop: run.stop,
        steps: run.steps,
        interrupts,
        usage: run.usage,
    }
}

pub(super) async fn run(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    agent(&server)?;
    let thread = thread_id(&id)?;
    let body: RunRequest = parse_body(body)?;
    if body.input.trim().is_empty() {
        return Err(ApiError::invalid("`input` is empty: send the question.").param("input"));
    }
    answer(&server, thread, Start::Ask(body.input), &body.stream).await
}

pub(super) async fn resume(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    agent(&server)?;
    let thread = thread_id(&id)?;
    let body: ResumeRequest = parse_body(body)?;
    let resume = Resume::with(&Approval { decisions: body.decisions })?;
    answer(&server, thread, Start::Resume(resume), &body.stream).await
}

/// Runs `start` on the thread: streamed as server-sent events when asked, else one JSON body.
async fn answer(
    server: &Arc<Server>,
    thread: Thread,
    start: Start,
    stream: &StreamRequest,
) -> ApiResult<Response> {
    if stream.stream {
        return Ok(streamed(Arc::clone(server), thread, start, stream.modes()));
    }
    use tracing::Instrument as _;
    let graph = agent(server)?;
    let (span, run_id) = request_span("thread", thread.id());
    let ctx = RunContext::new().with_span(span.clone());
    let outcome = match start {
        Start::Ask(input) => graph.invoke(&thread, AgentRun::ask(input), &ctx).instrument(span.clone()).await,
        Start::Resume(resume) => graph.resume(&thread, resume, &ctx).instrument(span.clone()).await,
    }
    .inspect_err(|e| crate::core::telemetry::record_error(&span, e))?;
    Ok((run_headers(&run_id, Some(&ctx.usage())), Json(reply(&thread, outcome))).into_response())
}

pub(super) async fn state(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> ApiResult<Json<ThreadReply>> {
    let graph = agent(&server)?;
    let thread = thread_id(&id)?;
    let snapshot = graph.state(&thread).await?.ok_or_else(|| {
        ApiError::refused(
            StatusCode::NOT_FOUND,
            format!("No thread `{id}`: start it with POST /v1/threads/{id}/runs."),
            "thread_not_found",
        )
    })?;
    Ok(Json(ThreadReply {
        thread: id,
        checkpoint: snapshot.checkpoint,
        next: snapshot.next,
        interrupts: snapshot.interrupts,
        history: snapshot.state.history,
        answer: snapshot.state.answer,
        stop: snapshot.state.stop,
    }))
}

pub(super) async fn history(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<CheckpointReply>>> {
    let graph = agent(&server)?;
    let thread = thread_id(&id)?;
    let history = graph.history(&thread).await?;
    Ok(Json(
        history
            .into_iter()
            .map(|s| CheckpointReply {
                checkpoint: s.checkpoint,
                parent: s.parent,
                step: s.step,
                source: s.source,
                next: s.next,
                interrupts: s.interrupts.len(),
                created_at_ms: s.created_at_ms,
            })
            .collect(),
    ))
}
