//! The Model Context Protocol's own conformance suite (npm `@modelcontextprotocol/conformance`,
//! pinned in scripts/mcp/package-lock.json, run on the Node.js 22 that scripts/fetch-data.sh
//! fetches) against catena's MCP server over streamable HTTP.
//!
//! The suite tests a server through fixtures every SDK implements under fixed names
//! (`test_simple_text`, `test://static-text`, `test_prompt_with_arguments`...). Here they are
//! written the way any catena application would write its own: tools are catena [`Tool`]s in a
//! [`ToolRegistry`], logging and progress are [`Event`]s on the run context, sampling and
//! elicitation go through the [`McpClientPeer`] in it, results with images are built with
//! [`tool_output`], resources are [`StaticResources`], prompts are [`ServedPrompt`]s; all
//! served by [`McpToolServer`] under `catena serve`'s router. Every scenario of the protocol
//! revision the server negotiates (2025-11-25) must pass, none skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic, missing_docs)]
#![cfg(feature = "mcp")]

use std::path::PathBuf;
use std::time::Duration;

use catena::core::{Error, Event, LogLevel, Message, Result, RunContext, Tool, ToolOutput, async_trait};
use catena::tools::ToolRegistry;
use catena::tools::mcp::{
    McpClientPeer, McpContent, McpPromptMessage, McpToolServer, ResourceBody, ResourceContent, ServedPrompt,
    StaticResources, tool_output,
};
use futures::future::BoxFuture;
use serde_json::{Value, json};

/// A 1×1 PNG and an empty WAV: the smallest real media for the content scenarios.
const PNG: [u8; 70] = [
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 31,
    21, 196, 137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 252, 255, 159, 161, 30, 0, 7, 130, 2, 127, 61,
    200, 72, 239, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];
const WAV: [u8; 44] = [
    82, 73, 70, 70, 36, 0, 0, 0, 87, 65, 86, 69, 102, 109, 116, 32, 16, 0, 0, 0, 1, 0, 1, 0, 68, 172, 0, 0,
    136, 88, 1, 0, 2, 0, 16, 0, 100, 97, 116, 97, 0, 0, 0, 0,
];

type Run = fn(Value, RunContext) -> BoxFuture<'static, Result<ToolOutput>>;

/// One fixture tool: a name, a schema and an async function.
struct Fixture {
    name: &'static str,
    schema: Value,
    run: Run,
}

#[async_trait]
impl Tool for Fixture {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "A fixture of the MCP conformance suite."
    }
    fn parameters(&self) -> Value {
        self.schema.clone()
    }
    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        (self.run)(arguments, ctx.clone()).await
    }
}

fn no_args() -> Value {
    json!({"type": "object", "properties": {}})
}

fn one_string(name: &str) -> Value {
    json!({"type": "object", "properties": {name: {"type": "string"}}, "required": [name]})
}

fn client(ctx: &RunContext) -> Result<McpClientPeer> {
    ctx.extension::<McpClientPeer>().cloned().ok_or_else(|| Error::tool("fixture", "not called over MCP"))
}

async fn elicit(ctx: &RunContext, message: &str, schema: Value) -> Result<ToolOutput> {
    let answer = client(ctx)?.elicit(message, schema).await?;
    Ok(ToolOutput::text(format!("User response: action={:?}, content={:?}", answer.action, answer.content)))
}

