//! The recursive splitter gives LangChain's chunks and start indices, case for case, on 400
//! random texts and settings (tests/data/langchain_splitter_cases.json, produced by
//! langchain-text-splitters 1.1.3 through benches/reference/langchain_splitter_cases.py).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{Document, Splitter};
use catena_splitters::{KeepSeparator, RecursiveCharacterSplitter};
use serde_json::Value;

#[test]
fn identical_to_langchain_on_random_cases() {
    let data: Value =
        serde_json::from_str(include_str!("../../tests/data/langchain_splitter_cases.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let size = case["chunk_size"].as_u64().unwrap() as usize;
        let overlap = case["chunk_overlap"].as_u64().unwrap() as usize;
        let keep = match case["keep_separator"].as_str().unwrap() {
            "start" => KeepSeparator::Start,
            "end" => KeepSeparator::End,
            _ => KeepSeparator::None,
        };
        let mut splitter = RecursiveCharacterSplitter::new(size, overlap)
            .unwrap()
            .with_keep_separator(keep)
            .with_strip_whitespace(case["strip_whitespace"].as_bool().unwrap())
            .with_start_index(true);
        if let Some(seps) = case["separators"].as_array() {
            splitter = splitter.with_separators(seps.iter().map(|s| s.as_str().unwrap().to_owned()));
        }
        let text = case["text"].as_str().unwrap();
        let got = splitter.split_documents(&[Document::new(text)]).unwrap();
        let chunks: Vec<&str> = got.iter().map(|d| d.content.as_str()).collect();
        let starts: Vec<i64> = got.iter().map(|d| d.metadata["start_index"].as_i64().unwrap()).collect();
        let want_chunks: Vec<&str> =
            case["chunks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        let want_starts: Vec<i64> =
            case["start_index"].as_array().unwrap().iter().map(|c| c.as_i64().unwrap()).collect();
        if chunks != want_chunks || starts != want_starts {
            failures.push(format!("case {i} (size {size}, overlap {overlap}, {keep:?}): got {chunks:?} @ {starts:?}, want {want_chunks:?} @ {want_starts:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ; first: {}",
        failures.len(),
        cases.len(),
        failures[0]
    );
}
