//! Throughput of the trec_eval measures: reads DIR/trec_qrels.txt and DIR/trec_run.txt (written by
//! `benches/reference/trec_reference.py bench N DIR`, which also times pytrec_eval on the same
//! data) and evaluates the same 13 measures. Prints one JSON line. Parsing the files is timed
//! too; pytrec_eval's figure excludes it (its input is already in Python dicts).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::time::Instant;

use catena_eval::trec::{Measure, Options, evaluate, read_qrels, read_run};

const MEASURES: [&str; 13] = [
    "P_5",
    "P_10",
    "recall_10",
    "recall_100",
    "map",
    "map_cut_10",
    "ndcg",
    "ndcg_cut_10",
    "recip_rank",
    "success_1",
    "success_5",
    "num_rel",
    "num_rel_ret",
];

fn main() {
    // Without a folder (as under `cargo test --all-targets`), a quick run on the test fixture.
    let (qrels_text, run_text) = match std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            (
                std::fs::read_to_string(dir.join("trec_qrels.txt")).unwrap(),
                std::fs::read_to_string(dir.join("trec_run.txt")).unwrap(),
            )
        }
        None => (
            include_str!("../tests/data/trec_qrels.txt").to_owned(),
            include_str!("../tests/data/trec_run.txt").to_owned(),
        ),
    };
    let measures: Vec<Measure> = MEASURES.iter().map(|m| m.parse().unwrap()).collect();
    let mut best = f64::MAX;
    let mut map = 0.0;
    let mut queries = 0;
    let mut parse = 0.0;
    for _ in 0..5 {
        let start = Instant::now();
        let qrels = read_qrels(&qrels_text).unwrap();
        let run = read_run(&run_text).unwrap();
        let parsed = start.elapsed().as_secs_f64();
        let e = evaluate(&qrels, &run, &measures, &Options::default());
        let total = start.elapsed().as_secs_f64();
        if total < best {
            best = total;
            parse = parsed;
        }
        map = e.all["map"];
        queries = e.per_query.len();
    }
    println!(
        "{}",
        serde_json::json!({"impl": "catena", "queries": queries, "seconds": best, "parse_seconds": parse, "queries_s": queries as f64 / best, "map": map})
    );
}
