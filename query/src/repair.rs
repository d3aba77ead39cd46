//! What text-to-SQL and text-to-Cypher share: ask for a query, try it, show the model its
//! mistake, try again; then answer from the rows.

use std::future::Future;

use catena_core::{ChatModel, ChatRequest, Error, FinishReason, Message, ResponseFormat, Result, RunContext};
use serde::Serialize;

/// One try at a query: what the model wrote, the query extracted from it, and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryAttempt {
    /// The model's reply.
    pub reply: String,
    /// The query found in it (before the guard), if any.
    pub query: Option<String>,
    /// Why this try failed (no query, guard refusal, database error); `None` for the one that ran.
    pub error: Option<String>,
}

/// The knobs of one generate-and-repair run.
pub(crate) struct RepairLoop<'a> {
    pub model: &'a dyn ChatModel,
    pub messages: Vec<Message>,
    pub format: Option<ResponseFormat>,
    pub max_tokens: u32,
    pub max_repairs: usize,
    /// "SQL" or "Cypher", for messages.
    pub language: &'static str,
}

impl RepairLoop<'_> {
    /// Asks for a query, extracts it with `extract`, runs it with `run` (which returns
    /// `Ok(Err(message))` for a failure the model may repair), and repeats with the failure shown
    /// to the model. Errors `run` returns as `Err` (cancellation, model down) end the loop.
    pub(crate) async fn run<T, E, R, Fut>(
        mut self,
        question: &str,
        ctx: &RunContext,
        extract: E,
        mut run: R,
    ) -> Result<(T, Vec<QueryAttempt>)>
    where
        E: Fn(&str) -> Option<String>,
        R: FnMut(String) -> Fut,
        Fut: Future<Output = Result<std::result::Result<T, String>>>,
    {
        let language = self.language;
        let mut attempts = Vec::new();
        for _ in 0..=self.max_repairs {
            ctx.check_cancelled()?;
            let mut request = ChatRequest::new(self.messages.clone())
                .with_temperature(0.0)
                .with_max_tokens(self.max_tokens);
            if let Some(format) = &self.format {
                request = request.with_response_format(format.clone());
            }
            let response = self.model.chat(request, ctx).await?;
            let truncated = response.finish_reason == FinishReason::Length;
            let reply = response.message.content;
            let query = extract(&reply);
            let outcome = match &query {
                // A query cut off at the token limit may still parse (`SELECT 1, 2, 3` without its
                // FROM); running it would answer a different question.
                _ if truncated => {
                    Err(format!("the {language} query was cut off at the length limit; write a shorter one"))
                }
                None => Err(format!("the reply contains no {language} query; reply with the query only")),
                Some(q) => run(q.clone()).await?,
            };
            match outcome {
                Ok(value) => {
                    attempts.push(QueryAttempt { reply, query, error: None });
                    return Ok((value, attempts));
                }
                Err(error) => {
                    tracing::debug!(%error, language, "generated query failed");
                    self.messages.push(Message::assistant(reply.clone()));
                    self.messages.push(Message::user(format!(
                        "{error}. Write a corrected query for the question: {question}"
                    )));
                    attempts.push(QueryAttempt { reply, query, error: Some(error) });
                }
            }
        }
        let last = attempts.last().and_then(|a| a.error.clone()).unwrap_or_default();
        Err(Error::parse(
            language,
            format!(
                "no runnable {language} query after {} tries; the last failed because {last}",
                attempts.len()
            ),
        ))
    }
}

/// The body of the first fenced block (```` ```lang ... ``` ````) in a reply, without its info
/// string; to the end of the reply when the fence is not closed.
pub(crate) fn fenced_block(reply: &str) -> Option<&str> {
    let after = reply.get(reply.find("```")? + 3..)?;
    let body = after.find('\n').and_then(|nl| after.get(nl + 1..)).unwrap_or(after);
    Some(body.find("```").and_then(|end| body.get(..end)).unwrap_or(body))
}

/// Where the earliest of `keywords` starts in `upper` (an upper-cased reply) as a whole word:
/// not preceded by a letter, digit or `_`, and followed by what `follows` accepts.
pub(crate) fn first_keyword<'k>(
    upper: &str,
    keywords: impl IntoIterator<Item = &'k str>,
    follows: impl Fn(Option<char>) -> bool,
) -> Option<usize> {
    keywords
        .into_iter()
        .filter_map(|kw| {
            upper.match_indices(kw).map(|(i, _)| i).find(|&i| {
                let before = upper.get(..i).and_then(|b| b.chars().last());
                let after = upper.get(i + kw.len()..).and_then(|a| a.chars().next());
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_') && follows(after)
            })
        })
        .min()
}

/// A query's outcome as the repair loop wants it: database errors (unknown column, type
/// mismatch, timeout) are the model's to fix and become the message it is shown; anything else
/// (model down, cancelled) ends the loop.
pub(crate) fn repairable<T>(outcome: Result<T>) -> Result<std::result::Result<T, String>> {
    match outcome {
        Ok(value) => Ok(Ok(value)),
        Err(e) if matches!(e.kind(), catena_core::ErrorKind::Store | catena_core::ErrorKind::Timeout) => {
            Ok(Err(e.to_string()))
        }
        Err(e) => Err(e),
    }
}

/// Asks `model` to answer `question` from a query and its result table.
pub(crate) async fn answer_from_rows(
    model: &dyn ChatModel,
    question: &str,
    language: &str,
    query: &str,
    table: &str,
    max_tokens: u32,
    ctx: &RunContext,
) -> Result<String> {
    let rows = if table.trim().is_empty() { "(no rows)" } else { table };
    let prompt = format!(
        "Answer the question from the result of the {language} query below. Use only the result; if it has \
         no rows, say that nothing matched.\n\nQuestion: {question}\n{language} query: {query}\nResult:\n{rows}\n\nAnswer:"
    );
    let request =
        ChatRequest::new(vec![Message::user(prompt)]).with_temperature(0.0).with_max_tokens(max_tokens);
    Ok(model.chat(request, ctx).await?.message.content.trim().to_owned())
}
