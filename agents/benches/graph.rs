//! State-graph overhead and checkpoint size, with trivial nodes (no model), so what is measured is
//! the runtime: scheduling a super-step, running its task, applying the update, routing, and
//! saving the checkpoint. `benches/reference/langgraph_bench.py` builds the same graphs with
//! LangGraph (and its in-memory and SQLite checkpointers); benches/run.sh runs both.
//!
//! Output, one JSON line each:
//! - `{"impl", "bench": "step", "checkpointer", "runs", "steps_per_run", "us_per_step"}`: a
//!   10-node chain run to its end, per super-step, without a checkpointer, in memory, SQLite on
//!   disk;
//! - `{"impl", "bench": "bytes", "turns", "bytes"}`: a conversation of one node that appends a
//!   reply to a message list, on SQLite, checkpoint bytes stored after 50, 100, 150, 200 turns.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cast_precision_loss, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use catena_agents::graph::{
    Checkpointer, CompiledGraph, END, GraphState, MemoryCheckpointer, NodeContext, START, SqliteCheckpointer,
    StateGraph, Thread,
};
use catena_core::RunContext;
use serde::{Deserialize, Serialize};

const NODES: usize = 10;

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Counter {
    count: u64,
}

fn chain() -> CompiledGraph<Counter> {
    let mut graph = StateGraph::<Counter>::new();
    for i in 0..NODES {
        graph = graph.node(format!("n{i}"), |state: Counter, _: NodeContext| async move {
            Ok(CounterUpdate::default().count(state.count + 1))
        });
        graph = graph.edge(if i == 0 { START.to_owned() } else { format!("n{}", i - 1) }, format!("n{i}"));
    }
    graph.edge(format!("n{}", NODES - 1), END).compile().unwrap()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Chat {
    #[state(append)]
    messages: Vec<String>,
}

async fn steps(name: &str, graph: &CompiledGraph<Counter>, runs: usize) {
    let ctx = RunContext::new();
    // Warm up (and create the tables) before timing.
    graph.invoke(&Thread::new("warm"), CounterUpdate::default(), &ctx).await.unwrap();
    let start = Instant::now();
    for run in 0..runs {
        let out =
            graph.invoke(&Thread::new(format!("t{run}")), CounterUpdate::default(), &ctx).await.unwrap();
        assert_eq!(out.state().count, NODES as u64);
    }
    let per_step = start.elapsed().as_secs_f64() * 1e6 / (runs * NODES) as f64;
    println!(
        "{}",
        serde_json::json!({"impl": "catena", "bench": "step", "checkpointer": name, "runs": runs, "steps_per_run": NODES, "us_per_step": per_step})
    );
}

fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        steps("none", &chain(), runs).await;
        steps("memory", &chain().with_checkpointer(Arc::new(MemoryCheckpointer::new())), runs).await;
        let sqlite = SqliteCheckpointer::open(dir.path().join("steps.db")).await.unwrap();
        steps("sqlite", &chain().with_checkpointer(Arc::new(sqlite)), runs).await;

        let saver = Arc::new(SqliteCheckpointer::open(dir.path().join("chat.db")).await.unwrap());
        let graph = StateGraph::<Chat>::new()
            .node("reply", |chat: Chat, _: NodeContext| async move {
                Ok(ChatUpdate::default()
                    .messages(vec![format!("reply {} to the user's message", chat.messages.len())]))
            })
            .edge(START, "reply")
            .edge("reply", END)
            .compile()
            .unwrap()
            .with_checkpointer(Arc::clone(&saver) as Arc<dyn Checkpointer>);
        let (thread, ctx) = (Thread::new("chat"), RunContext::new());
        for turn in 1..=200 {
            let message = format!("user message number {turn}, a sentence of ordinary length");
            graph.invoke(&thread, ChatUpdate::default().messages(vec![message]), &ctx).await.unwrap();
            if turn % 50 == 0 {
                let bytes = saver.stored_bytes("chat").await.unwrap();
                println!(
                    "{}",
                    serde_json::json!({"impl": "catena", "bench": "bytes", "turns": turn, "bytes": bytes})
                );
            }
        }
    });
}
