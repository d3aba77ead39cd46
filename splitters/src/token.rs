//! [`TokenSplitter`]: windows of model tokens; [`TiktokenTokenizer`]: OpenAI's BPE encodings.

use std::sync::Arc;

use catena_core::{Document, Error, Result, Splitter, Tokenizer};

use crate::{split_in_parallel, with_start_indices};

/// Cuts a text into windows of `chunk_size` tokens that start `chunk_size - chunk_overlap` tokens
/// apart, decoding each window back to text: LangChain's `TokenTextSplitter`
/// (`split_text_on_tokens`). Chunks never exceed the model's limit, whatever the text looks like;
/// a window boundary can fall inside a word (or a multi-byte character, which decodes to U+FFFD).
///
/// Any [`Tokenizer`] works: [`TiktokenTokenizer`] for OpenAI's encodings, or a GGUF model's own
/// (`catena_models::LlamaTokenizer`).
///
/// ```
/// # #[cfg(feature = "tiktoken")] {
/// use std::sync::Arc;
/// use catena_core::Splitter;
/// use catena_splitters::{TiktokenTokenizer, TokenSplitter};
///
/// let tokenizer = Arc::new(TiktokenTokenizer::new("cl100k_base")?);
/// let splitter = TokenSplitter::new(tokenizer, 4, 1)?;
/// let chunks = splitter.split_text("one two three four five six seven")?;
/// assert_eq!(chunks, ["one two three four", " four five six seven"]);
/// # }
/// # Ok::<(), catena_core::Error>(())
/// ```
#[derive(Clone)]
pub struct TokenSplitter {
    tokenizer: Arc<dyn Tokenizer>,
    chunk_size: usize,
    chunk_overlap: usize,
    add_start_index: bool,
}

impl std::fmt::Debug for TokenSplitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSplitter")
            .field("chunk_size", &self.chunk_size)
            .field("chunk_overlap", &self.chunk_overlap)
            .finish_non_exhaustive()
    }
}

impl TokenSplitter {
    /// Windows of `chunk_size` tokens overlapping by `chunk_overlap`; the overlap must be smaller
    /// than the size (LangChain raises the same complaint, but only when it first splits).
    pub fn new(tokenizer: Arc<dyn Tokenizer>, chunk_size: usize, chunk_overlap: usize) -> Result<Self> {
        if chunk_size == 0 || chunk_overlap >= chunk_size {
            return Err(Error::invalid_input(format!(
                "a token splitter needs 0 <= chunk_overlap < chunk_size, got chunk_size {chunk_size} and \
                 chunk_overlap {chunk_overlap}"
            )));
        }
        Ok(Self { tokenizer, chunk_size, chunk_overlap, add_start_index: false })
    }

    /// Whether [`Splitter::split_documents`] records `start_index` (found as LangChain finds it).
    #[must_use]
    pub fn with_start_index(mut self, add: bool) -> Self {
        self.add_start_index = add;
        self
    }
}

impl Splitter for TokenSplitter {
    fn split_text(&self, text: &str) -> Result<Vec<String>> {
        let ids = self.tokenizer.encode(text)?;
        let step = self.chunk_size - self.chunk_overlap;
        let mut chunks = Vec::with_capacity(ids.len() / step + 1);
        let mut start = 0;
        while start < ids.len() {
            let end = (start + self.chunk_size).min(ids.len());
            let decoded = self.tokenizer.decode(ids.get(start..end).unwrap_or_default())?;
            if !decoded.is_empty() {
                chunks.push(decoded);
            }
            if end == ids.len() {
                break;
            }
            start += step;
        }
        Ok(chunks)
    }

    fn split_documents(&self, documents: &[Document]) -> Result<Vec<Document>> {
        split_in_parallel(documents, |d| {
            Ok(with_start_indices(d, self.split_text(&d.content)?, self.add_start_index, self.chunk_overlap))
        })
    }
}

/// One of OpenAI's BPE encodings (tiktoken's), shipped inside the binary: `cl100k_base`,
/// `o200k_base`, `p50k_base`, `p50k_edit`, `r50k_base` (alias `gpt2`), `o200k_harmony`.
#[cfg(feature = "tiktoken")]
#[derive(Clone)]
pub struct TiktokenTokenizer {
    bpe: &'static tiktoken_rs::CoreBPE,
    name: String,
}

