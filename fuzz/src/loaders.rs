//! Loaders, through the path a user's file takes: the bytes are written to a file with the
//! loader's extension and loaded with `load_file`, twice, which must give the same documents.

use std::path::PathBuf;
use std::sync::OnceLock;

use catena_core::{Document, RunContext};

use crate::runtime;

/// This process's scratch file for `extension` (one folder per process, so parallel fuzzing
/// jobs do not share files).
fn scratch(extension: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("catena-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder");
        dir
    });
    dir.join(format!("input.{extension}"))
}

/// What a load gave, in a comparable form: each document's content and metadata, or the error.
fn load(path: &std::path::Path) -> Vec<Result<(String, String), String>> {
    let ctx = RunContext::new();
    runtime()
        .block_on(catena_loaders::load_file(path, &ctx))
        .into_iter()
        .map(|r| {
            r.map(|d: Document| (d.content, serde_json::to_string(&d.metadata).expect("metadata is JSON")))
        })
        .map(|r| r.map_err(|e| e.to_string()))
        .collect()
}

fn load_twice(data: &[u8], extension: &str) {
    let path = scratch(extension);
    std::fs::write(&path, data).expect("the scratch file is writable");
    let first = load(&path);
    let second = load(&path);
    assert_eq!(first, second, "loading the same .{extension} file twice gave different documents");
}

pub(crate) fn text(data: &[u8]) {
    load_twice(data, "txt");
}

pub(crate) fn markdown(data: &[u8]) {
    load_twice(data, "md");
}

pub(crate) fn html(data: &[u8]) {
    load_twice(data, "html");
}

pub(crate) fn pdf(data: &[u8]) {
    load_twice(data, "pdf");
}

pub(crate) fn json(data: &[u8]) {
    load_twice(data, "json");
}

pub(crate) fn jsonl(data: &[u8]) {
    load_twice(data, "jsonl");
}

pub(crate) fn csv(data: &[u8]) {
    load_twice(data, "csv");
}

/// The model-file check run before llama.cpp ever opens a file.
pub(crate) fn gguf(data: &[u8]) {
    let path = scratch("gguf");
    std::fs::write(&path, data).expect("the scratch file is writable");
    let first = catena_models::files::check_gguf(&path).map_err(|e| e.to_string());
    let second = catena_models::files::check_gguf(&path).map_err(|e| e.to_string());
    assert_eq!(first, second, "the GGUF check is not deterministic");
}
