//! MCP client and server costs. benches/run.sh runs both parts beside the Python MCP SDK
//! (scripts/mcp/py_client.py) on the same servers.
//!
//! - `roundtrip CALLS TOOL ARGUMENTS COMMAND [ARGS...]`: catena's client starts COMMAND as a
//!   stdio MCP server and calls TOOL with the JSON object ARGUMENTS, CALLS times one after the
//!   other (after 20 warm-up calls). Prints
//!   `{"impl": "catena", "bench": "mcp-roundtrip", "server", "tool", "calls", "us_per_call",
//!   "client_cpu_us_per_call"}` (the client process's own CPU time, the server's excluded).
//!   COMMAND `self` is this program's `serve`.
//!   With `MCP_BENCH_CURRENT_THREAD=1` the client runs on tokio's current-thread runtime.
//! - `serve`: catena's server (the calculator) on stdio, built with optimizations: the cheapest
//!   server at hand, so that a round trip to it is mostly the client's cost.
//! - `exe`: prints this program's path (for the Python client to start `serve`).
//! - `http CLIENTS CALLS`: a registry with the calculator served over streamable HTTP (the
//!   transport of `catena serve --mcp`) to CLIENTS catena clients at once, each making CALLS
//!   calls and checking every answer. Prints
//!   `{"impl": "catena", "bench": "mcp-http", "clients", "calls", "errors", "calls_per_s"}`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use std::sync::Arc;
use std::time::Instant;

use catena_core::RunContext;
use catena_tools::mcp::{McpClient, McpServerConfig, McpToolServer};
use catena_tools::{Calculator, ToolRegistry};
use serde_json::{Value, json};

async fn roundtrip(args: &[String]) {
    let [calls, tool, arguments, command, rest @ ..] = args else {
        panic!("usage: roundtrip CALLS TOOL ARGUMENTS COMMAND [ARGS...]")
    };
    let calls: usize = calls.parse().unwrap();
    let arguments: Value = serde_json::from_str(arguments).unwrap();
    let config = if command == "self" {
        McpServerConfig::stdio(std::env::current_exe().unwrap().display().to_string(), ["serve"])
    } else {
        McpServerConfig::stdio(command.clone(), rest.to_vec())
    };
    let client = McpClient::connect("bench", config).await.unwrap();
    let ctx = RunContext::new();
    for _ in 0..20 {
        client.call(tool, arguments.clone(), &ctx).await.unwrap();
    }
    let (start, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..calls {
        client.call(tool, arguments.clone(), &ctx).await.unwrap();
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / calls as f64;
    let cpu_us = (cpu_seconds() - cpu) * 1e6 / calls as f64;
    let server = if command == "self" {
        "catena-release".to_owned()
    } else {
        std::path::Path::new(command).file_name().unwrap().to_string_lossy().into_owned()
    };
    let line = json!({"impl": "catena", "bench": "mcp-roundtrip", "server": server, "tool": tool,
                      "runtime": runtime_flavor(), "calls": calls, "us_per_call": us,
                      "client_cpu_us_per_call": cpu_us});
    println!("{line}");
}

fn runtime_flavor() -> &'static str {
    match tokio::runtime::Handle::current().runtime_flavor() {
        tokio::runtime::RuntimeFlavor::CurrentThread => "current-thread",
        _ => "multi-thread",
    }
}

/// CPU time this process has used (user and system, its threads but not its children: the
/// client's own cost, without the server's), from /proc/self/stat in clock ticks of 10 ms.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

async fn http(args: &[String]) {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let clients: usize = args.first().map_or(32, |n| n.parse().unwrap());
    let calls: usize = args.get(1).map_or(100, |n| n.parse().unwrap());
    let server = McpToolServer::new(ToolRegistry::new().with(Calculator).unwrap());
    let service = StreamableHttpService::new(
        move || Ok(server.session()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(
        async move { axum::serve(listener, axum::Router::new().nest_service("/mcp", service)).await },
    );

    let mut sessions = Vec::new();
    for i in 0..clients {
        sessions.push(McpClient::connect(format!("c{i}"), McpServerConfig::http(url.clone())).await.unwrap());
    }
    let start = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                let ctx = RunContext::new();
                let mut errors = 0_usize;
                for i in 0..calls {
                    let expression = format!("{i} * 2");
                    match client.call("calculator", json!({ "expression": expression }), &ctx).await {
                        Ok(out) if out.content == (i * 2).to_string() => {}
                        _ => errors += 1,
                    }
                }
                errors
            })
        })
        .collect();
    let mut errors = 0;
    for task in tasks {
        errors += task.await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let line = json!({"impl": "catena", "bench": "mcp-http", "clients": clients, "calls": clients * calls,
                      "errors": errors, "calls_per_s": (clients * calls) as f64 / seconds});
    println!("{line}");
}

fn main() {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    // The client may run on a current-thread runtime (MCP_BENCH_CURRENT_THREAD=1); the server
    // always runs on the multi-thread one, as `catena mcp serve` does.
    let current_thread = std::env::var("MCP_BENCH_CURRENT_THREAD").is_ok_and(|v| v == "1")
        && args.first().is_some_and(|mode| mode == "roundtrip");
    let runtime = if current_thread {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
    };
    match args.first().map(String::as_str) {
        Some("roundtrip") => runtime.block_on(roundtrip(&args[1..])),
        Some("http") => runtime.block_on(http(&args[1..])),
        Some("serve") => runtime
            .block_on(McpToolServer::new(ToolRegistry::new().with(Calculator).unwrap()).serve_stdio())
            .unwrap(),
        Some("exe") => println!("{}", std::env::current_exe().unwrap().display()),
        _ => eprintln!(
            "usage: mcp (roundtrip CALLS TOOL ARGUMENTS COMMAND [ARGS...] | serve | exe | http CLIENTS CALLS)"
        ),
    }
}
