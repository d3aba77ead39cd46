//! `catena serve`: the local (or a remote) model behind an OpenAI-compatible HTTP API.

use std::sync::Arc;

use catena::core::{ChatModel, Embedder, Error, Result};
use catena::models::{LlamaChatModel, LlamaEmbedder, LlamaOptions, ToolFormat};
use clap::ValueEnum;

use crate::{model_path, speculation};

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on. Anything beyond loopback needs an API key.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Require `Authorization: Bearer KEY` on /v1 routes.
    #[arg(long, env = "CATENA_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// The chat model: `chat` (the default), `agent` (Qwen2.5-Coder 1.5B, native tool calls),
    /// `agent-small`, or a GGUF path.
    #[arg(long, visible_alias = "model", short = 'm', default_value = "chat")]
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
    /// Seconds a client has to send a request's headers (and to start, once connected): slower
    /// clients are disconnected, the defence against slowloris.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    header_timeout: f64,
    /// Seconds a client has to send a request's body once its headers are in (408 after).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    body_timeout: f64,
    /// Connections served at once; more wait in the listen queue.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Sampling temperature for requests that set none (0 = greedy: the same request gets the
    /// same reply). Unset: the model's default.
    #[arg(long, value_name = "T", value_parser = non_negative_temperature)]
    temperature: Option<f32>,
    /// Sampling seed for requests that set none. Unset: a fresh seed per request.
    #[arg(long, value_name = "N")]
    seed: Option<u32>,
    /// Local chat model: tokens of context per request, prompt and reply together (default
    /// 4096, at most the model's training length). A prompt that does not fit is refused with
    /// 400 `context_length_exceeded` before any work is done, which bounds what one request costs.
    #[arg(long)]
    ctx: Option<u32>,
    /// Local chat model: requests decoded together (default 4); memory grows with ctx × parallel.
    #[arg(long)]
    parallel: Option<u32>,
    /// Local chat model: speculative decoding by prompt lookup (guesses from n-grams of the
    /// prompt and reply, checked in one batched pass). Pays when replies quote their context and
    /// the hardware batches cheaply (a GPU); replies report accepted/rejected prediction tokens.
    #[arg(long)]
    speculate: bool,
    /// Local chat model: speculative decoding with a draft model, a smaller model of the same
    /// family (same tokenizer) that guesses ahead, e.g. `agent-small` for `agent`. A default's
    /// name or a GGUF path.
    #[arg(long, value_name = "MODEL", conflicts_with = "speculate")]
    draft_model: Option<String>,
    /// Local chat model: how it writes tool calls. `auto` reads the chat template (Hermes/Qwen
    /// `<tool_call>` blocks, Llama 3.x JSON calls or Mistral `[TOOL_CALLS]` when it renders them,
    /// otherwise one generic JSON object per reply); the others force one, e.g. to compare them.
    #[arg(long, value_enum, default_value_t = ToolFormatArg::Auto)]
    tool_format: ToolFormatArg,
    /// Local chat model: a Jinja chat template file to use instead of the one in the GGUF (for
    /// a file whose template is missing or broken).
    #[arg(long, value_name = "FILE")]
    chat_template: Option<std::path::PathBuf>,
    /// Serve a remote OpenAI-compatible model instead of the local ones (a gateway that adds
    /// catena's retries, timeouts and limits): chat model from CATENA_MODEL, embedding model
    /// from CATENA_EMBED_MODEL (optional), server from OPENAI_BASE_URL / OPENAI_API_KEY.
    #[arg(long, value_enum, default_value_t = Backend::Local)]
    backend: Backend,
    /// Serve as a gateway over replicas of one model instead of loading any: each URL an
    /// OpenAI-compatible server (`http://host:8080/v1`: more `catena serve` processes, vLLM,
    /// TGI, llama.cpp's server); repeatable. Requests go to the replica with the fewest in
    /// flight; a failed one (refused connection, 5xx, timeout) is retried on another, streams
    /// before their first token; failing replicas leave the rotation and health checks bring
    /// them back. This server's own API key, limits and access log apply as usual.
    #[arg(long = "upstream", value_name = "URL", conflicts_with_all = ["backend", "fallback"])]
    upstreams: Vec<String>,
    /// With --upstream: the chat model's name on the replicas.
    #[arg(long, value_name = "NAME", default_value = "chat", requires = "upstreams")]
    upstream_chat_model: String,
    /// With --upstream: the embedding model's name on the replicas (empty: serve no embeddings).
    #[arg(long, value_name = "NAME", default_value = "embed", requires = "upstreams")]
    upstream_embed_model: String,
    /// With --upstream: the API key the replicas want.
    #[arg(long, env = "CATENA_UPSTREAM_API_KEY", hide_env_values = true, requires = "upstreams")]
    upstream_api_key: Option<String>,
    /// With --upstream: seconds between health checks of every replica.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = positive_seconds)]
    health_interval: f64,
    /// Answer chat requests with this backend when the main one fails (e.g. `--backend openai
    /// --fallback local` keeps serving offline). Streams switch only before their first token.
    /// Embeddings never fall back: another model's vectors would not match an index.
    #[arg(long, value_enum)]
    fallback: Option<Backend>,
    /// Also serve an agent's threads under /v1/threads (runs that pause for approval and resume
    /// later): the chat model with a calculator, the date and time, and a note-saving tool that
    /// asks for approval. Its conversations go to DIR/threads.db, its notes to DIR/notes.
    #[arg(long, value_name = "DIR")]
    agent: Option<std::path::PathBuf>,
    /// Also serve catena's tools to MCP clients at /mcp (streamable HTTP, the same API key as
    /// the other routes): the calculator and the date and time, plus search over a store (its
    /// documents as resources, a prompt that answers from them) with --mcp-store and guarded
    /// SQL over an SQLite file with --mcp-sqlite; --mcp-tools narrows the tools.
    #[arg(long)]
    mcp: bool,
    /// With --mcp: a store written by `catena ingest` (collection `chunks`) to search.
    #[arg(long, value_name = "DIR", requires = "mcp")]
    mcp_store: Option<std::path::PathBuf>,
    /// With --mcp: an SQLite file to query, read-only.
    #[arg(long, value_name = "FILE", requires = "mcp")]
    mcp_sqlite: Option<std::path::PathBuf>,
    /// With --mcp: offer only these tools (comma-separated names).
    #[arg(long, value_delimiter = ',', value_name = "NAMES", requires = "mcp")]
    mcp_tools: Option<Vec<String>>,
    /// Also serve a web console at http://ADDR/: a chat playground for the chat model and (with
    /// --agent) the agent, with streaming, tool steps and approvals; a trace explorer with every
    /// run's spans, tokens, cost and timings (kept in --traces); the eval reports in --evals.
    #[arg(long)]
    console: bool,
    /// With --console: the SQLite file that keeps the traces (default: traces.db in catena's
    /// cache folder, ~/.cache/catena on Linux).
    #[arg(long, value_name = "FILE", requires = "console")]
    traces: Option<std::path::PathBuf>,
    /// With --console: delete runs older than this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 7.0)]
    trace_days: f64,
    /// With --console: keep the trace file under this many MiB (the oldest runs go first).
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    trace_max_mib: u64,
    /// With --console: a folder of `catena eval rag --out` folders (or one) to show as reports.
    #[arg(long, value_name = "DIR", requires = "console")]
    evals: Option<std::path::PathBuf>,
    /// Guard the chat model's replies (docs/security.md): a canary added to each request's
    /// system message, and any reply (streamed or not) that leaks it or matches a secret
    /// pattern answered with 422 `output_blocked`; images, links, URLs and HTML to hosts not
    /// allowed removed from replies. The agent's runs are guarded either way.
    #[arg(long)]
    guard_output: bool,
    /// With --guard-output: a host whose links and images stay in replies (`.example.com` or
    /// `*.example.com` for its subdomains too); repeatable.
    #[arg(long = "allow-host", value_name = "HOST", requires = "guard_output")]
    allow_hosts: Vec<String>,
    /// With --guard-output: also stop replies that match this regular expression; repeatable.
    /// Common credential shapes (API keys, AWS key ids, GitHub tokens, private keys) always are.
    #[arg(long = "secret-pattern", value_name = "REGEX", requires = "guard_output")]
    secret_patterns: Vec<String>,
}

