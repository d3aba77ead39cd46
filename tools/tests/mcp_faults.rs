//! MCP client against servers that misbehave on purpose (tests/data/misbehaving_mcp_server.py,
//! standard-library Python): a server that never answers `initialize`, one that writes
//! malformed JSON-RPC, one that crashes mid-call, one whose result is over the size cap, one
//! that lists a tool with a broken schema, one that knows no method. Each is a typed error
//! within its timeout, nothing hangs, and a registry holding the failing server's tools beside
//! another server's keeps working. The same script also plays a well-behaved server whose tool
//! list changes, which a registry follows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use catena_core::{ErrorKind, RunContext, Tool, ToolCall};
use catena_tools::mcp::{McpClient, McpClientOptions, McpServerConfig, McpToolSet, NamePrefix};
use catena_tools::{Calculator, ToolRegistry};
use serde_json::json;

fn server(mode: &str) -> McpServerConfig {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/misbehaving_mcp_server.py");
    McpServerConfig::stdio("python3", [script, mode])
}

/// Short limits, so that a test of a hang takes two seconds, not five minutes.
fn quick() -> McpClientOptions {
    McpClientOptions::default()
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Duration::from_secs(2))
        .with_max_result_bytes(1 << 20)
}

async fn connect(mode: &str) -> Arc<McpClient> {
    McpClient::connect_with(mode, server(mode), quick()).await.unwrap()
}

#[tokio::test]
async fn a_server_that_never_answers_initialize_times_out_with_a_clear_error() {
    let started = Instant::now();
    let err = McpClient::connect_with("silent", server("silent"), quick()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    assert!(err.to_string().contains("did not answer `initialize`"), "{err}");
}

#[tokio::test]
async fn malformed_json_rpc_is_a_timeout_error_not_a_hang() {
    let client = connect("garbage").await;
    let started = Instant::now();
    let err = client.call("ok", json!({}), &RunContext::new()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test]
async fn a_server_that_crashes_mid_call_is_an_error_and_restarted_for_the_next_call() {
    let client = connect("crash").await;
    let first = client.process_id().await.unwrap();
    let err = client.call("ok", json!({}), &RunContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    // The next call finds the session closed, starts the server again, and reaches the new one
    // (which crashes in its turn: the point is that it was started).
    let _ = client.call("ok", json!({}), &RunContext::new()).await;
    let second = client.process_id().await.unwrap();
    assert_ne!(first, second, "a new process serves the next call");
}

#[tokio::test]
async fn a_result_over_the_size_cap_is_a_limit_error() {
    let client = connect("huge").await;
    let err = client.call("big", json!({}), &RunContext::new()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert!(err.to_string().contains("max_result_bytes"), "{err}");
    // The same session still answers.
    assert_eq!(client.call("ok", json!({}), &RunContext::new()).await.unwrap().content, "ok");
}

#[tokio::test]
async fn a_tool_with_an_invalid_schema_is_skipped_and_the_others_work() {
    let client = connect("bad-schema").await;
    let tools = client.tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name()).collect();
    assert_eq!(names, ["ok"]);
}

#[tokio::test]
async fn an_unknown_method_is_a_typed_error_and_the_registry_keeps_its_other_tools() {
    let client = connect("unknown").await;
    let err = client.tools().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tool, "{err}");
    assert!(err.to_string().contains("cannot list its tools"), "{err}");

    // A registry with a failing server's tool and a local one: the failure is the one call's.
    let garbage = connect("garbage").await;
    let remote = garbage.tools().await.unwrap().remove(0).with_prefix("garbage_");
    let registry = ToolRegistry::new().with(remote).unwrap().with(Calculator).unwrap();
    let ctx = RunContext::new();
    let call = |name: &str, arguments| ToolCall { id: "1".into(), name: name.into(), arguments };
    assert!(registry.call(&call("garbage_ok", json!({})), &ctx).await.is_err());
    let out = registry.call(&call("calculator", json!({"expression": "6 * 7"})), &ctx).await.unwrap();
    assert_eq!(out.content, "42");
}

#[tokio::test]
async fn a_cancelled_call_sends_the_protocols_cancellation_notification() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/misbehaving_mcp_server.py");
    let config = McpServerConfig::stdio("python3", [script, "record", &log.path().display().to_string()]);
    let client = McpClient::connect_with("record", config, quick()).await.unwrap();
    let ctx = RunContext::new();
    let cancel = ctx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let err = client.call("ok", json!({}), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    // The server received `notifications/cancelled` naming the call's request id.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let messages: Vec<serde_json::Value> = std::fs::read_to_string(log.path())
            .unwrap()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let call = messages.iter().find(|m| m["method"] == "tools/call");
        let cancelled = messages.iter().find(|m| m["method"] == "notifications/cancelled");
        if let (Some(call), Some(cancelled)) = (call, cancelled) {
            assert_eq!(cancelled["params"]["requestId"], call["id"], "{cancelled}");
            break;
        }
        assert!(Instant::now() < deadline, "no cancellation notification: {messages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_registry_follows_a_server_whose_tool_list_changes() {
    let client = connect("changing").await;
    let set = McpToolSet::new(vec![client], NamePrefix::OnClash, &["calculator".to_owned()]).await.unwrap();
    let registry = ToolRegistry::new().with(Calculator).unwrap().with_source(Arc::new(set.clone()));
    let names = |registry: &ToolRegistry| registry.specs().into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(&registry), ["calculator", "grow", "ok"]);

    // `grow` swaps itself for `grown` and announces it; the set lists the tools again by itself.
    let ctx = RunContext::new();
    let call = |name: &str| ToolCall { id: "1".into(), name: name.into(), arguments: json!({}) };
    assert_eq!(registry.call(&call("grow"), &ctx).await.unwrap().content, "grown");
    let deadline = Instant::now() + Duration::from_secs(10);
    while names(&registry) != ["calculator", "grown", "ok"] {
        assert!(Instant::now() < deadline, "the list was not refreshed: {:?}", names(&registry));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(registry.call(&call("grown"), &ctx).await.unwrap().content, "ok");
    let err = registry.call(&call("grow"), &ctx).await.unwrap_err();
    assert!(err.to_string().contains("no such tool; available tools: calculator, grown, ok"), "{err}");
    assert_eq!(
        set.tools().iter().map(|t| t.server().to_owned()).collect::<Vec<_>>(),
        ["changing", "changing"]
    );
}
