//! The text-to-SQL chain: question -> SQL (grounded in the schema) -> guard -> rows -> answer,
//! with the database's or the guard's complaint fed back to the model for repair.

use std::sync::Arc;

use catena_core::{
    ChatModel, Embedder, Error, Message, ResponseFormat, Result, RunContext, Runnable, async_trait,
};
use serde::Serialize;

use super::database::{QueryResult, SqlDatabase};
use super::grammar::select_grammar;
use super::guard::{SqlDialect, SqlGuard};
use super::schema::{Schema, SchemaOptions};
use crate::repair::{QueryAttempt, RepairLoop, answer_from_rows, fenced_block, first_keyword, repairable};

/// What [`SqlQueryChain::ask`] returns: the SQL that ran, its rows, the answer, and every try.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlAnswer {
    /// The question.
    pub question: String,
    /// The statement that was executed (as the guard rendered it, with its `LIMIT`).
    pub sql: String,
    /// Its rows.
    pub result: QueryResult,
    /// The model's answer from the rows (`None` when answering is off).
    pub answer: Option<String>,
    /// Every try, the successful one last.
    pub attempts: Vec<QueryAttempt>,
}

/// Finds the SQL in a model reply: the first fenced block (```` ```sql ````), else the text after
/// a `SQLQuery:` label, else the text from the first `SELECT`/`WITH` on; cut at the first `;`
/// outside quotes. `None` when there is no query at all.
#[must_use]
pub fn extract_sql(reply: &str) -> Option<String> {
    let text = if let Some(body) = fenced_block(reply) {
        body.to_owned()
    } else if let Some(at) = reply.find("SQLQuery:") {
        let after = reply.get(at + "SQLQuery:".len()..).unwrap_or_default();
        after.split("SQLResult:").next().unwrap_or(after).to_owned()
    } else {
        let upper = reply.to_ascii_uppercase();
        // Write statements only count when there is no query at all in the reply.
        let writes = ["INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "PRAGMA", "ATTACH"];
        let keywords =
            ["SELECT", "WITH"].into_iter().chain(writes.into_iter().filter(|_| !upper.contains("SELECT")));
        let start =
            first_keyword(&upper, keywords, |c| c.is_none_or(|c| c.is_whitespace() || c == '(' || c == '*'))?;
        reply.get(start..).unwrap_or_default().to_owned()
    };
    let statement = cut_at_semicolon(&text).trim().to_owned();
    let first = statement.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
    // Other statements are passed on too, so the guard can say why they are refused.
    const STATEMENTS: &[&str] = &[
        "SELECT", "WITH", "VALUES", "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "TRUNCATE",
        "PRAGMA", "ATTACH", "DETACH", "COPY", "GRANT", "REVOKE", "SET", "REPLACE", "MERGE", "VACUUM", "CALL",
        "DO", "EXPLAIN",
    ];
    (STATEMENTS.contains(&first.as_str()) || first.starts_with('(')).then_some(statement)
}

/// `text` up to its first `;` outside quotes and comments.
fn cut_at_semicolon(text: &str) -> &str {
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, ';') => return text.get(..i).unwrap_or(text),
            _ => {}
        }
    }
    text
}

/// Question -> guarded SQL -> rows -> answer (LangChain's `create_sql_query_chain` plus
/// `QuerySQLDatabaseTool` and the answer step, with a guard and a repair loop).
///
/// At construction the chain reads the schema (tables, keys, three sample rows each). Per
/// question it optionally narrows the schema to the relevant tables (by embedding similarity),
/// asks the model for one query, extracts it, runs it through the [`SqlGuard`] (read-only, table
/// allow-list = the schema's tables, `LIMIT` capped), executes it, and on failure shows the model
/// its query and the error, up to `max_repairs` times. Then it answers from the rows.
#[derive(Debug)]
pub struct SqlQueryChain {
    model: Arc<dyn ChatModel>,
    db: SqlDatabase,
    schema: Schema,
    guard: SqlGuard,
    table_selector: Option<(Arc<dyn Embedder>, usize)>,
    examples: Vec<(String, String)>,
    top_k: usize,
    max_repairs: usize,
    constrained: bool,
    answer: bool,
    max_tokens: u32,
    max_cell_chars: usize,
}

