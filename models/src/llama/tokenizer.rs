//! [`LlamaTokenizer`]: a GGUF model's own tokenizer, without its weights.

use std::path::Path;
use std::sync::Arc;

use catena_core::{Error, Result, Tokenizer};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::{LlamaOptions, backend, off_runtime};

/// The tokenizer of a GGUF model, loaded from the file's vocabulary alone (no weights, so it loads
/// in milliseconds and takes a few MB). Use it to size chunks in the tokens of the model that will
/// embed or read them: [`TokenSplitter`](https://docs.rs/catena-splitters) and token lengths.
///
/// ```no_run
/// use catena_core::Tokenizer;
/// use catena_models::LlamaTokenizer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> catena_core::Result<()> {
/// let tokenizer = LlamaTokenizer::load_default_embed().await?;
/// let ids = tokenizer.encode("Chunks sized in model tokens.")?;
/// assert_eq!(tokenizer.decode(&ids)?.trim(), "chunks sized in model tokens.");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LlamaTokenizer {
    model: Arc<LlamaModel>,
}

impl std::fmt::Debug for LlamaTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaTokenizer").field("n_vocab", &self.model.n_vocab()).finish()
    }
}

impl LlamaTokenizer {
    /// The tokenizer of a GGUF file.
    pub fn load_blocking(path: &Path) -> Result<Self> {
        crate::files::check_gguf(path)?;
        let params = LlamaOptions::default().model_params().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend()?, path, &params).map_err(|e| {
            Error::model_permanent(format!(
                "llama.cpp could not read the vocabulary of {} ({e})",
                path.display()
            ))
        })?;
        Ok(Self { model: Arc::new(model) })
    }

    /// The tokenizer of a GGUF file, loaded off the async runtime.
    pub async fn load(path: &Path) -> Result<Self> {
        let path = path.to_path_buf();
        off_runtime(move || Self::load_blocking(&path)).await
    }

    /// The default embedding model's tokenizer (all-MiniLM-L6-v2's WordPiece), fetching the model
    /// first if needed.
    pub async fn load_default_embed() -> Result<Self> {
        let path = off_runtime(|| crate::files::resolve(crate::files::EMBED.name)).await?;
        Self::load(&path).await
    }

    /// The default chat model's tokenizer (SmolLM2's BPE), fetching the model first if needed.
    pub async fn load_default_chat() -> Result<Self> {
        let path = off_runtime(|| crate::files::resolve(crate::files::CHAT.name)).await?;
        Self::load(&path).await
    }
}

impl Tokenizer for LlamaTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if i32::try_from(text.len()).is_err() {
            return Err(Error::invalid_input("text longer than 2 GiB cannot be tokenized in one piece"));
        }
        let tokens = self.model.vocab().tokenize(text.as_bytes(), false, false);
        Ok(tokens.into_iter().map(|t| t.0.cast_unsigned()).collect())
    }

    fn decode(&self, tokens: &[u32]) -> Result<String> {
        let n_vocab = self.model.n_vocab().cast_unsigned();
        if let Some(bad) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(Error::invalid_input(format!(
                "token id {bad} is outside the vocabulary ({n_vocab} tokens)"
            )));
        }
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t.cast_signed())).collect();
        let bytes = self.model.vocab().detokenize(&tokens, false, false);
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
