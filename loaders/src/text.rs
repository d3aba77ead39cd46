//! [`TextLoader`]: one text or markdown file as one document.

use std::path::{Path, PathBuf};

use catena_core::{Document, Error, Event, Loader, Result, RunContext};
use futures::stream::{self, BoxStream};

/// Loads one file as one [`Document`] with `source` (the path) in its metadata.
///
/// Bytes that are not UTF-8 are replaced with U+FFFD, the document is marked with
/// `"lossy_utf8": true`, and a [`Event::Warning`] says so: the text is kept, and the loss is never
/// silent. An empty (or whitespace-only) file is an [`Error::InvalidInput`] naming it.
#[derive(Debug, Clone)]
pub struct TextLoader {
    path: PathBuf,
}

impl TextLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

/// Reads `path` as a document (see [`TextLoader`] for the rules).
pub fn read_text(path: &Path, ctx: &RunContext) -> Result<Document> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (content, lossy) = match String::from_utf8(bytes) {
        Ok(s) => (s, false),
        Err(e) => {
            let s = String::from_utf8_lossy(e.as_bytes()).into_owned();
            ctx.emit(Event::Warning {
                message: format!(
                    "{} is not valid UTF-8; undecodable bytes were replaced with U+FFFD",
                    path.display()
                ),
            });
            (s, true)
        }
    };
    if content.trim().is_empty() {
        return Err(Error::invalid_input(format!("{} is empty: there is nothing to load", path.display())));
    }
    let mut doc = Document::new(content).with_metadata("source", path.to_string_lossy().into_owned());
    if lossy {
        doc = doc.with_metadata("lossy_utf8", true);
    }
    Ok(doc)
}

impl Loader for TextLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        Box::pin(stream::once(async move { read_text(&self.path, ctx) }))
    }
}
