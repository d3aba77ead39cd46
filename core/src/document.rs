//! Documents: the unit that loaders produce, splitters cut, stores keep and retrievers return.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Metadata of a [`Document`]: a JSON object (`source`, `page`, `start_index`, header path, row...).
pub type Metadata = serde_json::Map<String, Value>;

/// A piece of text with where it came from. Chunks are documents too.
///
/// ```
/// use catena_core::Document;
///
/// let doc = Document::new("Rust is a systems language.").with_metadata("source", "notes.md");
/// assert_eq!(doc.source(), Some("notes.md"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Document {
    /// A stable identifier, when the producer or the store assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The text.
    pub content: String,
    /// Where the text came from and anything else known about it.
    #[serde(default)]
    pub metadata: Metadata,
}

impl Document {
    /// A document with no id and empty metadata.
    pub fn new(content: impl Into<String>) -> Self {
        Self { id: None, content: content.into(), metadata: Metadata::new() }
    }

    /// Sets the id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The `source` metadata entry, when it is a string.
    #[must_use]
    pub fn source(&self) -> Option<&str> {
        self.metadata.get("source").and_then(Value::as_str)
    }
}

/// A document with the score a retriever or reranker gave it (higher is more relevant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredDocument {
    /// The document.
    pub document: Document,
    /// Relevance; its scale depends on the producer (documented there).
    pub score: f32,
}

impl ScoredDocument {
    /// Pairs a document with its score.
    #[must_use]
    pub fn new(document: Document, score: f32) -> Self {
        Self { document, score }
    }
}
