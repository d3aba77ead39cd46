//! [`SelfQueryRetriever`]: the chat model turns a question into a search text plus a metadata
//! filter ("papers about transformers from after 2020" -> `transformers`, `year > 2020`).

use std::sync::Arc;

use async_trait::async_trait;
use catena_core::ModelSchema;
use catena_core::{
    ChatModel, Embedder, Error, Filter, Result, Retriever, RunContext, ScoredDocument, VectorStore,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// The type of a metadata field the model may filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// Text.
    String,
    /// Whole numbers.
    Integer,
    /// Any numbers.
    Number,
    /// true / false.
    Boolean,
}

/// A metadata field described to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeInfo {
    /// The metadata key.
    pub name: String,
    /// What it means, for the model.
    pub description: String,
    /// Its type.
    pub kind: AttributeType,
}

impl AttributeInfo {
    /// Describes one field.
    pub fn new(name: impl Into<String>, description: impl Into<String>, kind: AttributeType) -> Self {
        Self { name: name.into(), description: description.into(), kind }
    }
}

/// A search text and an optional filter, as the model wrote them.
#[derive(Debug, Clone, PartialEq)]
pub struct StructuredQuery {
    /// What to search for (may be empty when the question is only a filter).
    pub query: String,
    /// The metadata condition.
    pub filter: Option<Filter>,
}

/// Asks the chat model for `{query, filter}` under a JSON Schema built from the declared fields
/// (each condition's value typed by its field, so a local model cannot write `year > "soon"`),
/// checks the result again (remote models are not grammar-bound), and searches with it. A
/// filter that names an unknown field, uses an operator its type does not support or a value
/// of the wrong type is an [`Error::Parse`] that says which.
#[derive(Debug)]
pub struct SelfQueryRetriever {
    model: Arc<dyn ChatModel>,
    store: Arc<dyn VectorStore>,
    embedder: Arc<dyn Embedder>,
    content_description: String,
    attributes: Vec<AttributeInfo>,
    k: usize,
}

fn ops(kind: AttributeType) -> &'static [&'static str] {
    match kind {
        AttributeType::String => &["eq", "ne", "contains", "like"],
        AttributeType::Integer | AttributeType::Number => &["eq", "ne", "gt", "gte", "lt", "lte"],
        AttributeType::Boolean => &["eq", "ne"],
    }
}

/// The schema of a condition's value for a field of `kind`.
fn value_schema(kind: AttributeType) -> Value {
    match kind {
        AttributeType::String => ModelSchema::of::<String>().bounded(80, 0).into_value(),
        AttributeType::Integer => ModelSchema::of::<i64>().into_value(),
        AttributeType::Number => ModelSchema::of::<f64>().into_value(),
        AttributeType::Boolean => ModelSchema::of::<bool>().into_value(),
    }
}

/// The model's reply: a search text and the conditions that must all hold. The schema the model
/// sees types each condition by its field ([`SelfQueryRetriever::schema`]).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SelfQueryReply {
    /// What to search for, without the constraints.
    // Bounded so the whole reply fits the token budget: a small model that rambles inside a
    // string would otherwise be cut off mid-JSON.
    #[schemars(length(max = 200))]
    pub query: String,
    /// Metadata conditions, all of which must hold.
    #[serde(default)]
    #[schemars(length(max = 4))]
    pub conditions: Vec<SelfQueryCondition>,
}

/// One metadata condition of a [`SelfQueryReply`].
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub struct SelfQueryCondition {
    /// The metadata field.
    pub field: String,
    /// `eq`, `ne`, `gt`, `gte`, `lt`, `lte`, `contains` or `like`, as the field's type allows.
    pub op: String,
    /// The value compared with.
    pub value: Value,
}

