//! MCP client against a real server: the protocol's reference "everything" server from npm
//! (installed by scripts/fetch-data.sh), started over stdio. Its tools become catena tools in a
//! registry (schemas validated, read-only hints kept), results map to tool outputs (text,
//! images as artifacts, errors as tool errors), a cancelled call returns at once, and a server
//! that dies is restarted for the next call. The reference filesystem server, confined to a
//! temporary folder, reads and writes files for the registry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use catena_core::{ErrorKind, RunContext, Tool, ToolCall};
use catena_tools::ToolRegistry;
use catena_tools::mcp::{McpClient, McpConfig, McpServerConfig, NamePrefix, mcp_tools};
use serde_json::json;

/// The reference server's launcher, or `None` (test skipped) when the data was not fetched.
fn everything() -> Option<PathBuf> {
    npm_server("mcp-server-everything")
}

/// The launcher of an MCP server installed by scripts/fetch-data.sh, or `None` (test skipped).
fn npm_server(name: &str) -> Option<PathBuf> {
    let data = std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"));
    let path = data.join("mcp/node_modules/.bin").join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
        "the MCP test server is missing at {}; run scripts/fetch-data.sh",
        path.display()
    );
    eprintln!("MCP test server not fetched (scripts/fetch-data.sh): test skipped");
    None
}

async fn connect(name: &str) -> Option<Arc<McpClient>> {
    let server = everything()?;
    let config = McpServerConfig::stdio(server.display().to_string(), ["stdio"]);
    Some(McpClient::connect(name, config).await.unwrap())
}

fn call(name: &str, arguments: serde_json::Value) -> ToolCall {
    ToolCall { id: "1".into(), name: name.into(), arguments }
}

#[tokio::test]
async fn a_real_servers_tools_run_through_the_registry() {
    let Some(client) = connect("everything").await else { return };
    let tools = client.tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    for expected in ["echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    let echo = tools.iter().find(|t| t.name() == "echo").unwrap();
    assert!(echo.read_only(), "the server marks echo readOnlyHint");
    assert_eq!(echo.parameters()["required"], json!(["message"]));

    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.add(Arc::new(tool)).unwrap();
    }
    let ctx = RunContext::new();
    let out = registry.call(&call("echo", json!({"message": "hi there"})), &ctx).await.unwrap();
    assert!(out.content.contains("hi there"), "{}", out.content);
    let out = registry.call(&call("get-sum", json!({"a": 2, "b": 40})), &ctx).await.unwrap();
    assert!(out.content.contains("42"), "{}", out.content);
    // Arguments the schema refuses never reach the server: the registry's validation applies.
    let err = registry.call(&call("echo", json!({"msg": "hi"})), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("message"), "{err}");
    // An image comes back in the artifact (the whole result, in order, as the protocol's
    // blocks), named in the text the model reads.
    let out = registry.call(&call("get-tiny-image", json!({})), &ctx).await.unwrap();
    assert!(out.content.contains("[image: image/png]"), "{}", out.content);
    let artifact = out.artifact.unwrap();
    let blocks = artifact["content"].as_array().unwrap();
    let image = blocks.iter().find(|b| b["type"] == "image").expect("an image block");
    assert!(image["data"].as_str().unwrap().len() > 50);
    let first_text = blocks.iter().find(|b| b["type"] == "text").expect("the server's words too");
    assert!(out.content.starts_with(first_text["text"].as_str().unwrap()), "{}", out.content);
}

#[tokio::test]
async fn a_cancelled_call_returns_at_once_and_a_dead_server_is_restarted() {
    let Some(client) = connect("everything").await else { return };
    let ctx = RunContext::new();
    // A 30-second operation, cancelled after half a second.
    let cancel = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let err = client
        .call("trigger-long-running-operation", json!({"duration": 30, "steps": 3}), &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());

    // The server process is killed: the next call starts a new one and succeeds.
    let first = client.process_id().await.unwrap();
    std::process::Command::new("kill").args(["-9", &first.to_string()]).status().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = client.call("echo", json!({"message": "back"}), &RunContext::new()).await.unwrap();
    assert!(out.content.contains("back"), "{}", out.content);
    let second = client.process_id().await.unwrap();
    assert_ne!(first, second);
    assert!(client.tools_changed(), "a new session may have other tools");

    // Dropping the client stops its server.
    drop(client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!std::path::Path::new(&format!("/proc/{second}")).exists(), "server {second} still runs");
}

#[tokio::test]
async fn two_servers_with_the_same_tools_are_told_apart_by_a_prefix() {
    let (Some(a), Some(b)) = (connect("one").await, connect("two srv").await) else { return };
    let tools = mcp_tools(&[a.clone(), b.clone()], NamePrefix::OnClash, &[]).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert!(names.contains(&"one_echo") && names.contains(&"two_srv_echo"), "{names:?}");
    let echo = tools.iter().find(|t| t.name() == "two_srv_echo").unwrap();
    assert_eq!((echo.server(), echo.remote_name()), ("two srv", "echo"));
    // One server alone keeps the names, unless they clash with tools already registered.
    let alone = mcp_tools(std::slice::from_ref(&a), NamePrefix::OnClash, &["echo".to_owned()]).await.unwrap();
    let names: Vec<&str> = alone.iter().map(|t| t.name()).collect();
    assert!(names.contains(&"one_echo") && names.contains(&"get-sum"), "{names:?}");
    let always = mcp_tools(std::slice::from_ref(&a), NamePrefix::Always, &[]).await.unwrap();
    assert!(always.iter().all(|t| t.name().starts_with("one_")));
}

