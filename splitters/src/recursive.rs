//! [`RecursiveCharacterSplitter`]: LangChain's recursive character splitting.

use catena_core::{Document, Error, Result, Splitter};

/// Where a separator goes when text is split on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepSeparator {
    /// At the start of the following piece (LangChain's default, `keep_separator=True`).
    #[default]
    Start,
    /// At the end of the preceding piece.
    End,
    /// Dropped; pieces are joined back with the separator when merged.
    None,
}

/// Splits on the first separator (of `["\n\n", "\n", " ", ""]` by default) that occurs in the
/// text, merges the pieces into chunks of at most `chunk_size` characters with up to
/// `chunk_overlap` characters of overlap, and recurses with the next separators into pieces that
/// are still too long. This is the algorithm of LangChain's `RecursiveCharacterTextSplitter`,
/// with lengths counted in Unicode code points as Python's `len` does.
#[derive(Debug, Clone)]
pub struct RecursiveCharacterSplitter {
    chunk_size: usize,
    chunk_overlap: usize,
    separators: Vec<String>,
    keep_separator: KeepSeparator,
    strip_whitespace: bool,
    add_start_index: bool,
}

impl Default for RecursiveCharacterSplitter {
    /// LangChain's defaults: 4000 characters, 200 of overlap.
    fn default() -> Self {
        Self {
            chunk_size: 4000,
            chunk_overlap: 200,
            separators: ["\n\n", "\n", " ", ""].map(str::to_owned).to_vec(),
            keep_separator: KeepSeparator::Start,
            strip_whitespace: true,
            add_start_index: false,
        }
    }
}

impl RecursiveCharacterSplitter {
    /// A splitter with this chunk size and overlap. The overlap must be smaller than the size, and
    /// the size positive: anything else is an [`Error::InvalidInput`] now, not a surprise later.
    pub fn new(chunk_size: usize, chunk_overlap: usize) -> Result<Self> {
        if chunk_size == 0 {
            return Err(Error::invalid_input("chunk_size must be at least 1"));
        }
        if chunk_overlap > chunk_size {
            return Err(Error::invalid_input(format!(
                "chunk_overlap ({chunk_overlap}) is larger than chunk_size ({chunk_size}); it must be smaller"
            )));
        }
        Ok(Self { chunk_size, chunk_overlap, ..Self::default() })
    }

    /// Uses these separators, most preferred first (`""` splits between characters).
    #[must_use]
    pub fn with_separators<S: Into<String>>(mut self, separators: impl IntoIterator<Item = S>) -> Self {
        self.separators = separators.into_iter().map(Into::into).collect();
        self
    }

    /// Where separators go.
    #[must_use]
    pub fn with_keep_separator(mut self, keep: KeepSeparator) -> Self {
        self.keep_separator = keep;
        self
    }

    /// Whether chunks are stripped of surrounding whitespace (default true).
    #[must_use]
    pub fn with_strip_whitespace(mut self, strip: bool) -> Self {
        self.strip_whitespace = strip;
        self
    }

    /// Whether [`Splitter::split_documents`] records each chunk's `start_index` (in characters).
    #[must_use]
    pub fn with_start_index(mut self, add: bool) -> Self {
        self.add_start_index = add;
        self
    }

    fn split_recursive(&self, text: &str, separators: &[String], out: &mut Vec<String>) {
        // The first separator that occurs in the text; "" always "occurs".
        let mut separator = separators.last().map_or("", String::as_str);
        let mut rest: &[String] = &[];
        for (i, s) in separators.iter().enumerate() {
            if s.is_empty() {
                separator = "";
                break;
            }
            if text.contains(s.as_str()) {
                separator = s;
                rest = separators.get(i + 1..).unwrap_or_default();
                break;
            }
        }
        let splits = split_keeping(text, separator, self.keep_separator);
        let joiner = if self.keep_separator == KeepSeparator::None { separator } else { "" };
        let mut good: Vec<&str> = Vec::new();
        for s in splits {
            if char_len(s) < self.chunk_size {
                good.push(s);
                continue;
            }
            if !good.is_empty() {
                self.merge(&good, joiner, out);
                good.clear();
            }
            if rest.is_empty() {
                out.push(s.to_owned());
            } else {
                self.split_recursive(s, rest, out);
            }
        }
        if !good.is_empty() {
            self.merge(&good, joiner, out);
        }
    }

