//! # catena-tools
//!
//! Tools are what an agent can do. Any [`Tool`](catena_core::Tool) (usually a
//! [`TypedTool`](catena_core::TypedTool) with a schemars-derived argument struct) goes into a
//! [`ToolRegistry`], which offers their specs to a model and dispatches the model's calls by name:
//! arguments validated against the tool's JSON Schema, a [`ToolPolicy`] of allowed and denied
//! tools, a [`Confirm`] hook for tools that need a person's approval, per-tool timeouts
//! ([`ToolOptions`]) and panics caught, every failure an error the model can read and act on.
//!
//! ```
//! use catena_core::{Result, RunContext, ToolCall, ToolOutput, TypedTool, async_trait};
//! use catena_tools::ToolRegistry;
//! use schemars::JsonSchema;
//! use serde::Deserialize;
//!
//! struct Shout;
//! #[derive(Deserialize, JsonSchema)]
//! struct ShoutArgs { text: String }
//! #[async_trait]
//! impl TypedTool for Shout {
//!     type Args = ShoutArgs;
//!     const NAME: &'static str = "shout";
//!     const DESCRIPTION: &'static str = "Upper-cases text.";
//!     async fn run(&self, args: ShoutArgs, _: &RunContext) -> Result<ToolOutput> {
//!         Ok(ToolOutput::text(args.text.to_uppercase()))
//!     }
//! }
//!
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! # rt.block_on(async {
//! let tools = ToolRegistry::new().with(Shout).unwrap();
//! let call = ToolCall { id: "1".into(), name: "shout".into(), arguments: serde_json::json!({"text": "hi"}) };
//! assert_eq!(tools.call(&call, &RunContext::new()).await.unwrap().content, "HI");
//! assert_eq!(tools.specs()[0].name, "shout");
//! # });
//! ```
//!
//! ## Contents
//! - [`ToolRegistry`], [`ToolOptions`], [`ToolPolicy`], [`Confirm`]: named tools and the rules
//!   their calls go through; [`ToolSource`] for tools that come and go while it is in use.
//! - [`Calculator`]: arithmetic through an expression parser (no code execution).
//! - [`ReadFileTool`]: text files and folder listings inside one allowed folder.
//! - [`SaveNoteTool`]: saves notes as files in one folder (side-effecting: register it behind
//!   approval).
//! - [`RetrieverTool`]: any retriever as a search tool returning cited snippets.
//! - [`DateTimeTool`]: the current date and time in any IANA time zone.
//! - [`WebPageTool`] (feature `web`): a web page as clean text, public hosts only by default.
//! - `SqlQuestionTool`, `SqlQueryTool` (features `sqlite`, `postgres`) and `CypherQuestionTool`
//!   (feature `neo4j`): the guarded database chains of catena-query as tools.
//! - `mcp` (feature `mcp`): the tools of Model Context Protocol servers (`McpClient`,
//!   `McpToolSet` kept current as servers change their lists, `McpConfig` in the format of
//!   Claude Desktop and VS Code), their resources as documents and prompts as templates; and any
//!   registry served as one, with resources, prompts, logging, progress, sampling and
//!   elicitation (`McpToolServer`).

mod calculator;
mod files;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "mcp")]
mod mcp_server;
mod notes;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "neo4j"))]
mod query;
mod registry;
mod retrieval;
mod time;
#[cfg(feature = "web")]
mod web;

pub use calculator::{Calculator, CalculatorArgs, evaluate};
pub use files::{ReadFileArgs, ReadFileTool};
pub use notes::{SaveNoteArgs, SaveNoteTool};
#[cfg(feature = "neo4j")]
pub use query::CypherQuestionTool;
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "neo4j"))]
pub use query::QuestionArgs;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use query::{SqlArgs, SqlQueryTool, SqlQuestionTool};
pub use registry::{Confirm, ToolOptions, ToolPolicy, ToolRegistry, ToolSource};
pub use retrieval::{RetrieverTool, SearchArgs};
pub use time::{DateTimeArgs, DateTimeTool};
#[cfg(feature = "web")]
pub use web::{WebPageArgs, WebPageTool};
