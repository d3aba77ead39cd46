//! The one error type of catena, with kinds a caller can act on.
//!
//! Every fallible catena call returns [`Result<T>`]. Match on [`Error::kind`] to decide what to do:
//! retry a [`ErrorKind::ModelTransient`], shorten the prompt on [`ErrorKind::ContextLengthExceeded`],
//! show an [`ErrorKind::InvalidInput`] to the user. The message always says what went wrong and, where
//! there is one, what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// The `Result` alias used across catena.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What class of failure an [`Error`] is: the part of an error a program branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller passed something unusable (a missing prompt variable, an empty query, k = 0...).
    InvalidInput,
    /// A model call failed in a way that may succeed if retried (rate limit, overload, reset).
    ModelTransient,
    /// A model call failed and retrying the same request will not help (bad model file, 4xx).
    ModelPermanent,
    /// The prompt does not fit the model's context window.
    ContextLengthExceeded,
    /// A vector store or database operation failed.
    Store,
    /// A tool failed while running.
    Tool,
    /// Output (usually a model's) could not be parsed into the expected shape.
    Parse,
    /// Reading or writing a file failed.
    Io,
    /// The operation ran past its deadline.
    Timeout,
    /// The operation was cancelled through its [`RunContext`](crate::RunContext).
    Cancelled,
    /// A graph node paused for a person (an interrupt): the run is saved, and resumes when the
    /// thread is given a value. Not a failure; a node sees it only when it calls `interrupt`.
    Interrupted,
    /// A run reached one of its limits (super-steps, a budget, a call count); the message names
    /// the limit and what was running.
    LimitExceeded,
    /// A defence stopped the output: a canary or a secret appeared in an answer or in a tool
    /// call's arguments ([`security`](crate::security)). Retrying the same request is unsafe.
    Blocked,
}

/// A lower-level error kept as the cause of an [`Error`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error type of every catena crate.
///
/// Each variant carries a message that says what went wrong and what to do next (quoting the
/// underlying failure where that is the useful part) and, where a lower-level error caused it,
/// that error as its [`source`](std::error::Error::source): an `sqlx::Error`, a `lancedb::Error`,
/// a `reqwest::Error`, an `std::io::Error`, for a program that needs to look deeper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// See [`ErrorKind::InvalidInput`].
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What is wrong with the input, and what to pass instead.
        message: String,
        /// The underlying error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// A model failed; `kind` says whether retrying can help.
    #[error("model error ({kind}): {message}")]
    Model {
        /// Transient, permanent or context-length.
        kind: ModelErrorKind,
        /// What happened, and what to do about it.
        message: String,
        /// The underlying error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Store`].
    #[error("store error: {message}")]
    Store {
        /// What failed.
        message: String,
        /// The underlying error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// A tool failed.
    #[error("tool `{tool}` failed: {message}")]
    Tool {
        /// The tool's name.
        tool: String,
        /// What went wrong.
        message: String,
        /// The underlying error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// See [`ErrorKind::Parse`].
    #[error("could not parse {what}: {message}")]
    Parse {
        /// What was being parsed ("model output as JSON", "tool arguments"...).
        what: String,
        /// Why it failed.
        message: String,
        /// The underlying error, if one caused it.
        #[source]
        source: Option<BoxError>,
    },
    /// An I/O error, with the path involved when there is one.
    #[error("{}: {source}", path.as_ref().map_or_else(|| "I/O error".to_owned(), |p| p.display().to_string()))]
    Io {
        /// The file or directory the operation was on.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// See [`ErrorKind::Timeout`].
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// See [`ErrorKind::Cancelled`].
    #[error("cancelled")]
    Cancelled,
    /// See [`ErrorKind::Interrupted`].
    #[error("interrupted at node `{node}`: the run waits to be resumed")]
    Interrupted {
        /// The node that paused.
        node: String,
    },
    /// See [`ErrorKind::LimitExceeded`].
    #[error("limit reached: {message}")]
    Limit {
        /// Which limit, what was running, and how to raise it.
        message: String,
    },
    /// See [`ErrorKind::Blocked`].
    #[error("blocked: {message}")]
    Blocked {
        /// What leaked (never the leaked text itself) and where.
        message: String,
    },
}

/// The three ways a model call can fail, as far as a caller's next step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModelErrorKind {
    /// Retrying may succeed.
    Transient,
    /// Retrying the same request will fail again.
    Permanent,
    /// The request is longer than the model's context window.
    ContextLengthExceeded,
}

impl std::fmt::Display for ModelErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
            Self::ContextLengthExceeded => "context length exceeded",
        })
    }
}

