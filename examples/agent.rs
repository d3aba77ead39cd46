//! The `agent` REPL: chat with a tool-using agent that searches these docs, queries the Chinook
//! music database, calculates, tells the time (and with `--web` reads web pages, asking first),
//! and remembers the conversation across restarts.
//!
//! ```text
//! make demo                                   # builds, fetches the models, starts this REPL
//! cargo run --example agent                   # the same, by hand
//! cargo run --example agent -- --help         # options
//! echo "What is 12 * 12?" | cargo run --example agent   # scripted: answers on stdout
//! ```
//!
//! With no configuration it runs on the local agent model (Qwen2.5-Coder-1.5B-Instruct, in this
//! process, calling tools in its own format); `--model chat` runs the small SmolLM2-135M instead,
//! `--model FILE.gguf` any GGUF. With `OPENAI_API_KEY` set (and optionally `OPENAI_BASE_URL`,
//! `CATENA_MODEL`) it uses that OpenAI-compatible server instead, e.g. `catena serve` or a hosted
//! model.
//!
//! Reading order: (1) the model, (2) the tools, (3) memory and the saved session, (4) the agent
//! and its executor, (5) the loop that reads questions, streams the steps and answers.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use catena::agents::{
    Agent, AgentExecutor, EarlyStopping, ExecutorConfig, Loaded, ReActAgent, SessionStore,
    SummaryBufferMemory, ToolCallingAgent, ToolSelector,
};
use catena::core::{
    ChatModel, Described, Embedder, Event, Loader, Memory, Message, Result, Retriever, RunContext, Splitter,
    Tokenizer, ToolCall, ToolChoice, ToolExt, VectorStore, async_trait,
};
use catena::loaders::{DirectoryLoader, TextLoader};
use catena::models::files;
use catena::models::openai::{OpenAiChatModel, OpenAiConfig};
use catena::models::{LlamaChatModel, LlamaEmbedder, LlamaOptions, LlamaTokenizer};
use catena::query::sql::{SqlDatabase, SqlOptions, SqlQueryChain, chinook};
use catena::retrievers::{
    EnsembleRetriever, LanceDbStore, LanceKeywordRetriever, VectorStoreRetriever, index_documents,
};
use catena::splitters::{RecursiveCharacterSplitter, TiktokenTokenizer};
use catena::tools::SqlQuestionTool;
use catena::tools::{
    Calculator, Confirm, DateTimeTool, RetrieverTool, ToolOptions, ToolRegistry, WebPageTool,
};
use clap::{Parser, ValueEnum};
use futures::StreamExt;

/// Chat with a tool-using agent (docs search, SQL over Chinook, calculator, date/time; web pages
/// with --web).
///
/// Type a question; `/help` lists the slash commands. Ctrl-C cancels the current answer, Ctrl-D
/// quits. Without a terminal, questions are read line by line from stdin and answers printed to
/// stdout, one per line.
#[derive(Debug, Parser)]
#[command(name = "agent")]
struct Args {
    /// The conversation to resume (sessions are saved under the agent folder).
    #[arg(long, default_value = "default")]
    session: String,
    /// The local model: `agent` (Qwen2.5-Coder-1.5B-Instruct, 1.1 GB), `chat` (SmolLM2-135M:
    /// fast, weak at choosing tools), `agent-small` (Qwen2.5-Coder-0.5B), or a GGUF path. Fetched
    /// on first use; ignored when OPENAI_API_KEY is set.
    #[arg(long, default_value = "agent")]
    model: String,
    /// How the model calls tools.
    #[arg(long, value_enum, default_value_t = Protocol::Native)]
    protocol: Protocol,
    /// Most model calls per question.
    #[arg(long, default_value_t = 6)]
    max_iterations: usize,
    /// Show the model's raw tokens and every step (off by default without a terminal).
    #[arg(long)]
    verbose: bool,
    /// Also offer the web page tool (it asks before every fetch).
    #[arg(long)]
    web: bool,
    /// Run tools that need confirmation without asking (for scripts).
    #[arg(long)]
    yes: bool,
    /// The first reply of every answer (native protocol): `required` makes it a tool call (the
    /// model picks the tool, then answers from its result; small models otherwise answer some
    /// questions from memory, and a greeting costs one needless call), `auto` lets the model
    /// decide. Default: required for local models, auto for remote ones.
    #[arg(long, value_enum)]
    first_call: Option<FirstCall>,
    /// Offer each question only the K tools closest to it (by embedding similarity to their
    /// descriptions; 0 offers all): small models choose better among fewer tools.
    #[arg(long, value_name = "K", default_value_t = 2)]
    select_tools: usize,
    /// Print each answer as one JSON object per line (`answer`, `seconds`, `tools` called,
    /// `stop`), for scripts and the task-suite benchmark.
    #[arg(long)]
    json: bool,
    /// Where the docs index and sessions live [default: <cache>/catena/agent, or $CATENA_AGENT_DIR].
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Thought / Action / Observation in text (decoded under a grammar on the local model).
    React,
    /// The model's native tool calls.
    Native,
}

