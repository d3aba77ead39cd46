//! `catena mcp`: catena's tools, documents and prompts for any MCP client (`serve`, over stdio),
//! and a look at any MCP server from the shell (`tools`, `call`).

use std::path::PathBuf;
use std::sync::Arc;

use catena::core::{ChatPromptTemplate, Embedder, Error, Result, Retriever, RunContext, Tool, VectorStore};
use catena::models::LlamaEmbedder;
use catena::query::sql::{SqlDatabase, SqlDialect, SqlGuard};
use catena::retrievers::{EnsembleRetriever, LanceDbStore, LanceKeywordRetriever, VectorStoreRetriever};
use catena::tools::mcp::{
    McpClient, McpConfig, McpServerConfig, McpToolServer, ServedPrompt, StoreResources,
};
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
    /// List the tools of an MCP server (name, read-only or not, description).
    ///
    /// SERVER is a streamable-HTTP URL, or a server's name in --config.
    Tools(McpClientArgs),
    /// Call one tool of an MCP server and print its result.
    ///
    /// Example: catena mcp call get-sum --args '{"a": 2, "b": 3}' --config mcp.json everything
    Call(McpCallArgs),
}

/// Which MCP server a client command talks to.
#[derive(Debug, Args)]
pub(crate) struct McpClientArgs {
    /// A streamable-HTTP URL (http://host:port/mcp), or a server's name in --config.
    server: String,
    /// An MCP configuration file ({"mcpServers": {...}} as Claude Desktop and VS Code write it)
    /// naming SERVER.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A header for an HTTP server, as `Name: value` (repeatable), e.g. `Authorization: Bearer KEY`.
    #[arg(long = "header", value_name = "HEADER")]
    headers: Vec<String>,
}

/// `catena mcp call`.
#[derive(Debug, Args)]
pub(crate) struct McpCallArgs {
    /// The tool.
    tool: String,
    /// Its arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    #[command(flatten)]
    server: McpClientArgs,
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
    /// Offer only these tools (comma-separated names, e.g. `calculator,search_documents`);
    /// all that the other flags make available when unset.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    tools: Option<Vec<String>>,
    /// Do not offer the store's documents as resources (they are, with --store).
    #[arg(long)]
    no_resources: bool,
    /// Do not offer prompts (with --store, `answer_from_documents`; with --sqlite, `ask_the_database`).
    #[arg(long)]
    no_prompts: bool,
}

/// What a catena MCP server offers, from the command line of `catena mcp serve` or
/// `catena serve --mcp`.
#[derive(Debug, Default)]
pub(crate) struct Offer<'a> {
    pub(crate) store: Option<&'a std::path::Path>,
    pub(crate) collection: &'a str,
    pub(crate) sqlite: Option<&'a std::path::Path>,
    pub(crate) tools: Option<&'a [String]>,
    pub(crate) resources: bool,
    pub(crate) prompts: bool,
}

pub(crate) async fn run(cmd: McpCommand) -> Result<()> {
    match cmd {
        McpCommand::Serve(args) => serve(args).await,
        McpCommand::Tools(args) => list_tools(args).await,
        McpCommand::Call(args) => call(args).await,
    }
}

