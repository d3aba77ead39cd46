//! [`DirectoryLoader`]: every matching file under a folder, each with the loader for its format.

use std::path::{Path, PathBuf};

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::{self, BoxStream, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{CsvLoader, HtmlLoader, JsonLoader, JsonlLoader, MarkdownLoader, PdfLoader, TextLoader};

/// The formats a directory load recognises by file extension; anything else is read as text
/// (binary files are then reported, not loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `.md`, `.markdown`, `.mdx`
    Markdown,
    /// `.html`, `.htm`, `.xhtml`
    Html,
    /// `.pdf`
    Pdf,
    /// `.json`
    Json,
    /// `.jsonl`, `.ndjson`
    Jsonl,
    /// `.csv`, `.tsv`
    Csv,
    /// everything else
    Text,
}

impl FileKind {
    /// The kind a path's extension names.
    pub fn of(path: &Path) -> FileKind {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" | "mdx" => FileKind::Markdown,
            "html" | "htm" | "xhtml" => FileKind::Html,
            "pdf" => FileKind::Pdf,
            "json" => FileKind::Json,
            "jsonl" | "ndjson" => FileKind::Jsonl,
            "csv" | "tsv" => FileKind::Csv,
            _ => FileKind::Text,
        }
    }

    /// Its name in spans and logs: `markdown`, `html`, `pdf`, `json`, `jsonl`, `csv`, `text`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Markdown => "markdown",
            FileKind::Html => "html",
            FileKind::Pdf => "pdf",
            FileKind::Json => "json",
            FileKind::Jsonl => "jsonl",
            FileKind::Csv => "csv",
            FileKind::Text => "text",
        }
    }
}

/// Loads every file under a folder, recursively, in sorted path order (so runs are
/// reproducible), each with the loader its extension calls for ([`FileKind`]).
///
/// - `include` / `exclude` globs (`"**/*.md"`, `"target/**"`) match paths relative to the root;
///   with no include glob every file is a candidate.
/// - Hidden files and folders (names starting with `.`) are skipped unless asked for.
/// - Up to `concurrency` files (default 4) are read at once; documents still come out in path
///   order.
/// - A file that fails is an error item naming it, and the walk goes on: one corrupt PDF never
///   costs the rest of the corpus.
///
/// Each file's documents are gathered before they are passed on; for a single huge file, use its
/// loader directly, which streams.
#[derive(Debug, Clone)]
pub struct DirectoryLoader {
    root: PathBuf,
    include: Vec<String>,
    exclude: Vec<String>,
    hidden: bool,
    concurrency: usize,
}

impl DirectoryLoader {
    /// All files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), include: Vec::new(), exclude: Vec::new(), hidden: false, concurrency: 4 }
    }

    /// Only files with these extensions (without the dot, case-insensitive); shorthand for
    /// include globs `**/*.ext`.
    #[must_use]
    pub fn with_extensions<S: AsRef<str>>(mut self, extensions: impl IntoIterator<Item = S>) -> Self {
        for e in extensions {
            let e = e.as_ref().trim_start_matches('.').to_lowercase();
            self.include.push(format!("**/*.{e}"));
            self.include.push(format!("**/*.{}", e.to_uppercase()));
        }
        self
    }

    /// Only paths (relative to the root) matching one of these globs.
    #[must_use]
    pub fn with_include<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.include.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Never paths matching one of these globs (a matching folder is not entered).
    #[must_use]
    pub fn with_exclude<S: Into<String>>(mut self, globs: impl IntoIterator<Item = S>) -> Self {
        self.exclude.extend(globs.into_iter().map(Into::into));
        self
    }

    /// Whether hidden files and folders are loaded too (default false).
    #[must_use]
    pub fn with_hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    /// How many files are read at once (default 4, at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, files: usize) -> Self {
        self.concurrency = files.max(1);
        self
    }

    fn globs(globs: &[String]) -> Result<Option<GlobSet>> {
        if globs.is_empty() {
            return Ok(None);
        }
        let mut set = GlobSetBuilder::new();
        for g in globs {
            set.add(Glob::new(g).map_err(|e| Error::invalid_input(format!("bad glob {g:?}: {e}")))?);
        }
        set.build().map(Some).map_err(|e| Error::invalid_input(format!("bad globs: {e}")))
    }

    /// The files the loader would read, in order, with an error for each unreadable entry.
    pub fn files(&self) -> Vec<Result<PathBuf>> {
        if !self.root.is_dir() {
            let reason = if self.root.exists() { "is not a folder" } else { "does not exist" };
            return vec![Err(Error::io(
                &self.root,
                std::io::Error::new(std::io::ErrorKind::NotFound, reason),
            ))];
        }
        let (include, exclude) = match (Self::globs(&self.include), Self::globs(&self.exclude)) {
            (Ok(i), Ok(e)) => (i, e),
            (Err(e), _) | (_, Err(e)) => return vec![Err(e)],
        };
        let relative = |p: &Path| p.strip_prefix(&self.root).map(Path::to_path_buf).unwrap_or_default();
        walkdir::WalkDir::new(&self.root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| {
                e.depth() == 0
                    || ((self.hidden || !e.file_name().to_string_lossy().starts_with('.'))
                        && !exclude.as_ref().is_some_and(|x| x.is_match(relative(e.path()))))
            })
            .filter_map(|entry| match entry {
                Ok(e) if e.file_type().is_file() => {
                    let wanted = include.as_ref().is_none_or(|i| i.is_match(relative(e.path())));
                    wanted.then(|| Ok(e.into_path()))
                }
                Ok(_) => None,
                Err(e) => {
                    let path = e.path().map_or_else(|| self.root.clone(), Path::to_path_buf);
                    let io = e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                    Some(Err(Error::io(path, io)))
                }
            })
            .collect()
    }
}

