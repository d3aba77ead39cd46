//! `catena query`: ask an ingested store, with any retriever and reranker, optionally answered
//! by the local chat model with numbered citations.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use catena::core::{
    ChatModel, Embedder, Error, Reranker, Result, Retriever, RunContext, Runnable, ScoredDocument,
};
use catena::models::LlamaEmbedder;
use catena::retrievers::{CitedAnswer, citation};
use catena::retrievers::{
    EmbeddingsFilter, EnsembleRetriever, HydeRetriever, LlmListwiseReranker, LlmRelevanceReranker,
    MmrRetriever, MultiQueryRetriever, RerankingRetriever, VectorStoreRetriever,
};
use clap::{Args, ValueEnum};
use futures::StreamExt;

/// How `catena query` retrieves.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RetrieverKind {
    /// Nearest chunks by embedding.
    Similarity,
    /// Maximal marginal relevance: relevant and varied.
    Mmr,
    /// Keywords (LanceDB's BM25 full-text index, or PostgreSQL's full-text search).
    Bm25,
    /// BM25 and similarity fused by reciprocal rank.
    Hybrid,
    /// Search with the embedding of a passage the chat model imagines.
    Hyde,
    /// Search with three rephrasings by the chat model; union of results.
    MultiQuery,
    /// RAG-fusion: rephrasings plus the question, fused by reciprocal rank.
    Fusion,
}

/// How `catena query` reranks.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RerankKind {
    /// Keep the retriever's order.
    None,
    /// The chat model rates each result 0-10.
    Llm,
    /// The chat model orders all results at once.
    Listwise,
    /// Embedding similarity to the question.
    Embeddings,
}

