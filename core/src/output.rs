//! Output parsers: turn a model's [`ChatResponse`] into what the next step needs.

use std::marker::PhantomData;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{ChatResponse, Error, ResponseFormat, Result, RunContext, Runnable};

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

/// A JSON Schema as a model sees it, with the name it is offered under: the one way catena
/// turns a Rust type into a reply shape (structured output, judges, tool arguments).
///
/// [`of`](Self::of) derives it from `T: JsonSchema` (schemars) and drops the document envelope
/// (`$schema`, `title`) that models do not need. Shapes known only at run time (a list of exactly
/// `n` items, numbers from 1 to `n`) are refined with the `with_*` methods; static bounds belong
/// on the type as schemars attributes (`#[schemars(length(max = 300))]`, `#[schemars(range(max = 10))]`).
///
/// ```
/// use catena_core::ModelSchema;
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Ranking { ranking: Vec<u32> }
///
/// let schema = ModelSchema::of::<Ranking>()
///     .with_items("/properties/ranking", 1, 3)?
///     .with_enum("/properties/ranking/items", [1, 2, 3])?;
/// assert_eq!(schema.name(), "Ranking");
/// assert_eq!(schema.as_value()["properties"]["ranking"]["maxItems"], 3);
/// assert!(schema.as_value().get("$schema").is_none());
/// # Ok::<(), catena_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSchema {
    name: String,
    schema: Value,
}

impl ModelSchema {
    /// `T`'s schema, named after `T`.
    #[must_use]
    pub fn of<T: JsonSchema>() -> Self {
        let generated = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        let mut schema = generated.to_value();
        if let Some(object) = schema.as_object_mut() {
            object.remove("$schema");
            object.remove("title");
        }
        Self { name: T::schema_name().into_owned(), schema }
    }

    /// A schema built by hand, for replies whose shape is data (one variant per attribute of a
    /// self-query, say). The reply is still read into a typed value by [`structured_with`].
    #[must_use]
    pub fn from_value(name: impl Into<String>, schema: Value) -> Self {
        Self { name: name.into(), schema }
    }

    /// Renames it (the name a remote API shows the model; letters, digits, `_` and `-`).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The name it is offered under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The schema.
    #[must_use]
    pub fn as_value(&self) -> &Value {
        &self.schema
    }

    /// The schema, by value.
    #[must_use]
    pub fn into_value(self) -> Value {
        self.schema
    }

    /// The request's response format for this schema.
    #[must_use]
    pub fn response_format(&self) -> ResponseFormat {
        ResponseFormat::JsonSchema { name: self.name.clone(), schema: self.schema.clone() }
    }

    /// Bounds every string without a `maxLength` to `max_chars` and every list without a
    /// `maxItems` to `max_items`, so a model decoding under the schema has to close each of them
    /// long before its token limit instead of leaving a reply cut in half.
    #[must_use]
    pub fn bounded(mut self, max_chars: usize, max_items: usize) -> Self {
        bound(&mut self.schema, Some(max_chars), Some(max_items));
        self
    }

    /// Like [`bounded`](Self::bounded), for strings only (lists keep whatever bound they have).
    #[must_use]
    pub fn bounded_strings(mut self, max_chars: usize) -> Self {
        bound(&mut self.schema, Some(max_chars), None);
        self
    }

    /// The list at `pointer` (a JSON pointer into the schema, e.g. `/properties/verdicts`) holds
    /// from `min` to `max` items.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when nothing in the schema is at `pointer`.
    pub fn with_items(self, pointer: &str, min: usize, max: usize) -> Result<Self> {
        self.refine(pointer, |node| {
            node.insert("minItems".into(), min.into());
            node.insert("maxItems".into(), max.into());
        })
    }

