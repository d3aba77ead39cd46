//! What tracing costs an agent run: the agent-executor benchmark's loop (a scripted model, ten
//! tool calls and an answer per run, so the loop itself is what is timed) with no subscriber, and
//! with every GenAI span exported over OTLP/HTTP to a collector, or kept in a local trace store.
//!
//! ```text
//! cargo run --release --example trace_overhead -- off 300
//! cargo run --release --example trace_overhead -- on 300 http://127.0.0.1:6006/v1/traces
//! cargo run --release --features sqlite --example trace_overhead -- store 300
//! ```
//!
//! One mode per process (the subscriber is process-wide); benches/run.sh alternates them.
//! Prints `{"bench": "trace-overhead", "mode", "runs", "us_per_step", "spans_per_run"}`.

use std::sync::Arc;
use std::time::Instant;

use catena::agents::{AgentExecutor, ToolCallingAgent};
use catena::core::testing::{ScriptedChatModel, ScriptedReply};
use catena::core::{Result, RunContext, ToolCall, ToolOutput, TypedTool, async_trait};
use catena::tools::ToolRegistry;
use tracing_subscriber::layer::SubscriberExt as _;

/// Tool calls per run; the run's last step is the answer.
const CALLS: usize = 10;

struct Echo;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to echo.
    text: String,
}

#[async_trait]
impl TypedTool for Echo {
    type Args = EchoArgs;
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Echoes its text.";
    async fn run(&self, args: EchoArgs, _: &RunContext) -> Result<ToolOutput> {
        Ok(ToolOutput::text(args.text))
    }
}

fn script() -> ScriptedChatModel {
    let mut replies: Vec<ScriptedReply> = (0..CALLS)
        .map(|i| {
            ScriptedReply::ToolCalls(vec![ToolCall {
                id: format!("call_{i}"),
                name: "echo".into(),
                arguments: serde_json::json!({"text": format!("step {i}")}),
            }])
        })
        .collect();
    replies.push(ScriptedReply::Text("Done.".into()));
    ScriptedChatModel::from_replies(replies)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("off", String::as_str).to_owned();
    let runs: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(300);
    // Spans: one agent run, its 11 model calls and its 10 tool calls.
    let telemetry = if mode == "on" {
        let endpoint = args.get(2).map(String::as_str);
        let (layer, telemetry) = catena::telemetry::otlp_layer(endpoint)?;
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .map_err(|e| catena::core::Error::invalid_input(e.to_string()))?;
        Some(telemetry)
    } else {
        None
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    // `store`: every span into a local trace store (what `catena serve --console` keeps) instead.
    #[cfg(feature = "sqlite")]
    let (store, _dir) = if mode == "store" {
        let dir = tempfile::tempdir().map_err(|e| catena::core::Error::io("a temporary folder", e))?;
        let store = rt.block_on(catena::traces::TraceStore::open(
            dir.path().join("traces.db"),
            catena::traces::Retention::default(),
        ))?;
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(store.layer()))
            .map_err(|e| catena::core::Error::invalid_input(e.to_string()))?;
        (Some(store), Some(dir))
    } else {
        (None, None)
    };
    let tools = ToolRegistry::new().with(Echo)?;
    let executors: Vec<AgentExecutor> = (0..runs)
        .map(|_| AgentExecutor::new(ToolCallingAgent::new(Arc::new(script())), tools.clone()))
        .collect();
    let start = Instant::now();
    rt.block_on(async {
        for executor in &executors {
            let out = executor.run("Echo ten times.", &RunContext::new()).await?;
            assert_eq!(out.steps.len(), CALLS);
        }
        Ok::<_, catena::core::Error>(())
    })?;
    let elapsed = start.elapsed();
    // The export's own time (batches sent on the SDK's thread) is not the run's; flushing at the
    // end makes sure every span was actually delivered.
    if let Some(telemetry) = &telemetry {
        telemetry.flush()?;
    }
    #[cfg(feature = "sqlite")]
    if let Some(store) = &store {
        rt.block_on(store.flush())?;
        assert_eq!(store.dropped(), 0, "the store dropped spans");
    }
    let steps = runs * (CALLS + 1);
    let line = serde_json::json!({
        "bench": "trace-overhead", "mode": mode, "runs": runs,
        "us_per_step": elapsed.as_secs_f64() * 1e6 / steps as f64,
        "spans_per_run": 1 + 2 * CALLS + 1,
    });
    println!("{line}");
    Ok(())
}
