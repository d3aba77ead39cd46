//! A local trace store: every run's GenAI spans in an SQLite file, for `catena serve --console`
//! and for anyone who wants to look at what a chain did without a trace backend.
//!
//! [`TraceStore::open`] creates (or reopens) the file; [`TraceStore::layer`] is a
//! `tracing-subscriber` layer that records catena's spans (target
//! [`catena::core::telemetry::TARGET`](crate::core::telemetry::TARGET): chat and embeddings
//! calls, tools, retrievals, agent runs, graph steps, served requests) with their attributes,
//! timings and errors. A *run* is one tree of spans, named after its root; the store keeps, per
//! run, its status and the tokens and cost of its model calls. Spans are written by a background
//! task in batches, so a traced call pays for a channel send, not for a disk write; if the writer
//! falls behind by more than [`Retention::queue`] spans, newer spans are dropped and counted
//! ([`TraceStore::dropped`]) rather than holding up the program.
//!
//! Retention keeps the file bounded: runs older than [`Retention::max_age`] are deleted, and
//! when the file grows past [`Retention::max_bytes`] the oldest runs go first.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//! use catena::traces::{Retention, RunFilter, TraceStore};
//!
//! # async fn demo() -> catena::core::Result<()> {
//! let store = TraceStore::open("traces.db", Retention::default()).await?;
//! tracing_subscriber::registry().with(store.layer()).init();
//! // ... run chains and agents ...
//! store.flush().await?;
//! for run in store.runs(&RunFilter::default()).await? {
//!     println!("{} {} {} tokens, ${:.4}", run.name, run.status, run.input_tokens + run.output_tokens, run.cost_usd);
//! }
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{mpsc, oneshot};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::core::telemetry::TARGET;
use crate::core::{Error, Result};

/// The field a root span may carry to choose its run's id (so that whoever starts a run, such
/// as `catena serve`, can tell its client where to find the trace). Other runs get a random id.
pub const RUN_ID_FIELD: &str = "catena.run.id";

/// How much the store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Runs whose last span ended longer ago than this are deleted (`None`: kept however old).
    pub max_age: Option<Duration>,
    /// When the file's live data grows past this many bytes, the oldest runs are deleted until
    /// it fits again (the newest run is always kept). `None`: unbounded.
    pub max_bytes: Option<u64>,
    /// Spans waiting for the writer before newer ones are dropped (and counted).
    pub queue: usize,
}

impl Default for Retention {
    /// Seven days and 256 MiB, 65,536 spans of queue.
    fn default() -> Self {
        Self { max_age: Some(Duration::from_secs(7 * 24 * 3600)), max_bytes: Some(256 << 20), queue: 1 << 16 }
    }
}

/// A finished run's status, or `running` while its root span is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Its root span has not ended yet.
    Running,
    /// Every span ended without an error.
    Ok,
    /// At least one span recorded an error.
    Error,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Ok => "ok",
            Self::Error => "error",
        })
    }
}

/// One run in the store's list.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run's id (its trace id, 32 hex digits unless chosen with [`RUN_ID_FIELD`]).
    pub id: String,
    /// Its root span's name (`chat qwen2.5-0.5b-instruct`, `invoke_agent agent`, ...).
    pub name: String,
    /// Its root span's kind (`LLM`, `AGENT`, `CHAIN`, ...), as OpenInference names them.
    pub kind: Option<String>,
    /// Running, ok or error.
    pub status: RunStatus,
    /// When its first span started, milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// From its root span's start to its end (`None` while running).
    pub duration_ms: Option<f64>,
    /// Spans stored.
    pub spans: i64,
    /// Prompt tokens of its model calls.
    pub input_tokens: i64,
    /// Generated tokens of its model calls.
    pub output_tokens: i64,
    /// Prompt tokens served from a cache.
    pub cached_tokens: i64,
    /// Dollars by the price table (0 for local models).
    pub cost_usd: f64,
}

/// One stored span.
#[derive(Debug, Clone, Serialize)]
pub struct StoredSpan {
    /// 16 hex digits, unique in its run.
    pub id: String,
    /// Its parent's id (`None` for the root, or when the parent was not a stored span).
    pub parent: Option<String>,
    /// The span's name (its `otel.name` when it has one).
    pub name: String,
    /// OpenInference kind: `LLM`, `EMBEDDING`, `TOOL`, `RETRIEVER`, `RERANKER`, `AGENT`, `CHAIN`.
    pub kind: Option<String>,
    /// Start, nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// End, nanoseconds since the Unix epoch.
    pub end_ns: i64,
    /// Whether it recorded an error.
    pub error: bool,
    /// Its attributes (`gen_ai.*`, `catena.*`, `error.type`, ...), as recorded.
    pub attributes: Map<String, Value>,
}