fn fixture_tools() -> ToolRegistry {
    let fixtures: Vec<Fixture> = vec![
        Fixture {
            name: "test_simple_text",
            schema: no_args(),
            run: |_, _| {
                Box::pin(async { Ok(ToolOutput::text("This is a simple text response for testing.")) })
            },
        },
        Fixture {
            name: "test_image_content",
            schema: no_args(),
            run: |_, _| Box::pin(async { Ok(tool_output([McpContent::image(PNG, "image/png")])) }),
        },
        Fixture {
            name: "test_audio_content",
            schema: no_args(),
            run: |_, _| Box::pin(async { Ok(tool_output([McpContent::audio(WAV, "audio/wav")])) }),
        },
        Fixture {
            name: "test_embedded_resource",
            schema: no_args(),
            run: |_, _| {
                Box::pin(async {
                    let resource = ResourceContent::text(
                        "test://embedded-resource",
                        "text/plain",
                        "This is an embedded resource content.",
                    );
                    Ok(tool_output([McpContent::Resource(resource)]))
                })
            },
        },
        Fixture {
            name: "test_multiple_content_types",
            schema: no_args(),
            run: |_, _| {
                Box::pin(async {
                    let resource = ResourceContent::text(
                        "test://mixed-content-resource",
                        "application/json",
                        r#"{"test":"data","value":123}"#,
                    );
                    Ok(tool_output([
                        McpContent::text("Multiple content types test:"),
                        McpContent::image(PNG, "image/png"),
                        McpContent::Resource(resource),
                    ]))
                })
            },
        },
        Fixture {
            name: "test_tool_with_logging",
            schema: no_args(),
            run: |_, ctx| {
                Box::pin(async move {
                    for line in ["Tool execution started", "Tool processing data", "Tool execution completed"]
                    {
                        ctx.emit(Event::Log { level: LogLevel::Info, message: line.into() });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(ToolOutput::text("Logging test completed"))
                })
            },
        },
        Fixture {
            name: "test_error_handling",
            schema: no_args(),
            run: |_, _| {
                Box::pin(async {
                    Err(Error::tool(
                        "test_error_handling",
                        "This tool intentionally returns an error for testing",
                    ))
                })
            },
        },
        Fixture {
            name: "test_tool_with_progress",
            schema: no_args(),
            run: |_, ctx| {
                Box::pin(async move {
                    for done in [0, 50, 100] {
                        ctx.emit(Event::Progress { task: "working".into(), done, total: Some(100) });
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Ok(ToolOutput::text("Progress test completed"))
                })
            },
        },
        Fixture {
            name: "test_sampling",
            schema: one_string("prompt"),
            run: |args, ctx| {
                Box::pin(async move {
                    let prompt = args["prompt"].as_str().unwrap_or_default().to_owned();
                    let answer = client(&ctx)?.sample(&[Message::user(prompt)], 100).await?;
                    Ok(ToolOutput::text(format!("LLM response: {answer}")))
                })
            },
        },
        Fixture {
            name: "test_elicitation",
            schema: one_string("message"),
            run: |args, ctx| {
                Box::pin(async move {
                    let schema = json!({"type": "object", "properties": {
                        "username": {"type": "string", "description": "User's response"},
                        "email": {"type": "string", "description": "User's email address"}},
                        "required": ["username", "email"]});
                    elicit(&ctx, args["message"].as_str().unwrap_or_default(), schema).await
                })
            },
        },
        Fixture {
            name: "test_elicitation_sep1034_defaults",
            schema: no_args(),
            run: |_, ctx| {
                Box::pin(async move {
                    let schema = json!({"type": "object", "properties": {
                        "name": {"type": "string", "default": "John Doe"},
                        "age": {"type": "integer", "default": 30},
                        "score": {"type": "number", "default": 95.5},
                        "status": {"type": "string", "enum": ["active", "inactive", "pending"], "default": "active"},
                        "verified": {"type": "boolean", "default": true}}});
                    elicit(&ctx, "Please check these values", schema).await
                })
            },
        },
        Fixture {
            name: "test_elicitation_sep1330_enums",
            schema: no_args(),
            run: |_, ctx| {
                Box::pin(async move {
                    let schema = json!({"type": "object", "properties": {
                        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                        "titledSingle": {"type": "string", "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"}]},
                        "legacyEnum": {"type": "string", "enum": ["opt1", "opt2"], "enumNames": ["Option One", "Option Two"]},
                        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2"]}},
                        "titledMulti": {"type": "array", "items": {"anyOf": [
                            {"const": "value1", "title": "First Choice"},
                            {"const": "value2", "title": "Second Choice"}]}}}});
                    elicit(&ctx, "Pick some options", schema).await
                })
            },
        },
        Fixture {
            name: "json_schema_2020_12_tool",
            schema: json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {"address": {"type": "object", "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
                "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
                "additionalProperties": false
            }),
            run: |args, _| {
                Box::pin(async move {
                    Ok(ToolOutput::text(format!("Hello, {}!", args["name"].as_str().unwrap_or("world"))))
                })
            },
        },
        Fixture {
            name: "test_reconnection",
            schema: no_args(),
            run: |_, _| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(ToolOutput::text("Reconnection test completed"))
                })
            },
        },
    ];
    fixtures.into_iter().fold(ToolRegistry::new(), |tools, fixture| tools.with(fixture).unwrap())
}

