//! Ask the Chinook music-store database questions in plain language, on the local model.
//!
//! ```text
//! scripts/fetch-data.sh                      # once: fetches the Chinook fixture
//! cargo run --example sql_qa                 # the built-in questions
//! cargo run --example sql_qa -- "How many albums does AC/DC have?"
//! ```
//!
//! What happens, step by step:
//! 1. Chinook is loaded into a SQLite file (once, in the cache folder).
//! 2. The database is opened again **read-only**; the chain reads its schema (tables, keys and
//!    three sample rows per table).
//! 3. For each question the chain picks the relevant tables, the local model writes SQL under a
//!    grammar built from those tables' columns, the guard checks it (one SELECT, nothing that
//!    writes, a LIMIT), it runs, and the model answers from the rows.

use std::sync::Arc;

use catena::core::{ChatModel, Embedder, Result, RunContext};
use catena::models::{LlamaChatModel, LlamaEmbedder};
use catena::query::sql::{SqlDatabase, SqlOptions, SqlQueryChain, chinook};

#[tokio::main]
async fn main() -> Result<()> {
    // 1. A Chinook SQLite file next to the fixture, built on first run.
    let fixture = chinook::fixture_path();
    let file = fixture.with_file_name("chinook.sqlite");
    let url = format!("sqlite://{}", file.display());
    if !file.exists() {
        println!("building {} from {}", file.display(), fixture.display());
        let writable =
            SqlDatabase::connect_with(&url, SqlOptions { read_only: false, ..SqlOptions::default() }).await?;
        if let Err(e) = chinook::load(&fixture, &writable).await {
            writable.close().await;
            let _ = std::fs::remove_file(&file);
            return Err(e);
        }
        writable.close().await;
    }

    // 2. Read-only from here on; the chain reads the schema once.
    let db = SqlDatabase::connect(&url).await?;
    let model: Arc<dyn ChatModel> = Arc::new(LlamaChatModel::load_default().await?);
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let chain = SqlQueryChain::new(model, db)
        .await?
        .with_constrained_decoding(true) // the local model writes only valid SQL over real columns
        .with_table_selection(embedder, 3); // a 135M model reads a short schema best

    // 3. Questions from the command line, or a few of our own.
    let asked: Vec<String> = std::env::args().skip(1).collect();
    let questions = if asked.is_empty() {
        vec!["How many artists are there?".to_owned(), "List five genres.".to_owned()]
    } else {
        asked
    };
    let ctx = RunContext::new();
    for question in questions {
        println!("\nQ: {question}");
        match chain.ask(&question, &ctx).await {
            Ok(answer) => {
                println!("SQL: {}", answer.sql);
                println!("{}", answer.result.to_tsv(40));
                println!("A: {}", answer.answer.unwrap_or_default());
            }
            // A question the model could not turn into a working query is reported, not fatal.
            Err(e) => println!("could not answer: {e}"),
        }
    }
    Ok(())
}
