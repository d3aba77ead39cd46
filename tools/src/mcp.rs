//! Tools from Model Context Protocol servers (feature `mcp`): [`McpClient`] connects to one
//! server, over stdio (a child process it starts, restarts when it dies, and stops when dropped)
//! or streamable HTTP; each of the server's tools becomes an [`McpTool`], a catena
//! [`Tool`] that goes into a [`ToolRegistry`](crate::ToolRegistry) like any other, so schema
//! validation, policy, approval, timeouts and cancellation apply unchanged.
//!
//! [`McpToolSet`] keeps the tools of several servers current as they announce changes
//! (`tools/list_changed`), for a registry to follow. A server's resources load as documents
//! ([`McpResourceLoader`]); its prompts are prompt templates ([`McpPrompt`]).
//!
//! [`McpConfig`] reads the configuration users already have: `{"mcpServers": {name: {"command",
//! "args", "env"} | {"url", "headers"}}}` as Claude Desktop and Cursor write it, or VS Code's
//! `{"servers": {...}}`.
//!
//! The other direction: [`McpToolServer`] serves any registry to MCP clients.
//!
//! Built on `rmcp`, the protocol's official Rust SDK.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use catena_core::{Error, Result, RunContext, Tool, ToolOutput, async_trait};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

pub use crate::mcp_server::content::{McpContent, ResourceBody, ResourceContent, tool_output};
pub use crate::mcp_server::prompts::{McpPromptArgument, McpPromptMessage, ServedPrompt};
pub use crate::mcp_server::resources::{
    McpResourceTemplate, ResourceSource, StaticResources, StoreResources,
};
pub use crate::mcp_server::{ElicitAction, Elicitation, McpClientPeer, McpToolServer};

/// How to reach one MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpServerConfig {
    /// A program speaking MCP on its stdin and stdout, started by the client.
    Stdio {
        /// The program (looked up on `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables added to the client's own.
        env: BTreeMap<String, String>,
        /// Its working directory (the client's when unset).
        cwd: Option<PathBuf>,
    },
    /// A server at a streamable-HTTP endpoint.
    Http {
        /// The endpoint, e.g. `http://127.0.0.1:8080/mcp`.
        url: String,
        /// Headers sent with every request (`Authorization: Bearer ...`, say).
        headers: BTreeMap<String, String>,
    },
}

impl McpServerConfig {
    /// A program to start, with its arguments.
    pub fn stdio(command: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self::Stdio {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    /// A streamable-HTTP endpoint.
    pub fn http(url: impl Into<String>) -> Self {
        Self::Http { url: url.into(), headers: BTreeMap::new() }
    }

    /// Adds a header to every request of an HTTP server (`Authorization: Bearer ...`, say);
    /// nothing for a stdio server.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Self::Http { headers, .. } = &mut self {
            headers.insert(name.into(), value.into());
        }
        self
    }
}

/// One entry of a configuration file, as the popular clients write it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
}

/// MCP servers by name, read from the configuration format of Claude Desktop, Cursor
/// (`mcpServers`) and VS Code (`servers`). Servers marked `"disabled": true` are left out.
///
/// ```
/// use catena_tools::mcp::{McpConfig, McpServerConfig};
///
/// let config = McpConfig::from_json(r#"{"mcpServers": {
///     "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"]},
///     "search": {"url": "http://127.0.0.1:8080/mcp", "headers": {"Authorization": "Bearer k"}}
/// }}"#).unwrap();
/// assert!(matches!(&config.servers["files"], McpServerConfig::Stdio { command, .. } if command == "npx"));
/// assert!(matches!(&config.servers["search"], McpServerConfig::Http { url, .. } if url.ends_with("/mcp")));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// The servers, by the name the configuration gives them.
    pub servers: BTreeMap<String, McpServerConfig>,
}

