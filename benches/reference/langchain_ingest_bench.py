"""LangChain's ingest of a folder, the reference for `catena ingest` (benches/ingest_race.sh).

What a LangChain user writes for the same job: a loader per file type (TextLoader for markdown
and text, BSHTMLLoader, PyPDFLoader, CSVLoader, JSONLoader over JSON lines), the
RecursiveCharacterTextSplitter with catena's defaults (1,000 characters, 100 overlap),
LlamaCppEmbeddings on the same MiniLM GGUF, and the LanceDB vector store on disk. Prints one JSON
line with the wall time (model load included, as catena's is), chunks/s and the time per stage;
embedding time is measured inside the embedder, so "write" is the store's share of the add.

usage: langchain_ingest_bench.py CORPUS_DIR EMBED_GGUF STORE_DIR [THREADS]
"""

import json
import os
import sys
import time

started = time.perf_counter()

from langchain_community.document_loaders import (  # noqa: E402
    BSHTMLLoader,
    CSVLoader,
    JSONLoader,
    PyPDFLoader,
    TextLoader,
)
from langchain_community.embeddings import LlamaCppEmbeddings  # noqa: E402
from langchain_community.vectorstores import LanceDB  # noqa: E402
from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

imported = time.perf_counter()


def loader_for(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".md", ".txt"):
        return TextLoader(path, encoding="utf-8")
    if ext in (".html", ".htm"):
        return BSHTMLLoader(path, open_encoding="utf-8")
    if ext == ".pdf":
        return PyPDFLoader(path)
    if ext == ".csv":
        return CSVLoader(path, encoding="utf-8")
    if ext == ".jsonl":
        return JSONLoader(path, jq_schema=".", json_lines=True, text_content=False)
    raise ValueError(f"no loader for {path}")


class TimedEmbeddings:
    """Passes calls to the embedder and adds up the time they take."""

    def __init__(self, inner):
        self.inner = inner
        self.spent = 0.0

    def embed_documents(self, texts):
        t = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.spent += time.perf_counter() - t

    def embed_query(self, text):
        return self.inner.embed_query(text)


def main():
    corpus, gguf, store = sys.argv[1], sys.argv[2], sys.argv[3]
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else os.cpu_count()
    files = sorted(os.path.join(corpus, f) for f in os.listdir(corpus))
    size = sum(os.path.getsize(f) for f in files)

    t = time.perf_counter()
    docs = []
    for f in files:
        docs.extend(loader_for(f).load())
    load = time.perf_counter() - t

    t = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=100)
    chunks = splitter.split_documents(docs)
    split = time.perf_counter() - t

    t = time.perf_counter()
    inner = LlamaCppEmbeddings(model_path=gguf, n_threads=threads, n_ctx=512, n_batch=512, verbose=False)
    model_load = time.perf_counter() - t
    embedder = TimedEmbeddings(inner)

    t = time.perf_counter()
    # Batches of 64 texts per add, as catena's default --batch-size embeds them. LangChain's LanceDB
    # store fixes the table's schema from its first add, and each loader writes other metadata keys
    # (PyPDFLoader `page`, CSVLoader `row`, JSONLoader `seq_num`), so a mixed corpus fails at the
    # first file of a second type ("field 'seq_num' does not exist in table schema"): like a user,
    # the bench keeps the key every loader writes.
    db = LanceDB(embedding=embedder, uri=store, table_name="chunks", mode="append")
    for i in range(0, len(chunks), 64):
        batch = chunks[i : i + 64]
        db.add_texts(
            [c.page_content for c in batch], metadatas=[{"source": c.metadata.get("source", "")} for c in batch]
        )
    index = time.perf_counter() - t
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "impl": "langchain",
                "files": len(files),
                "bytes": size,
                "documents": len(docs),
                "chunks": len(chunks),
                "stored": db.get_table().count_rows(),
                "seconds": elapsed,
                "chunks_per_second": len(chunks) / elapsed,
                "stages": {
                    "imports": imported - started,
                    "load": load,
                    "split": split,
                    "model_load": model_load,
                    "embed": embedder.spent,
                    "write": index - embedder.spent,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
