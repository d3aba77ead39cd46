//! The recursive splitter gives LangChain's chunks and start indices, case for case, on 400
//! random texts and settings plus a varied corpus (code in every preset language, markdown, CJK,
//! emoji, CRLF, control characters, a 10k-character word, empty input) under literal and regex
//! separators, language presets and byte lengths (tests/data/langchain_splitter_cases.json,
//! produced by langchain-text-splitters 1.1.3 through benches/reference/langchain_splitter_cases.py).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{Document, Splitter};
use catena_splitters::{KeepSeparator, Language, LengthFunction, RecursiveCharacterSplitter};
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
        let base = match case["language"].as_str() {
            Some(name) => {
                RecursiveCharacterSplitter::from_language(name.parse::<Language>().unwrap(), size, overlap)
            }
            None => RecursiveCharacterSplitter::new(size, overlap),
        };
        let mut splitter = base
            .unwrap()
            .with_keep_separator(keep)
            .with_strip_whitespace(case["strip_whitespace"].as_bool().unwrap())
            .with_start_index(true);
        if case["length"] == "bytes" {
            splitter = splitter.with_length(LengthFunction::Bytes);
        }
        if let Some(seps) = case["separators"].as_array() {
            let seps = seps.iter().map(|s| s.as_str().unwrap());
            splitter = if case["regex"] == true {
                splitter.with_regex_separators(seps).unwrap()
            } else {
                splitter.with_separators(seps)
            };
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
            let (language, separators, length) = (&case["language"], &case["separators"], &case["length"]);
            failures.push(format!(
                "case {i} (size {size}, overlap {overlap}, {keep:?}, {language}, {separators}, {length}): \
                 got {chunks:?} @ {starts:?}, want {want_chunks:?} @ {want_starts:?}"
            ));
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

/// The markdown header splitter gives LangChain's sections and metadata on 150 generated documents
/// (tests/data/langchain_markdown_cases.json, from benches/reference/langchain_markdown_cases.py).
#[test]
fn markdown_headers_identical_to_langchain() {
    use catena_splitters::MarkdownHeaderSplitter;
    let data: Value =
        serde_json::from_str(include_str!("../../tests/data/langchain_markdown_cases.json")).unwrap();
    let cases = data["cases"].as_array().unwrap();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let headers = case["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().to_owned(), h[1].as_str().unwrap().to_owned()));
        let mut splitter = MarkdownHeaderSplitter::new(headers)
            .with_strip_headers(case["strip_headers"].as_bool().unwrap())
            .with_return_each_line(case["return_each_line"].as_bool().unwrap());
        if let Some(custom) = case["custom"].as_object() {
            for (marker, level) in custom {
                splitter = splitter.with_custom_header(marker.clone(), level.as_u64().unwrap() as usize);
            }
        }
        let got: Vec<Value> = splitter
            .split_sections(case["text"].as_str().unwrap())
            .into_iter()
            .map(|(content, metadata)| serde_json::json!({"content": content, "metadata": metadata}))
            .collect();
        if got != *case["sections"].as_array().unwrap() {
            failures.push(format!("case {i}: got {got:?}, want {}", case["sections"]));
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