impl SqlQueryChain {
    /// A chain over every table of `db`.
    pub async fn new(model: Arc<dyn ChatModel>, db: SqlDatabase) -> Result<Self> {
        Self::with_schema_options(model, db, &SchemaOptions::default()).await
    }

    /// A chain over the tables `options` select, with their descriptions.
    pub async fn with_schema_options(
        model: Arc<dyn ChatModel>,
        db: SqlDatabase,
        options: &SchemaOptions,
    ) -> Result<Self> {
        let schema = db.schema(options).await?;
        if schema.tables.is_empty() {
            return Err(Error::invalid_input(format!(
                "{} has no tables to query (check include_tables/ignore_tables, or the schema name)",
                db.url()
            )));
        }
        let guard = SqlGuard::new(db.dialect()).with_allowed_tables(schema.table_names()).with_max_rows(100);
        Ok(Self {
            model,
            db,
            schema,
            guard,
            table_selector: None,
            examples: Vec::new(),
            top_k: 5,
            max_repairs: 2,
            constrained: false,
            answer: true,
            max_tokens: 256,
            max_cell_chars: 100,
        })
    }

    /// Rows the prompt asks for when the question names no number (default 5).
    #[must_use]
    pub fn with_top_k(mut self, top_k: usize) -> Self {
        self.top_k = top_k.max(1);
        self
    }

    /// The hard row cap the guard enforces (default 100).
    #[must_use]
    pub fn with_max_rows(mut self, max_rows: u64) -> Self {
        self.guard = self.guard.with_max_rows(max_rows);
        self
    }

    /// How many times a failing query goes back to the model with its error (default 2).
    #[must_use]
    pub fn with_max_repairs(mut self, max_repairs: usize) -> Self {
        self.max_repairs = max_repairs;
        self
    }

    /// Decode under a grammar built from the schema (local llama.cpp models only): the query is
    /// syntactically valid and names only real tables and columns (see [`select_grammar`]).
    #[must_use]
    pub fn with_constrained_decoding(mut self, on: bool) -> Self {
        self.constrained = on;
        self
    }

    /// Show the model only the `k` tables most similar to the question (plus the tables their
    /// foreign keys reference), for schemas too large for its context.
    #[must_use]
    pub fn with_table_selection(mut self, embedder: Arc<dyn Embedder>, k: usize) -> Self {
        self.table_selector = Some((embedder, k.max(1)));
        self
    }

    /// Few-shot examples: (question, SQL) pairs shown before the question.
    #[must_use]
    pub fn with_examples(mut self, examples: Vec<(String, String)>) -> Self {
        self.examples = examples;
        self
    }

    /// Answer from the rows (default) or stop after running the query.
    #[must_use]
    pub fn with_answer(mut self, answer: bool) -> Self {
        self.answer = answer;
        self
    }

