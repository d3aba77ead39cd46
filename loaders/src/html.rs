//! [`HtmlLoader`]: the readable text of an HTML page, with its title, headings and links.

use std::path::PathBuf;

use catena_core::{Document, Error, Loader, Result, RunContext};
use futures::stream::BoxStream;
use scraper::{ElementRef, Html, Node, Selector};
use serde_json::{Value, json};

use crate::blocking::blocking_stream;
use crate::text::decode_text;

/// Loads an HTML file as one [`Document`] holding its readable text: the page's `<main>` (or its
/// only `<article>`, or its `<body>`) without scripts, styles, navigation, headers, footers, asides
/// and forms; block elements become line breaks and whitespace is collapsed outside `<pre>`.
///
/// Metadata: `source`, `title` (`<title>`, else the first `<h1>`), `description` and `language`
/// when the page declares them, `headings` (h1-h3 text in order), `links` (`{"text", "href"}`,
/// resolved against the page's URL when it has one). With [`with_raw_html`](Self::with_raw_html)
/// the original markup is kept under `html`. Malformed markup is repaired the way browsers
/// repair it (html5ever); a page with no text at all is an [`Error::InvalidInput`].
#[derive(Debug, Clone)]
pub struct HtmlLoader {
    path: PathBuf,
    keep_raw: bool,
}

impl HtmlLoader {
    /// A loader for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), keep_raw: false }
    }

    /// Keeps the original markup in the `html` metadata key.
    #[must_use]
    pub fn with_raw_html(mut self, keep: bool) -> Self {
        self.keep_raw = keep;
        self
    }
}

const SKIPPED: [&str; 16] = [
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "iframe",
    "button", "select", "head", "object", "canvas",
];
const BLOCKS: [&str; 34] = [
    "p",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "tr",
    "br",
    "section",
    "article",
    "pre",
    "blockquote",
    "table",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "hr",
    "main",
    "figure",
    "figcaption",
    "caption",
    "address",
    "details",
    "summary",
    "body",
    "td",
    "th",
    "thead",
    "tbody",
];

fn selector(css: &str) -> Result<Selector> {
    Selector::parse(css).map_err(|e| Error::invalid_input(format!("bad selector {css}: {e}")))
}

/// The document for an HTML page: its readable text and metadata (see [`HtmlLoader`]).
/// `base_url` resolves relative links.
pub fn html_document(html: &str, source: &str, base_url: Option<&str>, keep_raw: bool) -> Result<Document> {
    let page = Html::parse_document(html);
    let text_of =
        |e: ElementRef<'_>| e.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    let first = |css: &str| -> Result<Option<ElementRef<'_>>> { Ok(page.select(&selector(css)?).next()) };

    let root = match first("main")? {
        Some(main) => main,
        None => {
            let articles: Vec<_> = page.select(&selector("article")?).collect();
            match (articles.as_slice(), first("body")?) {
                ([only], _) => *only,
                (_, Some(body)) => body,
                (_, None) => page.root_element(),
            }
        }
    };
    let mut text = String::new();
    collect_text(root, &mut text, false);
    let content = tidy(&text);
    if content.is_empty() {
        return Err(Error::invalid_input(format!(
            "{source} has no readable text (only markup, scripts or images)"
        )));
    }

    let mut doc = Document::new(content).with_metadata("source", source);
    let title = first("title")?.map(text_of).filter(|t| !t.is_empty()).or(first("h1")?.map(text_of));
    if let Some(title) = title {
        doc = doc.with_metadata("title", title);
    }
    if let Some(description) = first(r#"meta[name="description"]"#)?.and_then(|m| m.value().attr("content")) {
        doc = doc.with_metadata("description", description.trim());
    }
    if let Some(lang) = page.root_element().value().attr("lang") {
        doc = doc.with_metadata("language", lang);
    }
    let headings: Vec<Value> =
        page.select(&selector("h1, h2, h3")?).map(|h| Value::String(text_of(h))).collect();
    doc = doc.with_metadata("headings", headings);
    let base = base_url.and_then(url_join_base);
    let links: Vec<Value> = root
        .select(&selector("a[href]")?)
        .filter(|a| {
            // Links in navigation and other boilerplate are not the page's own.
            !a.ancestors().filter_map(ElementRef::wrap).any(|e| SKIPPED.contains(&e.value().name()))
        })
        .filter_map(|a| {
            let href = a.value().attr("href")?.trim();
            if href.is_empty() || href.starts_with('#') || href.starts_with("javascript:") {
                return None;
            }
            Some(json!({"text": text_of(a), "href": resolve(base.as_ref(), href)}))
        })
        .collect();
    doc = doc.with_metadata("links", links);
    if keep_raw {
        doc = doc.with_metadata("html", html);
    }
    Ok(doc)
}

