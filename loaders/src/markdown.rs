//! [`MarkdownLoader`]: a markdown file, its front matter lifted into metadata.

use std::path::{Path, PathBuf};

use catena_core::{Document, Event, Loader, Result, RunContext};
use futures::stream::BoxStream;
use serde_json::Value;

use crate::blocking::blocking_stream;
use crate::text::read_text;

/// Loads a markdown file like [`TextLoader`](crate::TextLoader) and moves a YAML front-matter
/// block (`---` ... `---` at the top) into metadata: each key of a mapping becomes a metadata key
/// (`source` stays the path). When the file has no `title` in its front matter, its first `# `
/// heading becomes `title`. Front matter that is not valid YAML is left in the content, and a
/// warning says why.
#[derive(Debug, Clone)]
pub struct MarkdownLoader {
    path: PathBuf,
}

impl MarkdownLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

/// Reads a markdown file (see [`MarkdownLoader`]).
pub fn read_markdown(path: &Path, ctx: &RunContext) -> Result<Document> {
    let mut doc = read_text(path, ctx)?;
    lift_front_matter(&mut doc, ctx);
    if !doc.metadata.contains_key("title") {
        let title = doc.content.lines().find_map(|l| l.strip_prefix("# ")).map(|t| t.trim().to_owned());
        if let Some(title) = title {
            doc.metadata.insert("title".into(), Value::String(title));
        }
    }
    Ok(doc)
}

fn lift_front_matter(doc: &mut Document, ctx: &RunContext) {
    let content = doc.content.trim_start_matches('\u{feff}');
    let Some(rest) = content.strip_prefix("---\n").or_else(|| content.strip_prefix("---\r\n")) else {
        return;
    };
    let Some(end) = rest.find("\n---").filter(|&i| {
        let after = rest.get(i + 4..).unwrap_or_default();
        after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n")
    }) else {
        return;
    };
    let yaml = rest.get(..end).unwrap_or_default();
    let body = rest.get(end + 4..).unwrap_or_default().trim_start_matches(['\r', '\n']).to_owned();
    match serde_yaml_ng::from_str::<Value>(yaml) {
        Ok(Value::Object(map)) => {
            for (k, v) in map {
                if k != "source" {
                    doc.metadata.insert(k, v);
                }
            }
            doc.content = body;
        }
        Ok(Value::Null) => doc.content = body,
        Ok(other) => {
            doc.metadata.insert("front_matter".into(), other);
            doc.content = body;
        }
        Err(e) => ctx.emit(Event::Warning {
            message: format!(
                "{}: the front matter is not valid YAML ({e}); it was left in the content",
                doc.source().unwrap_or("markdown")
            ),
        }),
    }
}

impl Loader for MarkdownLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let (path, ctx) = (self.path.clone(), ctx.clone());
        blocking_stream(move |sink| {
            sink.send(read_markdown(&path, &ctx));
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn front_matter_becomes_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.md");
        std::fs::write(&ok, "---\ntitle: Guide\ntags: [a, b]\nsource: ignored\n---\n# Heading\nBody")
            .unwrap();
        let doc = read_markdown(&ok, &RunContext::new()).unwrap();
        assert_eq!(doc.metadata["title"], "Guide");
        assert_eq!(doc.metadata["tags"], serde_json::json!(["a", "b"]));
        assert!(doc.metadata["source"].as_str().unwrap().ends_with("ok.md"));
        assert_eq!(doc.content, "# Heading\nBody");

        let bad = dir.path().join("bad.md");
        std::fs::write(&bad, "---\ntitle: [unclosed\n---\n# Real title\ntext").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let doc = read_markdown(&bad, &RunContext::new().with_events(tx)).unwrap();
        assert!(doc.content.starts_with("---\ntitle: [unclosed"), "nothing is lost");
        assert_eq!(doc.metadata["title"], "Real title");
        assert!(
            matches!(rx.try_recv(), Ok(Event::Warning { message }) if message.contains("not valid YAML"))
        );
    }
}