/// A run with all its spans, parents before children.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunSummary,
    /// Its spans, by start time.
    pub spans: Vec<StoredSpan>,
}

/// Which runs [`TraceStore::runs`] lists, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only runs with this status.
    pub status: Option<RunStatus>,
    /// Only runs whose name contains this text (case-insensitive).
    pub name_contains: Option<String>,
    /// Only runs that started before this (milliseconds since the Unix epoch): the next page.
    pub before_ms: Option<i64>,
    /// At most this many (default 50, at most 1,000).
    pub limit: Option<u32>,
}

enum Message {
    Span(Box<(String, StoredSpan)>),
    Flush(oneshot::Sender<()>),
    Prune(oneshot::Sender<std::result::Result<(), String>>),
}

/// The SQLite trace store; cheap to clone (all clones share one file and one writer).
#[derive(Clone)]
pub struct TraceStore {
    pool: SqlitePool,
    path: Arc<PathBuf>,
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceStore").field("path", &self.path).finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS trace_runs (
    id TEXT PRIMARY KEY,
    name TEXT,
    kind TEXT,
    root_start_ns INTEGER,
    root_end_ns INTEGER,
    first_ns INTEGER NOT NULL,
    last_ns INTEGER NOT NULL,
    spans INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS trace_runs_by_start ON trace_runs (first_ns);
CREATE INDEX IF NOT EXISTS trace_runs_by_last ON trace_runs (last_ns);
CREATE TABLE IF NOT EXISTS trace_spans (
    run_id TEXT NOT NULL,
    id TEXT NOT NULL,
    parent_id TEXT,
    name TEXT NOT NULL,
    kind TEXT,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    error INTEGER NOT NULL,
    attributes TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
);";

/// How often the writer applies the retention rules while spans keep arriving.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

impl TraceStore {
    /// Opens (creating if needed) the trace file at `path` and starts its writer on the current
    /// tokio runtime.
    ///
    /// # Errors
    /// The file cannot be created or opened, or is not an SQLite database.
    pub async fn open(path: impl AsRef<Path>, retention: Retention) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let at = |e: sqlx::Error| store_error(&path, e);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            // Deleted runs give their pages back to the file system (incremental vacuum after
            // pruning); only takes effect on a new file, which is the usual case.
            .auto_vacuum(sqlx::sqlite::SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        // Two connections: the writer's batches do not hold up the console's reads (WAL).
        let pool = SqlitePoolOptions::new().max_connections(2).connect_with(options).await.map_err(at)?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(at)?;
        let (sender, receiver) = mpsc::channel(retention.queue.max(1));
        let path = Arc::new(path);
        tokio::spawn(write(pool.clone(), Arc::clone(&path), retention, receiver));
        Ok(Self { pool, path, sender, dropped: Arc::new(AtomicU64::new(0)) })
    }