    /// Token budget per model call (default 256).
    #[must_use]
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens.max(16);
        self
    }

    /// The schema the chain read.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The guard queries pass through.
    #[must_use]
    pub fn guard(&self) -> &SqlGuard {
        &self.guard
    }

    /// The database.
    #[must_use]
    pub fn database(&self) -> &SqlDatabase {
        &self.db
    }

    fn system_prompt(&self, schema: &Schema) -> String {
        let dialect = self.db.dialect();
        let today = match dialect {
            SqlDialect::Sqlite => "date('now')",
            SqlDialect::Postgres => "CURRENT_DATE",
        };
        format!(
            "You write {dialect} queries. Given a question, reply with one {dialect} SELECT statement that \
             answers it and nothing else. Unless the question asks for a number of rows, return at most {} \
             rows with LIMIT. Select only the columns the question needs. Use only the tables and columns \
             listed below, and check which table each column belongs to. Use {today} for today's date.\n\n\
             Tables:\n{}",
            self.top_k,
            schema.render(self.max_cell_chars)
        )
    }

    async fn schema_for(&self, question: &str, ctx: &RunContext) -> Result<Schema> {
        match &self.table_selector {
            Some((embedder, k)) => {
                let names = self.schema.relevant_tables(question, embedder.as_ref(), *k, ctx).await?;
                Ok(self.schema.only(&names))
            }
            None => Ok(self.schema.clone()),
        }
    }

    /// Writes, guards and runs a query for `question`, repairing on failure; no answer step.
    pub async fn query(&self, question: &str, ctx: &RunContext) -> Result<SqlAnswer> {
        if question.trim().is_empty() {
            return Err(Error::invalid_input("the question is empty"));
        }
        let schema = self.schema_for(question, ctx).await?;
        let mut messages = vec![Message::system(self.system_prompt(&schema))];
        for (q, sql) in &self.examples {
            messages.push(Message::user(q.clone()));
            messages.push(Message::assistant(sql.clone()));
        }
        messages.push(Message::user(question.to_owned()));
        let format = self.constrained.then(|| ResponseFormat::Grammar { gbnf: select_grammar(&schema) });
        let repair = RepairLoop {
            model: self.model.as_ref(),
            messages,
            format,
            max_tokens: self.max_tokens,
            max_repairs: self.max_repairs,
            language: "SQL",
        };
        let ((sql, result), attempts) = repair
            .run(question, ctx, extract_sql, |sql| async move {
                let guarded = match self.guard.check(&sql) {
                    Ok(guarded) => guarded,
                    Err(rejection) => return Ok(Err(format!("the query was refused: {rejection}"))),
                };
                Ok(repairable(self.db.query(&guarded).await)?.map(|result| (guarded.sql, result)))
            })
            .await?;
        Ok(SqlAnswer { question: question.to_owned(), sql, result, answer: None, attempts })
    }

    /// [`query`](Self::query), then an answer written from the rows.
    pub async fn ask(&self, question: &str, ctx: &RunContext) -> Result<SqlAnswer> {
        let mut answer = self.query(question, ctx).await?;
        if self.answer {
            let table = if answer.result.rows.is_empty() {
                String::new()
            } else {
                answer.result.to_tsv(self.max_cell_chars)
            };
            answer.answer = Some(
                answer_from_rows(
                    self.model.as_ref(),
                    question,
                    "SQL",
                    &answer.sql,
                    &table,
                    self.max_tokens,
                    ctx,
                )
                .await?,
            );
        }
        Ok(answer)
    }
}

#[async_trait]
impl Runnable<String, SqlAnswer> for SqlQueryChain {
    async fn invoke(&self, question: String, ctx: &RunContext) -> Result<SqlAnswer> {
        self.ask(&question, ctx).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn extracts_sql_from_the_shapes_models_reply_in() {
        assert_eq!(extract_sql("```sql\nSELECT 1;\n```\nThis works.").as_deref(), Some("SELECT 1"));
        assert_eq!(
            extract_sql("SQLQuery: SELECT Name FROM Artist\nSQLResult: ...").as_deref(),
            Some("SELECT Name FROM Artist")
        );
        assert_eq!(
            extract_sql("Here is the query: select count(*) from Track; -- counts").as_deref(),
            Some("select count(*) from Track")
        );
        assert_eq!(extract_sql("SELECT ';' AS s; DROP TABLE x").as_deref(), Some("SELECT ';' AS s"));
        assert_eq!(
            extract_sql("WITH t AS (SELECT 1) SELECT * FROM t").as_deref(),
            Some("WITH t AS (SELECT 1) SELECT * FROM t")
        );
        assert_eq!(extract_sql("I cannot answer that."), None);
        assert_eq!(extract_sql("The selection was good"), None);
        assert_eq!(extract_sql(""), None);
    }
}
