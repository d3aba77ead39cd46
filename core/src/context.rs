//! The run context: what every call carries besides its input, passed explicitly (no globals).

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result};

/// Something that happened during a run, for streaming UIs and logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A model produced text.
    Token {
        /// The new text.
        text: String,
    },
    /// A retriever returned documents.
    Retrieved {
        /// The query.
        query: String,
        /// How many documents came back.
        count: usize,
        /// Their `source` metadata, in rank order.
        sources: Vec<String>,
    },
    /// A tool is about to run.
    ToolStart {
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A tool finished.
    ToolEnd {
        /// The tool.
        name: String,
        /// What it returned (or the error text).
        output: String,
    },
    /// A step of an agent or chain, described by its producer.
    Step {
        /// What kind of step ("thought", "action", "observation"...).
        kind: String,
        /// Its text.
        text: String,
    },
    /// Something the user should know that is not an error (an input truncated, a fallback taken).
    Warning {
        /// What happened.
        message: String,
    },
    /// A line for the run's log, at a severity (an MCP server forwards these to its client as
    /// log notifications).
    Log {
        /// How severe it is.
        level: LogLevel,
        /// The line.
        message: String,
    },
    /// Progress of a long job.
    Progress {
        /// What is progressing.
        task: String,
        /// Units done.
        done: u64,
        /// Units in all, when known.
        total: Option<u64>,
    },
}

/// The severity of an [`Event::Log`] line, least severe first (the syslog levels MCP uses, minus
/// the three above `Error` that a library has no business raising).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LogLevel {
    /// Detail for whoever debugs the tool.
    Debug,
    /// Normal progress worth a line.
    Info,
    /// Normal but significant.
    Notice,
    /// Something unexpected that the run survived.
    Warning,
    /// Something failed.
    Error,
}

/// Receives [`Event`]s. Implemented for closures and for unbounded channels.
pub trait EventSink: Send + Sync {
    /// Handles one event. Must not block for long: it runs on the producer's task.
    fn send(&self, event: Event);
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn send(&self, event: Event) {
        self(event);
    }
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn send(&self, event: Event) {
        // A dropped receiver means nobody is listening any more, which is not an error for the run.
        let _ = tokio::sync::mpsc::UnboundedSender::send(self, event);
    }
}

/// Bounds that apply to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most calls a [`Runnable::batch`](crate::Runnable::batch) runs at once.
    pub max_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_concurrency: 8 }
    }
}

/// What a call carries besides its input.
///
/// A [`RunContext`] holds a cancellation token, the tracing span the run belongs to, an optional
/// [`EventSink`] that receives streaming [`Event`]s (model tokens, retrieved documents, tool calls,
/// agent steps), free-form tags, and [`Limits`]. Cloning is cheap; a child context made with
/// [`RunContext::child`] shares cancellation and events.
#[derive(Clone)]
pub struct RunContext {
    cancel: CancellationToken,
    span: tracing::Span,
    events: Option<Arc<dyn EventSink>>,
    tags: Arc<[String]>,
    limits: Limits,
    extensions: Arc<Extensions>,
    /// Shared by clones and children: a run's usage includes its sub-runs'.
    usage: Arc<crate::usage::Ledger>,
}

/// Values of any type a caller attaches to a run for the code it calls, one per type.
type Extensions = std::collections::HashMap<std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>>;

impl std::fmt::Debug for RunContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunContext")
            .field("cancelled", &self.cancel.is_cancelled())
            .field("has_events", &self.events.is_some())
            .field("tags", &self.tags)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for RunContext {
    fn default() -> Self {
        Self::new()
    }
}

impl RunContext {
    /// A fresh context: not cancelled, no event sink, the current tracing span, default limits.
    #[must_use]
    pub fn new() -> Self {
        Self {
            cancel: CancellationToken::new(),
            span: tracing::Span::current(),
            events: None,
            tags: Arc::from(Vec::new()),
            limits: Limits::default(),
            extensions: Arc::default(),
            usage: Arc::default(),
        }
    }

    /// Prices model calls by `prices` instead of the built-in table, starting a new usage
    /// count (what [`usage`](Self::usage) reports).
    #[must_use]
    pub fn with_prices(mut self, prices: crate::PriceTable) -> Self {
        self.usage = Arc::new(crate::usage::Ledger::new(Arc::new(prices)));
        self
    }

