//! RAG metrics with scripted judges that fix every verdict, so the arithmetic and the edge cases
//! are exact (the real local model runs them in the workspace's tests/eval_rag.rs).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, missing_docs)]

use std::sync::Arc;

use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel};
use catena_core::{ErrorKind, ResponseFormat, RunContext};
use catena_eval::rag::{
    Judge, RagSample, average_precision, id_context_precision, id_context_recall, non_llm_context_precision,
    non_llm_context_recall,
};

fn sample() -> RagSample {
    RagSample {
        question: "Where is the Eiffel Tower and when was it built?".into(),
        answer: "The Eiffel Tower is in Paris. It was built in 1889.".into(),
        contexts: vec!["The Eiffel Tower stands in Paris.".into(), "Bananas are yellow.".into()],
        reference: Some("The Eiffel Tower is in Paris. It was completed in 1889.".into()),
        ..RagSample::default()
    }
}

fn judge(replies: &[&str]) -> (Judge, Arc<ScriptedChatModel>) {
    let model = Arc::new(ScriptedChatModel::new(replies.iter().map(|s| (*s).to_owned())));
    (Judge::new(model.clone()).with_embedder(Arc::new(DeterministicEmbedder::new(64))), model)
}

#[tokio::test]
async fn faithfulness_counts_supported_statements_and_is_undefined_without_any() {
    let (j, model) = judge(&[
        r#"{"statements": ["The Eiffel Tower is in Paris.", "The Eiffel Tower was built in 1889."]}"#,
        r#"{"verdicts": [{"statement": "a", "reason": "stated", "verdict": 1}, {"statement": "b", "reason": "no date", "verdict": 0}]}"#,
    ]);
    let ctx = RunContext::new();
    let score = j.faithfulness(&sample(), &ctx).await.unwrap();
    assert_eq!(score.value, Some(0.5));
    // Every judge request is constrained to a JSON Schema.
    assert!(
        model.requests().iter().all(|r| matches!(r.response_format, Some(ResponseFormat::JsonSchema { .. })))
    );
    assert!(model.requests()[1].messages[0].content.contains("1. The Eiffel Tower is in Paris."));
    match &model.requests()[1].response_format {
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            assert_eq!(schema["properties"]["verdicts"]["minItems"], 2, "{schema}");
            assert_eq!(schema["properties"]["verdicts"]["maxItems"], 2, "{schema}");
        }
        other => panic!("{other:?}"),
    }

    let (j, _) = judge(&[r#"{"statements": []}"#]);
    assert_eq!(j.faithfulness(&sample(), &ctx).await.unwrap().value, None, "no statements: undefined, not 0");

    // A verdict list of the wrong length, or an unreadable reply, is an error, not a score.
    let (j, _) = judge(&[
        r#"{"statements": ["a", "b"]}"#,
        r#"{"verdicts": [{"statement": "a", "reason": "", "verdict": 1}]}"#,
    ]);
    let err = j.faithfulness(&sample(), &ctx).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Parse);
    assert!(err.to_string().contains("1 verdicts for 2 statements"), "{err}");
    let (j, _) = judge(&["not json"]);
    assert_eq!(j.faithfulness(&sample(), &ctx).await.unwrap_err().kind(), ErrorKind::Parse);
}

#[tokio::test]
async fn context_precision_is_ragas_average_precision_over_ranked_verdicts() {
    assert_eq!(average_precision(&[true, false, true]), (1.0 + 2.0 / 3.0) / 2.0);
    assert_eq!(average_precision(&[false, true]), 0.5);
    assert_eq!(average_precision(&[false, false]), 0.0);
    let (j, model) = judge(&[
        r#"{"statement": "The Eiffel", "reason": "useful", "verdict": 0}"#,
        r#"{"statement": "Bananas", "reason": "useful", "verdict": 1}"#,
    ]);
    let ctx = RunContext::new();
    assert_eq!(j.context_precision(&sample(), &ctx).await.unwrap().value, Some(0.5));
    // Judged against the reference when there is one.
    assert!(model.requests()[0].messages[0].content.contains("It was completed in 1889."));
    let mut no_contexts = sample();
    no_contexts.contexts.clear();
    assert_eq!(j.context_precision(&no_contexts, &ctx).await.unwrap().value, None);
}