/// `catena query` options.
#[derive(Args)]
pub(crate) struct QueryArgs {
    /// The question.
    #[arg(required_unless_present = "queries")]
    question: Option<String>,
    /// Ask every question in FILE instead, with the models loaded and the store opened once,
    /// and write a TREC run (`catena eval retrieval --run`). FILE holds one question per line:
    /// JSONL (`{"_id": "1", "text": "..."}` as BEIR writes them; `id`/`query_id` and
    /// `question`/`query` work too), TSV (`id<TAB>question`) or plain lines (numbered from 1).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["question", "answer", "json"])]
    queries: Option<PathBuf>,
    /// Where `--queries` writes its TREC run (`query Q0 document rank score tag`); stdout if
    /// not given.
    #[arg(long, value_name = "OUT", requires = "queries")]
    run: Option<PathBuf>,
    /// Name documents in the run by this metadata field (e.g. `source`, or a field ingested from
    /// JSON) instead of by chunk id; a document's best chunk gives its rank and score (three
    /// times -k chunks are retrieved to find -k documents).
    #[arg(long, value_name = "FIELD", requires = "queries")]
    run_doc: Option<String>,
    /// The tag (last column) of the run's lines.
    #[arg(long, default_value = "catena", requires = "queries")]
    run_tag: String,
    /// The store written by `catena ingest`: a LanceDB folder or URI, or a `postgres://` URL.
    #[arg(long)]
    store: String,
    /// The collection inside the store.
    #[arg(long, default_value = "chunks")]
    collection: String,
    /// How to retrieve.
    #[arg(long, short, value_enum, default_value_t = RetrieverKind::Hybrid)]
    retriever: RetrieverKind,
    /// How to rerank the retrieved chunks.
    #[arg(long, value_enum, default_value_t = RerankKind::None)]
    rerank: RerankKind,
    /// How many results.
    #[arg(short, default_value_t = 4)]
    k: usize,
    /// Also answer the question from the results with the local chat model, citing them as [n].
    #[arg(long)]
    answer: bool,
    /// The chat model that answers (and writes HyDE passages, query variants, rerank verdicts):
    /// `chat` (small, fast), `agent` (Qwen2.5-Coder 1.5B, better answers), `agent-small`, or a
    /// GGUF path.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// Most tokens in the answer.
    #[arg(long, default_value_t = 400)]
    max_tokens: u32,
    /// Search as this principal: `alice`, or `alice,hr,eng` (a user, then its groups). Only
    /// chunks whose access list (`catena ingest --access`) names one of them, or `*`, are
    /// returned; the condition is part of the store query.
    #[arg(long = "as", value_delimiter = ',', value_name = "USER[,GROUP...]")]
    principal: Vec<String>,
    /// Print the results (and answer) as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `catena query`.
pub(crate) async fn query(args: QueryArgs) -> Result<()> {
    if args.k == 0 {
        return Err(Error::invalid_input("-k must be at least 1"));
    }
    let opened = crate::store::Store::open(&args.store, &args.collection).await?;
    let store = opened.vectors();
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let needs_chat = args.answer
        || matches!(args.retriever, RetrieverKind::Hyde | RetrieverKind::MultiQuery | RetrieverKind::Fusion)
        || matches!(args.rerank, RerankKind::Llm | RerankKind::Listwise);
    let chat: Option<Arc<dyn ChatModel>> =
        if needs_chat { Some(Arc::new(crate::chat_model(&args.model).await?)) } else { None };
    let model = || chat.clone().ok_or_else(|| Error::invalid_input("this retriever needs the chat model"));

    // Rerankers look at a wider candidate list than they return.
    let fetch = if args.rerank == RerankKind::None { args.k } else { args.k.saturating_mul(3).max(10) };
    // A run by document keeps each document's best chunk: look at more chunks than documents.
    let fetch = if args.run_doc.is_some() { fetch.max(args.k.saturating_mul(3)) } else { fetch };
    let similarity: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(fetch));
    let keywords = opened.keywords(fetch);
    let hybrid: Arc<dyn Retriever> =
        Arc::new(EnsembleRetriever::new(vec![keywords.clone(), similarity.clone()]).with_k(fetch));
    let retriever: Arc<dyn Retriever> = match args.retriever {
        RetrieverKind::Similarity => similarity,
        RetrieverKind::Mmr => Arc::new(MmrRetriever::new(store.clone(), embedder.clone()).with_k(fetch)),
        RetrieverKind::Bm25 => keywords,
        RetrieverKind::Hybrid => hybrid,
        RetrieverKind::Hyde => {
            Arc::new(HydeRetriever::new(model()?, embedder.clone(), store.clone()).with_k(fetch))
        }
        RetrieverKind::MultiQuery => Arc::new(MultiQueryRetriever::new(model()?, hybrid).with_k(fetch)),
        RetrieverKind::Fusion => Arc::new(MultiQueryRetriever::rag_fusion(model()?, hybrid).with_k(fetch)),
    };
    let reranker: Option<Arc<dyn Reranker>> = match args.rerank {
        RerankKind::None => None,
        RerankKind::Llm => Some(Arc::new(LlmRelevanceReranker::new(model()?).with_min_rating(0))),
        RerankKind::Listwise => Some(Arc::new(LlmListwiseReranker::new(model()?))),
        RerankKind::Embeddings => {
            Some(Arc::new(EmbeddingsFilter::new(embedder.clone()).with_k(None).with_threshold(-1.0)))
        }
    };
    let retriever: Arc<dyn Retriever> = match reranker {
        Some(r) => Arc::new(RerankingRetriever::new(retriever, r).with_top_n(args.k)),
        None => retriever,
    };