/// Loads one file with the loader its extension calls for.
pub async fn load_file(path: &Path, ctx: &RunContext) -> Vec<Result<Document>> {
    use tracing::Instrument as _;
    let kind = FileKind::of(path);
    let span = catena_core::telemetry::loader_span(ctx, kind.name(), &path.to_string_lossy());
    let results = load_kind(path, kind, ctx).instrument(span.clone()).await;
    catena_core::telemetry::record_loaded(&span, &results);
    results
}

async fn load_kind(path: &Path, kind: FileKind, ctx: &RunContext) -> Vec<Result<Document>> {
    async fn all(loader: impl Loader, ctx: &RunContext) -> Vec<Result<Document>> {
        loader.load(ctx).collect().await
    }
    match kind {
        FileKind::Markdown => all(MarkdownLoader::new(path), ctx).await,
        FileKind::Html => all(HtmlLoader::new(path), ctx).await,
        FileKind::Pdf => all(PdfLoader::new(path), ctx).await,
        FileKind::Json => all(JsonLoader::new(path), ctx).await,
        FileKind::Jsonl => all(JsonlLoader::new(path), ctx).await,
        FileKind::Csv => {
            let tsv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv"));
            all(CsvLoader::new(path).with_delimiter(if tsv { b'\t' } else { b',' }), ctx).await
        }
        FileKind::Text => all(TextLoader::new(path), ctx).await,
    }
}

impl Loader for DirectoryLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        Box::pin(
            stream::iter(self.files())
                .map(move |file| async move {
                    match file {
                        Ok(path) => load_file(&path, ctx).await,
                        Err(e) => vec![Err(e)],
                    }
                })
                .buffered(self.concurrency)
                .flat_map(stream::iter),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::{ErrorKind, Event};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_files_are_reported_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "alpha").unwrap();
        std::fs::write(dir.path().join("b.md"), "").unwrap();
        std::fs::write(dir.path().join("c.txt"), b"caf\xe9 latin-1 \xff\xfe\x80 odd").unwrap();
        std::fs::write(dir.path().join("d.bin"), b"\x7fELF\x00\x00\x01").unwrap();
        std::fs::write(dir.path().join("e.pdf"), b"%PDF-1.7\n1 0 obj << /Type /Catalog").unwrap();
        std::fs::write(dir.path().join("f.html"), "<p>page <b>text").unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        std::fs::write(dir.path().join(".hidden/g.md"), "secret").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = RunContext::new().with_events(tx);
        let out: Vec<_> = DirectoryLoader::new(dir.path()).load(&ctx).collect().await;
        assert_eq!(out.len(), 6, "{out:?}");
        assert_eq!(out[0].as_ref().unwrap().content, "alpha");
        let empty = out[1].as_ref().unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::InvalidInput);
        assert!(empty.to_string().contains("b.md") && empty.to_string().contains("empty"));
        let guessed = out[2].as_ref().unwrap();
        assert!(guessed.content.starts_with("caf"), "{}", guessed.content);
        assert!(guessed.metadata.contains_key("encoding"));
        assert!(out[3].as_ref().unwrap_err().to_string().contains("binary"));
        assert!(out[4].as_ref().unwrap_err().to_string().contains("e.pdf is not a readable PDF"));
        assert_eq!(out[5].as_ref().unwrap().content, "page text");
        while let Ok(event) = rx.try_recv() {
            assert!(matches!(event, Event::Warning { .. }));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn globs_pick_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("docs/api")).unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        for f in ["docs/a.md", "docs/api/b.md", "docs/c.txt", "target/d.md", ".e.md"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let loader = DirectoryLoader::new(dir.path()).with_include(["**/*.md"]).with_exclude(["target"]);
        let names: Vec<String> = loader
            .files()
            .into_iter()
            .map(|f| f.unwrap().strip_prefix(dir.path()).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["docs/a.md", "docs/api/b.md"]);
        assert_eq!(
            DirectoryLoader::new(dir.path()).with_hidden(true).with_extensions(["md"]).files().len(),
            4
        );
        assert!(DirectoryLoader::new(dir.path()).with_include(["[bad"]).files()[0].is_err());
    }

    #[tokio::test]
    async fn missing_folder_is_an_io_error_naming_it() {
        let out: Vec<_> = DirectoryLoader::new("/no/such/folder").load(&RunContext::new()).collect().await;
        assert_eq!(out.len(), 1);
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("/no/such/folder"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlink_loops_are_reported_not_followed_forever() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "a").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let files = DirectoryLoader::new(dir.path()).with_extensions(["md"]).files();
        // walkdir does not follow links by default: the loop is neither followed nor fatal.
        assert_eq!(files.len(), 1);
        assert!(files[0].as_ref().unwrap().ends_with("a.md"));
    }
}