impl McpConfig {
    /// Parses a configuration.
    ///
    /// # Errors
    /// [`Error::Parse`] naming the server and what is wrong: not JSON, no `mcpServers` or
    /// `servers` object, an entry with neither `command` nor `url`, a transport other than
    /// stdio or streamable HTTP.
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |why: String| Error::parse("MCP configuration", why);
        let root: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let servers =
            root.get("mcpServers").or_else(|| root.get("servers")).and_then(Value::as_object).ok_or_else(
                || bad("expected an object `mcpServers` (or VS Code's `servers`) naming the servers".into()),
            )?;
        let mut out = BTreeMap::new();
        for (name, entry) in servers {
            let entry: Entry =
                serde_json::from_value(entry.clone()).map_err(|e| bad(format!("server `{name}`: {e}")))?;
            if entry.disabled {
                continue;
            }
            let server = match (entry.kind.as_deref(), entry.command, entry.url) {
                (Some("sse"), _, _) => {
                    return Err(bad(format!(
                        "server `{name}` uses the old SSE transport; catena speaks stdio and streamable HTTP (`\"type\": \"http\"`)"
                    )));
                }
                (_, Some(command), None) => {
                    McpServerConfig::Stdio { command, args: entry.args, env: entry.env, cwd: entry.cwd }
                }
                (_, None, Some(url)) => McpServerConfig::Http { url, headers: entry.headers },
                (_, Some(_), Some(_)) => {
                    return Err(bad(format!("server `{name}` has both `command` and `url`: keep one")));
                }
                (_, None, None) => {
                    return Err(bad(format!(
                        "server `{name}` has neither `command` (a program to start) nor `url` (an HTTP endpoint)"
                    )));
                }
            };
            out.insert(name.clone(), server);
        }
        Ok(Self { servers: out })
    }

    /// Reads a configuration file.
    ///
    /// # Errors
    /// The file cannot be read; [`from_json`](Self::from_json)'s errors.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text)
    }
}

/// Notices the server's `tools/list_changed`.
#[derive(Clone)]
struct Handler {
    tools_changed: Arc<AtomicBool>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ClientHandler for Handler {
    /// Introduces the client as catena, asking for the newest protocol revision that has the
    /// `initialize` handshake (2025-11-25): that is what servers speak today, and rmcp's default
    /// (its newest revision, 2026-07-28) is one that no longer has the handshake.
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        info.protocol_version = rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE;
        if let Ok(implementation) = serde_json::from_value(
            serde_json::json!({"name": "catena", "version": env!("CARGO_PKG_VERSION")}),
        ) {
            info.client_info = implementation;
        }
        info
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        self.tools_changed.store(true, Ordering::SeqCst);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        std::future::ready(())
    }
}

/// Limits of an [`McpClient`], so that no server can hang or flood its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct McpClientOptions {
    /// How long starting a server and its `initialize` handshake may take (default 30 s).
    pub connect_timeout: Duration,
    /// How long any one request may wait for its answer (default 5 minutes; a registry's
    /// per-tool timeout, usually shorter, applies to tool calls as well).
    pub request_timeout: Duration,
    /// The largest tool result accepted, in bytes of its JSON (default 4 MiB): a larger one is
    /// an [`Error::Limit`], not an observation that floods the model's context.
    pub max_result_bytes: usize,
}

impl Default for McpClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            max_result_bytes: 4 << 20,
        }
    }
}

impl McpClientOptions {
    /// Sets [`McpClientOptions::connect_timeout`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`McpClientOptions::request_timeout`].
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`McpClientOptions::max_result_bytes`].
    #[must_use]
    pub fn with_max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }
}

/// A live session with the server.
struct Session {
    service: RunningService<RoleClient, Handler>,
    pid: Option<u32>,
}

/// A connection to one MCP server. Calls go through one session; when a stdio server has
/// died (or an HTTP session closed), the next call starts a new one. Dropping the client ends
/// the session and stops a stdio server.
pub struct McpClient {
    name: String,
    config: McpServerConfig,
    options: McpClientOptions,
    session: Mutex<Option<Session>>,
    tools_changed: Arc<AtomicBool>,
    /// Counts the list changes (and new sessions), for [`McpToolSet`]s to follow.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn failed(server: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::tool(format!("mcp:{server}"), format!("{what}: {e}"))
}

impl McpClient {
    /// Connects to the server called `name` (the name shows in errors and tool prefixes).
    ///
    /// # Errors
    /// The program cannot be started, the endpoint does not answer, or the handshake fails.
    pub async fn connect(name: impl Into<String>, config: McpServerConfig) -> Result<Arc<Self>> {
        Self::connect_with(name, config, McpClientOptions::default()).await
    }