impl SelfQueryRetriever {
    /// `content_description` says what the documents are ("abstracts of aeronautics papers");
    /// `attributes` are the fields the model may filter on.
    pub fn new(
        model: Arc<dyn ChatModel>,
        store: Arc<dyn VectorStore>,
        embedder: Arc<dyn Embedder>,
        content_description: impl Into<String>,
        attributes: Vec<AttributeInfo>,
    ) -> Self {
        Self { model, store, embedder, content_description: content_description.into(), attributes, k: 4 }
    }

    /// How many documents to return.
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// The JSON Schema of the model's reply ([`SelfQueryReply`]): a query and up to four
    /// conditions, all of which must hold, each one typed by its field (name pinned, operators
    /// its type allows, value of its type).
    ///
    /// # Errors
    /// Never for the shapes this crate derives; an error names a schema that lost a field.
    pub fn schema(&self) -> Result<ModelSchema> {
        let conditions = self
            .attributes
            .iter()
            .map(|a| {
                ModelSchema::of::<SelfQueryCondition>()
                    .with_enum("/properties/field", [a.name.as_str()])?
                    .with_enum("/properties/op", ops(a.kind).iter().copied())?
                    .with_subschema("/properties/value", value_schema(a.kind))
                    .map(ModelSchema::into_value)
            })
            .collect::<Result<Vec<Value>>>()?;
        ModelSchema::of::<SelfQueryReply>()
            .named("structured_query")
            .with_subschema("/properties/conditions/items", serde_json::json!({ "anyOf": conditions }))
    }

    /// Turns a question into a [`StructuredQuery`].
    ///
    /// # Errors
    /// Model errors; [`Error::Parse`] when the reply or one of its conditions is invalid.
    pub async fn structure(&self, question: &str, ctx: &RunContext) -> Result<StructuredQuery> {
        let fields: Vec<String> = self
            .attributes
            .iter()
            .map(|a| format!("- {} ({:?}): {}", a.name, a.kind, a.description).to_lowercase())
            .collect();
        let prompt = format!(
            "Turn the question into a search query and metadata conditions.\nThe documents are: {}.\n\
             Fields you may filter on:\n{}\nUse conditions only for constraints the question states; \
             put the topic to search for in `query` without them.\n\nQuestion: {question}",
            self.content_description,
            fields.join("\n")
        );
        let reply = crate::ask(self.model.as_ref(), prompt, &self.schema()?, 320, ctx).await?;
        self.parse(reply)
    }

    /// Checks a reply against the declared fields again (remote models are not grammar-bound)
    /// and turns it into a filter.
    ///
    /// # Errors
    /// [`Error::Parse`] naming what is wrong: an unknown field, an operator its type does not
    /// support, a value of the wrong type.
    pub fn parse(&self, reply: SelfQueryReply) -> Result<StructuredQuery> {
        let bad = |m: String| Error::parse("self-query filter", m);
        let query = reply.query.trim().to_owned();
        let mut filters = Vec::new();
        for SelfQueryCondition { field, op, value } in reply.conditions {
            let field = field.as_str();
            let op = op.as_str();
            let attribute = self.attributes.iter().find(|a| a.name == field).ok_or_else(|| {
                let known: Vec<&str> = self.attributes.iter().map(|a| a.name.as_str()).collect();
                bad(format!("unknown field `{field}` (known: {})", known.join(", ")))
            })?;
            if !ops(attribute.kind).contains(&op) {
                return Err(bad(format!(
                    "operator `{op}` does not apply to {:?} field `{field}`",
                    attribute.kind
                )));
            }
            let fits = match attribute.kind {
                AttributeType::String => value.is_string(),
                AttributeType::Integer => value.is_i64() || value.is_u64(),
                AttributeType::Number => value.is_number(),
                AttributeType::Boolean => value.is_boolean(),
            };
            if !fits {
                return Err(bad(format!("value {value} does not fit {:?} field `{field}`", attribute.kind)));
            }
            let field = field.to_owned();
            filters.push(match op {
                "eq" => Filter::Eq(field, value),
                "ne" => Filter::Ne(field, value),
                "gt" => Filter::Gt(field, value),
                "gte" => Filter::Gte(field, value),
                "lt" => Filter::Lt(field, value),
                "lte" => Filter::Lte(field, value),
                "contains" => Filter::Contains(field, value),
                _ => Filter::Like(field, value.as_str().unwrap_or_default().to_owned()),
            });
        }
        let filter = match filters.len() {
            0 => None,
            1 => filters.pop(),
            _ => Some(Filter::And(filters)),
        };
        Ok(StructuredQuery { query, filter })
    }
}

