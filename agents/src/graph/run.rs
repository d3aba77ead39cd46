//! Running a compiled graph: super-steps, checkpoints, interrupts, streaming.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tracing::Instrument;

use catena_core::{Error, Event, Result, RunContext};
use futures::stream::{BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use serde::Serialize;
use serde_json::Value;

use super::builder::Branch;
use super::checkpoint::{
    Checkpoint, Checkpointer, Interrupt, MemoryCheckpointer, PendingWrite, Source, Task, Write,
};
use super::node::{Node, NodeContext, TaskShared};
use super::state::{Goto, GraphState};
use super::{END, START};

/// The node name of a run's input in [`Write::node`].
pub const INPUT: &str = "__input__";
/// The node name of an edit ([`CompiledGraph::update_state`]) in [`Write::node`].
pub const UPDATE: &str = "__update__";

/// A migration of stored updates: called with the node that wrote each update and its JSON,
/// before it is read as the current `Update` type.
type Migration = Arc<dyn Fn(&str, &mut Value) -> Result<()> + Send + Sync>;

pub(crate) struct GraphInner<S> {
    pub nodes: BTreeMap<String, Arc<dyn Node<S>>>,
    pub edges: HashMap<String, Vec<String>>,
    pub branches: HashMap<String, Vec<Branch<S>>>,
}

/// A graph ready to run: [`invoke`](Self::invoke) starts a run on a thread,
/// [`resume`](Self::resume) continues one that paused or failed, [`stream`](Self::stream) does
/// either while reporting what happens, [`state`](Self::state) and [`history`](Self::history)
/// read what was saved, [`update_state`](Self::update_state) edits it. Cheap to clone.
///
/// A run proceeds in super-steps: every task scheduled for the step runs (in parallel), their
/// updates are applied in scheduling order, the edges out of the nodes that ran pick the next
/// step's tasks, and a checkpoint holding the step's updates is saved. Each task's update is
/// saved as soon as it finishes, so a run stopped mid-step (a crash, a failure, an interrupt)
/// re-runs only its unfinished tasks when resumed.
pub struct CompiledGraph<S: GraphState> {
    inner: Arc<GraphInner<S>>,
    checkpointer: Option<Arc<dyn Checkpointer>>,
    step_limit: usize,
    migration: Option<Migration>,
    retention: Retention,
}

impl<S: GraphState> Clone for CompiledGraph<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            checkpointer: self.checkpointer.clone(),
            step_limit: self.step_limit,
            migration: self.migration.clone(),
            retention: self.retention,
        }
    }
}

/// Which conversation or job a run belongs to: its checkpoints are saved under this id, and a
/// later run or resume on the same id continues from them. `at` picks an earlier checkpoint
/// to continue from instead of the latest (time travel: the run forks there, the original branch
/// stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thread {
    id: String,
    checkpoint: Option<u64>,
}

impl Thread {
    /// The thread `id`, at its latest checkpoint.
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into(), checkpoint: None }
    }

    /// The same thread, at checkpoint `checkpoint` instead of the latest.
    #[must_use]
    pub fn at(mut self, checkpoint: u64) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// The thread's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<S> {
    /// No task was left: the final state.
    Done(S),
    /// One or more nodes asked a person; the run is saved and waits for
    /// [`resume`](CompiledGraph::resume). `state` is the state before the paused step.
    Interrupted {
        /// The state as of the paused step's start.
        state: S,
        /// What each paused node asked.
        interrupts: Vec<Interrupt>,
    },
}

impl<S> Outcome<S> {
    /// The state, final or as of the pause.
    #[must_use]
    pub fn state(&self) -> &S {
        match self {
            Self::Done(s) | Self::Interrupted { state: s, .. } => s,
        }
    }

    /// The state, final or as of the pause.
    #[must_use]
    pub fn into_state(self) -> S {
        match self {
            Self::Done(s) | Self::Interrupted { state: s, .. } => s,
        }
    }

    /// The pending interrupts (none when the run is done).
    #[must_use]
    pub fn interrupts(&self) -> &[Interrupt] {
        match self {
            Self::Done(_) => &[],
            Self::Interrupted { interrupts, .. } => interrupts,
        }
    }
}

/// How to continue a run that stopped before its end.
#[derive(Debug, Clone, PartialEq)]
pub enum Resume {
    /// Re-run the tasks that had not finished (after a crash or a failure).
    Continue,
    /// The answer to the one pending interrupt.
    Value(Value),
    /// Answers to several pending interrupts, by task id.
    Values(BTreeMap<String, Value>),
}

impl Resume {
    /// The answer to the pending interrupt, as JSON.
    ///
    /// # Errors
    /// `value` does not serialize.
    pub fn with(value: &impl Serialize) -> Result<Self> {
        serde_json::to_value(value)
            .map(Self::Value)
            .map_err(|e| Error::invalid_input(format!("a resume value does not serialize: {e}")))
    }
}

/// What a [`stream`](CompiledGraph::stream) reports; pick with [`StreamMode`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamMode {
    /// The whole state after each step ([`GraphEvent::Values`]).
    Values,
    /// Each node's update as it finishes ([`GraphEvent::Update`]).
    Updates,
    /// Model tokens as they come, tagged with the node ([`GraphEvent::Token`]).
    Messages,
    /// What nodes send with [`NodeContext::emit`] ([`GraphEvent::Custom`]).
    Custom,
}

