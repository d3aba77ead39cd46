//! A retriever as a tool: the model searches a document collection and gets cited snippets.

use std::sync::Arc;

use catena_core::{Error, Result, Retriever, RunContext, ToolOutput, TypedTool, async_trait};
use catena_retrievers::numbered_sources;
use schemars::JsonSchema;
use serde::Deserialize;

/// Searches documents with any [`Retriever`] and returns the hits as numbered snippets with their
/// sources ([`numbered_sources`]: `[1] (docs/guide.md)` then the text), so the model can cite
/// them; the artifact holds the scored documents for the caller.
///
/// Safety limits: queries up to 1,000 characters; at most `k` hits (the retriever's own k), each
/// snippet cut at `max_chars` (default 800).
///
/// ```
/// use std::sync::Arc;
/// use catena_core::{Document, RunContext, Tool};
/// use catena_retrievers::Bm25Retriever;
/// use catena_tools::RetrieverTool;
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let docs = vec![Document::new("Paris is the capital of France.").with_metadata("source", "geo.md")];
/// let tool = RetrieverTool::new(Arc::new(Bm25Retriever::from_documents(docs).unwrap()));
/// let out = tool.call(serde_json::json!({"query": "capital of France"}), &RunContext::new()).await.unwrap();
/// assert_eq!(out.content, "[1] (geo.md)\nParis is the capital of France.");
/// # });
/// ```
#[derive(Debug)]
pub struct RetrieverTool {
    retriever: Arc<dyn Retriever>,
    max_chars: usize,
}

/// Arguments of [`RetrieverTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// What to look for, in plain words.
    pub query: String,
}

impl RetrieverTool {
    /// A tool over `retriever`.
    #[must_use]
    pub fn new(retriever: Arc<dyn Retriever>) -> Self {
        Self { retriever, max_chars: 800 }
    }

    /// Characters kept of each snippet (at least 1).
    #[must_use]
    pub fn with_max_chars(mut self, max_chars: usize) -> Self {
        self.max_chars = max_chars.max(1);
        self
    }
}

#[async_trait]
impl TypedTool for RetrieverTool {
    type Args = SearchArgs;
    const NAME: &'static str = "search_documents";
    const DESCRIPTION: &'static str = "Searches the document collection and returns the most relevant passages, numbered, with their sources.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: SearchArgs, ctx: &RunContext) -> Result<ToolOutput> {
        let query = args.query.trim();
        if query.chars().count() > 1000 {
            return Err(Error::tool("search_documents", "the query is longer than 1000 characters"));
        }
        let hits = catena_core::telemetry::observe_retrieval(
            ctx,
            "retrieval",
            "search_documents",
            query,
            self.retriever.retrieve(query, ctx),
        )
        .await?;
        if hits.is_empty() {
            return Ok(ToolOutput::text("No matching passages."));
        }
        let content = numbered_sources(&hits, Some(self.max_chars));
        Ok(ToolOutput { content, artifact: serde_json::to_value(&hits).ok() })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::{Document, Tool};
    use catena_retrievers::Bm25Retriever;
    use serde_json::json;

    #[tokio::test]
    async fn numbered_cited_snippets_cut_to_size_and_typed_refusals() {
        let docs = vec![
            Document::new("Rust has   ownership\nand borrowing rules for memory safety.")
                .with_metadata("source", "rust.md"),
            Document::new("Borrowing in Rust means references."),
        ];
        let retriever = Arc::new(Bm25Retriever::from_documents(docs).unwrap().with_k(2));
        let tool = RetrieverTool::new(retriever).with_max_chars(25);
        let ctx = RunContext::new();
        let out = tool.call(json!({"query": "borrowing in Rust"}), &ctx).await.unwrap();
        assert!(out.content.contains("] (rust.md)\nRust has ownership and bo…"), "{}", out.content);
        assert!(out.content.contains("] ((no source))\nBorrowing in Rust means r…"), "{}", out.content);
        assert!(out.content.starts_with("[1] ") && out.content.contains("\n\n[2] "), "{}", out.content);
        assert_eq!(out.artifact.unwrap().as_array().unwrap().len(), 2);
        let none = tool.call(json!({"query": "volcanoes"}), &ctx).await.unwrap();
        assert_eq!(none.content, "No matching passages.");
        let err = tool.call(json!({"query": "x".repeat(1001)}), &ctx).await.unwrap_err();
        assert_eq!(err.kind(), catena_core::ErrorKind::Tool);
        assert_eq!(
            tool.call(json!({"query": ""}), &ctx).await.unwrap_err().kind(),
            catena_core::ErrorKind::InvalidInput
        );
    }
}
