"""The langchain-text-splitters side of splitters/benches/recursive.rs: the same corpus files, the
same settings (chunk sizes 256 and 1000, overlap 10%, defaults otherwise), median of 3 runs.

Usage: python langchain_splitter_bench.py CORPUS_DIR
"""
import json
import pathlib
import sys
import time

from langchain_text_splitters import RecursiveCharacterTextSplitter

for path in sorted(pathlib.Path(sys.argv[1]).glob("*.txt")):
    text = path.read_text(encoding="utf-8")
    size_bytes = len(text.encode("utf-8"))
    for size in (256, 1000):
        splitter = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=size // 10)
        secs = []
        for _ in range(3):
            start = time.perf_counter()
            chunks = len(splitter.split_text(text))
            secs.append(time.perf_counter() - start)
        secs.sort()
        print(json.dumps({"impl": "langchain", "corpus": path.stem, "bytes": size_bytes, "chunk_size": size,
                          "chunks": chunks, "mb_s": size_bytes / 1e6 / secs[1]}))
