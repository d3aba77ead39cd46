//! Resources an MCP server offers: [`ResourceSource`], [`StaticResources`], [`StoreResources`].

use std::collections::BTreeMap;
use std::sync::Arc;

use catena_core::{Error, Filter, Result, VectorStore, async_trait};

use super::content::{ResourceBody, ResourceContent};
use crate::mcp::McpResource;

/// A URI template (RFC 6570 level 1, `{name}` parts) for resources read on demand rather than
/// listed, such as `notes://{date}/summary`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpResourceTemplate {
    /// The template.
    pub uri_template: String,
    /// Its name.
    pub name: String,
    /// The MIME type of what it reads, when known.
    pub mime_type: Option<String>,
    /// What it is.
    pub description: Option<String>,
}

impl McpResourceTemplate {
    /// The variables of `uri` when it matches this template (`{name}` matches one or more
    /// characters up to the template's next literal text), `None` when it does not.
    #[must_use]
    pub fn matches(&self, uri: &str) -> Option<BTreeMap<String, String>> {
        let mut variables = BTreeMap::new();
        let mut rest_template = self.uri_template.as_str();
        let mut rest = uri;
        loop {
            let Some(open) = rest_template.find('{') else {
                return (rest == rest_template).then_some(variables);
            };
            let literal = rest_template.get(..open)?;
            rest = rest.strip_prefix(literal)?;
            let after = rest_template.get(open + 1..)?;
            let close = after.find('}')?;
            let name = after.get(..close)?;
            rest_template = after.get(close + 1..)?;
            // The value runs to the next literal (or the end), and never spans a `/`.
            let next_literal = rest_template.split('{').next().unwrap_or_default();
            let end = if next_literal.is_empty() { rest.len() } else { rest.find(next_literal)? };
            let value = rest.get(..end)?;
            if value.is_empty() || value.contains('/') {
                return None;
            }
            variables.insert(name.to_owned(), value.to_owned());
            rest = rest.get(end..)?;
        }
    }
}

/// Where an MCP server's resources come from. A server holds any number of sources; a read goes
/// to each in turn until one knows the URI.
#[async_trait]
pub trait ResourceSource: Send + Sync {
    /// The resources listed to clients.
    async fn list(&self) -> Result<Vec<McpResource>>;

    /// Templates of resources read on demand (none by default).
    fn templates(&self) -> Vec<McpResourceTemplate> {
        Vec::new()
    }

    /// The contents at `uri`, or `None` when the URI is not one of this source's.
    async fn read(&self, uri: &str) -> Result<Option<Vec<ResourceContent>>>;
}

type TemplateReader = Arc<dyn Fn(&BTreeMap<String, String>) -> Result<ResourceBody> + Send + Sync>;

/// Resources fixed when the server starts, plus templates answered by a function.
///
/// ```
/// use catena_tools::mcp::{ResourceBody, StaticResources};
///
/// let resources = StaticResources::new()
///     .text("docs://readme", "README", "text/markdown", "# catena")
///     .template("orders://{id}", "Order", "application/json", |vars| {
///         Ok(ResourceBody::Text(format!("{{\"id\": \"{}\"}}", vars["id"])))
///     });
/// ```
#[derive(Clone, Default)]
pub struct StaticResources {
    fixed: Vec<(McpResource, ResourceBody)>,
    templates: Vec<(McpResourceTemplate, TemplateReader)>,
}

impl std::fmt::Debug for StaticResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticResources")
            .field("fixed", &self.fixed.iter().map(|(r, _)| &r.uri).collect::<Vec<_>>())
            .field("templates", &self.templates.iter().map(|(t, _)| &t.uri_template).collect::<Vec<_>>())
            .finish()
    }
}

impl StaticResources {
    /// No resources yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource with its body.
    #[must_use]
    pub fn with(mut self, resource: McpResource, body: ResourceBody) -> Self {
        self.fixed.push((resource, body));
        self
    }

    /// Adds a text resource.
    #[must_use]
    pub fn text(self, uri: &str, name: &str, mime_type: &str, text: impl Into<String>) -> Self {
        self.with(McpResource::new(uri, name).with_mime_type(mime_type), ResourceBody::Text(text.into()))
    }

    /// Adds a binary resource.
    #[must_use]
    pub fn blob(self, uri: &str, name: &str, mime_type: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.with(McpResource::new(uri, name).with_mime_type(mime_type), ResourceBody::Blob(bytes.into()))
    }