    let mut ctx = RunContext::new();
    if let Some((user, groups)) = args.principal.split_first() {
        let mut principal = catena::core::security::Principal::new(user)?;
        for group in groups {
            principal = principal.with_group(group)?;
        }
        ctx = ctx.with_extension(principal);
    }
    if let Some(file) = &args.queries {
        return batch(&args, file, retriever.as_ref(), &ctx).await;
    }
    let question = args.question.clone().unwrap_or_default();
    if !args.answer {
        let mut hits = retriever.retrieve(&question, &ctx).await?;
        hits.truncate(args.k);
        show(&args, &hits, None);
        return Ok(());
    }
    // The library's cited-answer chain: the sources arrive first, then the answer as it is
    // generated.
    let chain = CitedAnswer::new(retriever, model()?).with_k(args.k).with_max_tokens(args.max_tokens);
    let mut pieces = chain.stream(question, &ctx);
    let mut hits = Vec::new();
    let mut answer = String::new();
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        if answer.is_empty() && !piece.sources.is_empty() {
            hits = piece.sources;
            if !args.json {
                show(&args, &hits, None);
                println!("\nanswer:");
            }
        }
        if !args.json {
            print!("{}", piece.text);
            std::io::stdout().flush().map_err(Error::from)?;
        }
        answer.push_str(&piece.text);
    }
    if args.json {
        show(&args, &hits, Some(&answer));
    } else {
        println!();
        // What the answer used, on stderr so that the answer alone can be piped on.
        eprintln!("({})", ctx.usage());
    }
    Ok(())
}

/// Questions asked at once: the embedder batches their texts and the store's searches overlap.
const IN_FLIGHT: usize = 8;

/// `catena query --queries FILE`: every question through the one retriever, the TREC run written
/// as the answers come (in the file's order), a progress bar on stderr.
async fn batch(args: &QueryArgs, file: &Path, retriever: &dyn Retriever, ctx: &RunContext) -> Result<()> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file, e))?;
    let questions =
        read_questions(&text).map_err(|why| Error::invalid_input(format!("{}: {why}", file.display())))?;
    if questions.is_empty() {
        return Err(Error::invalid_input(format!("{}: no questions in the file", file.display())));
    }
    let mut out: Box<dyn Write> = match &args.run {
        Some(path) => {
            Box::new(std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?))
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let bar = indicatif::ProgressBar::new(questions.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} questions ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut answers = futures::stream::iter(questions.iter())
        .map(|(id, question)| async move { (id, retriever.retrieve(question, ctx).await) })
        .buffered(IN_FLIGHT);
    let mut lines = 0usize;
    while let Some((id, hits)) = answers.next().await {
        let hits = match hits {
            Ok(hits) => hits,
            Err(e) => {
                bar.finish_and_clear();
                eprintln!("question {id} failed; the run written so far stops before it");
                return Err(e);
            }
        };
        let ranked = run_documents(hits, args.run_doc.as_deref(), args.k);
        let written = catena::eval::trec::format_run(id, &ranked, &args.run_tag)
            .map_err(|why| Error::invalid_input(format!("question {id}: {why}")))?;
        out.write_all(written.as_bytes()).map_err(Error::from)?;
        lines += ranked.len();
        bar.inc(1);
    }
    out.flush().map_err(Error::from)?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} questions, {lines} run lines in {secs:.1} s ({:.1} questions/s){}",
        questions.len(),
        questions.len() as f64 / secs.max(1e-9),
        args.run.as_ref().map(|p| format!(", written to {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

/// The ranked documents of one question for the run: by chunk id, or by `field` with each
/// document's best chunk (results come best first, so the first sighting wins); at most `k`.
fn run_documents(hits: Vec<ScoredDocument>, field: Option<&str>, k: usize) -> Vec<(String, f64)> {
    let mut seen = std::collections::HashSet::new();
    hits.into_iter()
        .filter_map(|h| {
            let name = match field {
                None => h.document.id.clone()?,
                Some(field) => match h.document.metadata.get(field)? {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                },
            };
            seen.insert(name.clone()).then_some((name, f64::from(h.score)))
        })
        .take(k)
        .collect()
}

/// `(id, question)` pairs from a questions file: JSONL, TSV or plain lines (see `--queries`).
fn read_questions(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut questions = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let (id, question) = if line.trim_start().starts_with('{') {
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
            let field = |names: &[&str]| {
                names.iter().find_map(|name| match value.get(*name)? {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Number(x) => Some(x.to_string()),
                    _ => None,
                })
            };
            let question = field(&["text", "question", "query"])
                .ok_or_else(|| format!("line {}: no \"text\", \"question\" or \"query\" string", n + 1))?;
            (field(&["_id", "id", "query_id", "qid"]).unwrap_or_else(|| (n + 1).to_string()), question)
        } else if let Some((id, question)) = line.split_once('\t') {
            // A header row (`query-id<TAB>text`, as BEIR's TSV files start) is not a question.
            if n == 0 && matches!(id.trim(), "query-id" | "query_id" | "qid" | "id" | "_id") {
                continue;
            }
            (id.trim().to_owned(), question.trim().to_owned())
        } else {
            ((n + 1).to_string(), line.trim().to_owned())
        };
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(format!(
                "line {}: the question id {id:?} is empty or has spaces, which a TREC run cannot hold",
                n + 1
            ));
        }
        if question.trim().is_empty() {
            return Err(format!("line {}: question {id} is empty", n + 1));
        }
        if !ids.insert(id.clone()) {
            return Err(format!("line {}: question id {id} appears twice", n + 1));
        }
        questions.push((id, question));
    }
    Ok(questions)
}

