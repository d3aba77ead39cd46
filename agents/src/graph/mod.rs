//! State graphs: workflows of nodes over a typed state, saved after every step, that can pause
//! for a person and resume in another process.
//!
//! A graph is nodes (async functions, runnables, other graphs) joined by edges. Each node reads
//! the state and returns a partial update; each field of the state says how updates merge (its
//! reducer: overwrite, append, or a function). Edges may branch on the state, loop, and fan out
//! over a list, one task per item, joined in the next step. [`StateGraph::compile`] checks the
//! shape before anything runs: an unknown node, a node nothing reaches, a node with no way to
//! END are errors naming the node.
//!
//! With a [`Checkpointer`], every super-step is saved under a [`Thread`] as the updates it made
//! (a delta: a thread's bytes grow linearly with its steps). A later run on the same thread
//! continues from its state; [`CompiledGraph::history`] lists every checkpoint; [`Thread::at`]
//! continues from an earlier one (time travel: a fork, the original stays). Each task's update
//! is saved as it finishes, so a run killed mid-step re-runs only the tasks that had not
//! finished. A node that needs a person calls [`NodeContext::interrupt`]: the run stops with
//! [`Outcome::Interrupted`], the process may exit, and [`CompiledGraph::resume`] in another one
//! hands the node the answer.
//!
//! ```
//! use std::sync::Arc;
//! use catena_agents::graph::{END, GraphState, MemoryCheckpointer, NodeContext, Outcome, Resume, START, StateGraph, Thread};
//! use catena_core::{Result, RunContext};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Default, Serialize, Deserialize, GraphState)]
//! struct Order {
//!     item: String,
//!     #[state(append)]
//!     log: Vec<String>,
//!     approved: bool,
//! }
//!
//! async fn draft(order: Order, _ctx: NodeContext) -> Result<OrderUpdate> {
//!     Ok(OrderUpdate::default().log(vec![format!("drafted an order for {}", order.item)]))
//! }
//!
//! async fn approve(order: Order, ctx: NodeContext) -> Result<OrderUpdate> {
//!     // The first time, this pauses the run; when resumed, it returns the person's answer.
//!     let yes: bool = ctx.interrupt(&format!("Buy {}?", order.item))?;
//!     Ok(OrderUpdate::default().approved(yes).log(vec![format!("approved: {yes}")]))
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let graph = StateGraph::<Order>::new()
//!     .node("draft", draft)
//!     .node("approve", approve)
//!     .edge(START, "draft")
//!     .edge("draft", "approve")
//!     .edge("approve", END)
//!     .compile()?
//!     .with_checkpointer(Arc::new(MemoryCheckpointer::new()));
//! let (thread, ctx) = (Thread::new("order-1"), RunContext::new());
//!
//! let paused = graph.invoke(&thread, OrderUpdate::default().item("a kettle"), &ctx).await?;
//! assert_eq!(paused.interrupts()[0].payload, "Buy a kettle?");
//!
//! let done = graph.resume(&thread, Resume::with(&true)?, &ctx).await?;
//! assert!(matches!(&done, Outcome::Done(order) if order.approved));
//! assert_eq!(done.state().log, ["drafted an order for a kettle", "approved: true"]);
//! # Ok::<(), catena_core::Error>(())
//! # }).unwrap();
//! ```
//!
//! ## Contents
//! - [`GraphState`] (and its derive, [`macro@GraphState`]), [`Goto`]: the state and routing.
//! - [`StateGraph`]: nodes, edges, conditional edges; [`compile`](StateGraph::compile).
//! - [`Node`], [`NodeContext`], [`RunnableNode`], [`Subgraph`]: what runs.
//! - [`CompiledGraph`], [`Thread`], [`Outcome`], [`Resume`], [`StreamMode`], [`GraphEvent`],
//!   [`Snapshot`]: running, resuming, streaming, reading state and history.
//! - [`Checkpointer`], [`MemoryCheckpointer`], `SqliteCheckpointer` (feature `sqlite`),
//!   `PostgresCheckpointer` (feature `postgres`), and
//!   what they store: [`Checkpoint`], [`Write`], [`Task`], [`Interrupt`], [`PendingWrite`].

mod builder;
mod checkpoint;
mod node;
#[cfg(feature = "postgres")]
mod postgres;
mod run;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use builder::StateGraph;
pub use catena_macros::GraphState;
pub use checkpoint::{
    Checkpoint, Checkpointer, Interrupt, MemoryCheckpointer, PendingWrite, Source, Task, Write,
};
pub use node::{Node, NodeContext, RunnableNode, Subgraph};
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheckpointer;
pub(crate) use run::now_ms;
pub use run::{
    CompiledGraph, GraphEvent, INPUT, Outcome, Resume, Retention, Snapshot, StreamMode, Thread, UPDATE,
};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCheckpointer;
pub use state::{Goto, GraphState};

mod state;

/// Where every graph starts: edges from `START` name the first nodes.
pub const START: &str = "__start__";
/// Where a graph ends: an edge (or a route) to `END` finishes that branch.
pub const END: &str = "__end__";

/// What the `GraphState` derive's generated code reaches through this crate.
#[doc(hidden)]
pub mod __private {
    pub use serde;
}
