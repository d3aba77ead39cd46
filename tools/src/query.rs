//! Database tools: the guarded text-to-SQL and text-to-Cypher chains, and raw guarded SQL, as
//! tools an agent can call. Refusals and database errors come back as the observation (so the
//! model can correct itself, as LangChain's SQL tools do); only infrastructure failures
//! (connection lost, cancelled) are errors.

use std::sync::Arc;

use catena_core::{ErrorKind, Result, RunContext, ToolOutput, TypedTool, async_trait};
use schemars::JsonSchema;
use serde::Deserialize;

/// Whether an error is the query's fault (the model may fix it) rather than the system's.
fn is_query_error(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::InvalidInput | ErrorKind::Store | ErrorKind::Parse | ErrorKind::Timeout)
}

/// Arguments of the question-asking tools.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct QuestionArgs {
    /// The question, in plain language.
    pub question: String,
}

/// Asks a SQL database a question through a [`SqlQueryChain`](catena_query::sql::SqlQueryChain):
/// the observation is the SQL that ran and its rows (as a table); the artifact is the whole
/// [`SqlAnswer`](catena_query::sql::SqlAnswer). Safety: everything the chain's guard
/// enforces (one read-only SELECT over the schema's tables, a row cap) on a read-only connection.
///
/// Its description names the database's tables (`... the SQL database with the tables Album,
/// Artist, Customer, ...`): a model deciding whether "how many customers does the store have"
/// is a database question needs to know the database has customers. Replace it with
/// [`ToolExt::with_description`](catena_core::ToolExt::with_description) to say more.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub struct SqlQuestionTool {
    chain: Arc<catena_query::sql::SqlQueryChain>,
    description: String,
}

