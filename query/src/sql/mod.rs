//! Text-to-SQL over SQLite and PostgreSQL, read-only by construction.
//!
//! ```no_run
//! use std::sync::Arc;
//! use catena_core::{ChatModel, RunContext};
//! use catena_query::sql::{SqlDatabase, SqlQueryChain};
//!
//! # async fn demo(model: Arc<dyn ChatModel>) -> catena_core::Result<()> {
//! let db = SqlDatabase::connect("sqlite://chinook.db").await?; // read-only
//! let chain = SqlQueryChain::new(model, db).await?.with_constrained_decoding(true);
//! let answer = chain.ask("How many tracks are there?", &RunContext::new()).await?;
//! println!("{}\n{}\n{}", answer.sql, answer.result.to_tsv(40), answer.answer.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! ## Contents
//! - [`SqlDatabase`]: sqlx connections (SQLite file or memory, PostgreSQL URL), read-only by
//!   default, statement timeout, result size cap; rows as JSON ([`QueryResult`]).
//! - [`Schema`] via [`SqlDatabase::schema`]: tables, columns, keys, indexes, sample rows, rendered
//!   as `CREATE TABLE` text for prompts; relevant-table selection by embeddings.
//! - [`SqlGuard`]: the read-only guard (sqlparser): one SELECT, no writes anywhere, no admin
//!   functions or catalogs, table allow-list, `LIMIT` added or capped (its docs say what it refuses).
//! - [`SqlQueryChain`]: question -> SQL -> guard -> rows -> answer, with repair on errors and
//!   optional grammar-constrained decoding for local models ([`select_grammar`]).
//! - [`chinook`]: the Chinook sample database, loaded from its fixture.

mod chain;
pub mod chinook;
mod database;
mod grammar;
mod guard;
mod schema;

pub use chain::{SqlAnswer, SqlQueryChain, extract_sql};
pub use database::{QueryResult, SqlDatabase, SqlOptions};
pub use grammar::select_grammar;
pub use guard::{GuardedSql, RejectReason, Rejection, SqlDialect, SqlGuard};
pub use schema::{ColumnInfo, ForeignKey, Schema, SchemaOptions, TableInfo};
