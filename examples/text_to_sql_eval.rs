//! Measures text-to-SQL on Chinook: 30 questions with gold SQL (tests/data/chinook_questions.json).
//! For each setting it reports the share of questions whose generated query ran, and execution
//! accuracy (the rows equal the gold query's rows, as a multiset, numbers to 1e-6).
//!
//! ```text
//! scripts/fetch-data.sh && cargo run --example text_to_sql_eval -- [OUT.json]
//! ```
//!
//! Settings: the local model with grammar-constrained decoding and without, both shown the three
//! most relevant tables (plus the tables their foreign keys reference), two repairs; and, when
//! `CATENA_MODEL` and `OPENAI_BASE_URL` (+ `OPENAI_API_KEY`) name an OpenAI-compatible model, that
//! model (free text: remote servers take no GBNF).

use std::sync::Arc;
use std::time::Instant;

use catena::core::{ChatModel, Embedder, Result, RunContext};
use catena::models::openai::{OpenAiChatModel, OpenAiConfig};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::query::sql::{SqlDatabase, SqlGuard, SqlOptions, SqlQueryChain, chinook};
use serde_json::{Value, json};

/// Rows as sorted, normalised strings: the multiset execution accuracy compares.
fn normalise(rows: &[Vec<Value>]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .map(|v| match v.as_f64() {
                    Some(f) => format!("{f:.6}"),
                    None => v.to_string(),
                })
                .collect();
            cells.join("\u{1f}")
        })
        .collect();
    out.sort();
    out
}

#[tokio::main]
async fn main() -> Result<()> {
    let out_path = std::env::args().nth(1);
    let dir = tempfile::tempdir().map_err(|e| catena::core::Error::io("tempdir", e))?;
    let url = format!("sqlite://{}", dir.path().join("chinook.db").display());
    let writable =
        SqlDatabase::connect_with(&url, SqlOptions { read_only: false, ..SqlOptions::default() }).await?;
    chinook::load(&chinook::fixture_path(), &writable).await?;
    writable.close().await;

    let gold: Vec<Value> = serde_json::from_str(include_str!("../tests/data/chinook_questions.json"))
        .map_err(|e| catena::core::Error::parse("questions", e.to_string()))?;
    let model: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let db = SqlDatabase::connect(&url).await?;
    let guard = SqlGuard::new(db.dialect());
    let ctx = RunContext::new();
    let mut report = serde_json::Map::new();
    let mut settings: Vec<(String, Arc<dyn ChatModel>, bool)> =
        vec![("local_constrained".into(), model.clone(), true), ("local_free".into(), model.clone(), false)];
    let remote_configured =
        std::env::var_os("OPENAI_BASE_URL").is_some() || std::env::var_os("OPENAI_API_KEY").is_some();
    if remote_configured && let Ok(config) = OpenAiConfig::from_env() {
        let name = format!("remote_{}", config.model);
        settings.push((name, Arc::new(OpenAiChatModel::new(config)?), false));
    }
    for (name, model, constrained) in settings {
        let chain = SqlQueryChain::new(model.clone(), db.clone())
            .await?
            .with_constrained_decoding(constrained)
            .with_table_selection(embedder.clone(), 3)
            .with_max_repairs(2)
            .with_answer(false);
        let (mut ran, mut correct, mut first_try) = (0usize, 0usize, 0usize);
        let mut samples = Vec::new();
        let started = Instant::now();
        for item in &gold {
            let question = item["question"].as_str().unwrap_or_default();
            let gold_sql = item["sql"].as_str().unwrap_or_default();
            let expected = normalise(&db.query(&guard.check(gold_sql)?).await?.rows);
            let (sql, ok, tries) = match chain.query(question, &ctx).await {
                Ok(answer) => {
                    ran += 1;
                    let ok = normalise(&answer.result.rows) == expected;
                    (answer.sql, ok, answer.attempts.len())
                }
                Err(e) => (format!("(failed: {e})"), false, 3),
            };
            if ok {
                correct += 1;
                if tries == 1 {
                    first_try += 1;
                }
            }
            println!("{} {question}\n    {sql}", if ok { "OK  " } else { "MISS" });
            samples.push(json!({"question": question, "gold": gold_sql, "generated": sql, "correct": ok, "tries": tries}));
        }
        let n = gold.len() as f64;
        println!(
            "{name}: ran {ran}/{} ({:.1}%), execution accuracy {correct}/{} ({:.1}%), {:.1} s\n",
            gold.len(),
            100.0 * ran as f64 / n,
            gold.len(),
            100.0 * correct as f64 / n,
            started.elapsed().as_secs_f64()
        );
        report.insert(
            name.clone(),
            json!({
                "model": model.model_name(), "questions": gold.len(), "executed": ran, "correct": correct,
                "correct_first_try": first_try, "seconds": started.elapsed().as_secs_f64(), "samples": samples
            }),
        );
    }
    if let Some(path) = out_path {
        let text = serde_json::to_string_pretty(&Value::Object(report)).unwrap_or_default();
        std::fs::write(&path, text).map_err(|e| catena::core::Error::io(&path, e))?;
    }
    Ok(())
}
