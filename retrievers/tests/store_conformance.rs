//! One conformance suite for every [`VectorStore`]: the same checks, against the same reference
//! (the filter's own `matches_document` and scores computed here in f64), for each store. A new
//! store is tested by adding one line at the top: a [`Backend`] that opens handles on named
//! collections. The stores: in memory, LanceDB in a folder, LanceDB on S3 (moto's S3 server on
//! loopback), pgvector (the PostgreSQL of scripts/with-postgres.sh).
//!
//! Checked: empty collections, idempotent upserts (duplicates in a batch: the last wins), gets
//! in the order asked, deletes, every filter operator with hostile values (quotes, SQL, LIKE
//! wildcards, backslashes, non-ASCII), scores for each distance equal to the math within 1e-4,
//! the stored vectors MMR reads back, incremental and full cleanup through the indexer, four
//! handles writing at once (table creation included), reopening after close, and bad input
//! refused with a typed error and nothing written.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use catena_core::testing::DeterministicEmbedder;
use catena_core::{Document, Embedded, ErrorKind, Filter, RunContext, VectorStore};
use catena_retrievers::{Cleanup, Distance, InMemoryVectorStore, IndexReport, index_with_cleanup};
use serde_json::{Value, json};
use tokio::sync::Mutex;

// ---- The stores: one line each. ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_conforms() {
    conformance(&MemoryBackend::default()).await;
}

#[cfg(feature = "lancedb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lancedb_store_conforms() {
    conformance(&LanceBackend::new()).await;
}

#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lancedb_on_s3_store_conforms() {
    if let Some(server) = s3::S3Server::start("catena-conformance") {
        conformance(&LanceBackend::on_s3(server)).await;
    }
}

#[cfg(feature = "pgvector")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_store_conforms() {
    if let Some(backend) = PgBackend::new("catena_conformance").await {
        conformance(&backend).await;
    }
}

// ---- Backends: how each store opens a named collection. ----

/// Opens handles on named collections. Handles on one name share their data; `close` then
/// `open` must find what was written.
#[async_trait]
trait Backend: Send + Sync {
    async fn open(&self, name: &str, distance: Distance) -> Arc<dyn VectorStore>;
    async fn close(&self, name: &str, store: Arc<dyn VectorStore>);
}

/// The in-memory store shares one instance per name and persists through save/load.
#[derive(Default)]
struct MemoryBackend {
    live: Mutex<HashMap<String, Arc<InMemoryVectorStore>>>,
    dir: std::sync::OnceLock<tempfile::TempDir>,
}

impl MemoryBackend {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.get_or_init(|| tempfile::tempdir().unwrap()).path().join(format!("{name}.store"))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn open(&self, name: &str, distance: Distance) -> Arc<dyn VectorStore> {
        let mut live = self.live.lock().await;
        if let Some(store) = live.get(name) {
            return store.clone();
        }
        let file = self.file(name);
        let store = if file.exists() {
            Arc::new(InMemoryVectorStore::load(&file).await.unwrap())
        } else {
            Arc::new(InMemoryVectorStore::with_distance(distance))
        };
        live.insert(name.to_owned(), store.clone());
        store
    }

    async fn close(&self, name: &str, _store: Arc<dyn VectorStore>) {
        if let Some(store) = self.live.lock().await.remove(name) {
            store.save(self.file(name)).await.unwrap();
        }
    }
}

/// LanceDB in a local folder, or under a prefix of an S3 bucket.
#[cfg(feature = "lancedb")]
struct LanceBackend {
    uri: String,
    options: Vec<(String, String)>,
    _place: LancePlace,
}

#[cfg(feature = "lancedb")]
enum LancePlace {
    Folder(#[allow(dead_code)] tempfile::TempDir),
    #[cfg(feature = "s3")]
    Bucket(#[allow(dead_code)] s3::S3Server),
}

#[cfg(feature = "lancedb")]
impl LanceBackend {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            uri: dir.path().to_string_lossy().into_owned(),
            options: Vec::new(),
            _place: LancePlace::Folder(dir),
        }
    }

    #[cfg(feature = "s3")]
    fn on_s3(server: s3::S3Server) -> Self {
        Self { uri: server.uri("conformance"), options: server.options(), _place: LancePlace::Bucket(server) }
    }
}

