//! A Neo4j connection (neo4rs, Bolt): schema introspection and read queries with rows as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use catena_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;

use super::corrector::RelationshipPattern;
use super::guard::GuardedCypher;

/// Node labels and relationship types with their properties, and the relationship patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphSchema {
    /// Label -> (property, type) pairs.
    pub node_properties: BTreeMap<String, Vec<(String, String)>>,
    /// Relationship type -> (property, type) pairs.
    pub relationship_properties: BTreeMap<String, Vec<(String, String)>>,
    /// `(:start)-[:type]->(:end)` patterns.
    pub relationships: Vec<RelationshipPattern>,
}

impl GraphSchema {
    /// The schema as text for a prompt, in the shape LangChain's `Neo4jGraph` renders it.
    #[must_use]
    pub fn render(&self) -> String {
        let props = |map: &BTreeMap<String, Vec<(String, String)>>| -> String {
            map.iter()
                .map(|(name, props)| {
                    let inner: Vec<String> = props.iter().map(|(p, t)| format!("{p}: {t}")).collect();
                    format!("{name} {{{}}}", inner.join(", "))
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let rels: Vec<String> = self
            .relationships
            .iter()
            .map(|r| format!("(:{})-[:{}]->(:{})", r.start, r.rel_type, r.end))
            .collect();
        format!(
            "Node properties:\n{}\nRelationship properties:\n{}\nThe relationships:\n{}",
            props(&self.node_properties),
            props(&self.relationship_properties),
            rels.join("\n")
        )
    }
}

/// How [`Neo4jGraph`] introspects the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaSource {
    /// APOC when the server has it, else the built-in procedures (the default).
    #[default]
    Auto,
    /// Neo4j's built-in `db.schema.*` procedures and a scan of the relationship patterns (no
    /// plugin needed).
    Builtin,
    /// APOC's `apoc.meta.data()` (sampled; needs the APOC plugin).
    Apoc,
}

/// A Neo4j database over Bolt.
pub struct Neo4jGraph {
    graph: neo4rs::Graph,
    uri: String,
    timeout: Duration,
}

impl std::fmt::Debug for Neo4jGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jGraph").field("uri", &self.uri).finish_non_exhaustive()
    }
}

fn graph_err(what: &str, e: neo4rs::Error) -> Error {
    match e {
        neo4rs::Error::Neo4j(server) => {
            Error::store(format!("{what}: Neo4j refused the query ({}): {}", server.code(), server.message()))
        }
        neo4rs::Error::IOError { detail } => Error::store(format!("{what}: connection failed: {detail}")),
        other => Error::store(format!("{what}: {other}")),
    }
}