    /// Merges pieces into chunks of at most `chunk_size`, carrying up to `chunk_overlap` of the
    /// tail of one chunk into the next.
    fn merge(&self, splits: &[&str], separator: &str, out: &mut Vec<String>) {
        let sep_len = char_len(separator);
        let mut current: std::collections::VecDeque<&str> = std::collections::VecDeque::new();
        let mut total = 0usize;
        for &piece in splits {
            let len = char_len(piece);
            let with_sep =
                |current: &std::collections::VecDeque<&str>| if current.is_empty() { 0 } else { sep_len };
            if total + len + with_sep(&current) > self.chunk_size {
                if total > self.chunk_size {
                    tracing::debug!(
                        total,
                        chunk_size = self.chunk_size,
                        "created a chunk longer than chunk_size"
                    );
                }
                if !current.is_empty() {
                    self.push_joined(&current, separator, out);
                    while total > self.chunk_overlap
                        || (total + len + with_sep(&current) > self.chunk_size && total > 0)
                    {
                        let Some(first) = current.pop_front() else { break };
                        total = total
                            .saturating_sub(char_len(first) + if current.is_empty() { 0 } else { sep_len });
                    }
                }
            }
            current.push_back(piece);
            total += len + if current.len() > 1 { sep_len } else { 0 };
        }
        self.push_joined(&current, separator, out);
    }

    fn push_joined(&self, pieces: &std::collections::VecDeque<&str>, separator: &str, out: &mut Vec<String>) {
        let joined = pieces.iter().copied().collect::<Vec<_>>().join(separator);
        let text = if self.strip_whitespace { py_strip(&joined) } else { joined.as_str() };
        if !text.is_empty() {
            out.push(text.to_owned());
        }
    }
}

impl Splitter for RecursiveCharacterSplitter {
    fn split_text(&self, text: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.split_recursive(text, &self.separators, &mut out);
        Ok(out)
    }

    /// Chunks carry their document's metadata and, with [`with_start_index`](Self::with_start_index),
    /// `start_index`: where the chunk starts in the document, in characters, found the way
    /// LangChain finds it (searching from where the previous chunk's overlap begins); -1 when the
    /// chunk is not found from there, as in LangChain.
    fn split_documents(&self, documents: &[Document]) -> Result<Vec<Document>> {
        let mut chunks = Vec::new();
        for document in documents {
            // Signed, as in LangChain: a chunk not found (after whitespace stripping or with the
            // separator dropped) gets -1, and the next search starts from there.
            let mut index: i64 = 0;
            let mut previous_len: i64 = 0;
            for text in self.split_text(&document.content)? {
                let mut metadata = document.metadata.clone();
                if self.add_start_index {
                    let overlap = i64::try_from(self.chunk_overlap).unwrap_or(i64::MAX);
                    let offset = usize::try_from((index + previous_len - overlap).max(0)).unwrap_or(0);
                    index = char_find(&document.content, &text, offset)
                        .and_then(|i| i64::try_from(i).ok())
                        .unwrap_or(-1);
                    metadata.insert("start_index".into(), index.into());
                    previous_len = i64::try_from(char_len(&text)).unwrap_or(i64::MAX);
                }
                chunks.push(Document { id: None, content: text, metadata });
            }
        }
        Ok(chunks)
    }
}

fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Python's `str.find(sub, start)` in code points.
fn char_find(haystack: &str, needle: &str, start_chars: usize) -> Option<usize> {
    let start_byte = haystack.char_indices().nth(start_chars).map_or(haystack.len(), |(b, _)| b);
    let found = haystack.get(start_byte..)?.find(needle)? + start_byte;
    Some(haystack.get(..found).map_or(0, char_len))
}