impl Error {
    /// The class of this error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::Model { kind: ModelErrorKind::Transient, .. } => ErrorKind::ModelTransient,
            Self::Model { kind: ModelErrorKind::Permanent, .. } => ErrorKind::ModelPermanent,
            Self::Model { kind: ModelErrorKind::ContextLengthExceeded, .. } => {
                ErrorKind::ContextLengthExceeded
            }
            Self::Store { .. } => ErrorKind::Store,
            Self::Tool { .. } => ErrorKind::Tool,
            Self::Parse { .. } => ErrorKind::Parse,
            Self::Io { .. } => ErrorKind::Io,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Interrupted { .. } => ErrorKind::Interrupted,
            Self::Limit { .. } => ErrorKind::LimitExceeded,
            Self::Blocked { .. } => ErrorKind::Blocked,
        }
    }

    /// Whether retrying the same call may succeed: transient model errors and timeouts.
    ///
    /// This is the default predicate of [`RetryPolicy`](crate::RetryPolicy).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self.kind(), ErrorKind::ModelTransient | ErrorKind::Timeout)
    }

    /// An [`Error::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput { message: message.into(), source: None }
    }

    /// A transient [`Error::Model`].
    pub fn model_transient(message: impl Into<String>) -> Self {
        Self::model(ModelErrorKind::Transient, message)
    }

    /// A permanent [`Error::Model`].
    pub fn model_permanent(message: impl Into<String>) -> Self {
        Self::model(ModelErrorKind::Permanent, message)
    }

    /// A context-length [`Error::Model`].
    pub fn context_length(message: impl Into<String>) -> Self {
        Self::model(ModelErrorKind::ContextLengthExceeded, message)
    }

    fn model(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self::Model { kind, message: message.into(), source: None }
    }

    /// An [`Error::Parse`].
    pub fn parse(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Parse { what: what.into(), message: message.into(), source: None }
    }

    /// An [`Error::Tool`].
    pub fn tool(tool: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Tool { tool: tool.into(), message: message.into(), source: None }
    }

    /// An [`Error::Limit`].
    pub fn limit(message: impl Into<String>) -> Self {
        Self::Limit { message: message.into() }
    }

    /// An [`Error::Store`].
    pub fn store(message: impl Into<String>) -> Self {
        Self::Store { message: message.into(), source: None }
    }

    /// Keeps `cause` as this error's [`source`](std::error::Error::source), so a caller can reach
    /// the lower-level error behind the message (the message stays as it is). An I/O error keeps
    /// its own source, and timeouts and cancellations have none.
    ///
    /// ```
    /// use catena_core::Error;
    ///
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    /// let e = Error::store(format!("cannot write the table: {io}")).with_source(io);
    /// let cause = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<std::io::Error>());
    /// assert_eq!(cause.map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionReset));
    /// ```
    #[must_use]
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        match &mut self {
            Self::InvalidInput { source, .. }
            | Self::Model { source, .. }
            | Self::Store { source, .. }
            | Self::Tool { source, .. }
            | Self::Parse { source, .. } => *source = Some(cause.into()),
            Self::Io { .. }
            | Self::Timeout(_)
            | Self::Cancelled
            | Self::Interrupted { .. }
            | Self::Limit { .. }
            | Self::Blocked { .. } => {}
        }
        self
    }

    /// An [`Error::Io`] naming the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: Some(path.into()), source }
    }
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Self::Io { path: None, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_transience() {
        assert_eq!(Error::model_transient("429").kind(), ErrorKind::ModelTransient);
        assert!(Error::model_transient("429").is_transient());
        assert!(!Error::model_permanent("bad file").is_transient());
        assert_eq!(Error::context_length("too long").kind(), ErrorKind::ContextLengthExceeded);
        assert!(Error::Timeout(Duration::from_secs(1)).is_transient());
        assert!(!Error::Cancelled.is_transient());
    }

    #[test]
    fn causes_are_kept_as_sources_and_the_message_stays() {
        use std::error::Error as _;
        let cause = std::io::Error::other("disk on fire");
        let e = Error::store("cannot save the table").with_source(cause);
        assert_eq!(e.to_string(), "store error: cannot save the table");
        assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("disk on fire"));
        assert!(Error::store("x").source().is_none());
        let e = Error::model_transient("503").with_source(std::fmt::Error);
        assert_eq!(e.kind(), ErrorKind::ModelTransient);
        assert!(e.source().is_some_and(|s| s.is::<std::fmt::Error>()));
    }

    #[test]
    fn io_error_names_its_path() {
        let e = Error::io("/no/such", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("/no/such: "), "{e}");
    }
}
