//! `catena sql`: check SQL against the read-only guard, ask a database a question, load Chinook.

use std::path::PathBuf;
use std::sync::Arc;

use catena::core::{ChatModel, Embedder, Error, Result, RunContext};
use catena::models::LlamaEmbedder;
use catena::query::sql::{
    SchemaOptions, SqlDatabase, SqlDialect, SqlGuard, SqlOptions, SqlQueryChain, chinook,
};
use clap::{Args, Subcommand, ValueEnum};

#[derive(Subcommand)]
pub(crate) enum SqlCommand {
    /// Check one SQL statement against the read-only guard: prints the statement that would run
    /// (exit 0), or the reason it is refused on stderr (exit 1).
    ///
    /// Example: catena sql check --dialect sqlite "SELECT Name FROM Artist"
    Check {
        /// The statement ("-" reads it from stdin).
        sql: String,
        /// How to parse it.
        #[arg(long, value_enum, default_value_t = DialectArg::Sqlite)]
        dialect: DialectArg,
        /// Row cap added or enforced as LIMIT.
        #[arg(long, default_value_t = 100)]
        max_rows: u64,
        /// Only these tables may be read (comma-separated); any table when absent.
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
    /// Ask a database a question: the local model writes SQL (under a grammar of the schema's
    /// tables and columns), the guard checks it, it runs read-only, and the model answers from the
    /// rows. Prints the SQL, the rows and the answer.
    ///
    /// Example: catena sql ask --db sqlite://chinook.db "Which country's customers spent the most?"
    Ask(AskArgs),
    /// Create the Chinook sample tables in a database and load them from the fixture that
    /// scripts/fetch-data.sh fetches.
    ///
    /// Example: catena sql load-chinook --db sqlite://chinook.db
    LoadChinook {
        /// The database: sqlite://FILE (created if missing) or postgres://USER@HOST/DB.
        #[arg(long)]
        db: String,
        /// The fixture (default: the data cache, see scripts/fetch-data.sh).
        #[arg(long)]
        fixture: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DialectArg {
    Sqlite,
    Postgres,
}

impl From<DialectArg> for SqlDialect {
    fn from(d: DialectArg) -> Self {
        match d {
            DialectArg::Sqlite => SqlDialect::Sqlite,
            DialectArg::Postgres => SqlDialect::Postgres,
        }
    }
}

#[derive(Args)]
pub(crate) struct AskArgs {
    /// The question.
    question: String,
    /// The database: sqlite://FILE, a .db/.sqlite path, or postgres://USER@HOST/DB. Opened
    /// read-only.
    #[arg(long, env = "CATENA_SQL_DB")]
    db: String,
    /// The chat model that writes the SQL: `chat`, `agent` (Qwen2.5-Coder 1.5B), `agent-small`,
    /// or a GGUF path.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// Show the model only the N tables most related to the question (by embedding similarity),
    /// plus those their foreign keys reference; 0 shows every table. Small local models need a
    /// short schema.
    #[arg(long, default_value_t = 4)]
    tables: usize,
    /// Most rows the query may return.
    #[arg(long, default_value_t = 100)]
    max_rows: u64,
    /// Times a failing query goes back to the model with the error.
    #[arg(long, default_value_t = 2)]
    repairs: usize,
    /// Let the model write free text instead of decoding under the schema grammar.
    #[arg(long)]
    unconstrained: bool,
    /// Stop after printing the rows (no answer).
    #[arg(long)]
    no_answer: bool,
    /// Print one JSON object (question, sql, result, answer, attempts).
    #[arg(long)]
    json: bool,
}

pub(crate) async fn sql(cmd: SqlCommand) -> Result<bool> {
    match cmd {
        SqlCommand::Check { sql, dialect, max_rows, tables } => {
            let sql = if sql == "-" {
                std::io::read_to_string(std::io::stdin()).map_err(|e| Error::io("<stdin>", e))?
            } else {
                sql
            };
            let mut guard = SqlGuard::new(dialect.into()).with_max_rows(max_rows);
            if !tables.is_empty() {
                guard = guard.with_allowed_tables(&tables);
            }
            match guard.check(&sql) {
                Ok(ok) => {
                    println!("{}", ok.sql);
                    Ok(true)
                }
                Err(rejection) => {
                    eprintln!("refused: {rejection}");
                    Ok(false)
                }
            }
        }
        SqlCommand::Ask(args) => ask(args).await.map(|()| true),
        SqlCommand::LoadChinook { db, fixture } => {
            let fixture = fixture.unwrap_or_else(chinook::fixture_path);
            let options = SqlOptions { read_only: false, ..SqlOptions::default() };
            let database = SqlDatabase::connect_with(&db, options).await?;
            let report = chinook::load(&fixture, &database).await?;
            database.close().await;
            let tables: Vec<String> = report.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            eprintln!("loaded {} rows into {}: {}", report.total(), database.url(), tables.join(", "));
            Ok(true)
        }
    }
}

async fn ask(args: AskArgs) -> Result<()> {
    let db = SqlDatabase::connect(&args.db).await?;
    let model: Arc<dyn ChatModel> = Arc::new(crate::chat_model(&args.model).await?);
    let mut chain = SqlQueryChain::with_schema_options(model, db, &SchemaOptions::default())
        .await?
        .with_max_rows(args.max_rows)
        .with_max_repairs(args.repairs)
        .with_constrained_decoding(!args.unconstrained)
        .with_answer(!args.no_answer);
    if args.tables > 0 {
        let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
        chain = chain.with_table_selection(embedder, args.tables);
    }
    let answer = chain.ask(&args.question, &RunContext::new()).await?;
    if args.json {
        let out = serde_json::to_string(&answer).map_err(|e| Error::parse("answer", e.to_string()))?;
        println!("{out}");
        return Ok(());
    }
    for failed in answer.attempts.iter().filter(|a| a.error.is_some()) {
        eprintln!(
            "tried: {}\n  failed: {}",
            failed.query.as_deref().unwrap_or(failed.reply.as_str()),
            failed.error.as_deref().unwrap_or_default()
        );
    }
    println!("SQL: {}\n", answer.sql);
    println!("{}", answer.result.to_tsv(60));
    println!("({} rows)", answer.result.rows.len());
    if let Some(text) = &answer.answer {
        println!("\n{text}");
    }
    Ok(())
}
