//! [`InMemoryVectorStore`]: exact search over vectors in memory, saved to and loaded from a file.

use std::io::{Read, Write};
use std::path::Path;

use async_trait::async_trait;
use catena_core::{Document, Embedded, Error, Filter, Result, ScoredDocument, VectorStore};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

use crate::index::document_id;
use crate::scan::{self, Scoring};

/// How closeness is measured, and how it becomes a score (higher is closer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Cosine similarity, in `[-1, 1]`: LangChain's relevance score `1 - cosine distance`.
    #[default]
    Cosine,
    /// Raw inner product (for embedders trained for it).
    Dot,
    /// Euclidean distance `d`, scored `1 - d / sqrt(2)` as LangChain does (in `[0, 1]` for unit
    /// vectors, the usual case).
    L2,
}

/// Keeps documents and their vectors in memory and finds neighbours by an exact scan, which is
/// right up to a few hundred thousand chunks (see docs/benchmarks.md for queries per second).
///
/// Vectors live in one contiguous buffer, so the scan is a tight loop the compiler vectorises;
/// large stores are scanned on all cores. Every vector must have the dimension of the first one
/// stored; a mismatch is an [`Error::InvalidInput`] and nothing of that upsert is written.
#[derive(Debug, Default)]
pub struct InMemoryVectorStore {
    rows: RwLock<Rows>,
}

#[derive(Debug, Default)]
struct Rows {
    distance: Distance,
    dimensions: usize,
    positions: std::collections::HashMap<String, usize>,
    documents: Vec<Document>,
    /// Row-major, `dimensions` floats per document; unit-normalised under cosine.
    vectors: Vec<f32>,
}

impl Rows {
    fn vector(&self, row: usize) -> &[f32] {
        let d = self.dimensions;
        self.vectors.get(row * d..(row + 1) * d).unwrap_or_default()
    }

    /// Whether row `i` passes `filter` (every row passes no filter).
    fn matches(&self, filter: Option<&Filter>, i: usize) -> bool {
        filter.is_none_or(|f| self.documents.get(i).is_some_and(|doc| f.matches_document(doc)))
    }

    fn scoring(&self) -> Scoring {
        match self.distance {
            Distance::Cosine | Distance::Dot => Scoring::Dot,
            Distance::L2 => Scoring::L2,
        }
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

/// The first bytes of a saved store.
const MAGIC: &[u8; 10] = b"CATENAVS1\n";

#[derive(Serialize, Deserialize)]
struct Header {
    distance: Distance,
    dimensions: usize,
    documents: Vec<Document>,
}

impl InMemoryVectorStore {
    /// An empty store scoring by cosine similarity.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store scoring by `distance`.
    #[must_use]
    pub fn with_distance(distance: Distance) -> Self {
        Self { rows: RwLock::new(Rows { distance, ..Rows::default() }) }
    }

    /// Writes the store to `path` (documents as JSON, vectors as raw little-endian floats),
    /// atomically: a crash mid-way leaves any previous file intact.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub async fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let rows = self.rows.read().await;
        let header = Header {
            distance: rows.distance,
            dimensions: rows.dimensions,
            documents: rows.documents.clone(),
        };
        let vectors = rows.vectors.clone();
        drop(rows);
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || write_store(&path, &header, &vectors))
            .await
            .map_err(|e| Error::store(format!("saving the store failed: {e}")))?
    }