    /// The value at `pointer` is one of `values`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when nothing in the schema is at `pointer`.
    pub fn with_enum<V: Into<Value>>(
        self,
        pointer: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Result<Self> {
        let values: Vec<Value> = values.into_iter().map(Into::into).collect();
        self.refine(pointer, |node| {
            node.insert("enum".into(), Value::Array(values));
        })
    }

    /// Replaces what is at `pointer` with `schema` (a shape built from data, such as one variant
    /// per declared field); definitions nothing refers to any more are dropped.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when nothing in the schema is at `pointer`.
    pub fn with_subschema(mut self, pointer: &str, schema: Value) -> Result<Self> {
        let node = self.schema.pointer_mut(pointer).ok_or_else(|| {
            Error::invalid_input(format!("the {} schema has no subschema at {pointer}", self.name))
        })?;
        *node = schema;
        prune_definitions(&mut self.schema);
        Ok(self)
    }

    fn refine(
        mut self,
        pointer: &str,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> Result<Self> {
        let node = self.schema.pointer_mut(pointer).and_then(Value::as_object_mut).ok_or_else(|| {
            Error::invalid_input(format!("the {} schema has no subschema at {pointer}", self.name))
        })?;
        edit(node);
        Ok(self)
    }
}

/// `T`'s JSON Schema as every model sees it: for structured replies, judges and tool arguments.
/// Shorthand for `ModelSchema::of::<T>().into_value()`.
#[must_use]
pub fn model_schema<T: JsonSchema>() -> Value {
    ModelSchema::of::<T>().into_value()
}

/// Drops the root's `$defs` that no `$ref` reaches from the rest of the schema.
fn prune_definitions(schema: &mut Value) {
    fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
        match value {
            Value::Object(object) => {
                if let Some(Value::String(target)) = object.get("$ref") {
                    out.push(target.as_str());
                }
                object.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let Some(root) = schema.as_object_mut() else { return };
    let Some(Value::Object(definitions)) = root.remove("$defs") else { return };
    let mut pending = Vec::new();
    root.values().for_each(|v| refs(v, &mut pending));
    let mut kept = serde_json::Map::new();
    while let Some(target) = pending.pop() {
        let Some(name) = target.strip_prefix("#/$defs/") else { continue };
        if kept.contains_key(name) {
            continue;
        }
        if let Some(definition) = definitions.get(name) {
            refs(definition, &mut pending);
            kept.insert(name.to_owned(), definition.clone());
        }
    }
    if !kept.is_empty() {
        root.insert("$defs".into(), Value::Object(kept));
    }
}

/// Adds `maxLength` to open strings (no length, enum, const, pattern or format of their own) and
/// `maxItems` to unbounded lists, everywhere but inside literal values (`const`, `enum`,
/// `default`, `examples`).
fn bound(schema: &mut Value, max_chars: Option<usize>, max_items: Option<usize>) {
    match schema {
        Value::Object(object) => {
            match object.get("type").and_then(Value::as_str) {
                Some("string")
                    if !["maxLength", "enum", "const", "pattern", "format"]
                        .iter()
                        .any(|k| object.contains_key(*k)) =>
                {
                    if let Some(max) = max_chars {
                        object.insert("maxLength".into(), max.into());
                    }
                }
                Some("array") if !object.contains_key("maxItems") => {
                    if let Some(max) = max_items {
                        object.insert("maxItems".into(), max.into());
                    }
                }
                _ => {}
            }
            for (key, child) in object.iter_mut() {
                if !matches!(key.as_str(), "const" | "enum" | "default" | "examples") {
                    bound(child, max_chars, max_items);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| bound(v, max_chars, max_items)),
        _ => {}
    }
}

/// Asks `model` for a reply shaped as `T` and parses it: the request's response format is set to
/// `T`'s [`ModelSchema`], which local models enforce with a grammar and remote ones with their
/// structured-output mode. Sampling (temperature, `max_tokens`) is the request's.
///
/// ```
/// use catena_core::{ChatRequest, Message, RunContext, structured, testing::ScriptedChatModel};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct Verdict { relevant: bool }
///
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// let model = ScriptedChatModel::new([r#"{"relevant": true}"#]);
/// let req = ChatRequest::new(vec![Message::user("Is this relevant?")]);
/// let v: Verdict = structured(&model, req, &RunContext::new()).await.unwrap();
/// assert!(v.relevant);
/// # });
/// ```
///
/// # Errors
/// The model's errors; [`Error::Parse`] when the reply does not read as `T`.
pub async fn structured<T>(
    model: &(impl crate::ChatModel + ?Sized),
    request: crate::ChatRequest,
    ctx: &RunContext,
) -> Result<T>
where
    T: DeserializeOwned + JsonSchema,
{
    structured_with(model, request, &ModelSchema::of::<T>(), ctx).await
}

/// [`structured`] under a refined or hand-built schema: the reply is still read as `T`.
///
/// # Errors
/// The model's errors; [`Error::Parse`] (naming the schema) when the reply does not read as `T`.
pub async fn structured_with<T>(
    model: &(impl crate::ChatModel + ?Sized),
    request: crate::ChatRequest,
    schema: &ModelSchema,
    ctx: &RunContext,
) -> Result<T>
where
    T: DeserializeOwned,
{
    let request = request.with_response_format(schema.response_format());
    let response = model.chat(request, ctx).await?;
    JsonOutputParser::<T>::new().parse(&response.message.content).map_err(|e| match e {
        Error::Parse { message, .. } => Error::parse(format!("{} reply", schema.name()), message),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Verdicts {
        /// One per statement.
        verdicts: Vec<Verdict>,
        #[schemars(length(max = 12))]
        note: String,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    enum Mark {
        Yes,
        No,
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[allow(dead_code)]
    struct Verdict {
        reason: String,
        mark: Mark,
    }

    #[test]
    fn a_model_schema_has_no_envelope_and_bounds_only_open_strings_and_lists() {
        let schema = ModelSchema::of::<Verdicts>();
        assert_eq!(schema.name(), "Verdicts");
        let value = schema.clone().bounded(300, 30).into_value();
        assert!(value.get("$schema").is_none() && value.get("title").is_none(), "{value}");
        assert_eq!(value["properties"]["note"]["maxLength"], 12, "a bound of its own stays");
        assert_eq!(value["properties"]["verdicts"]["maxItems"], 30);
        assert_eq!(value["$defs"]["Verdict"]["properties"]["reason"]["maxLength"], 300);
        // An enum of strings is not an open string: no maxLength is added to it.
        assert!(value["$defs"]["Mark"].get("maxLength").is_none(), "{value}");
        assert_eq!(model_schema::<Verdicts>(), schema.into_value());
    }

    #[test]
    fn refinements_name_the_pointer_they_cannot_find_and_drop_unused_definitions() {
        let err = ModelSchema::of::<Verdicts>().with_items("/properties/nope", 1, 2).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("/properties/nope"), "{err}");
        let exact = ModelSchema::of::<Verdicts>().with_items("/properties/verdicts", 3, 3).unwrap();
        assert_eq!(exact.as_value()["properties"]["verdicts"]["minItems"], 3);
        // Replacing the only use of `Verdict` drops its definition but keeps `Mark`'s user.
        let flat = ModelSchema::of::<Verdicts>()
            .with_subschema("/properties/verdicts/items", serde_json::json!({"type": "string"}))
            .unwrap()
            .into_value();
        assert!(flat.get("$defs").is_none(), "{flat}");
    }

    #[tokio::test]
    async fn a_reply_that_does_not_fit_names_the_schema() {
        let model = crate::testing::ScriptedChatModel::new([r#"{"verdicts": "many"}"#]);
        let request = crate::ChatRequest::new(vec![crate::Message::user("judge")]);
        let err = structured::<Verdicts>(&model, request, &RunContext::new()).await.err().unwrap();
        assert_eq!(err.kind(), crate::ErrorKind::Parse);
        assert!(err.to_string().contains("Verdicts reply"), "{err}");
        let sent = &model.requests()[0];
        assert!(
            matches!(&sent.response_format, Some(ResponseFormat::JsonSchema { name, .. }) if name == "Verdicts")
        );
    }

    #[test]
    fn json_in_fences_and_prose() {
        let p = JsonOutputParser::<serde_json::Value>::new();
        assert_eq!(p.parse("```json\n{\"a\": 1}\n```").unwrap()["a"], 1);
        assert_eq!(p.parse("Sure! {\"a\": [1]} hope that helps").unwrap()["a"][0], 1);
        let err = p.parse("no json here").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Parse);
    }
}