#[tokio::test]
async fn context_recall_scores_reference_sentences_and_needs_a_reference() {
    let (j, model) = judge(&[
        r#"{"verdicts": [{"statement": "s1", "reason": "", "verdict": 1}, {"statement": "s2", "reason": "", "verdict": 0}]}"#,
    ]);
    let ctx = RunContext::new();
    assert_eq!(j.context_recall(&sample(), &ctx).await.unwrap().value, Some(0.5));
    assert!(model.requests()[0].messages[0].content.contains("2. It was completed in 1889."));
    let mut no_reference = sample();
    no_reference.reference = None;
    assert_eq!(j.context_recall(&no_reference, &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn answer_correctness_weights_statement_f1_and_similarity() {
    let (j, _) = judge(&[
        r#"{"statements": ["The Eiffel Tower is in Paris.", "It was built in 1889."]}"#,
        r#"{"statements": ["The Eiffel Tower is in Paris.", "It was completed in 1889."]}"#,
        r#"{"TP": ["The Eiffel Tower is in Paris."], "FP": ["It was built in 1889."], "FN": ["It was completed in 1889."]}"#,
    ]);
    let ctx = RunContext::new();
    let score = j.answer_correctness(&sample(), &ctx).await.unwrap();
    let similarity = score.detail["similarity"].as_f64().unwrap();
    // TP 1, FP 1, FN 1: F1 = 1 / (1 + 0.5 * 2) = 0.5 (up to Ragas' 1e-10 guards).
    let f1 = score.detail["f1"].as_f64().unwrap();
    assert!((f1 - 0.5).abs() < 1e-9, "{f1}");
    assert!((score.value.unwrap() - (0.75 * f1 + 0.25 * similarity)).abs() < 1e-12);
    assert!(similarity > 0.5 && similarity <= 1.0, "{similarity}");
}

#[tokio::test]
async fn answer_relevancy_is_mean_cosine_and_zero_when_every_generation_is_noncommittal() {
    let q = sample().question;
    let same = format!(r#"{{"question": "{q}", "noncommittal": 0}}"#);
    let (j, _) = judge(&[same.as_str(), same.as_str(), same.as_str()]);
    let ctx = RunContext::new();
    let score = j.answer_relevancy(&sample(), &ctx).await.unwrap();
    assert!(
        (score.value.unwrap() - 1.0).abs() < 1e-6,
        "identical questions: cosine 1, got {:?}",
        score.value
    );
    let evasive = format!(r#"{{"question": "{q}", "noncommittal": 1}}"#);
    let (j, _) = judge(&[evasive.as_str(), evasive.as_str(), evasive.as_str()]);
    assert_eq!(j.answer_relevancy(&sample(), &ctx).await.unwrap().value, Some(0.0));
    // One committal generation among noncommittal ones keeps the cosine (Ragas' `all` rule).
    let (j, _) = judge(&[evasive.as_str(), same.as_str(), evasive.as_str()]);
    assert!(j.answer_relevancy(&sample(), &ctx).await.unwrap().value.unwrap() > 0.99);
    let bare = Judge::new(Arc::new(ScriptedChatModel::new(Vec::<String>::new())));
    assert_eq!(bare.answer_relevancy(&sample(), &ctx).await.unwrap_err().kind(), ErrorKind::InvalidInput);
}

#[test]
fn string_and_id_based_context_metrics() {
    let s = RagSample {
        contexts: vec!["Paris is the capital of France.".into(), "Unrelated text entirely.".into()],
        reference_contexts: vec!["Paris is the capital of France!".into(), "Lyon is a city.".into()],
        retrieved_ids: vec!["d1".into(), "d2".into(), "d1".into()],
        reference_ids: vec!["d1".into(), "d3".into()],
        ..RagSample::default()
    };
    assert_eq!(non_llm_context_precision(&s), Some(1.0));
    assert_eq!(non_llm_context_recall(&s), Some(0.5));
    assert_eq!(id_context_precision(&s), Some(0.5), "distinct retrieved ids: d1, d2");
    assert_eq!(id_context_recall(&s), Some(0.5));
    let empty = RagSample::default();
    assert_eq!((non_llm_context_precision(&empty), non_llm_context_recall(&empty)), (None, None));
    assert_eq!((id_context_precision(&empty), id_context_recall(&empty)), (None, None));
}

/// A pipeline that answers from a fixed context, and fails on one question.
struct Fixed;

#[catena_core::async_trait]
impl catena_core::Runnable<String, catena_eval::runner::RagAnswer> for Fixed {
    async fn invoke(
        &self,
        question: String,
        _: &RunContext,
    ) -> catena_core::Result<catena_eval::runner::RagAnswer> {
        if question.contains("fail") {
            return Err(catena_core::Error::store("index missing"));
        }
        let doc = catena_core::Document::new("Paris is the capital of France.").with_id("d1");
        Ok(catena_eval::runner::RagAnswer {
            answer: "Paris.".into(),
            contexts: vec![catena_core::ScoredDocument { document: doc, score: 1.0 }],
        })
    }
}

#[tokio::test]
async fn the_runner_scores_every_sample_keeps_failures_and_averages_defined_values() {
    use catena_eval::runner::{RagEvaluation, RagMetric, read_dataset};
    let dataset = read_dataset(
        "{\"question\": \"Capital of France?\", \"reference\": \"Paris.\", \"reference_ids\": [\"d1\"]}\n\n\
         {\"question\": \"Capital of Italy?\", \"reference_ids\": [\"d9\"]}\n\
         {\"question\": \"please fail\"}\n",
    )
    .unwrap();
    assert_eq!(dataset.len(), 3);
    // Faithfulness for the two answered questions: one statement each, one verdict each; the
    // second judge reply is unreadable, which is an error for that sample only.
    let model = Arc::new(ScriptedChatModel::new([
        r#"{"statements": ["Paris is the capital."]}"#,
        r#"{"verdicts": [{"statement": "s", "reason": "", "verdict": 1}]}"#,
        "garbage",
    ]));
    let evaluation = RagEvaluation::new(
        Arc::new(Fixed),
        Judge::new(model),
        vec![RagMetric::Faithfulness, RagMetric::IdContextRecall],
    )
    .with_concurrency(1);
    let seen = Arc::new(std::sync::Mutex::new(0u64));
    let sink = Arc::clone(&seen);
    let ctx = RunContext::new().with_events(move |e: catena_core::Event| {
        if let catena_core::Event::Progress { done, .. } = e {
            *sink.lock().unwrap() = done;
        }
    });
    let report = evaluation.run(&dataset, &ctx).await.unwrap();
    assert_eq!(report.samples.len(), 2);
    assert_eq!(report.failed["please fail"], "store error: index missing");
    assert_eq!(report.samples[0].scores["faithfulness"].value, Some(1.0));
    assert!(
        report.samples[1].errors["faithfulness"].contains("judge reply"),
        "{:?}",
        report.samples[1].errors
    );
    assert_eq!(report.means["faithfulness"], Some(1.0), "the mean is over defined values only");
    assert_eq!(report.counts["faithfulness"], 1);
    assert_eq!(report.means["id_context_recall"], Some(0.5));
    assert_eq!(*seen.lock().unwrap(), 3);

    let err = read_dataset("{\"question\": \"ok\"}\n{not json}\n").unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_eq!(read_dataset("\n\n").unwrap_err().kind(), ErrorKind::InvalidInput);
}
