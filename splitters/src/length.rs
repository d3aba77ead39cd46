//! [`LengthFunction`]: how chunk sizes are measured.

use std::fmt;
use std::sync::Arc;

use catena_core::{Result, Tokenizer};

/// How a splitter measures a piece of text against `chunk_size` and `chunk_overlap`.
///
/// The default counts Unicode code points, as Python's `len` does, so sizes mean what they mean in
/// LangChain. Count bytes when a store limits bytes, and model tokens when the embedding model's
/// context is what must not overflow.
#[derive(Clone, Default)]
pub enum LengthFunction {
    /// Unicode code points (LangChain's default `len`).
    #[default]
    Chars,
    /// UTF-8 bytes.
    Bytes,
    /// Tokens of a model's tokenizer.
    Tokens(Arc<dyn Tokenizer>),
    /// Any other measure.
    Custom(Arc<dyn Fn(&str) -> usize + Send + Sync>),
}

impl LengthFunction {
    /// A custom measure, e.g. words: `LengthFunction::custom(|s| s.split_whitespace().count())`.
    pub fn custom(f: impl Fn(&str) -> usize + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(f))
    }

    /// The length of `text`; `ascii` says the caller knows `text` is ASCII (then chars = bytes).
    pub(crate) fn measure(&self, text: &str, ascii: bool) -> Result<usize> {
        Ok(match self {
            Self::Chars if ascii => text.len(),
            Self::Chars => text.chars().count(),
            Self::Bytes => text.len(),
            Self::Tokens(tokenizer) => tokenizer.count(text)?,
            Self::Custom(f) => f(text),
        })
    }

    /// True when every character has length one under this measure for this text, which lets
    /// character-level splitting work on windows instead of one piece per character.
    pub(crate) fn one_per_char(&self, ascii: bool) -> bool {
        matches!(self, Self::Chars) || (ascii && matches!(self, Self::Bytes))
    }
}

impl fmt::Debug for LengthFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Chars => "Chars",
            Self::Bytes => "Bytes",
            Self::Tokens(_) => "Tokens(..)",
            Self::Custom(_) => "Custom(..)",
        })
    }
}