/// Prints the results: ranked lines with citations and previews, or (with `--json`) one object
/// with the results and the answer.
fn show(args: &QueryArgs, hits: &[ScoredDocument], answer: Option<&str>) {
    if hits.is_empty() {
        eprintln!("no results: is the collection empty, or is the question unrelated to it?");
    }
    if args.json {
        let results: Vec<serde_json::Value> = hits
            .iter()
            .map(|h| serde_json::json!({"id": h.document.id, "score": h.score, "content": h.document.content, "metadata": h.document.metadata}))
            .collect();
        println!("{}", serde_json::json!({"question": args.question, "results": results, "answer": answer}));
        return;
    }
    for (i, h) in hits.iter().enumerate() {
        println!("[{}] {:.4}  {}", i + 1, h.score, citation(&h.document));
        let preview: String = h.document.content.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview: String = preview.chars().take(240).collect();
        println!("    {preview}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use catena::core::Document;

    #[test]
    fn questions_read_from_jsonl_tsv_and_plain_lines() {
        let jsonl = "{\"_id\": \"1\", \"text\": \"what is lift ?\"}\n\n{\"id\": 7, \"question\": \"drag\"}\n{\"query\": \"no id\"}\n";
        assert_eq!(
            read_questions(jsonl).unwrap(),
            vec![
                ("1".into(), "what is lift ?".into()),
                ("7".into(), "drag".into()),
                ("4".into(), "no id".into())
            ]
        );
        let tsv = "query-id\ttext\nq1\tfirst question\r\nq2\tsecond\n";
        assert_eq!(
            read_questions(tsv).unwrap(),
            vec![("q1".into(), "first question".into()), ("q2".into(), "second".into())]
        );
        assert_eq!(read_questions("alpha\nbeta\n").unwrap()[1], ("2".into(), "beta".into()));
        for (bad, why) in [
            ("{\"_id\": \"1\"}", "no \"text\""),
            ("{not json", "not JSON"),
            ("a b\tquestion", "has spaces"),
            ("q1\t  ", "is empty"),
            ("q1\tone\nq1\ttwo", "appears twice"),
        ] {
            let err = read_questions(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn run_names_documents_by_chunk_id_or_by_their_best_chunk() {
        let hit = |id: &str, source: &str, score: f32| {
            ScoredDocument::new(Document::new("x").with_id(id).with_metadata("source", source), score)
        };
        let hits = vec![
            hit("c1", "a.md", 0.9),
            hit("c2", "b.md", 0.8),
            hit("c3", "a.md", 0.7),
            hit("c4", "c.md", 0.6),
        ];
        let by_chunk = run_documents(hits.clone(), None, 3);
        assert_eq!(by_chunk.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["c1", "c2", "c3"]);
        let by_file = run_documents(hits, Some("source"), 10);
        assert_eq!(by_file.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["a.md", "b.md", "c.md"]);
        assert!((by_file[0].1 - 0.9).abs() < 1e-6);
    }
}