/// The served chat model behind the output defences of `--guard-output`.
fn guarded(args: &ServeArgs, chat: Arc<dyn ChatModel>) -> Result<Arc<dyn ChatModel>> {
    use catena::core::security::{Defences, GuardedChatModel};
    if !args.guard_output {
        return Ok(chat);
    }
    let mut defences = Defences::default().with_common_secret_patterns();
    for host in &args.allow_hosts {
        defences = defences.allow_host(host.clone());
    }
    for pattern in &args.secret_patterns {
        defences = defences.with_secret_pattern(format!("a secret pattern ({pattern})"), pattern)?;
    }
    Ok(Arc::new(GuardedChatModel::new(chat, defences)))
}

/// The trace store of `--console` (`None` without it).
pub(crate) async fn open_traces(args: &ServeArgs) -> Result<Option<catena::traces::TraceStore>> {
    use catena::traces::{Retention, TraceStore};
    if !args.console {
        return Ok(None);
    }
    let path = match &args.traces {
        Some(path) => path.clone(),
        None => dirs::cache_dir()
            .map_or_else(|| std::path::PathBuf::from(".catena"), |d| d.join("catena"))
            .join("traces.db"),
    };
    if !(args.trace_days.is_finite() && args.trace_days > 0.0) {
        return Err(Error::invalid_input("--trace-days must be a positive number of days"));
    }
    let retention = Retention {
        max_age: Some(std::time::Duration::from_secs_f64(args.trace_days * 86_400.0)),
        max_bytes: Some(args.trace_max_mib.max(1).saturating_mul(1 << 20)),
        ..Retention::default()
    };
    Ok(Some(TraceStore::open(path, retention).await?))
}