    /// Adds a template: a read of a URI matching `uri_template` calls `read` with its variables.
    #[must_use]
    pub fn template(
        mut self,
        uri_template: &str,
        name: &str,
        mime_type: &str,
        read: impl Fn(&BTreeMap<String, String>) -> Result<ResourceBody> + Send + Sync + 'static,
    ) -> Self {
        let template = McpResourceTemplate {
            uri_template: uri_template.into(),
            name: name.into(),
            mime_type: Some(mime_type.into()),
            description: None,
        };
        self.templates.push((template, Arc::new(read)));
        self
    }
}

#[async_trait]
impl ResourceSource for StaticResources {
    async fn list(&self) -> Result<Vec<McpResource>> {
        Ok(self.fixed.iter().map(|(resource, _)| resource.clone()).collect())
    }

    fn templates(&self) -> Vec<McpResourceTemplate> {
        self.templates.iter().map(|(template, _)| template.clone()).collect()
    }

    async fn read(&self, uri: &str) -> Result<Option<Vec<ResourceContent>>> {
        if let Some((resource, body)) = self.fixed.iter().find(|(r, _)| r.uri == uri) {
            let content = ResourceContent {
                uri: uri.into(),
                mime_type: resource.mime_type.clone(),
                body: body.clone(),
            };
            return Ok(Some(vec![content]));
        }
        for (template, read) in &self.templates {
            if let Some(variables) = template.matches(uri) {
                let content = ResourceContent {
                    uri: uri.into(),
                    mime_type: template.mime_type.clone(),
                    body: read(&variables)?,
                };
                return Ok(Some(vec![content]));
            }
        }
        Ok(None)
    }
}

/// The documents of a vector store as resources: one per `source` (the file or page ingested),
/// at `catena://store/<collection>/<source>`, whose text is that source's chunks in order.
/// Clients list what the store holds and read a whole source, where the search tool returns
/// snippets.
#[derive(Clone)]
pub struct StoreResources {
    store: Arc<dyn VectorStore>,
    collection: String,
}

impl std::fmt::Debug for StoreResources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreResources").field("collection", &self.collection).finish_non_exhaustive()
    }
}

impl StoreResources {
    /// The documents of `store`, named under `collection` in their URIs.
    pub fn new(store: Arc<dyn VectorStore>, collection: impl Into<String>) -> Self {
        Self { store, collection: collection.into() }
    }

    fn prefix(&self) -> String {
        format!("catena://store/{}/", self.collection)
    }
}

/// A chunk's position in its source (page, then offset when the splitter recorded them); chunks
/// without either keep the store's order, which is the order they were ingested in.
fn chunk_order(document: &catena_core::Document) -> (u64, u64) {
    let number = |key: &str| document.metadata.get(key).and_then(serde_json::Value::as_u64).unwrap_or(0);
    (number("page"), number("start_index"))
}

#[async_trait]
impl ResourceSource for StoreResources {
    async fn list(&self) -> Result<Vec<McpResource>> {
        let mut sources = std::collections::BTreeSet::new();
        for document in self.store.documents(None).await? {
            if let Some(source) = document.metadata.get("source").and_then(serde_json::Value::as_str) {
                sources.insert(source.to_owned());
            }
        }
        Ok(sources
            .into_iter()
            .map(|source| {
                McpResource::new(format!("{}{source}", self.prefix()), &source)
                    .with_mime_type("text/plain")
                    .with_description(format!("The text of {source} as ingested into `{}`.", self.collection))
            })
            .collect())
    }

    fn templates(&self) -> Vec<McpResourceTemplate> {
        vec![McpResourceTemplate {
            uri_template: format!("{}{{source}}", self.prefix()),
            name: format!("A document of `{}`", self.collection),
            mime_type: Some("text/plain".into()),
            description: Some("The chunks of one ingested source, in order.".into()),
        }]
    }

    async fn read(&self, uri: &str) -> Result<Option<Vec<ResourceContent>>> {
        let Some(source) = uri.strip_prefix(&self.prefix()) else { return Ok(None) };
        let mut chunks = self.store.documents(Some(&Filter::eq("source", source))).await?;
        if chunks.is_empty() {
            return Err(Error::invalid_input(format!(
                "`{source}` is not in the store `{}`: list the resources to see what is",
                self.collection
            )));
        }
        chunks.sort_by_key(chunk_order);
        let text = chunks.iter().map(|chunk| chunk.content.as_str()).collect::<Vec<_>>().join("\n\n");
        Ok(Some(vec![ResourceContent::text(uri, "text/plain", text)]))
    }
}