/// `--first-call`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum FirstCall {
    /// The model decides whether to call a tool.
    Auto,
    /// The first reply must call a tool.
    Required,
}

/// What the agent is told when it calls tools natively: to answer from a tool's result once it
/// has one (small models otherwise paraphrase the call they made).
const NATIVE_INSTRUCTIONS: &str = "You are catena's assistant. Call a tool only when the question needs one. \
When a tool has answered, reply to the user in plain words using its result.";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let dir = args
        .dir
        .clone()
        .or_else(|| std::env::var_os("CATENA_AGENT_DIR").map(PathBuf::from))
        .unwrap_or_else(|| {
            files::models_dir().parent().map_or_else(|| PathBuf::from(".catena/agent"), |p| p.join("agent"))
        });
    std::fs::create_dir_all(&dir).map_err(|e| catena::core::Error::io(&dir, e))?;

    // 1. The model: remote when an API key is set, the local default otherwise. The tokenizer
    //    measures memory in the model's own tokens (tiktoken's for remote models).
    let remote = std::env::var_os("OPENAI_API_KEY").is_some();
    let (model, tokenizer): (Arc<dyn ChatModel>, Arc<dyn Tokenizer>) = if remote {
        let config = OpenAiConfig::from_env()?;
        (Arc::new(OpenAiChatModel::new(config)?), Arc::new(TiktokenTokenizer::new("cl100k_base")?))
    } else {
        note(&format!("loading the local model `{}` (fetched on first use)…", args.model));
        let reference = args.model.clone();
        let path = tokio::task::spawn_blocking(move || files::resolve(&reference))
            .await
            .map_err(|e| catena::core::Error::model_permanent(format!("cannot resolve the model: {e}")))??;
        (
            Arc::new(LlamaChatModel::load(&path, LlamaOptions::default()).await?),
            Arc::new(LlamaTokenizer::load(&path).await?),
        )
    };
    let protocol = args.protocol;

    // 2. The tools. Each is a plain struct; the registry validates the model's arguments against
    //    its schema, applies timeouts, and asks before running the web tool.
    let mut tools = ToolRegistry::new().with(Calculator)?.with(DateTimeTool::new())?;
    // One embedding model for the docs index and for choosing which tools a question sees.
    let embedder: Option<Arc<dyn Embedder>> = match LlamaEmbedder::load_default().await {
        Ok(embedder) => Some(Arc::new(embedder)),
        Err(e) => {
            note(&format!("no embedding model, so no docs search: {e}"));
            None
        }
    };
    if let Some(embedder) = &embedder {
        match docs_search(&dir, Arc::clone(embedder)).await {
            Ok(search) => tools.add(Arc::new(search))?,
            Err(e) => note(&format!("docs search unavailable: {e}")),
        }
    }
    match chinook_tool(&dir, Arc::clone(&model), !remote).await {
        Ok(sql) => tools.add(Arc::new(sql))?,
        Err(e) => note(&format!("SQL over Chinook unavailable (scripts/fetch-data.sh fetches it): {e}")),
    }
    if args.web {
        tools.add_with(Arc::new(WebPageTool::new()), ToolOptions::default().needs_confirmation())?;
    }
    let tools = tools.with_confirmation(Arc::new(AskUser { interactive, yes: args.yes }));

    // 3. Memory: recent turns verbatim, older ones summarised by the same model, saved to SQLite
    //    after every answer so a restart resumes the conversation.
    let memory = Arc::new(SummaryBufferMemory::new(Arc::clone(&model), tokenizer, 600));
    let sessions = SessionStore::open(dir.join("sessions.db")).await?;
    if let Some(aside) = sessions.moved_aside() {
        note(&format!("the sessions file was unreadable; it was kept as {}", aside.display()));
    }
    let mut session = args.session.clone();
    resume(&sessions, &session, memory.as_ref()).await?;

    // 4. The agent decides; the executor runs the loop, the tools and the limits.
    let agent: Arc<dyn Agent> = match protocol {
        Protocol::React => Arc::new(
            ReActAgent::new(Arc::clone(&model))
                .with_instructions(
                    "You are catena's assistant. Answer the question; use a tool when it helps.",
                )
                .with_examples(REACT_EXAMPLE)
                .constrained(!remote)
                .with_max_tokens(256),
        ),
        Protocol::Native => Arc::new(
            ToolCallingAgent::new(Arc::clone(&model))
                .with_system_prompt(NATIVE_INSTRUCTIONS)
                // Small models often answer "you can use the X function with ..." instead of
                // calling X: the agent then asks for that call.
                .follow_through_described_calls(!remote)
                .with_first_tool_choice(match args.first_call {
                    Some(FirstCall::Required) => ToolChoice::Required,
                    Some(FirstCall::Auto) => ToolChoice::Auto,
                    None if remote => ToolChoice::Auto,
                    None => ToolChoice::Required,
                })
                .with_max_tokens(512),
        ),
    };
    // A model that repeats a call it has the result of will not use it on a third try: the
    // first repeat ends the tool use, and the model answers from what the tools returned.
    let limits = ExecutorConfig {
        max_iterations: args.max_iterations,
        max_repeats: 0,
        early_stopping: EarlyStopping::Generate,
        ..ExecutorConfig::default()
    };
    let mut executor = AgentExecutor::from_arc(agent, tools)
        .with_memory(memory.clone() as Arc<dyn Memory>)
        .with_config(limits);
    if let (k @ 1.., Some(embedder)) = (args.select_tools, embedder) {
        executor = executor.with_tool_selection(ToolSelector::new(embedder, k));
    }

    // 5. The loop.
    let verbose = Arc::new(AtomicBool::new(args.verbose || interactive));
    let mut input = Input::new(interactive, &dir);
    if interactive {
        eprintln!(
            "catena agent on {} ({protocol:?}); session `{session}`. /help for commands, Ctrl-D to quit.",
            model.model_name()
        );
    }
    while let Some(line) = input.next_line(&session) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix('/') {
            let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
            match name {
                "help" => println!("{HELP}"),
                "tools" => {
                    for spec in executor.tools().specs() {
                        let confirm =
                            executor.tools().options(&spec.name).is_some_and(|o| o.needs_confirmation);
                        println!(
                            "{}{}: {}",
                            spec.name,
                            if confirm { " (asks first)" } else { "" },
                            spec.description
                        );
                    }
                }
                "memory" => {
                    for m in memory.messages().await? {
                        println!("{}: {}", m.role.as_str(), m.content);
                    }
                }
                "reset" => {
                    memory.clear().await?;
                    sessions.save(&session, memory.as_ref(), &[]).await?;
                    println!("memory cleared for session `{session}`");
                }
                "session" if rest.trim().is_empty() => {
                    for info in sessions.list().await? {
                        println!(
                            "{}{} ({} messages)",
                            info.name,
                            if info.name == session { " *" } else { "" },
                            info.messages
                        );
                    }
                }
                "session" => {
                    sessions.save(&session, memory.as_ref(), &[]).await?;
                    rest.trim().clone_into(&mut session);
                    resume(&sessions, &session, memory.as_ref()).await?;
                }
                "model" => println!(
                    "{} ({protocol:?} protocol{})",
                    model.model_name(),
                    if remote { ", remote" } else { ", local" }
                ),
                "verbose" => {
                    let now = !verbose.load(Ordering::Relaxed);
                    verbose.store(now, Ordering::Relaxed);
                    println!("verbose {}", if now { "on" } else { "off" });
                }
                "quit" | "exit" => break,
                other => println!("unknown command /{other}; /help lists them"),
            }
            continue;
        }

        // A question: run it with an event sink that shows the steps as they happen; Ctrl-C
        // cancels this run only.
        let ctx = RunContext::new().with_events(StepPrinter::new(Arc::clone(&verbose), interactive));
        let started = std::time::Instant::now();
        let answer = tokio::select! {
            out = executor.run(line, &ctx) => Some(out),
            _ = tokio::signal::ctrl_c() => {
                ctx.cancel();
                None
            }
        };
        match answer {
            Some(Ok(out)) => {
                if interactive {
                    eprintln!();
                }
                if args.json {
                    let tools: Vec<&str> =
                        out.steps.iter().filter_map(|s| s.call.as_ref().map(|c| c.name.as_str())).collect();
                    let line = serde_json::json!({
                        "answer": out.answer, "seconds": started.elapsed().as_secs_f64(),
                        "tools": tools, "stop": format!("{:?}", out.stop),
                    });
                    println!("{line}");
                } else {
                    println!("{}", out.answer);
                }
                let turn = [Message::user(line), Message::assistant(out.answer)];
                sessions.save(&session, memory.as_ref(), &turn).await?;
            }
            Some(Err(e)) if args.json => {
                println!(
                    "{}",
                    serde_json::json!({"error": e.to_string(), "seconds": started.elapsed().as_secs_f64()})
                );
            }
            Some(Err(e)) => eprintln!("error: {e}"),
            None => eprintln!("{}\n(cancelled)", if interactive { "\x1b[0m" } else { "" }),
        }
    }
    sessions.save(&session, memory.as_ref(), &[]).await?;
    Ok(())
}

