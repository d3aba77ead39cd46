//! The text-to-Cypher chain: question -> Cypher (schema-only prompt) -> reader and direction
//! correction -> rows -> answer, with repair on failures.

use std::sync::Arc;

use catena_core::{ChatModel, Error, Message, Result, RunContext, Runnable, async_trait};
use serde::Serialize;
use serde_json::Value;

use super::graph::{GraphSchema, Neo4jGraph, SchemaSource};
use super::guard::CypherGuard;
use crate::repair::{QueryAttempt, RepairLoop, answer_from_rows, fenced_block, first_keyword, repairable};

/// What [`GraphCypherChain::ask`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CypherAnswer {
    /// The question.
    pub question: String,
    /// The query that ran (directions corrected, `LIMIT` capped).
    pub cypher: String,
    /// Its rows, as JSON objects keyed by the returned names.
    pub rows: Vec<serde_json::Map<String, Value>>,
    /// The answer from the rows (`None` when answering is off).
    pub answer: Option<String>,
    /// Every try, the successful one last.
    pub attempts: Vec<QueryAttempt>,
}

/// Finds the Cypher in a model reply: the first fenced block, else the text from the first
/// clause keyword (`MATCH`, `OPTIONAL MATCH`, `CALL`, `WITH`, `UNWIND`, `RETURN`) on.
#[must_use]
pub fn extract_cypher(reply: &str) -> Option<String> {
    let text = match fenced_block(reply) {
        Some(body) => body,
        None => {
            let upper = reply.to_ascii_uppercase();
            let keywords = ["MATCH", "OPTIONAL MATCH", "CALL", "WITH", "UNWIND", "RETURN"];
            let start =
                first_keyword(&upper, keywords, |c| c.is_some_and(|c| c.is_whitespace() || c == '('))?;
            reply.get(start..).unwrap_or_default()
        }
    };
    let query = text.trim().trim_end_matches(';').trim().to_owned();
    (!query.is_empty()).then_some(query)
}

/// Question -> Cypher -> rows -> answer over a Neo4j graph (LangChain's `GraphCypherQAChain`,
/// with the read-only reader, direction correction and a repair loop).
#[derive(Debug)]
pub struct GraphCypherChain {
    model: Arc<dyn ChatModel>,
    graph: Arc<Neo4jGraph>,
    schema: GraphSchema,
    guard: CypherGuard,
    examples: Vec<(String, String)>,
    max_repairs: usize,
    answer: bool,
    max_tokens: u32,
}

impl GraphCypherChain {
    /// A chain over `graph`, reading its schema (with APOC when the server has it).
    pub async fn new(model: Arc<dyn ChatModel>, graph: Arc<Neo4jGraph>) -> Result<Self> {
        let schema = graph.schema(SchemaSource::Auto).await?;
        Ok(Self::with_schema(model, graph, schema))
    }

    /// A chain with a schema read elsewhere (APOC, or written by hand).
    #[must_use]
    pub fn with_schema(model: Arc<dyn ChatModel>, graph: Arc<Neo4jGraph>, schema: GraphSchema) -> Self {
        let guard = CypherGuard::new().with_relationships(schema.relationships.clone());
        Self {
            model,
            graph,
            schema,
            guard,
            examples: Vec::new(),
            max_repairs: 2,
            answer: true,
            max_tokens: 256,
        }
    }

    /// The row cap (default 100).
    #[must_use]
    pub fn with_max_rows(mut self, max_rows: u64) -> Self {
        self.guard = self.guard.with_max_rows(max_rows);
        self
    }

    /// Repair attempts after a failing query (default 2).
    #[must_use]
    pub fn with_max_repairs(mut self, max_repairs: usize) -> Self {
        self.max_repairs = max_repairs;
        self
    }

    /// Few-shot (question, Cypher) examples.
    #[must_use]
    pub fn with_examples(mut self, examples: Vec<(String, String)>) -> Self {
        self.examples = examples;
        self
    }

    /// Answer from the rows (default) or stop after the query.
    #[must_use]
    pub fn with_answer(mut self, answer: bool) -> Self {
        self.answer = answer;
        self
    }

    /// The schema the prompt shows.
    #[must_use]
    pub fn schema(&self) -> &GraphSchema {
        &self.schema
    }

    /// Writes, checks and runs a query for `question`.
    pub async fn query(&self, question: &str, ctx: &RunContext) -> Result<CypherAnswer> {
        if question.trim().is_empty() {
            return Err(Error::invalid_input("the question is empty"));
        }
        let mut messages = vec![Message::system(format!(
            "You write Cypher queries for a Neo4j graph. Reply with one read-only Cypher query that answers \
             the question and nothing else. Use only the node labels, relationship types, directions and \
             properties in this schema:\n{}",
            self.schema.render()
        ))];
        for (q, cypher) in &self.examples {
            messages.push(Message::user(q.clone()));
            messages.push(Message::assistant(cypher.clone()));
        }
        messages.push(Message::user(question.to_owned()));
        let repair = RepairLoop {
            model: self.model.as_ref(),
            messages,
            format: None,
            max_tokens: self.max_tokens,
            max_repairs: self.max_repairs,
            language: "Cypher",
        };
        let none = serde_json::Map::new();
        let ((cypher, rows), attempts) = repair
            .run(question, ctx, extract_cypher, |text| {
                let none = &none;
                async move {
                    let guarded = match self.guard.check(&text) {
                        Ok(guarded) => guarded,
                        Err(rejection) => return Ok(Err(format!("the query was refused: {rejection}"))),
                    };
                    Ok(repairable(self.graph.query(&guarded, none).await)?.map(|rows| (guarded.query, rows)))
                }
            })
            .await?;
        Ok(CypherAnswer { question: question.to_owned(), cypher, rows, answer: None, attempts })
    }

    /// [`query`](Self::query), then an answer from the rows.
    pub async fn ask(&self, question: &str, ctx: &RunContext) -> Result<CypherAnswer> {
        let mut answer = self.query(question, ctx).await?;
        if self.answer {
            let table: Vec<String> =
                answer.rows.iter().map(|r| Value::Object(r.clone()).to_string()).collect();
            answer.answer = Some(
                answer_from_rows(
                    self.model.as_ref(),
                    question,
                    "Cypher",
                    &answer.cypher,
                    &table.join("\n"),
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
impl Runnable<String, CypherAnswer> for GraphCypherChain {
    async fn invoke(&self, question: String, ctx: &RunContext) -> Result<CypherAnswer> {
        self.ask(&question, ctx).await
    }
}