/// One item of a graph's stream. The last item is [`GraphEvent::Finished`] (or an error).
#[derive(Debug, Clone, PartialEq)]
pub enum GraphEvent<S: GraphState> {
    /// The state after a step, and the checkpoint that saved it.
    Values {
        /// The checkpoint.
        checkpoint: u64,
        /// Its step.
        step: i64,
        /// The state.
        state: S,
    },
    /// A node finished with this update.
    Update {
        /// The step it ran in.
        step: i64,
        /// The node.
        node: String,
        /// Its update.
        update: S::Update,
    },
    /// A model called by a node produced text.
    Token {
        /// The node.
        node: String,
        /// The text.
        text: String,
    },
    /// A node sent a custom event.
    Custom {
        /// The node.
        node: String,
        /// What it sent.
        value: Value,
    },
    /// The run ended: done, or paused for a person.
    Finished(Outcome<S>),
}

/// A checkpoint as the graph's state: what [`state`](CompiledGraph::state) and
/// [`history`](CompiledGraph::history) return.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<S> {
    /// The checkpoint's id (pass it to [`Thread::at`] to continue from here).
    pub checkpoint: u64,
    /// The checkpoint it follows.
    pub parent: Option<u64>,
    /// Its step.
    pub step: i64,
    /// Why it was written.
    pub source: Source,
    /// The state at this checkpoint.
    pub state: S,
    /// The nodes that run next (none when the run finished there).
    pub next: Vec<String>,
    /// Interrupts waiting for a value at this checkpoint.
    pub interrupts: Vec<Interrupt>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// Where node-level events (custom events, tokens) go while a run is streamed.
#[derive(Clone, Default)]
pub(crate) struct Emitter(Option<Arc<EmitFn>>);

type EmitFn = dyn Fn(&str, NodeEvent) + Send + Sync;

pub(crate) enum NodeEvent {
    Token(String),
    Custom(Value),
}

impl Emitter {
    pub(crate) fn custom(&self, node: &str, value: Value) {
        if let Some(f) = &self.0 {
            f(node, NodeEvent::Custom(value));
        }
    }
}

/// The stream's side of a run: which modes it wants, and the channel.
struct Sink<S: GraphState> {
    tx: tokio::sync::mpsc::UnboundedSender<Result<GraphEvent<S>>>,
    modes: HashSet<StreamMode>,
}

impl<S: GraphState> Clone for Sink<S> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone(), modes: self.modes.clone() }
    }
}

impl<S: GraphState> Sink<S> {
    fn send(&self, mode: StreamMode, event: impl FnOnce() -> GraphEvent<S>) {
        if self.modes.contains(&mode) {
            // A dropped stream stops nobody's run.
            let _ = self.tx.send(Ok(event()));
        }
    }

    fn emitter(&self) -> Emitter {
        if !self.modes.contains(&StreamMode::Custom) && !self.modes.contains(&StreamMode::Messages) {
            return Emitter::default();
        }
        let sink = self.clone();
        Emitter(Some(Arc::new(move |node: &str, event: NodeEvent| match event {
            NodeEvent::Token(text) => {
                sink.send(StreamMode::Messages, || GraphEvent::Token { node: node.to_owned(), text })
            }
            NodeEvent::Custom(value) => {
                sink.send(StreamMode::Custom, || GraphEvent::Custom { node: node.to_owned(), value });
            }
        })))
    }
}

enum Start<S: GraphState> {
    Input(S::Update),
    Resume(Resume),
}

enum TaskResult {
    Done(Write),
    Interrupted(Interrupt),
    Failed(Error),
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_json(update: &impl Serialize) -> Result<Value> {
    serde_json::to_value(update)
        .map_err(|e| Error::invalid_input(format!("a state update does not serialize: {e}")))
}

impl<S: GraphState> CompiledGraph<S> {
    pub(crate) fn new(inner: GraphInner<S>) -> Self {
        Self {
            inner: Arc::new(inner),
            checkpointer: None,
            step_limit: 25,
            migration: None,
            retention: Retention::All,
        }
    }

    /// Saves checkpoints in `checkpointer`: runs survive interrupts (and, with a durable one,
    /// the process), threads keep their state between runs, history and time travel work.
    /// Without one, each [`invoke`](Self::invoke) runs on a fresh in-memory store.
    #[must_use]
    pub fn with_checkpointer(mut self, checkpointer: Arc<dyn Checkpointer>) -> Self {
        self.checkpointer = Some(checkpointer);
        self
    }

    /// Trims each thread's history after its runs: [`Retention::KeepLast`] `n` checkpoints, or
    /// [`Retention::MaxAge`]. Trimmed threads keep their state (the oldest kept checkpoint carries
    /// the state before it); only time travel to the deleted checkpoints is lost. Default:
    /// [`Retention::All`]. [`prune`](Self::prune) trims a thread on demand.
    #[must_use]
    pub fn with_retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Most super-steps one run (an invoke, or a resume) may take before it fails with
    /// [`Error::Limit`] naming the nodes still running (default 25).
    #[must_use]
    pub fn with_step_limit(mut self, steps: usize) -> Self {
        self.step_limit = steps.max(1);
        self
    }