#[cfg(feature = "url")]
type Base = url::Url;
#[cfg(not(feature = "url"))]
type Base = String;

#[cfg(feature = "url")]
fn url_join_base(base: &str) -> Option<Base> {
    url::Url::parse(base).ok()
}
#[cfg(not(feature = "url"))]
fn url_join_base(base: &str) -> Option<Base> {
    Some(base.to_owned())
}

#[cfg(feature = "url")]
fn resolve(base: Option<&Base>, href: &str) -> String {
    base.and_then(|b| b.join(href).ok()).map_or_else(|| href.to_owned(), |u| u.to_string())
}
#[cfg(not(feature = "url"))]
fn resolve(_base: Option<&Base>, href: &str) -> String {
    href.to_owned()
}

fn collect_text(element: ElementRef<'_>, out: &mut String, in_pre: bool) {
    let name = element.value().name();
    if SKIPPED.contains(&name) {
        return;
    }
    let block = BLOCKS.contains(&name);
    let in_pre = in_pre || name == "pre";
    if block {
        out.push('\n');
    }
    for child in element.children() {
        match child.value() {
            Node::Text(t) => {
                if in_pre {
                    out.push_str(t);
                } else {
                    // Collapse runs of whitespace to one space, as a browser renders them.
                    let mut last_space = out.ends_with([' ', '\n']);
                    for c in t.chars() {
                        if c.is_whitespace() {
                            if !last_space {
                                out.push(' ');
                                last_space = true;
                            }
                        } else {
                            out.push(c);
                            last_space = false;
                        }
                    }
                }
            }
            Node::Element(_) => {
                if let Some(e) = ElementRef::wrap(child) {
                    collect_text(e, out, in_pre);
                }
            }
            _ => {}
        }
    }
    if block {
        out.push('\n');
    }
}

/// Trims each line and keeps at most one blank line between blocks.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        let line = if line.trim().is_empty() { "" } else { line };
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

impl Loader for HtmlLoader {
    fn load<'a>(&'a self, _ctx: &'a RunContext) -> BoxStream<'a, Result<Document>> {
        let (path, keep) = (self.path.clone(), self.keep_raw);
        blocking_stream(move |sink| {
            let doc = std::fs::read(&path).map_err(|e| Error::io(&path, e)).and_then(|bytes| {
                let (html, _, _) = decode_text(&bytes);
                html_document(&html, &path.to_string_lossy(), None, keep)
            });
            sink.send(doc);
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const PAGE: &str = r#"<!doctype html><html lang="en"><head><title>Rust  Guide</title>
        <meta name="description" content=" All about ownership. "><style>p{color:red}</style></head>
        <body><nav><a href="/home">Home</a> menu</nav><header>Site banner</header>
        <h1>Ownership</h1><p>Every value has   an <b>owner</b>.<script>track()</script></p>
        <h2>Borrowing</h2><p>See <a href="/docs/borrow.html">borrowing</a>.</p>
        <pre>fn main() {
    let x = 1;
}</pre><footer>© 2026</footer></body></html>"#;

    #[test]
    fn readable_text_and_metadata() {
        let doc = html_document(PAGE, "page.html", Some("https://example.org/guide/"), false).unwrap();
        assert_eq!(
            doc.content,
            "Ownership\n\nEvery value has an owner.\n\nBorrowing\n\nSee borrowing.\n\nfn main() {\n    let x = 1;\n}"
        );
        assert_eq!(doc.metadata["title"], "Rust Guide");
        assert_eq!(doc.metadata["description"], "All about ownership.");
        assert_eq!(doc.metadata["language"], "en");
        assert_eq!(doc.metadata["headings"], json!(["Ownership", "Borrowing"]));
        assert_eq!(
            doc.metadata["links"],
            json!([{"text": "borrowing", "href": "https://example.org/docs/borrow.html"}])
        );
    }

    #[test]
    fn malformed_markup_is_repaired_and_empty_pages_are_errors() {
        let doc = html_document("<p>unclosed <b>bold <i>both</p><div>next", "x.html", None, true).unwrap();
        assert_eq!(doc.content, "unclosed bold both\n\nnext");
        assert!(doc.metadata["html"].as_str().unwrap().starts_with("<p>"));
        let err = html_document("<html><script>x()</script><img src=a.png></html>", "e.html", None, false)
            .unwrap_err();
        assert!(err.to_string().contains("e.html has no readable text"), "{err}");
    }
}
