//! LanceDB on disk: the store agrees with the exact in-memory store (results, scores for every
//! distance, every filter operator), persists, rejects bad input without writing, survives
//! hostile metadata values, and reports a corrupt or missing table as a typed error.
#![cfg(feature = "lancedb")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use catena_core::{Document, Embedded, ErrorKind, Filter, VectorStore};
use catena_retrievers::{Distance, InMemoryVectorStore, LanceDbStore};
use catena_retrievers::{FieldKind, VectorIndex};
use serde_json::json;

fn records(n: usize) -> Vec<Embedded> {
    let langs = ["en", "fr", "it's"];
    (0..n)
        .map(|i| {
            let x = i as f32;
            Embedded {
                document: Document::new(format!(
                    "document {i} about {}",
                    if i % 2 == 0 { "rust" } else { "python" }
                ))
                .with_id(format!("d{i}"))
                .with_metadata("source", format!("file{}.md", i % 4))
                .with_metadata("year", 2000 + (i % 25) as i64)
                .with_metadata("score", x / 10.0 + 0.5)
                .with_metadata("lang", langs[i % 3])
                .with_metadata("draft", i % 5 == 0)
                .with_metadata("tags", json!(["a", "b"])),
                vector: vec![(x * 0.37).sin(), (x * 0.11).cos(), (x * 0.07).sin() + 0.2, 1.0],
            }
        })
        .collect()
}

