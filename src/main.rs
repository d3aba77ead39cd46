//! The `catena` command-line tool: manage local models, chat, embed, split and ingest documents.

mod eval_rag;
mod ingest;
mod query;
mod sql;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use catena::core::{ChatModel, ChatRequest, Embedder, Error, Message, ResponseFormat, Result, RunContext};
use catena::models::{LlamaChatModel, LlamaEmbedder, LlamaOptions, convert, files};
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;

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

#[derive(Subcommand)]
enum Command {
    /// Fetch, list and convert model files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Chat with a model: one reply to PROMPT, or an interactive session without one.
    Chat(ChatArgs),
    /// Embed texts (arguments, or one per line of stdin); prints one JSON object per line.
    Embed(EmbedArgs),
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
    /// Example: catena serve --addr 127.0.0.1:8080
    Serve(ServeArgs),
    /// Evaluate models and pipelines.
    #[command(subcommand)]
    Eval(EvalCommand),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on. Anything beyond loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Require `Authorization: Bearer KEY` on /v1 routes.
    #[arg(long, env = "CATENA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The chat model: `chat` (the default) or a GGUF path.
    #[arg(long, default_value = "chat")]
    chat_model: String,
    /// The embedding model: `embed` (the default) or a GGUF path.
    #[arg(long, default_value = "embed")]
    embed_model: String,
    /// The model name clients use for chat.
    #[arg(long, default_value = "chat")]
    chat_name: String,
    /// The model name clients use for embeddings.
    #[arg(long, default_value = "embed")]
    embed_name: String,
    /// Largest request body in bytes (413 above).
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Largest max_tokens a request may ask for (400 above); also the default.
    #[arg(long, default_value_t = 1024)]
    max_tokens: u32,
    /// Local chat model: tokens of context per request, prompt and reply together (default
    /// 4096, at most the model's training length). A prompt that does not fit is refused with
    /// 400 `context_length_exceeded` before any work is done, which bounds what one request costs.
    #[arg(long)]
    ctx: Option<u32>,
    /// Local chat model: requests decoded together (default 4); memory grows with ctx × parallel.
    #[arg(long)]
    parallel: Option<u32>,
    /// Serve a remote OpenAI-compatible model instead of the local ones (a gateway that adds
    /// catena's retries, timeouts and limits): chat model from CATENA_MODEL, embedding model
    /// from CATENA_EMBED_MODEL (optional), server from OPENAI_BASE_URL / OPENAI_API_KEY.
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    /// Answer chat requests with this backend when the main one fails (e.g. `--backend openai
    /// --fallback local` keeps serving offline). Streams switch only before their first token.
    /// Embeddings never fall back: another model's vectors would not match an index.
    #[arg(long, value_enum)]
    fallback: Option<Backend>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The in-process llama.cpp models (`--chat-model`, `--embed-model`).
    Local,
    /// An OpenAI-compatible server, configured from the environment.
    Openai,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Run the store's RAG pipeline over a JSONL dataset, score it with the Ragas metrics (the
    /// local model as judge) and write results.jsonl, summary.json and report.html.
    Rag(eval_rag::EvalRagArgs),
    /// trec_eval's measures for a TREC run against TREC (or BEIR TSV) judgements, in trec_eval's
    /// layout or as JSON.
    Retrieval {
        /// Judgements: `query 0 document grade` lines, or BEIR's `query-id corpus-id score` TSV.
        #[arg(long)]
        qrels: PathBuf,
        /// The run: `query Q0 document rank score tag` lines.
        #[arg(long)]
        run: PathBuf,
        /// Measures (P_k, recall_k, map, map_cut_k, ndcg, ndcg_cut_k, recip_rank, recip_rank_cut_k,
        /// success_k, num_rel, num_rel_ret) [default: map P_10 recall_100 ndcg_cut_10 recip_rank].
        #[arg(long = "measure", short = 'm', num_args = 1..)]
        measures: Vec<String>,
        /// Also print every query's values (trec_eval -q).
        #[arg(short = 'q', long)]
        per_query: bool,
        /// Average over every judged query, scoring unretrieved ones 0 (trec_eval -c).
        #[arg(short = 'c', long)]
        complete: bool,
        /// Lowest grade that counts as relevant (trec_eval -l).
        #[arg(short = 'l', long, default_value_t = 1)]
        relevance_level: i64,
        /// `{"all": {...}, "per_query": {...}}` at full precision instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Score hypotheses against references, line by line: BLEU (sacrebleu's), ROUGE (rouge-score's),
    /// exact match and token F1 (SQuAD's).
    Text {
        /// bleu (corpus, 0-100), sentence-bleu (mean, 0-100), rouge1, rouge2, rougeL, rougeLsum
        /// (mean precision/recall/F, 0-1; in rougeLsum a `\n` in a line separates sentences), em, f1 (mean, 0-100).
        #[arg(long, short)]
        metric: String,
        /// The system's outputs, one per line.
        #[arg(long)]
        hypotheses: PathBuf,
        /// Reference files, one reference per line, aligned with the hypotheses (repeat the option
        /// for several references per line).
        #[arg(long = "references", required = true, num_args = 1..)]
        references: Vec<PathBuf>,
        /// Lowercase before BLEU.
        #[arg(long)]
        lowercase: bool,
        /// Porter-stem words longer than 3 letters before ROUGE (rouge-score's `use_stemmer=True`).
        #[arg(long)]
        stem: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A model's perplexity on a text file (sliding window; lower is better).
    Perplexity {
        /// The text file.
        file: PathBuf,
        /// `chat` (the default model) or a path to a GGUF file.
        #[arg(long, short, default_value = "chat")]
        model: String,
        /// Tokens per window.
        #[arg(long, default_value_t = 512)]
        window: usize,
        /// Tokens the window moves each step (default: half the window).
        #[arg(long)]
        stride: Option<usize>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Fetch the default models into the cache (skipped when a verified copy is there).
    Pull {
        /// Which model.
        #[arg(value_enum, default_value_t = Which::All)]
        which: Which,
        /// Fetch again even if cached.
        #[arg(long)]
        force: bool,
    },
    /// Show the default models, where they are cached, their sizes and checksums.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Convert a sentence-transformers BERT model folder (safetensors) to GGUF.
    Convert {
        /// The folder with config.json, model.safetensors and tokenizer.json.
        dir: PathBuf,
        /// The GGUF file to write.
        out: PathBuf,
        /// Store weight matrices as f16 (half the size) instead of f32.
        #[arg(long)]
        f16: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Which {
    Chat,
    Embed,
    All,
}

#[derive(clap::Args)]
struct ChatArgs {
    /// The prompt; without one, reads turns from stdin until EOF.
    prompt: Option<String>,
    /// `chat` (the default model) or a path to a GGUF file.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// A system message.
    #[arg(long, short)]
    system: Option<String>,
    /// A JSON Schema file: the reply is constrained to JSON matching it.
    #[arg(long)]
    json_schema: Option<PathBuf>,
    /// Most tokens per reply.
    #[arg(long, default_value_t = 512)]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long)]
    temperature: Option<f32>,
    /// Context window in tokens.
    #[arg(long)]
    ctx_size: Option<u32>,
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// Texts to embed; without any, one text per line of stdin.
    texts: Vec<String>,
    /// `embed` (the default model) or a path to a GGUF file.
    #[arg(long, short, default_value = "embed")]
    model: String,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                // Access logs of `catena serve` show by default; everything else from warnings up.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,catena::serve::access=info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: logs piped to files or collectors stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A log line that cannot be written (stderr closed, a pipe whose reader left) is dropped;
        // reporting it would print to the same broken stderr, which panics mid-request.
        .log_internal_errors(false)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Models(cmd) => models(cmd).await,
        Command::Chat(args) => chat(args).await,
        Command::Embed(args) => embed(args).await,
        Command::Split { files, args } => ingest::split(files, args).await,
        Command::Ingest(args) => ingest::ingest(args).await,
        Command::Query(args) => query::query(args).await,
        Command::Sql(cmd) => {
            // A refusal already explained itself on stderr: exit 1 without another message.
            return Ok(if sql::sql(cmd).await? { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Serve(args) => serve(args).await,
        Command::Eval(cmd) => eval(cmd).await,
    }
    .map(|()| ExitCode::SUCCESS)
}

/// The chat model (and, when `with_embedder`, the embedding model) of one `catena serve` backend.
async fn backend_models(
    args: &ServeArgs,
    backend: Backend,
    with_embedder: bool,
) -> Result<(Arc<dyn ChatModel>, Option<Arc<dyn Embedder>>)> {
    use catena::models::openai::{OpenAiChatModel, OpenAiConfig, OpenAiEmbedder};
    Ok(match backend {
        Backend::Local => {
            let options =
                LlamaOptions { n_ctx: args.ctx, parallel: args.parallel, ..LlamaOptions::default() };
            let chat = Arc::new(LlamaChatModel::load(&model_path(&args.chat_model).await?, options).await?);
            let embed: Option<Arc<dyn Embedder>> = if with_embedder {
                let path = model_path(&args.embed_model).await?;
                Some(Arc::new(LlamaEmbedder::load(&path, LlamaOptions::default()).await?))
            } else {
                None
            };
            (chat, embed)
        }
        Backend::Openai => {
            let chat = Arc::new(OpenAiChatModel::new(OpenAiConfig::from_env()?)?);
            let embed: Option<Arc<dyn Embedder>> =
                match std::env::var("CATENA_EMBED_MODEL").ok().filter(|m| !m.is_empty() && with_embedder) {
                    Some(model) => {
                        Some(Arc::new(OpenAiEmbedder::connect(OpenAiConfig::from_env_for(model)).await?))
                    }
                    None => None,
                };
            (chat, embed)
        }
    })
}

async fn serve(args: ServeArgs) -> Result<()> {
    use catena::core::fallback::FallbackChatModel;
    if args.fallback == Some(args.backend) {
        return Err(Error::invalid_input(
            "--fallback names the same backend as --backend; pick the other one",
        ));
    }
    let (mut chat, embed) = backend_models(&args, args.backend, true).await?;
    if let Some(fallback) = args.fallback {
        let (second, _) = backend_models(&args, fallback, false).await?;
        chat = Arc::new(FallbackChatModel::new(chat, vec![second]));
    }
    let listener = tokio::net::TcpListener::bind(&args.addr)
        .await
        .map_err(|e| Error::invalid_input(format!("cannot listen on {}: {e}", args.addr)))?;
    let bound = listener.local_addr().map_err(|e| Error::io(&args.addr, e))?;
    eprintln!(
        "catena serve: http://{bound}/v1 (chat model {:?}, embedding model {:?}{}{}); Ctrl-C stops",
        args.chat_name,
        args.embed_name,
        match args.fallback {
            Some(Backend::Local) => ", chat falls back to the local model",
            Some(Backend::Openai) => ", chat falls back to the OpenAI-compatible server",
            None => "",
        },
        if args.api_key.is_some() { ", API key required" } else { "" }
    );
    let mut server = catena::serve::Server::new().with_chat_model(args.chat_name, chat);
    if let Some(embed) = embed {
        server = server.with_embedder(args.embed_name, embed);
    }
    server
        .with_api_key(args.api_key)
        .with_max_body_bytes(args.max_body_bytes)
        .with_max_tokens_cap(args.max_tokens)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

async fn eval(cmd: EvalCommand) -> Result<()> {
    let (file, model, window, stride, json) = match cmd {
        EvalCommand::Perplexity { file, model, window, stride, json } => (file, model, window, stride, json),
        EvalCommand::Text { metric, hypotheses, references, lowercase, stem, json } => {
            return eval_text(&metric, &hypotheses, &references, lowercase, stem, json);
        }
        EvalCommand::Rag(args) => return eval_rag::eval_rag(args).await,
        EvalCommand::Retrieval { qrels, run, measures, per_query, complete, relevance_level, json } => {
            return eval_retrieval(
                &qrels,
                &run,
                &measures,
                per_query,
                catena::eval::trec::Options { relevance_level, complete },
                json,
            );
        }
    };
    let path = model_path(&model).await?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let stride = stride.unwrap_or(window / 2).max(1);
    let report =
        blocking(move || catena::models::perplexity(&path, &text, window, stride, &LlamaOptions::default()))
            .await?;
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::parse("report", e.to_string()))?);
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.4} nats over {} of {} tokens, {} windows)",
            report.perplexity, report.mean_nll, report.scored, report.tokens, report.windows
        );
    }
    Ok(())
}

fn eval_retrieval(
    qrels: &std::path::Path,
    run: &std::path::Path,
    measures: &[String],
    per_query: bool,
    options: catena::eval::trec::Options,
    json: bool,
) -> Result<()> {
    use catena::eval::trec;
    let read = |path: &std::path::Path| std::fs::read_to_string(path).map_err(|e| Error::io(path, e));
    let names: Vec<String> = if measures.is_empty() {
        ["map", "P_10", "recall_100", "ndcg_cut_10", "recip_rank"].map(String::from).to_vec()
    } else {
        measures.to_vec()
    };
    let measures = names
        .iter()
        .map(|m| m.parse::<trec::Measure>().map_err(|e| Error::invalid_input(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let located = |path: &std::path::Path, e: trec::TrecFileError| {
        Error::invalid_input(format!("{}: {e}", path.display()))
    };
    let judged = trec::read_qrels(&read(qrels)?).map_err(|e| located(qrels, e))?;
    let ranked = trec::read_run(&read(run)?).map_err(|e| located(run, e))?;
    if judged.is_empty() {
        return Err(Error::invalid_input(format!("{} has no judgements", qrels.display())));
    }
    let evaluation = trec::evaluate(&judged, &ranked, &measures, &options);
    if json {
        let out = if per_query {
            serde_json::json!({"all": evaluation.all, "per_query": evaluation.per_query})
        } else {
            serde_json::json!({"all": evaluation.all})
        };
        println!("{out}");
    } else {
        print!("{}", trec::format_trec(&evaluation, &measures, per_query));
    }
    Ok(())
}

/// The lines of a text file; `\n` inside a line (literally backslash-n) stands for a line break,
/// so multi-sentence summaries fit one line.
fn lines_of(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(|l| l.replace("\\n", "\n")).collect())
}

fn eval_text(
    metric: &str,
    hypotheses: &std::path::Path,
    references: &[PathBuf],
    lowercase: bool,
    stem: bool,
    json: bool,
) -> Result<()> {
    use catena::eval::text;
    let hyps = lines_of(hypotheses)?;
    let mut streams = Vec::new();
    for path in references {
        let lines = lines_of(path)?;
        if lines.len() != hyps.len() {
            return Err(Error::invalid_input(format!(
                "{} has {} lines but {} has {}; every reference file needs one line per hypothesis",
                path.display(),
                lines.len(),
                hypotheses.display(),
                hyps.len()
            )));
        }
        streams.push(lines);
    }
    let refs: Vec<Vec<String>> =
        (0..hyps.len()).map(|i| streams.iter().filter_map(|s| s.get(i).cloned()).collect()).collect();
    if hyps.is_empty() {
        return Err(Error::invalid_input(format!("{} has no lines to score", hypotheses.display())));
    }
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    let bad = |e: text::TextMetricError| Error::invalid_input(e.0);
    let report = match metric {
        "bleu" => {
            let options = text::BleuOptions { lowercase, ..text::BleuOptions::default() };
            let b = text::corpus_bleu(&hyps, &refs, &options).map_err(bad)?;
            let precisions: Vec<String> = b.precisions.iter().map(|p| format!("{p:.1}")).collect();
            let ratio = if b.ref_len > 0 { b.sys_len as f64 / b.ref_len as f64 } else { 0.0 };
            let line = format!(
                "BLEU = {:.2} {} (BP = {:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
                b.score,
                precisions.join("/"),
                b.brevity_penalty,
                b.sys_len,
                b.ref_len
            );
            (
                line,
                serde_json::json!({"metric": "bleu", "score": b.score, "precisions": b.precisions, "bp": b.brevity_penalty, "sys_len": b.sys_len, "ref_len": b.ref_len}),
            )
        }
        "sentence-bleu" => {
            let scores = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| text::sentence_bleu(h, r).map(|b| b.score))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            let score = mean(scores.clone());
            (
                format!("sentence BLEU (mean of {}) = {score:.2}", scores.len()),
                serde_json::json!({"metric": metric, "score": score, "per_line": scores}),
            )
        }
        "em" | "f1" => {
            let scores: Vec<f64> = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| {
                    100.0 * if metric == "em" { text::exact_match(h, r) } else { text::token_f1(h, r) }
                })
                .collect();
            let score = mean(scores.clone());
            (
                format!("{} = {score:.2} over {} lines", metric.to_uppercase(), scores.len()),
                serde_json::json!({"metric": metric, "score": score, "per_line": scores}),
            )
        }
        rouge => {
            let kind: text::RougeKind = rouge.parse().map_err(|e: text::TextMetricError| {
                Error::invalid_input(format!("{}; or bleu, sentence-bleu, em, f1", e.0))
            })?;
            let score_pair = if stem { text::rouge_stemmed } else { text::rouge };
            // Several references: the best F-measure per line, as rouge-score's score_multi.
            let scores: Vec<text::Rouge> = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| {
                    r.iter().map(|target| score_pair(target, h, kind)).fold(None::<text::Rouge>, |best, s| {
                        match best {
                            Some(b) if b.fmeasure >= s.fmeasure => Some(b),
                            _ => Some(s),
                        }
                    })
                })
                .map(|s| s.unwrap_or(text::Rouge { precision: 0.0, recall: 0.0, fmeasure: 0.0 }))
                .collect();
            let (p, r, f) = (
                mean(scores.iter().map(|s| s.precision).collect()),
                mean(scores.iter().map(|s| s.recall).collect()),
                mean(scores.iter().map(|s| s.fmeasure).collect()),
            );
            (
                format!("{rouge}: precision {p:.4} recall {r:.4} F {f:.4} (mean of {} lines)", scores.len()),
                serde_json::json!({"metric": rouge, "precision": p, "recall": r, "fmeasure": f, "per_line_fmeasure": scores.iter().map(|s| s.fmeasure).collect::<Vec<_>>()}),
            )
        }
    };
    if json {
        println!("{}", report.1);
    } else {
        println!("{}", report.0);
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::model_permanent(format!("background task failed: {e}")))?
}

/// A default model by name, fetched with a progress display if needed, or a GGUF path.
async fn model_path(reference: &str) -> Result<PathBuf> {
    let reference = reference.to_owned();
    blocking(move || match files::default_model(&reference) {
        Some(m) => files::pull(&m, &files::PullOptions { force: false, progress: true }),
        None => files::resolve(&reference),
    })
    .await
}

async fn models(cmd: ModelsCommand) -> Result<()> {
    match cmd {
        ModelsCommand::Pull { which, force } => {
            let chosen: Vec<files::DefaultModel> = match which {
                Which::Chat => vec![files::CHAT],
                Which::Embed => vec![files::EMBED],
                Which::All => files::DEFAULTS.to_vec(),
            };
            for m in chosen {
                let path =
                    blocking(move || files::pull(&m, &files::PullOptions { force, progress: true })).await?;
                println!("{:<6} {}", m.name, path.display());
            }
            Ok(())
        }
        ModelsCommand::List { json } => {
            let models = files::list();
            if json {
                let out = serde_json::to_string_pretty(&models)
                    .map_err(|e| Error::parse("model list", e.to_string()))?;
                println!("{out}");
                return Ok(());
            }
            println!("models folder: {}", files::models_dir().display());
            for m in models {
                let state = match (m.size, &m.sha256) {
                    (Some(size), Some(sha)) => format!("{:.1} MB  sha256 {}", size as f64 / 1e6, sha),
                    (Some(size), None) => {
                        format!("{:.1} MB  (not verified: run `catena models pull`)", size as f64 / 1e6)
                    }
                    _ => "not fetched (`catena models pull`)".to_owned(),
                };
                println!("{:<6} {}\n       {}\n       {state}", m.name, m.description, m.path.display());
            }
            Ok(())
        }
        ModelsCommand::Convert { dir, out, f16 } => {
            let options = convert::ConvertOptions {
                weight_type: if f16 { convert::WeightType::F16 } else { convert::WeightType::F32 },
                name: None,
            };
            let target = out.clone();
            blocking(move || convert::convert_bert(&dir, &target, &options)).await?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

async fn chat(args: ChatArgs) -> Result<()> {
    let path = model_path(&args.model).await?;
    let model =
        LlamaChatModel::load(&path, LlamaOptions { n_ctx: args.ctx_size, ..LlamaOptions::default() }).await?;
    let format = match &args.json_schema {
        None => None,
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
            let schema = serde_json::from_str(&text)
                .map_err(|e| Error::invalid_input(format!("{} is not valid JSON: {e}", file.display())))?;
            Some(ResponseFormat::JsonSchema { name: "output".into(), schema })
        }
    };
    let mut history: Vec<Message> = args.system.iter().map(|s| Message::system(s.clone())).collect();
    let make_request = |history: &[Message]| {
        let mut req = ChatRequest::new(history.to_vec()).with_max_tokens(args.max_tokens);
        req.sampling.temperature = args.temperature;
        req.response_format = format.clone();
        req
    };
    if let Some(prompt) = &args.prompt {
        history.push(Message::user(prompt.clone()));
        stream_reply(&model, make_request(&history)).await?;
        return Ok(());
    }
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    if interactive {
        eprintln!("catena chat on {} — type a message; Ctrl-D to quit.", model.model_name());
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            eprint!("> ");
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).map_err(Error::from)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        history.push(Message::user(line));
        match stream_reply(&model, make_request(&history)).await {
            Ok(reply) => history.push(Message::assistant(reply)),
            // Keep the session going (a too-long conversation, say): say what happened and drop
            // the turn that failed.
            Err(e) => {
                eprintln!("error: {e}");
                history.pop();
            }
        }
    }
    Ok(())
}

/// Streams a reply to stdout as it is generated; Ctrl-C stops the generation.
async fn stream_reply(model: &LlamaChatModel, request: ChatRequest) -> Result<String> {
    let ctx = RunContext::new();
    let cancel = ctx.cancellation().clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let mut stream = model.chat_stream(request, &ctx);
    let mut out = std::io::stdout();
    let mut text = String::new();
    let mut result = Ok(());
    while let Some(delta) = stream.next().await {
        match delta {
            Ok(d) => {
                text.push_str(&d.content);
                let _ = out.write_all(d.content.as_bytes());
                let _ = out.flush();
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    drop(stream);
    ctrl_c.abort();
    println!();
    match result {
        Err(Error::Cancelled) => {
            eprintln!("(stopped)");
            Ok(text)
        }
        other => other.map(|()| text),
    }
}

async fn embed(args: EmbedArgs) -> Result<()> {
    let path = model_path(&args.model).await?;
    let embedder = LlamaEmbedder::load(&path, LlamaOptions::default()).await?;
    let texts: Vec<String> = if args.texts.is_empty() {
        std::io::stdin().lock().lines().collect::<std::io::Result<_>>().map_err(Error::from)?
    } else {
        args.texts
    };
    let ctx = RunContext::new().with_events(|event: catena::core::Event| {
        if let catena::core::Event::Warning { message } = event {
            eprintln!("warning: {message}");
        }
    });
    let mut out = std::io::stdout().lock();
    for chunk in texts.chunks(64) {
        let vectors = embedder.embed(chunk, &ctx).await?;
        for (text, vector) in chunk.iter().zip(vectors) {
            let line = serde_json::json!({"text": text, "embedding": vector});
            writeln!(out, "{line}").map_err(Error::from)?;
        }
    }
    Ok(())
}