    /// [`McpClient::connect`] under other limits.
    ///
    /// # Errors
    /// As [`McpClient::connect`]; a server that does not finish the handshake within
    /// [`McpClientOptions::connect_timeout`] is an [`Error::Tool`] saying so (its process is
    /// stopped).
    pub async fn connect_with(
        name: impl Into<String>,
        config: McpServerConfig,
        options: McpClientOptions,
    ) -> Result<Arc<Self>> {
        let client = Arc::new(Self {
            name: name.into(),
            config,
            options,
            session: Mutex::new(None),
            tools_changed: Arc::new(AtomicBool::new(false)),
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
        });
        let session = client.start().await?;
        *client.session.lock().await = Some(session);
        Ok(client)
    }

    /// Connects to every server of `config`, in name order.
    ///
    /// # Errors
    /// The first server that cannot be reached, named.
    pub async fn connect_all(config: &McpConfig) -> Result<Vec<Arc<Self>>> {
        let mut out = Vec::with_capacity(config.servers.len());
        for (name, server) in &config.servers {
            out.push(Self::connect(name.clone(), server.clone()).await?);
        }
        Ok(out)
    }

    /// The server's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id of a stdio server's current process.
    pub async fn process_id(&self) -> Option<u32> {
        self.session.lock().await.as_ref().and_then(|s| s.pid)
    }

