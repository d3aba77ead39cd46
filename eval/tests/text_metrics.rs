//! Text metrics against the reference tools' own outputs (eval/tests/data/text_metrics.json,
//! written by benches/reference/text_metrics_reference.py from sacrebleu, rouge-score and the SQuAD
//! v2.0 script): unicode, an empty hypothesis, repeated n-grams, numbers, HTML entities, several
//! references, odd whitespace, ROUGE with and without stemming. Equality to 1e-9.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use catena_eval::text::{
    BleuOptions, RougeKind, corpus_bleu, exact_match, porter_stem, rouge, rouge_stemmed, sentence_bleu,
    token_f1, tokenize_13a,
};
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("data/text_metrics.json")).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() < 1e-9, "{what}: catena {a} vs reference {b}");
}

#[test]
fn bleu_matches_sacrebleu() {
    let data = fixture();
    let pairs = data["pairs"].as_array().unwrap();
    let hyps: Vec<String> = pairs.iter().map(|p| p["hypothesis"].as_str().unwrap().to_owned()).collect();
    let refs: Vec<Vec<String>> = pairs.iter().map(|p| strings(&p["references"])).collect();
    let bleu = corpus_bleu(&hyps, &refs, &BleuOptions::default()).unwrap();
    let expected = &data["corpus_bleu"];
    close(bleu.score, expected["score"].as_f64().unwrap(), "corpus BLEU");
    close(bleu.brevity_penalty, expected["bp"].as_f64().unwrap(), "brevity penalty");
    assert_eq!(bleu.sys_len as u64, expected["sys_len"].as_u64().unwrap());
    assert_eq!(bleu.ref_len as u64, expected["ref_len"].as_u64().unwrap());
    for (i, p) in bleu.precisions.iter().enumerate() {
        close(*p, expected["precisions"][i].as_f64().unwrap(), &format!("precision {}", i + 1));
    }
    let lower =
        corpus_bleu(&hyps, &refs, &BleuOptions { lowercase: true, ..BleuOptions::default() }).unwrap();
    close(lower.score, data["corpus_bleu_lowercase"].as_f64().unwrap(), "lowercased corpus BLEU");
    for p in pairs {
        let hyp = p["hypothesis"].as_str().unwrap();
        assert_eq!(tokenize_13a(hyp), p["tok13a"].as_str().unwrap(), "13a tokens of {hyp:?}");
        let refs = strings(&p["references"]);
        close(
            sentence_bleu(hyp, &refs).unwrap().score,
            p["sentence_bleu"].as_f64().unwrap(),
            &format!("sentence BLEU of {hyp:?}"),
        );
    }
}

#[test]
fn rouge_matches_rouge_score() {
    let data = fixture();
    for p in data["pairs"].as_array().unwrap() {
        let hyp = p["hypothesis"].as_str().unwrap();
        let target = p["references"][0].as_str().unwrap();
        for (name, kind) in [
            ("rouge1", RougeKind::N(1)),
            ("rouge2", RougeKind::N(2)),
            ("rougeL", RougeKind::L),
            ("rougeLsum", RougeKind::Lsum),
        ] {
            for (stemmed, got) in
                [(false, rouge(target, hyp, kind)), (true, rouge_stemmed(target, hyp, kind))]
            {
                let want = &p[if stemmed { "rouge_stemmed" } else { "rouge" }][name];
                let what = format!("{name} (stemmed: {stemmed})");
                close(got.precision, want[0].as_f64().unwrap(), &format!("{what} precision of {hyp:?}"));
                close(got.recall, want[1].as_f64().unwrap(), &format!("{what} recall of {hyp:?}"));
                close(got.fmeasure, want[2].as_f64().unwrap(), &format!("{what} F of {hyp:?}"));
            }
        }
    }
    assert_eq!("rouge3".parse::<RougeKind>().unwrap(), RougeKind::N(3));
    assert!("rouge0".parse::<RougeKind>().is_err() && "bleu".parse::<RougeKind>().is_err());
}

/// Every word of this repository's docs and the Cranfield abstracts, plus words that reach each
/// rule and exception, stemmed by NLTK 3.10.4 (eval/tests/data/porter.tsv, written by
/// benches/reference/porter_reference.py).
#[test]
fn porter_stems_match_nltk_word_for_word() {
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in include_str!("data/porter.tsv").lines().filter(|l| !l.starts_with('#')) {
        let (word, want) = line.split_once('\t').unwrap();
        let got = porter_stem(word);
        if got != want {
            wrong.push(format!("{word}: catena {got:?}, NLTK {want:?}"));
        }
        checked += 1;
    }
    assert!(checked > 10_000, "{checked} words");
    assert!(wrong.is_empty(), "{} of {checked} stems differ:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn squad_exact_match_and_f1_match_the_official_script() {
    for case in fixture()["squad"].as_array().unwrap() {
        let prediction = case["prediction"].as_str().unwrap();
        let refs = strings(&case["references"]);
        close(exact_match(prediction, &refs), case["em"].as_f64().unwrap(), &format!("EM of {prediction:?}"));
        close(token_f1(prediction, &refs), case["f1"].as_f64().unwrap(), &format!("F1 of {prediction:?}"));
    }
}

#[test]
fn mismatched_inputs_are_errors_not_zeros() {
    let err = corpus_bleu(&["a", "b"], &[vec!["a"]], &BleuOptions::default()).unwrap_err();
    assert!(err.0.contains("2 hypotheses but 1 reference sets"), "{err}");
    let none: Vec<Vec<&str>> = vec![vec![]];
    assert!(corpus_bleu(&["a"], &none, &BleuOptions::default()).unwrap_err().0.contains("no reference"));
    assert_eq!(corpus_bleu::<&str, &str>(&[], &[], &BleuOptions::default()).unwrap().score, 0.0);
}
