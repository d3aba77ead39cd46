//! Retrieval-augmented generation over this repository's own documentation, fully offline.
//!
//! Run it with a question:
//!
//! ```text
//! cargo run --example rag -- "How do I split documents?"
//! ```
//!
//! The program reads top to bottom as the pipeline runs: load -> split -> embed -> store ->
//! retrieve -> prompt -> model -> streamed answer, then the sources it used.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use catena::prelude::*;
use futures::StreamExt;
use serde_json::json;

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

    // 2. Split into overlapping chunks small enough to embed and to quote in a prompt.
    let splitter = RecursiveCharacterSplitter::new(800, 100)?.with_start_index(true);
    let chunks = splitter.split_documents(&documents)?;
    eprintln!("loaded {} files, {} chunks", documents.len(), chunks.len());

    // 3. Embed and store. The default embedding model (all-MiniLM-L6-v2) runs in this process;
    //    it is fetched and converted on first use.
    let embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let store: Arc<dyn VectorStore> = Arc::new(InMemoryVectorStore::new());
    index_documents(&chunks, embedder.as_ref(), store.as_ref(), 32, &ctx).await?;

    // 4. Retrieve the chunks closest to the question.
    let retriever = VectorStoreRetriever::new(store, embedder).with_k(4);
    let hits = retriever.retrieve(&question, &ctx).await?;
    let context = hits
        .iter()
        .enumerate()
        .map(|(i, h)| format!("[{}] ({})\n{}", i + 1, source_name(&h.document, root), h.document.content))
        .collect::<Vec<_>>()
        .join("\n\n");

    // 5. Answer: a prompt template, the default local chat model (SmolLM2-135M-Instruct) and a
    //    parser, piped into one chain. Streaming the chain streams the model's tokens.
    let prompt = ChatPromptTemplate::new()
        .system(
            "You answer questions about the catena library using only the context below. \
             Be brief, and cite sources like [1].\n\nContext:\n{context}",
        )?
        .user("{question}")?;
    let model = LlamaChatModel::load_default().await?;
    let chain = prompt.pipe(model).pipe(StrOutputParser);

    let mut tokens = chain.stream(json!({"context": context, "question": question}), &ctx);
    let mut stdout = std::io::stdout();
    while let Some(piece) = tokens.next().await {
        let _ = stdout.write_all(piece?.as_bytes());
        let _ = stdout.flush();
    }
    println!("\n\nSources:");
    for (i, h) in hits.iter().enumerate() {
        let start = h.document.metadata.get("start_index").and_then(serde_json::Value::as_u64).unwrap_or(0);
        println!(
            "  [{}] {} (from character {start}, similarity {:.2})",
            i + 1,
            source_name(&h.document, root),
            h.score
        );
    }
    Ok(())
}

/// The document's source, relative to the repository root.
fn source_name(doc: &Document, root: &Path) -> String {
    let source = doc.source().unwrap_or("?");
    Path::new(source).strip_prefix(root).map_or_else(|_| source.to_owned(), |p| p.display().to_string())
}