/// At most this many table names go into a description; more would cost every request tokens.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
const DESCRIBED_TABLES: usize = 24;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SqlQuestionTool {
    /// A tool over `chain` (build it with `with_answer(false)`: the agent writes the answer).
    #[must_use]
    pub fn new(chain: Arc<catena_query::sql::SqlQueryChain>) -> Self {
        let tables = &chain.schema().tables;
        let mut names: Vec<&str> = tables.iter().take(DESCRIBED_TABLES).map(|t| t.name.as_str()).collect();
        if tables.len() > DESCRIBED_TABLES {
            names.push("...");
        }
        let holding =
            if names.is_empty() { String::new() } else { format!(" with the tables {}", names.join(", ")) };
        let description = format!(
            "Answers a question from the SQL database{holding}: writes a read-only query, runs it and returns the SQL and its rows."
        );
        Self { chain, description }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[async_trait]
impl catena_core::Tool for SqlQuestionTool {
    fn name(&self) -> &str {
        "sql_question"
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> serde_json::Value {
        catena_core::model_schema::<QuestionArgs>()
    }

    /// The chain runs only guarded, read-only queries.
    fn read_only(&self) -> bool {
        true
    }

    async fn call(&self, arguments: serde_json::Value, ctx: &RunContext) -> Result<ToolOutput> {
        let args: QuestionArgs = serde_json::from_value(arguments)
            .map_err(|e| catena_core::Error::tool("sql_question", format!("invalid arguments: {e}")))?;
        match self.chain.query(&args.question, ctx).await {
            Ok(answer) => {
                let content = format!(
                    "SQL: {}\nRows ({}):\n{}",
                    answer.sql,
                    answer.result.rows.len(),
                    answer.result.to_tsv(80)
                );
                let artifact = serde_json::to_value(&answer).ok();
                Ok(ToolOutput { content, artifact })
            }
            Err(e) if is_query_error(e.kind()) => Ok(ToolOutput::text(format!("Error: {e}"))),
            Err(e) => Err(e),
        }
    }
}

/// Arguments of [`SqlQueryTool`].
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SqlArgs {
    /// One read-only SQL SELECT statement.
    pub sql: String,
}

/// Runs SQL the model wrote itself, through the [`SqlGuard`](catena_query::sql::SqlGuard)
/// on a read-only [`SqlDatabase`](catena_query::sql::SqlDatabase) (LangChain's
/// `QuerySQLDatabaseTool` with a guard). The observation is the rows, or why the query failed.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub struct SqlQueryTool {
    db: catena_query::sql::SqlDatabase,
    guard: catena_query::sql::SqlGuard,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SqlQueryTool {
    /// A tool over `db`, checking queries with `guard`.
    #[must_use]
    pub fn new(db: catena_query::sql::SqlDatabase, guard: catena_query::sql::SqlGuard) -> Self {
        Self { db, guard }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[async_trait]
impl TypedTool for SqlQueryTool {
    type Args = SqlArgs;
    const NAME: &'static str = "sql_query";
    const DESCRIPTION: &'static str = "Runs one read-only SQL SELECT statement and returns its rows; on an error, returns the error so the query can be fixed.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: SqlArgs, _ctx: &RunContext) -> Result<ToolOutput> {
        let guarded = match self.guard.check(&args.sql) {
            Ok(guarded) => guarded,
            Err(rejection) => {
                return Ok(ToolOutput::text(format!("Error: the query was refused: {rejection}")));
            }
        };
        match self.db.query(&guarded).await {
            Ok(result) => Ok(ToolOutput {
                content: format!("Rows ({}):\n{}", result.rows.len(), result.to_tsv(80)),
                artifact: serde_json::to_value(&result).ok(),
            }),
            Err(e) if is_query_error(e.kind()) => Ok(ToolOutput::text(format!("Error: {e}"))),
            Err(e) => Err(e),
        }
    }
}

/// Asks a Neo4j graph a question through a
/// [`GraphCypherChain`](catena_query::cypher::GraphCypherChain): the observation is the
/// Cypher that ran and its rows as JSON lines. Safety: the Cypher reader (no writes, no admin, no
/// write procedures, one statement, a row cap) and read transactions.
#[cfg(feature = "neo4j")]
pub struct CypherQuestionTool {
    chain: Arc<catena_query::cypher::GraphCypherChain>,
}

#[cfg(feature = "neo4j")]
impl CypherQuestionTool {
    /// A tool over `chain`.
    #[must_use]
    pub fn new(chain: Arc<catena_query::cypher::GraphCypherChain>) -> Self {
        Self { chain }
    }
}

#[cfg(feature = "neo4j")]
#[async_trait]
impl TypedTool for CypherQuestionTool {
    type Args = QuestionArgs;
    const NAME: &'static str = "graph_question";
    const DESCRIPTION: &'static str = "Answers a question from the graph database: writes a read-only Cypher query, runs it and returns the query and its rows.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: QuestionArgs, ctx: &RunContext) -> Result<ToolOutput> {
        match self.chain.query(&args.question, ctx).await {
            Ok(answer) => {
                let rows: Vec<String> =
                    answer.rows.iter().map(|r| serde_json::Value::Object(r.clone()).to_string()).collect();
                let content =
                    format!("Cypher: {}\nRows ({}):\n{}", answer.cypher, rows.len(), rows.join("\n"));
                Ok(ToolOutput { content, artifact: serde_json::to_value(&answer).ok() })
            }
            Err(e) if is_query_error(e.kind()) => Ok(ToolOutput::text(format!("Error: {e}"))),
            Err(e) => Err(e),
        }
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::Tool;
    use catena_core::testing::ScriptedChatModel;
    use catena_query::sql::{SqlDatabase, SqlOptions, SqlQueryChain};

    #[tokio::test]
    async fn the_question_tool_names_its_tables_and_returns_sql_and_rows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("shop.db").display());
        let writable =
            SqlDatabase::connect_with(&url, SqlOptions { read_only: false, ..SqlOptions::default() })
                .await
                .unwrap();
        for sql in [
            "CREATE TABLE Customer (CustomerId INTEGER PRIMARY KEY, Name TEXT)",
            "CREATE TABLE Invoice (InvoiceId INTEGER PRIMARY KEY, CustomerId INTEGER)",
            "INSERT INTO Customer VALUES (1, 'Ada'), (2, 'Grace')",
        ] {
            writable.execute_outside_transaction(sql).await.unwrap();
        }
        writable.close().await;

        let model = ScriptedChatModel::new(["SELECT COUNT(*) AS n FROM Customer", "SELECT * FROM Nowhere"]);
        let chain = SqlQueryChain::new(Arc::new(model), SqlDatabase::connect(&url).await.unwrap())
            .await
            .unwrap()
            .with_max_repairs(0);
        let tool = SqlQuestionTool::new(Arc::new(chain));
        assert!(tool.description().contains("with the tables Customer, Invoice:"), "{}", tool.description());
        assert_eq!(tool.parameters()["required"], serde_json::json!(["question"]));

        let ctx = RunContext::new();
        let out = tool.call(serde_json::json!({"question": "How many customers?"}), &ctx).await.unwrap();
        assert!(out.content.starts_with("SQL: SELECT COUNT(*) AS n FROM Customer"), "{}", out.content);
        assert!(out.content.contains("Rows (1):") && out.content.contains('2'), "{}", out.content);
        // A query the guard refuses is an observation the model can act on, not an error.
        let refused = tool.call(serde_json::json!({"question": "Anything?"}), &ctx).await.unwrap();
        assert!(refused.content.starts_with("Error:"), "{}", refused.content);
        // Arguments of the wrong shape are a tool error naming the tool.
        let bad = tool.call(serde_json::json!({"query": "x"}), &ctx).await.unwrap_err();
        assert!(bad.to_string().contains("sql_question"), "{bad}");
    }
}