fn fixture_server() -> McpToolServer {
    let resources = StaticResources::new()
        .text(
            "test://static-text",
            "Static Text Resource",
            "text/plain",
            "This is the content of the static text resource.",
        )
        .blob("test://static-binary", "Static Binary Resource", "image/png", PNG)
        .text("test://watched-resource", "Watched Resource", "text/plain", "Watch me change.")
        .template("test://template/{id}/data", "Dynamic Resource", "application/json", |vars| {
            Ok(ResourceBody::Text(json!({"id": vars["id"], "templateTest": true}).to_string()))
        });
    let simple = ServedPrompt::new("test_simple_prompt", "A prompt with no arguments.", |_| {
        Ok(vec![McpPromptMessage::user(McpContent::text("This is a simple test prompt."))])
    });
    let with_arguments =
        ServedPrompt::new("test_prompt_with_arguments", "A prompt with arguments.", |args| {
            let arg2 = args.get("arg2").map_or("", String::as_str);
            let text = format!("Prompt with arguments: arg1='{}', arg2='{arg2}'", args["arg1"]);
            Ok(vec![McpPromptMessage::user(McpContent::text(text))])
        })
        .with_argument("arg1", Some("First argument"), true)
        .with_argument("arg2", Some("Second argument"), false)
        .with_completions("arg1", ["paris", "park", "party", "test"]);
    let embedded =
        ServedPrompt::new("test_prompt_with_embedded_resource", "A prompt with a resource.", |args| {
            let uri = args.get("resourceUri").map_or("test://static-text", String::as_str);
            Ok(vec![
                McpPromptMessage::user(McpContent::text("Here is a resource:")),
                McpPromptMessage::user(McpContent::Resource(ResourceContent::text(
                    uri,
                    "text/plain",
                    "Resource content",
                ))),
            ])
        })
        .with_argument("resourceUri", Some("The resource to embed"), false);
    let image = ServedPrompt::new("test_prompt_with_image", "A prompt with an image.", |_| {
        Ok(vec![
            McpPromptMessage::user(McpContent::text("Here is an image:")),
            McpPromptMessage::user(McpContent::image(PNG, "image/png")),
        ])
    });
    McpToolServer::new(fixture_tools())
        .with_name("catena-conformance")
        .with_resources(resources)
        .with_prompt(simple)
        .with_prompt(with_arguments)
        .with_prompt(embedded)
        .with_prompt(image)
}

fn data_dir() -> PathBuf {
    std::env::var_os("CATENA_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/catena/data"))
}

/// Node.js 22 and the suite's entry point, or `None` (a skip) when they were not fetched.
fn suite() -> Option<(PathBuf, PathBuf)> {
    let data = data_dir();
    let node = data.join("node22/bin/node");
    let suite = data.join("mcp/node_modules/@modelcontextprotocol/conformance/dist/index.js");
    if node.exists() && suite.exists() {
        return Some((node, suite));
    }
    assert!(
        std::env::var_os("CATENA_REQUIRE_DATA").is_none(),
        "the conformance suite or Node.js 22 is missing under {}; run scripts/fetch-data.sh",
        data.display()
    );
    eprintln!("conformance suite not fetched (scripts/fetch-data.sh): test skipped");
    None
}

