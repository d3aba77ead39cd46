//! # catena-loaders
//!
//! Loaders turn sources into [`Document`](catena_core::Document)s, streamed one at a time, so a
//! large corpus (or a 1 GB file) never has to sit in memory at once. Every document carries its
//! `source` in metadata. A file, page, line or row that cannot be loaded becomes an error item in
//! the stream, naming where it failed, and everything else still loads.
//!
//! ```
//! use catena_core::{Loader, RunContext};
//! use catena_loaders::DirectoryLoader;
//! use futures::StreamExt;
//!
//! # let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
//! # rt.block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! std::fs::write(dir.path().join("a.md"), "---\ntags: [intro]\n---\n# Title\nSome text.").unwrap();
//! std::fs::write(dir.path().join("b.html"), "<title>B</title><nav>menu</nav><p>Page text.</p>").unwrap();
//! std::fs::write(dir.path().join("c.log"), "ignored: not included").unwrap();
//!
//! let loader = DirectoryLoader::new(dir.path()).with_include(["*.md", "*.html"]);
//! let docs: Vec<_> = loader.load(&RunContext::new()).collect().await;
//! let (a, b) = (docs[0].as_ref().unwrap(), docs[1].as_ref().unwrap());
//! assert_eq!((a.metadata["title"].as_str(), a.metadata["tags"][0].as_str()), (Some("Title"), Some("intro")));
//! assert_eq!(b.content, "Page text.");
//! # });
//! ```
//!
//! ## Contents
//! - [`TextLoader`]: a text file, encoding detected, lossy decoding reported, huge files in parts.
//! - [`MarkdownLoader`]: markdown with YAML front matter lifted into metadata.
//! - [`HtmlLoader`] ([`html_document`]): readable text of a page (scraper), title, headings, links.
//! - [`PdfLoader`]: one document per page (lopdf), reading order, page labels, document info.
//! - [`JsonLoader`], [`JsonlLoader`]: items and fields chosen by JSON Pointer; bad lines reported.
//! - [`CsvLoader`]: one document per row; ragged rows kept and reported.
//! - [`DirectoryLoader`]: globs, hidden files skipped, the loader picked per [`FileKind`],
//!   several files at once, per-file errors.
//! - [`UrlLoader`] (feature `url`): HTTP(S) with a timeout and a size cap, then HTML, PDF or text.

mod blocking;
mod csv;
mod directory;
mod html;
mod json;
mod markdown;
mod pdf;
mod text;
#[cfg(feature = "url")]
mod url;

pub use crate::csv::CsvLoader;
#[cfg(feature = "url")]
pub use crate::url::UrlLoader;
pub use directory::{DirectoryLoader, FileKind, load_file};
pub use html::{HtmlLoader, html_document};
pub use json::{JsonLoader, JsonlLoader};
pub use markdown::{MarkdownLoader, read_markdown};
pub use pdf::PdfLoader;
pub use text::{DEFAULT_MAX_DOCUMENT_BYTES, TextLoader, decode_text, looks_binary, read_text};
