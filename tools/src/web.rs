//! [`WebPageTool`]: a web page as clean text, with the limits an agent on the open web needs.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use catena_core::{Error, Loader, Result, RunContext, ToolOutput, TypedTool, async_trait};
use catena_loaders::UrlLoader;
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Deserialize;

/// Fetches a page and returns its readable text (HTML through the HTML loader: navigation,
/// scripts and boilerplate dropped; PDFs page by page; plain text as is), headed by its title and
/// URL.
///
/// Safety limits, each configurable:
/// - only `http` and `https` URLs;
/// - an optional allow list of hosts (`example.org` also admits `docs.example.org`);
/// - loopback, private, link-local and other non-public addresses are refused by default, checked
///   on every DNS answer and every redirect (at most 5), so a page cannot bounce the agent into
///   the local network;
/// - 15 s total per fetch, 2 MB per body, 6,000 characters of text back to the model.
pub struct WebPageTool {
    policy: Arc<UrlPolicy>,
    timeout: Duration,
    max_bytes: usize,
    max_chars: usize,
}

impl std::fmt::Debug for WebPageTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPageTool")
            .field("allowed_hosts", &self.policy.allowed_hosts)
            .field("allow_private", &self.policy.allow_private)
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_chars", &self.max_chars)
            .finish()
    }
}

impl Default for WebPageTool {
    fn default() -> Self {
        Self::new()
    }
}

/// Arguments of [`WebPageTool`].
#[derive(Debug, Deserialize, JsonSchema)]
pub struct WebPageArgs {
    /// The page's full URL, starting with http:// or https://.
    pub url: String,
}

impl WebPageTool {
    /// Any public host, default limits.
    #[must_use]
    pub fn new() -> Self {
        Self {
            policy: Arc::new(UrlPolicy { allowed_hosts: None, allow_private: false }),
            timeout: Duration::from_secs(15),
            max_bytes: 2 << 20,
            max_chars: 6000,
        }
    }

    /// Only these hosts (and their subdomains).
    #[must_use]
    pub fn allow_hosts<S: Into<String>>(mut self, hosts: impl IntoIterator<Item = S>) -> Self {
        Arc::make_mut(&mut self.policy).allowed_hosts = Some(
            hosts.into_iter().map(|h| h.into().trim().trim_end_matches('.').to_ascii_lowercase()).collect(),
        );
        self
    }

    /// Also fetch from loopback and private addresses (an intranet agent; tests on loopback).
    #[must_use]
    pub fn allow_private_addresses(mut self, allow: bool) -> Self {
        Arc::make_mut(&mut self.policy).allow_private = allow;
        self
    }

    /// Total time per fetch.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Largest body accepted, in bytes.
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Characters of text returned to the model (at least 1).
    #[must_use]
    pub fn with_max_chars(mut self, max_chars: usize) -> Self {
        self.max_chars = max_chars.max(1);
        self
    }

    fn client(&self) -> Result<reqwest::Client> {
        let policy = Arc::clone(&self.policy);
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("catena/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 5 {
                    return attempt.error("more than 5 redirects");
                }
                match policy.refusal(attempt.url()) {
                    Some(why) => attempt.error(format!("redirected to a refused URL: {why}")),
                    None => attempt.follow(),
                }
            }));
        if !self.policy.allow_private {
            builder = builder.dns_resolver(PublicOnly);
        }
        builder.build().map_err(|e| Error::tool(Self::NAME, format!("cannot build an HTTP client: {e}")))
    }
}

/// What may be fetched; shared with the client's redirect policy.
#[derive(Debug, Clone)]
struct UrlPolicy {
    allowed_hosts: Option<BTreeSet<String>>,
    allow_private: bool,
}

impl UrlPolicy {
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed_hosts.as_ref().is_none_or(|allowed| {
            allowed
                .iter()
                .any(|a| host == *a || host.strip_suffix(a.as_str()).is_some_and(|p| p.ends_with('.')))
        })
    }

    /// Why `url` may not be fetched, if it may not.
    fn refusal(&self, url: &url::Url) -> Option<String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Some(format!("only http and https URLs can be fetched, not {}:", url.scheme()));
        }
        let Some(host) = url.host_str() else {
            return Some("the URL has no host".to_owned());
        };
        if !self.host_allowed(host) {
            return Some(format!("the host {host} is not on the allow list"));
        }
        if !self.allow_private
            && let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>()
            && !is_public(ip)
        {
            return Some(format!("{ip} is not a public address"));
        }
        None
    }
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments().first().copied().unwrap_or(0);
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Resolves names with the system resolver and keeps only public addresses, so neither a DNS
/// answer nor a redirect can point the fetch at the local network.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