/// What one run of the suite reported.
struct Report {
    scenarios: std::collections::BTreeSet<String>,
    passed: usize,
    /// Checks that failed or warned, as `id: message`.
    problems: Vec<String>,
    log: String,
    success: bool,
}

/// Runs the suite with `args`, and reads every check of every scenario from its result files.
async fn run_suite(args: &[&str]) -> Report {
    let (node, suite) = suite().unwrap();
    let results = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&node)
        .arg(&suite)
        .args(args)
        .arg("-o")
        .arg(results.path())
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(240), output).await.expect("the suite hung").unwrap();
    let log = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let mut report = Report {
        scenarios: Default::default(),
        passed: 0,
        problems: Vec::new(),
        log,
        success: output.status.success(),
    };
    for entry in walk(results.path()) {
        let Ok(checks) = serde_json::from_str::<Value>(&std::fs::read_to_string(&entry).unwrap()) else {
            continue;
        };
        let Some(checks) = checks.as_array() else { continue };
        report.scenarios.insert(entry.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned());
        for check in checks {
            match check["status"].as_str() {
                Some("SUCCESS") => report.passed += 1,
                Some("FAILURE" | "WARNING") => {
                    let id = check["id"].as_str().unwrap_or_default();
                    report.problems.push(format!("{id}: {}", check["errorMessage"]));
                }
                _ => {}
            }
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_against_catenas_server() {
    if suite().is_none() {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://localhost:{}/mcp", listener.local_addr().unwrap().port());
    let server = catena::serve::Server::new().with_mcp(fixture_server());
    tokio::spawn(server.serve(listener, std::future::pending()));

    // Every scenario of the revision, the pending ones included.
    let report =
        run_suite(&["server", "--url", &url, "--spec-version", "2025-11-25", "--suite", "all"]).await;
    eprintln!("{} checks passed in {} scenarios", report.passed, report.scenarios.len());
    assert!(
        report.problems.is_empty(),
        "conformance problems:\n{}\n\n{}",
        report.problems.join("\n"),
        report.log
    );
    assert!(report.success, "the suite failed:\n{}", report.log);
    // 2025-11-25 has 32 server scenarios; none may be missing from the results.
    assert_eq!(report.scenarios.len(), 32, "scenarios run: {:?}\n{}", report.scenarios, report.log);
}

/// catena's client, as the `catena mcp` commands drive it, against the suite's test servers:
/// the handshake, a tool call, and an SSE stream the server closes mid-call (the client must
/// wait the `retry` time and resume with `Last-Event-ID`). The suite's other client scenarios
/// (OAuth flows, elicitation defaults) test features catena's client does not offer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catenas_client_passes_the_client_scenarios_it_offers() {
    if suite().is_none() {
        return;
    }
    let catena = env!("CARGO_BIN_EXE_catena");
    for (scenario, command) in [
        ("initialize", format!("{catena} mcp tools")),
        ("tools_call", format!(r#"{catena} mcp call add_numbers --args '{{"a":2,"b":3}}'"#)),
        ("sse-retry", format!("{catena} mcp call test_reconnection")),
    ] {
        let report = run_suite(&["client", "--command", &command, "--scenario", scenario]).await;
        // The reconnection delay is timed; on a loaded machine "slightly late" is a warning,
        // not a fault of the client.
        let problems: Vec<&String> =
            report.problems.iter().filter(|p| !p.starts_with("client-sse-retry-timing")).collect();
        assert!(problems.is_empty(), "{scenario}: {problems:?}\n{}", report.log);
        assert!(report.passed > 0, "{scenario}: nothing passed\n{}", report.log);
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files
}
