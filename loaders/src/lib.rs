//! # catena-loaders
//!
//! Loaders turn sources into [`Document`](catena_core::Document)s, streamed one at a time. Every
//! document carries its `source` in metadata. A file that cannot be loaded becomes an error item
//! in the stream, naming the file, and the other files still load.
//!
//! ```
//! use catena_core::{Loader, RunContext};
//! use catena_loaders::DirectoryLoader;
//! use futures::StreamExt;
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a.md"), "# Title\nSome text.").unwrap();
//! std::fs::write(dir.path().join("b.txt"), "ignored: not markdown").unwrap();
//!
//! let loader = DirectoryLoader::new(dir.path()).with_extensions(["md"]);
//! let docs: Vec<_> = loader.load(&RunContext::new()).collect().await;
//! assert_eq!(docs.len(), 1);
//! assert!(docs[0].as_ref().unwrap().source().unwrap().ends_with("a.md"));
//! # });
//! ```
//!
//! ## Contents
//! - [`TextLoader`]: one file as one document (UTF-8, with a reported lossy fallback).
//! - [`DirectoryLoader`]: every matching file under a folder, in sorted order.

mod directory;
mod text;

pub use directory::DirectoryLoader;
pub use text::{TextLoader, read_text};
