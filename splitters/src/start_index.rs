//! `start_index`: where each chunk starts in its document, found the way LangChain finds it.

use catena_core::Document;
use memchr::memmem;

/// Chunks of `document` as Documents carrying its metadata and, when `add` is set, `start_index`:
/// the chunk's offset in characters, searched from where the previous chunk's overlap begins
/// (LangChain's `create_documents`); -1 when the chunk is not found from there, as in LangChain.
pub(crate) fn with_start_indices(
    document: &Document,
    texts: Vec<String>,
    add: bool,
    overlap: usize,
) -> Vec<Document> {
    let mut finder = CharFinder::new(&document.content);
    // Signed, as in LangChain: a chunk not found (after whitespace stripping or with the separator
    // dropped) gets -1, and the next search starts from there.
    let mut index: i64 = 0;
    let mut previous_len: i64 = 0;
    let overlap = i64::try_from(overlap).unwrap_or(i64::MAX);
    let mut chunks = Vec::with_capacity(texts.len());
    for text in texts {
        let mut metadata = document.metadata.clone();
        if add {
            let offset = usize::try_from((index + previous_len - overlap).max(0)).unwrap_or(0);
            index = finder.find(&text, offset).and_then(|i| i64::try_from(i).ok()).unwrap_or(-1);
            metadata.insert("start_index".into(), index.into());
            previous_len = i64::try_from(text.chars().count()).unwrap_or(i64::MAX);
        }
        chunks.push(Document { id: None, content: text, metadata });
    }
    chunks
}

/// Python's `str.find(sub, start)` in code points, for searches that mostly move forward: it keeps
/// a cursor, so finding every chunk of a document costs time linear in its length.
struct CharFinder<'t> {
    text: &'t str,
    ascii: bool,
    cursor_char: usize,
    cursor_byte: usize,
}

impl<'t> CharFinder<'t> {
    fn new(text: &'t str) -> Self {
        Self { text, ascii: text.is_ascii(), cursor_char: 0, cursor_byte: 0 }
    }

    fn byte_of(&mut self, char_index: usize) -> usize {
        if self.ascii {
            return char_index.min(self.text.len());
        }
        if char_index < self.cursor_char {
            (self.cursor_char, self.cursor_byte) = (0, 0);
        }
        let n = char_index - self.cursor_char;
        let rest = self.text.get(self.cursor_byte..).unwrap_or_default();
        match rest.char_indices().nth(n) {
            Some((i, _)) => {
                self.cursor_char = char_index;
                self.cursor_byte += i;
            }
            None => {
                self.cursor_char += rest.chars().count();
                self.cursor_byte = self.text.len();
            }
        }
        self.cursor_byte
    }

    fn find(&mut self, needle: &str, start_char: usize) -> Option<usize> {
        let from = self.byte_of(start_char);
        let found = from + memmem::find(self.text.get(from..)?.as_bytes(), needle.as_bytes())?;
        if self.ascii {
            return Some(found);
        }
        self.cursor_char += self.text.get(self.cursor_byte..found).map_or(0, |s| s.chars().count());
        self.cursor_byte = found;
        Some(self.cursor_char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_finder_moves_both_ways() {
        let mut f = CharFinder::new("aé aé aé");
        assert_eq!(f.find("aé", 4), Some(6));
        assert_eq!(f.find("aé", 0), Some(0));
        assert_eq!(f.find("aé", 9), None);
    }
}
