//! Graph checkpoints, decoded and resumed: what a checkpointer hands back after its store was
//! damaged, edited or written by another version. The input is a thread as JSON (its checkpoints
//! and pending writes); a small graph with an interrupt reads its state and history, resumes it
//! and runs it on. Properties: every call returns (a value or a typed error, under the engine's
//! time limit even when parent links loop), and reading the same thread twice gives the same
//! answer.

use std::sync::Arc;

use catena_agents::graph::{
    Checkpoint, Checkpointer, END, GraphState, MemoryCheckpointer, NodeContext, PendingWrite, Resume, START,
    StateGraph, Thread,
};
use catena_core::{Result, RunContext};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
struct Order {
    item: String,
    #[state(append)]
    log: Vec<String>,
    approved: bool,
}

async fn draft(order: Order, _ctx: NodeContext) -> Result<OrderUpdate> {
    Ok(OrderUpdate::default().log(vec![format!("drafted {}", order.item)]))
}

async fn approve(_order: Order, ctx: NodeContext) -> Result<OrderUpdate> {
    let yes: bool = ctx.interrupt(&"approve?")?;
    Ok(OrderUpdate::default().approved(yes).log(vec![format!("approved: {yes}")]))
}

/// Draft, then pause for approval.
fn graph() -> catena_agents::graph::CompiledGraph<Order> {
    StateGraph::<Order>::new()
        .node("draft", draft)
        .node("approve", approve)
        .edge(START, "draft")
        .edge("draft", "approve")
        .edge("approve", END)
        .compile()
        .expect("the fuzz graph compiles")
}

/// A thread as a damaged store might hand it back.
#[derive(Deserialize)]
struct StoredThread {
    checkpoints: Vec<Checkpoint>,
    #[serde(default)]
    pending: Vec<(u64, PendingWrite)>,
}

/// What reading a thread gave, comparable across two reads.
fn read(result: &Result<impl std::fmt::Debug>) -> String {
    match result {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error: {e}"),
    }
}

pub(crate) fn checkpoints(data: &[u8]) {
    let Ok(stored) = serde_json::from_slice::<StoredThread>(data) else { return };
    crate::runtime().block_on(async {
        let saver = Arc::new(MemoryCheckpointer::new());
        for checkpoint in &stored.checkpoints {
            if saver.put("t", checkpoint).await.is_err() {
                return;
            }
        }
        for (at, write) in &stored.pending {
            if saver.put_pending("t", *at, write).await.is_err() {
                return;
            }
        }
        let graph = graph().with_checkpointer(saver).with_step_limit(8);
        let (thread, ctx) = (Thread::new("t"), RunContext::new());
        let state = read(&graph.state(&thread).await.map(|s| s.map(|s| s.state)));
        let again = read(&graph.state(&thread).await.map(|s| s.map(|s| s.state)));
        assert_eq!(state, again, "the same thread read twice differently");
        let history = read(&graph.history(&thread).await.map(|h| h.len()));
        let history_again = read(&graph.history(&thread).await.map(|h| h.len()));
        assert_eq!(history, history_again, "the same history read twice differently");
        if let Ok(resume) = Resume::with(&true) {
            let _ = graph.resume(&thread, resume, &ctx).await;
        }
        let _ = graph.invoke(&thread, OrderUpdate::default().item("a kettle"), &ctx).await;
        let _ = graph.state(&thread).await;
    });
}

/// A seed: the thread a normal run leaves paused at the approval (and, with `resumed`, the
/// thread after the approval), as the target reads it.
#[cfg(test)]
fn seed_thread(resumed: bool) -> String {
    crate::runtime().block_on(async {
        let saver = Arc::new(MemoryCheckpointer::new());
        let graph = graph().with_checkpointer(saver.clone());
        let (thread, ctx) = (Thread::new("t"), RunContext::new());
        graph.invoke(&thread, OrderUpdate::default().item("a kettle"), &ctx).await.expect("a run");
        if resumed {
            graph.resume(&thread, Resume::with(&true).expect("a value"), &ctx).await.expect("resumed");
        }
        let checkpoints = saver.checkpoints("t").await.expect("checkpoints");
        let mut pending = Vec::new();
        for c in &checkpoints {
            for write in saver.pending("t", c.id).await.expect("pending writes") {
                pending.push((c.id, write));
            }
        }
        serde_json::json!({"checkpoints": checkpoints, "pending": pending}).to_string()
    })
}

#[cfg(test)]
mod tests {
    /// The seeds in `fuzz/corpus/graph_checkpoints/` are what this prints
    /// (`cargo test -p catena-fuzz seeds -- --nocapture`); the target reads both back.
    #[test]
    fn the_seeds_are_threads_of_a_normal_run_and_read_back() {
        for resumed in [false, true] {
            let seed = super::seed_thread(resumed);
            assert!(seed.contains("\"checkpoints\""), "{seed}");
            println!("{seed}");
            super::checkpoints(seed.as_bytes());
        }
    }
}
