//! Crash safety of what catena writes, tested by killing the writer with SIGKILL at moments
//! chosen at random and checking what is left.
//!
//! - A `catena ingest` into LanceDB killed at any moment and then run again leaves the store an
//!   uninterrupted ingest leaves: the same ids, each once, the same contents, readable by vector
//!   and keyword search.
//!
//! `make test` kills a few runs (`CATENA_CRASH_RUNS`, default 4); `benches/crash.sh` runs 50 and
//! prints, for each, when the kill landed and how much the killed run had written
//! (docs/reliability.md has the figures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use catena::core::{Embedder, RunContext, VectorStore};
use catena::models::LlamaEmbedder;
use catena::retrievers::LanceDbStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many killed runs each test makes.
fn runs() -> usize {
    std::env::var("CATENA_CRASH_RUNS").ok().and_then(|n| n.parse().ok()).unwrap_or(4)
}

/// The kill moments' generator, seeded by `CATENA_CRASH_SEED` or the clock (the seed is
/// printed, so a failure can be replayed).
fn random() -> StdRng {
    let seed = std::env::var("CATENA_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_secs())
    });
    eprintln!("CATENA_CRASH_SEED={seed}");
    StdRng::seed_from_u64(seed)
}

/// What a store holds: every row's id and content, and how many rows there are (more rows
/// than ids would be a duplicate).
#[derive(Debug, PartialEq, Eq)]
struct Stored {
    rows: usize,
    contents: BTreeMap<String, String>,
}

async fn stored(store: &Path) -> catena::core::Result<Stored> {
    let store = LanceDbStore::connect(store.to_string_lossy(), "chunks").await?;
    let rows = store.count().await?;
    let contents = store
        .documents(None)
        .await?
        .into_iter()
        .map(|d| (d.id.clone().unwrap_or_default(), d.content))
        .collect();
    Ok(Stored { rows, contents })
}

/// The ids a vector search and a keyword search return, so two stores can be compared as a
/// reader sees them.
async fn answers(store: &Path, embedder: &LlamaEmbedder) -> (Vec<String>, Vec<String>) {
    let store = LanceDbStore::open(store.to_string_lossy(), "chunks").await.unwrap();
    let ctx = RunContext::new();
    let query = embedder.embed_one("How do I split documents into chunks?", &ctx).await.unwrap();
    let ids = |docs: Vec<catena::core::ScoredDocument>| {
        docs.into_iter().map(|d| d.document.id.unwrap_or_default()).collect::<Vec<_>>()
    };
    let by_vector = ids(store.search(&query, 5, None).await.unwrap());
    let by_keyword = ids(store.keyword_search("splitter", 5, None).await.unwrap());
    (by_vector, by_keyword)
}

