//! Nodes: the units of work of a graph, and the context each run of one gets.

use std::future::Future;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use catena_core::{Error, Result, RunContext, Runnable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::run::Emitter;
use super::state::GraphState;
use super::{CompiledGraph, Interrupt};

/// One node of a graph: reads the state, does its work, returns a partial update.
///
/// Implemented for async closures `Fn(S, NodeContext) -> impl Future<Output = Result<S::Update>>`;
/// any [`Runnable<S, S::Update>`](Runnable) becomes one with [`RunnableNode`], another compiled
/// graph with [`Subgraph`].
///
/// A node may run more than once for the same step: after a crash, a failure or an interrupt,
/// resuming re-runs the tasks of the step that had not finished (their completed siblings are not
/// re-run). Put side effects after the interrupts of a node, and key them on
/// [`NodeContext::task_key`] where a crash between the effect and the end of the node matters:
/// then they happen once.
#[async_trait]
pub trait Node<S: GraphState>: Send + Sync {
    /// Runs the node on a copy of the state as of the start of the step.
    async fn run(&self, state: S, ctx: NodeContext) -> Result<S::Update>;
}

#[async_trait]
impl<S, F, Fut> Node<S> for F
where
    S: GraphState,
    F: Fn(S, NodeContext) -> Fut + Send + Sync,
    Fut: Future<Output = Result<S::Update>> + Send,
{
    async fn run(&self, state: S, ctx: NodeContext) -> Result<S::Update> {
        self(state, ctx).await
    }
}

/// A [`Runnable`] from the state to an update, as a node (chains, prompts piped into models and
/// parsers: anything composed with catena's runnables).
pub struct RunnableNode<R>(pub R);

#[async_trait]
impl<S, R> Node<S> for RunnableNode<R>
where
    S: GraphState,
    R: Runnable<S, S::Update>,
{
    async fn run(&self, state: S, ctx: NodeContext) -> Result<S::Update> {
        self.0.invoke(state, ctx.run_context()).await
    }
}

/// Another graph as one node: its input is built from this graph's state, its final state is
/// turned into an update of this one. It runs to its end inside the node's task, without
/// checkpoints of its own (the parent's checkpoint covers the node); an interrupt inside it is an
/// error for now.
pub struct Subgraph<T: GraphState, S: GraphState> {
    graph: CompiledGraph<T>,
    input: Box<StartFrom<S, T>>,
    output: Box<dyn Fn(T) -> S::Update + Send + Sync>,
}

/// How a subgraph's starting update is made from the parent's state.
type StartFrom<S, T> = dyn Fn(&S) -> <T as GraphState>::Update + Send + Sync;

impl<T: GraphState, S: GraphState> Subgraph<T, S> {
    /// `graph` as a node: `input` makes its starting update from this graph's state, `output`
    /// makes this graph's update from its final state.
    pub fn new(
        graph: CompiledGraph<T>,
        input: impl Fn(&S) -> T::Update + Send + Sync + 'static,
        output: impl Fn(T) -> S::Update + Send + Sync + 'static,
    ) -> Self {
        Self { graph, input: Box::new(input), output: Box::new(output) }
    }
}

#[async_trait]
impl<T: GraphState, S: GraphState> Node<S> for Subgraph<T, S> {
    async fn run(&self, state: S, ctx: NodeContext) -> Result<S::Update> {
        let start = (self.input)(&state);
        match self.graph.invoke_ephemeral(start, ctx.run_context()).await? {
            super::Outcome::Done(end) => Ok((self.output)(end)),
            super::Outcome::Interrupted { interrupts, .. } => Err(Error::invalid_input(format!(
                "node `{}` is a subgraph that paused at {}: interrupts inside subgraphs are not \
                 supported yet; interrupt in the parent graph instead",
                ctx.node(),
                interrupts.iter().map(|i| format!("`{}`", i.node)).collect::<Vec<_>>().join(", ")
            ))),
        }
    }
}

/// What one run of a node gets besides the state: its input (for a task sent by a fan-out), the
/// run's context (cancellation, events), interrupts, and a channel for custom stream events.
#[derive(Clone)]
pub struct NodeContext {
    pub(crate) thread: String,
    pub(crate) checkpoint: u64,
    pub(crate) node: String,
    pub(crate) task: String,
    pub(crate) step: i64,
    pub(crate) input: Option<Value>,
    pub(crate) resume: Arc<Vec<Value>>,
    pub(crate) run: RunContext,
    pub(crate) shared: Arc<Mutex<TaskShared>>,
    pub(crate) emitter: Emitter,
    pub(crate) resumable: bool,
}

/// What a task's node leaves for the engine besides its update.
#[derive(Default)]
pub(crate) struct TaskShared {
    /// Interrupts asked for so far in this run of the node.
    pub asked: usize,
    /// The interrupt the node stopped at, if any.
    pub interrupt: Option<Interrupt>,
}

impl NodeContext {
    /// Whether the graph has a checkpointer, so an [`interrupt`](Self::interrupt) can wait for
    /// another process (without one, a paused run cannot be resumed).
    #[must_use]
    pub fn resumable(&self) -> bool {
        self.resumable
    }

    /// The thread the run belongs to.
    #[must_use]
    pub fn thread(&self) -> &str {
        &self.thread
    }

    /// The node's name.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The id of this task within its step (`"<index>:<node>"`).
    #[must_use]
    pub fn task(&self) -> &str {
        &self.task
    }

    /// A key that names this task and stays the same when the task runs again (after a crash,
    /// a failure or an interrupt): `<thread>/<checkpoint>/<task>`. Record side effects under it
    /// (an `INSERT ... ON CONFLICT DO NOTHING`, an idempotency key for an API) and they happen
    /// once however often the task re-runs.
    #[must_use]
    pub fn task_key(&self) -> String {
        format!("{}/{}/{}", self.thread, self.checkpoint, self.task)
    }

    /// The super-step this task belongs to.
    #[must_use]
    pub fn step(&self) -> i64 {
        self.step
    }

    /// The run's context: cancellation, events (model tokens streamed through it are tagged with
    /// this node), limits. Pass it to every model, tool and runnable the node calls.
    #[must_use]
    pub fn run_context(&self) -> &RunContext {
        &self.run
    }

    /// The input a [`Goto::Send`](super::Goto::Send) gave this task.
    ///
    /// # Errors
    /// The task was not sent one, or it does not deserialize as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T> {
        let value = self.input.clone().ok_or_else(|| {
            Error::invalid_input(format!(
                "node `{}` was not sent an input (it runs without a Send)",
                self.node
            ))
        })?;
        serde_json::from_value(value).map_err(|e| {
            Error::invalid_input(format!(
                "the input sent to node `{}` does not have the expected shape: {e}",
                self.node
            ))
        })
    }

    /// Pauses the run for a person: the first time, saves `payload` where the caller sees it
    /// ([`Outcome::Interrupted`](super::Outcome::Interrupted)) and returns
    /// [`Error::Interrupted`], which the node returns with `?`. When the thread is resumed with a
    /// value, the node runs again from its start and this call returns that value as `R`. A node
    /// may ask several times; each call is matched with the resume values in order.
    ///
    /// # Errors
    /// [`Error::Interrupted`] when no value has been given yet; an invalid-input error when the
    /// value given does not deserialize as `R` (the interrupt stays pending).
    pub fn interrupt<P: Serialize, R: DeserializeOwned>(&self, payload: &P) -> Result<R> {
        let payload = serde_json::to_value(payload)
            .map_err(|e| Error::invalid_input(format!("an interrupt payload does not serialize: {e}")))?;
        let mut shared =
            self.shared.lock().map_err(|_| Error::invalid_input("a node's context was poisoned"))?;
        let index = shared.asked;
        shared.asked += 1;
        if let Some(value) = self.resume.get(index) {
            return serde_json::from_value(value.clone()).map_err(|e| {
                Error::invalid_input(format!(
                    "the value given to resume node `{}` does not fit what it expects: {e}; it asked: {payload}",
                    self.node
                ))
            });
        }
        shared.interrupt = Some(Interrupt {
            task: self.task.clone(),
            node: self.node.clone(),
            index,
            resumed: self.resume.as_ref().clone(),
            payload,
        });
        Err(Error::Interrupted { node: self.node.clone() })
    }

    /// Sends `value` to the run's stream as a custom event of this node (stream mode
    /// [`Custom`](super::StreamMode::Custom)); nothing when nobody streams.
    pub fn emit(&self, value: impl Serialize) {
        if let Ok(value) = serde_json::to_value(value) {
            self.emitter.custom(&self.node, value);
        }
    }
}