    /// Rewrites stored updates written by an older version of the state type before they are
    /// read: `migrate(node, update)` may change the JSON in place. Without it, an update that no
    /// longer fits the state type fails the read with an error saying so.
    #[must_use]
    pub fn with_migration(
        mut self,
        migrate: impl Fn(&str, &mut Value) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        self.migration = Some(Arc::new(migrate));
        self
    }

    /// Starts a run on `thread`: `input` is applied to the thread's state (the state type's
    /// default for a new thread) through the reducers, then the nodes after START run until no
    /// task is left or a node interrupts.
    ///
    /// # Errors
    /// The thread has an unfinished run (resume it, or fork with [`Thread::at`]); a node's error
    /// (its completed siblings are saved); the step limit; the checkpointer's errors.
    pub async fn invoke(&self, thread: &Thread, input: S::Update, ctx: &RunContext) -> Result<Outcome<S>> {
        let (span, traced) = run_span(ctx);
        finish_span(
            &span,
            self.drive(thread, Start::Input(input), &traced, None).instrument(span.clone()).await,
        )
    }

    /// Continues the unfinished run of `thread`: with the answer to its interrupt, or, after a
    /// crash or a failure, by re-running the tasks that had not finished.
    ///
    /// # Errors
    /// No checkpointer; an unknown thread or one with nothing to resume; a value for an
    /// interrupt that is not pending, or none when one is: each names what is pending.
    pub async fn resume(&self, thread: &Thread, resume: Resume, ctx: &RunContext) -> Result<Outcome<S>> {
        let (span, traced) = run_span(ctx);
        finish_span(
            &span,
            self.drive(thread, Start::Resume(resume), &traced, None).instrument(span.clone()).await,
        )
    }

    /// [`invoke`](Self::invoke), reporting what happens in the chosen `modes` (combine them);
    /// the last item is [`GraphEvent::Finished`], or the run's error.
    pub fn stream<'a>(
        &'a self,
        thread: &'a Thread,
        input: S::Update,
        modes: &[StreamMode],
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<GraphEvent<S>>> {
        self.stream_run(thread, Start::Input(input), modes, ctx)
    }

    /// [`resume`](Self::resume), streamed like [`stream`](Self::stream).
    pub fn stream_resume<'a>(
        &'a self,
        thread: &'a Thread,
        resume: Resume,
        modes: &[StreamMode],
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<GraphEvent<S>>> {
        self.stream_run(thread, Start::Resume(resume), modes, ctx)
    }

    fn stream_run<'a>(
        &'a self,
        thread: &'a Thread,
        start: Start<S>,
        modes: &[StreamMode],
        ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<GraphEvent<S>>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = Sink { tx, modes: modes.iter().copied().collect() };
        let run = async move {
            let last = sink.clone();
            let outcome = self.drive(thread, start, ctx, Some(sink)).await;
            let _ = last.tx.send(outcome.map(GraphEvent::Finished));
        };
        // The run is polled alongside the channel; it yields nothing itself.
        let driver = run.into_stream().filter_map(|()| async { None });
        let events = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
        futures::stream::select(events, driver).boxed()
    }

    /// Runs the graph to its end on a store of its own (what a subgraph node does).
    pub(crate) async fn invoke_ephemeral(&self, input: S::Update, ctx: &RunContext) -> Result<Outcome<S>> {
        let graph = self.clone().with_checkpointer(Arc::new(MemoryCheckpointer::new()));
        graph.drive(&Thread::new("subgraph"), Start::Input(input), ctx, None).await
    }

    fn saver(&self) -> Result<&Arc<dyn Checkpointer>> {
        self.checkpointer.as_ref().ok_or_else(|| {
            Error::invalid_input("this graph has no checkpointer: give it one with with_checkpointer to resume runs and read their state")
        })
    }

    /// The state at the thread's latest checkpoint (or the one [`Thread::at`] names); `None`
    /// for a thread never run.
    ///
    /// # Errors
    /// No checkpointer; an unknown checkpoint; stored updates that do not fit the state type.
    pub async fn state(&self, thread: &Thread) -> Result<Option<Snapshot<S>>> {
        let saver = self.saver()?;
        let all = saver.checkpoints(&thread.id).await?;
        let Some(head) = head_of(thread, &all)? else { return Ok(None) };
        let state = self.fold(&thread.id, &all, head.id)?;
        let interrupts = interrupts_at(saver.as_ref(), &thread.id, head.id).await?;
        Ok(Some(snapshot(head, state, interrupts)))
    }

