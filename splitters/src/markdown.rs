//! [`MarkdownHeaderSplitter`]: sections of a markdown document, with their header path.

use catena_core::{Document, Metadata, Result, Splitter};
use serde_json::Value;

use crate::recursive::py_strip;
use crate::split_in_parallel;

/// Splits markdown at headers and records, in each section's metadata, the headers it sits under
/// (`{"Header 1": "Guide", "Header 2": "Install"}`): LangChain's `MarkdownHeaderTextSplitter`, with
/// its semantics kept (lines inside ``` or ~~~ fences are never headers; headers are stripped from
/// the content unless asked otherwise; consecutive lines under the same headers are joined with
/// `"  \n"`; lines are stripped and non-printable characters dropped, as LangChain does).
///
/// Sections can be long: pipe them into a [`RecursiveCharacterSplitter`](crate::RecursiveCharacterSplitter)
/// to bound their size; the header metadata travels with the chunks.
///
/// ```
/// use catena_core::{Document, Splitter};
/// use catena_splitters::MarkdownHeaderSplitter;
///
/// let md = "# Guide\nWelcome.\n## Install\nRun `make`.\n```sh\n# not a header\n```";
/// let sections = MarkdownHeaderSplitter::new([("#", "Header 1"), ("##", "Header 2")])
///     .split_documents(&[Document::new(md)])?;
/// assert_eq!(sections[0].content, "Welcome.");
/// assert_eq!(sections[1].content, "Run `make`.\n```sh\n# not a header\n```");
/// assert_eq!(sections[1].metadata["Header 2"], "Install");
/// assert_eq!(sections[1].metadata["Header 1"], "Guide");
/// # Ok::<(), catena_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct MarkdownHeaderSplitter {
    /// (marker, metadata key), longest marker first.
    headers: Vec<(String, String)>,
    /// Custom markers (`**` for `**Title**` lines) and the level they stand for.
    custom: Vec<(String, usize)>,
    return_each_line: bool,
    strip_headers: bool,
}

impl Default for MarkdownHeaderSplitter {
    /// All six ATX levels, keyed `"Header 1"` to `"Header 6"`.
    fn default() -> Self {
        Self::new((1..=6).map(|n| ("#".repeat(n), format!("Header {n}"))))
    }
}

struct Header {
    level: usize,
    name: String,
}

struct Line {
    content: String,
    metadata: Metadata,
}

impl MarkdownHeaderSplitter {
    /// Splits on these header markers (`"#"`, `"##"`, ...), each recorded under its metadata key.
    pub fn new<M: Into<String>, K: Into<String>>(headers: impl IntoIterator<Item = (M, K)>) -> Self {
        let mut headers: Vec<(String, String)> =
            headers.into_iter().map(|(m, k)| (m.into(), k.into())).collect();
        // Longest marker first, so "##" is not taken for "#" (a stable sort, as Python's).
        headers.sort_by_key(|h| std::cmp::Reverse(h.0.chars().count()));
        Self { headers, custom: Vec::new(), return_each_line: false, strip_headers: true }
    }

    /// Treats lines wrapped in `marker` (e.g. `**Title**`) as headers of `level`. The marker must
    /// also be one of the header markers given to [`new`](Self::new).
    #[must_use]
    pub fn with_custom_header(mut self, marker: impl Into<String>, level: usize) -> Self {
        self.custom.push((marker.into(), level));
        self
    }

    /// One section per line instead of per run of lines under the same headers.
    #[must_use]
    pub fn with_return_each_line(mut self, each: bool) -> Self {
        self.return_each_line = each;
        self
    }

    /// Whether header lines are removed from the content (default true).
    #[must_use]
    pub fn with_strip_headers(mut self, strip: bool) -> Self {
        self.strip_headers = strip;
        self
    }

    fn custom_level(&self, marker: &str) -> Option<usize> {
        self.custom.iter().find(|(m, _)| m == marker).map(|(_, level)| *level)
    }

