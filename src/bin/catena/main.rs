//! The `catena` command-line tool: manage local models, chat, embed, split and ingest documents,
//! query a store, ask a database, serve models over HTTP, evaluate pipelines.
//!
//! This file holds the command tree (its doc comments are the `--help` text) and the dispatch;
//! each command family lives in its own module, with its options and one function per command.

mod chat;
mod eval;
mod ingest;
mod mcp;
mod models;
mod query;
mod redteam;
mod serve;
mod sql;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use catena::core::{Error, Result};
use catena::models::files;
use clap::{Parser, Subcommand};

/// catena: agent and RAG orchestration on local models.
///
/// Models default to the built-in ones (fetched on first use and cached under
/// ~/.cache/catena/models, or $CATENA_MODELS_DIR). Set RUST_LOG=info to see llama.cpp's logs.
#[derive(Parser)]
#[command(name = "catena", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Fetch, list and convert model files.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Chat with a model: one reply to PROMPT, or an interactive session without one.
    Chat(chat::ChatArgs),
    /// Embed texts (arguments, or one per line of stdin); prints one JSON object per line.
    Embed(chat::EmbedArgs),
    /// Split files (or folders) into chunks; prints one JSON object per chunk per line:
    /// {"content": ..., "metadata": {"source": ..., "start_index": ...}}.
    Split {
        /// Files or folders; each file is loaded by its extension (md, html, pdf, json, jsonl,
        /// csv, anything else as text).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        args: ingest::SplitArgs,
    },
    /// Load, split, embed (default local embedding model) and store documents, with progress and
    /// a summary (files ok/failed, chunks, time per stage).
    Ingest(ingest::IngestArgs),
    /// Search an ingested store and print ranked results with scores and sources; `--answer`
    /// also answers from them with the local chat model, citing them.
    ///
    /// Example: catena query --store ./store "How do I split documents?" --retriever hybrid --answer
    Query(query::QueryArgs),
    /// Text-to-SQL: check statements against the read-only guard, ask a database questions,
    /// load the Chinook sample database.
    #[command(subcommand)]
    Sql(sql::SqlCommand),
    /// Serve the local models over an OpenAI-compatible HTTP API: POST /v1/chat/completions
    /// (JSON and streaming), POST /v1/embeddings, GET /v1/models, GET /health. Any OpenAI client
    /// works with base URL http://ADDR/v1. Access logs go to stderr (RUST_LOG=info).
    ///
    /// With --console, also a web console at http://ADDR/: chat with the models and the agent,
    /// each run's trace (tokens, cost, timings), eval reports.
    ///
    /// Example: catena serve --addr 127.0.0.1:8080 --console
    Serve(serve::ServeArgs),
    /// Evaluate models and pipelines.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Model Context Protocol: serve catena's tools to MCP clients.
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
    /// Attack a model with catena's prompt-injection, leakage, exfiltration, encoding and XSS
    /// probes, inside catena's RAG chain and agent, with the defences on and off; prints the
    /// attack success rate per family and writes OUT/report.html and OUT/report.json.
    ///
    /// Example: catena redteam --base-url http://127.0.0.1:8080/v1 --model chat --out redteam
    Redteam(redteam::RedteamArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `catena serve --console` keeps every run's spans in a trace store, which must be in the
    // subscriber from the start (its writer runs on the runtime).
    let traces = match &cli.command {
        Command::Serve(args) => match runtime.block_on(serve::open_traces(args)) {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    // Log lines to stderr (access logs of `catena serve` show by default; everything else from
    // warnings up), and the GenAI spans to an OpenTelemetry backend when OTEL_EXPORTER_OTLP_*
    // says where. The handle flushes the last spans when main returns.
    let layers = traces.iter().map(|store| tracing_subscriber::Layer::boxed(store.layer())).collect();
    let _telemetry = match catena::telemetry::init_with("warn,catena::serve::access=info", layers) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, traces)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, traces: Option<catena::traces::TraceStore>) -> Result<ExitCode> {
    match cli.command {
        Command::Models(cmd) => models::run(cmd).await,
        Command::Chat(args) => chat::chat(args).await,
        Command::Embed(args) => chat::embed(args).await,
        Command::Split { files, args } => ingest::split(files, args).await,
        Command::Ingest(args) => ingest::ingest(args).await,
        Command::Query(args) => query::query(args).await,
        Command::Sql(cmd) => {
            // A refusal already explained itself on stderr: exit 1 without another message.
            return Ok(if sql::sql(cmd).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Serve(args) => serve::serve(args, traces).await,
        Command::Eval(cmd) => eval::run(cmd).await,
        Command::Mcp(cmd) => mcp::run(cmd).await,
        Command::Redteam(args) => redteam::redteam(args).await,
    }
    .map(|()| ExitCode::SUCCESS)
}

/// Runs blocking work (model files, llama.cpp loads) off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::model_permanent(format!("background task failed: {e}")))?
}

/// A local chat model by name (`chat`, `agent`, `agent-small`: fetched with a progress display
/// if needed) or GGUF path, with the default options: what every `--model` flag loads.
pub(crate) async fn chat_model(reference: &str) -> Result<catena::models::LlamaChatModel> {
    let path = model_path(reference).await?;
    catena::models::LlamaChatModel::load(&path, catena::models::LlamaOptions::default()).await
}

/// The speculation `--speculate` / `--draft-model` ask for (clap keeps them apart).
pub(crate) async fn speculation(
    prompt_lookup: bool,
    draft_model: Option<&str>,
) -> Result<catena::models::Speculation> {
    use catena::models::Speculation;
    Ok(match draft_model {
        Some(reference) => Speculation::draft_model(model_path(reference).await?),
        None if prompt_lookup => Speculation::PROMPT_LOOKUP,
        None => Speculation::Off,
    })
}

/// A default model by name, fetched with a progress display if needed, or a GGUF path.
pub(crate) async fn model_path(reference: &str) -> Result<PathBuf> {
    let reference = reference.to_owned();
    blocking(move || match files::default_model(&reference) {
        Some(m) => files::pull(&m, &files::PullOptions { force: false, progress: true }),
        None => files::resolve(&reference),
    })
    .await
}
