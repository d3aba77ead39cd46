//! trec_eval measures read from qrels/run files, against pytrec_eval (trec_eval's own C code) on
//! generated data with graded relevance, tied scores, judged-but-unretrieved and
//! retrieved-but-unjudged queries, and queries without relevant documents
//! (benches/reference/trec_reference.py writes the files and the reference values). Equality to
//! 1e-9 per query and measure. Then every kind of malformed line, with its line number.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_eval::trec::{Measure, Options, evaluate, format_trec, read_qrels, read_run};
use serde_json::Value;

#[test]
fn every_measure_of_every_query_equals_pytrec_eval() {
    let qrels = read_qrels(include_str!("data/trec_qrels.txt")).unwrap();
    let run = read_run(include_str!("data/trec_run.txt")).unwrap();
    let reference: Value = serde_json::from_str(include_str!("data/trec_reference.json")).unwrap();
    let measures: Vec<Measure> = reference["measures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().parse().unwrap())
        .collect();
    let ours = evaluate(&qrels, &run, &measures, &Options::default());
    let theirs = reference["per_query"].as_object().unwrap();
    assert_eq!(ours.per_query.len(), theirs.len(), "the same queries are evaluated");
    let mut compared = 0;
    for (query, values) in theirs {
        for (measure, value) in values.as_object().unwrap() {
            let mine = ours.per_query[query][measure];
            let want = value.as_f64().unwrap();
            assert!((mine - want).abs() < 1e-9, "{query} {measure}: catena {mine} vs pytrec_eval {want}");
            compared += 1;
        }
    }
    assert!(compared > 600, "{compared}");

    let text = format_trec(&ours, &measures, true);
    let all_map = text.lines().find(|l| l.starts_with("map ") && l.contains("\tall\t")).unwrap();
    assert_eq!(all_map, format!("{:<22}\tall\t{:.4}", "map", ours.all["map"]));
    assert!(text.lines().any(|l| l.starts_with("num_rel ") && !l.contains('.')), "counts print as integers");
}

#[test]
fn malformed_files_are_errors_with_line_numbers() {
    let err = read_qrels("q1 0 d1 1\nq1 0 d2 1\n\nq2 0 d3 x\n").unwrap_err();
    assert_eq!((err.file, err.line), ("qrels", 4));
    assert!(err.to_string().contains("grade \"x\" is not an integer"), "{err}");
    let err = read_qrels("q1 0 d1 1 extra\n").unwrap_err();
    assert!(err.to_string().starts_with("qrels line 1: expected"), "{err}");
    // BEIR TSV with its header.
    let beir = read_qrels("query-id\tcorpus-id\tscore\nq1\td1\t2\n").unwrap();
    assert_eq!(beir["q1"]["d1"], 2);

    let err = read_run("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert!(err.to_string().contains("d1 is listed twice for query q1"), "{err}");
    for (bad, why) in [
        ("q1 Q0 d1 1 high t", "not a number"),
        ("q1 Q0 d1 1 NaN t", "not finite"),
        ("q1 d1 0.5", "found 3 fields"),
    ] {
        let err = read_run(bad).unwrap_err();
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
    assert!(read_run("").unwrap().is_empty());
    // A query whose lines are split still may not repeat a document; split lines are merged.
    let err = read_run("q1 Q0 d1 1 0.9 t\nq2 Q0 d1 1 0.9 t\nq1 Q0 d1 2 0.1 t\n").unwrap_err();
    assert_eq!(err.line, 3);
    let merged = read_run("q1 Q0 d1 1 0.9 t\nq2 Q0 d1 1 0.9 t\nq1 Q0 d2 2 0.1 t\n").unwrap();
    assert_eq!(merged["q1"].len(), 2);
}
