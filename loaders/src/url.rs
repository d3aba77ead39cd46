//! [`UrlLoader`]: web pages and remote PDFs over HTTP(S).

use std::time::Duration;

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::{self, BoxStream, StreamExt};

use crate::html::html_document;
use crate::pdf::pdf_pages;
use crate::text::{decode_text, looks_binary};

/// Fetches each URL with an HTTP GET (a total timeout, default 30 s, and a size cap, default
/// 50 MB, enforced while the body streams in) and loads the response with the loader its content
/// type calls for: HTML through [`html_document`] (links resolved against the URL), PDF through
/// the PDF loader (one document per page), anything textual as text. `source` is the URL.
///
/// A failed fetch (unreachable host, timeout, HTTP error status, body over the cap, binary
/// content) is an error item naming the URL; the other URLs still load.
#[derive(Debug, Clone)]
pub struct UrlLoader {
    urls: Vec<String>,
    timeout: Duration,
    max_bytes: usize,
    client: Option<reqwest::Client>,
}

impl UrlLoader {
    /// A loader for these URLs.
    pub fn new<S: Into<String>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self {
            urls: urls.into_iter().map(Into::into).collect(),
            timeout: Duration::from_secs(30),
            max_bytes: 50 << 20,
            client: None,
        }
    }

    /// The total time allowed per URL.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body accepted, in bytes.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Fetches with this client instead of a default one (whose timeouts [`with_timeout`]
    /// sets): a caller that needs its own redirect policy, DNS resolver or proxy builds it.
    ///
    /// [`with_timeout`]: UrlLoader::with_timeout
    #[must_use]
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    async fn fetch(&self, client: &reqwest::Client, url: &str) -> Result<(Vec<u8>, String)> {
        let failed = |what: String| Error::invalid_input(format!("GET {url}: {what}"));
        let mut response = client.get(url).send().await.map_err(|e| {
            let what =
                if e.is_timeout() { format!("timed out after {:?}", self.timeout) } else { with_causes(&e) };
            failed(what).with_source(e)
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(failed(format!("the server answered {status}")));
        }
        if response.content_length().is_some_and(|n| n > self.max_bytes as u64) {
            return Err(failed(format!("the body is larger than the {} byte limit", self.max_bytes)));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > self.max_bytes {
                return Err(failed(format!("the body is larger than the {} byte limit", self.max_bytes)));
            }
        }
        Ok((body, content_type))
    }

    async fn load_one(&self, client: &reqwest::Client, url: &str) -> Vec<Result<Document>> {
        let (body, content_type) = match self.fetch(client, url).await {
            Ok(fetched) => fetched,
            Err(e) => return vec![Err(e)],
        };
        if content_type.contains("pdf") || body.starts_with(b"%PDF") {
            let url = url.to_owned();
            let pages = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                pdf_pages(&body, &url, None, &mut |item| {
                    out.push(item);
                    true
                });
                out
            })
            .await;
            return pages
                .unwrap_or_else(|e| vec![Err(Error::invalid_input(format!("PDF parsing failed: {e}")))]);
        }
        if looks_binary(&body) {
            return vec![Err(Error::invalid_input(format!(
                "GET {url}: the body is binary ({content_type})"
            )))];
        }
        let (text, _, _) = decode_text(&body);
        if content_type.contains("html") || content_type.is_empty() && text.trim_start().starts_with('<') {
            return vec![html_document(&text, url, Some(url), false)];
        }
        vec![Ok(Document::new(text).with_metadata("source", url).with_metadata("content_type", content_type))]
    }
}

/// The error and its causes: reqwest's own message ("error sending request") names no reason.
fn with_causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Loader for UrlLoader {
    fn load<'a>(&'a self, _ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let client = match &self.client {
            Some(client) => Ok(client.clone()),
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(10)))
                .user_agent(concat!("catena/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::invalid_input(format!("cannot build an HTTP client: {e}"))),
        };
        match client {
            Ok(client) => Box::pin(
                stream::iter(self.urls.clone())
                    .then(move |url| {
                        let client = client.clone();
                        async move { self.load_one(&client, &url).await }
                    })
                    .flat_map(stream::iter),
            ),
            Err(e) => Box::pin(stream::iter([Err(e)])),
        }
    }
}
