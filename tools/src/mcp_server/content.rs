//! MCP content: the pieces tool results, resources and prompt messages are made of.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use catena_core::ToolOutput;
use serde_json::{Value, json};

/// The body of a resource: text, or bytes (sent base64-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceBody {
    /// Text.
    Text(String),
    /// Bytes: an image, a PDF, anything not text.
    Blob(Vec<u8>),
}

/// What a resource holds: its URI, MIME type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceContent {
    /// The resource's URI.
    pub uri: String,
    /// Its MIME type, when known.
    pub mime_type: Option<String>,
    /// The text or bytes.
    pub body: ResourceBody,
}

impl ResourceContent {
    /// A text resource.
    pub fn text(uri: impl Into<String>, mime_type: impl Into<String>, text: impl Into<String>) -> Self {
        Self { uri: uri.into(), mime_type: Some(mime_type.into()), body: ResourceBody::Text(text.into()) }
    }

    /// A binary resource.
    pub fn blob(uri: impl Into<String>, mime_type: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self { uri: uri.into(), mime_type: Some(mime_type.into()), body: ResourceBody::Blob(bytes.into()) }
    }

    /// The protocol's `TextResourceContents` or `BlobResourceContents`.
    pub(crate) fn to_json(&self) -> Value {
        let mut part = json!({ "uri": self.uri });
        if let (Some(mime), Some(map)) = (&self.mime_type, part.as_object_mut()) {
            map.insert("mimeType".into(), json!(mime));
        }
        if let Some(map) = part.as_object_mut() {
            match &self.body {
                ResourceBody::Text(text) => map.insert("text".into(), json!(text)),
                ResourceBody::Blob(bytes) => map.insert("blob".into(), json!(BASE64.encode(bytes))),
            };
        }
        part
    }
}

/// One piece of MCP content, as a tool result or prompt message carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum McpContent {
    /// Text.
    Text(String),
    /// An image.
    Image {
        /// The encoded image (PNG, JPEG...).
        data: Vec<u8>,
        /// Its MIME type.
        mime_type: String,
    },
    /// Audio.
    Audio {
        /// The encoded audio (WAV, MP3...).
        data: Vec<u8>,
        /// Its MIME type.
        mime_type: String,
    },
    /// A resource embedded whole.
    Resource(ResourceContent),
}

impl McpContent {
    /// Text content.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text(text.into())
    }

    /// An image.
    pub fn image(data: impl Into<Vec<u8>>, mime_type: impl Into<String>) -> Self {
        Self::Image { data: data.into(), mime_type: mime_type.into() }
    }

    /// Audio.
    pub fn audio(data: impl Into<Vec<u8>>, mime_type: impl Into<String>) -> Self {
        Self::Audio { data: data.into(), mime_type: mime_type.into() }
    }

    /// The protocol's content block.
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Self::Text(text) => json!({"type": "text", "text": text}),
            Self::Image { data, mime_type } => {
                json!({"type": "image", "data": BASE64.encode(data), "mimeType": mime_type})
            }
            Self::Audio { data, mime_type } => {
                json!({"type": "audio", "data": BASE64.encode(data), "mimeType": mime_type})
            }
            Self::Resource(resource) => json!({"type": "resource", "resource": resource.to_json()}),
        }
    }
}

/// A tool result made of MCP content: what a catena tool returns when its result is more than
/// text (an image it drew, a file it read whole).
///
/// The model reads the text parts, with a placeholder such as `[image: image/png]` for each
/// other part; the whole list, in order, is kept in the artifact under `"content"` as the
/// protocol's content blocks. That is the same shape [`McpTool`](super::super::mcp::McpTool)
/// gives the results of a remote server's tools, and what [`McpToolServer`](super::McpToolServer)
/// sends back out, so a result passes through catena unchanged.
///
/// ```
/// use catena_tools::mcp::{McpContent, tool_output};
///
/// let out = tool_output([McpContent::text("The chart:"), McpContent::image(vec![137, 80], "image/png")]);
/// assert_eq!(out.content, "The chart:\n[image: image/png]");
/// assert_eq!(out.artifact.unwrap()["content"][1]["type"], "image");
/// ```
pub fn tool_output(content: impl IntoIterator<Item = McpContent>) -> ToolOutput {
    let blocks: Vec<Value> = content.into_iter().map(|part| part.to_json()).collect();
    from_blocks(blocks, None)
}

/// Text for the model from protocol content blocks, and the blocks as the artifact when any
/// is not plain text (or when there is structured content).
pub(crate) fn from_blocks(blocks: Vec<Value>, structured: Option<Value>) -> ToolOutput {
    let mut texts = Vec::new();
    let mut only_text = true;
    for block in &blocks {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or_default();
        let field =
            |value: &Value, key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind {
            "text" => texts.push(field(block, "text")),
            "image" | "audio" => {
                only_text = false;
                let mime = block.get("mimeType").and_then(Value::as_str).unwrap_or("unknown type");
                texts.push(format!("[{kind}: {mime}]"));
            }
            "resource" => {
                only_text = false;
                let resource = block.get("resource").cloned().unwrap_or_default();
                match resource.get("text").and_then(Value::as_str) {
                    Some(text) => texts.push(text.to_owned()),
                    None => texts.push(format!("[resource: {}]", field(&resource, "uri"))),
                }
            }
            _ => {
                only_text = false;
                texts.push(format!("[{kind}: {}]", field(block, "uri")));
            }
        }
    }
    let mut content = texts.join("\n");
    if content.is_empty()
        && let Some(structured) = &structured
    {
        content = structured.to_string();
    }
    let mut artifact = serde_json::Map::new();
    if !only_text {
        artifact.insert("content".into(), Value::Array(blocks));
    }
    if let Some(structured) = structured {
        artifact.insert("structured".into(), structured);
    }
    ToolOutput { content, artifact: (!artifact.is_empty()).then_some(Value::Object(artifact)) }
}

/// The protocol's result of a tool call from a catena tool's output: the artifact's content
/// blocks when it has them (see [`tool_output`]), the text otherwise; structured content from
/// the artifact's `"structured"` part, or the whole artifact of a plain catena tool (SQL rows,
/// cited documents) under `"artifact"`.
pub(crate) fn to_result(out: ToolOutput) -> Value {
    let blocks = out.artifact.as_ref().and_then(|a| a.get("content")).and_then(Value::as_array).cloned();
    let content = blocks.unwrap_or_else(|| vec![json!({"type": "text", "text": out.content})]);
    let mut body = json!({"content": content, "isError": false});
    let structured = match out.artifact {
        Some(Value::Object(mut parts))
            if parts.contains_key("content") || parts.contains_key("structured") =>
        {
            parts.remove("structured")
        }
        Some(artifact) => Some(json!({ "artifact": artifact })),
        None => None,
    };
    if let (Some(structured), Some(map)) = (structured, body.as_object_mut()) {
        map.insert("structuredContent".into(), structured);
    }
    body
}