/// `--tool-format`: [`ToolFormat`] or detection.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ToolFormatArg {
    /// Detected from the chat template.
    Auto,
    /// One JSON object per reply, described in the system message.
    Generic,
    /// Hermes / Qwen `<tool_call>` blocks through the model's own template.
    Hermes,
    /// Llama 3.x `{"name": ..., "parameters": ...}` calls through the model's own template.
    Llama3,
    /// Mistral `[TOOL_CALLS]` arrays through the model's own template.
    Mistral,
}

/// Where `catena serve`'s models run.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// The in-process llama.cpp models (`--chat-model`, `--embed-model`).
    Local,
    /// An OpenAI-compatible server, configured from the environment.
    Openai,
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
            let tool_format = match args.tool_format {
                ToolFormatArg::Auto => None,
                ToolFormatArg::Generic => Some(ToolFormat::Generic),
                ToolFormatArg::Hermes => Some(ToolFormat::Hermes),
                ToolFormatArg::Llama3 => Some(ToolFormat::Llama3),
                ToolFormatArg::Mistral => Some(ToolFormat::Mistral),
            };
            let chat_template =
                match &args.chat_template {
                    Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                        Error::invalid_input(format!("--chat-template {}: {e}", path.display()))
                    })?),
                    None => None,
                };
            let options = LlamaOptions {
                n_ctx: args.ctx,
                parallel: args.parallel,
                speculation: speculation(args.speculate, args.draft_model.as_deref()).await?,
                tool_format,
                chat_template,
                ..LlamaOptions::default()
            };
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

/// `--upstream`: one chat model and (unless `--upstream-embed-model ""`) one embedder over the
/// replicas, with their health checks running.
async fn upstream_models(args: &ServeArgs) -> Result<(Arc<dyn ChatModel>, Option<Arc<dyn Embedder>>)> {
    use catena::core::{CallLimits, Replica, ReplicaSet, RetryPolicy};
    use catena::models::openai::{OpenAiChatModel, OpenAiConfig, OpenAiEmbedder};
    let config = |url: &str, model: &str| {
        let mut config = OpenAiConfig::new(model).with_base_url(url.trim_end_matches('/')).with_limits(
            // One attempt per replica: failing over to another replica is the retry.
            CallLimits::default()
                .with_timeout(std::time::Duration::from_secs(300))
                .with_retry(RetryPolicy::attempts(1)),
        );
        config.connect_timeout = std::time::Duration::from_secs(2);
        if let Some(key) = &args.upstream_api_key {
            config = config.with_api_key(key.clone());
        }
        config
    };
    // The embedding size, from the first replica that answers (the others are then not asked).
    let mut dimensions = None;
    if !args.upstream_embed_model.is_empty() {
        for url in &args.upstreams {
            match OpenAiEmbedder::connect(config(url, &args.upstream_embed_model)).await {
                Ok(embedder) => {
                    dimensions = Some(embedder.dimensions());
                    break;
                }
                Err(e) => eprintln!("catena serve: upstream {url} did not answer an embedding request: {e}"),
            }
        }
        if dimensions.is_none() {
            return Err(Error::model_transient(
                "no upstream answered an embedding request: start the replicas first, or pass \
                 --upstream-embed-model \"\" to serve chat only",
            ));
        }
    }
    let mut replicas = Vec::new();
    for url in &args.upstreams {
        let chat = Arc::new(OpenAiChatModel::new(config(url, &args.upstream_chat_model))?);
        let probe_model = Arc::clone(&chat);
        let mut replica = Replica::new(url.clone()).with_chat(chat).with_probe(Arc::new(move || {
            let model = Arc::clone(&probe_model);
            Box::pin(async move { model.check().await })
        }));
        if let Some(dims) = dimensions {
            replica = replica.with_embedder(Arc::new(OpenAiEmbedder::with_dimensions(
                config(url, &args.upstream_embed_model),
                dims,
            )?));
        }
        replicas.push(replica);
    }
    let set = ReplicaSet::new(replicas)?;
    tokio::spawn(set.health_checks(std::time::Duration::from_secs_f64(args.health_interval)));
    let embed: Option<Arc<dyn Embedder>> =
        if dimensions.is_some() { Some(Arc::new(set.clone())) } else { None };
    Ok((Arc::new(set), embed))
}

