//! [`RecursiveCharacterSplitter`]: LangChain's recursive character splitting, chunk for chunk.

use catena_core::{Document, Error, Result, Splitter};

use crate::language::Language;
use crate::length::LengthFunction;
use crate::separator::{KeepSeparator, Separator};
use crate::{split_in_parallel, with_start_indices};

/// Splits on the first separator (of `["\n\n", "\n", " ", ""]` by default) that occurs in the
/// text, merges the pieces into chunks of at most `chunk_size` with up to `chunk_overlap` of
/// overlap, and recurses with the next separators into pieces that are still too long.
///
/// This is LangChain's `RecursiveCharacterTextSplitter` (langchain-text-splitters 1.1.3), and it
/// gives the same chunks and `start_index` values for the same settings on any input: lengths are
/// Unicode code points by default (Python's `len`), whitespace stripping uses Python's notion of
/// whitespace, and separators that are regular expressions (see
/// [`with_regex_separators`](Self::with_regex_separators) and [`from_language`](Self::from_language))
/// follow Python's `re` where the two dialects differ in ways the presets use (`$`).
///
/// It works on byte ranges of the input and copies each chunk once, so it runs one to two orders
/// of magnitude faster than LangChain (figures in `docs/benchmarks.md`).
///
/// ```
/// use catena_core::Splitter;
/// use catena_splitters::{Language, RecursiveCharacterSplitter};
///
/// let code = "fn main() {\n    run();\n}\n\nfn run() {\n    println!(\"hi\");\n}\n";
/// let splitter = RecursiveCharacterSplitter::from_language(Language::Rust, 40, 0)?;
/// let chunks = splitter.split_text(code)?;
/// assert_eq!(chunks, ["fn main() {\n    run();\n}", "fn run() {\n    println!(\"hi\");\n}"]);
/// # Ok::<(), catena_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RecursiveCharacterSplitter {
    chunk_size: usize,
    chunk_overlap: usize,
    separators: Vec<Separator>,
    keep_separator: KeepSeparator,
    strip_whitespace: bool,
    add_start_index: bool,
    length: LengthFunction,
}

const DEFAULT_SEPARATORS: [&str; 4] = ["\n\n", "\n", " ", ""];

impl Default for RecursiveCharacterSplitter {
    /// LangChain's defaults: 4000 characters, 200 of overlap.
    fn default() -> Self {
        Self {
            chunk_size: 4000,
            chunk_overlap: 200,
            separators: DEFAULT_SEPARATORS.map(Separator::literal).to_vec(),
            keep_separator: KeepSeparator::Start,
            strip_whitespace: true,
            add_start_index: false,
            length: LengthFunction::Chars,
        }
    }
}

/// A piece of the text being split: its byte range and its length under the length function.
#[derive(Debug, Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    len: usize,
}

impl RecursiveCharacterSplitter {
    /// A splitter with this chunk size and overlap. The overlap must not exceed the size, and the
    /// size must be positive: anything else is an [`Error::InvalidInput`] now, not a surprise later.
    pub fn new(chunk_size: usize, chunk_overlap: usize) -> Result<Self> {
        check_sizes(chunk_size, chunk_overlap)?;
        Ok(Self { chunk_size, chunk_overlap, ..Self::default() })
    }

    /// A splitter with the separators of `language` (regular expressions, as in LangChain's
    /// `from_language`).
    pub fn from_language(language: Language, chunk_size: usize, chunk_overlap: usize) -> Result<Self> {
        Self::new(chunk_size, chunk_overlap)?.with_regex_separators(language.separators())
    }

    /// Uses these literal separators, most preferred first (`""` splits between characters).
    /// An empty list means the default separators, as in LangChain.
    #[must_use]
    pub fn with_separators<S: AsRef<str>>(mut self, separators: impl IntoIterator<Item = S>) -> Self {
        let separators: Vec<Separator> =
            separators.into_iter().map(|s| Separator::literal(s.as_ref())).collect();
        self.separators = if separators.is_empty() { Self::default().separators } else { separators };
        self
    }

