//! Per-step framework overhead of the agent executor, with scripted models (no inference), so
//! what is measured is the loop itself: building the request from the steps, parsing the reply,
//! validating arguments against the schema, dispatching the tool, recording the step, emitting
//! events. `benches/reference/langchain_agent_bench.py` runs the same scripts through LangChain's
//! `AgentExecutor` in CPython; benches/run.sh runs both.
//!
//! Output: one JSON line per agent: `{"impl", "agent", "runs", "steps_per_run", "us_per_step"}`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use catena_agents::{AgentExecutor, ReActAgent, ToolCallingAgent};
use catena_core::testing::{ScriptedChatModel, ScriptedReply};
use catena_core::{Event, Result, RunContext, ToolCall, ToolOutput, TypedTool, async_trait};
use catena_tools::ToolRegistry;

/// The step count of one run: this many tool calls, then the final answer.
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

fn tool_calling_script() -> ScriptedChatModel {
    let mut replies: Vec<ScriptedReply> = (0..CALLS)
        .map(|i| {
            ScriptedReply::ToolCalls(vec![ToolCall {
                id: format!("call_{i}"),
                name: "echo".into(),
                arguments: serde_json::json!({ "text": format!("step {i}") }),
            }])
        })
        .collect();
    replies.push(ScriptedReply::Text("done".into()));
    ScriptedChatModel::from_replies(replies)
}

fn react_script() -> ScriptedChatModel {
    let mut replies: Vec<String> = (0..CALLS)
        .map(|i| format!("Thought: I should echo.\nAction: echo\nAction Input: {{\"text\": \"step {i}\"}}"))
        .collect();
    replies.push("Thought: I now know the final answer\nFinal Answer: done".into());
    ScriptedChatModel::new(replies)
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let tools = ToolRegistry::new().with(Echo).unwrap();
    for agent in ["tool_calling", "react"] {
        // Models are built before the clock starts: each run needs a fresh script.
        let executors: Vec<AgentExecutor> = (0..runs)
            .map(|_| match agent {
                "react" => AgentExecutor::new(ReActAgent::new(Arc::new(react_script())), tools.clone()),
                _ => {
                    AgentExecutor::new(ToolCallingAgent::new(Arc::new(tool_calling_script())), tools.clone())
                }
            })
            .collect();
        // An event sink that does something with every event, as a UI would.
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let ctx = RunContext::new().with_events(move |_: Event| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let start = Instant::now();
        rt.block_on(async {
            for executor in &executors {
                let out = executor.run("Echo ten times.", &ctx).await.unwrap();
                assert_eq!(out.steps.len(), CALLS);
            }
        });
        let elapsed = start.elapsed();
        let steps = runs * (CALLS + 1);
        println!(
            "{}",
            serde_json::json!({
                "impl": "catena",
                "agent": agent,
                "runs": runs,
                "steps_per_run": CALLS + 1,
                "us_per_step": elapsed.as_secs_f64() * 1e6 / steps as f64,
                "events": seen.load(std::sync::atomic::Ordering::Relaxed),
            })
        );
    }
}
