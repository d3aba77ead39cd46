//! Recursive splitter throughput, side by side with langchain-text-splitters on identical corpora
//! (benches/reference/langchain_splitter_bench.py reads the files this writes). `make bench` runs
//! both; by hand: `cargo bench -p catena-splitters --bench recursive -- DIR`.
//!
//! Four regimes, because LangChain's speed depends heavily on the text: prose with paragraphs,
//! prose without newlines, source code, CJK without spaces; chunk sizes 256 and 1000 (overlap 10%).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use catena_core::Splitter;
use catena_splitters::RecursiveCharacterSplitter;

/// A small deterministic generator (xorshift), so corpora are identical on every machine.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 1_000_000) as usize
    }
}

const WORDS: [&str; 16] = [
    "the",
    "retrieval",
    "model",
    "splits",
    "documents",
    "into",
    "chunks",
    "and",
    "a",
    "vector",
    "store",
    "finds",
    "nearest",
    "neighbours",
    "for",
    "questions",
];

fn prose(bytes: usize, paragraphs: bool, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(bytes + 100);
    while s.len() < bytes {
        let n = 8 + rng.next() % 20;
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(WORDS[rng.next() % WORDS.len()]);
        }
        s.push_str(". ");
        if paragraphs && rng.next().is_multiple_of(5) {
            s.push_str("\n\n");
        }
    }
    s
}

fn code(bytes: usize, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(bytes + 100);
    while s.len() < bytes {
        let name = WORDS[rng.next() % WORDS.len()];
        s.push_str(&format!("fn {name}_{}(x: usize) -> usize {{\n", rng.next() % 1000));
        for _ in 0..(2 + rng.next() % 8) {
            s.push_str(&format!("    let {name} = x * {} + {};\n", rng.next() % 97, rng.next() % 13));
        }
        s.push_str("    x\n}\n\n");
    }
    s
}

fn cjk(bytes: usize, rng: &mut Rng) -> String {
    let chars: Vec<char> = "東京は日本の首都ですデータを分割して検索する文書の断片".chars().collect();
    let mut s = String::with_capacity(bytes + 8);
    while s.len() < bytes {
        s.push(chars[rng.next() % chars.len()]);
        if rng.next().is_multiple_of(60) {
            s.push('。');
        }
    }
    s
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let dir = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or_else(|| std::env::temp_dir().join("catena-split-corpora"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = Rng(0x5eed);
    let corpora = [
        ("prose_paragraphs", prose(4 << 20, true, &mut rng)),
        ("prose_no_newlines", prose(1 << 20, false, &mut rng)),
        ("source_code", code(4 << 20, &mut rng)),
        ("cjk_no_spaces", cjk(512 << 10, &mut rng)),
    ];
    for (name, text) in &corpora {
        std::fs::write(dir.join(format!("{name}.txt")), text).unwrap();
        for size in [256usize, 1000] {
            let splitter = RecursiveCharacterSplitter::new(size, size / 10).unwrap();
            let mut secs = Vec::new();
            let mut chunks = 0;
            for _ in 0..3 {
                let start = Instant::now();
                chunks = splitter.split_text(text).unwrap().len();
                secs.push(start.elapsed().as_secs_f64());
            }
            secs.sort_by(f64::total_cmp);
            let mb_s = text.len() as f64 / 1e6 / secs[1];
            println!(
                "{}",
                serde_json::json!({"impl": "catena", "corpus": name, "bytes": text.len(), "chunk_size": size,
                                   "chunks": chunks, "mb_s": mb_s})
            );
        }
    }
    eprintln!("corpora written to {}", dir.display());
}