#[cfg(feature = "lancedb")]
#[async_trait]
impl Backend for LanceBackend {
    async fn open(&self, name: &str, distance: Distance) -> Arc<dyn VectorStore> {
        let store = catena_retrievers::LanceDbStore::connect_with(&self.uri, name, self.options.clone());
        Arc::new(store.await.unwrap().with_distance(distance))
    }

    async fn close(&self, _name: &str, store: Arc<dyn VectorStore>) {
        drop(store);
    }
}

#[cfg(feature = "s3")]
#[path = "support/s3.rs"]
mod s3;

#[cfg(feature = "pgvector")]
#[path = "support/postgres.rs"]
mod support;

/// A database of its own in the server `scripts/with-postgres.sh` started.
#[cfg(feature = "pgvector")]
struct PgBackend {
    url: String,
}

#[cfg(feature = "pgvector")]
impl PgBackend {
    async fn new(database: &str) -> Option<Self> {
        Some(Self { url: support::fresh_database(database).await? })
    }
}

#[cfg(feature = "pgvector")]
#[async_trait]
impl Backend for PgBackend {
    async fn open(&self, name: &str, distance: Distance) -> Arc<dyn VectorStore> {
        let options =
            catena_retrievers::PgVectorOptions::default().with_distance(distance).with_max_connections(4);
        Arc::new(catena_retrievers::PgVectorStore::connect_with(&self.url, name, options).await.unwrap())
    }

    async fn close(&self, _name: &str, store: Arc<dyn VectorStore>) {
        drop(store);
    }
}

// ---- The suite. ----

async fn conformance(backend: &dyn Backend) {
    empty_collections_answer_empty(backend).await;
    upserts_are_idempotent_and_gets_keep_order(backend).await;
    filters_agree_with_the_reference(backend).await;
    scores_follow_each_distance(backend).await;
    indexer_cleanup_works(backend).await;
    concurrent_writers_all_land(backend).await;
    reopening_finds_everything(backend).await;
    bad_input_is_refused_and_writes_nothing(backend).await;
}

fn record(id: &str, content: &str, vector: Vec<f32>) -> Embedded {
    Embedded { document: Document::new(content).with_id(id), vector }
}

/// A deterministic, non-normalised vector (magnitudes differ, so the distances disagree).
fn vector(seed: usize, dims: usize) -> Vec<f32> {
    (0..dims).map(|j| ((seed * 31 + j * 17) as f32 * 0.618).sin() * (1.0 + (seed % 5) as f32 * 0.3)).collect()
}

fn ids_of(docs: &[Document]) -> BTreeSet<String> {
    docs.iter().filter_map(|d| d.id.clone()).collect()
}

async fn empty_collections_answer_empty(backend: &dyn Backend) {
    let store = backend.open("empty", Distance::Cosine).await;
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(store.search(&[1.0, 0.0], 3, None).await.unwrap().is_empty());
    assert!(store.get(&["nope".into()]).await.unwrap().is_empty());
    assert!(store.documents(None).await.unwrap().is_empty());
    assert_eq!(store.delete(&["nope".into()]).await.unwrap(), 0);
}

async fn upserts_are_idempotent_and_gets_keep_order(backend: &dyn Backend) {
    let store = backend.open("upserts", Distance::Cosine).await;
    let batch =
        || (0..5).map(|i| record(&format!("u{i}"), &format!("text {i}"), vector(i, 4))).collect::<Vec<_>>();
    assert_eq!(store.upsert(batch()).await.unwrap(), vec!["u0", "u1", "u2", "u3", "u4"]);
    store.upsert(batch()).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 5, "the same ids again replace, not add");
    // Duplicates in one batch: the last one wins, as sequential upserts would.
    store
        .upsert(vec![record("u1", "first", vector(1, 4)), record("u1", "second", vector(7, 4))])
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 5);
    let got = store.get(&["u3".into(), "missing".into(), "u1".into()]).await.unwrap();
    assert_eq!(
        got.iter().map(|d| d.id.clone().unwrap()).collect::<Vec<_>>(),
        ["u3", "u1"],
        "asked order, unknown left out"
    );
    assert_eq!(got[1].content, "second");
    let hit = store.search(&vector(7, 4), 1, None).await.unwrap();
    assert_eq!(hit[0].document.id.as_deref(), Some("u1"), "the replaced vector is the one searched");
    // A document without an id gets its content-derived id.
    let ids = store
        .upsert(vec![Embedded { document: Document::new("no id"), vector: vector(9, 4) }])
        .await
        .unwrap();
    assert_eq!(ids, [catena_retrievers::document_id(&Document::new("no id"))]);
    assert_eq!(store.delete(&["u0".into(), "u4".into(), "ghost".into()]).await.unwrap(), 2);
    assert_eq!(store.count().await.unwrap(), 4);
    assert!(store.get(&["u0".into()]).await.unwrap().is_empty());
}