    /// The same context with a usage count of its own, starting from zero and priced as this
    /// one: for a sub-run whose usage is reported apart (one request of a server, say).
    #[must_use]
    pub fn with_new_usage(mut self) -> Self {
        self.usage = Arc::new(crate::usage::Ledger::new(Arc::clone(self.usage.prices())));
        self
    }

    /// Counts one model call's tokens for the run (chat models call this; the built-in ones
    /// do); returns its cost when the model's price is known. Local providers (`llama.cpp`)
    /// cost nothing.
    pub fn record_usage(&self, provider: &str, model: &str, usage: crate::Usage) -> Option<f64> {
        self.usage.record(provider, model, usage)
    }

    /// The tokens and cost of every model call recorded in this run so far, per model, its
    /// clones' and children's included.
    #[must_use]
    pub fn usage(&self) -> crate::UsageReport {
        self.usage.report()
    }

    /// The prices this run's calls are costed by.
    #[must_use]
    pub fn prices(&self) -> &crate::PriceTable {
        self.usage.prices()
    }

    /// Attaches `value` for the code this run calls, replacing an earlier value of the same type
    /// (as `http::Extensions` does for requests). This is how a host hands a tool something only
    /// the host has: an MCP server attaches the connected client, so a tool can ask that client's
    /// model or user (`McpClientPeer` in `catena-tools`). Child contexts see it too.
    #[must_use]
    pub fn with_extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        Arc::make_mut(&mut self.extensions).insert(std::any::TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// The value of type `T` attached with [`RunContext::with_extension`], if any.
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extensions.get(&std::any::TypeId::of::<T>()).and_then(|value| value.downcast_ref::<T>())
    }

    /// Sends events to `sink`.
    #[must_use]
    pub fn with_events(mut self, sink: impl EventSink + 'static) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// Sets the batch concurrency cap (at least 1).
    #[must_use]
    pub fn with_max_concurrency(mut self, max_concurrency: usize) -> Self {
        self.limits.max_concurrency = max_concurrency.max(1);
        self
    }

    /// Adds a tag (for tracing and event consumers).
    #[must_use]
    pub fn with_tag(mut self, tag: impl Into<String>) -> Self {
        let mut tags = self.tags.to_vec();
        tags.push(tag.into());
        self.tags = Arc::from(tags);
        self
    }

    /// Runs under this tracing span.
    #[must_use]
    pub fn with_span(mut self, span: tracing::Span) -> Self {
        self.span = span;
        self
    }

    /// A context for a sub-run: cancelled when this one is (but cancelling it leaves this one alone),
    /// same events, tags and limits.
    #[must_use]
    pub fn child(&self) -> Self {
        Self { cancel: self.cancel.child_token(), ..self.clone() }
    }

    /// The cancellation token; cancel it to stop the run.
    #[must_use]
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Requests cancellation of the run.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether cancellation was requested.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// `Err(Error::Cancelled)` once cancellation was requested; long loops call this between steps.
    pub fn check_cancelled(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }

    /// The tracing span of the run.
    #[must_use]
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// The tags.
    #[must_use]
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The sink events go to, for a wrapper that filters them ([`security`](crate::security)).
    pub(crate) fn event_sink(&self) -> Option<Arc<dyn EventSink>> {
        self.events.clone()
    }

    /// Whether anyone listens for events (producers may skip building costly events when not).
    #[must_use]
    pub fn has_event_sink(&self) -> bool {
        self.events.is_some()
    }

    /// Emits an event to the sink, if there is one.
    pub fn emit(&self, event: Event) {
        if let Some(sink) = &self.events {
            sink.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Peer(&'static str);

    #[test]
    fn extensions_are_typed_replaced_and_seen_by_children() {
        let ctx = RunContext::new().with_extension(Peer("first")).with_extension(7_u32);
        assert_eq!(ctx.extension::<Peer>(), Some(&Peer("first")));
        assert_eq!(ctx.extension::<u32>(), Some(&7));
        assert_eq!(ctx.extension::<String>(), None);
        let replaced = ctx.clone().with_extension(Peer("second"));
        assert_eq!(replaced.extension::<Peer>(), Some(&Peer("second")));
        // The original keeps its own value: extensions are copied on write, not shared.
        assert_eq!(ctx.extension::<Peer>(), Some(&Peer("first")));
        assert_eq!(ctx.child().extension::<Peer>(), Some(&Peer("first")));
    }
}
