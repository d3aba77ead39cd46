//! `catena split` and `catena ingest`: files to chunks, and chunks to an indexed store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use catena::core::{Document, Embedder, Error, Event, Loader, Result, RunContext, Splitter};
use catena::loaders::{DirectoryLoader, load_file};
use catena::models::{LlamaEmbedder, LlamaTokenizer};
use catena::retrievers::{Cleanup, Indexer, Shard};
use catena::splitters::{
    KeepSeparator, Language, MarkdownHeaderSplitter, RecursiveCharacterSplitter, SemanticSplitter,
    TiktokenTokenizer, TokenSplitter,
};
use clap::{Args, ValueEnum};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// Which splitter `catena split` uses.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum SplitterKind {
    /// LangChain's recursive character splitter (separators, or a --language preset).
    Recursive,
    /// Sections under markdown headers, header path in metadata.
    Markdown,
    /// Windows of model tokens (--tokenizer).
    Token,
    /// Breakpoints between sentences whose embeddings drift apart (default embedding model).
    Semantic,
}

/// Splitter settings shared by `split` and `ingest`.
#[derive(Args)]
pub(crate) struct SplitArgs {
    /// The splitter.
    #[arg(long, value_enum, default_value = "recursive")]
    splitter: SplitterKind,
    /// Maximum chunk length (characters; tokens for --splitter token; the maximum for semantic).
    #[arg(long, default_value_t = 1000)]
    chunk_size: usize,
    /// Overlap between consecutive chunks.
    #[arg(long, default_value_t = 100)]
    chunk_overlap: usize,
    /// Where separators go: start (LangChain's default), end, or none.
    #[arg(long, default_value = "start")]
    keep_separator: String,
    /// Separators of a language (python, rust, js, ts, go, java, c, cpp, markdown, html, latex, ...).
    #[arg(long)]
    language: Option<String>,
    /// A separator, most preferred first (repeat the flag); replaces the defaults.
    #[arg(long = "separator")]
    separators: Vec<String>,
    /// Treat --separator values as regular expressions.
    #[arg(long)]
    regex: bool,
    /// Record each chunk's start offset (characters) as `start_index`.
    #[arg(long)]
    add_start_index: bool,
    /// Keep whitespace around chunks.
    #[arg(long)]
    no_strip: bool,
    /// For --splitter token: a tiktoken encoding (cl100k_base, o200k_base, ...), `embed` or
    /// `chat` (the default models' tokenizers), or a GGUF path.
    #[arg(long, default_value = "cl100k_base")]
    tokenizer: String,
}

/// A configured splitter: the synchronous ones, or the semantic one, which embeds.
enum AnySplitter {
    Sync(Box<dyn Splitter>),
    Semantic(SemanticSplitter),
}

impl AnySplitter {
    async fn split(&self, documents: &[Document], ctx: &RunContext) -> Result<Vec<Document>> {
        match self {
            AnySplitter::Sync(s) => s.split_documents(documents),
            AnySplitter::Semantic(s) => s.split_documents(documents, ctx).await,
        }
    }
}

async fn build_splitter(args: &SplitArgs, embedder: Option<Arc<dyn Embedder>>) -> Result<AnySplitter> {
    Ok(match args.splitter {
        SplitterKind::Recursive => {
            let mut s = match &args.language {
                Some(l) => RecursiveCharacterSplitter::from_language(
                    l.parse::<Language>()?,
                    args.chunk_size,
                    args.chunk_overlap,
                )?,
                None => RecursiveCharacterSplitter::new(args.chunk_size, args.chunk_overlap)?,
            };
            if !args.separators.is_empty() {
                let seps = args.separators.iter().map(|s| unescape(s));
                s = if args.regex { s.with_regex_separators(seps)? } else { s.with_separators(seps) };
            }
            let keep: KeepSeparator = args.keep_separator.parse()?;
            AnySplitter::Sync(Box::new(
                s.with_keep_separator(keep)
                    .with_start_index(args.add_start_index)
                    .with_strip_whitespace(!args.no_strip),
            ))
        }
        SplitterKind::Markdown => AnySplitter::Sync(Box::new(MarkdownHeaderSplitter::default())),
        SplitterKind::Token => {
            let tokenizer: Arc<dyn catena::core::Tokenizer> = match args.tokenizer.as_str() {
                "embed" => Arc::new(LlamaTokenizer::load_default_embed().await?),
                "chat" => Arc::new(LlamaTokenizer::load_default_chat().await?),
                path if path.ends_with(".gguf") => Arc::new(LlamaTokenizer::load(Path::new(path)).await?),
                encoding => Arc::new(TiktokenTokenizer::new(encoding)?),
            };
            AnySplitter::Sync(Box::new(
                TokenSplitter::new(tokenizer, args.chunk_size, args.chunk_overlap)?
                    .with_start_index(args.add_start_index),
            ))
        }
        SplitterKind::Semantic => {
            let embedder = match embedder {
                Some(e) => e,
                None => Arc::new(LlamaEmbedder::load_default().await?),
            };
            AnySplitter::Semantic(
                SemanticSplitter::new(embedder)
                    .with_max_chunk_size(args.chunk_size)?
                    .with_start_index(args.add_start_index),
            )
        }
    })
}