    /// Uses these regular-expression separators (LangChain's `is_separator_regex=True`). A
    /// pattern that does not compile is an [`Error::InvalidInput`] naming it. When separators are
    /// dropped ([`KeepSeparator::None`]) the pattern's own text joins pieces, as in LangChain.
    pub fn with_regex_separators<S: AsRef<str>>(
        mut self,
        patterns: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let separators =
            patterns.into_iter().map(|p| Separator::regex(p.as_ref())).collect::<Result<Vec<_>>>()?;
        self.separators = if separators.is_empty() { Self::default().separators } else { separators };
        Ok(self)
    }

    /// Where separators go (default: at the start of the following piece).
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

    /// How lengths are measured (default: Unicode code points).
    #[must_use]
    pub fn with_length(mut self, length: LengthFunction) -> Self {
        self.length = length;
        self
    }

    /// The maximum chunk length.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// The overlap between consecutive chunks.
    pub fn chunk_overlap(&self) -> usize {
        self.chunk_overlap
    }

    fn split_recursive(
        &self,
        text: &str,
        separators: &[Separator],
        ascii: bool,
        out: &mut Vec<String>,
    ) -> Result<()> {
        // The first separator that occurs in the text ("" always does); the ones after it are
        // for pieces that are still too long.
        let mut chosen = separators.last();
        let mut rest: &[Separator] = &[];
        for (i, separator) in separators.iter().enumerate() {
            if separator.is_chars() {
                chosen = Some(separator);
                break;
            }
            if separator.occurs_in(text)? {
                chosen = Some(separator);
                rest = separators.get(i + 1..).unwrap_or_default();
                break;
            }
        }
        let Some(separator) = chosen else { return Ok(()) };
        if separator.is_chars() && self.chunk_size > 1 && self.length.one_per_char(ascii) {
            self.char_windows(text, ascii, out);
            return Ok(());
        }

        let (joiner, gap) = match self.keep_separator {
            KeepSeparator::None => (separator.text.as_str(), separator.literal_len()),
            KeepSeparator::Start | KeepSeparator::End => ("", Some(0)),
        };
        let joiner_len = self.length.measure(joiner, joiner.is_ascii())?;
        let mut good: Vec<Piece> = Vec::new();
        separator.for_each_piece(text, self.keep_separator, |start, end| {
            let piece = text.get(start..end).unwrap_or_default();
            let len = self.length.measure(piece, ascii)?;
            if len < self.chunk_size {
                good.push(Piece { start, end, len });
                return Ok(());
            }
            if !good.is_empty() {
                self.merge(text, &good, joiner, joiner_len, gap, out);
                good.clear();
            }
            if rest.is_empty() {
                out.push(piece.to_owned());
                Ok(())
            } else {
                self.split_recursive(piece, rest, ascii, out)
            }
        })?;
        if !good.is_empty() {
            self.merge(text, &good, joiner, joiner_len, gap, out);
        }
        Ok(())
    }

    /// LangChain's `_merge_splits`: greedily fills a chunk with pieces, then drops pieces from its
    /// front until at most `chunk_overlap` remains (and the next piece fits) before continuing.
    /// The chunk being built is always the run `pieces[first..i]`.
    fn merge(
        &self,
        text: &str,
        pieces: &[Piece],
        joiner: &str,
        joiner_len: usize,
        gap: Option<usize>,
        out: &mut Vec<String>,
    ) {
        let mut first = 0;
        let mut total = 0usize;
        for (i, piece) in pieces.iter().enumerate() {
            let sep = |first: usize| if i > first { joiner_len } else { 0 };
            if total + piece.len + sep(first) > self.chunk_size && i > first {
                if total > self.chunk_size {
                    tracing::debug!(
                        total,
                        chunk_size = self.chunk_size,
                        "created a chunk longer than chunk_size"
                    );
                }
                self.emit(text, pieces.get(first..i).unwrap_or_default(), joiner, gap, out);
                while first < i
                    && (total > self.chunk_overlap
                        || (total + piece.len + sep(first) > self.chunk_size && total > 0))
                {
                    let dropped = pieces.get(first).map_or(0, |p| p.len);
                    total = total.saturating_sub(dropped + if i - first > 1 { joiner_len } else { 0 });
                    first += 1;
                }
            }
            total += piece.len + sep(first);
        }
        self.emit(text, pieces.get(first..).unwrap_or_default(), joiner, gap, out);
    }