fn ingest_command(corpus: &Path, store: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_catena"));
    command
        .args(["ingest", corpus.to_str().unwrap(), "--store", store.to_str().unwrap(), "--batch-size", "4"])
        .args(["--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A corpus of a few of the repository's docs: a few dozen chunks, written in batches of 4, so
/// a kill can land before the table exists, between batches, inside one, or while the indexes
/// are built.
fn corpus(dir: &Path) -> std::path::PathBuf {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for name in ["getting-started.md", "introduction.md", "security.md"] {
        std::fs::copy(docs.join(name), corpus.join(name)).unwrap();
    }
    corpus
}

#[tokio::test]
async fn an_ingest_killed_at_any_moment_and_run_again_leaves_the_store_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let embedder = LlamaEmbedder::load_default().await.unwrap();

    let reference = dir.path().join("reference");
    let clock = Instant::now();
    let out = ingest_command(&corpus, &reference).output().unwrap();
    let whole = clock.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = stored(&reference).await.unwrap();
    assert_eq!(expected.rows, expected.contents.len(), "the reference store holds each id once");
    assert!(expected.rows >= 8, "a corpus of several batches: {} chunks", expected.rows);
    let expected_answers = answers(&reference, &embedder).await;
    eprintln!("uninterrupted ingest: {} chunks in {:.2} s", expected.rows, whole.as_secs_f64());

    let runs = runs();
    let mut random = random();
    let mut retried = 0;
    for run in 0..runs {
        // Stratified: run i is killed somewhere in the i-th slice of the ingest's duration, so
        // a few runs still spread over model loading, embedding, writing and indexing. The
        // window is half as long again as the reference took: on a loaded machine a run takes
        // longer, and a window cut short would never reach the indexing at the end. How long an
        // ingest takes varies with the load on the machine (the reference may have run slowly),
        // so a kill that lands after the ingest ended is tried again at half the time, on a
        // fresh store: every run interrupts one.
        let mut at = whole.mul_f64(1.5 * (run as f64 + random.random::<f64>()) / runs as f64);
        let store = dir.path().join(format!("killed-{run}"));
        loop {
            let _ = std::fs::remove_dir_all(&store);
            let mut child = ingest_command(&corpus, &store).spawn().unwrap();
            std::thread::sleep(at);
            let finished_first = child.try_wait().unwrap().is_some();
            child.kill().ok();
            child.wait().unwrap();
            if !finished_first {
                break;
            }
            retried += 1;
            assert!(retried < 10 * runs, "the ingests keep finishing before {at:?}");
            at /= 2;
        }
        let left = match stored(&store).await {
            Ok(s) => format!("{} rows", s.rows),
            Err(e) => format!("unreadable ({e})"),
        };

        let out = ingest_command(&corpus, &store).output().unwrap();
        assert!(
            out.status.success(),
            "run {run}: the ingest after a kill at {:.2} s failed ({left} left): {}",
            at.as_secs_f64(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got = stored(&store).await.unwrap();
        assert_eq!(got, expected, "run {run}: killed at {:.2} s with {left} written", at.as_secs_f64());
        assert_eq!(answers(&store, &embedder).await, expected_answers, "run {run}: searches differ");
        eprintln!(
            "run {run}: killed at {:.2} s, {left} left; re-run: {}",
            at.as_secs_f64(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    eprintln!("{retried} kills landed after the ingest had finished and were tried again earlier");
}

/// Runs this test binary's `child` test (an ignored one: a writer that loops until killed) with
/// `env`, kills it after `after`, and says whether it was still running.
fn kill_child(child: &str, env: &[(&str, String)], after: std::time::Duration) -> bool {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([child, "--exact", "--ignored", "--nocapture"]).stdin(Stdio::null()).stdout(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut process = command.spawn().unwrap();
    std::thread::sleep(after);
    let running = process.try_wait().unwrap().is_none();
    process.kill().ok();
    process.wait().unwrap();
    running
}

fn env_var(name: &str) -> String {
    std::env::var(name).expect("set by the parent test")
}

/// The vector the cache writer stores under key `i`: long enough (64 numbers) that a kill can
/// land inside a line, and checkable from the key alone.
fn cached_vector(i: u64) -> Vec<f32> {
    (0..64u64).map(|j| ((i * 64 + j) % 100_003) as f32 * 0.25).collect()
}

#[tokio::test]
#[ignore = "the writer child of the cache crash test, started and killed by it"]
async fn child_writes_the_cache_until_killed() {
    let cache = catena::core::EmbeddingCache::open(env_var("CATENA_CRASH_FILE")).await.unwrap();
    let start: u64 = env_var("CATENA_CRASH_START").parse().unwrap();
    for i in start.. {
        cache.put(format!("key-{i}"), cached_vector(i)).await.unwrap();
    }
}

#[tokio::test]
async fn a_cache_file_killed_while_written_keeps_every_whole_entry_and_takes_more() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("embeddings.jsonl");
    let runs = runs().max(2);
    let mut random = random();
    let mut interrupted = 0;
    for run in 0..runs {
        let after = std::time::Duration::from_millis(100 + (random.random::<f64>() * 400.0) as u64);
        let env = [
            ("CATENA_CRASH_FILE", file.display().to_string()),
            ("CATENA_CRASH_START", (run as u64 * 1_000_000).to_string()),
        ];
        interrupted += usize::from(kill_child("child_writes_the_cache_until_killed", &env, after));

        let cache = catena::core::EmbeddingCache::open(&file).await.unwrap();
        assert!(cache.skipped_lines() <= run + 1, "run {run}: {} unreadable lines", cache.skipped_lines());
        eprintln!(
            "run {run}: killed after {} ms, {} entries, {} cut lines",
            after.as_millis(),
            cache.len(),
            cache.skipped_lines()
        );
    }
    assert_eq!(interrupted, runs, "every writer was still writing when killed");

    // Every entry that reads back is whole: its vector is the one written under its key.
    let cache = catena::core::EmbeddingCache::open(&file).await.unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    let keys: Vec<u64> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|entry| entry["key"].as_str().unwrap().trim_start_matches("key-").parse().unwrap())
        .collect();
    assert!(keys.len() > runs, "the writers wrote: {} entries", keys.len());
    for key in &keys {
        assert_eq!(cache.get(&format!("key-{key}")), Some(cached_vector(*key)), "key-{key}");
    }
    // And the file still takes new entries, after a line cut short included.
    cache.put("after".into(), vec![1.0]).await.unwrap();
    drop(cache);
    let reopened = catena::core::EmbeddingCache::open(&file).await.unwrap();
    assert_eq!(reopened.get("after"), Some(vec![1.0]));
}

#[tokio::test]
#[ignore = "the writer child of the sessions crash test, started and killed by it"]
async fn child_saves_a_session_until_killed() {
    use catena::agents::{BufferMemory, SessionStore};
    use catena::core::{Memory, Message};
    let sessions = SessionStore::open(env_var("CATENA_CRASH_FILE")).await.unwrap();
    let memory = BufferMemory::new();
    sessions.load("crash", &memory).await.unwrap();
    let ctx = RunContext::new();
    for i in sessions.transcript("crash").await.unwrap().len() / 2.. {
        let turn = [Message::user(format!("question {i}")), Message::assistant(format!("answer {i}"))];
        memory.add(&turn, &ctx).await.unwrap();
        sessions.save("crash", &memory, &turn).await.unwrap();
    }
}

#[tokio::test]
async fn a_sessions_file_killed_while_saving_resumes_at_the_last_whole_turn() {
    use catena::agents::{BufferMemory, Loaded, SessionStore};
    use catena::core::Memory;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sessions.db");
    let runs = runs().max(2);
    let mut random = random();
    let mut turns = 0;
    for run in 0..runs {
        let after = std::time::Duration::from_millis(150 + (random.random::<f64>() * 400.0) as u64);
        let env = [("CATENA_CRASH_FILE", file.display().to_string())];
        assert!(
            kill_child("child_saves_a_session_until_killed", &env, after),
            "run {run}: the writer ended early"
        );

        let sessions = SessionStore::open(&file).await.unwrap();
        assert!(sessions.moved_aside().is_none(), "run {run}: the file was damaged");
        let memory = BufferMemory::new();
        let loaded = sessions.load("crash", &memory).await.unwrap();
        let transcript = sessions.transcript("crash").await.unwrap();
        if transcript.is_empty() {
            assert_eq!(loaded, Loaded::New, "run {run}");
            continue;
        }
        assert_eq!(loaded, Loaded::Resumed, "run {run}");
        // Each save is one transaction: whole turns only, in order, none lost or repeated, and
        // the memory's snapshot agrees with the transcript.
        assert_eq!(transcript.len() % 2, 0, "run {run}: half a turn saved");
        for (i, pair) in transcript.chunks(2).enumerate() {
            assert_eq!(pair[0].content, format!("question {i}"), "run {run}");
            assert_eq!(pair[1].content, format!("answer {i}"), "run {run}");
        }
        assert_eq!(memory.messages().await.unwrap(), transcript, "run {run}: snapshot and transcript differ");
        assert!(transcript.len() / 2 >= turns, "run {run}: saved turns were lost");
        turns = transcript.len() / 2;
        eprintln!("run {run}: killed after {} ms, {turns} turns saved", after.as_millis());
    }
    assert!(turns > 0, "the writers saved nothing in {runs} runs");
}

/// A tmpfs of `size` mounted on `dir`: a disk that fills up. Unmounted when dropped. `None`
/// (the test says it was skipped) where mounting is not allowed, which needs root.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        if status.is_ok_and(|s| s.success()) {
            Some(Self(dir.to_path_buf()))
        } else {
            eprintln!("skipped: cannot mount a tmpfs on {} (needs root)", dir.display());
            None
        }
    }

    /// Gives the disk `size` (the files on it stay).
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), "tmpfs"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remounting {}", self.0.display());
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn disk_usage(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { disk_usage(&entry.path()) } else { meta.len() };
    }
    total
}

#[tokio::test]
async fn an_ingest_onto_a_full_disk_fails_with_an_error_and_keeps_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = corpus(dir.path());
    let reference = dir.path().join("reference");
    let out = ingest_command(&corpus, &reference).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = stored(&reference).await.unwrap();

    // A disk with room for about half the store: the ingest runs out of space part way.
    let half = disk_usage(&reference) / 2;
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), &format!("{}k", half / 1024)) else { return };
    let store = disk.0.join("store");
    let out = ingest_command(&corpus, &store).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an ingest onto a disk of {half} bytes succeeded");
    assert!(stderr.contains("No space left on device"), "the error says the disk is full: {stderr}");
    assert!(stderr.contains("run the same `catena ingest` again"), "and what to do: {stderr}");

    // What was written before the disk filled reads back, every row as the reference has it.
    let partial = stored(&store).await.unwrap();
    assert_eq!(partial.rows, partial.contents.len(), "each id once");
    assert!(partial.rows < expected.rows);
    for (id, content) in &partial.contents {
        assert_eq!(expected.contents.get(id), Some(content), "row {id}");
    }
    eprintln!("disk of {half} bytes full: {} of {} rows written and readable", partial.rows, expected.rows);

    // Room again: the same ingest completes the store.
    disk.grow("64m");
    let out = ingest_command(&corpus, &store).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stored(&store).await.unwrap(), expected);
}

