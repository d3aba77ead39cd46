"""Reference outputs of LangChain's RecursiveCharacterTextSplitter (langchain-text-splitters 1.1.3)
for randomly generated texts and settings, so catena's splitter can be checked for identical chunks
and start indices without Python at test time.

Usage: python langchain_splitter_cases.py OUT.json  (needs langchain-text-splitters==1.1.3;
benches/setup-python.sh installs it). The seed is fixed: the file is reproducible.
"""
import json
import random
import sys

from langchain_text_splitters import RecursiveCharacterTextSplitter

WORDS = ["the", "splitter", "cuts", "text", "into", "chunks", "über", "naïve", "東京", "データ", "🙂",
         "a", "longerwordwithoutspaces", "x", "Rust", "ownership", "\t", "end."]
SEPS = ["\n\n", "\n", " ", "  ", "\u3000", "\x1f", "\xa0"]


def random_text(rng):
    parts = []
    for _ in range(rng.randint(0, 120)):
        parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SEPS) if rng.random() < 0.35 else " ")
    text = "".join(parts)
    if rng.random() < 0.1:
        text = "".join(rng.choice("abc東京 ") for _ in range(rng.randint(0, 200)))  # CJK-ish, few spaces
    return text


def main():
    rng = random.Random(20261127)
    cases = []
    for i in range(400):
        chunk_size = rng.choice([1, 2, 5, 10, 17, 40, 100, 400])
        chunk_overlap = rng.randint(0, chunk_size // 2) if chunk_size > 1 else 0
        keep = rng.choice([True, "start", "end", False])
        strip = rng.random() < 0.8
        separators = rng.choice([None, ["\n\n", "\n", " ", ""], [" ", ""], ["\n"], ["东", "", " "]])
        kwargs = dict(chunk_size=chunk_size, chunk_overlap=chunk_overlap, keep_separator=keep,
                      strip_whitespace=strip, add_start_index=True)
        if separators is not None:
            kwargs["separators"] = separators
        text = random_text(rng)
        docs = RecursiveCharacterTextSplitter(**kwargs).create_documents([text])
        cases.append({
            "text": text, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
            "keep_separator": "start" if keep is True else ("none" if keep is False else keep),
            "strip_whitespace": strip, "separators": separators,
            "chunks": [d.page_content for d in docs],
            "start_index": [d.metadata["start_index"] for d in docs],
        })
    with open(sys.argv[1], "w") as f:
        json.dump({"generator": "langchain-text-splitters 1.1.3, benches/reference/langchain_splitter_cases.py",
                   "cases": cases}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
