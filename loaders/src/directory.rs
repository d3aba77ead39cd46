//! [`DirectoryLoader`]: every matching file under a folder.

use std::path::PathBuf;

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::{self, BoxStream, StreamExt};

use crate::text::read_text;

/// Loads every file under a folder (recursively, in sorted path order, so runs are reproducible),
/// keeping only the given extensions when any are set.
///
/// A folder that cannot be read is an error item naming it; so is each file that fails, and the
/// walk goes on. Hidden files and folders (names starting with `.`) are skipped.
#[derive(Debug, Clone)]
pub struct DirectoryLoader {
    root: PathBuf,
    extensions: Vec<String>,
}

impl DirectoryLoader {
    /// All files under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), extensions: Vec::new() }
    }

    /// Only files with these extensions (without the dot, case-insensitive).
    #[must_use]
    pub fn with_extensions<S: AsRef<str>>(mut self, extensions: impl IntoIterator<Item = S>) -> Self {
        self.extensions =
            extensions.into_iter().map(|e| e.as_ref().trim_start_matches('.').to_lowercase()).collect();
        self
    }

    fn wanted(&self, path: &std::path::Path) -> bool {
        self.extensions.is_empty()
            || path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| self.extensions.iter().any(|w| w.eq_ignore_ascii_case(e)))
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
        walkdir::WalkDir::new(&self.root)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|entry| match entry {
                Ok(e) if e.file_type().is_file() && self.wanted(e.path()) => Some(Ok(e.into_path())),
                Ok(_) => None,
                Err(e) => {
                    let path = e.path().map_or_else(|| self.root.clone(), std::path::Path::to_path_buf);
                    let io = e.into_io_error().unwrap_or_else(|| std::io::Error::other("filesystem loop"));
                    Some(Err(Error::io(path, io)))
                }
            })
            .collect()
    }
}

impl Loader for DirectoryLoader {
    fn load<'a>(&'a self, ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        Box::pin(stream::iter(self.files()).map(move |file| file.and_then(|path| read_text(&path, ctx))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::{ErrorKind, Event};

    #[tokio::test]
    async fn bad_files_are_reported_and_the_rest_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "alpha").unwrap();
        std::fs::write(dir.path().join("b.md"), "").unwrap();
        std::fs::write(dir.path().join("c.md"), b"caf\xe9 latin-1").unwrap();
        std::fs::create_dir(dir.path().join(".hidden")).unwrap();
        std::fs::write(dir.path().join(".hidden/d.md"), "secret").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ctx = RunContext::new().with_events(tx);
        let out: Vec<_> = DirectoryLoader::new(dir.path()).load(&ctx).collect().await;
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].as_ref().unwrap().content, "alpha");
        let empty = out[1].as_ref().unwrap_err();
        assert_eq!(empty.kind(), ErrorKind::InvalidInput);
        assert!(empty.to_string().contains("b.md") && empty.to_string().contains("empty"));
        let lossy = out[2].as_ref().unwrap();
        assert_eq!(lossy.content, "caf\u{fffd} latin-1");
        assert_eq!(lossy.metadata["lossy_utf8"], true);
        assert!(matches!(rx.try_recv(), Ok(Event::Warning { message }) if message.contains("c.md")));
    }

    #[tokio::test]
    async fn missing_folder_is_an_io_error_naming_it() {
        let out: Vec<_> = DirectoryLoader::new("/no/such/folder").load(&RunContext::new()).collect().await;
        assert_eq!(out.len(), 1);
        let err = out[0].as_ref().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io);
        assert!(err.to_string().contains("/no/such/folder"), "{err}");
    }

    #[tokio::test]
    async fn a_file_given_as_the_folder_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let out: Vec<_> = DirectoryLoader::new(file.path()).load(&RunContext::new()).collect().await;
        let err = out[0].as_ref().unwrap_err();
        assert!(err.to_string().contains("is not a folder"), "{err}");
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn symlink_loops_are_reported_not_followed_forever() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.md"), "a").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        let loader = DirectoryLoader { root: dir.path().to_path_buf(), extensions: vec!["md".into()] };
        let files = loader.files();
        // walkdir does not follow links by default: the loop is neither followed nor fatal.
        assert_eq!(files.len(), 1);
        assert!(files[0].as_ref().unwrap().ends_with("a.md"));
    }
}