#[async_trait]
impl TypedTool for WebPageTool {
    type Args = WebPageArgs;
    const NAME: &'static str = "fetch_web_page";
    const DESCRIPTION: &'static str =
        "Fetches a web page by URL and returns its readable text with its title.";
    const READ_ONLY: bool = true;

    async fn run(&self, args: WebPageArgs, ctx: &RunContext) -> Result<ToolOutput> {
        let url = url::Url::parse(args.url.trim()).map_err(|e| {
            Error::tool(Self::NAME, format!("{:?} is not a URL ({e}); give a full http(s) URL", args.url))
        })?;
        if let Some(why) = self.policy.refusal(&url) {
            return Err(Error::tool(Self::NAME, format!("refused: {why}")));
        }
        let loader =
            UrlLoader::new([url.to_string()]).with_client(self.client()?).with_max_bytes(self.max_bytes);
        let mut pages = loader.load(ctx);
        let mut text = String::new();
        let mut title = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::tool(Self::NAME, e.to_string()))?;
            title = title.or_else(|| page.metadata.get("title").and_then(|t| t.as_str()).map(str::to_owned));
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&page.content);
            if text.chars().count() > self.max_chars {
                break;
            }
        }
        let total = text.chars().count();
        let mut shown: String = text.chars().take(self.max_chars).collect();
        if total > self.max_chars {
            shown.push_str(&format!("\n[… cut at {} of {total} characters]", self.max_chars));
        }
        let head = match &title {
            Some(title) => format!("Title: {title}\nURL: {url}\n\n"),
            None => format!("URL: {url}\n\n"),
        };
        Ok(ToolOutput {
            content: format!("{head}{shown}"),
            artifact: Some(serde_json::json!({"url": url.as_str(), "title": title, "chars": total})),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use catena_core::Tool;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback HTTP server answering every request with `response`, as many times as asked.
    async fn serve(response: String) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        format!("http://{addr}/page")
    }

    fn html(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn clean_text_with_title_and_every_limit() {
        let ctx = RunContext::new();
        let page = "<html><head><title>Rivers</title></head><body><nav>Home | About</nav><main><h1>Rivers</h1><p>The Loire is the longest river in France.</p></main></body></html>";
        let url = serve(html(page)).await;
        let tool = WebPageTool::new().allow_private_addresses(true);
        let out = tool.call(json!({"url": url}), &ctx).await.unwrap();
        assert!(out.content.starts_with("Title: Rivers\nURL: http://127.0.0.1:"), "{}", out.content);
        assert!(out.content.contains("The Loire is the longest river in France."), "{}", out.content);
        assert!(!out.content.contains("About"), "navigation is boilerplate: {}", out.content);

        let short = WebPageTool::new().allow_private_addresses(true).with_max_chars(10);
        let out = short.call(json!({"url": url}), &ctx).await.unwrap();
        assert!(out.content.contains("[… cut at 10 of "), "{}", out.content);

        // The defaults refuse loopback, whether named by IP or reached through a redirect.
        let err = WebPageTool::new().call(json!({"url": url}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("127.0.0.1 is not a public address"), "{err}");
        let err = WebPageTool::new().call(json!({"url": "http://localhost:9/"}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("no public address"), "{err}");
        let bounce = serve(format!(
            "HTTP/1.1 302 Found\r\nlocation: {url}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        ))
        .await;
        let guarded = WebPageTool::new().allow_private_addresses(true);
        // With private addresses allowed the redirect is followed...
        assert!(guarded.call(json!({"url": bounce}), &ctx).await.is_ok());
        // ...and an allow list that names another host refuses the first hop.
        let listed = WebPageTool::new().allow_private_addresses(true).allow_hosts(["example.org"]);
        let err = listed.call(json!({"url": bounce}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("not on the allow list"), "{err}");
        assert!(
            listed.policy.host_allowed("docs.example.org") && !listed.policy.host_allowed("badexample.org")
        );

        for (bad, why) in [("file:///etc/passwd", "only http and https"), ("not a url", "is not a URL")] {
            let err = tool.call(json!({"url": bad}), &ctx).await.unwrap_err();
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        let big = serve(html(&format!("<p>{}</p>", "x".repeat(5000)))).await;
        let capped = WebPageTool::new().allow_private_addresses(true).with_max_bytes(1000);
        let err = capped.call(json!({"url": big}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("larger than the 1000 byte limit"), "{err}");
        let missing =
            serve("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".into()).await;
        let err = tool.call(json!({"url": missing}), &ctx).await.unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
    }
}