    /// The file's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layer that records catena's spans into this store (target
    /// [`TARGET`], level info and up).
    #[must_use]
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        Recorder { sender: self.sender.clone(), dropped: Arc::clone(&self.dropped) }
            .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO))
    }

    /// Spans dropped because the writer fell behind.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every span ended so far is in the file.
    ///
    /// # Errors
    /// The writer has stopped (its runtime shut down).
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.sender.send(Message::Flush(done)).await.map_err(|_| self.stopped())?;
        wait.await.map_err(|_| self.stopped())
    }

    /// Applies the retention rules now (the writer also does, every 30 seconds of traffic).
    ///
    /// # Errors
    /// The writer has stopped, or the file cannot be written.
    pub async fn prune(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.sender.send(Message::Prune(done)).await.map_err(|_| self.stopped())?;
        wait.await.map_err(|_| self.stopped())?.map_err(Error::store)
    }

    fn stopped(&self) -> Error {
        Error::store(format!(
            "trace store {}: its writer has stopped (the tokio runtime it was opened on has shut down)",
            self.path.display()
        ))
    }

    /// Runs, newest first.
    ///
    /// # Errors
    /// The file cannot be read.
    pub async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM trace_runs WHERE 1 = 1");
        match filter.status {
            Some(RunStatus::Running) => sql.push_str(" AND root_end_ns IS NULL"),
            Some(RunStatus::Ok) => sql.push_str(" AND root_end_ns IS NOT NULL AND errors = 0"),
            Some(RunStatus::Error) => sql.push_str(" AND errors > 0"),
            None => {}
        }
        let name = filter.name_contains.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if name.is_some() {
            sql.push_str(" AND instr(lower(COALESCE(name, '')), lower(?1)) > 0");
        }
        if filter.before_ms.is_some() {
            sql.push_str(" AND first_ns < ?2");
        }
        sql.push_str(" ORDER BY first_ns DESC LIMIT ?3");
        // Only fixed clauses are appended; the user's text is bound.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name.unwrap_or(""))
            .bind(filter.before_ms.unwrap_or(0).saturating_mul(1_000_000))
            .bind(i64::from(filter.limit.unwrap_or(50).clamp(1, 1000)))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error(e))?;
        Ok(rows.iter().map(run_summary).collect())
    }

    /// One run and its spans (`None`: no such run, or pruned).
    ///
    /// # Errors
    /// The file cannot be read.
    pub async fn run(&self, id: &str) -> Result<Option<RunDetail>> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {RUN_COLUMNS} FROM trace_runs WHERE id = ?1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.error(e))?;
        let Some(row) = row else { return Ok(None) };
        let spans = sqlx::query(
            "SELECT id, parent_id, name, kind, start_ns, end_ns, error, attributes FROM trace_spans \
             WHERE run_id = ?1 ORDER BY start_ns, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error(e))?;
        let spans = spans
            .iter()
            .map(|s| StoredSpan {
                id: s.get(0),
                parent: s.get(1),
                name: s.get(2),
                kind: s.get(3),
                start_ns: s.get(4),
                end_ns: s.get(5),
                error: s.get::<i64, _>(6) != 0,
                attributes: match serde_json::from_str(s.get::<&str, _>(7)) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                },
            })
            .collect();
        Ok(Some(RunDetail { run: run_summary(&row), spans }))
    }

    /// Bytes of live data in the file (what [`Retention::max_bytes`] bounds).
    ///
    /// # Errors
    /// The file cannot be read.
    pub async fn stored_bytes(&self) -> Result<u64> {
        live_bytes(&self.pool).await.map_err(|e| self.error(e))
    }

    fn error(&self, e: sqlx::Error) -> Error {
        store_error(&self.path, e)
    }
}

const RUN_COLUMNS: &str = "id, COALESCE(name, ''), kind, root_start_ns, root_end_ns, first_ns, spans, errors, \
                           input_tokens, output_tokens, cached_tokens, cost_usd";

fn run_summary(row: &sqlx::sqlite::SqliteRow) -> RunSummary {
    let root_start: Option<i64> = row.get(3);
    let root_end: Option<i64> = row.get(4);
    let errors: i64 = row.get(7);
    let status = match (root_end, errors) {
        (_, e) if e > 0 => RunStatus::Error,
        (None, _) => RunStatus::Running,
        _ => RunStatus::Ok,
    };
    #[allow(clippy::cast_precision_loss)]
    let duration_ms = root_start.zip(root_end).map(|(s, e)| (e - s) as f64 / 1e6);
    RunSummary {
        id: row.get(0),
        name: row.get(1),
        kind: row.get(2),
        status,
        started_ms: row.get::<i64, _>(5) / 1_000_000,
        duration_ms,
        spans: row.get(6),
        input_tokens: row.get(8),
        output_tokens: row.get(9),
        cached_tokens: row.get(10),
        cost_usd: row.get(11),
    }
}

fn store_error(path: &Path, e: sqlx::Error) -> Error {
    Error::store(format!("trace store {}: {e}", path.display())).with_source(e)
}

async fn live_bytes(pool: &SqlitePool) -> std::result::Result<u64, sqlx::Error> {
    let pages: i64 = sqlx::query_scalar(
        "SELECT page_count - freelist_count FROM pragma_page_count(), pragma_freelist_count()",
    )
    .fetch_one(pool)
    .await?;
    let size: i64 = sqlx::query_scalar("SELECT page_size FROM pragma_page_size()").fetch_one(pool).await?;
    Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
}

