//! `catena query`: ask an ingested store, with any retriever and reranker, optionally answered
//! by the local chat model with numbered citations.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use catena::core::{
    ChatModel, Embedder, Error, Reranker, Result, Retriever, RunContext, Runnable, ScoredDocument,
};
use catena::models::LlamaEmbedder;
use catena::retrievers::LanceKeywordRetriever;
use catena::retrievers::{CitedAnswer, citation};
use catena::retrievers::{
    EmbeddingsFilter, EnsembleRetriever, HydeRetriever, LanceDbStore, LlmListwiseReranker,
    LlmRelevanceReranker, MmrRetriever, MultiQueryRetriever, RerankingRetriever, VectorStoreRetriever,
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
    /// Keywords (BM25 over LanceDB's full-text index).
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
    question: String,
    /// The store folder written by `catena ingest`.
    #[arg(long)]
    store: PathBuf,
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
    let uri = args.store.to_string_lossy().into_owned();
    let store = Arc::new(LanceDbStore::open(uri, &args.collection).await?);
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let needs_chat = args.answer
        || matches!(args.retriever, RetrieverKind::Hyde | RetrieverKind::MultiQuery | RetrieverKind::Fusion)
        || matches!(args.rerank, RerankKind::Llm | RerankKind::Listwise);
    let chat: Option<Arc<dyn ChatModel>> =
        if needs_chat { Some(Arc::new(crate::chat_model(&args.model).await?)) } else { None };
    let model = || chat.clone().ok_or_else(|| Error::invalid_input("this retriever needs the chat model"));

    // Rerankers look at a wider candidate list than they return.
    let fetch = if args.rerank == RerankKind::None { args.k } else { (args.k * 3).max(10) };
    let similarity: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(fetch));
    let keywords: Arc<dyn Retriever> = Arc::new(LanceKeywordRetriever::new(store.clone()).with_k(fetch));
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
    if !args.answer {
        let mut hits = retriever.retrieve(&args.question, &ctx).await?;
        hits.truncate(args.k);
        show(&args, &hits, None);
        return Ok(());
    }
    // The library's cited-answer chain: the sources arrive first, then the answer as it is
    // generated.
    let chain = CitedAnswer::new(retriever, model()?).with_k(args.k).with_max_tokens(args.max_tokens);
    let mut pieces = chain.stream(args.question.clone(), &ctx);
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
