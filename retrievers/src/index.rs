//! [`index_documents`]: embed and store documents, with ids that do not change between runs.

use catena_core::{Document, Embedded, Embedder, Error, Result, RunContext, VectorStore};
use sha2::{Digest, Sha256};

/// A stable id for a document: its existing id, else a hash of its `source` and content, so
/// re-indexing the same chunk replaces it instead of adding a copy.
#[must_use]
pub fn document_id(document: &Document) -> String {
    if let Some(id) = &document.id {
        return id.clone();
    }
    let mut h = Sha256::new();
    h.update(document.source().unwrap_or("").as_bytes());
    h.update([0u8]);
    h.update(document.content.as_bytes());
    if let Some(start) = document.metadata.get("start_index") {
        h.update(start.to_string().as_bytes());
    }
    hex::encode(h.finalize().get(..16).unwrap_or_default())
}

/// Embeds `documents` in batches of `batch_size` and upserts them into `store`; returns their ids.
/// Documents with no text are skipped (they cannot be embedded meaningfully); the error for an
/// empty input list is [`Error::InvalidInput`].
pub async fn index_documents(
    documents: &[Document],
    embedder: &dyn Embedder,
    store: &dyn VectorStore,
    batch_size: usize,
    ctx: &RunContext,
) -> Result<Vec<String>> {
    if documents.is_empty() {
        return Err(Error::invalid_input("there are no documents to index"));
    }
    let mut ids = Vec::with_capacity(documents.len());
    let kept: Vec<&Document> = documents.iter().filter(|d| !d.content.trim().is_empty()).collect();
    let total = kept.len() as u64;
    for batch in kept.chunks(batch_size.max(1)) {
        ctx.check_cancelled()?;
        let texts: Vec<String> = batch.iter().map(|d| d.content.clone()).collect();
        let vectors = embedder.embed(&texts, ctx).await?;
        if vectors.len() != batch.len() {
            return Err(Error::model_permanent(format!(
                "the embedder returned {} vectors for {} texts",
                vectors.len(),
                batch.len()
            )));
        }
        let records = batch
            .iter()
            .zip(vectors)
            .map(|(d, vector)| {
                let mut document = (*d).clone();
                document.id = Some(document_id(d));
                Embedded { document, vector }
            })
            .collect();
        ids.extend(store.upsert(records).await?);
        ctx.emit(catena_core::Event::Progress {
            task: "index".into(),
            done: ids.len() as u64,
            total: Some(total),
        });
    }
    Ok(ids)
}
