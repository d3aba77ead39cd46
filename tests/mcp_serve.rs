//! `catena mcp serve` as an MCP client meets it: started over stdio by catena's own MCP client,
//! its tools listed with schemas and read-only hints, calls answered, bad calls answered as tool
//! errors (`isError`), and guarded SQL over the Chinook sample database (writes refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::process::Command;

use catena::core::{RunContext, Tool};
use catena::tools::mcp::{McpClient, McpServerConfig};
use serde_json::json;

fn serve(args: &[&str]) -> McpServerConfig {
    let mut all = vec!["mcp", "serve"];
    all.extend_from_slice(args);
    McpServerConfig::stdio(env!("CARGO_BIN_EXE_catena"), all)
}

#[tokio::test]
async fn catena_mcp_serve_offers_its_tools_to_an_mcp_client() {
    let client = McpClient::connect("catena", serve(&[])).await.unwrap();
    let tools = client.tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["calculator", "current_datetime"]);
    assert!(tools.iter().all(Tool::read_only), "both are read-only");
    assert_eq!(tools[0].parameters()["required"], json!(["expression"]));

    let ctx = RunContext::new();
    let out = client.call("calculator", json!({"expression": "17 * 23"}), &ctx).await.unwrap();
    assert_eq!(out.content, "391");
    // The server's registry validates arguments; its refusal comes back as the tool's error.
    let err = client.call("calculator", json!({"expr": "1"}), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("expression"), "{err}");
    let err = client.call("no_such_tool", json!({}), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("no_such_tool"), "{err}");
}

#[tokio::test]
async fn catena_mcp_serve_answers_guarded_sql_over_a_sqlite_file() {
    let data = std::env::var_os("CATENA_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data")
    });
    if !data.join("chinook/initial_data.json").exists() {
        assert!(std::env::var_os("CATENA_REQUIRE_DATA").is_none(), "run scripts/fetch-data.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chinook.sqlite");
    let url = format!("sqlite://{}", file.display());
    let load = Command::new(env!("CARGO_BIN_EXE_catena"))
        .args(["sql", "load-chinook", "--db", &url])
        .output()
        .unwrap();
    assert!(load.status.success(), "{}", String::from_utf8_lossy(&load.stderr));

    let client = McpClient::connect("catena", serve(&["--sqlite", file.to_str().unwrap()])).await.unwrap();
    let tools = client.tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name() == "sql_query" && t.read_only()));
    let ctx = RunContext::new();
    let out =
        client.call("sql_query", json!({"sql": "SELECT COUNT(*) AS n FROM Customer"}), &ctx).await.unwrap();
    assert!(out.content.contains("59"), "{}", out.content);
    // A write is refused by the guard, with the reason the client's model can act on.
    let out = client.call("sql_query", json!({"sql": "DELETE FROM Customer"}), &ctx).await.unwrap();
    assert!(out.content.contains("refused: DELETE is not allowed"), "{}", out.content);
    let out =
        client.call("sql_query", json!({"sql": "SELECT COUNT(*) AS n FROM Customer"}), &ctx).await.unwrap();
    assert!(out.content.contains("59"), "still there: {}", out.content);
    // The prompt that goes with the database, rendered by the server.
    let prompt = client.prompt_template("ask_the_database").await.unwrap();
    let messages = prompt.format_messages(&json!({"question": "How many customers?"})).await.unwrap();
    assert!(
        messages[0].content.contains("sql_query") && messages[0].content.ends_with("How many customers?")
    );
    drop(client);
    // Flags choose what is offered: one tool, no prompts.
    let args = ["--sqlite", file.to_str().unwrap(), "--tools", "sql_query", "--no-prompts"];
    let client = McpClient::connect("catena", serve(&args)).await.unwrap();
    let names: Vec<String> = client.tools().await.unwrap().iter().map(|t| t.name().to_owned()).collect();
    assert_eq!(names, ["sql_query"]);
    assert!(client.prompts().await.unwrap().is_empty());
    drop(client);
    // A missing file is refused before serving, with what to do.
    let err = McpClient::connect("catena", serve(&["--sqlite", "/nonexistent.sqlite"])).await.unwrap_err();
    assert!(err.to_string().contains("handshake"), "{err}");
}

