//! Agent threads over HTTP: a served agent's runs are saved per thread, pause when a tool needs a
//! person's approval, and resume with the decisions, from any client, after any restart.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::Server;
use super::error::{ApiError, ApiResult, parse_body};
use crate::agents::graph::{CompiledGraph, Interrupt, Outcome, Resume, Source, Thread};
use crate::agents::{AgentRun, AgentStep, Approval, StopReason};
use crate::core::{Message, RunContext, Usage};

/// `POST /v1/threads/{thread}/runs`: a question.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunRequest {
    input: String,
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
) -> ApiResult<Json<RunReply>> {
    let graph = agent(&server)?;
    let thread = thread_id(&id)?;
    let body: RunRequest = parse_body(body)?;
    if body.input.trim().is_empty() {
        return Err(ApiError::invalid("`input` is empty: send the question.").param("input"));
    }
    let outcome = graph.invoke(&thread, AgentRun::ask(body.input), &RunContext::new()).await?;
    Ok(Json(reply(&thread, outcome)))
}

pub(super) async fn resume(
    State(server): State<Arc<Server>>,
    Path(id): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Json<RunReply>> {
    let graph = agent(&server)?;
    let thread = thread_id(&id)?;
    let approval: Approval = parse_body(body)?;
    let outcome = graph.resume(&thread, Resume::with(&approval)?, &RunContext::new()).await?;
    Ok(Json(reply(&thread, outcome)))
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
