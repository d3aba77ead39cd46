//! What a graph works on: its state type, and where a node's run goes next.

use catena_core::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The state a graph's nodes read and update. Derive it with
/// [`#[derive(GraphState)]`](macro@super::GraphState), which writes the [`Update`](Self::Update)
/// type and the reducers; implement it by hand for anything the derive does not cover.
///
/// A node never replaces the state: it returns an [`Update`](Self::Update), a partial state
/// whose set fields are merged by each field's reducer (overwrite, append, or a function). Parallel
/// nodes of one super-step return their updates independently; they are applied in the order the
/// nodes were scheduled, so the result does not depend on which finished first.
///
/// States and updates are stored as JSON by [checkpointers](super::Checkpointer): only the
/// updates of each step are written, and a state is rebuilt by applying them in order from
/// [`Default`].
pub trait GraphState: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// A partial update: what a node returns, every field optional.
    type Update: Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// Merges `update` into the state, field by field, through each field's reducer.
    fn apply(&mut self, update: Self::Update);
}

/// Where a conditional edge sends the run: to a node, to a node with an input of its own (one
/// task per item of a fan-out, LangGraph's `Send`), or to the end.
#[derive(Debug, Clone, PartialEq)]
pub enum Goto {
    /// Run this node next (once, however many routes name it in a step).
    Node(String),
    /// Run this node next as a task of its own with `input` (read with
    /// [`NodeContext::input`](super::NodeContext::input)); every `Send` is a separate task.
    Send(String, Value),
    /// Stop this branch of the run.
    End,
}

impl Goto {
    /// Run `node` next.
    pub fn to(node: impl Into<String>) -> Self {
        Self::Node(node.into())
    }

    /// Run `node` next as a task of its own with `input`.
    ///
    /// # Errors
    /// `input` does not serialize to JSON.
    pub fn send(node: impl Into<String>, input: &impl Serialize) -> Result<Self> {
        let input = serde_json::to_value(input)
            .map_err(|e| Error::invalid_input(format!("a Send's input does not serialize: {e}")))?;
        Ok(Self::Send(node.into(), input))
    }

    /// The node this goes to (`None` for [`Goto::End`]).
    #[must_use]
    pub fn node(&self) -> Option<&str> {
        match self {
            Self::Node(n) | Self::Send(n, _) => Some(n),
            Self::End => None,
        }
    }
}

impl From<Goto> for Vec<Goto> {
    fn from(goto: Goto) -> Self {
        vec![goto]
    }
}

impl From<&str> for Goto {
    fn from(node: &str) -> Self {
        if node == super::END { Self::End } else { Self::Node(node.to_owned()) }
    }
}
