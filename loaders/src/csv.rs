//! [`CsvLoader`]: one document per row of a CSV file.

use std::path::PathBuf;

use catena_core::{Document, Error, Event, Loader, Result, RunContext};
use futures::stream::BoxStream;
use serde_json::Value;

use crate::blocking::blocking_stream;

/// Loads a CSV file one row at a time (bounded memory), as LangChain's CSVLoader does: each row
/// is a [`Document`] whose content is `column: value` lines (the content columns, by default every
/// column not chosen for metadata), with `source`, `row` (0-based) and the metadata columns.
///
/// A row with fewer fields than the header gets empty values, and one with more keeps the extra
/// values under an `_extra` line: nothing is dropped, each such row is marked `"ragged": true`,
/// and a warning names it. A row the CSV reader cannot parse is an error item; the rest load.
#[derive(Debug, Clone)]
pub struct CsvLoader {
    path: PathBuf,
    content_columns: Vec<String>,
    metadata_columns: Vec<String>,
    delimiter: u8,
}

impl CsvLoader {
    /// A loader for `path` (comma-separated, with a header row).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), content_columns: Vec::new(), metadata_columns: Vec::new(), delimiter: b',' }
    }

    /// Only these columns form the content.
    #[must_use]
    pub fn with_content_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.content_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// These columns go into metadata (and out of the default content).
    #[must_use]
    pub fn with_metadata_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.metadata_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// The field delimiter (`b'\t'` for TSV).
    #[must_use]
    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    fn in_content(&self, column: &str) -> bool {
        if self.content_columns.is_empty() {
            !self.metadata_columns.iter().any(|c| c == column)
        } else {
            self.content_columns.iter().any(|c| c == column)
        }
    }
}

impl Loader for CsvLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let (this, ctx) = (self.clone(), ctx.clone());
        blocking_stream(move |sink| {
            let path = &this.path;
            let source = path.to_string_lossy().into_owned();
            let mut reader =
                match csv::ReaderBuilder::new().flexible(true).delimiter(this.delimiter).from_path(path) {
                    Ok(r) => r,
                    Err(e) => {
                        sink.send(Err(Error::invalid_input(format!("{source}: cannot read CSV ({e})"))));
                        return;
                    }
                };
            let headers: Vec<String> = match reader.headers() {
                Ok(h) => h.iter().map(|s| s.trim().to_owned()).collect(),
                Err(e) => {
                    sink.send(Err(Error::parse(
                        "CSV",
                        format!("{source}: the header row is unreadable ({e})"),
                    )));
                    return;
                }
            };
            for (row, record) in reader.records().enumerate() {
                let item = record.map_err(|e| Error::parse("CSV", format!("{source} row {row}: {e}"))).map(
                    |record| {
                        let mut lines = Vec::new();
                        let mut doc = Document::new(String::new())
                            .with_metadata("source", source.clone())
                            .with_metadata("row", row);
                        for (i, column) in headers.iter().enumerate() {
                            let value = record.get(i).unwrap_or_default().trim();
                            if this.metadata_columns.iter().any(|c| c == column) {
                                doc.metadata.insert(column.clone(), Value::String(value.to_owned()));
                            }
                            if this.in_content(column) {
                                lines.push(format!("{column}: {value}"));
                            }
                        }
                        if record.len() != headers.len() {
                            let extra: Vec<&str> = record.iter().skip(headers.len()).map(str::trim).collect();
                            if !extra.is_empty() {
                                lines.push(format!("_extra: {}", extra.join(",")));
                            }
                            doc.metadata.insert("ragged".into(), Value::Bool(true));
                            ctx.emit(Event::Warning {
                                message: format!(
                                    "{source} row {row} has {} fields where the header has {}",
                                    record.len(),
                                    headers.len()
                                ),
                            });
                        }
                        doc.content = lines.join("\n");
                        doc
                    },
                );
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
    async fn rows_columns_and_ragged_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "id,name,notes\n1,Ann,\"likes, commas\"\n2,Bob\n3,Cy,x,extra\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = RunContext::new().with_events(tx);
        let loader = CsvLoader::new(&path).with_metadata_columns(["id"]);
        let docs: Vec<_> = loader.load(&ctx).collect().await;
        let docs: Vec<_> = docs.into_iter().map(Result::unwrap).collect();
        assert_eq!(docs[0].content, "name: Ann\nnotes: likes, commas");
        assert_eq!((&docs[0].metadata["id"], &docs[0].metadata["row"]), (&Value::from("1"), &Value::from(0)));
        assert_eq!(docs[1].content, "name: Bob\nnotes: ");
        assert_eq!(docs[1].metadata["ragged"], true);
        assert_eq!(docs[2].content, "name: Cy\nnotes: x\n_extra: extra");
        assert!(
            matches!(rx.try_recv(), Ok(Event::Warning { message }) if message.contains("row 1 has 2 fields"))
        );
    }
}