    /// Every checkpoint of the thread with its state, newest first.
    ///
    /// # Errors
    /// As [`state`](Self::state).
    pub async fn history(&self, thread: &Thread) -> Result<Vec<Snapshot<S>>> {
        let saver = self.saver()?;
        let all = saver.checkpoints(&thread.id).await?;
        let mut out = Vec::with_capacity(all.len());
        // Linear threads fold once, each checkpoint on its parent's state.
        let mut last: Option<(u64, S)> = None;
        for checkpoint in &all {
            let state = match &last {
                Some((id, state)) if checkpoint.parent == Some(*id) && checkpoint.base.is_none() => {
                    let mut state = state.clone();
                    for write in &checkpoint.writes {
                        state.apply(self.read_update(&thread.id, checkpoint.id, write)?);
                    }
                    state
                }
                _ => self.fold(&thread.id, &all, checkpoint.id)?,
            };
            let interrupts = interrupts_at(saver.as_ref(), &thread.id, checkpoint.id).await?;
            out.push(snapshot(checkpoint, state.clone(), interrupts));
            last = Some((checkpoint.id, state));
        }
        out.reverse();
        Ok(out)
    }

    /// Edits the thread's state (at its latest checkpoint, or the one [`Thread::at`] names) as
    /// if a node had returned `update`: a new checkpoint, the same tasks pending, pending
    /// interrupts kept. How a person changes what an interrupted run will continue with, and
    /// how a thread is seeded (a thread never run starts from the state's default, with nothing
    /// pending: importing a conversation kept elsewhere). Returns the new checkpoint's id.
    ///
    /// # Errors
    /// No checkpointer; the checkpointer's errors.
    pub async fn update_state(&self, thread: &Thread, update: S::Update) -> Result<u64> {
        let saver = self.saver()?;
        let all = saver.checkpoints(&thread.id).await?;
        let head = head_of(thread, &all)?;
        let pending = match head {
            Some(head) => saver.pending(&thread.id, head.id).await?,
            None => Vec::new(),
        };
        let checkpoint = Checkpoint {
            id: next_id(&all)?,
            parent: head.map(|h| h.id),
            step: head.map_or(-1, |h| h.step),
            source: Source::Update,
            writes: vec![Write {
                node: UPDATE.to_owned(),
                task: "update".to_owned(),
                update: to_json(&update)?,
            }],
            next: head.map(|h| h.next.clone()).unwrap_or_default(),
            base: None,
            created_at_ms: now_ms(),
        };
        saver.put(&thread.id, &checkpoint).await?;
        for write in &pending {
            saver.put_pending(&thread.id, checkpoint.id, write).await?;
        }
        Ok(checkpoint.id)
    }

    /// Ends the thread's unfinished run where it stands (one cancelled, failed or waiting for
    /// a person that nobody will resume): a new checkpoint with the same state and nothing
    /// pending, so the next [`invoke`](Self::invoke) starts afresh. The earlier checkpoints
    /// stay: resuming a fork of one ([`Thread::at`]) runs its unfinished tasks again (a node
    /// that had asked a person asks anew). Returns the new checkpoint's id,
    /// or `None` when nothing was unfinished.
    ///
    /// # Errors
    /// No checkpointer; the checkpointer's errors.
    pub async fn abandon(&self, thread: &Thread) -> Result<Option<u64>> {
        let saver = self.saver()?;
        let all = saver.checkpoints(&thread.id).await?;
        let Some(head) = head_of(thread, &all)?.filter(|h| !h.next.is_empty()) else { return Ok(None) };
        let checkpoint = Checkpoint {
            id: next_id(&all)?,
            parent: Some(head.id),
            step: head.step,
            source: Source::Update,
            writes: Vec::new(),
            next: Vec::new(),
            base: None,
            created_at_ms: now_ms(),
        };
        saver.put(&thread.id, &checkpoint).await?;
        Ok(Some(checkpoint.id))
    }

    fn read_update(&self, thread: &str, checkpoint: u64, write: &Write) -> Result<S::Update> {
        let mut json = write.update.clone();
        if let Some(migrate) = &self.migration {
            migrate(&write.node, &mut json)?;
        }
        serde_json::from_value(json).map_err(|e| {
            Error::invalid_input(format!(
                "checkpoint {checkpoint} of thread `{thread}`: the update node `{}` wrote no longer fits the \
                 state type ({e}); the type changed since it was saved: add a migration \
                 (with_migration) or start a new thread",
                write.node
            ))
        })
    }

    /// The state at checkpoint `id`: its ancestors' writes and its own, oldest first.
    fn fold(&self, thread: &str, all: &[Checkpoint], id: u64) -> Result<S> {
        let by_id: HashMap<u64, &Checkpoint> = all.iter().map(|c| (c.id, c)).collect();
        let mut chain = Vec::new();
        let mut at = Some(id);
        while let Some(i) = at {
            let checkpoint = by_id.get(&i).ok_or_else(|| {
                Error::store(format!(
                    "thread `{thread}` is missing checkpoint {i}, which a later one follows"
                ))
            })?;
            chain.push(*checkpoint);
            if checkpoint.base.is_some() || chain.len() > all.len() {
                break;
            }
            at = checkpoint.parent;
        }
        let mut state = S::default();
        for checkpoint in chain.iter().rev() {
            if let Some(base) = &checkpoint.base {
                state = serde_json::from_value(base.clone()).map_err(|e| {
                    Error::invalid_input(format!(
                        "checkpoint {} of thread `{thread}`: its saved state no longer fits the state type ({e})",
                        checkpoint.id
                    ))
                })?;
            }
            for write in &checkpoint.writes {
                state.apply(self.read_update(thread, checkpoint.id, write)?);
            }
        }
        Ok(state)
    }

