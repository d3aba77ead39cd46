//! Checkpoints: what a graph saves after every super-step, and where it saves it.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use catena_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The update one task (or the input, or a person editing the state) made, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Write {
    /// The node that made it (`__input__` for a run's input, `__update__` for an edit).
    pub node: String,
    /// The task within its step.
    pub task: String,
    /// The update, as the state's `Update` type serializes it.
    pub update: Value,
}

/// A node scheduled to run in the next super-step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// `"<index>:<node>"`, unique within its step.
    pub id: String,
    /// The node to run.
    pub node: String,
    /// The input a [`Goto::Send`](super::Goto::Send) gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// A node waiting for a person: what it asked, and where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interrupt {
    /// The task that paused.
    pub task: String,
    /// Its node.
    pub node: String,
    /// Which of the node's interrupts this is (0 for the first it asks).
    pub index: usize,
    /// The values given for its earlier interrupts, replayed when it runs again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<Value>,
    /// What the node asked: shown to the person.
    pub payload: Value,
}

/// Why a checkpoint was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A run's input.
    Input,
    /// A super-step completed.
    Loop,
    /// The state was edited ([`CompiledGraph::update_state`](super::CompiledGraph::update_state)).
    Update,
    /// A run continued from an earlier checkpoint ([`Thread::at`](super::Thread::at)): the new
    /// branch starts here, and is the thread's latest.
    Fork,
}

/// One checkpoint, as stored: the writes of one super-step (a delta, not the whole state), and
/// the tasks that run next. The state at a checkpoint is [`Default`] with the writes of it and of
/// each of its ancestors applied, oldest first; a `base` (left by pruning) replaces everything
/// before it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Increasing within a thread.
    pub id: u64,
    /// The checkpoint this one follows (an earlier one when a run was forked from it).
    pub parent: Option<u64>,
    /// The super-step: -1 for the first input, then one more per step.
    pub step: i64,
    /// Why it was written.
    pub source: Source,
    /// The updates applied at this checkpoint, in order.
    pub writes: Vec<Write>,
    /// What runs next; empty when the run finished.
    pub next: Vec<Task>,
    /// The whole state before this checkpoint's writes, when its ancestors were pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Value>,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}

/// What a task of the step after a checkpoint left before the step completed: saved as each task
/// finishes, so that resuming after a crash, a failure or an interrupt re-runs only the tasks
/// without one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PendingWrite {
    /// The task finished with this update.
    Done(Write),
    /// The task paused.
    Interrupted(Interrupt),
}

impl PendingWrite {
    /// The task it belongs to.
    #[must_use]
    pub fn task(&self) -> &str {
        match self {
            Self::Done(w) => &w.task,
            Self::Interrupted(i) => &i.task,
        }
    }
}

/// Stored rows (`(key, json)`) read as `T`: the ones that parse, in order, and the ones that do
/// not with the reason, for the store to move aside.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn decode_rows<T: serde::de::DeserializeOwned>(
    rows: Vec<(i64, String)>,
) -> (Vec<T>, Vec<(i64, String, String)>) {
    let mut good = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for (key, data) in rows {
        match serde_json::from_str(&data) {
            Ok(value) => good.push(value),
            Err(e) => bad.push((key, data, e.to_string())),
        }
    }
    (good, bad)
}

/// Where a graph saves its checkpoints. Implementations: [`MemoryCheckpointer`] (in process),
/// `SqliteCheckpointer` (feature `sqlite`).
///
/// A thread's checkpoints are a tree (forks branch off earlier checkpoints); their ids increase
/// in the order they were written. Each checkpoint holds only its step's writes, so a thread's
/// bytes grow linearly with its steps.
#[async_trait]
pub trait Checkpointer: Send + Sync {
    /// Saves `checkpoint`, and drops the pending writes at its parent (they are in it now),
    /// atomically.
    async fn put(&self, thread: &str, checkpoint: &Checkpoint) -> Result<()>;