async fn start(server: catena::serve::Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, std::future::pending()));
    format!("http://{addr}/mcp")
}

#[tokio::test]
async fn catena_serve_offers_tools_at_slash_mcp_behind_its_api_key() {
    use catena::tools::{Calculator, ToolRegistry};
    let tools = || ToolRegistry::new().with(Calculator).unwrap();
    // Loopback without a key: open, like the other routes.
    let open = start(catena::serve::Server::new().with_mcp(tools())).await;
    let client = McpClient::connect("open", McpServerConfig::http(open)).await.unwrap();
    let out = client.call("calculator", json!({"expression": "2 ^ 10"}), &RunContext::new()).await.unwrap();
    assert_eq!(out.content, "1024");

    // With a key: the bearer header is required.
    let keyed =
        start(catena::serve::Server::new().with_mcp(tools()).with_api_key(Some("sekrit".into()))).await;
    let err = McpClient::connect("anonymous", McpServerConfig::http(keyed.clone())).await.unwrap_err();
    assert!(err.to_string().contains("anonymous"), "{err}");
    let config = McpServerConfig::http(keyed).with_header("Authorization", "Bearer sekrit");
    let client = McpClient::connect("keyed", config).await.unwrap();
    let tools = client.tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    let out = client.call("calculator", json!({"expression": "6 * 7"}), &RunContext::new()).await.unwrap();
    assert_eq!(out.content, "42");
}

