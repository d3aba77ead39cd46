//! [`JsonLoader`] and [`JsonlLoader`]: documents from JSON values, chosen by JSON Pointer.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::BoxStream;
use serde_json::Value;

use crate::blocking::blocking_stream;

/// Which parts of a JSON value make a document: the content (a JSON Pointer, RFC 6901, relative
/// to the item; `""` is the whole item) and metadata keys with their pointers.
#[derive(Debug, Clone, Default)]
struct Selection {
    content: String,
    metadata: Vec<(String, String)>,
}

impl Selection {
    /// The document for one item; `what` names it in errors (`file.json item 3`).
    fn document(&self, item: &Value, source: &str, seq_num: usize, what: &str) -> Result<Document> {
        let content = item.pointer(&self.content).ok_or_else(|| {
            Error::invalid_input(format!("{what}: no value at content pointer {:?}", self.content))
        })?;
        let content = match content {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut doc =
            Document::new(content).with_metadata("source", source).with_metadata("seq_num", seq_num);
        for (key, pointer) in &self.metadata {
            if let Some(v) = item.pointer(pointer) {
                doc.metadata.insert(key.clone(), v.clone());
            }
        }
        Ok(doc)
    }
}

/// Loads a JSON file: the array at the items pointer (default: the whole file, which may also be
/// a single object) gives one [`Document`] per element, with `source` and `seq_num` (1-based, as
/// LangChain's JSONLoader). Content and metadata are picked from each item by JSON Pointer;
/// string content is taken as is, anything else as its JSON text.
///
/// ```
/// # use catena_loaders::JsonLoader;
/// let loader = JsonLoader::new("chat.json")
///     .with_items("/messages")
///     .with_content("/text")
///     .with_metadata("sender", "/sender_name");
/// ```
#[derive(Debug, Clone)]
pub struct JsonLoader {
    path: PathBuf,
    items: String,
    selection: Selection,
}

impl JsonLoader {
    /// A loader for `path`: every element of the top-level array (or the top-level value).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), items: String::new(), selection: Selection::default() }
    }

    /// The pointer to the array (or single value) holding the items.
    #[must_use]
    pub fn with_items(mut self, pointer: impl Into<String>) -> Self {
        self.items = pointer.into();
        self
    }

    /// The pointer, within each item, to the content.
    #[must_use]
    pub fn with_content(mut self, pointer: impl Into<String>) -> Self {
        self.selection.content = pointer.into();
        self
    }

    /// Copies the value at `pointer` (within each item) into metadata as `key`.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, pointer: impl Into<String>) -> Self {
        self.selection.metadata.push((key.into(), pointer.into()));
        self
    }
}

fn load_json(path: &Path, items: &str, selection: &Selection) -> Vec<Result<Document>> {
    let source = path.to_string_lossy();
    let value: Value = match std::fs::File::open(path).map_err(|e| Error::io(path, e)).and_then(|f| {
        serde_json::from_reader(std::io::BufReader::new(f)).map_err(|e| {
            Error::parse("JSON", format!("{source}: {e} (line {}, column {})", e.line(), e.column()))
        })
    }) {
        Ok(v) => v,
        Err(e) => return vec![Err(e)],
    };
    let Some(found) = value.pointer(items) else {
        return vec![Err(Error::invalid_input(format!("{source}: no value at items pointer {items:?}")))];
    };
    match found {
        Value::Array(elements) => elements
            .iter()
            .enumerate()
            .map(|(i, item)| selection.document(item, &source, i + 1, &format!("{source} item {}", i + 1)))
            .collect(),
        single => vec![selection.document(single, &source, 1, &source)],
    }
}

impl Loader for JsonLoader {
    fn load<'a>(&'a self, _ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let this = self.clone();
        blocking_stream(move |sink| {
            for item in load_json(&this.path, &this.items, &this.selection) {
                if !sink.send(item) {
                    return;
                }
            }
        })
    }
}

/// Loads a JSON Lines file one line at a time (bounded memory): one [`Document`] per non-blank
/// line, `seq_num` being the line number. A line that is not valid JSON is an error item naming
/// the file and line; the other lines still load.
#[derive(Debug, Clone)]
pub struct JsonlLoader {
    path: PathBuf,
    selection: Selection,
}

impl JsonlLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), selection: Selection::default() }
    }

    /// The pointer, within each line's value, to the content.
    #[must_use]
    pub fn with_content(mut self, pointer: impl Into<String>) -> Self {
        self.selection.content = pointer.into();
        self
    }

    /// Copies the value at `pointer` into metadata as `key`.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, pointer: impl Into<String>) -> Self {
        self.selection.metadata.push((key.into(), pointer.into()));
        self
    }
}

impl Loader for JsonlLoader {
    fn load<'a>(&'a self, _ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let this = self.clone();
        blocking_stream(move |sink| {
            let path = &this.path;
            let source = path.to_string_lossy();
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    sink.send(Err(Error::io(path, e)));
                    return;
                }
            };
            let mut reader = std::io::BufReader::new(file);
            let mut line = Vec::new();
            let mut number = 0;
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) => return,
                    Ok(_) => number += 1,
                    Err(e) => {
                        sink.send(Err(Error::io(path, e)));
                        return;
                    }
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let what = format!("{source} line {number}");
                let item = serde_json::from_slice::<Value>(&line)
                    .map_err(|e| Error::parse("JSON Lines", format!("{what}: {e}")))
                    .and_then(|v| this.selection.document(&v, &source, number, &what));
                if !sink.send(item) {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use futures::StreamExt;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn json_items_by_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.json");
        std::fs::write(
            &path,
            r#"{"messages": [{"text": "hi", "from": {"name": "ann"}}, {"text": {"rich": 1}}]}"#,
        )
        .unwrap();
        let loader = JsonLoader::new(&path)
            .with_items("/messages")
            .with_content("/text")
            .with_metadata("sender", "/from/name");
        let docs: Vec<_> = loader.load(&RunContext::new()).collect().await;
        let first = docs[0].as_ref().unwrap();
        assert_eq!(
            (first.content.as_str(), &first.metadata["sender"], &first.metadata["seq_num"]),
            ("hi", &Value::from("ann"), &Value::from(1))
        );
        assert_eq!(docs[1].as_ref().unwrap().content, r#"{"rich":1}"#);

        std::fs::write(&path, r#"{"messages": [1, 2"#).unwrap();
        let docs: Vec<_> = JsonLoader::new(&path).load(&RunContext::new()).collect().await;
        let err = docs[0].as_ref().unwrap_err();
        assert!(err.to_string().contains("chat.json") && err.to_string().contains("line 1"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_jsonl_lines_are_reported_with_their_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, "{\"t\": \"one\"}\n{broken\n\n{\"t\": \"three\"}\n{\"x\": 1}\n").unwrap();
        let docs: Vec<_> =
            JsonlLoader::new(&path).with_content("/t").load(&RunContext::new()).collect().await;
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].as_ref().unwrap().content, "one");
        assert!(docs[1].as_ref().unwrap_err().to_string().contains("data.jsonl line 2"));
        assert_eq!(docs[2].as_ref().unwrap().metadata["seq_num"], 4);
        assert!(docs[3].as_ref().unwrap_err().to_string().contains("line 5: no value at content pointer"));
    }
}