/// Runs `catena serve`.
pub(crate) async fn serve(args: ServeArgs, traces: Option<catena::traces::TraceStore>) -> Result<()> {
    use catena::core::FallbackChatModel;
    if args.fallback == Some(args.backend) {
        return Err(Error::invalid_input(
            "--fallback names the same backend as --backend; pick the other one",
        ));
    }
    let (mut chat, embed) = if args.upstreams.is_empty() {
        backend_models(&args, args.backend, true).await?
    } else {
        upstream_models(&args).await?
    };
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
    if !args.upstreams.is_empty() {
        eprintln!(
            "catena serve: a gateway over {} replicas: {}",
            args.upstreams.len(),
            args.upstreams.join(", ")
        );
    }
    let served = guarded(&args, Arc::clone(&chat))?;
    let mut server = catena::serve::Server::new().with_chat_model(args.chat_name.clone(), served);
    if args.mcp {
        let offer = crate::mcp::Offer {
            store: args.mcp_store.as_deref(),
            collection: "chunks",
            sqlite: args.mcp_sqlite.as_deref(),
            tools: args.mcp_tools.as_deref(),
            resources: true,
            prompts: true,
        };
        let mcp = crate::mcp::server(&offer).await?;
        eprintln!("catena serve: MCP at http://{bound}/mcp ({})", mcp.describe());
        server = server.with_mcp(mcp);
    }
    if let Some(dir) = &args.agent {
        server = server.with_agent(agent_graph(dir, chat).await?);
        eprintln!(
            "catena serve: agent threads at http://{bound}/v1/threads/THREAD (saved in {})",
            dir.display()
        );
    }
    if let Some(embed) = embed {
        server = server.with_embedder(args.embed_name, embed);
    }
    if args.console {
        if let Some(store) = traces {
            eprintln!("catena serve: traces kept in {}", store.path().display());
            server = server.with_traces(store);
        }
        server = server.with_console(catena::serve::Console { evals: args.evals.clone() });
        // The line to open; printed last so it is the one a reader sees.
        eprintln!("catena serve: console at http://{bound}/");
    }
    server
        .with_api_key(args.api_key)
        .with_max_body_bytes(args.max_body_bytes)
        .with_max_tokens_cap(args.max_tokens)
        .with_connection_limits(catena::serve::ConnectionLimits {
            header_read_timeout: std::time::Duration::from_secs_f64(args.header_timeout),
            body_read_timeout: std::time::Duration::from_secs_f64(args.body_timeout),
            max_connections: args.max_connections,
            ..catena::serve::ConnectionLimits::default()
        })
        .with_default_sampling(args.temperature, args.seed)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

/// `--agent DIR`: the tool-calling agent over the served model, its threads saved in DIR.
async fn agent_graph(
    dir: &std::path::Path,
    chat: Arc<dyn ChatModel>,
) -> Result<catena::agents::graph::CompiledGraph<catena::agents::AgentRun>> {
    use catena::agents::graph::SqliteCheckpointer;
    use catena::agents::{AgentExecutor, EarlyStopping, ExecutorConfig, ToolCallingAgent};
    use catena::tools::{Calculator, DateTimeTool, SaveNoteTool, ToolOptions, ToolRegistry};
    let tools = ToolRegistry::new()
        .with(Calculator)?
        .with(DateTimeTool::new())?
        .with_options(SaveNoteTool::new(dir.join("notes")), ToolOptions::default().needs_confirmation())?;
    let saver = SqliteCheckpointer::open(dir.join("threads.db")).await?;
    // The settings the `agent` example uses for small local models: a reply that only describes
    // a call is asked for it, and the first repeat of a call ends tool use with an answer from
    // what the tools returned.
    let agent = ToolCallingAgent::new(chat)
        .with_system_prompt(
            "You are a helpful assistant. Use a tool when the question needs one; when a tool has \
             answered, reply to the user in plain words using its result.",
        )
        .follow_through_described_calls(true);
    let config = ExecutorConfig {
        max_repeats: 0,
        early_stopping: EarlyStopping::Generate,
        ..ExecutorConfig::default()
    };
    Ok(AgentExecutor::new(agent, tools).with_config(config).into_graph()?.with_checkpointer(Arc::new(saver)))
}

/// `--temperature`: a finite number from 0 up.
fn non_negative_temperature(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err(format!("{text:?} is not a temperature; use a number from 0 (greedy) up, e.g. 0.7")),
    }
}

/// A duration in seconds: positive and finite (what `Duration::from_secs_f64` accepts).
fn positive_seconds(text: &str) -> std::result::Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 {
        Ok(seconds)
    } else {
        Err(format!("{text} seconds: give a positive number, e.g. 10 or 0.5"))
    }
}