/// The MCP server catena offers: the calculator and date/time; with a store, search over it,
/// its documents as resources and a prompt that answers from them; with an SQLite file, guarded
/// SQL and a prompt that asks the database; narrowed by `offer.tools`.
pub(crate) async fn server(offer: &Offer<'_>) -> Result<McpToolServer> {
    let mut tools = ToolRegistry::new().with(Calculator)?.with(DateTimeTool::new())?;
    let mut resources = None;
    let mut prompts = Vec::new();
    if let Some(path) = offer.store {
        let store =
            Arc::new(LanceDbStore::open(path.to_string_lossy().into_owned(), offer.collection).await?);
        let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
        let keywords: Arc<dyn Retriever> = Arc::new(LanceKeywordRetriever::new(Arc::clone(&store)).with_k(4));
        let vectors: Arc<dyn VectorStore> = store;
        let similarity: Arc<dyn Retriever> =
            Arc::new(VectorStoreRetriever::new(Arc::clone(&vectors), embedder).with_k(4));
        let retriever = EnsembleRetriever::new(vec![keywords, similarity]).with_k(4);
        tools.add(Arc::new(RetrieverTool::new(Arc::new(retriever)).with_max_chars(800)))?;
        resources = Some(StoreResources::new(vectors, offer.collection));
        let template = ChatPromptTemplate::new().user(
            "Answer the question from the documents. Search them with the search_documents tool, answer only \
             from the passages it returns, and cite each passage you use by its number, like [1]. If they do \
             not hold the answer, say so.\n\nQuestion: {question}",
        )?;
        prompts.push(ServedPrompt::from_template(
            "answer_from_documents",
            "Answer a question from the ingested documents, with citations.",
            template,
        ));
    }
    if let Some(file) = offer.sqlite {
        if !file.exists() {
            return Err(Error::invalid_input(format!(
                "no SQLite file at {} (catena sql load-chinook writes a sample one)",
                file.display()
            )));
        }
        let db = SqlDatabase::connect(&format!("sqlite://{}", file.display())).await?;
        tools.add(Arc::new(SqlQueryTool::new(db, SqlGuard::new(SqlDialect::Sqlite).with_max_rows(50))))?;
        let template = ChatPromptTemplate::new().user(
            "Answer the question from the database. Write one SQLite SELECT statement, run it with the \
             sql_query tool (read the tool's description for the tables), fix it if the tool reports an \
             error, and answer from the rows it returns.\n\nQuestion: {question}",
        )?;
        prompts.push(ServedPrompt::from_template(
            "ask_the_database",
            "Answer a question from the SQLite database with a read-only query.",
            template,
        ));
    }
    if let Some(chosen) = offer.tools {
        let available: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
        if let Some(unknown) = chosen.iter().find(|name| !available.contains(name)) {
            return Err(Error::invalid_input(format!(
                "--tools names `{unknown}`, which is not offered; available with these flags: {}",
                available.join(", ")
            )));
        }
        let mut narrowed = ToolRegistry::new();
        for name in chosen {
            if let Some(tool) = tools.get(name) {
                narrowed.add(tool)?;
            }
        }
        tools = narrowed;
    }
    let mut server = McpToolServer::new(tools).with_instructions(
        "catena's tools: arithmetic, the date and time, and (when offered) search over an ingested \
         document store with cited passages, the documents themselves as resources, and read-only SQL.",
    );
    if let (Some(resources), true) = (resources, offer.resources) {
        server = server.with_resources(resources);
    }
    if offer.prompts {
        for prompt in prompts {
            server = server.with_prompt(prompt);
        }
    }
    Ok(server)
}

async fn serve(args: McpServeArgs) -> Result<()> {
    let offer = Offer {
        store: args.store.as_deref(),
        collection: &args.collection,
        sqlite: args.sqlite.as_deref(),
        tools: args.tools.as_deref(),
        resources: !args.no_resources,
        prompts: !args.no_prompts,
    };
    let server = server(&offer).await?;
    // stdout belongs to the protocol: everything for people goes to stderr.
    eprintln!("catena mcp: serving {} on stdio", server.describe());
    server.serve_stdio().await
}

async fn connect(args: &McpClientArgs) -> Result<Arc<McpClient>> {
    let config = if args.server.starts_with("http://") || args.server.starts_with("https://") {
        let mut config = McpServerConfig::http(args.server.clone());
        for header in &args.headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(Error::invalid_input(format!("--header `{header}` is not `Name: value`")));
            };
            config = config.with_header(name.trim(), value.trim());
        }
        config
    } else {
        let Some(file) = &args.config else {
            return Err(Error::invalid_input(format!(
                "`{}` is not an http(s) URL; to name a configured server, give the file with --config",
                args.server
            )));
        };
        let servers = McpConfig::load(file)?;
        let Some(config) = servers.servers.get(&args.server) else {
            let names: Vec<&String> = servers.servers.keys().collect();
            return Err(Error::invalid_input(format!(
                "{} names no server `{}` (it has: {names:?})",
                file.display(),
                args.server
            )));
        };
        config.clone()
    };
    McpClient::connect(args.server.clone(), config).await
}

async fn list_tools(args: McpClientArgs) -> Result<()> {
    let client = connect(&args).await?;
    for tool in client.tools().await? {
        let kind = if tool.read_only() { "read-only" } else { "side effects" };
        println!("{}\t{kind}\t{}", tool.name(), tool.description().lines().next().unwrap_or_default());
    }
    Ok(())
}

async fn call(args: McpCallArgs) -> Result<()> {
    let arguments: serde_json::Value = serde_json::from_str(&args.args).map_err(|e| {
        Error::invalid_input(format!("--args is not JSON ({e}): give an object like '{{\"a\": 1}}'"))
    })?;
    let client = connect(&args.server).await?;
    let out = client.call(&args.tool, arguments, &RunContext::new()).await?;
    println!("{}", out.content);
    Ok(())
}
