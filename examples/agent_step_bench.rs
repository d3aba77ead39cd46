//! Latency of one agent step on the local model, with and without prefix reuse. Writes JSON to the
//! path given (or prints it).
//!
//! ```text
//! cargo run --release --example agent_step_bench -- benches/results/agent-steps.json
//! ```
//!
//! An agent's prompt grows by one step at a time: the system prompt, the tools, the question and
//! every earlier step are the same from one model call to the next. With prefix reuse (the
//! default) the local model keeps their evaluated state and computes only the new tokens. The same
//! constrained ReAct agent answers the same questions (greedy decoding) once with reuse and once
//! without; every model call is timed.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use catena::agents::{AgentExecutor, ReActAgent};
use catena::core::{ChatModel, ChatRequest, ChatResponse, Result, RunContext, async_trait};
use catena::models::{LlamaChatModel, LlamaOptions, files};
use catena::tools::{Calculator, DateTimeTool, ToolRegistry};
use serde_json::json;

const QUESTIONS: [&str; 4] = [
    "What is 23 * 7?",
    "What is the square root of 1764?",
    "What day of the week is it today?",
    "How much is 15% of 240?",
];

/// A model wrapper that times every call and keeps its token counts.
struct Timed {
    inner: LlamaChatModel,
    calls: Mutex<Vec<(f64, u32, u32)>>,
}

#[async_trait]
impl ChatModel for Timed {
    async fn chat(&self, request: ChatRequest, ctx: &RunContext) -> Result<ChatResponse> {
        let started = Instant::now();
        let response = self.inner.chat(request, ctx).await?;
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if let Ok(mut calls) = self.calls.lock() {
            calls.push((ms, response.usage.prompt_tokens, response.usage.cached_prompt_tokens));
        }
        Ok(response)
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> Result<()> {
    let path = files::resolve("chat")?;
    let mut results = Vec::new();
    for reuse in [true, false] {
        let options = LlamaOptions { reuse_prefix: reuse, ..LlamaOptions::default() };
        let model = Arc::new(Timed {
            inner: LlamaChatModel::load(&path, options).await?,
            calls: Mutex::new(Vec::new()),
        });
        let tools = ToolRegistry::new().with(Calculator)?.with(DateTimeTool::new())?;
        let agent = ReActAgent::new(model.clone()).constrained(true).with_max_tokens(128);
        let executor = AgentExecutor::new(agent, tools).with_max_iterations(4);
        for question in QUESTIONS {
            executor.run(question, &RunContext::new()).await?;
        }
        let calls = model.calls.lock().map(|c| c.clone()).unwrap_or_default();
        // The first call of each run starts a new prompt; later ones extend it. Report both.
        let mut all: Vec<f64> = calls.iter().map(|c| c.0).collect();
        all.sort_by(f64::total_cmp);
        let prompt: u32 = calls.iter().map(|c| c.1).sum();
        let cached: u32 = calls.iter().map(|c| c.2).sum();
        let row = json!({
            "reuse_prefix": reuse,
            "model_calls": calls.len(),
            "step_ms_mean": all.iter().sum::<f64>() / all.len().max(1) as f64,
            "step_ms_p50": percentile(&all, 0.5),
            "step_ms_p90": percentile(&all, 0.9),
            "prompt_tokens": prompt,
            "cached_prompt_tokens": cached,
        });
        eprintln!("{row}");
        results.push(row);
    }
    let out = json!({"questions": QUESTIONS.len(), "runs": results});
    match std::env::args().nth(1) {
        Some(file) => std::fs::write(&file, serde_json::to_string_pretty(&out).unwrap_or_default())
            .map_err(|e| catena::core::Error::io(file, e))?,
        None => println!("{out}"),
    }
    Ok(())
}