/// One worked example of the protocol: small models copy a demonstration far better than they
/// follow a description of the format.
const REACT_EXAMPLE: &str = "Question: What is 15% of 80?
Thought: I should compute it with the calculator.
Action: calculator
Action Input: {\"expression\": \"0.15 * 80\"}
Observation: 12
Thought: I now know the final answer
Final Answer: 15% of 80 is 12.";

const HELP: &str = "/help this list · /tools the agent's tools · /memory what the agent remembers · \
/reset forget this session · /session [NAME] list sessions or switch · /model the model · \
/verbose show or hide steps · /quit leave (Ctrl-D too; Ctrl-C cancels an answer)";

fn note(text: &str) {
    eprintln!("\x1b[2m{text}\x1b[0m");
}

/// Loads a saved session into memory, saying what happened.
async fn resume(sessions: &SessionStore, name: &str, memory: &dyn Memory) -> Result<()> {
    match sessions.load(name, memory).await? {
        Loaded::New => {}
        Loaded::Resumed => {
            let remembered = memory.messages().await?.len();
            if remembered > 0 {
                note(&format!("resumed session `{name}` ({remembered} messages in memory)"));
            }
        }
        Loaded::MovedAside { renamed_to, reason } => {
            note(&format!(
                "session `{name}` could not be read ({reason}); kept as `{renamed_to}`, starting afresh"
            ));
        }
    }
    Ok(())
}

/// Search over this repository's README and docs/, indexed into LanceDB on first start (with a
/// progress bar) and reused afterwards.
async fn docs_search(dir: &Path, embedder: Arc<dyn Embedder>) -> Result<Described<RetrieverTool>> {
    // The collection's name changes when what is indexed changes, so an older index is not reused.
    let store =
        Arc::new(LanceDbStore::connect(dir.join("docs.lance").display().to_string(), "docs_v2").await?);
    if store.count().await? == 0 {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let ctx = RunContext::new();
        let mut documents = TextLoader::new(root.join("README.md")).load(&ctx).collect::<Vec<_>>().await;
        documents.extend(
            // Not the benchmark tables: their figures match every question about numbers.
            DirectoryLoader::new(root.join("docs"))
                .with_extensions(["md"])
                .with_exclude(["benchmarks.md"])
                .load(&ctx)
                .collect::<Vec<_>>()
                .await,
        );
        // Sources relative to the repository, so citations read `docs/guides/rag.md`.
        let documents: Vec<_> = documents
            .into_iter()
            .filter_map(std::result::Result::ok)
            .map(|mut doc| {
                let relative = doc
                    .source()
                    .and_then(|s| Path::new(s).strip_prefix(root).ok())
                    .map(|p| p.display().to_string());
                if let Some(relative) = relative {
                    doc.metadata.insert("source".into(), relative.into());
                }
                doc
            })
            .collect();
        let chunks = RecursiveCharacterSplitter::new(800, 100)?.split_documents(&documents)?;
        let bar = indicatif::ProgressBar::new(chunks.len() as u64).with_message("indexing the docs");
        let shown = bar.clone();
        let ctx = RunContext::new().with_events(move |e: Event| {
            if let Event::Progress { done, .. } = e {
                shown.set_position(done);
            }
        });
        index_documents(&chunks, embedder.as_ref(), store.as_ref(), 32, &ctx).await?;
        bar.finish_and_clear();
        note(&format!("indexed {} chunks of {} files", chunks.len(), documents.len()));
    }
    // Rebuilt on every start (milliseconds for these few hundred chunks), so a run stopped while
    // indexing never leaves a store without its keyword index.
    store.create_fts_index().await?;
    // Hybrid search, as `catena query` does: questions name exact terms ("embedding model",
    // "dimensions") that keyword search finds where MiniLM's similarity alone ranks other chunks first.
    let keywords: Arc<dyn Retriever> = Arc::new(LanceKeywordRetriever::new(Arc::clone(&store)).with_k(3));
    let similarity: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store as Arc<dyn VectorStore>, embedder).with_k(3));
    let retriever = EnsembleRetriever::new(vec![keywords, similarity]).with_k(3);
    // The description says what this collection is: told only "searches the document
    // collection", small models answer questions about catena from memory (and wrongly).
    Ok(RetrieverTool::new(Arc::new(retriever)).with_max_chars(500).with_name("search_catena_docs").with_description(
        "Searches catena's documentation (README and guides). Use it for every question about catena: \
         its commands, default models, embeddings, stores, APIs and features. Returns numbered passages with their sources.",
    ))
}

