//! `catena ingest --shard K/N`: four worker processes filling one shared store write exactly what
//! one process writes (same ids, same chunks, same vectors, nothing twice), into LanceDB in a
//! folder, LanceDB on S3 (moto's S3 server on loopback) and PostgreSQL with pgvector, and a changed corpus re-ingested by shards plus the final pass leaves
//! what one process's run leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use catena::core::VectorStore;
use catena::retrievers::{LanceDbStore, PgVectorStore};
use serde_json::Value;

/// The environment every `catena` process here gets: what points it at the S3 server, if any.
static ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catena"));
    command.envs(ENV.get().into_iter().flatten().map(|(k, v)| (k, v)));
    command
}

fn catena(args: &[&str]) -> Output {
    command().args(args).output().unwrap()
}

fn summary(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

/// Twelve files of distinct paragraphs, a few chunks each.
fn write_corpus(dir: &Path) {
    let topics = [
        "ownership",
        "borrowing",
        "lifetimes",
        "traits",
        "generics",
        "closures",
        "iterators",
        "macros",
        "modules",
        "errors",
        "threads",
        "channels",
    ];
    for (i, topic) in topics.iter().enumerate() {
        let paragraphs: Vec<String> = (0..3)
            .map(|p| {
                format!(
                    "Paragraph {p} on {topic}: {topic} in Rust matters because of rule {i}.{p}. Code that uses \
                     {topic} well is easier to read, and the compiler checks {topic} at every step."
                )
            })
            .collect();
        std::fs::write(dir.join(format!("{topic}.md")), format!("# {topic}\n\n{}", paragraphs.join("\n\n")))
            .unwrap();
    }
}

/// `catena ingest` of `corpus` into `store` as every run here makes it (JSON summary, small chunks).
fn ingest_args<'a>(corpus: &'a str, store: &'a str, cleanup: &'a str) -> [&'a str; 9] {
    ["ingest", corpus, "--store", store, "--json", "--chunk-size", "200", "--cleanup", cleanup]
}