/// Metadata values that break naive quoting, LIKE patterns and escaping.
const HOSTILE: [&str; 10] = [
    "en",
    "it's",
    "x' OR '1'='1",
    "'; DROP TABLE docs; --",
    "100%",
    "a_b",
    "back\\slash",
    "quote\"d",
    "日本語",
    "crab 🦀",
];

fn filter_corpus() -> Vec<Embedded> {
    (0..20)
        .map(|i| {
            let mut doc = Document::new(format!("document {i}"))
                .with_id(format!("f{i:02}"))
                .with_metadata("lang", HOSTILE[i % HOSTILE.len()])
                .with_metadata("year", 1990 + ((i * 7) % 40) as i64)
                .with_metadata("score", i as f64 * 0.25 - 1.5)
                .with_metadata("draft", i % 3 == 0)
                .with_metadata("title", format!("T{i}: {}", HOSTILE[(i + 3) % HOSTILE.len()]));
            // Fields only some stores can filter on: arrays, and a field most documents lack.
            if i % 4 == 0 {
                doc = doc.with_metadata("rare", "here");
            }
            doc = doc.with_metadata("tags", json!(["t", format!("t{}", i % 3)]));
            Embedded { document: doc, vector: vector(i, 6) }
        })
        .collect()
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

/// Filters on fields every document has, with values of the fields' types: every store must
/// answer them exactly as the reference does.
fn core_filters() -> Vec<Filter> {
    let mut all = Vec::new();
    for v in HOSTILE {
        all.push(Filter::eq("lang", v));
        all.push(Filter::Ne("lang".into(), s(v)));
        all.push(Filter::Contains("title".into(), s(v)));
        all.push(Filter::Like("lang".into(), v.into()));
    }
    all.extend([
        Filter::Gt("year".into(), json!(2005)),
        Filter::gte("year", 2005),
        Filter::Lt("year".into(), json!(2005)),
        Filter::lte("year", 2005),
        Filter::Gt("score".into(), json!(0.25)),
        Filter::lte("score", -1.0),
        Filter::Gt("title".into(), s("T2")),
        Filter::Lt("lang".into(), s("b")),
        Filter::eq("draft", true),
        Filter::Ne("draft".into(), json!(true)),
        Filter::In("lang".into(), vec![s("it's"), s("100%"), s("nothing")]),
        Filter::Nin("lang".into(), vec![s("en"), s("x' OR '1'='1")]),
        Filter::Contains("lang".into(), s("'")),
        Filter::Contains("lang".into(), s("%")),
        Filter::Like("lang".into(), "%'%".into()),
        Filter::Like("lang".into(), "_n".into()),
        Filter::Like("title".into(), "T1%".into()),
        Filter::Like("lang".into(), "%\\%".into()),
        Filter::Like("title".into(), "%🦀".into()),
        Filter::eq("id", "f03"),
        Filter::In("id".into(), vec![s("f01"), s("f19"), s("zz")]),
        Filter::eq("lang", "en").or(Filter::gte("year", 2020)),
        Filter::eq("draft", true).and(Filter::Lt("score".into(), json!(1.0))),
        Filter::Not(Box::new(Filter::eq("lang", "en").or(Filter::eq("draft", false)))),
        Filter::And(vec![]),
        Filter::Or(vec![]),
    ]);
    all
}

/// Filters a store may refuse (with [`ErrorKind::InvalidInput`]) because its schema cannot
/// express them: arrays, fields missing from some documents, values of another type, empty
/// lists. When a store answers, the answer must still be the reference's.
fn optional_filters() -> Vec<Filter> {
    vec![
        Filter::Contains("tags".into(), s("t1")),
        Filter::eq("rare", "here"),
        Filter::Ne("rare".into(), s("here")),
        Filter::Not(Box::new(Filter::eq("rare", "here"))),
        Filter::Nin("rare".into(), vec![s("here")]),
        Filter::eq("year", 2011.0),
        Filter::Gt("lang".into(), json!(5)),
        Filter::In("lang".into(), vec![]),
        Filter::Nin("lang".into(), vec![]),
        Filter::eq("no_such_field", 1),
    ]
}

async fn filters_agree_with_the_reference(backend: &dyn Backend) {
    let store = backend.open("filters", Distance::Cosine).await;
    let corpus = filter_corpus();
    store.upsert(corpus.clone()).await.unwrap();
    let query = vector(3, 6);
    let check = |filter: &Filter, got: &[Document]| {
        let want: BTreeSet<String> = corpus
            .iter()
            .filter(|r| filter.matches_document(&r.document))
            .filter_map(|r| r.document.id.clone())
            .collect();
        assert_eq!(ids_of(got), want, "filter {filter:?}");
    };
    for filter in core_filters() {
        let listed = store.documents(Some(&filter)).await.map_err(|e| format!("{filter:?}: {e}")).unwrap();
        check(&filter, &listed);
        let found = store
            .search(&query, corpus.len(), Some(&filter))
            .await
            .map_err(|e| format!("{filter:?}: {e}"))
            .unwrap();
        check(&filter, &found.into_iter().map(|h| h.document).collect::<Vec<_>>());
    }
    for filter in optional_filters() {
        match store.documents(Some(&filter)).await {
            Ok(listed) => check(&filter, &listed),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidInput, "filter {filter:?}: {e}"),
        }
    }
    // Metadata round-trips whole, hostile values and arrays included.
    let back = store.get(&["f07".into()]).await.unwrap();
    assert_eq!(back[0].metadata, corpus[7].document.metadata);
}