    /// `**Title**`: the marker once at each end, the inside not starting or ending with it, and
    /// something other than marker characters inside.
    fn custom_header_text<'l>(&self, line: &'l str, marker: &str) -> Option<&'l str> {
        self.custom_level(marker)?;
        let inner = line.strip_prefix(marker)?.strip_suffix(marker)?;
        if inner.is_empty() || inner.starts_with(marker) || inner.ends_with(marker) {
            return None;
        }
        let text = py_strip(inner);
        let only_marker = text.chars().filter(|c| *c != ' ').all(|c| marker.contains(c));
        (!text.is_empty() && !only_marker).then_some(text)
    }

    /// The sections of `text` with their header metadata.
    pub fn split_sections(&self, text: &str) -> Vec<(String, Metadata)> {
        let mut lines: Vec<Line> = Vec::new();
        let mut current: Vec<String> = Vec::new();
        let mut current_metadata = Metadata::new();
        let mut stack: Vec<Header> = Vec::new();
        let mut initial_metadata = Metadata::new();
        let mut fence: Option<&str> = None;

        let flush = |current: &mut Vec<String>, metadata: &Metadata, lines: &mut Vec<Line>| {
            if !current.is_empty() {
                lines.push(Line { content: current.join("\n"), metadata: metadata.clone() });
                current.clear();
            }
        };

        for raw in text.split('\n') {
            let line: String = py_strip(raw).chars().filter(|&c| py_is_printable(c)).collect();
            match fence {
                None if line.starts_with("```") && line.matches("```").count() == 1 => fence = Some("```"),
                None if line.starts_with("~~~") => fence = Some("~~~"),
                Some(open) if line.starts_with(open) => fence = None,
                _ => {}
            }
            if fence.is_some() {
                current.push(line);
                continue;
            }
            let mut matched = false;
            for (marker, name) in &self.headers {
                let standard = line
                    .strip_prefix(marker.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '));
                let custom = if standard { None } else { self.custom_header_text(&line, marker) };
                if !standard && custom.is_none() {
                    continue;
                }
                let level = self.custom_level(marker).unwrap_or_else(|| marker.matches('#').count());
                while stack.last().is_some_and(|h| h.level >= level) {
                    if let Some(popped) = stack.pop() {
                        initial_metadata.remove(&popped.name);
                    }
                }
                let header_text = match custom {
                    Some(text) => text,
                    None => py_strip(line.get(marker.len()..).unwrap_or_default()),
                };
                initial_metadata.insert(name.clone(), Value::String(header_text.to_owned()));
                stack.push(Header { level, name: name.clone() });
                flush(&mut current, &current_metadata, &mut lines);
                if !self.strip_headers {
                    current.push(line.clone());
                }
                matched = true;
                break;
            }
            if !matched {
                if !line.is_empty() {
                    current.push(line);
                } else {
                    flush(&mut current, &current_metadata, &mut lines);
                }
            }
            current_metadata = initial_metadata.clone();
        }
        flush(&mut current, &current_metadata, &mut lines);
        if self.return_each_line {
            return lines.into_iter().map(|l| (l.content, l.metadata)).collect();
        }
        self.aggregate(lines)
    }

    /// Joins consecutive lines under the same headers (LangChain's `aggregate_lines_to_chunks`).
    fn aggregate(&self, lines: Vec<Line>) -> Vec<(String, Metadata)> {
        let mut out: Vec<Line> = Vec::new();
        for line in lines {
            match out.last_mut() {
                Some(last) if last.metadata == line.metadata => {
                    last.content.push_str("  \n");
                    last.content.push_str(&line.content);
                }
                // A kept header line followed by its deeper content becomes one section.
                Some(last)
                    if !self.strip_headers
                        && last.metadata.len() < line.metadata.len()
                        && last.content.rsplit('\n').next().is_some_and(|l| l.starts_with('#')) =>
                {
                    last.content.push_str("  \n");
                    last.content.push_str(&line.content);
                    last.metadata = line.metadata;
                }
                _ => out.push(line),
            }
        }
        out.into_iter().map(|l| (l.content, l.metadata)).collect()
    }
}

impl Splitter for MarkdownHeaderSplitter {
    fn split_text(&self, text: &str) -> Result<Vec<String>> {
        Ok(self.split_sections(text).into_iter().map(|(content, _)| content).collect())
    }

    /// Sections carry their document's metadata plus their headers.
    fn split_documents(&self, documents: &[Document]) -> Result<Vec<Document>> {
        split_in_parallel(documents, |document| {
            Ok(self
                .split_sections(&document.content)
                .into_iter()
                .map(|(content, headers)| {
                    let mut metadata = document.metadata.clone();
                    metadata.extend(headers);
                    Document { id: None, content, metadata }
                })
                .collect())
        })
    }
}

/// Python's `str.isprintable` for one character: false for controls, format characters,
/// surrogates, private use, and separators other than the ASCII space.
fn py_is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = u32::from(c);
    let format = matches!(u,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F);
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let noncharacter = (u & 0xFFFE) == 0xFFFE || (0xFDD0..=0xFDEF).contains(&u);
    !(format || private || noncharacter)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn headers_nest_and_reset() {
        let md = "# A\none\n## B\ntwo\n# C\nthree";
        let s = MarkdownHeaderSplitter::default().split_sections(md);
        assert_eq!(s.len(), 3);
        assert_eq!(s[1].1.get("Header 1").unwrap(), "A");
        assert_eq!(s[1].1.get("Header 2").unwrap(), "B");
        assert_eq!(s[2].1.get("Header 1").unwrap(), "C");
        assert!(s[2].1.get("Header 2").is_none(), "a new level-1 header drops the level-2 one");
    }

    #[test]
    fn printable_follows_python() {
        assert!(py_is_printable('a') && py_is_printable(' ') && py_is_printable('東'));
        assert!(!py_is_printable('\u{200d}') && !py_is_printable('\u{a0}') && !py_is_printable('\t'));
    }
}