/// Text-to-SQL over a Chinook SQLite file (built once from the fetched fixture), read-only; the
/// local model writes its SQL under a grammar of the schema (remote APIs take no grammars).
async fn chinook_tool(dir: &Path, model: Arc<dyn ChatModel>, constrained: bool) -> Result<SqlQuestionTool> {
    let file = dir.join("chinook.sqlite");
    let url = format!("sqlite://{}", file.display());
    if !file.exists() {
        let writable =
            SqlDatabase::connect_with(&url, SqlOptions { read_only: false, ..SqlOptions::default() }).await?;
        let loaded = chinook::load(&chinook::fixture_path(), &writable).await;
        writable.close().await;
        if let Err(e) = loaded {
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
    }
    let chain = SqlQueryChain::new(model, SqlDatabase::connect(&url).await?)
        .await?
        .with_constrained_decoding(constrained);
    Ok(SqlQuestionTool::new(Arc::new(chain)))
}

/// Asks the person at the terminal before a tool marked "needs confirmation" runs.
struct AskUser {
    interactive: bool,
    yes: bool,
}

#[async_trait]
impl Confirm for AskUser {
    async fn confirm(&self, call: &ToolCall) -> bool {
        if self.yes {
            return true;
        }
        if !self.interactive {
            return false;
        }
        eprint!("\nallow {}({})? [y/N] ", call.name, call.arguments);
        let _ = std::io::stderr().flush();
        tokio::task::spawn_blocking(|| {
            let mut answer = String::new();
            let _ = std::io::stdin().lock().read_line(&mut answer);
            matches!(answer.trim(), "y" | "Y" | "yes")
        })
        .await
        .unwrap_or(false)
    }
}

/// Shows a run as it happens on stderr, dimmed: the model's tokens as they stream, then each
/// tool call and what it returned. Steps already seen as streamed tokens are not repeated.
struct StepPrinter {
    verbose: Arc<AtomicBool>,
    color: bool,
    streamed: Mutex<bool>,
}

impl StepPrinter {
    fn new(verbose: Arc<AtomicBool>, color: bool) -> Self {
        Self { verbose, color, streamed: Mutex::new(false) }
    }
}

impl catena::core::EventSink for StepPrinter {
    fn send(&self, event: Event) {
        if !self.verbose.load(Ordering::Relaxed) {
            return;
        }
        let (dim, reset) = if self.color { ("\x1b[2m", "\x1b[0m") } else { ("", "") };
        let mut streamed = self.streamed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut err = std::io::stderr();
        let _ = match event {
            Event::Token { text } => {
                let start = if *streamed { "" } else { dim };
                *streamed = true;
                write!(err, "{start}{text}")
            }
            Event::Step { kind, text } => {
                let seen = std::mem::take(&mut *streamed);
                if seen {
                    let _ = write!(err, "{reset}");
                }
                match kind.as_str() {
                    "thought" | "action" | "final_answer" if seen => writeln!(err),
                    "final_answer" => Ok(()),
                    "thought" => writeln!(err, "{dim}{text}{reset}"),
                    "action" => writeln!(err, "{dim}→ {text}{reset}"),
                    _ => writeln!(err, "{dim}← {}{reset}", text.replace('\n', "\n  ")),
                }
            }
            Event::Warning { message } => writeln!(err, "{dim}! {message}{reset}"),
            _ => Ok(()),
        };
        let _ = err.flush();
    }
}

/// Lines from the user: an editor with history on a terminal, plain stdin otherwise.
enum Input {
    Editor(Box<rustyline::DefaultEditor>, PathBuf),
    Plain(std::io::Lines<std::io::StdinLock<'static>>),
}

impl Input {
    fn new(interactive: bool, dir: &Path) -> Self {
        if interactive && let Ok(mut editor) = rustyline::DefaultEditor::new() {
            let history = dir.join("history.txt");
            let _ = editor.load_history(&history);
            return Self::Editor(Box::new(editor), history);
        }
        Self::Plain(std::io::stdin().lock().lines())
    }

    /// The next line; `None` at end of input (Ctrl-D). Ctrl-C at the prompt clears the line.
    fn next_line(&mut self, session: &str) -> Option<String> {
        match self {
            Self::Editor(editor, history) => loop {
                match editor.readline(&format!("{session}> ")) {
                    Ok(line) => {
                        let _ = editor.add_history_entry(line.as_str());
                        let _ = editor.save_history(history);
                        return Some(line);
                    }
                    Err(rustyline::error::ReadlineError::Interrupted) => {}
                    Err(_) => return None,
                }
            },
            Self::Plain(lines) => lines.next().and_then(std::result::Result::ok),
        }
    }
}