    async fn start(&self) -> Result<Session> {
        let handler =
            Handler { tools_changed: Arc::clone(&self.tools_changed), changes: Arc::clone(&self.changes) };
        match &self.config {
            McpServerConfig::Stdio { command, args, env, cwd } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args).envs(env);
                if let Some(cwd) = cwd {
                    cmd.current_dir(cwd);
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| failed(&self.name, &format!("cannot start `{command}`"), e))?;
                let pid = transport.id();
                if let Some(stderr) = stderr {
                    // The server's own log, at debug level (servers write their banners there).
                    let server = self.name.clone();
                    tokio::spawn(async move {
                        use tokio::io::AsyncBufReadExt;
                        let mut lines = tokio::io::BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::debug!(server = %server, "{line}");
                        }
                    });
                }
                let service = self.handshake(handler.serve(transport)).await?;
                Ok(Session { service, pid })
            }
            McpServerConfig::Http { url, headers } => {
                let mut custom = std::collections::HashMap::new();
                for (name, value) in headers {
                    let name = http::HeaderName::try_from(name.as_str())
                        .map_err(|e| failed(&self.name, &format!("bad header name `{name}`"), e))?;
                    let value = http::HeaderValue::try_from(value.as_str())
                        .map_err(|e| failed(&self.name, &format!("bad value for header `{name}`"), e))?;
                    custom.insert(name, value);
                }
                let config =
                    rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                        url.as_str(),
                    )
                    .custom_headers(custom);
                let transport = StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
                let service = self.handshake(handler.serve(transport)).await?;
                Ok(Session { service, pid: None })
            }
        }
    }

    /// Waits for the `initialize` handshake, at most the connect timeout.
    async fn handshake<E: std::fmt::Display>(
        &self,
        serving: impl Future<Output = std::result::Result<RunningService<RoleClient, Handler>, E>>,
    ) -> Result<RunningService<RoleClient, Handler>> {
        let limit = self.options.connect_timeout;
        match tokio::time::timeout(limit, serving).await {
            Ok(service) => service.map_err(|e| failed(&self.name, "the MCP handshake failed", e)),
            Err(_) => Err(Error::Tool {
                tool: format!("mcp:{}", self.name),
                message: format!(
                    "the server did not answer `initialize` within {limit:?}: check that the command \
                     starts an MCP server speaking on stdin and stdout (or that the URL is an MCP endpoint)"
                ),
                source: Some(Box::new(Error::Timeout(limit))),
            }),
        }
    }

    /// Runs one request under the request timeout.
    async fn within<T, E: std::fmt::Display>(
        &self,
        what: &str,
        request: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        let limit = self.options.request_timeout;
        match tokio::time::timeout(limit, request).await {
            Ok(answer) => answer.map_err(|e| failed(&self.name, what, e)),
            Err(_) => Err(Error::Tool {
                tool: format!("mcp:{}", self.name),
                message: format!("{what}: no answer within {limit:?}"),
                source: Some(Box::new(Error::Timeout(limit))),
            }),
        }
    }

    /// The peer of a live session, starting a new one when the last has closed.
    async fn peer(&self) -> Result<rmcp::Peer<RoleClient>> {
        let mut session = self.session.lock().await;
        let alive =
            session.as_ref().is_some_and(|s| !s.service.is_closed() && !s.service.is_transport_closed());
        if !alive {
            if session.is_some() {
                tracing::warn!(server = %self.name, "the MCP server's session has closed; starting a new one");
            }
            *session = Some(self.start().await?);
            // A new session may offer other tools.
            self.tools_changed.store(true, Ordering::SeqCst);
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
        session
            .as_ref()
            .map(|s| s.service.peer().clone())
            .ok_or_else(|| failed(&self.name, "no session", "the server could not be started"))
    }

    /// Whether the server said its tools changed (or a new session started) since the last
    /// [`tools`](Self::tools).
    #[must_use]
    pub fn tools_changed(&self) -> bool {
        self.tools_changed.load(Ordering::SeqCst)
    }

    /// The server's tools as catena tools, named as the server names them.
    ///
    /// # Errors
    /// The server cannot be reached or its list cannot be read.
    pub async fn tools(self: &Arc<Self>) -> Result<Vec<McpTool>> {
        // After `peer`, which marks the list changed when it starts a new session: the list read
        // here is the new session's.
        let peer = self.peer().await?;
        self.tools_changed.store(false, Ordering::SeqCst);
        let listed = self.within("cannot list its tools", peer.list_all_tools()).await?;
        Ok(listed
            .into_iter()
            .filter(|tool| {
                // A schema that is not valid JSON Schema could not check a single call: the tool
                // is left out, and the others stay usable.
                let schema = Value::Object((*tool.input_schema).clone());
                let valid = jsonschema::validator_for(&schema).is_ok();
                if !valid {
                    tracing::warn!(
                        server = %self.name,
                        tool = %tool.name,
                        "the tool's input schema is not valid JSON Schema; the tool is skipped"
                    );
                }
                valid
            })
            .map(|tool| McpTool {
                client: Arc::clone(self),
                name: tool.name.to_string(),
                remote: tool.name.to_string(),
                description: tool
                    .description
                    .as_deref()
                    .or(tool.title.as_deref())
                    .unwrap_or_default()
                    .to_owned(),
                parameters: Value::Object((*tool.input_schema).clone()),
                read_only: tool.annotations.as_ref().and_then(|a| a.read_only_hint).unwrap_or(false),
            })
            .collect())
    }

    /// Calls the server's tool `name`. Cancelling `ctx` abandons the call and tells the server
    /// (the protocol's cancellation notification).
    ///
    /// # Errors
    /// [`Error::Tool`] with the server's message when the tool reports an error (`isError`), or
    /// when the server cannot be reached; [`Error::Cancelled`].
    pub async fn call(&self, name: &str, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        let peer = self.peer().await?;
        let mut params = CallToolRequestParams::new(name.to_owned());
        params.arguments = match arguments {
            Value::Object(map) => Some(map),
            Value::Null => None,
            other => {
                return Err(Error::tool(name, format!("arguments must be a JSON object, not {other}")));
            }
        };
        // Dropping the request (cancellation, timeout) sends the server the protocol's
        // `notifications/cancelled` for it: rmcp's requests cancel on drop.
        let limit = self.options.request_timeout;
        let result = tokio::select! {
            result = tokio::time::timeout(limit, peer.call_tool(params)) => match result {
                Ok(result) => result,
                Err(_) => {
                    return Err(Error::Tool {
                        tool: name.to_owned(),
                        message: format!("the MCP server `{}` did not answer within {limit:?}", self.name),
                        source: Some(Box::new(Error::Timeout(limit))),
                    });
                }
            },
            () = ctx.cancellation().cancelled() => return Err(Error::Cancelled),
        };
        let result = result.map_err(|e| match e {
            rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_) => failed(
                &self.name,
                &format!(
                    "the server stopped during the call of `{name}` (it is restarted for the next call)"
                ),
                e,
            ),
            other => Error::tool(name, other.to_string()),
        })?;
        let size = serde_json::to_vec(&result).map_or(0, |bytes| bytes.len());
        if size > self.options.max_result_bytes {
            return Err(Error::Limit {
                message: format!(
                    "the result of `{name}` from the MCP server `{}` is {size} bytes, over the cap of {} \
                     (McpClientOptions::max_result_bytes)",
                    self.name, self.options.max_result_bytes
                ),
            });
        }
        output(name, result)
    }
}