#[test]
fn configurations_in_the_usual_formats_parse_and_bad_ones_say_what_is_wrong() {
    let vscode = McpConfig::from_json(
        r#"{"servers": {"a": {"type": "stdio", "command": "srv", "args": ["-x"], "env": {"K": "v"}},
                        "b": {"type": "http", "url": "http://127.0.0.1:1/mcp"},
                        "c": {"command": "off", "disabled": true}}}"#,
    )
    .unwrap();
    assert_eq!(vscode.servers.len(), 2);
    assert!(
        matches!(&vscode.servers["a"], McpServerConfig::Stdio { args, env, .. } if args == &["-x"] && env["K"] == "v")
    );
    for (text, says) in [
        ("not json", "not JSON"),
        (r#"{"tools": {}}"#, "mcpServers"),
        (r#"{"mcpServers": {"x": {}}}"#, "server `x` has neither `command`"),
        (r#"{"mcpServers": {"x": {"command": "a", "url": "b"}}}"#, "both"),
        (r#"{"mcpServers": {"x": {"type": "sse", "url": "http://h/sse"}}}"#, "old SSE transport"),
        (r#"{"mcpServers": {"x": {"command": 3}}}"#, "server `x`"),
    ] {
        let err = McpConfig::from_json(text).unwrap_err();
        assert!(err.to_string().contains(says), "{text}: {err}");
    }
}

#[tokio::test]
async fn a_server_that_cannot_start_is_a_clear_error() {
    let err =
        McpClient::connect("ghost", McpServerConfig::stdio("/nonexistent/mcp-server", Vec::<String>::new()))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("cannot start `/nonexistent/mcp-server`"), "{err}");
    let err =
        McpClient::connect("nobody", McpServerConfig::http("http://127.0.0.1:9/mcp")).await.unwrap_err();
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[tokio::test]
async fn a_servers_text_resources_load_as_documents() {
    use catena_core::Loader;
    use catena_tools::mcp::McpResourceLoader;
    use futures::StreamExt;
    let Some(client) = connect("everything").await else { return };
    let listed = client.resources().await.unwrap();
    assert!(!listed.is_empty());
    let text: Vec<_> = listed.iter().filter(|r| r.mime_type.as_deref() == Some("text/markdown")).collect();
    assert!(!text.is_empty(), "{listed:?}");
    let docs = client.read(&text[0].uri).await.unwrap();
    assert!(docs[0].content.len() > 100, "{:?}", docs[0].content);
    assert_eq!(docs[0].metadata["source"], text[0].uri.as_str());
    assert_eq!(docs[0].metadata["server"], "everything");

    // Every listed resource through the loader: text ones as documents, binary ones as error
    // items that do not stop the others.
    let ctx = RunContext::new();
    let items: Vec<_> = McpResourceLoader::new(client.clone()).load(&ctx).collect().await;
    let loaded = items.iter().filter(|i| i.is_ok()).count();
    assert!(loaded >= text.len(), "{loaded} of {}", items.len());
    for failed in items.iter().filter_map(|i| i.as_ref().err()) {
        assert!(failed.to_string().contains("holds no text"), "{failed}");
    }
    let one: Vec<_> =
        McpResourceLoader::new(client).with_uris([text[0].uri.clone()]).load(&ctx).collect().await;
    assert_eq!(one.len(), 1);
}

#[tokio::test]
async fn the_reference_filesystem_server_reads_and_writes_inside_its_folder_only() {
    let Some(server) = npm_server("mcp-server-filesystem") else { return };
    let dir = std::env::temp_dir().join(format!("catena-mcp-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    std::fs::write(dir.join("notes.txt"), "The launch is on Tuesday.\n").unwrap();
    let config = McpServerConfig::stdio(server.display().to_string(), [dir.display().to_string()]);
    let client = McpClient::connect("files", config).await.unwrap();
    let tools = client.tools().await.unwrap();
    let read_only = |name: &str| tools.iter().find(|t| t.name() == name).map(|t| t.read_only());
    // Reading is marked read-only by the server; writing is not, so an agent asks first.
    assert_eq!(read_only("read_text_file"), Some(true));
    assert_eq!(read_only("write_file"), Some(false));

    let mut registry = ToolRegistry::new();
    for tool in tools {
        registry.add(Arc::new(tool)).unwrap();
    }
    let ctx = RunContext::new();
    let out = registry.call(&call("list_allowed_directories", json!({})), &ctx).await.unwrap();
    assert!(out.content.contains(&dir.display().to_string()), "{}", out.content);
    let path = dir.join("notes.txt").display().to_string();
    let out = registry.call(&call("read_text_file", json!({"path": path})), &ctx).await.unwrap();
    assert_eq!(out.content.trim(), "The launch is on Tuesday.");
    let written = dir.join("reply.txt").display().to_string();
    registry.call(&call("write_file", json!({"path": written, "content": "Noted."})), &ctx).await.unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("reply.txt")).unwrap(), "Noted.");

    // Outside its folder the server refuses, and the refusal is the tool's error for the model.
    let err =
        registry.call(&call("read_text_file", json!({"path": "/etc/hostname"})), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    assert!(err.to_string().to_lowercase().contains("denied"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
