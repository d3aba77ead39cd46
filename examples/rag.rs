//! Retrieval-augmented generation over this repository's own documentation, fully offline.
//!
//! Run it with a question:
//!
//! ```text
//! cargo run --example rag -- "How do I split documents?"
//! ```
//!
//! The program reads top to bottom as the pipeline runs: load -> split -> embed -> store, then
//! one chain (retrieve -> numbered sources -> prompt -> model) streams the answer, and the
//! sources it cited are listed.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use catena::prelude::*;
use catena::retrievers::{CitedAnswer, citation};
use futures::StreamExt;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> catena::core::Result<()> {
    let question = std::env::args().nth(1).unwrap_or_else(|| "How do I split documents?".to_owned());
    let ctx = RunContext::new();

    // 1. Load: the README and every Markdown page of the book in docs/. A file that fails to load
    //    is reported and skipped; the rest still count.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut documents = TextLoader::new(root.join("README.md")).invoke((), &ctx).await?;
    let book = DirectoryLoader::new(root.join("docs")).with_extensions(["md"]);
    let mut pages = book.load(&ctx);
    while let Some(page) = pages.next().await {
        match page {
            Ok(doc) => documents.push(doc),
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    drop(pages);

    // Sources are shown to the model and to you relative to the repository root.
    for doc in &mut documents {
        let relative = source_name(doc, root);
        doc.metadata.insert("source".into(), relative.into());
    }

    // 2. Split into overlapping chunks small enough to embed and to quote in a prompt.
    let splitter = RecursiveCharacterSplitter::new(800, 100)?.with_start_index(true);
    let chunks = splitter.split_documents(&documents)?;
    eprintln!("loaded {} files, {} chunks", documents.len(), chunks.len());

    // 3. Embed and store. The default embedding model (all-MiniLM-L6-v2) runs in this process;
    //    it is fetched and converted on first use.
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    index_documents(&chunks, embedder.as_ref(), store.as_ref(), 32, &ctx).await?;

    // 4. Retrieve and answer in one chain: the four chunks closest to the question are numbered
    //    into the prompt, and the default local chat model (SmolLM2-135M-Instruct) answers from
    //    them, citing them as [1], [2]. Streaming the chain gives the sources first, then the
    //    answer's tokens as they are generated.
    let retriever = Arc::new(VectorStoreRetriever::new(store, embedder).with_k(4));
    let model = Arc::new(LlamaChatModel::load_default().await?);
    let chain = CitedAnswer::new(retriever, model).with_max_tokens(300);

    let mut pieces = chain.stream(question, &ctx);
    let mut sources = Vec::new();
    let mut stdout = std::io::stdout();
    while let Some(piece) = pieces.next().await {
        let piece = piece?;
        if !piece.sources.is_empty() {
            sources = piece.sources;
        }
        let _ = stdout.write_all(piece.text.as_bytes());
        let _ = stdout.flush();
    }
    println!("\n\nSources:");
    for (i, hit) in sources.iter().enumerate() {
        println!("  [{}] {} (similarity {:.2})", i + 1, citation(&hit.document), hit.score);
    }
    Ok(())
}

/// The document's source, relative to the repository root.
fn source_name(doc: &Document, root: &Path) -> String {
    let source = doc.source().unwrap_or("?");
    Path::new(source).strip_prefix(root).map_or_else(|_| source.to_owned(), |p| p.display().to_string())
}