    /// Reads a store written by [`save`](Self::save).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Store`] when it is not a saved store
    /// or is truncated or corrupt.
    pub async fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let (header, vectors) = tokio::task::spawn_blocking(move || read_store(&path))
            .await
            .map_err(|e| Error::store(format!("loading the store failed: {e}")))??;
        let positions = header
            .documents
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone().unwrap_or_else(|| document_id(d)), i))
            .collect();
        Ok(Self {
            rows: RwLock::new(Rows {
                distance: header.distance,
                dimensions: header.dimensions,
                positions,
                documents: header.documents,
                vectors,
            }),
        })
    }

    /// Rows matching `filter`, scored against `query`, best `k` first (ties: storage order).
    fn top_k(rows: &Rows, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<(f32, usize)> {
        scan::top_k(&rows.vectors, rows.dimensions, query, k, rows.scoring(), &|i| rows.matches(filter, i))
    }

    async fn checked_query(
        &self,
        query: &[f32],
        k: usize,
    ) -> Result<(tokio::sync::RwLockReadGuard<'_, Rows>, Vec<f32>)> {
        if k == 0 {
            return Err(Error::invalid_input("k must be at least 1"));
        }
        let rows = self.rows.read().await;
        let q = Self::prepared(&rows, query).map_err(Error::invalid_input)?;
        Ok((rows, q))
    }

    /// The query as the scan takes it (unit length under cosine), or why it cannot be asked.
    fn prepared(rows: &Rows, query: &[f32]) -> std::result::Result<Vec<f32>, String> {
        if !query.iter().all(|x| x.is_finite()) {
            return Err("the query vector contains NaN or infinity".to_owned());
        }
        if rows.dimensions != 0 && rows.dimensions != query.len() {
            return Err(format!(
                "the query vector has {} dimensions but the store holds {}-dimensional vectors (was the embedder changed?)",
                query.len(),
                rows.dimensions
            ));
        }
        Ok(if rows.distance == Distance::Cosine { unit(query) } else { query.to_vec() })
    }
}

