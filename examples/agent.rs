//! The `agent` REPL: chat with a tool-using agent that searches these docs, queries the Chinook
//! music database, calculates, tells the time, saves notes once you approve (and with `--web`
//! reads web pages, also after approval), and remembers the conversation across restarts: each
//! session is a thread of the agent graph, checkpointed in SQLite after every step, so a call
//! waiting for your approval still waits after you quit and come back.
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
//! Reading order: (1) the model, (2) the tools, (3) the threads file, (4) the agent, its
//! executor and its graph, (5) the loop that reads questions and decisions, streams the steps
//! and answers.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use catena::agents::graph::{Checkpointer, CompiledGraph, Outcome, Resume, SqliteCheckpointer, Thread};
use catena::agents::{
    Agent, AgentExecutor, AgentRun, AgentRunUpdate, Approval, ApprovalRequest, Decision, EarlyStopping,
    ExecutorConfig, ReActAgent, SessionStore, Summarize, ToolCallingAgent, ToolSelector,
};
use catena::core::{
    ChatModel, Described, Embedder, Event, Loader, Result, Retriever, RunContext, Splitter, Tokenizer, Tool,
    ToolCall, ToolChoice, ToolExt, VectorStore,
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
use catena::tools::mcp::{McpClient, McpConfig, McpToolSet, NamePrefix};
use catena::tools::{
    Calculator, DateTimeTool, RetrieverTool, SaveNoteTool, ToolOptions, ToolRegistry, WebPageTool,
};
use clap::{Parser, ValueEnum};
use futures::{FutureExt, StreamExt};

/// Chat with a tool-using agent (docs search, SQL over Chinook, calculator, date/time; web pages
/// with --web).
///
/// Type a question; `/help` lists the slash commands. Ctrl-C cancels the current answer, Ctrl-D
/// quits. Without a terminal, questions are read line by line from stdin and answers printed to
/// stdout, one per line.
#[derive(Debug, Parser)]
#[command(name = "agent")]
struct Args {
    /// The conversation to resume (a thread in threads.db under the agent folder).
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
    /// Also offer the web page tool (every fetch waits for approval).
    #[arg(long)]
    web: bool,
    /// Approve every call that waits for approval (for scripts).
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
    /// Also offer the tools of the MCP servers in FILE (the `mcpServers` JSON of Claude Desktop
    /// and Cursor, or VS Code's `servers`); calls of tools not marked read-only wait for approval.
    #[arg(long, value_name = "FILE")]
    mcp: Option<PathBuf>,
    /// Where the docs index, threads and notes live [default: <cache>/catena/agent, or $CATENA_AGENT_DIR].
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
    // Warnings to stderr; with OTEL_EXPORTER_OTLP_ENDPOINT set (a local Phoenix, say), every
    // model call, tool call and retrieval of the session as OpenTelemetry spans too.
    let _telemetry = match catena::telemetry::init("warn") {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
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
    // A side-effecting tool: notes saved as Markdown files under the agent folder. Tools that
    //    only read say so (`Tool::read_only`); this one does not, so every call of it waits for
    //    your approval (below).
    tools.add(Arc::new(SaveNoteTool::new(dir.join("notes"))))?;
    // Tools of MCP servers, from a configuration in the usual `mcpServers` format; a name that
    //    clashes with another tool gets its server's name as a prefix. The registry follows the
    //    servers: a server that announces a new tool list is listed again, and the model is offered
    //    the new list from the next question on.
    let mut mcp = None;
    if let Some(file) = &args.mcp {
        let config = McpConfig::load(file)?;
        let clients = McpClient::connect_all(&config).await?;
        let taken: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
        let set = McpToolSet::new(clients, NamePrefix::OnClash, &taken).await?;
        note(&format!("{} tools from {} MCP server(s)", set.tools().len(), set.clients().len()));
        tools.add_source(Arc::new(set.clone()));
        mcp = Some(set);
    }

    // 3. The conversation lives in the thread's checkpoints (SQLite, under the agent folder):
    //    a restart resumes it, and a run waiting for approval waits across restarts. The model
    //    is shown older turns as a summary once the conversation passes 600 tokens.
    let checkpointer = Arc::new(open_threads(&dir.join("threads.db")).await?);

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
        .with_config(limits)
        .with_middleware(Summarize::new(Arc::clone(&model), tokenizer, 600));
    if let (k @ 1.., Some(embedder)) = (args.select_tools, embedder) {
        executor = executor.with_tool_selection(ToolSelector::new(embedder, k));
    }
    let listed = executor.tools().clone();
    // The loop as a graph: plan, review (calls that need approval pause the run), act; a
    // checkpoint after each step.
    let graph = executor.into_graph()?.with_checkpointer(checkpointer.clone());
    import_sessions(&dir, &graph).await?;

    // 5. The loop.
    let verbose = Arc::new(AtomicBool::new(args.verbose || interactive));
    let mut repl = Repl {
        graph,
        thread: Thread::new(&args.session),
        interactive,
        json: args.json,
        yes: args.yes,
        verbose: Arc::clone(&verbose),
    };
    let mut input = Input::new(interactive, &dir);
    if interactive {
        eprintln!(
            "catena agent on {} ({protocol:?}); session `{}`. /help for commands, Ctrl-D to quit.",
            model.model_name(),
            args.session
        );
    }
    repl.show_waiting().await?;
    while let Some(line) = input.next_line(repl.thread.id()) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(command) = line.strip_prefix('/') {
            let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
            let rest = rest.trim();
            match name {
                "help" => println!("{HELP}"),
                "tools" => describe_tools(&listed, mcp.as_ref()).iter().for_each(|line| println!("{line}")),
                "memory" => {
                    let history = repl.graph.state(&repl.thread).await?.map(|s| s.state.history);
                    for m in history.unwrap_or_default() {
                        println!("{}: {}", m.role.as_str(), m.content);
                    }
                }
                "reset" => {
                    checkpointer.delete_thread(repl.thread.id()).await?;
                    println!("memory cleared for session `{}`", repl.thread.id());
                }
                "session" if rest.is_empty() => {
                    for name in checkpointer.threads().await? {
                        let star = if name == repl.thread.id() { " *" } else { "" };
                        println!("{name}{star}");
                    }
                }
                "session" => {
                    repl.thread = Thread::new(rest);
                    repl.show_waiting().await?;
                }
                "approve" => repl.decide(|_| Some(Decision::Approve)).await?,
                "reject" => {
                    let message = if rest.is_empty() { "The user declined this call." } else { rest };
                    repl.decide(|_| Some(Decision::Reject { message: message.to_owned() })).await?;
                }
                "edit" => repl.edit(rest).await?,
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
        if !repl.waiting().await?.is_empty() {
            println!("{WAITING_HINT}");
            continue;
        }
        repl.ask(line).await?;
    }
    Ok(())
}

/// The REPL's session: the agent graph and the thread it talks on.
struct Repl {
    graph: CompiledGraph<AgentRun>,
    thread: Thread,
    interactive: bool,
    json: bool,
    yes: bool,
    verbose: Arc<AtomicBool>,
}

/// How a run of the REPL starts.
enum Start {
    Ask(String),
    Resume(Resume),
}

const WAITING_HINT: &str = "a tool call is waiting for your decision: /approve, /reject [MESSAGE] \
(the model reads it), or /edit [ID] {JSON arguments}";

impl Repl {
    /// A question.
    async fn ask(&self, question: &str) -> Result<()> {
        self.drive(Start::Ask(question.to_owned())).await
    }

    /// Runs or resumes the thread with an event sink that shows the steps as they happen
    /// (Ctrl-C cancels this run only), and says how it ended: the answer, or what waits for
    /// approval.
    async fn drive(&self, mut start: Start) -> Result<()> {
        loop {
            let ctx =
                RunContext::new().with_events(StepPrinter::new(Arc::clone(&self.verbose), self.interactive));
            let started = std::time::Instant::now();
            let run = match start {
                Start::Ask(question) => {
                    self.graph.invoke(&self.thread, AgentRun::ask(question), &ctx).boxed()
                }
                Start::Resume(resume) => self.graph.resume(&self.thread, resume, &ctx).boxed(),
            };
            let outcome = tokio::select! {
                out = run => Some(out),
                _ = tokio::signal::ctrl_c() => {
                    ctx.cancel();
                    None
                }
            };
            if self.interactive {
                eprintln!("\x1b[0m");
            }
            match outcome {
                Some(Ok(Outcome::Done(run))) => {
                    let answer = run.answer.clone().unwrap_or_default();
                    if self.json {
                        let tools: Vec<&str> = run
                            .steps
                            .iter()
                            .filter_map(|s| s.call.as_ref().map(|c| c.name.as_str()))
                            .collect();
                        let usage = ctx.usage();
                        let line = serde_json::json!({
                            "answer": answer, "seconds": started.elapsed().as_secs_f64(),
                            "tools": tools, "stop": run.stop.map(|s| format!("{s:?}")),
                            "usage": usage.total, "cost_usd": usage.cost_usd,
                        });
                        println!("{line}");
                    } else {
                        println!("{answer}");
                        // Every model call of the run, counted by the run's context.
                        if self.verbose.load(std::sync::atomic::Ordering::Relaxed) {
                            eprintln!("({})", ctx.usage());
                        }
                    }
                }
                // Scripts that said --yes approve every call.
                Some(Ok(Outcome::Interrupted { .. })) if self.yes => {
                    start = Start::Resume(Resume::with(&self.approval(|_| None).await?)?);
                    continue;
                }
                Some(Ok(Outcome::Interrupted { .. })) => self.show_waiting().await?,
                Some(Err(e)) => {
                    // A failed run is not left half-done: the next question starts afresh.
                    self.graph.abandon(&self.thread).await?;
                    if self.json {
                        let seconds = started.elapsed().as_secs_f64();
                        println!("{}", serde_json::json!({"error": e.to_string(), "seconds": seconds}));
                    } else {
                        eprintln!("error: {e}");
                    }
                }
                None => {
                    self.graph.abandon(&self.thread).await?;
                    eprintln!("(cancelled)");
                }
            }
            return Ok(());
        }
    }

    /// The calls waiting for a decision on this thread.
    async fn waiting(&self) -> Result<Vec<ToolCall>> {
        let Some(snapshot) = self.graph.state(&self.thread).await? else { return Ok(Vec::new()) };
        let mut calls = Vec::new();
        for interrupt in snapshot.interrupts {
            let request: ApprovalRequest = serde_json::from_value(interrupt.payload)
                .map_err(|e| catena::core::Error::parse("approval request", e.to_string()))?;
            calls.extend(request.calls);
        }
        Ok(calls)
    }

    /// Says what waits for approval (on stdout: a script reads it like an answer).
    async fn show_waiting(&self) -> Result<()> {
        let waiting = self.waiting().await?;
        if waiting.is_empty() {
            return Ok(());
        }
        if self.json {
            println!("{}", serde_json::json!({ "waiting": waiting }));
            return Ok(());
        }
        for call in &waiting {
            println!("waiting for approval: {}({}) [id {}]", call.name, call.arguments, call.id);
        }
        println!("{WAITING_HINT}");
        Ok(())
    }

    /// A decision per waiting call (`None`: approve).
    async fn approval(&self, decide: impl Fn(&ToolCall) -> Option<Decision>) -> Result<Approval> {
        let waiting = self.waiting().await?;
        Ok(Approval {
            decisions: waiting
                .iter()
                .map(|call| (call.id.clone(), decide(call).unwrap_or(Decision::Approve)))
                .collect(),
        })
    }

    /// Resumes the waiting run with a decision per call (`None`: approve).
    async fn decide(&self, decide: impl Fn(&ToolCall) -> Option<Decision>) -> Result<()> {
        let approval = self.approval(decide).await?;
        if approval.decisions.is_empty() {
            println!("nothing is waiting for a decision on session `{}`", self.thread.id());
            return Ok(());
        }
        self.drive(Start::Resume(Resume::with(&approval)?)).await
    }

    /// `/edit [ID] {JSON}`: runs one waiting call with other arguments (the others approved).
    async fn edit(&self, rest: &str) -> Result<()> {
        let (id, json) = match rest.split_once(char::is_whitespace) {
            Some((id, json)) if !id.starts_with('{') => (Some(id), json.trim()),
            _ => (None, rest),
        };
        let arguments: serde_json::Value = match serde_json::from_str(json) {
            Ok(arguments @ serde_json::Value::Object(_)) => arguments,
            _ => {
                println!("/edit takes the new arguments as a JSON object, e.g. /edit {{\"title\": \"...\"}}");
                return Ok(());
            }
        };
        let waiting = self.waiting().await?;
        let target = match id {
            Some(id) => waiting.iter().find(|c| c.id == id),
            None if waiting.len() == 1 => waiting.first(),
            None => {
                println!("several calls wait: name one, /edit ID {{...}}");
                return Ok(());
            }
        };
        let Some(target) = target.map(|c| c.id.clone()) else {
            println!("no waiting call has that id (the ids are in brackets above)");
            return Ok(());
        };
        self.decide(|call| (call.id == target).then(|| Decision::Edit { arguments: arguments.clone() })).await
    }
}

/// Opens the threads file; one that cannot be opened (damaged, not SQLite) is kept aside,
/// renamed, and a fresh one started, so the REPL always starts.
async fn open_threads(path: &Path) -> Result<SqliteCheckpointer> {
    match SqliteCheckpointer::open(path).await {
        Err(e) if path.exists() => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            let aside = PathBuf::from(format!("{}.corrupt-{secs}", path.display()));
            std::fs::rename(path, &aside).map_err(|e| catena::core::Error::io(path, e))?;
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::rename(
                    format!("{}{suffix}", path.display()),
                    format!("{}{suffix}", aside.display()),
                );
            }
            note(&format!("the threads file was unreadable ({e}); it was kept as {}", aside.display()));
            SqliteCheckpointer::open(path).await
        }
        other => other,
    }
}

/// Conversations of the REPL's earlier versions (sessions.db) become threads once; the old file
/// is kept beside, renamed, so nothing is lost.
async fn import_sessions(dir: &Path, graph: &CompiledGraph<AgentRun>) -> Result<()> {
    let old = dir.join("sessions.db");
    if !old.exists() {
        return Ok(());
    }
    let sessions = SessionStore::open(&old).await?;
    let mut imported = 0;
    for info in sessions.list().await? {
        let thread = Thread::new(&info.name);
        if graph.state(&thread).await?.is_some() {
            continue;
        }
        match sessions.transcript(&info.name).await {
            Ok(messages) => {
                graph.update_state(&thread, AgentRunUpdate::default().history(messages)).await?;
                imported += 1;
            }
            Err(e) => note(&format!("session `{}` could not be read ({e}); not imported", info.name)),
        }
    }
    drop(sessions);
    let kept = dir.join("sessions.db.imported");
    std::fs::rename(&old, &kept).map_err(|e| catena::core::Error::io(&old, e))?;
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("sessions.db{suffix}")));
    }
    note(&format!(
        "imported {imported} saved session(s) into {}; the old file is kept as {}",
        dir.join("threads.db").display(),
        kept.display()
    ));
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

