//! Splitters that need real models: the semantic splitter on the default embedding model, and
//! token splitting with the default models' own tokenizers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::sync::Arc;

use catena::prelude::*;
use catena_core::{Splitter, Tokenizer};
use catena_models::LlamaTokenizer;
use catena_splitters::{BreakpointThreshold, SemanticSplitter, TokenSplitter};

const COOKING: [&str; 5] = [
    "Knead the bread dough for ten minutes until it is smooth.",
    "Let the dough rise in a warm kitchen for an hour.",
    "Shape the loaf and bake it in a hot oven.",
    "The crust of fresh bread should be golden and crisp.",
    "Slice the bread once it has cooled on a rack.",
];
const ASTRONOMY: [&str; 5] = [
    "Jupiter is the largest planet in the solar system.",
    "Its moons orbit the giant planet in regular paths.",
    "Telescopes reveal the bands of clouds on the planet.",
    "Saturn's rings are made of ice and rock.",
    "Astronomers track the orbits of distant planets.",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semantic_splitter_cuts_where_the_topic_changes() {
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await.unwrap());
    let text = COOKING.iter().chain(&ASTRONOMY).copied().collect::<Vec<_>>().join(" ");
    let ctx = RunContext::new();

    // Each sentence embedded alone (no neighbours blurring the boundary); with 95th-percentile
    // breakpoints over 9 distances only the largest one cuts: it must be the one between the last
    // cooking sentence and the first astronomy sentence.
    let splitter = SemanticSplitter::new(embedder.clone()).with_buffer_size(0);
    let chunks = splitter.split_text(&text, &ctx).await.unwrap();
    assert_eq!(chunks, [COOKING.join(" "), ASTRONOMY.join(" ")]);

    // A maximum size cuts the topics further, at their own largest distances, never mid-sentence.
    let bounded = SemanticSplitter::new(embedder.clone())
        .with_threshold(BreakpointThreshold::StandardDeviation(3.0))
        .with_max_chunk_size(200)
        .unwrap();
    let chunks = bounded.split_text(&text, &ctx).await.unwrap();
    assert!(chunks.len() >= 4, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.chars().count() <= 200), "{chunks:?}");
    let sentences: Vec<&str> = COOKING.iter().chain(&ASTRONOMY).copied().collect();
    for chunk in &chunks {
        assert!(sentences.iter().any(|s| chunk.starts_with(s)), "chunk starts mid-sentence: {chunk}");
    }
    assert_eq!(chunks.join(" "), text, "nothing lost or reordered");

    // As a Runnable over documents, with metadata kept.
    let doc = Document::new(text.clone()).with_metadata("source", "mixed.txt");
    let docs = splitter.with_start_index(true).invoke(vec![doc], &ctx).await.unwrap();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[1].metadata["source"], "mixed.txt");
    assert_eq!(docs[1].metadata["start_index"], COOKING.join(" ").chars().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_splitter_with_the_models_own_tokenizers() {
    let text = COOKING.iter().chain(&ASTRONOMY).copied().collect::<Vec<_>>().join("\n");

    // SmolLM2's byte-level BPE round-trips any text exactly.
    let chat: Arc<dyn Tokenizer> = Arc::new(LlamaTokenizer::load_default_chat().await.unwrap());
    let ids = chat.encode(&text).unwrap();
    assert!(ids.len() > 50 && ids.len() < text.len());
    assert_eq!(chat.decode(&ids).unwrap(), text);
    let chunks = TokenSplitter::new(chat.clone(), 32, 8).unwrap().split_text(&text).unwrap();
    assert!(chunks.len() >= 3);
    assert!(chunks.iter().all(|c| chat.count(c).unwrap() <= 32 + 2), "re-encoding may merge across a cut");

    // The embedding model's WordPiece tokenizer sizes chunks for the embedder's 512-token window.
    let embed: Arc<dyn Tokenizer> = Arc::new(LlamaTokenizer::load_default_embed().await.unwrap());
    let windows = TokenSplitter::new(embed.clone(), 16, 0).unwrap().split_text(&text).unwrap();
    assert!(windows.iter().all(|w| embed.count(w).unwrap() <= 16), "{windows:?}");
    // WordPiece lower-cases, and its detokenizer starts words with a space.
    assert!(windows[0].trim_start().starts_with("knead the bread"), "{}", windows[0]);

    // Bad ids are an error, not a crash.
    assert!(chat.decode(&[u32::MAX]).is_err());
}