    /// Saves what a task of the step after checkpoint `at` left. A later write for the same
    /// task replaces an earlier one.
    async fn put_pending(&self, thread: &str, at: u64, write: &PendingWrite) -> Result<()>;

    /// The thread's checkpoints, by id; empty for a thread never written.
    async fn checkpoints(&self, thread: &str) -> Result<Vec<Checkpoint>>;

    /// The pending writes at checkpoint `at`, in the order saved.
    async fn pending(&self, thread: &str, at: u64) -> Result<Vec<PendingWrite>>;

    /// Every thread with checkpoints.
    async fn threads(&self) -> Result<Vec<String>>;

    /// Deletes a thread's checkpoints and pending writes.
    async fn delete_thread(&self, thread: &str) -> Result<()>;

    /// Trims a thread's history, atomically: replaces the checkpoints in `rewrite` (same ids,
    /// now carrying a `base`), deletes those in `delete` and their pending writes.
    async fn prune(&self, thread: &str, rewrite: &[Checkpoint], delete: &[u64]) -> Result<()>;
}

/// Checkpoints in memory: for tests, and for runs that should survive interrupts but not the
/// process.
#[derive(Debug, Default)]
pub struct MemoryCheckpointer {
    threads: Mutex<HashMap<String, MemoryThread>>,
}

#[derive(Debug, Default)]
struct MemoryThread {
    checkpoints: Vec<Checkpoint>,
    pending: HashMap<u64, Vec<PendingWrite>>,
}

impl MemoryCheckpointer {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, MemoryThread>) -> T) -> Result<T> {
        let mut threads =
            self.threads.lock().map_err(|_| Error::store("the in-memory checkpointer was poisoned"))?;
        Ok(f(&mut threads))
    }
}

#[async_trait]
impl Checkpointer for MemoryCheckpointer {
    async fn put(&self, thread: &str, checkpoint: &Checkpoint) -> Result<()> {
        self.with(|threads| {
            let t = threads.entry(thread.to_owned()).or_default();
            if t.checkpoints.iter().any(|c| c.id == checkpoint.id) {
                // What the SQL stores' primary key does: two runs on one thread at once collide.
                return Err(Error::store(format!(
                    "thread `{thread}` already has checkpoint {}: another run on this thread wrote it first",
                    checkpoint.id
                )));
            }
            if let Some(parent) = checkpoint.parent {
                t.pending.remove(&parent);
            }
            t.checkpoints.push(checkpoint.clone());
            Ok(())
        })?
    }

    async fn put_pending(&self, thread: &str, at: u64, write: &PendingWrite) -> Result<()> {
        self.with(|threads| {
            let list = threads.entry(thread.to_owned()).or_default().pending.entry(at).or_default();
            list.retain(|w| w.task() != write.task());
            list.push(write.clone());
        })
    }

    async fn checkpoints(&self, thread: &str) -> Result<Vec<Checkpoint>> {
        self.with(|threads| threads.get(thread).map(|t| t.checkpoints.clone()).unwrap_or_default())
    }

    async fn pending(&self, thread: &str, at: u64) -> Result<Vec<PendingWrite>> {
        self.with(|threads| threads.get(thread).and_then(|t| t.pending.get(&at).cloned()).unwrap_or_default())
    }

    async fn threads(&self) -> Result<Vec<String>> {
        self.with(|threads| {
            let mut names: Vec<String> = threads.keys().cloned().collect();
            names.sort();
            names
        })
    }

    async fn delete_thread(&self, thread: &str) -> Result<()> {
        self.with(|threads| {
            threads.remove(thread);
        })
    }

    async fn prune(&self, thread: &str, rewrite: &[Checkpoint], delete: &[u64]) -> Result<()> {
        self.with(|threads| {
            if let Some(t) = threads.get_mut(thread) {
                t.checkpoints.retain(|c| !delete.contains(&c.id));
                for new in rewrite {
                    if let Some(old) = t.checkpoints.iter_mut().find(|c| c.id == new.id) {
                        *old = new.clone();
                    }
                }
                t.pending.retain(|at, _| !delete.contains(at));
            }
        })
    }
}
