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
//! - [`RecursiveCharacterSplitter`]: LangChain's `RecursiveCharacterTextSplitter` algorithm
//!   (separators tried in order, pieces merged up to the chunk size with overlap).

mod recursive;

pub use recursive::{KeepSeparator, RecursiveCharacterSplitter};