fn reference_score(distance: Distance, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    match distance {
        Distance::Cosine => dot / (norm(a) * norm(b)),
        Distance::Dot => dot,
        Distance::L2 => {
            1.0 - a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>().sqrt()
                / std::f64::consts::SQRT_2
        }
    }
}

async fn scores_follow_each_distance(backend: &dyn Backend) {
    for (name, distance) in [("cosine", Distance::Cosine), ("dot", Distance::Dot), ("l2", Distance::L2)] {
        let store = backend.open(&format!("scores_{name}"), distance).await;
        let records: Vec<Embedded> =
            (0..40).map(|i| record(&format!("v{i:02}"), "x", vector(i, 8))).collect();
        store.upsert(records.clone()).await.unwrap();
        let query: Vec<f32> = vector(101, 8);
        let mut want: Vec<(f64, String)> = records
            .iter()
            .map(|r| (reference_score(distance, &query, &r.vector), r.document.id.clone().unwrap()))
            .collect();
        want.sort_by(|a, b| b.0.total_cmp(&a.0));
        let got = store.search(&query, 10, None).await.unwrap();
        assert_eq!(got.len(), 10);
        for (hit, (score, id)) in got.iter().zip(&want) {
            assert_eq!(hit.document.id.as_ref(), Some(id), "{name}: order");
            assert!(
                (f64::from(hit.score) - score).abs() < 1e-4,
                "{name}: {id} scored {} not {score}",
                hit.score
            );
        }
        // MMR's inputs: the stored vectors come back (unit-normalised is allowed under cosine).
        let with_vectors = store.search_with_vectors(&query, 5, None).await.unwrap();
        for (hit, stored) in &with_vectors {
            let original = &records.iter().find(|r| r.document.id == hit.document.id).unwrap().vector;
            assert_eq!(stored.len(), original.len());
            if distance == Distance::Cosine {
                assert!(
                    reference_score(Distance::Cosine, stored, original) > 1.0 - 1e-6,
                    "{name}: same direction"
                );
            } else {
                for (x, y) in stored.iter().zip(original) {
                    assert!((x - y).abs() < 1e-6, "{name}: stored vector changed");
                }
            }
        }
    }
}

async fn indexer_cleanup_works(backend: &dyn Backend) {
    let store = backend.open("cleanup", Distance::Cosine).await;
    let embedder = DeterministicEmbedder::new(16);
    let ctx = RunContext::new();
    let doc = |source: &str, text: &str| Document::new(text).with_metadata("source", source);
    let run = |docs: Vec<Document>, cleanup| {
        let store = store.clone();
        let embedder = &embedder;
        let ctx = &ctx;
        async move { index_with_cleanup(docs, embedder, store.as_ref(), 2, cleanup, ctx).await.unwrap() }
    };
    let first = vec![doc("a.md", "alpha one"), doc("a.md", "alpha two"), doc("b'.md", "beta")];
    assert_eq!(
        run(first.clone(), Cleanup::Incremental).await,
        IndexReport { added: 3, skipped: 0, deleted: 0 }
    );
    assert_eq!(run(first, Cleanup::Incremental).await, IndexReport { added: 0, skipped: 3, deleted: 0 });
    let changed = vec![doc("a.md", "alpha one"), doc("a.md", "alpha 2")];
    assert_eq!(
        run(changed.clone(), Cleanup::Incremental).await,
        IndexReport { added: 1, skipped: 1, deleted: 1 }
    );
    assert_eq!(store.count().await.unwrap(), 3, "b'.md was not part of the run and stays");
    assert_eq!(run(changed, Cleanup::Full).await, IndexReport { added: 0, skipped: 2, deleted: 1 });
    assert_eq!(store.count().await.unwrap(), 2);
}