fn write_store(path: &Path, header: &Header, vectors: &[f32]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let json =
        serde_json::to_vec(header).map_err(|e| Error::store(format!("cannot encode the store: {e}")))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(dir, e))?;
    let mut w = std::io::BufWriter::new(file.as_file_mut());
    let io = |e| Error::io(path, e);
    w.write_all(MAGIC).map_err(io)?;
    w.write_all(&(json.len() as u64).to_le_bytes()).map_err(io)?;
    w.write_all(&json).map_err(io)?;
    for x in vectors {
        w.write_all(&x.to_le_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)?;
    drop(w);
    file.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

fn read_store(path: &Path) -> Result<(Header, Vec<f32>)> {
    let corrupt =
        |what: &str| Error::store(format!("{} is not a saved catena vector store: {what}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| Error::io(path, e))?;
    let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| corrupt("wrong magic bytes"))?;
    let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(|| corrupt("truncated header"))?;
    let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| corrupt("header length overflows"))?;
    let json = rest.get(..len).ok_or_else(|| corrupt("truncated header"))?;
    let header: Header = serde_json::from_slice(json).map_err(|e| corrupt(&format!("bad header ({e})")))?;
    let raw = rest.get(len..).unwrap_or_default();
    let expected = header.documents.len() * header.dimensions * 4;
    if raw.len() != expected {
        return Err(corrupt(&format!("{} bytes of vectors, expected {expected}", raw.len())));
    }
    let vectors =
        raw.chunks_exact(4).map(|c| f32::from_le_bytes(<[u8; 4]>::try_from(c).unwrap_or_default())).collect();
    Ok((header, vectors))
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
            if r.vector.is_empty() {
                return Err(Error::invalid_input("cannot store an empty vector"));
            }
            if dims == 0 {
                dims = r.vector.len();
            } else if dims != r.vector.len() {
                return Err(Error::invalid_input(format!(
                    "a vector has {} dimensions but the store holds {dims}-dimensional vectors (was the embedder changed?)",
                    r.vector.len()
                )));
            }
        }
        rows.dimensions = dims;
        let mut ids = Vec::with_capacity(records.len());
        for Embedded { mut document, vector } in records {
            let id = document.id.clone().unwrap_or_else(|| document_id(&document));
            document.id = Some(id.clone());
            let vector = if rows.distance == Distance::Cosine { unit(&vector) } else { vector };
            if let Some(&at) = rows.positions.get(&id) {
                if let Some(d) = rows.documents.get_mut(at) {
                    *d = document;
                }
                if let Some(v) = rows.vectors.get_mut(at * dims..(at + 1) * dims) {
                    v.copy_from_slice(&vector);
                }
            } else {
                rows.positions.insert(id.clone(), rows.documents.len());
                rows.documents.push(document);
                rows.vectors.extend_from_slice(&vector);
            }
            ids.push(id);
        }
        Ok(ids)
    }

    async fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Result<Vec<ScoredDocument>> {
        let (rows, q) = self.checked_query(query, k).await?;
        Ok(Self::top_k(&rows, &q, k, filter)
            .into_iter()
            .filter_map(|(s, i)| rows.documents.get(i).map(|d| ScoredDocument::new(d.clone(), s)))
            .collect())
    }

    /// One pass over the stored vectors for the whole batch: blocks of vectors are multiplied
    /// by all queries while they are in cache (see docs/benchmarks.md for queries per second).
    async fn search_batch(
        &self,
        queries: &[Vec<f32>],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<Vec<ScoredDocument>>> {
        if k == 0 {
            return Err(Error::invalid_input("k must be at least 1"));
        }
        let rows = self.rows.read().await;
        let mut flat = Vec::with_capacity(queries.len() * rows.dimensions);
        for (i, query) in queries.iter().enumerate() {
            let q = Self::prepared(&rows, query)
                .map_err(|why| Error::invalid_input(format!("query {} of the batch: {why}", i + 1)))?;
            flat.extend_from_slice(&q);
        }
        if rows.documents.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let found = if queries.len() == 1 {
            vec![Self::top_k(&rows, &flat, k, filter)]
        } else {
            let keep = |i: usize| rows.matches(filter, i);
            scan::top_k_batch(&rows.vectors, rows.dimensions, &flat, k, rows.scoring(), &keep)
        };
        Ok(found
            .into_iter()
            .map(|best| {
                best.into_iter()
                    .filter_map(|(s, i)| rows.documents.get(i).map(|d| ScoredDocument::new(d.clone(), s)))
                    .collect()
            })
            .collect())
    }

    async fn search_with_vectors(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&Filter>,
    ) -> Result<Vec<(ScoredDocument, Vec<f32>)>> {
        let (rows, q) = self.checked_query(query, k).await?;
        Ok(Self::top_k(&rows, &q, k, filter)
            .into_iter()
            .filter_map(|(s, i)| {
                rows.documents.get(i).map(|d| (ScoredDocument::new(d.clone(), s), rows.vector(i).to_vec()))
            })
            .collect())
    }

    async fn delete(&self, ids: &[String]) -> Result<usize> {
        let mut guard = self.rows.write().await;
        let rows = &mut *guard;
        let doomed: std::collections::HashSet<usize> =
            ids.iter().filter_map(|id| rows.positions.get(id).copied()).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let d = rows.dimensions;
        let old_docs = std::mem::take(&mut rows.documents);
        let old_vectors = std::mem::take(&mut rows.vectors);
        for (i, (doc, v)) in old_docs.into_iter().zip(old_vectors.chunks_exact(d.max(1))).enumerate() {
            if !doomed.contains(&i) {
                rows.documents.push(doc);
                rows.vectors.extend_from_slice(v);
            }
        }
        rows.positions = rows
            .documents
            .iter()
            .enumerate()
            .filter_map(|(i, doc)| doc.id.clone().map(|id| (id, i)))
            .collect();
        Ok(doomed.len())
    }

    async fn count(&self) -> Result<usize> {
        Ok(self.rows.read().await.documents.len())
    }

    async fn get(&self, ids: &[String]) -> Result<Vec<Document>> {
        let rows = self.rows.read().await;
        Ok(ids
            .iter()
            .filter_map(|id| rows.positions.get(id).and_then(|&i| rows.documents.get(i)).cloned())
            .collect())
    }

    async fn documents(&self, filter: Option<&Filter>) -> Result<Vec<Document>> {
        let rows = self.rows.read().await;
        Ok(rows.documents.iter().filter(|d| filter.is_none_or(|f| f.matches_document(d))).cloned().collect())
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
        assert_eq!(s.get(&[ids[0].clone()]).await.unwrap()[0].content, "a2");
        assert_eq!(s.delete(&[ids[1].clone(), "nope".into()]).await.unwrap(), 1);
        assert_eq!(s.count().await.unwrap(), 2);
        let hits = s.search_with_vectors(&[0.0, 1.0], 1, None).await.unwrap();
        assert_eq!(hits[0].0.document.content, "a2");
        assert_eq!(hits[0].1, vec![0.0, 1.0]);
    }

    #[tokio::test]
    async fn metrics_score_as_langchain() {
        let l2 = InMemoryVectorStore::with_distance(Distance::L2);
        l2.upsert(vec![rec("x", vec![1.0, 0.0]), rec("y", vec![0.0, 1.0])]).await.unwrap();
        let hits = l2.search(&[1.0, 0.0], 2, None).await.unwrap();
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert!(hits[1].score.abs() < 1e-6, "orthogonal unit vectors are sqrt(2) apart: score 0");
        let dot = InMemoryVectorStore::with_distance(Distance::Dot);
        dot.upsert(vec![rec("x", vec![3.0, 0.0]), rec("y", vec![1.0, 1.0])]).await.unwrap();
        assert_eq!(dot.search(&[2.0, 0.0], 1, None).await.unwrap()[0].score, 6.0);
    }

    #[tokio::test]
    async fn save_and_load_round_trip_and_reject_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.bin");
        let s = InMemoryVectorStore::with_distance(Distance::L2);
        s.upsert(vec![rec("a", vec![1.0, 2.0, 3.0]), rec("b", vec![-1.0, 0.5, 0.0])]).await.unwrap();
        s.save(&path).await.unwrap();
        let t = InMemoryVectorStore::load(&path).await.unwrap();
        assert_eq!(t.count().await.unwrap(), 2);
        assert_eq!(
            s.search(&[1.0, 2.0, 2.0], 2, None).await.unwrap(),
            t.search(&[1.0, 2.0, 2.0], 2, None).await.unwrap()
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert_eq!(InMemoryVectorStore::load(&path).await.unwrap_err().kind(), ErrorKind::Store);
        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(InMemoryVectorStore::load(&path).await.unwrap_err().kind(), ErrorKind::Store);
        assert_eq!(
            InMemoryVectorStore::load(dir.path().join("none")).await.unwrap_err().kind(),
            ErrorKind::Io
        );
    }

    #[tokio::test]
    async fn a_batch_answers_as_its_queries_one_by_one() {
        for distance in [Distance::Cosine, Distance::Dot, Distance::L2] {
            let s = InMemoryVectorStore::with_distance(distance);
            let records = (0..500)
                .map(|i| {
                    let v = (0..24).map(|j| ((i * 31 + j * 17) % 97) as f32 / 97.0 - 0.4).collect();
                    rec(&format!("doc {i}"), v)
                })
                .collect();
            s.upsert(records).await.unwrap();
            let queries: Vec<Vec<f32>> = (0..9)
                .map(|q| (0..24).map(|j| ((q * 13 + j * 7) % 41) as f32 / 41.0 - 0.5).collect())
                .collect();
            let filter = Filter::gte("len", 6);
            for f in [None, Some(&filter)] {
                let batch = s.search_batch(&queries, 7, f).await.unwrap();
                assert_eq!(batch.len(), queries.len());
                for (q, got) in queries.iter().zip(&batch) {
                    let one = s.search(q, 7, f).await.unwrap();
                    assert_eq!(got.len(), one.len());
                    for (a, b) in got.iter().zip(&one) {
                        assert_eq!(a.document.id, b.document.id, "{distance:?}");
                        assert!((a.score - b.score).abs() < 1e-5);
                    }
                }
            }
        }
        let s = InMemoryVectorStore::new();
        assert_eq!(
            s.search_batch(&[vec![1.0], vec![1.0, 2.0]], 3, None).await.unwrap(),
            vec![vec![], vec![]]
        );
        s.upsert(vec![rec("a", vec![1.0, 0.0])]).await.unwrap();
        let err = s.search_batch(&[vec![1.0, 0.0], vec![1.0]], 3, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("query 2 of the batch"), "{err}");
        assert!(s.search_batch(&[vec![f32::NAN, 0.0]], 3, None).await.is_err());
        assert!(s.search_batch(&[vec![1.0, 0.0]], 0, None).await.is_err());
        assert!(s.search_batch(&[], 3, None).await.unwrap().is_empty());
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
