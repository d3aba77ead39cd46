//! Throughput of the `text-splitter` crate (character-counted chunks with overlap) on the corpora
//! `cargo bench -p catena-splitters --bench recursive -- DIR` writes, median of 3 runs, printed as
//! JSON lines like the catena and LangChain benches.
//!
//! The settings are comparable, not identical: text-splitter picks boundaries by its own semantic
//! levels (Unicode sentences, words, graphemes) with a binary search over chunk sizes, so chunk
//! counts differ from LangChain's and catena's.

use std::time::Instant;

use text_splitter::{ChunkConfig, TextSplitter};

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/tmp/catena-split-corpora".into());
    for corpus in ["prose_paragraphs", "prose_no_newlines", "source_code", "cjk_no_spaces"] {
        let text = std::fs::read_to_string(format!("{dir}/{corpus}.txt")).expect("corpus file");
        for size in [256usize, 1000] {
            let config = ChunkConfig::new(size).with_overlap(size / 10).expect("overlap < size");
            let splitter = TextSplitter::new(config);
            let mut secs = Vec::new();
            let mut chunks = 0;
            for _ in 0..3 {
                let start = Instant::now();
                // Owned chunks, as catena and LangChain return them.
                let out: Vec<String> = splitter.chunks(&text).map(str::to_owned).collect();
                secs.push(start.elapsed().as_secs_f64());
                chunks = out.len();
            }
            secs.sort_by(f64::total_cmp);
            let mb_s = text.len() as f64 / 1e6 / secs[1];
            println!(
                "{}",
                serde_json::json!({"impl": "text-splitter", "corpus": corpus, "bytes": text.len(),
                                   "chunk_size": size, "chunks": chunks, "mb_s": mb_s})
            );
        }
    }
}
