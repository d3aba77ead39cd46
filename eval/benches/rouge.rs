//! Throughput of stemmed ROUGE: the Cranfield pairs (each abstract's title as the prediction, the
//! abstract after its title as the target), ROUGE-1/2/L/Lsum with Porter stemming as rouge-score's
//! `use_stemmer=True`, best of 5. `benches/reference/rouge_bench.py` times rouge-score on the same
//! pairs; the mean F-measures printed by both must agree. Prints one JSON line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::time::Instant;

use catena_eval::text::{RougeKind, rouge_stemmed};

const TYPES: [(&str, RougeKind); 4] = [
    ("rouge1", RougeKind::N(1)),
    ("rouge2", RougeKind::N(2)),
    ("rougeL", RougeKind::L),
    ("rougeLsum", RougeKind::Lsum),
];

fn main() {
    // Without a corpus (as under `cargo test --all-targets`), a quick run on two pairs.
    let pairs: Vec<(String, String)> = match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(path) => std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| {
                let doc: serde_json::Value = serde_json::from_str(line).unwrap();
                let (text, title) = (doc["text"].as_str().unwrap(), doc["title"].as_str().unwrap());
                // Cranfield's text repeats the title first; the target is the abstract after it.
                (text.strip_prefix(title).unwrap_or(text).to_owned(), title.to_owned())
            })
            .collect(),
        None => vec![
            ("the cats were running on the mat".into(), "a cat runs".into()),
            ("generalizations relate databases".into(), "the generalized relational databases".into()),
        ],
    };
    let mut best = f64::MAX;
    let mut sums = [0.0f64; 4];
    for _ in 0..5 {
        let start = Instant::now();
        let mut round = [0.0f64; 4];
        for (target, prediction) in &pairs {
            for (i, (_, kind)) in TYPES.iter().enumerate() {
                round[i] += rouge_stemmed(target, prediction, *kind).fmeasure;
            }
        }
        best = best.min(start.elapsed().as_secs_f64());
        sums = round;
    }
    let n = pairs.len() as f64;
    let means: serde_json::Map<String, serde_json::Value> =
        TYPES.iter().zip(sums).map(|((name, _), sum)| ((*name).to_owned(), (sum / n).into())).collect();
    println!(
        "{}",
        serde_json::json!({"impl": "catena", "pairs": pairs.len(), "seconds": best, "pairs_s": n / best, "mean_f": means})
    );
}