/// For `catena-fuzz`: a remote server's `tools/call` result (its JSON) read as [`McpTool`]
/// reads it, and that output as [`McpToolServer`] would send it back out (`Null` when the read
/// failed). `None` when the bytes are not a `CallToolResult`. catena promises that a result
/// passes through it unchanged; the fuzz target checks it on arbitrary results.
#[doc(hidden)]
#[must_use]
pub fn relay_tool_result(json: &[u8]) -> Option<(Result<ToolOutput>, Value)> {
    let result: CallToolResult = serde_json::from_slice(json).ok()?;
    let read = output("relayed", result);
    let sent = read.as_ref().map_or(Value::Null, |out| crate::mcp_server::content::to_result(out.clone()));
    Some((read, sent))
}

/// A tool result as catena's (see [`tool_output`] for the shape), `isError` as the tool's error.
fn output(name: &str, result: CallToolResult) -> Result<ToolOutput> {
    let blocks = result.content.iter().filter_map(|block| serde_json::to_value(block).ok()).collect();
    let failed = result.is_error == Some(true);
    let out = crate::mcp_server::content::from_blocks(blocks, result.structured_content);
    if failed {
        let message = if out.content.is_empty() { "the tool reported an error".into() } else { out.content };
        return Err(Error::tool(name, message));
    }
    Ok(out)
}

/// The tools of several MCP servers, kept current: a [`ToolSource`](crate::ToolSource) for a
/// registry ([`ToolRegistry::with_source`](crate::ToolRegistry::with_source)), so an agent offers
/// the model what the servers offer now. When a server announces that its list changed
/// (`notifications/tools/list_changed`), or a restarted stdio server begins a new session, the
/// set lists every server's tools again in the background, named by the same [`NamePrefix`]
/// rule; a call of a tool that has gone is answered "no such tool" with the current list.
///
/// ```no_run
/// # async fn demo() -> catena_core::Result<()> {
/// use catena_tools::ToolRegistry;
/// use catena_tools::mcp::{McpClient, McpConfig, McpToolSet, NamePrefix};
/// let clients = McpClient::connect_all(&McpConfig::load("mcp.json")?).await?;
/// let servers = McpToolSet::new(clients, NamePrefix::OnClash, &[]).await?;
/// let tools = ToolRegistry::new().with_source(std::sync::Arc::new(servers));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct McpToolSet {
    inner: Arc<ToolSetInner>,
}

struct ToolSetInner {
    clients: Vec<Arc<McpClient>>,
    prefix: NamePrefix,
    taken: Vec<String>,
    tools: std::sync::RwLock<Vec<McpTool>>,
    generation: std::sync::atomic::AtomicU64,
    /// One listing at a time, so an older list never replaces a newer one.
    refreshing: Mutex<()>,
}

impl std::fmt::Debug for McpToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpToolSet")
            .field("servers", &self.inner.clients.iter().map(|c| c.name()).collect::<Vec<_>>())
            .field("tools", &self.tools().iter().map(|t| t.name.clone()).collect::<Vec<_>>())
            .finish()
    }
}

impl ToolSetInner {
    async fn refresh(&self) -> Result<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        let tools = mcp_tools(&self.clients, self.prefix, &self.taken).await?;
        *self.tools.write().unwrap_or_else(std::sync::PoisonError::into_inner) = tools;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

impl McpToolSet {
    /// Lists the tools of `clients` (as [`mcp_tools`] does; `taken` are names already in use)
    /// and follows their changes for as long as the set lives.
    ///
    /// # Errors
    /// A server's tool list cannot be read.
    pub async fn new(clients: Vec<Arc<McpClient>>, prefix: NamePrefix, taken: &[String]) -> Result<Self> {
        // Subscribed before the first listing, so a change announced during it is not missed.
        let receivers: Vec<_> = clients.iter().map(|c| c.changes.subscribe()).collect();
        let tools = mcp_tools(&clients, prefix, taken).await?;
        let inner = Arc::new(ToolSetInner {
            clients,
            prefix,
            taken: taken.to_vec(),
            tools: std::sync::RwLock::new(tools),
            generation: std::sync::atomic::AtomicU64::new(0),
            refreshing: Mutex::new(()),
        });
        for mut changes in receivers {
            // Weak: the watcher must not keep the set alive; it ends with the set or the client.
            let set = Arc::downgrade(&inner);
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    let Some(set) = set.upgrade() else { break };
                    if let Err(e) = set.refresh().await {
                        tracing::warn!("cannot list the MCP servers' tools again: {e}");
                    }
                }
            });
        }
        Ok(Self { inner })
    }

    /// Lists every server's tools again now (the set does so by itself when a server says its
    /// list changed).
    ///
    /// # Errors
    /// A server's tool list cannot be read; the previous list stays.
    pub async fn refresh(&self) -> Result<()> {
        self.inner.refresh().await
    }

    /// The tools as last listed.
    #[must_use]
    pub fn tools(&self) -> Vec<McpTool> {
        self.inner.tools.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The servers.
    #[must_use]
    pub fn clients(&self) -> &[Arc<McpClient>] {
        &self.inner.clients
    }
}

