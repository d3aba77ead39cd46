//! BM25 in rank_bm25 mode gives `rank_bm25.BM25Okapi`'s scores bit for bit, and the same top-10
//! score sequence, on generated corpora (tests/data/rank_bm25_cases.json, from
//! benches/reference/rank_bm25_cases.py).
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use catena_core::Document;
use catena_retrievers::{Analyzer, Bm25Index, Bm25Params};
use serde_json::Value;

#[test]
fn scores_identical_to_rank_bm25() {
    let cases: Value = serde_json::from_str(include_str!("../../tests/data/rank_bm25_cases.json")).unwrap();
    let mut checked = 0;
    for corpus in cases["corpora"].as_array().unwrap() {
        let docs: Vec<Document> = corpus["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| Document::new(d.as_str().unwrap()))
            .collect();
        let index = Bm25Index::new(docs, Analyzer::whitespace(), Bm25Params::rank_bm25()).unwrap();
        for q in corpus["queries"].as_array().unwrap() {
            let query = q["query"].as_str().unwrap();
            let ours: Vec<u64> = index.scores(query).iter().map(|s| s.to_bits()).collect();
            let theirs: Vec<u64> =
                q["scores"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
            assert_eq!(ours, theirs, "query {query:?}");
            // Top 10: the same score at every rank (rank_bm25 breaks ties arbitrarily, we by index).
            let top: Vec<u64> = index
                .search(query, 10, None)
                .iter()
                .map(|(_, s)| s.to_bits())
                .chain(std::iter::repeat(0f64.to_bits()))
                .take(theirs.len().min(10))
                .collect();
            let want: Vec<u64> =
                q["top10_scores"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
            let want_positive: Vec<u64> =
                want.iter().map(|&b| if f64::from_bits(b) > 0.0 { b } else { 0f64.to_bits() }).collect();
            let top_positive: Vec<u64> =
                top.iter().map(|&b| if f64::from_bits(b) > 0.0 { b } else { 0f64.to_bits() }).collect();
            assert_eq!(top_positive, want_positive, "top 10 of {query:?}");
            checked += 1;
        }
    }
    assert_eq!(checked, 72);
}