/// Python's notion of whitespace for `str.strip()`: Unicode White_Space plus the information
/// separators U+001C..U+001F.
fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
}

/// `re.split` on a literal separator, keeping it at the start or end of pieces (or not), with
/// empty pieces dropped; an empty separator splits into characters.
fn split_keeping<'t>(text: &'t str, separator: &str, keep: KeepSeparator) -> Vec<&'t str> {
    if separator.is_empty() {
        return text.char_indices().map(|(i, c)| text.get(i..i + c.len_utf8()).unwrap_or_default()).collect();
    }
    let positions: Vec<usize> = text.match_indices(separator).map(|(i, _)| i).collect();
    let mut pieces = Vec::with_capacity(positions.len() + 1);
    let sep = separator.len();
    match keep {
        KeepSeparator::None => pieces.extend(text.split(separator)),
        KeepSeparator::Start => {
            let mut from = 0;
            for &p in &positions {
                pieces.push(text.get(from..p).unwrap_or_default());
                from = p;
            }
            pieces.push(text.get(from..).unwrap_or_default());
        }
        KeepSeparator::End => {
            let mut from = 0;
            for &p in &positions {
                pieces.push(text.get(from..p + sep).unwrap_or_default());
                from = p + sep;
            }
            pieces.push(text.get(from..).unwrap_or_default());
        }
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn overlap_larger_than_size_is_refused() {
        let err = RecursiveCharacterSplitter::new(10, 20).unwrap_err();
        assert!(err.to_string().contains("chunk_overlap (20)"));
        assert!(RecursiveCharacterSplitter::new(0, 0).is_err());
    }

    // Expected outputs below were produced by langchain-text-splitters' RecursiveCharacterTextSplitter
    // with the same settings (chunk_size=10, chunk_overlap=1, defaults otherwise).
    #[test]
    fn matches_langchain_on_its_documented_example() {
        let text = "Hi.\n\nI'm Harrison.\n\nHow? Are? You?\nOkay then f f f f.\nThis is a weird text to write, but gotta test the splittingggg some how.\n\nBye!\n\n-H.";
        let s = RecursiveCharacterSplitter::new(10, 1).unwrap();
        let got = s.split_text(text).unwrap();
        let want = [
            "Hi.",
            "I'm",
            "Harrison.",
            "How? Are?",
            "You?",
            "Okay then",
            "f f f f.",
            "This is a",
            "weird",
            "text to",
            "write,",
            "but gotta",
            "test the",
            "splitting",
            "gggg",
            "some how.",
            "Bye!",
            "-H.",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn keep_separator_variants() {
        assert_eq!(split_keeping("a,b,,c", ",", KeepSeparator::Start), ["a", ",b", ",", ",c"]);
        assert_eq!(split_keeping("a,b,,c", ",", KeepSeparator::End), ["a,", "b,", ",", "c"]);
        assert_eq!(split_keeping("a,b,,c", ",", KeepSeparator::None), ["a", "b", "c"]);
        assert_eq!(split_keeping("hé", "", KeepSeparator::Start), ["h", "é"]);
    }

    #[test]
    fn start_index_in_code_points() {
        let s = RecursiveCharacterSplitter::new(5, 0).unwrap().with_start_index(true);
        let doc = Document::new("éé aa éé bb");
        let chunks = s.split_documents(&[doc]).unwrap();
        let starts: Vec<_> = chunks.iter().map(|c| c.metadata["start_index"].as_u64().unwrap()).collect();
        // As LangChain: " éé" + " bb" would be 6 characters, so they do not merge.
        assert_eq!(chunks.iter().map(|c| c.content.as_str()).collect::<Vec<_>>(), ["éé aa", "éé", "bb"]);
        assert_eq!(starts, [0, 6, 9]);
    }

    #[test]
    fn python_whitespace_is_stripped() {
        assert_eq!(py_strip("\u{1f} x \u{3000}"), "x");
        let s = RecursiveCharacterSplitter::new(100, 0).unwrap();
        assert!(s.split_text("   \n\n  ").unwrap().is_empty(), "whitespace-only text gives no chunks");
    }
}
