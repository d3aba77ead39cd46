//! A 1 GB text file streams through the text loader in parts with bounded memory. In its own test
//! binary, so the process's peak memory is this test's alone.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, missing_docs)]

use std::io::Write;

use catena_core::{Loader, RunContext};
use catena_loaders::{DEFAULT_MAX_DOCUMENT_BYTES, TextLoader};
use futures::StreamExt;

fn peak_rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1gb_file_is_streamed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.log");
    let line = "2026-11-27T09:00:00Z INFO request served in 12 ms, nothing to report here\n";
    let block = line.repeat((1 << 20) / line.len());
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut written = 0u64;
    while written < 1 << 30 {
        file.write_all(block.as_bytes()).unwrap();
        written += block.len() as u64;
    }
    file.flush().unwrap();
    drop(file);

    let (mut parts, mut bytes) = (0usize, 0u64);
    let (loader, ctx) = (TextLoader::new(&path), RunContext::new());
    let mut stream = loader.load(&ctx);
    while let Some(doc) = stream.next().await {
        let doc = doc.unwrap();
        assert_eq!(doc.metadata["part"], parts);
        assert!(doc.content.ends_with('\n'));
        bytes += doc.content.len() as u64;
        parts += 1;
    }
    assert_eq!(bytes, written, "every byte arrives exactly once");
    assert!(parts >= (written / DEFAULT_MAX_DOCUMENT_BYTES as u64) as usize);
    // A part is 32 MiB; a few in flight (reader, channel, consumer) stay far below the file size.
    let peak = peak_rss_mb();
    assert!(peak < 600, "peak resident memory {peak} MB while streaming a 1 GB file");
}