#[async_trait]
impl Retriever for SelfQueryRetriever {
    async fn retrieve(&self, question: &str, ctx: &RunContext) -> Result<Vec<ScoredDocument>> {
        crate::check_query(question, self.k)?;
        let structured = self.structure(question, ctx).await?;
        // A question that is only a filter ("documents from 2021") still needs a vector to rank by.
        let text = if structured.query.is_empty() { question } else { structured.query.as_str() };
        let vector = self.embedder.embed_one(text, ctx).await?;
        // The model's filter narrows what the caller may read; it never widens it.
        let filter = catena_core::security::scoped_filter(structured.filter.as_ref(), ctx);
        let hits = self.store.search(&vector, self.k, filter.as_ref()).await?;
        Ok(crate::retrieved(ctx, question, hits))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::{InMemoryVectorStore, index_documents};
    use catena_core::testing::{DeterministicEmbedder, ScriptedChatModel};
    use catena_core::{Document, ErrorKind};

    fn retriever(reply: &str) -> (SelfQueryRetriever, Arc<InMemoryVectorStore>, Arc<DeterministicEmbedder>) {
        let store = Arc::new(InMemoryVectorStore::new());
        let embedder = Arc::new(DeterministicEmbedder::new(32));
        let r = SelfQueryRetriever::new(
            Arc::new(ScriptedChatModel::new([reply.to_owned()])),
            store.clone(),
            embedder.clone(),
            "papers",
            vec![
                AttributeInfo::new("year", "publication year", AttributeType::Integer),
                AttributeInfo::new("venue", "where it appeared", AttributeType::String),
            ],
        );
        (r, store, embedder)
    }

    #[tokio::test]
    async fn question_becomes_query_and_filter() {
        let (r, store, embedder) = retriever(
            r#"{"query": "transformers", "conditions": [{"field": "year", "op": "gt", "value": 2020}]}"#,
        );
        let docs = vec![
            Document::new("transformers").with_metadata("year", 2019),
            Document::new("transformers again").with_metadata("year", 2022),
        ];
        index_documents(&docs, embedder.as_ref(), store.as_ref(), 8, &RunContext::new()).await.unwrap();
        let hits = r.retrieve("transformer papers after 2020", &RunContext::new()).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].document.metadata["year"], 2022);
        let schema = r.schema().unwrap().into_value();
        let year = &schema["properties"]["conditions"]["items"]["anyOf"][0]["properties"];
        assert_eq!(year["field"]["enum"], serde_json::json!(["year"]));
        assert_eq!(year["value"]["type"], "integer");
        assert_eq!(schema["properties"]["conditions"]["maxItems"], 4);
    }

    #[tokio::test]
    async fn invalid_filters_are_rejected_with_reasons() {
        for (reply, needle) in [
            (
                r#"{"query": "x", "conditions": [{"field": "author", "op": "eq", "value": "me"}]}"#,
                "unknown field `author`",
            ),
            (
                r#"{"query": "x", "conditions": [{"field": "year", "op": "eq", "value": "2020"}]}"#,
                "does not fit",
            ),
            (
                r#"{"query": "x", "conditions": [{"field": "venue", "op": "gt", "value": "a"}]}"#,
                "does not apply",
            ),
            (r#"{"conditions": []}"#, "missing field `query`"),
        ] {
            let (r, _, _) = retriever(reply);
            let err = r.retrieve("q", &RunContext::new()).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Parse);
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