/// The writer: batches of spans, one transaction each, and the retention rules now and then.
async fn write(
    pool: SqlitePool,
    path: Arc<PathBuf>,
    retention: Retention,
    mut receiver: mpsc::Receiver<Message>,
) {
    let mut last_prune = Instant::now();
    let mut batch = Vec::new();
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut prune_now = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Span(span) => batch.push(*span),
                Message::Flush(done) => waiting.push(done),
                Message::Prune(done) => prune_now.push(done),
            }
            next = if batch.len() < 2048 { receiver.try_recv().ok() } else { None };
        }
        if !batch.is_empty()
            && let Err(e) = insert(&pool, &batch).await
        {
            tracing::warn!(target: "catena::traces", "trace store {}: {} spans lost: {e}", path.display(), batch.len());
        }
        batch.clear();
        if !prune_now.is_empty() || last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            let pruned = prune(&pool, &retention).await.map_err(|e| store_error(&path, e).to_string());
            if let Err(e) = &pruned {
                tracing::warn!(target: "catena::traces", "{e}");
            }
            for done in prune_now {
                let _ = done.send(pruned.clone());
            }
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

async fn insert(pool: &SqlitePool, batch: &[(String, StoredSpan)]) -> std::result::Result<(), sqlx::Error> {
    let mut tx: Transaction<'_, Sqlite> = pool.begin().await?;
    for (run, span) in batch {
        sqlx::query(
            "INSERT OR REPLACE INTO trace_spans (run_id, id, parent_id, name, kind, start_ns, end_ns, error, attributes) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .bind(run)
        .bind(&span.id)
        .bind(&span.parent)
        .bind(&span.name)
        .bind(&span.kind)
        .bind(span.start_ns)
        .bind(span.end_ns)
        .bind(i64::from(span.error))
        .bind(serde_json::to_string(&span.attributes).unwrap_or_default())
        .execute(&mut *tx)
        .await?;
        // Tokens and cost are counted on the model calls only: an agent span repeats its calls' totals.
        let model_call = matches!(span.kind.as_deref(), Some("LLM" | "EMBEDDING"));
        let int = |key: &str| {
            if model_call { span.attributes.get(key).and_then(Value::as_i64).unwrap_or(0) } else { 0 }
        };
        let cost = if model_call {
            span.attributes.get("catena.usage.cost_usd").and_then(Value::as_f64).unwrap_or(0.0)
        } else {
            0.0
        };
        sqlx::query(
            "INSERT INTO trace_runs (id, first_ns, last_ns, spans, errors, input_tokens, output_tokens, cached_tokens, cost_usd) \
             VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (id) DO UPDATE SET first_ns = min(first_ns, excluded.first_ns), \
             last_ns = max(last_ns, excluded.last_ns), spans = spans + 1, errors = errors + excluded.errors, \
             input_tokens = input_tokens + excluded.input_tokens, output_tokens = output_tokens + excluded.output_tokens, \
             cached_tokens = cached_tokens + excluded.cached_tokens, cost_usd = cost_usd + excluded.cost_usd",
        )
        .bind(run)
        .bind(span.start_ns)
        .bind(span.end_ns)
        .bind(i64::from(span.error))
        .bind(int("gen_ai.usage.input_tokens"))
        .bind(int("gen_ai.usage.output_tokens"))
        .bind(int("gen_ai.usage.cache_read.input_tokens"))
        .bind(cost)
        .execute(&mut *tx)
        .await?;
        if span.parent.is_none() {
            sqlx::query("UPDATE trace_runs SET name = ?2, kind = ?3, root_start_ns = ?4, root_end_ns = ?5 WHERE id = ?1")
                .bind(run)
                .bind(&span.name)
                .bind(&span.kind)
                .bind(span.start_ns)
                .bind(span.end_ns)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

async fn prune(pool: &SqlitePool, retention: &Retention) -> std::result::Result<(), sqlx::Error> {
    let mut deleted = false;
    if let Some(age) = retention.max_age {
        let cutoff = unix_ns(SystemTime::now().checked_sub(age).unwrap_or(UNIX_EPOCH));
        deleted |= delete_runs(pool, "SELECT id FROM trace_runs WHERE last_ns < ?1", cutoff).await? > 0;
    }
    if let Some(max) = retention.max_bytes {
        while live_bytes(pool).await? > max {
            let runs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM trace_runs").fetch_one(pool).await?;
            if runs <= 1 {
                break;
            }
            // The oldest fifth at a time (at least one run), never the newest.
            let n = (runs / 5).clamp(1, runs - 1);
            deleted |= delete_runs(pool, "SELECT id FROM trace_runs ORDER BY last_ns LIMIT ?1", n).await? > 0;
        }
    }
    if deleted {
        sqlx::query("PRAGMA incremental_vacuum").execute(pool).await?;
    }
    Ok(())
}

async fn delete_runs(pool: &SqlitePool, which: &str, arg: i64) -> std::result::Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM trace_spans WHERE run_id IN ({which})")))
        .bind(arg)
        .execute(&mut *tx)
        .await?;
    let gone = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM trace_runs WHERE id IN ({which})")))
        .bind(arg)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(gone.rows_affected())
}

fn unix_ns(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What the recorder keeps on an open span.
struct Open {
    run: String,
    id: String,
    parent: Option<String>,
    name: String,
    start_ns: i64,
    fields: Map<String, Value>,
}

struct Recorder {
    sender: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Map::new();
        attrs.record(&mut Fields(&mut fields));
        // The nearest recorded ancestor (the per-layer filter hides the others) gives the run.
        let parent =
            span.parent().and_then(|p| p.extensions().get::<Open>().map(|o| (o.run.clone(), o.id.clone())));
        let (run, parent) = match parent {
            Some((run, parent)) => (run, Some(parent)),
            None => {
                let chosen = fields.get(RUN_ID_FIELD).and_then(Value::as_str).map(str::to_owned);
                (chosen.unwrap_or_else(|| format!("{:032x}", rand::random::<u128>())), None)
            }
        };
        let open = Open {
            run,
            id: format!("{:016x}", rand::random::<u64>()),
            parent,
            name: attrs.metadata().name().to_owned(),
            start_ns: unix_ns(SystemTime::now()),
            fields,
        };
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut Fields(&mut open.fields));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(mut open) = span.extensions_mut().remove::<Open>() else { return };
        let name = match open.fields.remove("otel.name") {
            Some(Value::String(name)) => name,
            _ => open.name,
        };
        let error = open.fields.get("otel.status_code").and_then(Value::as_str) == Some("ERROR")
            || open.fields.contains_key("error.type");
        if let Some(description) = open.fields.remove("otel.status_description") {
            open.fields.insert("error.message".into(), description);
        }
        open.fields.retain(|key, _| !key.starts_with("otel."));
        let kind = match open.fields.remove("openinference.span.kind") {
            Some(Value::String(kind)) => Some(kind),
            _ => None,
        };
        let stored = StoredSpan {
            id: open.id,
            parent: open.parent,
            name,
            kind,
            start_ns: open.start_ns,
            end_ns: unix_ns(SystemTime::now()),
            error,
            attributes: open.fields,
        };
        if self.sender.try_send(Message::Span(Box::new((open.run, stored)))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Span fields as JSON values; strings that hold JSON documents (messages, documents, finish
/// reasons) stay strings, as the conventions record them.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// A dispatcher that lives as long as the test process. While only one dispatcher is alive,
    /// tracing-core decides whether a callsite is enabled from the default dispatcher *of the
    /// thread that first reaches it*: a parallel test that runs a shared callsite (a database
    /// query, a load) on a thread without a subscriber would then switch it off for everyone, and
    /// a test here would miss spans (it did, once, in CI). With two alive, every callsite asks
    /// all of them.
    static SECOND_DISPATCHER: std::sync::LazyLock<tracing::Dispatch> =
        std::sync::LazyLock::new(|| tracing::Dispatch::new(tracing_subscriber::registry()));

    async fn store_in(dir: &Path, retention: Retention) -> (TraceStore, tracing::Dispatch) {
        std::sync::LazyLock::force(&SECOND_DISPATCHER);
        let store = TraceStore::open(dir.join("traces.db"), retention).await.unwrap();
        let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(store.layer()));
        (store, dispatch)
    }

    /// One run: an agent span over a chat call with usage and a failing tool call.
    fn agent_run(run_id: &str) {
        let root = tracing::info_span!(target: TARGET, "invoke_agent", otel.name = "invoke_agent helper",
            openinference.span.kind = "AGENT", catena.run.id = run_id, catena.usage.cost_usd = 5.0);
        let _root = root.enter();
        {
            let chat = tracing::info_span!(target: TARGET, "chat", otel.name = "chat m",
                openinference.span.kind = "LLM", gen_ai.usage.input_tokens = tracing::field::Empty,
                gen_ai.usage.output_tokens = 7_i64, catena.usage.cost_usd = 0.25);
            chat.record("gen_ai.usage.input_tokens", 30_i64);
        }
        {
            let tool = tracing::info_span!(target: TARGET, "execute_tool", otel.name = "execute_tool calc",
                openinference.span.kind = "TOOL", otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty, error.type = tracing::field::Empty);
            tool.record("otel.status_code", "ERROR");
            tool.record("otel.status_description", "division by zero");
            tool.record("error.type", "Tool");
        }
        // Another target's span is not stored, and does not break the tree.
        let _other = tracing::info_span!(target: "somewhere_else", "noise").entered();
    }

    #[tokio::test]
    async fn a_run_is_stored_as_a_tree_with_its_usage_status_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (store, dispatch) = store_in(dir.path(), Retention::default()).await;
        tracing::dispatcher::with_default(&dispatch, || agent_run("run-1"));
        store.flush().await.unwrap();
        let runs = store.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(
            (run.id.as_str(), run.name.as_str(), run.status),
            ("run-1", "invoke_agent helper", RunStatus::Error)
        );
        assert_eq!((run.spans, run.input_tokens, run.output_tokens), (3, 30, 7));
        // The agent span's own cost is not added to its calls' (it is their total).
        assert!((run.cost_usd - 0.25).abs() < 1e-9, "{}", run.cost_usd);
        assert!(run.duration_ms.is_some());
        let detail = store.run("run-1").await.unwrap().unwrap();
        let root = detail.spans.iter().find(|s| s.parent.is_none()).unwrap();
        assert_eq!(root.kind.as_deref(), Some("AGENT"));
        let children: Vec<_> = detail.spans.iter().filter(|s| s.parent.as_ref() == Some(&root.id)).collect();
        assert_eq!(
            children.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["chat m", "execute_tool calc"]
        );
        let tool = children[1];
        assert!(tool.error);
        assert_eq!(tool.attributes["error.message"], "division by zero");
        assert!(!tool.attributes.contains_key("otel.status_code"), "{:?}", tool.attributes);
        assert_eq!(children[0].attributes["gen_ai.usage.input_tokens"], 30);
        assert!(store.run("no-such-run").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn runs_are_listed_newest_first_and_filtered_by_status_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let (store, dispatch) = store_in(dir.path(), Retention::default()).await;
        tracing::dispatcher::with_default(&dispatch, || {
            agent_run("failed");
            std::thread::sleep(Duration::from_millis(2));
            let _ok = tracing::info_span!(target: TARGET, "chat", otel.name = "chat fine").entered();
        });
        store.flush().await.unwrap();
        let all = store.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["chat fine", "invoke_agent helper"]
        );
        let errors =
            store.runs(&RunFilter { status: Some(RunStatus::Error), ..RunFilter::default() }).await.unwrap();
        assert_eq!(errors.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["failed"]);
        let named = store
            .runs(&RunFilter { name_contains: Some("FINE".into()), ..RunFilter::default() })
            .await
            .unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].status, RunStatus::Ok);
        let page = store
            .runs(&RunFilter { before_ms: Some(all[0].started_ms), limit: Some(1), ..RunFilter::default() })
            .await
            .unwrap();
        assert!(page.iter().all(|r| r.id == "failed"), "{page:?}");
    }

    #[tokio::test]
    async fn retention_deletes_the_oldest_runs_past_the_size_limit_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention { max_age: None, max_bytes: Some(256 << 10), queue: 1 << 16 };
        let (store, dispatch) = store_in(dir.path(), retention).await;
        let big = "x".repeat(2000);
        tracing::dispatcher::with_default(&dispatch, || {
            for i in 0..400 {
                let run = format!("run-{i:03}");
                let _span = tracing::info_span!(target: TARGET, "chat", catena.run.id = run.as_str(), gen_ai.input.messages = big.as_str()).entered();
            }
        });
        store.flush().await.unwrap();
        assert!(store.stored_bytes().await.unwrap() > 256 << 10);
        store.prune().await.unwrap();
        assert!(store.stored_bytes().await.unwrap() <= 256 << 10);
        let left = store.runs(&RunFilter { limit: Some(1000), ..RunFilter::default() }).await.unwrap();
        assert!(!left.is_empty() && left.len() < 400, "{}", left.len());
        assert_eq!(left[0].id, "run-399", "the newest run is kept");
        // The file itself shrank: deleted pages went back to the file system.
        let file = std::fs::metadata(store.path()).unwrap().len();
        assert!(file < 600 << 10, "{file} bytes");
    }

    #[tokio::test]
    async fn retention_deletes_runs_older_than_the_age_limit() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention { max_age: Some(Duration::from_millis(300)), max_bytes: None, queue: 16 };
        let (store, dispatch) = store_in(dir.path(), retention).await;
        tracing::dispatcher::with_default(&dispatch, || {
            drop(tracing::info_span!(target: TARGET, "old", catena.run.id = "old").entered())
        });
        store.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        tracing::dispatcher::with_default(&dispatch, || {
            drop(tracing::info_span!(target: TARGET, "new", catena.run.id = "new").entered())
        });
        store.prune().await.unwrap();
        let left = store.runs(&RunFilter::default()).await.unwrap();
        assert_eq!(left.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["new"]);
        assert!(store.run("old").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_spans_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention { queue: 4, ..Retention::default() };
        let (store, dispatch) = store_in(dir.path(), retention).await;
        // On this (current-thread) runtime the writer cannot run while the spans are made.
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..50 {
                drop(tracing::info_span!(target: TARGET, "chat").entered());
            }
        });
        assert_eq!(store.dropped(), 46);
        store.flush().await.unwrap();
        assert_eq!(store.runs(&RunFilter::default()).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn loads_and_database_queries_are_spans_with_their_counts_and_errors() {
        use tracing::Instrument as _;
        let dir = tempfile::tempdir().unwrap();
        let (store, dispatch) = store_in(dir.path(), Retention::default()).await;
        std::fs::write(dir.path().join("notes.md"), "# Notes\n\nSome text.").unwrap();
        let db = crate::query::sql::SqlDatabase::connect("sqlite::memory:").await.unwrap();
        let _guard = tracing::dispatcher::set_default(&dispatch);
        let root = tracing::info_span!(target: TARGET, "ingest", catena.run.id = "io");
        async {
            let ctx = crate::core::RunContext::new();
            let loaded = crate::loaders::load_file(&dir.path().join("notes.md"), &ctx).await;
            assert_eq!(loaded.len(), 1);
            let missing = crate::loaders::load_file(&dir.path().join("gone.pdf"), &ctx).await;
            assert!(missing[0].is_err());
            db.execute_unguarded("SELECT 1 UNION SELECT 2").await.unwrap();
            db.execute_unguarded("SELECT * FROM no_such_table").await.unwrap_err();
        }
        .instrument(root)
        .await;
        store.flush().await.unwrap();
        let spans = store.run("io").await.unwrap().unwrap().spans;
        let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
        let load = named("load markdown")[0];
        assert_eq!((load.attributes["catena.loader.documents"].as_i64(), load.error), (Some(1), false));
        assert!(named("load pdf")[0].error);
        let selects = named("SELECT sqlite");
        assert_eq!(selects.len(), 2, "{spans:#?}");
        assert_eq!(selects[0].attributes["db.response.returned_rows"], 2);
        assert_eq!(selects[0].attributes["db.system.name"], "sqlite");
        assert!(!selects[0].attributes.contains_key("db.query.text"), "query text only on opt-in");
        assert!(
            selects[1].error
                && selects[1].attributes["error.message"].as_str().unwrap().contains("no_such_table")
        );
    }

    #[tokio::test]
    async fn a_span_first_reached_on_a_thread_without_a_subscriber_is_still_stored() {
        fn shared_callsite(run_id: &str) {
            drop(tracing::info_span!(target: TARGET, "shared", catena.run.id = run_id).entered());
        }
        let dir = tempfile::tempdir().unwrap();
        let (store, dispatch) = store_in(dir.path(), Retention::default()).await;
        // What a parallel test does: it reaches the callsite first, with no subscriber.
        std::thread::spawn(|| shared_callsite("elsewhere")).join().unwrap();
        tracing::dispatcher::with_default(&dispatch, || shared_callsite("here"));
        store.flush().await.unwrap();
        assert!(store.run("here").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("traces.db");
        std::fs::write(&path, "not a database, just text that is long enough to have a header").unwrap();
        let e = TraceStore::open(&path, Retention::default()).await.unwrap_err();
        assert!(e.to_string().contains("trace store") && e.to_string().contains("traces.db"), "{e}");
    }
}