#[tokio::test]
async fn a_cache_on_a_full_disk_reports_an_io_error_and_keeps_its_file_readable() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&dir.path().join("disk"), "64k") else { return };
    let file = disk.0.join("embeddings.jsonl");
    let cache = catena::core::EmbeddingCache::open(&file).await.unwrap();
    let mut written = 0u64;
    let error = loop {
        match cache.put(format!("key-{written}"), cached_vector(written)).await {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000, "64 KiB never filled up");
    };
    assert_eq!(error.kind(), catena::core::ErrorKind::Io, "{error}");
    assert!(error.to_string().contains("embeddings.jsonl"), "the error names the file: {error}");
    // The entry that did not fit is still served from memory for this run.
    assert_eq!(cache.get(&format!("key-{written}")), Some(cached_vector(written)));
    drop(cache);

    // Every entry written before the disk filled reads back; at most the last line is cut.
    let reopened = catena::core::EmbeddingCache::open(&file).await.unwrap();
    assert!(reopened.skipped_lines() <= 1);
    for i in 0..written {
        assert_eq!(reopened.get(&format!("key-{i}")), Some(cached_vector(i)), "key-{i}");
    }
    eprintln!(
        "64 KiB disk full after {written} entries; all read back, {} cut line",
        reopened.skipped_lines()
    );
    drop(reopened);

    // With room again the file takes new entries, on a line of their own.
    disk.grow("1m");
    let cache = catena::core::EmbeddingCache::open(&file).await.unwrap();
    cache.put("after".into(), vec![1.0]).await.unwrap();
    drop(cache);
    assert_eq!(catena::core::EmbeddingCache::open(&file).await.unwrap().get("after"), Some(vec![1.0]));
}