    /// The tasks after `finished` nodes ran, from their edges and routers on `state`.
    fn route(&self, finished: &[&str], state: &S) -> Result<Vec<Task>> {
        let mut next: Vec<(String, Option<Value>)> = Vec::new();
        let mut planned = HashSet::new();
        let mut seen = HashSet::new();
        for &from in finished {
            if !seen.insert(from) {
                continue;
            }
            for to in self.inner.edges.get(from).into_iter().flatten() {
                if to != END && planned.insert(to.clone()) {
                    next.push((to.clone(), None));
                }
            }
            for branch in self.inner.branches.get(from).into_iter().flatten() {
                for goto in (branch.router)(state) {
                    let Some(to) = goto.node() else { continue };
                    if !branch.targets.contains(to) {
                        return Err(Error::invalid_input(format!(
                            "the conditional edge from `{from}` routed to `{to}`, which it does not declare \
                             (its targets: {}); add it to the targets",
                            branch.targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    match goto {
                        Goto::Node(to) if planned.insert(to.clone()) => next.push((to, None)),
                        Goto::Send(to, input) => next.push((to, Some(input))),
                        _ => {}
                    }
                }
            }
        }
        Ok(next
            .into_iter()
            .enumerate()
            .map(|(i, (node, input))| Task { id: format!("{i}:{node}"), node, input })
            .collect())
    }

    #[allow(clippy::too_many_arguments)] // the task and where it runs, all needed by its context
    async fn run_task(
        &self,
        thread: &str,
        checkpoint: u64,
        task: &Task,
        state: &S,
        ctx: &RunContext,
        emitter: &Emitter,
        step: i64,
        resume: Vec<Value>,
    ) -> TaskResult {
        let Some(node) = self.inner.nodes.get(&task.node) else {
            return TaskResult::Failed(Error::invalid_input(format!(
                "the checkpoint schedules node `{}`, which this graph does not have (was it renamed?)",
                task.node
            )));
        };
        let shared = Arc::new(Mutex::new(TaskShared::default()));
        let span = catena_core::telemetry::graph_step_span(ctx, thread, &task.node, step);
        let mut run = ctx.child().with_span(span.clone());
        if emitter.0.is_some() {
            // Tokens of models the node calls reach the stream tagged with the node, and the
            // caller's own sink as before.
            let (parent, emitter, name) = (ctx.clone(), emitter.clone(), task.node.clone());
            run = run.with_events(move |event: Event| {
                if let (Event::Token { text }, Some(f)) = (&event, &emitter.0) {
                    f(&name, NodeEvent::Token(text.clone()));
                }
                parent.emit(event);
            });
        }
        let node_ctx = NodeContext {
            thread: thread.to_owned(),
            checkpoint,
            node: task.node.clone(),
            task: task.id.clone(),
            step,
            input: task.input.clone(),
            resume: Arc::new(resume),
            run,
            shared: Arc::clone(&shared),
            emitter: emitter.clone(),
            resumable: self.checkpointer.is_some(),
        };
        // A panicking node fails its task, not the process: its siblings' work is saved and the
        // run can be resumed once the node is fixed.
        let running = tracing::Instrument::instrument(node.run(state.clone(), node_ctx), span.clone());
        let result = match AssertUnwindSafe(running).catch_unwind().await {
            Ok(result) => result,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(ToString::to_string)
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                Err(Error::invalid_input(format!("node `{}` panicked: {why}", task.node)))
            }
        };
        if let Some(interrupt) = shared.lock().ok().and_then(|mut s| s.interrupt.take()) {
            return TaskResult::Interrupted(interrupt);
        }
        match result.and_then(|update| to_json(&update)) {
            Ok(update) => TaskResult::Done(Write { node: task.node.clone(), task: task.id.clone(), update }),
            Err(e) => TaskResult::Failed(e),
        }
    }

    #[allow(clippy::too_many_lines)] // one loop, read top to bottom
    async fn drive(
        &self,
        thread: &Thread,
        start: Start<S>,
        ctx: &RunContext,
        sink: Option<Sink<S>>,
    ) -> Result<Outcome<S>> {
        let saver: Arc<dyn Checkpointer> = match (&self.checkpointer, &start) {
            (Some(saver), _) => Arc::clone(saver),
            (None, Start::Input(_)) => Arc::new(MemoryCheckpointer::new()),
            (None, Start::Resume(_)) => {
                return Err(self.saver().err().unwrap_or_else(|| Error::invalid_input("no checkpointer")));
            }
        };
        let tid = thread.id.as_str();
        let all = saver.checkpoints(tid).await?;
        let head = head_of(thread, &all)?;
        let mut ids = next_id(&all)?;
        let first_new = ids;
        let mut state = match head {
            Some(h) => self.fold(tid, &all, h.id)?,
            None => S::default(),
        };
        let emitter = sink.as_ref().map(Sink::emitter).unwrap_or_default();
        let values = |checkpoint: &Checkpoint, state: &S| {
            if let Some(sink) = &sink {
                sink.send(StreamMode::Values, || GraphEvent::Values {
                    checkpoint: checkpoint.id,
                    step: checkpoint.step,
                    state: state.clone(),
                });
            }
        };
        let mut done: HashMap<String, Write> = HashMap::new();
        let mut resume_for: HashMap<String, Vec<Value>> = HashMap::new();
        let mut at = match start {
            Start::Input(input) => {
                if let Some(h) = head
                    && thread.checkpoint.is_none()
                    && !h.next.is_empty()
                {
                    let interrupts = interrupts_at(saver.as_ref(), tid, h.id).await?;
                    return Err(unfinished(tid, h, &interrupts));
                }
                let write =
                    Write { node: INPUT.to_owned(), task: "input".to_owned(), update: to_json(&input)? };
                state.apply(input);
                let checkpoint = Checkpoint {
                    id: ids,
                    parent: head.map(|h| h.id),
                    step: head.map_or(Ok(-1), |h| following_step(h.step))?,
                    source: Source::Input,
                    writes: vec![write],
                    next: self.route(&[START], &state)?,
                    base: None,
                    created_at_ms: now_ms(),
                };
                ids = following_id(ids)?;
                saver.put(tid, &checkpoint).await?;
                values(&checkpoint, &state);
                checkpoint
            }
            Start::Resume(resume) => {
                let h = head.ok_or_else(|| {
                    Error::invalid_input(format!("thread `{tid}` has no checkpoints: start it with invoke"))
                })?;
                if h.next.is_empty() {
                    return Err(Error::invalid_input(format!(
                        "thread `{tid}` has nothing to resume: its run finished at checkpoint {}; start a new run with invoke",
                        h.id
                    )));
                }
                let mut waiting = Vec::new();
                for write in saver.pending(tid, h.id).await? {
                    match write {
                        PendingWrite::Done(w) => {
                            done.insert(w.task.clone(), w);
                        }
                        PendingWrite::Interrupted(i) => waiting.push(i),
                    }
                }
                match (resume, waiting.as_slice()) {
                    (Resume::Continue, []) => {}
                    (Resume::Continue, waiting) => {
                        return Err(Error::invalid_input(format!(
                            "thread `{tid}` waits for a value: {}; resume it with Resume::Value",
                            describe(waiting)
                        )));
                    }
                    (Resume::Value(_) | Resume::Values(_), []) => {
                        return Err(Error::invalid_input(format!(
                            "no interrupt is pending on thread `{tid}` (tasks waiting to run: {}); resume it with Resume::Continue",
                            h.next.iter().map(|t| format!("`{}`", t.node)).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    (Resume::Value(value), [one]) => {
                        resume_for.insert(one.task.clone(), [one.resumed.clone(), vec![value]].concat());
                    }
                    (Resume::Value(_), waiting) => {
                        return Err(Error::invalid_input(format!(
                            "thread `{tid}` has {} interrupts pending ({}): answer each by task with Resume::Values",
                            waiting.len(),
                            describe(waiting)
                        )));
                    }
                    (Resume::Values(values), waiting) => {
                        for (task, value) in values {
                            let Some(one) = waiting.iter().find(|i| i.task == task) else {
                                return Err(Error::invalid_input(format!(
                                    "task `{task}` of thread `{tid}` is not waiting for a value (pending: {})",
                                    describe(waiting)
                                )));
                            };
                            resume_for.insert(task, [one.resumed.clone(), vec![value]].concat());
                        }
                    }
                }
                // Interrupts not answered now keep the values they were given before.
                for i in &waiting {
                    resume_for.entry(i.task.clone()).or_insert_with(|| i.resumed.clone());
                }
                if all.iter().any(|c| c.id > h.id) {
                    // Continuing from an earlier checkpoint: a new branch, which becomes the
                    // thread's latest (what it saves from now on lands on it).
                    let fork = Checkpoint {
                        id: ids,
                        parent: Some(h.id),
                        step: h.step,
                        source: Source::Fork,
                        writes: Vec::new(),
                        next: h.next.clone(),
                        base: None,
                        created_at_ms: now_ms(),
                    };
                    ids = following_id(ids)?;
                    saver.put(tid, &fork).await?;
                    for write in done
                        .values()
                        .cloned()
                        .map(PendingWrite::Done)
                        .chain(waiting.into_iter().map(PendingWrite::Interrupted))
                    {
                        saver.put_pending(tid, fork.id, &write).await?;
                    }
                    fork
                } else {
                    h.clone()
                }
            }
        };
        let mut steps = 0;
        let mut runs: BTreeMap<String, usize> = BTreeMap::new();
        let outcome = loop {
            if at.next.is_empty() {
                break Outcome::Done(state);
            }
            if steps >= self.step_limit {
                let still: Vec<String> = at
                    .next
                    .iter()
                    .map(|t| {
                        format!(
                            "`{}` (ran {} times in this run)",
                            t.node,
                            runs.get(&t.node).copied().unwrap_or(0)
                        )
                    })
                    .collect();
                return Err(Error::limit(format!(
                    "thread `{tid}` ran {} super-steps without reaching END; still scheduled: {}. A loop \
                     that does not end: check the edges out of these nodes, or raise the limit with \
                     with_step_limit (the run is saved: resume it with Resume::Continue)",
                    self.step_limit,
                    still.join(", ")
                )));
            }
            ctx.check_cancelled()?;
            let step = following_step(at.step)?;
            let mut running: FuturesUnordered<_> = at
                .next
                .iter()
                .filter(|t| !done.contains_key(&t.id))
                .map(|task| {
                    *runs.entry(task.node.clone()).or_default() += 1;
                    let resume = resume_for.remove(&task.id).unwrap_or_default();
                    self.run_task(tid, at.id, task, &state, ctx, &emitter, step, resume)
                })
                .collect();
            let mut interrupts = Vec::new();
            let mut failure = None;
            while let Some(result) = running.next().await {
                match result {
                    TaskResult::Done(write) => {
                        // The step's last task to finish is saved with the step's checkpoint,
                        // written next; the others now, so a stop before then keeps their work.
                        let last = running.is_empty() && interrupts.is_empty() && failure.is_none();
                        if !last {
                            saver.put_pending(tid, at.id, &PendingWrite::Done(write.clone())).await?;
                        }
                        if let Some(sink) = &sink
                            && sink.modes.contains(&StreamMode::Updates)
                        {
                            let update = self.read_update(tid, at.id, &write)?;
                            sink.send(StreamMode::Updates, || GraphEvent::Update {
                                step,
                                node: write.node.clone(),
                                update,
                            });
                        }
                        done.insert(write.task.clone(), write);
                    }
                    TaskResult::Interrupted(interrupt) => {
                        saver.put_pending(tid, at.id, &PendingWrite::Interrupted(interrupt.clone())).await?;
                        interrupts.push(interrupt);
                    }
                    TaskResult::Failed(e) => {
                        tracing::warn!(thread = tid, step, error = %e, "a graph task failed; its completed siblings are saved");
                        failure.get_or_insert(e);
                    }
                }
            }
            drop(running);
            if let Some(e) = failure {
                return Err(e);
            }
            if !interrupts.is_empty() {
                break Outcome::Interrupted { state, interrupts };
            }
            let mut writes = Vec::with_capacity(at.next.len());
            for task in &at.next {
                if let Some(write) = done.remove(&task.id) {
                    state.apply(self.read_update(tid, at.id, &write)?);
                    writes.push(write);
                }
            }
            let finished: Vec<&str> = at.next.iter().map(|t| t.node.as_str()).collect();
            let checkpoint = Checkpoint {
                id: ids,
                parent: Some(at.id),
                step,
                source: Source::Loop,
                writes,
                next: self.route(&finished, &state)?,
                base: None,
                created_at_ms: now_ms(),
            };
            ids = following_id(ids)?;
            saver.put(tid, &checkpoint).await?;
            values(&checkpoint, &state);
            done.clear();
            resume_for.clear();
            at = checkpoint;
            steps += 1;
        };
        let count = all.len() + usize::try_from(ids - first_new).unwrap_or(0);
        let oldest = all.iter().map(|c| c.created_at_ms).min();
        if self.retention.due(count, oldest)
            && let Err(e) = self.prune_with(saver.as_ref(), tid, self.retention).await
        {
            // The run itself succeeded; the history is trimmed at the next run.
            tracing::warn!(thread = tid, error = %e, "pruning the thread's checkpoints failed");
        }
        Ok(outcome)
    }

    /// Trims the thread's history to `retention` now: the checkpoints it does not keep are
    /// deleted, and the oldest kept ones get the state before them as a base, so every kept
    /// checkpoint still reads. Returns how many were deleted. The latest checkpoint is always
    /// kept, and with it a waiting interrupt.
    ///
    /// # Errors
    /// No checkpointer; stored updates that do not fit the state type; the checkpointer's
    /// errors (nothing is changed then).
    pub async fn prune(&self, thread: &Thread, retention: Retention) -> Result<usize> {
        let saver = self.saver()?;
        self.prune_with(saver.as_ref(), &thread.id, retention).await
    }

    async fn prune_with(
        &self,
        saver: &dyn Checkpointer,
        thread: &str,
        retention: Retention,
    ) -> Result<usize> {
        let all = saver.checkpoints(thread).await?;
        let Some(newest) = all.iter().map(|c| c.id).max() else { return Ok(0) };
        let mut by_age: Vec<&Checkpoint> = all.iter().collect();
        by_age.sort_by_key(|c| std::cmp::Reverse(c.id));
        let keep: HashSet<u64> = match retention {
            Retention::All => return Ok(0),
            Retention::KeepLast(n) => by_age.iter().take(n.max(1)).map(|c| c.id).collect(),
            Retention::MaxAge(age) => {
                let cutoff = now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
                all.iter().filter(|c| c.created_at_ms >= cutoff || c.id == newest).map(|c| c.id).collect()
            }
        };
        let delete: Vec<u64> = all.iter().map(|c| c.id).filter(|id| !keep.contains(id)).collect();
        if delete.is_empty() {
            return Ok(0);
        }
        let mut rewrite = Vec::new();
        for checkpoint in all.iter().filter(|c| keep.contains(&c.id) && c.base.is_none()) {
            if let Some(parent) = checkpoint.parent.filter(|p| !keep.contains(p)) {
                let base = self.fold(thread, &all, parent)?;
                let base = serde_json::to_value(&base)
                    .map_err(|e| Error::store(format!("a state does not serialize: {e}")))?;
                rewrite.push(Checkpoint { base: Some(base), ..checkpoint.clone() });
            }
        }
        saver.prune(thread, &rewrite, &delete).await?;
        Ok(delete.len())
    }
}

/// How much of each thread's history a graph keeps; see [`CompiledGraph::with_retention`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// Every checkpoint (the default): full history and time travel.
    #[default]
    All,
    /// The newest `n` checkpoints of each thread.
    KeepLast(usize),
    /// Checkpoints younger than this (and always the newest).
    MaxAge(std::time::Duration),
}

impl Retention {
    /// Whether a thread with `count` checkpoints, the oldest written at `oldest_ms`, is due for
    /// trimming after a run: past twice the kept count (so trimming costs once per `n` new
    /// checkpoints), or holding checkpoints past the age.
    fn due(self, count: usize, oldest_ms: Option<u64>) -> bool {
        match self {
            Self::All => false,
            Self::KeepLast(n) => count > n.max(1).saturating_mul(2),
            Self::MaxAge(age) => oldest_ms.is_some_and(|oldest| {
                oldest < now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
            }),
        }
    }
}

fn head_of<'a>(thread: &Thread, all: &'a [Checkpoint]) -> Result<Option<&'a Checkpoint>> {
    match thread.checkpoint {
        Some(id) => all.iter().find(|c| c.id == id).map(Some).ok_or_else(|| {
            Error::invalid_input(format!(
                "thread `{}` has no checkpoint {id} (it has {} checkpoints{})",
                thread.id,
                all.len(),
                all.first()
                    .zip(all.last())
                    .map(|(a, b)| format!(", {} to {}", a.id, b.id))
                    .unwrap_or_default()
            ))
        }),
        None => Ok(all.iter().max_by_key(|c| c.id)),
    }
}

/// The id after every checkpoint in `all`.
fn next_id(all: &[Checkpoint]) -> Result<u64> {
    all.iter().map(|c| c.id).max().map_or(Ok(0), following_id)
}

/// The id after `id`. Only a damaged or hand-edited store holds ids or steps at the top of their
/// range: an error, where wrapping around would reuse ids.
fn following_id(id: u64) -> Result<u64> {
    id.checked_add(1).ok_or_else(|| at_the_end("id"))
}

/// The step after `step` (see [`following_id`]).
fn following_step(step: i64) -> Result<i64> {
    step.checked_add(1).ok_or_else(|| at_the_end("step"))
}

fn at_the_end(what: &str) -> Error {
    Error::store(format!("a checkpoint {what} is at the end of its range: the checkpoint store is damaged"))
}

async fn interrupts_at(saver: &dyn Checkpointer, thread: &str, at: u64) -> Result<Vec<Interrupt>> {
    Ok(saver
        .pending(thread, at)
        .await?
        .into_iter()
        .filter_map(|w| match w {
            PendingWrite::Interrupted(i) => Some(i),
            PendingWrite::Done(_) => None,
        })
        .collect())
}

fn snapshot<S>(checkpoint: &Checkpoint, state: S, interrupts: Vec<Interrupt>) -> Snapshot<S> {
    Snapshot {
        checkpoint: checkpoint.id,
        parent: checkpoint.parent,
        step: checkpoint.step,
        source: checkpoint.source,
        state,
        next: checkpoint.next.iter().map(|t| t.node.clone()).collect(),
        interrupts,
        created_at_ms: checkpoint.created_at_ms,
    }
}

fn describe(interrupts: &[Interrupt]) -> String {
    interrupts
        .iter()
        .map(|i| {
            let payload = i.payload.to_string();
            let shown: String = payload.chars().take(200).collect();
            format!("node `{}` (task `{}`) asked {shown}", i.node, i.task)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn unfinished(thread: &str, head: &Checkpoint, interrupts: &[Interrupt]) -> Error {
    let why = if interrupts.is_empty() {
        format!(
            "it stopped before running {} (a crash or a failure): resume it with Resume::Continue",
            head.next.iter().map(|t| format!("`{}`", t.node)).collect::<Vec<_>>().join(", ")
        )
    } else {
        format!("{}: resume it with the answer", describe(interrupts))
    };
    Error::invalid_input(format!(
        "thread `{thread}` has an unfinished run at checkpoint {}; {why}, or fork an earlier checkpoint with Thread::at",
        head.id
    ))
}

/// One `invoke_agent graph` span per run, the parent of its steps' spans, and the context that
/// carries it.
fn run_span(ctx: &RunContext) -> (tracing::Span, RunContext) {
    // A graph's input is its state update, not a message: none is recorded as the input.
    let span = catena_core::telemetry::agent_span(ctx, "graph", "");
    let traced = ctx.clone().with_span(span.clone());
    (span, traced)
}

fn finish_span<T>(span: &tracing::Span, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        catena_core::telemetry::record_error(span, e);
    }
    result
}