/// `\n`, `\t` and `\r` in separators given on the command line.
fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r")
}

fn warnings_to_stderr(progress: Option<ProgressBar>) -> RunContext {
    RunContext::new().with_events(move |event: Event| {
        if let Event::Warning { message } = event {
            match &progress {
                Some(p) => p.println(format!("warning: {message}")),
                None => eprintln!("warning: {message}"),
            }
        }
    })
}

/// Loads FILES (folders are walked), splits them, prints one JSON object per chunk.
pub(crate) async fn split(files: Vec<PathBuf>, args: SplitArgs) -> Result<()> {
    let splitter = build_splitter(&args, None).await?;
    let ctx = warnings_to_stderr(None);
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for path in files {
        for item in load_path(&path, &ctx).await {
            let chunks = match item {
                Ok(doc) => splitter.split(&[doc], &ctx).await,
                Err(e) => Err(e),
            };
            match chunks {
                Ok(chunks) => {
                    for c in chunks {
                        let line = serde_json::json!({"content": c.content, "metadata": c.metadata});
                        match writeln!(out, "{line}") {
                            Ok(()) => {}
                            // The reader (`head`, a closed pipe) has what it wanted.
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                            Err(e) => return Err(Error::from(e)),
                        }
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {e}");
                }
            }
        }
    }
    if failed > 0 {
        return Err(Error::invalid_input(format!(
            "{failed} item(s) could not be loaded or split (see above)"
        )));
    }
    Ok(())
}

/// Every document of a file, or of every file under a folder.
async fn load_path(path: &Path, ctx: &RunContext) -> Vec<Result<Document>> {
    if path.is_dir() {
        let loader = DirectoryLoader::new(path);
        loader.load(ctx).collect().await
    } else {
        load_file(path, ctx).await
    }
}

/// `catena ingest` options.
#[derive(Args)]
pub(crate) struct IngestArgs {
    /// Files and folders to ingest.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The store: a LanceDB database folder (created if missing) or object-store URI, or a
    /// PostgreSQL database with pgvector (`postgres://user:password@host/db`), which many
    /// machines can share.
    #[arg(long)]
    store: String,
    /// The table (collection) inside the store.
    #[arg(long, default_value = "chunks")]
    collection: String,
    /// What to delete after indexing: `none`; `incremental` (old chunks of the files ingested
    /// now); `full` (every chunk this run did not produce). Unchanged chunks are never embedded
    /// again.
    #[arg(long, default_value = "incremental")]
    cleanup: Cleanup,
    /// Texts per embedding call.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Who may read what this run ingests: users and groups, comma-separated (`*` for
    /// everyone), kept as each chunk's `access` list. A query run `--as` a principal sees only
    /// chunks whose list names it or one of its groups; chunks without a list are hidden from
    /// principals (see docs/security.md).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    access: Vec<String>,
    /// Ingest only this worker's share of the files: worker K of N (1-based, e.g. `2/4`). N
    /// workers on N machines, given the same paths and one shared store (a `postgres://` URL,
    /// LanceDB on object storage), together write exactly what one run writes. Files are
    /// assigned by a hash of their path. Index building and `--cleanup full` need every file:
    /// after the workers, run the same command once without `--shard` (it embeds nothing
    /// already stored).
    #[arg(long, value_name = "K/N")]
    shard: Option<Shard>,
    #[command(flatten)]
    split: SplitArgs,
}

/// What loading and splitting produced besides the chunks: counts, failures, their times.
#[derive(Default)]
struct Produced {
    files_ok: usize,
    bytes: u64,
    failures: Vec<String>,
    load: Duration,
    split: Duration,
}

/// An embedder that adds up the time spent in it, so the summary can split indexing time into
/// embedding and writing.
struct TimedEmbedder {
    inner: Arc<dyn Embedder>,
    spent: std::sync::Mutex<Duration>,
}

#[catena::core::async_trait]
impl Embedder for TimedEmbedder {
    async fn embed(&self, texts: &[String], ctx: &RunContext) -> Result<Vec<Vec<f32>>> {
        let clock = Instant::now();
        let out = self.inner.embed(texts, ctx).await;
        if let Ok(mut spent) = self.spent.lock() {
            *spent += clock.elapsed();
        }
        out
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
}

/// Loads, splits, embeds (default local model) and stores; skips chunks already stored, cleans
/// up stale ones; reports progress and a summary.
pub(crate) async fn ingest(args: IngestArgs) -> Result<()> {
    let store = crate::store::shown(&args.store);
    ingest_into_store(args).await.map_err(|e| explain_full_disk(e, &store))
}

/// A full disk is the one store failure a user fixes outside catena, and the one whose message
/// (an I/O error deep in LanceDB) says least about what happens next: say it.
fn explain_full_disk(error: Error, store: &str) -> Error {
    if !error.to_string().contains("No space left on device") {
        return error;
    }
    let message = match &error {
        Error::Store { message, .. } => message.clone(),
        other => other.to_string(),
    };
    Error::store(format!(
        "{message}\nThe disk holding {store} is full. The chunks written before it filled are kept and \
         readable; free some space and run the same `catena ingest` again: it adds only what is missing."
    ))
    .with_source(error)
}

async fn ingest_into_store(args: IngestArgs) -> Result<()> {
    let started = Instant::now();
    if args.shard.is_some() && args.cleanup == Cleanup::Full {
        return Err(Error::invalid_input(
            "--cleanup full needs every file, and a shard sees only its own: run the shards with \
             --cleanup incremental, then the same command once without --shard and with --cleanup full",
        ));
    }
    let access =
        if args.access.is_empty() { None } else { Some(catena::core::security::access_list(&args.access)?) };
    let model: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let splitter = build_splitter(&args.split, Some(model.clone())).await?;
    let embedder = TimedEmbedder { inner: model, spent: std::sync::Mutex::new(Duration::ZERO) };
    let opened = crate::store::Store::connect(&args.store, &args.collection).await?;
    let store = opened.vectors();
    let mut indexer = Indexer::new(&embedder, store.as_ref(), args.cleanup);

    let mut files: Vec<PathBuf> = collect_files(&args.paths);
    if let Some(shard) = args.shard {
        files.retain(|file| shard.owns(&file.to_string_lossy()));
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ctx = warnings_to_stderr(Some(bar.clone()));

    // Two stages that overlap: loading and splitting fill batches of chunks (across files) into
    // a bounded channel while the indexer embeds and writes the batch before. The embedder runs
    // on its own threads, so the files are read and split while it works; the channel's bound
    // (two batches) keeps memory flat however large the corpus.
    let (batches, ready) = tokio::sync::mpsc::channel::<Vec<Document>>(2);
    let produce = async {
        let batches = batches;
        let mut made = Produced::default();
        let mut pending: Vec<Document> = Vec::new();
        for path in &files {
            let clock = Instant::now();
            let items = load_file(path, &ctx).await;
            made.load += clock.elapsed();
            let mut file_failed = false;
            for item in items {
                let doc = match item {
                    Ok(doc) => match &access {
                        Some(list) => doc.with_metadata(catena::core::security::ACCESS_FIELD, list.clone()),
                        None => doc,
                    },
                    Err(e) => {
                        made.failures.push(e.to_string());
                        file_failed = true;
                        continue;
                    }
                };
                made.bytes += doc.content.len() as u64;
                let clock = Instant::now();
                let chunks = splitter.split(&[doc], &ctx).await;
                made.split += clock.elapsed();
                match chunks {
                    Ok(chunks) => pending.extend(chunks.into_iter().filter(|c| !c.content.trim().is_empty())),
                    Err(e) => {
                        made.failures.push(format!("{}: {e}", path.display()));
                        file_failed = true;
                    }
                }
                while pending.len() >= args.batch_size {
                    let batch: Vec<Document> = pending.drain(..args.batch_size).collect();
                    if batches.send(batch).await.is_err() {
                        // The indexer stopped on an error, which the join reports.
                        return made;
                    }
                }
            }
            if !file_failed {
                made.files_ok += 1;
            }
            bar.inc(1);
        }
        if !pending.is_empty() {
            let _ = batches.send(pending).await;
        }
        made
    };
    let index = async {
        // Owned here, so an indexer error drops the receiver and the loader's next send fails
        // (it would wait on a full channel forever otherwise).
        let mut ready = ready;
        let (mut chunks, mut spent) = (0usize, Duration::ZERO);
        while let Some(batch) = ready.recv().await {
            chunks += batch.len();
            let clock = Instant::now();
            indexer.add(batch, &ctx).await?;
            spent += clock.elapsed();
            let rate = chunks as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("{chunks} chunks  {rate:.0} chunks/s"));
        }
        Ok::<_, Error>((chunks, spent))
    };
    let pipeline_started = Instant::now();
    let (made, indexed) = futures::join!(produce, index);
    let (chunks_total, mut index_time) = indexed?;
    let pipeline = pipeline_started.elapsed();
    let Produced { files_ok: ok, bytes, failures, load, split } = made;
    // What running the stages side by side saved: their times added up, less the time they took.
    let overlap_saved = (load + split + index_time).saturating_sub(pipeline);
    let clock = Instant::now();
    let report = indexer.finish().await?;
    // Keyword search (hybrid retrieval) needs the full-text index; an ANN index pays off only
    // for large collections (create_index decides).
    let stored = store.count().await?;
    // A shard builds no index: the others are still writing. The run without --shard does.
    if stored > 0 && args.shard.is_none() {
        opened.build_indexes().await?;
    }
    index_time += clock.elapsed();
    bar.finish_and_clear();

    let embed = embedder.spent.lock().map(|d| *d).unwrap_or_default();
    let write = index_time.saturating_sub(embed);
    let elapsed = started.elapsed().as_secs_f64();
    let rate = chunks_total as f64 / elapsed.max(1e-9);
    let summary = serde_json::json!({
        "files": files.len(), "files_ok": ok, "files_failed": files.len() - ok, "failures": failures,
        "chunks": chunks_total, "added": report.added, "skipped": report.skipped, "deleted": report.deleted,
        "stored": stored, "bytes": bytes, "seconds": elapsed,
        "chunks_per_second": rate,
        "stages": {"load": load.as_secs_f64(), "split": split.as_secs_f64(),
                   "embed": embed.as_secs_f64(), "write": write.as_secs_f64(),
                   "overlap_saved": overlap_saved.as_secs_f64()},
        "store": crate::store::shown(&args.store), "collection": args.collection,
        "shard": args.shard.map(|s| s.to_string()),
    });
    if args.json {
        println!("{summary}");
    } else {
        eprintln!(
            "ingested {} of {} files into {} chunks in {elapsed:.1} s ({:.0} chunks/s): {} added, {} unchanged, {} deleted; \
             load {:.1} s, split {:.1} s, embed {:.1} s, write {:.1} s (overlapping: {:.1} s saved)",
            ok,
            files.len(),
            chunks_total,
            rate,
            report.added,
            report.skipped,
            report.deleted,
            load.as_secs_f64(),
            split.as_secs_f64(),
            embed.as_secs_f64(),
            write.as_secs_f64(),
            overlap_saved.as_secs_f64()
        );
        for f in &failures {
            eprintln!("  failed: {f}");
        }
        let shown = crate::store::shown(&args.store);
        if let Some(shard) = args.shard {
            eprintln!(
                "shard {shard} done. When every shard has finished, run the same command once without \
                 --shard: it builds the indexes (and with --cleanup full removes files that are gone)."
            );
        }
        eprintln!(
            "store: {shown} (collection {:?}); ask it with `catena query --store {shown} \"...\"`",
            args.collection
        );
    }
    Ok(())
}

/// The files under the given paths, in order (folders walked with the directory loader's rules).
fn collect_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(DirectoryLoader::new(p).files().into_iter().filter_map(|f| match f {
                Ok(f) => Some(f),
                Err(e) => {
                    eprintln!("warning: {e}");
                    None
                }
            }));
        } else {
            files.push(p.clone());
        }
    }
    files
}