impl crate::ToolSource for McpToolSet {
    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    fn tools(&self) -> Vec<Arc<dyn Tool>> {
        self.tools().into_iter().map(|tool| Arc::new(tool) as Arc<dyn Tool>).collect()
    }
}

/// One tool of an MCP server, as a catena [`Tool`]. Read-only when the server marks it so
/// (`readOnlyHint`); otherwise side-effecting, so an agent graph with a checkpointer asks
/// approval for it.
#[derive(Clone)]
pub struct McpTool {
    client: Arc<McpClient>,
    name: String,
    remote: String,
    description: String,
    parameters: Value,
    read_only: bool,
}

impl std::fmt::Debug for McpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTool")
            .field("server", &self.client.name)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl McpTool {
    /// The server it comes from.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.client.name
    }

    /// The tool's name on its server (its catena name may carry a prefix).
    #[must_use]
    pub fn remote_name(&self) -> &str {
        &self.remote
    }

    /// The same tool under `prefix` + its name (to tell apart tools of several servers).
    #[must_use]
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.name = format!("{prefix}{}", self.remote);
        self
    }
}

#[async_trait]
impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn parameters(&self) -> Value {
        self.parameters.clone()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    async fn call(&self, arguments: Value, ctx: &RunContext) -> Result<ToolOutput> {
        self.client.call(&self.remote, arguments, ctx).await
    }
}

/// How tools of several servers are named in one registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum NamePrefix {
    /// A tool keeps its name unless another server (or a tool already registered) has one of
    /// the same name; then every clashing tool is named `<server>_<tool>`.
    #[default]
    OnClash,
    /// Every tool is named `<server>_<tool>`.
    Always,
}

/// The tools of every client, named by `prefix`, ready for
/// [`ToolRegistry::add`](crate::ToolRegistry::add). `taken` are names already in use.
///
/// # Errors
/// A server's tool list cannot be read.
pub async fn mcp_tools(
    clients: &[Arc<McpClient>],
    prefix: NamePrefix,
    taken: &[String],
) -> Result<Vec<McpTool>> {
    let mut all = Vec::new();
    for client in clients {
        all.extend(client.tools().await?);
    }
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for tool in &all {
        *count.entry(tool.remote.clone()).or_default() += 1;
    }
    Ok(all
        .into_iter()
        .map(|tool| {
            let clash = count.get(&tool.remote).is_some_and(|n| *n > 1) || taken.contains(&tool.remote);
            if prefix == NamePrefix::Always || clash {
                let server: String = tool
                    .client
                    .name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
                    .collect();
                tool.with_prefix(&format!("{server}_"))
            } else {
                tool
            }
        })
        .collect())
}

/// One resource a server lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpResource {
    /// Its URI (what [`McpClient::read`] takes).
    pub uri: String,
    /// Its name.
    pub name: String,
    /// Its MIME type, when the server says.
    pub mime_type: Option<String>,
    /// What it is, when the server says.
    pub description: Option<String>,
}

impl McpResource {
    /// A resource with a URI and a name.
    pub fn new(uri: impl Into<String>, name: impl Into<String>) -> Self {
        Self { uri: uri.into(), name: name.into(), mime_type: None, description: None }
    }

    /// Its MIME type.
    #[must_use]
    pub fn with_mime_type(mut self, mime_type: impl Into<String>) -> Self {
        self.mime_type = Some(mime_type.into());
        self
    }

    /// What it is.
    #[must_use]
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }
}

