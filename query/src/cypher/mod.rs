//! Text-to-Cypher over Neo4j (feature `neo4j`): a read-only Cypher reader, relationship-direction
//! correction against the schema, schema introspection and a question-answering chain.
//!
//! ```
//! use catena_query::cypher::{CypherGuard, RelationshipPattern};
//!
//! let guard = CypherGuard::new()
//!     .with_relationships(vec![RelationshipPattern::new("Person", "ACTED_IN", "Movie")]);
//! // A small model wrote the arrow backwards; the schema says which way it goes.
//! let ok = guard.check("MATCH (m:Movie)-[:ACTED_IN]->(p:Person) RETURN p.name").unwrap();
//! assert_eq!(ok.query, "MATCH (m:Movie)<-[:ACTED_IN]-(p:Person) RETURN p.name LIMIT 100");
//! assert!(guard.check("MATCH (p:Person) SET p.name = 'x' RETURN p").is_err());
//! ```
//!
//! ## Contents
//! - [`CypherGuard`]: the reader (its docs list what it refuses) and the `LIMIT` cap.
//! - [`RelationshipPattern`] and direction correction (LangChain's `CypherQueryCorrector`).
//! - [`Neo4jGraph`]: neo4rs connection, [`GraphSchema`] introspection (built-in procedures or
//!   APOC), read queries with JSON rows.
//! - [`GraphCypherChain`]: question -> Cypher -> rows -> answer, with repair.

mod chain;
mod corrector;
mod graph;
mod guard;
mod lexer;

pub use chain::{CypherAnswer, GraphCypherChain, extract_cypher};
pub use corrector::RelationshipPattern;
pub use graph::{GraphSchema, Neo4jGraph, SchemaSource};
pub use guard::{CypherGuard, GuardedCypher};
pub use lexer::{CypherRejectReason, CypherRejection};
