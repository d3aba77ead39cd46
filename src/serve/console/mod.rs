//! The web console (`catena serve --console`): one page, its script and its style sheet, compiled
//! into the binary (no build step, no network), and the JSON routes it reads.
//!
//! - `GET /` the page; `GET /console.js`, `GET /console.css` its assets.
//! - `GET /api/console` what the server offers (chat models, agent, traces, eval reports).
//! - `GET /api/runs?status=&q=&before=&limit=` the trace store's runs, newest first;
//!   `GET /api/runs/{id}` one run's spans.
//! - `GET /api/evals` the `catena eval rag` reports under the eval folder; `GET /api/evals/{name}`
//!   one report's summary; `GET /api/evals/{name}/report` its HTML page (shown sandboxed).
//!
//! The JSON routes are behind the server's API key like `/v1`; the page asks for the key when a
//! route answers 401 and keeps it for the browser tab only.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Server;
use super::error::{ApiError, ApiResult};

const PAGE: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Content-Security-Policy of the page: its own script and style only, no inline script, no
/// other origin; eval reports are shown in a sandboxed frame from `srcdoc`.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; frame-src 'self' about:; \
                      base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What the console shows beside the chat: where eval reports are read from.
#[derive(Debug, Clone, Default)]
pub struct Console {
    /// A folder of `catena eval rag --out` folders (or one such folder).
    pub evals: Option<PathBuf>,
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

pub(super) async fn about(State(server): State<Arc<Server>>) -> Json<Value> {
    Json(json!({
        "chat": server.chat.keys().collect::<Vec<_>>(),
        "agent": server.agent.is_some(),
        "traces": traces_on(&server),
        "evals": server.console.as_ref().is_some_and(|c| c.evals.is_some()),
    }))
}

#[cfg(feature = "sqlite")]
fn traces_on(server: &Server) -> bool {
    server.traces.is_some()
}

#[cfg(not(feature = "sqlite"))]
fn traces_on(_: &Server) -> bool {
    false
}

#[derive(Deserialize)]
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(super) struct RunsQuery {
    status: Option<String>,
    q: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

fn no_traces() -> ApiError {
    ApiError::refused(
        StatusCode::NOT_FOUND,
        "This server keeps no traces: start it with `catena serve --console` (or Server::with_traces).",
        "no_trace_store",
    )
}

#[cfg(feature = "sqlite")]
pub(super) async fn runs(
    State(server): State<Arc<Server>>,
    Query(query): Query<RunsQuery>,
) -> ApiResult<Response> {
    use crate::traces::{RunFilter, RunStatus};
    let store = server.traces.as_ref().ok_or_else(no_traces)?;
    let status = match query.status.as_deref().unwrap_or("") {
        "" | "all" => None,
        "ok" => Some(RunStatus::Ok),
        "error" => Some(RunStatus::Error),
        "running" => Some(RunStatus::Running),
        _ => return Err(ApiError::invalid("status is one of all, ok, error, running").param("status")),
    };
    let filter = RunFilter { status, name_contains: query.q, before_ms: query.before, limit: query.limit };
    Ok(Json(json!({"runs": store.runs(&filter).await?})).into_response())
}

#[cfg(feature = "sqlite")]
pub(super) async fn run(State(server): State<Arc<Server>>, Path(id): Path<String>) -> ApiResult<Response> {
    let store = server.traces.as_ref().ok_or_else(no_traces)?;
    match store.run(&id).await? {
        Some(run) => Ok(Json(run).into_response()),
        None => Err(ApiError::refused(
            StatusCode::NOT_FOUND,
            "No such run: it never existed, or retention has deleted it.",
            "unknown_run",
        )),
    }
}

#[cfg(not(feature = "sqlite"))]
pub(super) async fn runs(Query(_): Query<RunsQuery>) -> ApiResult<Response> {
    Err(no_traces())
}

#[cfg(not(feature = "sqlite"))]
pub(super) async fn run(Path(_): Path<String>) -> ApiResult<Response> {
    Err(no_traces())
}

/// The eval folder's reports: itself when it holds `summary.json`, else its sub-folders that do.
fn reports(root: &FsPath) -> Vec<(String, PathBuf)> {
    if root.join("summary.json").is_file() {
        let name = root.file_name().map_or_else(|| "report".to_owned(), |n| n.to_string_lossy().into_owned());
        return vec![(name, root.to_path_buf())];
    }
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.path().join("summary.json").is_file())
        .filter_map(|entry| entry.file_name().to_str().map(|name| (name.to_owned(), entry.path())))
        .collect();
    found.sort();
    found
}

fn evals_root(server: &Server) -> ApiResult<&FsPath> {
    server.console.as_ref().and_then(|c| c.evals.as_deref()).ok_or_else(|| {
        ApiError::refused(
            StatusCode::NOT_FOUND,
            "This server shows no eval reports: start it with `catena serve --console --evals DIR`.",
            "no_eval_reports",
        )
    })
}

/// A report by name: only names the listing gave, so no path from the URL reaches the disk.
fn report(server: &Server, name: &str) -> ApiResult<PathBuf> {
    reports(evals_root(server)?).into_iter().find(|(n, _)| n == name).map(|(_, path)| path).ok_or_else(|| {
        ApiError::refused(StatusCode::NOT_FOUND, format!("No eval report named {name:?}."), "unknown_report")
    })
}

fn read(path: &FsPath) -> ApiResult<String> {
    std::fs::read_to_string(path).map_err(|e| ApiError::from(crate::core::Error::io(path, e)))
}

pub(super) async fn evals(State(server): State<Arc<Server>>) -> ApiResult<Json<Value>> {
    let listed: Vec<Value> = reports(evals_root(&server)?)
        .into_iter()
        .map(|(name, path)| {
            let modified = std::fs::metadata(path.join("summary.json"))
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis());
            let summary = std::fs::read_to_string(path.join("summary.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok());
            json!({"name": name, "modified_ms": modified, "summary": summary})
        })
        .collect();
    Ok(Json(json!({"reports": listed})))
}

pub(super) async fn eval(State(server): State<Arc<Server>>, Path(name): Path<String>) -> ApiResult<Response> {
    let dir = report(&server, &name)?;
    let summary: Value = serde_json::from_str(&read(&dir.join("summary.json"))?)
        .map_err(|e| ApiError::invalid(format!("{name}/summary.json is not JSON: {e}")))?;
    Ok(Json(json!({"name": name, "summary": summary, "has_report": dir.join("report.html").is_file()}))
        .into_response())
}

pub(super) async fn eval_report(
    State(server): State<Arc<Server>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let html = read(&report(&server, &name)?.join("report.html"))?;
    // Sent as text: the console shows it in a sandboxed frame, never as a page of this origin.
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], html).into_response())
}