fn text_of(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

impl McpClient {
    /// The resources the server lists (every page).
    ///
    /// # Errors
    /// The server cannot be reached, or lists no resources (it lacks the capability).
    pub async fn resources(&self) -> Result<Vec<McpResource>> {
        let peer = self.peer().await?;
        let listed = self.within("cannot list its resources", peer.list_all_resources()).await?;
        Ok(listed
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .map(|r| McpResource {
                uri: text_of(&r, "uri").unwrap_or_default(),
                name: text_of(&r, "name").unwrap_or_default(),
                mime_type: text_of(&r, "mimeType"),
                description: text_of(&r, "description"),
            })
            .collect())
    }

    /// The text of the resource at `uri`, as documents (one per text part), each with its
    /// `source` (the URI), `server` and `mime_type` in the metadata.
    ///
    /// # Errors
    /// The server refuses or cannot be reached; a resource with no text (a binary blob) is an
    /// [`Error::Parse`] naming it.
    pub async fn read(&self, uri: &str) -> Result<Vec<catena_core::Document>> {
        let peer = self.peer().await?;
        let params: rmcp::model::ReadResourceRequestParams =
            serde_json::from_value(serde_json::json!({"uri": uri}))
                .map_err(|e| failed(&self.name, "bad resource request", e))?;
        let result = self.within(&format!("cannot read `{uri}`"), peer.read_resource(params)).await?;
        let contents = serde_json::to_value(&result).unwrap_or_default();
        let mut documents = Vec::new();
        for part in contents.get("contents").and_then(Value::as_array).into_iter().flatten() {
            let Some(text) = text_of(part, "text") else { continue };
            let mut document = catena_core::Document::new(text)
                .with_metadata("source", text_of(part, "uri").unwrap_or_else(|| uri.to_owned()))
                .with_metadata("server", self.name.clone());
            if let Some(mime) = text_of(part, "mimeType") {
                document = document.with_metadata("mime_type", mime);
            }
            documents.push(document);
        }
        if documents.is_empty() {
            return Err(Error::parse(format!("MCP resource {uri}"), "it holds no text (a binary resource?)"));
        }
        Ok(documents)
    }
}

/// One prompt a server offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpPromptInfo {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: Option<String>,
    /// Its arguments.
    pub arguments: Vec<McpPromptArgument>,
}

impl McpClient {
    /// The prompts the server offers (every page).
    ///
    /// # Errors
    /// The server cannot be reached, or offers no prompts (it lacks the capability).
    pub async fn prompts(&self) -> Result<Vec<McpPromptInfo>> {
        let peer = self.peer().await?;
        let listed = self.within("cannot list its prompts", peer.list_all_prompts()).await?;
        Ok(listed
            .iter()
            .filter_map(|p| serde_json::to_value(p).ok())
            .map(|p| McpPromptInfo {
                name: text_of(&p, "name").unwrap_or_default(),
                description: text_of(&p, "description"),
                arguments: p
                    .get("arguments")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|a| McpPromptArgument {
                        name: text_of(a, "name").unwrap_or_default(),
                        description: text_of(a, "description"),
                        required: a.get("required").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect(),
            })
            .collect())
    }

    /// The server's prompt `name` rendered with `arguments`, as chat messages: text as it is, an
    /// embedded text resource as its text, an image or other media as a placeholder such as
    /// `[image: image/png]` (a catena [`Message`](catena_core::Message) carries text).
    ///
    /// # Errors
    /// The server refuses (unknown prompt, missing argument) or cannot be reached.
    pub async fn prompt(
        &self,
        name: &str,
        arguments: &BTreeMap<String, String>,
    ) -> Result<Vec<catena_core::Message>> {
        let peer = self.peer().await?;
        let params: rmcp::model::GetPromptRequestParams =
            serde_json::from_value(serde_json::json!({"name": name, "arguments": arguments}))
                .map_err(|e| failed(&self.name, "bad prompt request", e))?;
        let result = self.within(&format!("cannot get the prompt `{name}`"), peer.get_prompt(params)).await?;
        let result = serde_json::to_value(&result).unwrap_or_default();
        Ok(result
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|message| {
                let content = message.get("content").cloned().unwrap_or_default();
                let text = crate::mcp_server::content::from_blocks(vec![content], None).content;
                match message.get("role").and_then(Value::as_str) {
                    Some("assistant") => catena_core::Message::assistant(text),
                    _ => catena_core::Message::user(text),
                }
            })
            .collect())
    }

