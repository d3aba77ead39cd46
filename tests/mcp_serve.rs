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