fn ids(hits: &[catena_core::ScoredDocument]) -> Vec<String> {
    hits.iter().map(|h| h.document.id.clone().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agrees_with_the_exact_store_for_every_distance_and_filter() {
    for distance in [Distance::Cosine, Distance::L2, Distance::Dot] {
        let dir = tempfile::tempdir().unwrap();
        let lance =
            LanceDbStore::connect(dir.path().to_string_lossy(), "c").await.unwrap().with_distance(distance);
        let memory = InMemoryVectorStore::with_distance(distance);
        lance.upsert(records(60)).await.unwrap();
        memory.upsert(records(60)).await.unwrap();
        let q = [0.3, -0.2, 0.5, 0.9];
        let (a, b) = (lance.search(&q, 5, None).await.unwrap(), memory.search(&q, 5, None).await.unwrap());
        assert_eq!(ids(&a), ids(&b), "{distance:?}");
        for (x, y) in a.iter().zip(&b) {
            assert!((x.score - y.score).abs() < 1e-4, "{distance:?}: {} vs {}", x.score, y.score);
        }
        assert_eq!(a[0].document.metadata["tags"], json!(["a", "b"]), "metadata round-trips as JSON");
    }
    let dir = tempfile::tempdir().unwrap();
    let lance = LanceDbStore::connect(dir.path().to_string_lossy(), "c").await.unwrap();
    let memory = InMemoryVectorStore::new();
    lance.upsert(records(60)).await.unwrap();
    memory.upsert(records(60)).await.unwrap();
    let filters = [
        Filter::eq("lang", "it's"),
        Filter::Ne("lang".into(), json!("en")),
        Filter::Gt("year".into(), json!(2010)),
        Filter::lte("score", 2.0),
        Filter::Lt("score".into(), json!(1)),
        Filter::In("source".into(), vec![json!("file1.md"), json!("file3.md")]),
        Filter::Nin("year".into(), vec![json!(2001), json!(2002)]),
        Filter::Contains("source".into(), json!("le2")),
        Filter::Like("source".into(), "file_.m%".into()),
        Filter::eq("draft", true),
        Filter::eq("lang", "en")
            .or(Filter::gte("year", 2020))
            .and(Filter::Not(Box::new(Filter::eq("draft", true)))),
        Filter::eq("id", "d7"),
    ];
    let q = [0.1, 0.2, 0.3, 0.4];
    for f in &filters {
        let a = lance.search(&q, 60, Some(f)).await.unwrap();
        let b = memory.search(&q, 60, Some(f)).await.unwrap();
        let (mut a, mut b) = (ids(&a), ids(&b));
        a.sort();
        b.sort();
        assert!(!b.is_empty(), "{f:?} selects something");
        assert_eq!(a, b, "{f:?}");
        let mut listed = ids(&lance
            .documents(Some(f))
            .await
            .unwrap()
            .into_iter()
            .map(|d| catena_core::ScoredDocument::new(d, 0.0))
            .collect::<Vec<_>>());
        listed.sort();
        assert_eq!(listed, b, "documents() with {f:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persists_upserts_deletes_and_looks_up() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_string_lossy().into_owned();
    {
        let s = LanceDbStore::connect(uri.clone(), "docs").await.unwrap();
        assert_eq!(s.count().await.unwrap(), 0);
        assert!(
            s.search(&[1.0, 0.0, 0.0, 0.0], 3, None).await.unwrap().is_empty(),
            "no table yet: no results"
        );
        s.upsert(records(10)).await.unwrap();
        // Same ids replace; a duplicate inside one batch keeps the last.
        let mut again = records(2);
        again[0].document.content = "replaced".into();
        let mut dup = again[0].clone();
        dup.document.content = "replaced twice".into();
        again.push(dup);
        s.upsert(again).await.unwrap();
        assert_eq!(s.count().await.unwrap(), 10);
        assert_eq!(s.delete(&["d9".into(), "nope".into()]).await.unwrap(), 1);
    }
    let s = LanceDbStore::open(uri.clone(), "docs").await.unwrap();
    assert_eq!(s.count().await.unwrap(), 9);
    let got = s.get(&["d0".into(), "d9".into(), "d3".into()]).await.unwrap();
    assert_eq!(got.iter().map(|d| d.id.clone().unwrap()).collect::<Vec<_>>(), ["d0", "d3"]);
    assert_eq!(got[0].content, "replaced twice");
    let fields = s.fields().await;
    assert!(fields.contains(&("year".to_string(), FieldKind::Integer)));
    assert!(fields.contains(&("score".to_string(), FieldKind::Float)));
    assert!(!fields.iter().any(|(n, _)| n == "tags"), "lists stay in the JSON metadata only");
    let hits = s.search_with_vectors(&[0.0, 1.0, 0.2, 1.0], 1, None).await.unwrap();
    assert_eq!(hits[0].1.len(), 4);
    // Keyword search through LanceDB's full-text index.
    s.create_fts_index().await.unwrap();
    let kw = s.keyword_search("python", 20, None).await.unwrap();
    assert!(!kw.is_empty() && kw.iter().all(|h| h.document.content.contains("python")));
    // Below the exact-search threshold, Auto builds nothing.
    assert!(!s.create_index(VectorIndex::Auto).await.unwrap());
    s.optimize().await.unwrap();
    assert_eq!(s.count().await.unwrap(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ann_index_keeps_results_close_to_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = LanceDbStore::connect(dir.path().to_string_lossy(), "ann").await.unwrap();
    let recs: Vec<Embedded> = (0..600)
        .map(|i| {
            let x = i as f32;
            let v: Vec<f32> = (0..16).map(|j| ((x + 1.0) * (j as f32 + 1.0) * 0.013).sin()).collect();
            Embedded { document: Document::new(format!("{i}")).with_id(format!("{i}")), vector: v }
        })
        .collect();
    let queries: Vec<Vec<f32>> = recs.iter().step_by(60).map(|r| r.vector.clone()).collect();
    s.upsert(recs).await.unwrap();
    let mut exact = Vec::new();
    for q in &queries {
        exact.push(ids(&s.search(q, 10, None).await.unwrap()));
    }
    assert!(
        s.create_index(VectorIndex::IvfHnswSq { partitions: 2, m: 16, ef_construction: 100 }).await.unwrap()
    );
    let mut found = 0;
    for (q, truth) in queries.iter().zip(&exact) {
        let hits = ids(&s.search(q, 10, None).await.unwrap());
        assert_eq!(hits.len(), 10);
        found += hits.iter().filter(|h| truth.contains(h)).count();
    }
    let recall = found as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.9, "recall@10 {recall}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_typed_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_string_lossy().into_owned();
    let s = LanceDbStore::connect(uri.clone(), "t").await.unwrap();
    s.upsert(records(5)).await.unwrap();
    let mut bad = records(3);
    bad[2].vector.push(0.5);
    assert_eq!(s.upsert(bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let mut nan = records(1);
    nan[0].vector[0] = f32::NAN;
    assert_eq!(s.upsert(nan).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(s.count().await.unwrap(), 5, "a failed batch leaves the table as it was");
    let err = s.search(&[1.0, 2.0], 3, None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("embedder"), "{err}");
    assert_eq!(s.search(&[1.0; 4], 0, None).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let err = s.search(&[1.0; 4], 3, Some(&Filter::eq("author", "x"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("filterable"), "{err}");
    let err = s.search(&[1.0; 4], 3, Some(&Filter::eq("year", "2001"))).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A quote in a value is data, not syntax.
    let hostile = Filter::eq("lang", "x' OR '1'='1");
    assert!(s.search(&[1.0; 4], 5, Some(&hostile)).await.unwrap().is_empty());
    assert_eq!(s.search(&[1.0; 4], 5, Some(&Filter::eq("lang", "it's"))).await.unwrap().len(), 1);
    assert!(LanceDbStore::connect(uri.clone(), "bad name!").await.is_err());

    // Missing and corrupt tables.
    assert_eq!(LanceDbStore::open(uri.clone(), "missing").await.unwrap_err().kind(), ErrorKind::Store);
    let table_dir = dir.path().join("t.lance");
    assert!(table_dir.is_dir());
    for entry in std::fs::read_dir(table_dir.join("_versions")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not a manifest").unwrap();
    }
    let err = match LanceDbStore::connect(uri, "t").await {
        Ok(s) => s.count().await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_whose_creation_was_interrupted_is_removed_and_created_anew() {
    // What a process killed inside `create_table` leaves (found by tests/crash.rs): the table's
    // data files, no committed version. Every open then failed with "table not found" while
    // the folder made the table look present, so the store could never be written again.
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_string_lossy().into_owned();
    let store = LanceDbStore::connect(uri.clone(), "t").await.unwrap();
    store.upsert(records(5)).await.unwrap();
    drop(store);
    std::fs::remove_dir_all(dir.path().join("t.lance").join("_versions")).unwrap();
    assert!(dir.path().join("t.lance").join("data").is_dir(), "the data files stay, as after a kill");

    let store = LanceDbStore::connect(uri.clone(), "t").await.unwrap();
    assert_eq!(store.count().await.unwrap(), 0, "nothing was ever committed");
    store.upsert(records(7)).await.unwrap();
    drop(store);
    let store = LanceDbStore::open(uri, "t").await.unwrap();
    assert_eq!(store.count().await.unwrap(), 7);
}

#[cfg(feature = "s3")]
#[path = "support/s3.rs"]
mod s3;

/// On S3 (moto on loopback): both index kinds build in the bucket, searches through them and
/// keyword searches give the same answers from a second connection, and deletes are seen there.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_indexes_build_and_a_second_connection_sees_the_same_table() {
    let Some(server) = s3::S3Server::start("catena-lance") else { return };
    let uri = server.uri("indexes");
    let s = LanceDbStore::connect_with(&uri, "t", server.options()).await.unwrap();
    s.upsert(records(600)).await.unwrap();
    assert!(
        s.create_index(VectorIndex::IvfHnswSq { partitions: 2, m: 16, ef_construction: 100 }).await.unwrap()
    );
    s.create_fts_index().await.unwrap();
    let query = [0.3, 0.9, 0.1, 1.0];
    let filter = Filter::eq("lang", "it's");
    let hits = ids(&s.search(&query, 10, Some(&filter)).await.unwrap());
    assert_eq!(hits.len(), 10);
    let keyword = s.keyword_search("rust", 5, None).await.unwrap();
    assert_eq!(keyword.len(), 5);

    let other = LanceDbStore::connect_with(&uri, "t", server.options()).await.unwrap();
    assert_eq!(other.count().await.unwrap(), 600);
    assert_eq!(ids(&other.search(&query, 10, Some(&filter)).await.unwrap()), hits);
    assert_eq!(
        other
            .keyword_search("rust", 5, None)
            .await
            .unwrap()
            .iter()
            .map(|h| &h.document.id)
            .collect::<Vec<_>>(),
        keyword.iter().map(|h| &h.document.id).collect::<Vec<_>>()
    );
    s.delete(&["d0".into(), "d2".into()]).await.unwrap();
    tokio::time::sleep(catena_retrievers::READ_CONSISTENCY + std::time::Duration::from_millis(200)).await;
    assert_eq!(other.count().await.unwrap(), 598);
}

/// A bucket that does not exist, credentials the server refuses and a server that does not
/// answer are store errors that say which, not hangs or panics.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_a_missing_bucket_refused_credentials_or_a_down_server_are_store_errors() {
    let Some(server) = s3::S3Server::start("catena-errors") else { return };
    let started = std::time::Instant::now();
    let err = match LanceDbStore::connect_with("s3://no-such-bucket/x", "t", server.options()).await {
        Ok(s) => s.upsert(records(2)).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(err.to_string().contains("bucket does not exist"), "{err}");
    eprintln!("missing bucket: {err} ({:?})", started.elapsed());

    let refusing = s3::S3Server::start_refusing_credentials("catena-denied").unwrap();
    let err = match LanceDbStore::connect_with(refusing.uri("x"), "t", refusing.options()).await {
        Ok(s) => s.upsert(records(2)).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(err.to_string().contains("access denied"), "{err}");
    eprintln!("unknown credentials: {err}");

    let endpoint = server.endpoint.clone();
    drop(server);
    let down = s3::options_for(&endpoint);
    let started = std::time::Instant::now();
    let err = match LanceDbStore::connect_with("s3://catena-errors/x", "t", down).await {
        Ok(s) => s.upsert(records(2)).await.unwrap_err(),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Store, "{err}");
    assert!(err.to_string().contains("did not answer"), "{err}");
    eprintln!("down server: {err} ({:?})", started.elapsed());
}