    /// The server's prompt `name` as a catena prompt template ([`McpPrompt`]).
    ///
    /// # Errors
    /// The server cannot be reached or offers no prompt of that name.
    pub async fn prompt_template(self: &Arc<Self>, name: &str) -> Result<McpPrompt> {
        let info = self.prompts().await?.into_iter().find(|p| p.name == name).ok_or_else(|| {
            Error::invalid_input(format!("the MCP server `{}` offers no prompt `{name}`", self.name))
        })?;
        Ok(McpPrompt { client: Arc::clone(self), info })
    }
}

/// A server's prompt as a catena prompt template: like a
/// [`ChatPromptTemplate`](catena_core::ChatPromptTemplate), a
/// `Runnable<Value, ChatRequest>` that takes the arguments as a JSON object and gives the
/// messages, so it starts a chain (`prompt.pipe(model)`). Required arguments are checked before
/// the server is asked.
#[derive(Debug, Clone)]
pub struct McpPrompt {
    client: Arc<McpClient>,
    info: McpPromptInfo,
}

impl McpPrompt {
    /// What the server says about it.
    #[must_use]
    pub fn info(&self) -> &McpPromptInfo {
        &self.info
    }

    /// The messages for `input` (a JSON object of the arguments; values that are not strings
    /// are sent as their JSON text).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `input` is not an object or lacks a required argument;
    /// what the server answers otherwise.
    pub async fn format_messages(&self, input: &Value) -> Result<Vec<catena_core::Message>> {
        let Value::Object(map) = input else {
            return Err(Error::invalid_input(format!(
                "the arguments of the prompt `{}` must be a JSON object, not {input}",
                self.info.name
            )));
        };
        let arguments: BTreeMap<String, String> = map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        if let Some(missing) =
            self.info.arguments.iter().find(|a| a.required && !arguments.contains_key(&a.name))
        {
            return Err(Error::invalid_input(format!(
                "the prompt `{}` needs the argument `{}`",
                self.info.name, missing.name
            )));
        }
        self.client.prompt(&self.info.name, &arguments).await
    }
}

#[async_trait]
impl catena_core::Runnable<Value, catena_core::ChatRequest> for McpPrompt {
    async fn invoke(&self, input: Value, _ctx: &RunContext) -> Result<catena_core::ChatRequest> {
        Ok(catena_core::ChatRequest::new(self.format_messages(&input).await?))
    }
}

/// A server's resources as documents: a catena [`Loader`](catena_core::Loader) over
/// [`McpClient::read`], for every resource the server lists or the URIs given. A resource that
/// cannot be read is an error item; the others still load.
#[derive(Debug, Clone)]
pub struct McpResourceLoader {
    client: Arc<McpClient>,
    uris: Option<Vec<String>>,
}

impl McpResourceLoader {
    /// Every resource `client`'s server lists.
    #[must_use]
    pub fn new(client: Arc<McpClient>) -> Self {
        Self { client, uris: None }
    }

    /// Only these URIs.
    #[must_use]
    pub fn with_uris(mut self, uris: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.uris = Some(uris.into_iter().map(Into::into).collect());
        self
    }
}

impl catena_core::Loader for McpResourceLoader {
    fn load<'a>(
        &'a self,
        ctx: &'a RunContext,
    ) -> futures::stream::BoxStream<'a, Result<catena_core::Document>> {
        use futures::StreamExt;
        let uris = async move {
            match &self.uris {
                Some(uris) => Ok(uris.clone()),
                None => Ok(self.client.resources().await?.into_iter().map(|r| r.uri).collect()),
            }
        };
        futures::stream::once(uris)
            .flat_map(move |uris: Result<Vec<String>>| match uris {
                Err(e) => futures::stream::iter(vec![Err(e)]).boxed(),
                Ok(uris) => futures::stream::iter(uris)
                    .then(move |uri| async move {
                        ctx.check_cancelled()?;
                        self.client.read(&uri).await
                    })
                    .flat_map(|docs: Result<Vec<catena_core::Document>>| {
                        futures::stream::iter(match docs {
                            Ok(docs) => docs.into_iter().map(Ok).collect::<Vec<_>>(),
                            Err(e) => vec![Err(e)],
                        })
                    })
                    .boxed(),
            })
            .boxed()
    }
}