impl Neo4jGraph {
    /// Connects to `uri` (`bolt://host:7687`, `neo4j://...`, `neo4j+s://...`). The driver
    /// connects lazily; the first query reports an unreachable server.
    pub fn connect(uri: &str, user: &str, password: &str) -> Result<Self> {
        let config = neo4rs::ConfigBuilder::new()
            .uri(uri)
            .user(user)
            .password(password)
            .max_connections(4)
            .fetch_size(500)
            .connection_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::invalid_input(format!("bad Neo4j settings for {uri}: {e}")))?;
        let graph =
            neo4rs::Graph::connect(config).map_err(|e| graph_err(&format!("cannot connect to {uri}"), e))?;
        Ok(Self { graph, uri: uri.to_owned(), timeout: Duration::from_secs(30) })
    }

    /// Connects with `NEO4J_URI`, `NEO4J_USERNAME` (default `neo4j`) and `NEO4J_PASSWORD`.
    pub fn from_env() -> Result<Self> {
        let uri = std::env::var("NEO4J_URI")
            .map_err(|_| Error::invalid_input("NEO4J_URI is not set (e.g. bolt://localhost:7687)"))?;
        let user = std::env::var("NEO4J_USERNAME").unwrap_or_else(|_| "neo4j".to_owned());
        let password = std::env::var("NEO4J_PASSWORD").unwrap_or_default();
        Self::connect(&uri, &user, &password)
    }

    /// How long one query may take, connection included (default 30 s).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server URI.
    #[must_use]
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Runs a query the reader accepted, in a read transaction, with parameters.
    pub async fn query(
        &self,
        guarded: &GuardedCypher,
        params: &serde_json::Map<String, Value>,
    ) -> Result<Vec<serde_json::Map<String, Value>>> {
        self.read(&guarded.query, params).await
    }

    /// Runs a read query the application wrote (introspection); never model output.
    pub async fn read(
        &self,
        cypher: &str,
        params: &serde_json::Map<String, Value>,
    ) -> Result<Vec<serde_json::Map<String, Value>>> {
        // Boxed: the chains above nest this future deeply enough to reach the compiler's type depth limit.
        catena_core::telemetry::observe_db("neo4j", cypher, Vec::len, Box::pin(self.read_now(cypher, params)))
            .await
    }

    async fn read_now(
        &self,
        cypher: &str,
        params: &serde_json::Map<String, Value>,
    ) -> Result<Vec<serde_json::Map<String, Value>>> {
        let mut query = neo4rs::query(cypher);
        for (key, value) in params {
            query = query.param(key, to_bolt(value)?);
        }
        let work = async {
            let mut stream =
                self.graph.execute_read(query).await.map_err(|e| graph_err("Neo4j query failed", e))?;
            let mut rows = Vec::new();
            while let Some(row) = stream.next().await.map_err(|e| graph_err("Neo4j query failed", e))? {
                let mut object = serde_json::Map::new();
                for key in row.keys() {
                    let key = key.value.clone();
                    let value: Value = row
                        .get(&key)
                        .map_err(|e| Error::store(format!("cannot read column {key} of a Neo4j row: {e}")))?;
                    object.insert(key, value);
                }
                rows.push(object);
            }
            Ok(rows)
        };
        tokio::time::timeout(self.timeout, work).await.map_err(|_| Error::Timeout(self.timeout))?
    }

    /// Reads labels, relationship types, their properties and the relationship patterns.
    pub async fn schema(&self, source: SchemaSource) -> Result<GraphSchema> {
        match source {
            SchemaSource::Builtin => self.builtin_schema().await,
            SchemaSource::Apoc => self.apoc_schema().await,
            SchemaSource::Auto => match self.apoc_schema().await {
                Err(e) if e.to_string().contains("ProcedureNotFound") => self.builtin_schema().await,
                other => other,
            },
        }
    }

    async fn builtin_schema(&self) -> Result<GraphSchema> {
        let none = serde_json::Map::new();
        let mut schema = GraphSchema::default();
        let nodes = self
            .read(
                "CALL db.schema.nodeTypeProperties() YIELD nodeLabels, propertyName, propertyTypes \
                 RETURN nodeLabels, propertyName, propertyTypes",
                &none,
            )
            .await?;
        for row in &nodes {
            let labels = strings(row.get("nodeLabels"));
            let property = row.get("propertyName").and_then(Value::as_str).map(str::to_owned);
            let ty = strings(row.get("propertyTypes")).join("|");
            for label in labels {
                let entry = schema.node_properties.entry(label).or_default();
                if let Some(p) = &property {
                    entry.push((p.clone(), ty.clone()));
                }
            }
        }
        let rels = self
            .read(
                "CALL db.schema.relTypeProperties() YIELD relType, propertyName, propertyTypes \
                 RETURN relType, propertyName, propertyTypes",
                &none,
            )
            .await?;
        for row in &rels {
            // relType comes as ":`ACTED_IN`".
            let Some(name) = row.get("relType").and_then(Value::as_str) else { continue };
            let name = name.trim_start_matches(':').trim_matches('`').to_owned();
            let entry = schema.relationship_properties.entry(name).or_default();
            if let Some(p) = row.get("propertyName").and_then(Value::as_str) {
                entry.push((p.to_owned(), strings(row.get("propertyTypes")).join("|")));
            }
        }
        schema.relationship_properties.retain(|_, props| !props.is_empty());
        let patterns = self
            .read(
                "MATCH (a)-[r]->(b) WITH DISTINCT labels(a) AS starts, type(r) AS type, labels(b) AS ends \
                 UNWIND starts AS start UNWIND ends AS end RETURN DISTINCT start, type, end",
                &none,
            )
            .await?;
        schema.relationships = collect_patterns(&patterns);
        Ok(schema)
    }

    async fn apoc_schema(&self) -> Result<GraphSchema> {
        let none = serde_json::Map::new();
        let mut schema = GraphSchema::default();
        let rows = self
            .read(
                "CALL apoc.meta.data() YIELD label, other, elementType, type, property \
                 RETURN label, other, elementType, type, property",
                &none,
            )
            .await?;
        for row in &rows {
            let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
            let (label, element, ty, property) =
                (text("label"), text("elementType"), text("type"), text("property"));
            match (element.as_str(), ty.as_str()) {
                ("node", "RELATIONSHIP") => {
                    for other in strings(row.get("other")) {
                        schema.relationships.push(RelationshipPattern::new(
                            label.clone(),
                            property.clone(),
                            other,
                        ));
                    }
                }
                ("node", _) => schema.node_properties.entry(label).or_default().push((property, ty)),
                ("relationship", _) => {
                    schema.relationship_properties.entry(label).or_default().push((property, ty))
                }
                _ => {}
            }
        }
        schema
            .relationships
            .sort_by(|a, b| (&a.start, &a.rel_type, &a.end).cmp(&(&b.start, &b.rel_type, &b.end)));
        schema.relationships.dedup();
        Ok(schema)
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn collect_patterns(rows: &[serde_json::Map<String, Value>]) -> Vec<RelationshipPattern> {
    let mut patterns: Vec<RelationshipPattern> = rows
        .iter()
        .filter_map(|row| {
            let get = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
            Some(RelationshipPattern::new(get("start")?, get("type")?, get("end")?))
        })
        .collect();
    patterns.sort_by(|a, b| (&a.start, &a.rel_type, &a.end).cmp(&(&b.start, &b.rel_type, &b.end)));
    patterns.dedup();
    patterns
}

/// A JSON parameter as a Bolt value.
fn to_bolt(value: &Value) -> Result<neo4rs::BoltType> {
    use neo4rs::BoltType;
    Ok(match value {
        Value::Null => BoltType::Null(neo4rs::BoltNull),
        Value::Bool(b) => BoltType::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => BoltType::from(i),
            None => BoltType::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => BoltType::from(s.as_str()),
        Value::Array(items) => {
            let list: Vec<BoltType> = items.iter().map(to_bolt).collect::<Result<_>>()?;
            BoltType::from(list)
        }
        Value::Object(map) => {
            let mut out = neo4rs::BoltMap::new();
            for (k, v) in map {
                out.put(neo4rs::BoltString::from(k.as_str()), to_bolt(v)?);
            }
            BoltType::Map(out)
        }
    })
}
