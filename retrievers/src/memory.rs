//! [`InMemoryVectorStore`]: exact search over vectors in memory.

use async_trait::async_trait;
use catena_core::{Document, Embedded, Error, Filter, Result, ScoredDocument, VectorStore};
use tokio::sync::RwLock;

use crate::index::document_id;

/// Keeps documents and their vectors in memory and finds neighbours by exact cosine similarity
/// (a flat scan: right for up to hundreds of thousands of chunks).
///
/// Scores are cosine similarities in `[-1, 1]`. Every vector must have the dimension of the first
/// one stored; a mismatch is an [`Error::InvalidInput`] and nothing of that upsert is written.
#[derive(Debug, Default)]
pub struct InMemoryVectorStore {
    rows: RwLock<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    dimensions: Option<usize>,
    ids: Vec<String>,
    positions: std::collections::HashMap<String, usize>,
    documents: Vec<Document>,
    /// Unit-normalised, so cosine is a dot product.
    vectors: Vec<Vec<f32>>,
}

impl InMemoryVectorStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 { v.iter().map(|x| x / norm).collect() } else { v.to_vec() }
}

fn check_finite(v: &[f32]) -> Result<()> {
    if v.iter().all(|x| x.is_finite()) {
        Ok(())
    } else {
        Err(Error::invalid_input("vector contains NaN or infinity"))
    }
}

#[async_trait]
impl VectorStore for InMemoryVectorStore {
    async fn upsert(&self, records: Vec<Embedded>) -> Result<Vec<String>> {
        let mut guard = self.rows.write().await;
        let rows = &mut *guard;
        // Validate everything before writing anything.
        let mut dims = rows.dimensions;
        for r in &records {
            check_finite(&r.vector)?;
            match dims {
                None if r.vector.is_empty() => {
                    return Err(Error::invalid_input("cannot store an empty vector"));
                }
                None => dims = Some(r.vector.len()),
                Some(d) if d != r.vector.len() => {
                    return Err(Error::invalid_input(format!(
                        "vector has {} dimensions but the store holds {d}-dimensional vectors (was the embedder changed?)",
                        r.vector.len()
                    )));
                }
                Some(_) => {}
            }
        }
        rows.dimensions = dims;
        let mut ids = Vec::with_capacity(records.len());
        for Embedded { mut document, vector } in records {
            let id = document.id.clone().unwrap_or_else(|| document_id(&document));
            document.id = Some(id.clone());
            let vector = unit(&vector);
            if let Some(&at) = rows.positions.get(&id) {
                if let (Some(d), Some(v)) = (rows.documents.get_mut(at), rows.vectors.get_mut(at)) {
                    *d = document;
                    *v = vector;
                }
            } else {
                rows.positions.insert(id.clone(), rows.ids.len());
                rows.ids.push(id.clone());
                rows.documents.push(document);
                rows.vectors.push(vector);
            }
            ids.push(id);
        }
        Ok(ids)
    }

    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>> {
        if k == 0 {
            return Err(Error::invalid_input("k must be at least 1"));
        }
        check_finite(query)?;
        let rows = self.rows.read().await;
        if let Some(d) = rows.dimensions.filter(|d| *d != query.len()) {
            return Err(Error::invalid_input(format!(
                "query vector has {} dimensions but the store holds {d}-dimensional vectors",
                query.len()
            )));
        }
        let q = unit(query);
        let mut scored: Vec<(f32, usize)> = rows
            .vectors
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                filter.is_none_or(|f| rows.documents.get(*i).is_some_and(|d| f.matches(&d.metadata)))
            })
            .map(|(i, v)| (v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        // Highest score first; ties keep insertion order, so results are deterministic.
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(k)
            .filter_map(|(s, i)| rows.documents.get(i).map(|d| ScoredDocument::new(d.clone(), s)))
            .collect())
    }

    async fn delete(&self, ids: &[String]) -> Result<usize> {
        let mut rows = self.rows.write().await;
        let before = rows.ids.len();
        let keep: Vec<bool> = rows.ids.iter().map(|id| !ids.contains(id)).collect();
        let mut it = keep.iter();
        rows.ids.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        rows.documents.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        rows.vectors.retain(|_| *it.next().unwrap_or(&true));
        rows.positions = rows.ids.iter().enumerate().map(|(i, id)| (id.clone(), i)).collect();
        Ok(before - rows.ids.len())
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.rows.read().await.ids.len())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena_core::ErrorKind;

    fn rec(content: &str, v: Vec<f32>) -> Embedded {
        Embedded { document: Document::new(content).with_metadata("len", content.len()), vector: v }
    }

    #[tokio::test]
    async fn search_filter_upsert_delete() {
        let s = InMemoryVectorStore::new();
        let ids = s
            .upsert(vec![rec("a", vec![1.0, 0.0]), rec("bb", vec![0.0, 1.0]), rec("ccc", vec![0.7, 0.7])])
            .await
            .unwrap();
        assert_eq!(s.count().await.unwrap(), 3);
        let hits = s.search(&[1.0, 0.1], 2, None).await.unwrap();
        assert_eq!(hits[0].document.content, "a");
        assert_eq!(hits[1].document.content, "ccc");
        assert!(hits[0].score > 0.99 && hits[0].score <= 1.0 + 1e-6);
        let filtered = s.search(&[1.0, 0.1], 5, Some(&Filter::gte("len", 2))).await.unwrap();
        assert_eq!(filtered.len(), 2);
        assert!(filtered.iter().all(|h| h.document.content.len() >= 2));
        // Same id replaces.
        s.upsert(vec![Embedded {
            document: Document::new("a2").with_id(ids[0].clone()),
            vector: vec![0.0, 1.0],
        }])
        .await
        .unwrap();
        assert_eq!(s.count().await.unwrap(), 3);
        assert_eq!(s.delete(&[ids[1].clone(), "nope".into()]).await.unwrap(), 1);
        assert_eq!(s.count().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn bad_vectors_change_nothing() {
        let s = InMemoryVectorStore::new();
        s.upsert(vec![rec("a", vec![1.0, 0.0])]).await.unwrap();
        let err = s.upsert(vec![rec("b", vec![1.0, 0.0]), rec("c", vec![1.0, 0.0, 0.0])]).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert_eq!(s.count().await.unwrap(), 1, "a failed batch leaves the store as it was");
        assert!(s.upsert(vec![rec("n", vec![f32::NAN, 0.0])]).await.is_err());
        assert!(s.search(&[1.0, 0.0, 0.0], 1, None).await.is_err());
        assert_eq!(s.search(&[1.0, 0.0], 0, None).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
}