/// Ingests `corpus` into `store` with four concurrent `--shard k/4` workers, then the final pass.
fn sharded(corpus: &str, store: &str, cleanup: &str, expected_files: u64) -> Value {
    // All four at once: spawned first, waited for after.
    let children: Vec<_> = (1..=4)
        .map(|k| {
            command()
                .args(ingest_args(corpus, store, "incremental"))
                .args(["--shard", &format!("{k}/4")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut files = 0;
    for child in children {
        files += summary(&child.wait_with_output().unwrap())["files"].as_u64().unwrap();
    }
    assert_eq!(files, expected_files, "every file went to exactly one shard");
    summary(&catena(&ingest_args(corpus, store, cleanup)))
}

/// Every chunk in the store: id -> (content, metadata, vector).
async fn contents(store: &dyn VectorStore) -> BTreeMap<String, (String, Value, Vec<f32>)> {
    let docs = store.documents(None).await.unwrap();
    let probe = vec![0.05_f32; 384];
    let vectors: BTreeMap<String, Vec<f32>> = store
        .search_with_vectors(&probe, docs.len().max(1), None)
        .await
        .unwrap()
        .into_iter()
        .map(|(hit, vector)| (hit.document.id.unwrap(), vector))
        .collect();
    docs.into_iter()
        .map(|d| {
            let id = d.id.clone().unwrap();
            let vector = vectors.get(&id).cloned().unwrap_or_default();
            (id, (d.content, Value::Object(d.metadata), vector))
        })
        .collect()
}

fn assert_same(
    one: &BTreeMap<String, (String, Value, Vec<f32>)>,
    sharded: &BTreeMap<String, (String, Value, Vec<f32>)>,
) {
    assert_eq!(one.keys().collect::<Vec<_>>(), sharded.keys().collect::<Vec<_>>(), "the same ids");
    for (id, (content, metadata, vector)) in one {
        let (c, m, v) = &sharded[id];
        assert_eq!((content, metadata), (c, m), "{id}");
        assert_eq!(vector.len(), v.len(), "{id}");
        // Batches differ between the runs, and batching may move the last bits of a float.
        let gap = vector.iter().zip(v).map(|(a, b)| (a - b).abs()).fold(0.0_f32, f32::max);
        assert!(gap < 1e-3, "{id}: vectors differ by {gap}");
    }
}

#[path = "../retrievers/tests/support/postgres.rs"]
mod support;
use support::fresh_database as pg_url;

#[cfg(feature = "s3")]
#[path = "../retrievers/tests/support/s3.rs"]
mod s3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_write_what_one_process_writes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    write_corpus(&corpus);
    let corpus_arg = corpus.to_str().unwrap();

    let single = dir.path().join("single");
    let single_arg = single.to_str().unwrap();
    let one = summary(&catena(&ingest_args(corpus_arg, single_arg, "incremental")));
    let total = one["stored"].as_u64().unwrap();
    assert!(total >= 24, "several chunks per file: {one}");
    let reference = contents(&LanceDbStore::open(single.to_string_lossy(), "chunks").await.unwrap()).await;

    let mut targets: Vec<(String, Arc<dyn VectorStore>)> = Vec::new();
    let lance = dir.path().join("sharded").to_string_lossy().into_owned();
    if let Some(url) = pg_url("catena_sharded_ingest").await {
        targets.push((url.clone(), Arc::new(PgVectorStore::connect(&url, "chunks").await.unwrap())));
    }
    #[cfg(feature = "s3")]
    let _s3 = s3::S3Server::start("catena-sharded").inspect(|server| {
        ENV.set(server.env()).unwrap();
    });
    #[cfg(feature = "s3")]
    if let Some(server) = &_s3 {
        let uri = server.uri("sharded");
        let store = LanceDbStore::connect_with(&uri, "chunks", server.options()).await.unwrap();
        targets.push((uri, Arc::new(store)));
    }
    let mut all: Vec<String> = vec![lance.clone()];
    all.extend(targets.iter().map(|(url, _)| url.clone()));
    for store in &all {
        let last = sharded(corpus_arg, store, "incremental", 12);
        assert_eq!(
            (last["added"].as_u64(), last["skipped"].as_u64()),
            (Some(0), Some(total)),
            "{store}: {last}"
        );
        assert_eq!(last["stored"].as_u64(), Some(total), "{store}: no duplicates");
    }
    let lance_store: Arc<dyn VectorStore> =
        Arc::new(LanceDbStore::open(lance.clone(), "chunks").await.unwrap());
    let mut stores = vec![(lance.clone(), lance_store)];
    stores.extend(targets);
    for (name, store) in &stores {
        assert_same(&reference, &contents(store.as_ref()).await);
        eprintln!("{name}: {total} chunks, as one process wrote them");
    }

    // The corpus changes: one file edited, one deleted. Shards with incremental cleanup, then the
    // final pass with full cleanup, leave what one full-cleanup run leaves.
    std::fs::write(corpus.join("traits.md"), "# traits\n\nTraits were rewritten: one short paragraph now.")
        .unwrap();
    std::fs::remove_file(corpus.join("macros.md")).unwrap();
    let one = summary(&catena(&ingest_args(corpus_arg, single_arg, "full")));
    assert!(one["deleted"].as_u64().unwrap() >= 3, "{one}");
    let reference = contents(&LanceDbStore::open(single.to_string_lossy(), "chunks").await.unwrap()).await;
    // The handles opened before stay open, as an application's would: LanceDB's see what other
    // processes committed once READ_CONSISTENCY has passed, PostgreSQL's at once.
    for (name, store) in &stores {
        let workers_left = {
            let out = sharded(corpus_arg, name, "full", 11);
            out["stored"].as_u64().unwrap()
        };
        assert_eq!(workers_left as usize, reference.len(), "{name}");
        tokio::time::sleep(catena::retrievers::READ_CONSISTENCY + std::time::Duration::from_millis(200))
            .await;
        assert_same(&reference, &contents(store.as_ref()).await);
    }

    // Bad shard arguments are refused before any work.
    let bad = catena(&["ingest", corpus_arg, "--store", &lance, "--shard", "5/4"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("1 <= K <= N"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let full = catena(&["ingest", corpus_arg, "--store", &lance, "--shard", "1/4", "--cleanup", "full"]);
    assert!(!full.status.success());
    assert!(
        String::from_utf8_lossy(&full.stderr).contains("without --shard"),
        "{}",
        String::from_utf8_lossy(&full.stderr)
    );
}
