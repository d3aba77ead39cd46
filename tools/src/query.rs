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
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub struct SqlQuestionTool {
    chain: Arc<catena_query::sql::SqlQueryChain>,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl SqlQuestionTool {
    /// A tool over `chain` (build it with `with_answer(false)`: the agent writes the answer).
    #[must_use]
    pub fn new(chain: Arc<catena_query::sql::SqlQueryChain>) -> Self {
        Self { chain }
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[async_trait]
impl TypedTool for SqlQuestionTool {
    type Args = QuestionArgs;
    const NAME: &'static str = "sql_question";
    const DESCRIPTION: &'static str = "Answers a question from the SQL database: writes a read-only query, runs it and returns the SQL and its rows.";

    async fn run(&self, args: QuestionArgs, ctx: &RunContext) -> Result<ToolOutput> {
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
