//! # catena-query
//!
//! Query construction: a chat model turns a question into a database query, the query is
//! checked so that it can only read, it runs, and the model answers from the rows. Text-to-SQL
//! over SQLite and PostgreSQL ([`sql`]), text-to-Cypher over Neo4j ([`cypher`]).
//!
//! ```
//! use catena_query::sql::{SqlDialect, SqlGuard};
//!
//! // The guard reads SQL the way the database would, and lets only one bounded SELECT through.
//! let guard = SqlGuard::new(SqlDialect::Sqlite).with_max_rows(100);
//! let ok = guard.check("SELECT Name FROM Artist").unwrap();
//! assert_eq!(ok.sql, "SELECT Name FROM Artist LIMIT 100");
//! assert!(guard.check("DELETE FROM Artist").is_err());
//! assert!(guard.check("SELECT 1; DROP TABLE Artist").is_err());
//! ```
//!
//! ## Contents
//! - [`sql`] (features `sqlite`, on by default, and `postgres`): [`SqlDatabase`](sql::SqlDatabase)
//!   (read-only connections, timeouts, result caps), schema introspection and relevant-table
//!   selection, the read-only [`SqlGuard`](sql::SqlGuard) (sqlparser), a GBNF grammar of the
//!   schema's identifiers for local models, [`SqlQueryChain`](sql::SqlQueryChain) with repair,
//!   and the Chinook sample database.
//! - [`cypher`] (feature `neo4j`): the read-only [`CypherGuard`](cypher::CypherGuard) with
//!   relationship-direction correction, [`Neo4jGraph`](cypher::Neo4jGraph) and its schema, and
//!   [`GraphCypherChain`](cypher::GraphCypherChain).
//! - [`QueryAttempt`]: one try of the generate-and-repair loop both chains share.

#[cfg(feature = "neo4j")]
pub mod cypher;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "neo4j"))]
mod repair;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod sql;

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "neo4j"))]
pub use repair::QueryAttempt;