/// One line per tool for `/tools`: its name, whether its calls wait for approval, the MCP server it
/// comes from, and its description. Read when asked, since MCP servers may change their tools.
fn describe_tools(tools: &ToolRegistry, mcp: Option<&McpToolSet>) -> Vec<String> {
    let servers: std::collections::BTreeMap<String, String> = mcp
        .map(|set| set.tools().iter().map(|t| (t.name().to_owned(), t.server().to_owned())).collect())
        .unwrap_or_default();
    tools
        .specs()
        .into_iter()
        .map(|spec| {
            let asks = tools.get(&spec.name).is_some_and(|t| !t.read_only())
                || tools.options(&spec.name).is_some_and(|o| o.needs_confirmation);
            let from = servers.get(&spec.name).map(|s| format!(" [MCP: {s}]")).unwrap_or_default();
            format!("{}{from}{}: {}", spec.name, if asks { " (asks first)" } else { "" }, spec.description)
        })
        .collect()
}

const HELP: &str = "/help this list · /tools the agent's tools · /memory what the agent remembers · \
/reset forget this session · /session [NAME] list sessions or switch · /approve, /reject [MESSAGE], \
/edit [ID] {JSON} decide on a call waiting for approval · /model the model · \
/verbose show or hide steps · /quit leave (Ctrl-D too; Ctrl-C cancels an answer)";

fn note(text: &str) {
    eprintln!("\x1b[2m{text}\x1b[0m");
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