    /// Joins a run of pieces into a chunk. Pieces that lie side by side in the text (separated by
    /// exactly the joiner) are one slice of it, so the chunk is copied once and never assembled.
    fn emit(&self, text: &str, pieces: &[Piece], joiner: &str, gap: Option<usize>, out: &mut Vec<String>) {
        let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else { return };
        let side_by_side = gap
            .is_some_and(|gap| pieces.iter().zip(pieces.iter().skip(1)).all(|(a, b)| b.start == a.end + gap));
        let assembled;
        let joined = if side_by_side {
            text.get(first.start..last.end).unwrap_or_default()
        } else {
            assembled = pieces
                .iter()
                .map(|p| text.get(p.start..p.end).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(joiner);
            assembled.as_str()
        };
        self.push_chunk(joined, out);
    }

    fn push_chunk(&self, chunk: &str, out: &mut Vec<String>) {
        let chunk = if self.strip_whitespace { py_strip(chunk) } else { chunk };
        if !chunk.is_empty() {
            out.push(chunk.to_owned());
        }
    }

    /// Character-level splitting when every character has length one: merging one-character
    /// pieces always yields windows of `chunk_size` characters that advance by
    /// `chunk_size - min(chunk_overlap, chunk_size - 1)`, so the windows are cut directly.
    fn char_windows(&self, text: &str, ascii: bool, out: &mut Vec<String>) {
        let size = self.chunk_size;
        let step = size - self.chunk_overlap.min(size - 1);
        let count = if ascii { text.len() } else { text.chars().count() };
        if count == 0 {
            return;
        }
        // Byte offsets of the window's first character and of the one just past it.
        let advance = |from: usize, n: usize| -> usize {
            if ascii {
                (from + n).min(text.len())
            } else {
                text.get(from..).and_then(|t| t.char_indices().nth(n)).map_or(text.len(), |(i, _)| from + i)
            }
        };
        let (mut start_char, mut start, mut end) = (0, 0, advance(0, size));
        while start_char + size < count {
            self.push_chunk(text.get(start..end).unwrap_or_default(), out);
            start_char += step;
            start = advance(start, step);
            end = advance(end, step);
        }
        self.push_chunk(text.get(start..).unwrap_or_default(), out);
    }
}

pub(crate) fn check_sizes(chunk_size: usize, chunk_overlap: usize) -> Result<()> {
    if chunk_size == 0 {
        return Err(Error::invalid_input("chunk_size must be at least 1"));
    }
    if chunk_overlap > chunk_size {
        return Err(Error::invalid_input(format!(
            "chunk_overlap ({chunk_overlap}) is larger than chunk_size ({chunk_size}); it must not be"
        )));
    }
    Ok(())
}

impl Splitter for RecursiveCharacterSplitter {
    fn split_text(&self, text: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.split_recursive(text, &self.separators, text.is_ascii(), &mut out)?;
        Ok(out)
    }

    /// Chunks carry their document's metadata and, with [`with_start_index`](Self::with_start_index),
    /// `start_index`: where the chunk starts in the document, in characters, found the way
    /// LangChain finds it (searching from where the previous chunk's overlap begins); -1 when the
    /// chunk is not found from there, as in LangChain. Documents are split in parallel.
    fn split_documents(&self, documents: &[Document]) -> Result<Vec<Document>> {
        split_in_parallel(documents, |d| {
            Ok(with_start_indices(d, self.split_text(&d.content)?, self.add_start_index, self.chunk_overlap))
        })
    }
}

/// Python's notion of whitespace for `str.strip()`: Unicode White_Space plus the information
/// separators U+001C..U+001F.
pub(crate) fn py_is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(py_is_space)
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

    #[test]
    fn byte_and_custom_lengths() {
        let bytes = RecursiveCharacterSplitter::new(4, 0).unwrap().with_length(LengthFunction::Bytes);
        // " éé" is 5 bytes, so it is split into characters, and " " + "é" + "é" overflows.
        assert_eq!(bytes.split_text("éé éé").unwrap(), ["éé", "é", "é"]);
        let words = RecursiveCharacterSplitter::new(3, 0)
            .unwrap()
            .with_length(LengthFunction::custom(|s| s.split_whitespace().count()));
        assert_eq!(words.split_text("a b c d e f").unwrap(), ["a b c", "d e f"]);
    }
}