#[cfg(feature = "tiktoken")]
impl std::fmt::Debug for TiktokenTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokenTokenizer").field("encoding", &self.name).finish()
    }
}

#[cfg(feature = "tiktoken")]
impl TiktokenTokenizer {
    /// The encoding with this name.
    pub fn new(encoding: &str) -> Result<Self> {
        use tiktoken_rs::tokenizer::Tokenizer as T;
        let which = match encoding {
            "cl100k_base" => T::Cl100kBase,
            "o200k_base" => T::O200kBase,
            "o200k_harmony" => T::O200kHarmony,
            "p50k_base" => T::P50kBase,
            "p50k_edit" => T::P50kEdit,
            "r50k_base" => T::R50kBase,
            "gpt2" => T::Gpt2,
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown tiktoken encoding {other:?}; use cl100k_base, o200k_base, o200k_harmony, \
                     p50k_base, p50k_edit, r50k_base or gpt2"
                )));
            }
        };
        Self::from(which, encoding)
    }

    /// The encoding an OpenAI model uses (`gpt-4o` -> `o200k_base`, `gpt-4` -> `cl100k_base`).
    pub fn for_model(model: &str) -> Result<Self> {
        let which = tiktoken_rs::tokenizer::get_tokenizer(model)
            .ok_or_else(|| Error::invalid_input(format!("tiktoken does not know the model {model:?}")))?;
        Self::from(which, model)
    }

    fn from(which: tiktoken_rs::tokenizer::Tokenizer, name: &str) -> Result<Self> {
        let bpe = tiktoken_rs::bpe_for_tokenizer(which)
            .map_err(|e| Error::invalid_input(format!("cannot load tiktoken encoding {name}: {e}")))?;
        Ok(Self { bpe, name: name.to_owned() })
    }
}

#[cfg(feature = "tiktoken")]
impl Tokenizer for TiktokenTokenizer {
    /// Special-token text such as `<|endoftext|>` is encoded as ordinary text: documents are data,
    /// and LangChain's default (raising an error on it) would make a document unsplittable.
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.bpe.encode_ordinary(text))
    }

    fn decode(&self, tokens: &[u32]) -> Result<String> {
        let bytes = self
            .bpe
            .decode_bytes(tokens)
            .map_err(|e| Error::invalid_input(format!("cannot decode tokens with {}: {e}", self.name)))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(all(test, feature = "tiktoken"))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn windows_overlap_and_cover_the_text() {
        let tokenizer = Arc::new(TiktokenTokenizer::new("gpt2").unwrap());
        let text = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let chunks = TokenSplitter::new(tokenizer.clone(), 10, 3).unwrap().split_text(&text).unwrap();
        assert!(chunks.iter().all(|c| tokenizer.count(c).unwrap() <= 10));
        // Dropping each chunk's 3 overlapping tokens re-creates the text.
        let mut rebuilt = chunks[0].clone();
        for c in &chunks[1..] {
            let ids = tokenizer.encode(c).unwrap();
            rebuilt.push_str(&tokenizer.decode(&ids[3..]).unwrap());
        }
        assert_eq!(rebuilt, text);
    }

    #[test]
    fn settings_and_names_are_checked() {
        let tokenizer = Arc::new(TiktokenTokenizer::new("cl100k_base").unwrap());
        assert!(TokenSplitter::new(tokenizer.clone(), 5, 5).is_err());
        assert!(TiktokenTokenizer::new("nope").unwrap_err().to_string().contains("cl100k_base"));
        assert_eq!(TiktokenTokenizer::for_model("gpt-4o").unwrap().name, "gpt-4o");
        // Special-token text is data, not a control token.
        assert!(tokenizer.encode("<|endoftext|>").unwrap().len() > 1);
    }

    #[test]
    fn a_window_that_cuts_a_character_decodes_lossily() {
        let tokenizer = Arc::new(TiktokenTokenizer::new("cl100k_base").unwrap());
        let chunks = TokenSplitter::new(tokenizer, 1, 0).unwrap().split_text("🙂").unwrap();
        assert!(chunks.len() > 1 && chunks.iter().all(|c| c.contains('\u{fffd}')), "{chunks:?}");
    }
}
