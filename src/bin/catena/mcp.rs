//! `catena mcp serve`: catena's tools for any MCP client, over stdio.

use std::path::PathBuf;
use std::sync::Arc;

use catena::core::{Embedder, Result, Retriever, VectorStore};
use catena::models::LlamaEmbedder;
use catena::query::sql::{SqlDatabase, SqlDialect, SqlGuard};
use catena::retrievers::{EnsembleRetriever, LanceDbStore, LanceKeywordRetriever, VectorStoreRetriever};
use catena::tools::mcp::McpToolServer;
use catena::tools::{Calculator, DateTimeTool, RetrieverTool, SqlQueryTool, ToolRegistry};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub(crate) enum McpCommand {
    /// Serve catena's tools to an MCP client (Claude Desktop, VS Code, Cursor, any agent) on
    /// stdin and stdout: a calculator and the date and time always; search over an ingested
    /// store with --store; guarded read-only SQL over an SQLite file with --sqlite.
    ///
    /// In a client's configuration: {"mcpServers": {"catena": {"command": "catena", "args":
    /// ["mcp", "serve", "--store", "/path/to/store"]}}}
    Serve(McpServeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct McpServeArgs {
    /// Also offer `search_documents` over this store (written by `catena ingest`): hybrid
    /// keyword and vector search returning numbered passages with their sources.
    #[arg(long)]
    store: Option<PathBuf>,
    /// The collection inside the store.
    #[arg(long, default_value = "chunks")]
    collection: String,
    /// Also offer `sql_query` over this SQLite file: one SELECT at a time, checked by the
    /// read-only guard, at most 50 rows.
    #[arg(long, value_name = "FILE")]
    sqlite: Option<PathBuf>,
}

pub(crate) async fn run(cmd: McpCommand) -> Result<()> {
    match cmd {
        McpCommand::Serve(args) => serve(args).await,
    }
}

/// The tools catena offers MCP clients: the calculator and date/time, search over `store`,
/// guarded SQL over `sqlite`.
pub(crate) async fn registry(
    store: Option<&std::path::Path>,
    collection: &str,
    sqlite: Option<&std::path::Path>,
) -> Result<ToolRegistry> {
    let mut tools = ToolRegistry::new().with(Calculator)?.with(DateTimeTool::new())?;
    if let Some(store) = store {
        let store = Arc::new(LanceDbStore::open(store.to_string_lossy().into_owned(), collection).await?);
        let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
        let keywords: Arc<dyn Retriever> = Arc::new(LanceKeywordRetriever::new(Arc::clone(&store)).with_k(4));
        let similarity: Arc<dyn Retriever> =
            Arc::new(VectorStoreRetriever::new(store as Arc<dyn VectorStore>, embedder).with_k(4));
        let retriever = EnsembleRetriever::new(vec![keywords, similarity]).with_k(4);
        tools.add(Arc::new(RetrieverTool::new(Arc::new(retriever)).with_max_chars(800)))?;
    }
    if let Some(file) = sqlite {
        if !file.exists() {
            return Err(catena::core::Error::invalid_input(format!(
                "no SQLite file at {} (catena sql load-chinook writes a sample one)",
                file.display()
            )));
        }
        let db = SqlDatabase::connect(&format!("sqlite://{}", file.display())).await?;
        tools.add(Arc::new(SqlQueryTool::new(db, SqlGuard::new(SqlDialect::Sqlite).with_max_rows(50))))?;
    }
    Ok(tools)
}

async fn serve(args: McpServeArgs) -> Result<()> {
    let tools = registry(args.store.as_deref(), &args.collection, args.sqlite.as_deref()).await?;
    let names: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
    // stdout belongs to the protocol: everything for people goes to stderr.
    eprintln!("catena mcp: serving {} on stdio", names.join(", "));
    McpToolServer::new(tools)
        .with_instructions(
            "catena's tools: arithmetic, the date and time, and (when offered) search over an ingested \
             document store with cited passages and read-only SQL.",
        )
        .serve_stdio()
        .await
}
