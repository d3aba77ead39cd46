//! catena's fuzz targets: every parser that reads untrusted input, each a function of one byte
//! string that panics when a property fails.
//!
//! A target checks more than "no panic": parsers are deterministic (the same input twice gives
//! the same output), splitter chunks are substrings found at their `start_index` and cover the
//! text (where LangChain's semantics promise it), a guard's accepted query is a fixed point of
//! the guard (checking its output again gives the same query), a statement the SQL guard accepts
//! writes nothing when the database runs it (SQLite: a `query_only` scratch database with an
//! update hook; PostgreSQL: a read-only transaction on the server `CATENA_PG_URL` names), the
//! Cypher guard never lets a write keyword through in clause position. Time and memory are
//! bounded by the engine: `scripts/fuzz.sh` runs each target with libFuzzer's `-timeout=1
//! -rss_limit_mb=512`. What each target checks, and what fuzzing found, is in
//! docs/reliability.md.
//!
//! - [`TARGETS`]: every target by name; [`target`] finds one.
//! - `make fuzz` (`scripts/fuzz.sh`): builds the `catena-fuzz` binary with sanitizer coverage
//!   (the `libfuzzer` feature, stable Rust) and runs each target for `FUZZ_SECONDS`, printing
//!   executions, coverage and crashes per target.
//! - `make test` replays every saved input of `fuzz/corpus/<target>/` through its target
//!   (`tests/replay.rs`), so a crash once found and saved fails CI if it comes back.
//!
//! ```
//! let split = catena_fuzz::target("split_recursive").unwrap();
//! split(b"\x10\x02\x00Hello world.\n\nA second paragraph, a little longer.");
//! ```
// A fuzz target reports a broken property by panicking: that is what the engine detects.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

mod graphs;
mod guards;
mod loaders;
mod models;
mod parsers;
mod postgres;
mod splitters;
mod sqlite;

/// A fuzz target: runs one input, panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target, by name (the name of its corpus folder, `fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("loader_text", loaders::text),
    ("loader_markdown", loaders::markdown),
    ("loader_html", loaders::html),
    ("loader_pdf", loaders::pdf),
    ("loader_json", loaders::json),
    ("loader_jsonl", loaders::jsonl),
    ("loader_csv", loaders::csv),
    ("gguf_check", loaders::gguf),
    ("split_recursive", splitters::recursive),
    ("split_markdown", splitters::markdown),
    ("split_token", splitters::token),
    ("split_semantic", splitters::semantic),
    ("sql_guard_sqlite", guards::sql_sqlite),
    ("sql_guard_postgres", guards::sql_postgres),
    ("cypher_guard", guards::cypher),
    ("trec_qrels", parsers::qrels),
    ("trec_run", parsers::run),
    ("serve_chat_body", parsers::chat_body),
    ("serve_embeddings_body", parsers::embeddings_body),
    ("react_reply", parsers::react_reply),
    ("pii_text", parsers::pii),
    ("graph_checkpoints", graphs::checkpoints),
    ("mcp_tool_result", parsers::mcp_tool_result),
    ("chat_template", models::chat_template),
    ("tool_call_reply", models::tool_call_reply),
    ("tool_grammar", models::tool_grammar_from_schema),
];

/// The target called `name`.
#[must_use]
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The one tokio runtime of the process, shared by every target that calls async code: building
/// one per input would dominate the time of each run. Current-thread, so a run stays on the
/// thread the engine measures.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime")
    })
}

/// The input as text: fuzzers write bytes, most parsers read `&str`.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}