async fn concurrent_writers_all_land(backend: &dyn Backend) {
    // Four handles on one new collection, each writing 5 batches of 10: the first writes race to
    // create the collection.
    let mut handles = Vec::new();
    for writer in 0..4 {
        let store = backend.open("concurrent", Distance::Cosine).await;
        handles.push(tokio::spawn(async move {
            for batch in 0..5 {
                let records = (0..10)
                    .map(|i| {
                        let n = writer * 100 + batch * 10 + i;
                        record(&format!("w{n:03}"), &format!("writer {writer} row {n}"), vector(n, 4))
                    })
                    .collect();
                store.upsert(records).await.unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let store = backend.open("concurrent", Distance::Cosine).await;
    assert_eq!(store.count().await.unwrap(), 200, "every writer's rows landed, none twice");
    let ids: Vec<String> =
        (0..4).flat_map(|w| (0..50).map(move |i| format!("w{:03}", w * 100 + i))).collect();
    assert_eq!(store.get(&ids).await.unwrap().len(), 200);
}

async fn reopening_finds_everything(backend: &dyn Backend) {
    let store = backend.open("reopen", Distance::L2).await;
    let records: Vec<Embedded> =
        (0..20).map(|i| record(&format!("r{i}"), &format!("row {i}"), vector(i, 5))).collect();
    store.upsert(records).await.unwrap();
    let before = store.search(&vector(4, 5), 5, None).await.unwrap();
    backend.close("reopen", store).await;
    let store = backend.open("reopen", Distance::L2).await;
    assert_eq!(store.count().await.unwrap(), 20);
    let after = store.search(&vector(4, 5), 5, None).await.unwrap();
    assert_eq!(
        before.iter().map(|h| (h.document.id.clone(), h.score)).collect::<Vec<_>>(),
        after.iter().map(|h| (h.document.id.clone(), h.score)).collect::<Vec<_>>()
    );
    assert_eq!(store.get(&["r7".into()]).await.unwrap()[0].content, "row 7");
}

async fn bad_input_is_refused_and_writes_nothing(backend: &dyn Backend) {
    let store = backend.open("bad_input", Distance::Cosine).await;
    store.upsert(vec![record("ok", "fine", vector(1, 4))]).await.unwrap();
    let kind = |r: catena_core::Result<Vec<String>>| r.unwrap_err().kind();
    assert_eq!(kind(store.upsert(vec![record("short", "x", vec![1.0, 2.0])]).await), ErrorKind::InvalidInput);
    assert_eq!(
        kind(
            store
                .upsert(vec![record("good", "x", vector(2, 4)), record("nan", "x", vec![f32::NAN; 4])])
                .await
        ),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(store.upsert(vec![record("empty", "x", vec![])]).await), ErrorKind::InvalidInput);
    assert_eq!(store.count().await.unwrap(), 1, "a refused batch writes nothing, its good rows included");
    let search_kind = |r: catena_core::Result<Vec<catena_core::ScoredDocument>>| r.unwrap_err().kind();
    assert_eq!(search_kind(store.search(&vector(1, 4), 0, None).await), ErrorKind::InvalidInput);
    assert_eq!(search_kind(store.search(&[f32::NAN; 4], 1, None).await), ErrorKind::InvalidInput);
    assert_eq!(search_kind(store.search(&[1.0; 3], 1, None).await), ErrorKind::InvalidInput);
    // NUL characters: kept exactly, or refused as bad input with nothing written.
    match store.upsert(vec![record("nul", "a\0b", vector(3, 4)), record("beside", "x", vector(4, 4))]).await {
        Ok(_) => assert_eq!(store.get(&["nul".into()]).await.unwrap()[0].content, "a\0b"),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
            assert_eq!(store.count().await.unwrap(), 1);
        }
    }
}
