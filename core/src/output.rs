//! Output parsers: turn a model's [`ChatResponse`] into what the next step needs.

use std::marker::PhantomData;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use serde::de::DeserializeOwned;

use crate::{ChatResponse, Error, Result, RunContext, Runnable};

/// The reply's text. Streams: each partial response's text passes through as it comes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StrOutputParser;

#[async_trait]
impl Runnable<ChatResponse, String> for StrOutputParser {
    async fn invoke(&self, input: ChatResponse, _ctx: &RunContext) -> Result<String> {
        Ok(input.message.content)
    }

    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<ChatResponse>>,
        _ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<String>> {
        Box::pin(inputs.map(|r| r.map(|response| response.message.content)))
    }
}

/// Parses the reply as JSON into `T`, tolerating a surrounding Markdown code fence and text
/// around the first JSON object or array.
#[derive(Debug)]
pub struct JsonOutputParser<T> {
    _target: PhantomData<fn() -> T>,
}

impl<T> Default for JsonOutputParser<T> {
    fn default() -> Self {
        Self { _target: PhantomData }
    }
}

impl<T: DeserializeOwned> JsonOutputParser<T> {
    /// A parser into `T`.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `text`.
    pub fn parse(&self, text: &str) -> Result<T> {
        let candidate = extract_json(text);
        serde_json::from_str(candidate).map_err(|e| {
            let shown: String = text.chars().take(200).collect();
            Error::parse("model output as JSON", format!("{e} in {shown:?}"))
        })
    }
}

/// The JSON inside `text`: the body of a ```json fence if there is one, else the span from the
/// first `{` or `[` to the last matching closer, else the trimmed text.
fn extract_json(text: &str) -> &str {
    let text = text.trim();
    if let Some(start) = text.find("```") {
        let after = text.get(start + 3..).unwrap_or("");
        let body_start = after.find('\n').map_or(0, |n| n + 1);
        let body = after.get(body_start..).unwrap_or("");
        if let Some(end) = body.find("```") {
            return body.get(..end).unwrap_or(body).trim();
        }
    }
    let open = text.find(['{', '[']);
    let close = text.rfind(['}', ']']);
    match (open, close) {
        (Some(o), Some(c)) if c >= o => text.get(o..=c).unwrap_or(text),
        _ => text,
    }
}

#[async_trait]
impl<T: DeserializeOwned + Send + 'static> Runnable<ChatResponse, T> for JsonOutputParser<T> {
    async fn invoke(&self, input: ChatResponse, _ctx: &RunContext) -> Result<T> {
        self.parse(&input.message.content)
    }

    /// Accumulates the partial responses' text and parses once the stream ends.
    fn transform<'a>(
        &'a self,
        inputs: BoxStream<'a, Result<ChatResponse>>,
        _ctx: &'a RunContext,
    ) -> BoxStream<'a, Result<T>> {
        Box::pin(futures::stream::once(async move {
            let mut text = String::new();
            let mut inputs = inputs;
            while let Some(partial) = inputs.next().await {
                text.push_str(&partial?.message.content);
            }
            self.parse(&text)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_fences_and_prose() {
        let p = JsonOutputParser::<serde_json::Value>::new();
        assert_eq!(p.parse("```json\n{\"a\": 1}\n```").unwrap()["a"], 1);
        assert_eq!(p.parse("Sure! {\"a\": [1]} hope that helps").unwrap()["a"][0], 1);
        let err = p.parse("no json here").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Parse);
    }
}
