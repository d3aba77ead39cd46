//! # catena-splitters
//!
//! Splitters cut documents into chunks small enough to embed and to fit a prompt, with overlap so
//! that a sentence cut at a boundary still appears whole in one chunk.
//!
//! ```
//! use catena_core::{Document, Splitter};
//! use catena_splitters::RecursiveCharacterSplitter;
//!
//! let splitter = RecursiveCharacterSplitter::new(40, 10).unwrap().with_start_index(true);
//! let doc = Document::new("First paragraph here.\n\nSecond paragraph, a little longer than the first.")
//!     .with_metadata("source", "notes.md");
//! let chunks = splitter.split_documents(&[doc]).unwrap();
//! assert!(chunks.iter().all(|c| c.content.chars().count() <= 40));
//! assert_eq!(chunks[0].content, "First paragraph here.");
//! assert_eq!(chunks[1].metadata["start_index"], 23);
//! ```
//!
//! ## Contents
//! - [`RecursiveCharacterSplitter`]: LangChain's `RecursiveCharacterTextSplitter`, chunk for
//!   chunk: literal or regex separators, [`KeepSeparator`], [`LengthFunction`] (characters, bytes,
//!   tokens), `start_index`; [`Language`] presets for code and markup.
//! - [`MarkdownHeaderSplitter`]: LangChain's `MarkdownHeaderTextSplitter` (header path into
//!   metadata, code fences respected, optional header stripping).
//! - [`TokenSplitter`]: windows of model tokens, with [`TiktokenTokenizer`] (feature `tiktoken`)
//!   or a GGUF model's tokenizer.
//! - [`SemanticSplitter`]: breakpoints where consecutive sentences' embeddings drift apart
//!   (LangChain's `SemanticChunker`), plus a maximum chunk size.
//!
//! Every splitter splits many documents in parallel (rayon) and keeps their order.

mod language;
mod length;
mod markdown;
mod recursive;
mod semantic;
mod separator;
mod start_index;
mod token;

pub use language::Language;
pub use length::LengthFunction;
pub use markdown::MarkdownHeaderSplitter;
pub use recursive::RecursiveCharacterSplitter;
pub use semantic::{BreakpointThreshold, SemanticSplitter};
pub use separator::KeepSeparator;
#[cfg(feature = "tiktoken")]
pub use token::TiktokenTokenizer;
pub use token::TokenSplitter;

pub(crate) use start_index::with_start_indices;

use catena_core::{Document, Result};
use rayon::prelude::*;

/// Splits documents on rayon's thread pool, keeping their order. One document is split on the
/// caller's thread: there is nothing to share out.
pub(crate) fn split_in_parallel(
    documents: &[Document],
    split: impl Fn(&Document) -> Result<Vec<Document>> + Sync,
) -> Result<Vec<Document>> {
    if let [one] = documents {
        return split(one);
    }
    let per_document: Vec<Vec<Document>> = documents.par_iter().map(&split).collect::<Result<_>>()?;
    Ok(per_document.into_iter().flatten().collect())
}
