//! catena's GenAI spans reach a real OpenTelemetry backend: Arize Phoenix (pinned in
//! scripts/phoenix/requirements.txt, installed by scripts/fetch-data.sh) is started on loopback,
//! an agent on the local agent model (Qwen2.5-Coder-1.5B, greedy) answers a question through a
//! document-search tool, the spans are exported over OTLP/HTTP with `catena::telemetry`, and
//! read back through Phoenix's REST API: the tree has the agent at the root, its model calls
//! (with token counts) and the tool call beneath it, and the retrieval (with document ids and
//! scores) beneath the tool call. The run's own usage report agrees with the spans.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]
#![cfg(feature = "otel")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catena::agents::{AgentExecutor, EarlyStopping, ExecutorConfig, ToolCallingAgent};
use catena::core::{Document, RunContext, ToolChoice};
use catena::models::{LlamaChatModel, LlamaOptions};
use catena::retrievers::Bm25Retriever;
use catena::tools::{Calculator, RetrieverTool, ToolRegistry};
use serde_json::Value;
use tracing_subscriber::layer::SubscriberExt as _;

#[path = "common/console.rs"]
mod console_server;

/// A Phoenix server on free loopback ports, stopped when dropped.
struct Phoenix {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts Phoenix, or `None` (test skipped) when scripts/fetch-data.sh has not installed it.
async fn phoenix() -> Option<Phoenix> {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"));
    let program = data.join("phoenix/bin/phoenix");
    if !program.exists() {
        assert!(
            std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
            "Arize Phoenix is missing at {}; run scripts/fetch-data.sh",
            program.display()
        );
        eprintln!("Phoenix not installed (scripts/fetch-data.sh): test skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(&program)
        .arg("serve")
        .env("PHOENIX_HOST", "127.0.0.1")
        .env("PHOENIX_PORT", port.to_string())
        .env("PHOENIX_GRPC_PORT", free_port().to_string())
        .env("PHOENIX_WORKING_DIR", dir.path())
        // No telemetry of Phoenix's own leaves the machine.
        .env("PHOENIX_TELEMETRY_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let phoenix = Phoenix { child, port, _dir: dir };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let health = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return Some(phoenix);
        }
        assert!(Instant::now() < deadline, "Phoenix did not start within 180 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One span as Phoenix returns it.
#[derive(Debug, Clone)]
struct Span {
    name: String,
    id: String,
    parent: Option<String>,
    attributes: Value,
}

impl Span {
    fn attribute(&self, key: &str) -> Option<&Value> {
        // Phoenix returns attributes flat (`{"gen_ai.tool.name": ...}`) or nested by dots.
        self.attributes.get(key).or_else(|| self.attributes.pointer(&format!("/{}", key.replace('.', "/"))))
    }
}

async fn spans(port: u16) -> Vec<Span> {
    let url = format!("http://127.0.0.1:{port}/v1/projects/default/spans?limit=1000");
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|span| Span {
            name: span["name"].as_str().unwrap_or_default().to_owned(),
            id: span["context"]["span_id"].as_str().unwrap_or_default().to_owned(),
            parent: span["parent_id"].as_str().map(str::to_owned),
            attributes: span["attributes"].clone(),
        })
        .collect()
}

// One thread: the subscriber set for this test is the thread's default, and every span of the
// run is created on it.
#[tokio::test(flavor = "current_thread")]
async fn an_agent_runs_trace_reaches_phoenix_as_a_tree_with_tokens_tools_and_documents() {
    let Some(phoenix) = phoenix().await else { return };
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", phoenix.port);
    let (layer, telemetry) = catena::telemetry::otlp_layer(Some(&endpoint)).unwrap();
    let subscriber = tracing_subscriber::registry().with(layer);
    let _default = tracing::subscriber::set_default(subscriber);

    let notes = [
        ("launch.md", "The product launch is on Tuesday 14 April at 10:00."),
        ("office.md", "The office is closed on public holidays."),
        ("budget.md", "The marketing budget for the launch is 12000 euros."),
    ];
    let documents =
        notes.iter().map(|(source, text)| Document::new(*text).with_metadata("source", *source)).collect();
    let search = RetrieverTool::new(Arc::new(Bm25Retriever::from_documents(documents).unwrap()));
    let tools = ToolRegistry::new().with(search).unwrap().with(Calculator).unwrap();
    let model = Arc::new(LlamaChatModel::load_named("agent", LlamaOptions::default()).await.unwrap());
    let agent = ToolCallingAgent::new(model)
        .with_system_prompt("You answer questions about the company's notes. Search the notes first.")
        .with_first_tool_choice(ToolChoice::Required)
        .with_max_tokens(96);
    let limits = ExecutorConfig {
        max_iterations: 3,
        max_repeats: 0,
        early_stopping: EarlyStopping::Generate,
        ..Default::default()
    };
    let executor = AgentExecutor::new(agent, tools).with_config(limits);
    let ctx = RunContext::new();
    let out = executor.run("When is the product launch?", &ctx).await.unwrap();
    eprintln!("{out:#?}");
    let call = out.steps.first().and_then(|s| s.call.as_ref()).expect("the model called a tool");
    assert_eq!(call.name, "search_documents", "{call:?}");

    // The run's own account: local model calls, counted, free.
    let usage = ctx.usage();
    assert!(usage.calls() >= 2, "{usage:?}");
    assert!(usage.total.prompt_tokens > 0 && usage.total.completion_tokens > 0, "{usage:?}");
    assert!(usage.cost_usd.abs() < f64::EPSILON && usage.unpriced.is_empty(), "{usage:?}");

    telemetry.flush().unwrap();
    // Phoenix writes what it receives in the background: wait for the whole tree.
    let deadline = Instant::now() + Duration::from_secs(60);
    let spans = loop {
        let spans = spans(phoenix.port).await;
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        if names.contains(&"invoke_agent agent")
            && names.contains(&"retrieval search_documents")
            && names.iter().filter(|n| n.starts_with("chat ")).count() >= 2
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "Phoenix did not receive the run's spans: {names:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let by_name = |name: &str| spans.iter().filter(|s| s.name == name).cloned().collect::<Vec<_>>();
    let by_id: BTreeMap<&str, &Span> = spans.iter().map(|s| (s.id.as_str(), s)).collect();
    let parent_name = |span: &Span| {
        span.parent.as_deref().and_then(|p| by_id.get(p)).map(|p| p.name.clone()).unwrap_or_default()
    };

    let agent = by_name("invoke_agent agent").remove(0);
    assert_eq!(agent.parent, None, "the agent's span is the root");
    assert_eq!(agent.attribute("gen_ai.operation.name"), Some(&Value::from("invoke_agent")));

    let chats: Vec<Span> = spans.iter().filter(|s| s.name.starts_with("chat ")).cloned().collect();
    assert_eq!(chats.len(), usage.calls() as usize, "one chat span per model call");
    let mut input_tokens = 0;
    for chat in &chats {
        assert_eq!(parent_name(chat), "invoke_agent agent", "{chat:?}");
        assert_eq!(chat.attribute("gen_ai.provider.name"), Some(&Value::from("llama.cpp")));
        assert_eq!(chat.attribute("gen_ai.operation.name"), Some(&Value::from("chat")));
        input_tokens +=
            chat.attribute("gen_ai.usage.input_tokens").and_then(Value::as_u64).expect("input tokens");
        assert!(chat.attribute("gen_ai.usage.output_tokens").and_then(Value::as_u64).is_some_and(|n| n > 0));
        // Content is not captured unless asked for.
        assert!(chat.attribute("gen_ai.input.messages").is_none(), "{chat:?}");
    }
    assert_eq!(input_tokens, u64::from(usage.total.prompt_tokens), "the spans' tokens are the run's");

    // The first call's span (the model may search again), found by the call's id.
    let tools = by_name("execute_tool search_documents");
    let tool = tools
        .iter()
        .find(|t| t.attribute("gen_ai.tool.call.id").and_then(Value::as_str) == Some(call.id.as_str()))
        .expect("a span for the first tool call");
    assert_eq!(parent_name(tool), "invoke_agent agent");

    let retrieval = by_name("retrieval search_documents")
        .into_iter()
        .find(|r| r.parent.as_deref() == Some(tool.id.as_str()));
    let retrieval = retrieval.expect("the tool call's retrieval beneath it");
    let documents: Value = serde_json::from_str(
        retrieval
            .attribute("catena.retrieval.documents")
            .and_then(Value::as_str)
            .expect("documents recorded"),
    )
    .unwrap();
    let first = &documents[0];
    assert_eq!(first["id"], "launch.md", "{documents}");
    assert!(first["score"].as_f64().is_some_and(|s| s > 0.0), "{documents}");
}

/// `catena serve --console` with the standard OTLP variables set: the run a client makes is in
/// the console's trace store and in Phoenix, under the same run id, with the same tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_run_is_in_the_console_and_in_phoenix_under_one_run_id() {
    let Some(phoenix) = phoenix().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_catena"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--console", "--traces"])
        .arg(dir.path().join("traces.db"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{}", phoenix.port))
        // Batches every 200 ms instead of every 5 s, so the test need not wait.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200");
    let (_server, console) = console_server::serve_console(command);

    let client = reqwest::Client::new();
    let response = client
        .post(format!("{console}v1/chat/completions"))
        .json(&serde_json::json!({"model": "chat", "max_tokens": 8,
            "messages": [{"role": "user", "content": "Say hello."}]}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let run_id = header("x-catena-run-id");
    let input_tokens: u64 = header("x-catena-usage-input-tokens").parse().unwrap();
    assert!(input_tokens > 0);
    assert_eq!(header("x-catena-cost-usd"), "0.000000", "the local model is free");

    // The console's store: the request at the root, the model call beneath, the same tokens.
    let deadline = Instant::now() + Duration::from_secs(60);
    let run: Value = loop {
        let answer = client.get(format!("{console}api/runs/{run_id}")).send().await.unwrap();
        if answer.status().is_success() {
            break answer.json().await.unwrap();
        }
        assert!(Instant::now() < deadline, "the run never reached the trace store");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run["run"]["name"], "chat chat");
    assert_eq!(run["run"]["input_tokens"].as_u64(), Some(input_tokens));
    let llm = run["spans"].as_array().unwrap().iter().find(|s| s["kind"] == "LLM").expect("a model call");
    assert_eq!(llm["attributes"]["gen_ai.usage.input_tokens"].as_u64(), Some(input_tokens));

    // Phoenix: the same request span (found by the run id) with the model call as its child.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spans = spans(phoenix.port).await;
        let root = spans.iter().find(|s| s.attribute("catena.run.id") == Some(&Value::from(run_id.as_str())));
        let child =
            root.and_then(|root| spans.iter().find(|s| s.parent.as_deref() == Some(root.id.as_str())));
        if let (Some(root), Some(child)) = (root, child) {
            assert_eq!(root.name, "chat chat");
            assert!(child.name.starts_with("chat "), "{child:?}");
            assert_eq!(
                child.attribute("gen_ai.usage.input_tokens").and_then(Value::as_u64),
                Some(input_tokens)
            );
            break;
        }
        assert!(Instant::now() < deadline, "Phoenix did not receive the served run: {spans:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