/// A tool that waits half a minute; `stopped` turns true when its work is dropped unfinished,
/// as the server's registry does when the run is cancelled.
struct WaitForCancel {
    stopped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// Marks the tool's work stopped when dropped.
struct StopGuard(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[catena::core::async_trait]
impl Tool for WaitForCancel {
    fn name(&self) -> &str {
        "wait"
    }
    fn description(&self) -> &str {
        "Waits half a minute."
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object", "properties": {}})
    }
    async fn call(
        &self,
        _: serde_json::Value,
        _: &RunContext,
    ) -> catena::core::Result<catena::core::ToolOutput> {
        let _guard = StopGuard(self.stopped.clone());
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        Ok("done".into())
    }
}

/// catena's server and catena's client, both directions of this project: resources from a
/// store's documents and from a fixed list, prompts from a chat template, and a call cancelled
/// by the client that the server stops within seconds, not the tool's 30 (the protocol's
/// cancellation notification went over the wire).
#[tokio::test]
async fn resources_prompts_and_cancellation_between_catenas_server_and_client() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use catena::core::{ChatPromptTemplate, Document, Embedded, ErrorKind, Loader, VectorStore};
    use catena::retrievers::InMemoryVectorStore;
    use catena::tools::ToolRegistry;
    use catena::tools::mcp::{
        McpResourceLoader, McpToolServer, ServedPrompt, StaticResources, StoreResources,
    };
    use futures::StreamExt;

    let store = std::sync::Arc::new(InMemoryVectorStore::new());
    let chunk = |text: &str, start: u64| Embedded {
        document: Document::new(text).with_metadata("source", "guide.md").with_metadata("start_index", start),
        vector: vec![1.0, 0.0],
    };
    // Upserted out of order: a read puts the chunks back in the order of the source.
    store.upsert(vec![chunk("Second part.", 40), chunk("First part.", 0)]).await.unwrap();
    let review =
        ChatPromptTemplate::new().system("You review {language} code.").unwrap().user("{code}").unwrap();
    let seen = std::sync::Arc::new(AtomicBool::new(false));
    let server =
        McpToolServer::new(ToolRegistry::new().with(WaitForCancel { stopped: seen.clone() }).unwrap())
            .with_resources(StaticResources::new().text("notes://today", "Today", "text/plain", "Ship it."))
            .with_resources(StoreResources::new(store, "docs"))
            .with_prompt(ServedPrompt::from_template("review", "Reviews code.", review));
    let url = start(catena::serve::Server::new().with_mcp(server)).await;
    let client = McpClient::connect("catena", McpServerConfig::http(url)).await.unwrap();

    let resources = client.resources().await.unwrap();
    let uris: Vec<&str> = resources.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(uris, ["notes://today", "catena://store/docs/guide.md"]);
    let documents: Vec<_> = McpResourceLoader::new(client.clone()).load(&RunContext::new()).collect().await;
    let texts: Vec<String> = documents.into_iter().map(|d| d.unwrap().content).collect();
    assert_eq!(texts, ["Ship it.", "First part.\n\nSecond part."]);
    let err = client.read("catena://store/docs/missing.md").await.unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");

    let prompt = client.prompt_template("review").await.unwrap();
    assert_eq!(
        prompt.info().arguments.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["code", "language"]
    );
    let messages =
        prompt.format_messages(&json!({"language": "Rust", "code": "fn main() {}"})).await.unwrap();
    let texts: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["You review Rust code.", "fn main() {}"]);
    let err = prompt.format_messages(&json!({"code": "x"})).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let ctx = RunContext::new();
    let cancel = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        cancel.cancel();
    });
    let err = client.call("wait", json!({}), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !seen.load(Ordering::SeqCst) {
        assert!(std::time::Instant::now() < deadline, "the server's tool was never stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The Python MCP SDK (PyPI `mcp`, pinned in scripts/mcp/requirements.txt) as a second client
/// of catena's server over streamable HTTP: tools, a call and a refused call, resources read,
/// prompts listed (scripts/mcp/py_client.py).
#[tokio::test]
async fn the_python_sdk_is_a_client_of_catenas_server_too() {
    use catena::core::ChatPromptTemplate;
    use catena::tools::mcp::{McpToolServer, ServedPrompt, StaticResources};
    use catena::tools::{Calculator, DateTimeTool, ToolRegistry};

    let data = std::env::var_os("CATENA_DATA_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data")
    });
    let python = data.join("pymcp/bin/python");
    if !python.exists() {
        assert!(std::env::var_os("CATENA_REQUIRE_DATA").is_none(), "run scripts/fetch-data.sh");
        return;
    }
    let tools = ToolRegistry::new().with(Calculator).unwrap().with(DateTimeTool::new()).unwrap();
    let greet = ChatPromptTemplate::new().user("Say hello to {name}.").unwrap();
    let server = McpToolServer::new(tools)
        .with_resources(StaticResources::new().text("notes://today", "Today", "text/plain", "Ship it."))
        .with_prompt(ServedPrompt::from_template("greet", "Greets someone.", greet));
    let url = start(catena::serve::Server::new().with_mcp(server)).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/mcp/py_client.py");
    let output = tokio::process::Command::new(&python).args([script, "check", &url]).output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output).await.unwrap().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["tools"], json!(["calculator", "current_datetime"]), "{report}");
    assert_eq!(report["calculator"], "42", "{report}");
    assert_eq!(report["refused_is_error"], true, "{report}");
    assert_eq!(report["resources"], json!(["notes://today"]), "{report}");
    assert_eq!(report["read"], json!(["Ship it."]), "{report}");
    assert_eq!(report["prompts"], json!(["greet"]), "{report}");
}

/// The documented example (examples/mcp_server.rs) is a working server: its own tool and the
/// calculator, its prompt and its resource, as a client sees them.
#[tokio::test]
async fn the_mcp_server_example_serves_its_tool_prompt_and_resource() {
    // Examples are built beside the test binaries (target/debug/examples) by `--all-targets`.
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("examples/mcp_server");
    assert!(example.exists(), "{} missing: cargo build --example mcp_server", example.display());
    let config = McpServerConfig::stdio(example.display().to_string(), Vec::<String>::new());
    let client = McpClient::connect("units", config).await.unwrap();
    let tools = client.tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["calculator", "convert_temperature"]);

    let ctx = RunContext::new();
    let out = client.call("convert_temperature", json!({"value": 100, "from": "F"}), &ctx).await.unwrap();
    assert_eq!(out.content, "100 °F = 37.8 °C");
    let err = client.call("convert_temperature", json!({"value": 1, "from": "K"}), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("unknown unit \"K\""), "{err}");

    let prompt = client.prompt_template("kitchen_units").await.unwrap();
    let messages = prompt.format_messages(&json!({"question": "Is 350 °F hot?"})).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1].content, "Is 350 °F hot?");
    let documents = client.read("units://oven-temperatures").await.unwrap();
    assert!(documents[0].content.contains("| Moderate | 180 | 350 |"), "{}", documents[0].content);
}
