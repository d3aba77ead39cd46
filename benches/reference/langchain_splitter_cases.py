"""Reference outputs of LangChain's RecursiveCharacterTextSplitter (langchain-text-splitters 1.1.3)
for generated texts and settings, so catena's splitter can be checked for identical chunks and start
indices without Python at test time.

Two sets: 400 random word soups with random literal settings, and a varied corpus (prose, source
code in every preset language, markdown, CJK, emoji sequences, CRLF, control characters, a single
10k-character word, empty input) under regex separators, language presets and byte lengths.

Usage: python langchain_splitter_cases.py OUT.json  (needs langchain-text-splitters==1.1.3;
benches/setup-python.sh installs it). The seed is fixed: the file is reproducible.
"""
import json
import random
import sys

from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

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


def code_text(rng, language):
    """Lines that start with the language's own separator keywords, so presets have work to do."""
    keywords = [s.replace("\\", "").lstrip("\n") for s in RecursiveCharacterTextSplitter
                .get_separators_for_language(language) if s.startswith("\n") and len(s) > 2]
    keywords = keywords or ["<div>", "<p>", "$x$", "\\section{A}"]
    lines = []
    for _ in range(rng.randint(5, 60)):
        indent = rng.choice(["", "", "    ", "\t"])
        head = rng.choice(keywords) if rng.random() < 0.4 else ""
        body = " ".join(rng.choice(WORDS[:6] + ["(x)", "{", "}", "=", "1;", "End Sub"])
                        for _ in range(rng.randint(0, 9)))
        lines.append(indent + head + body)
        if rng.random() < 0.2:
            lines.append("")
    return "\n".join(lines) + rng.choice(["", "\n", "\n\n"])


def special_texts(rng):
    prose = " ".join(rng.choice(WORDS) for _ in range(300))
    markdown = ("# Title\n\nIntro paragraph with *emphasis*.\n\n## Section\n\n```python\ndef f():\n"
                "    return 1\n```\n\n- item one\n- item two\n\n***\n\n### Deep\n\nText " + prose[:400])
    return {
        "prose": prose.replace(" the ", ". The ").replace(" a ", "\n\n"),
        "markdown": markdown,
        "cjk": "".join(rng.choice("東京は日本の首都ですデータを分割して検索する。") for _ in range(700)),
        "emoji": " ".join(rng.choice(["👩‍👩‍👧‍👦", "🇯🇵", "🙂", "é", "e\u0301", "x"]) for _ in range(300)),
        "crlf": "\r\n".join(" ".join(rng.choice(WORDS[:8]) for _ in range(rng.randint(0, 12)))
                            for _ in range(60)),
        "control": "".join(rng.choice(["a", "b", " ", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x85",
                                       "\u2028", "\u2029", "\r", "\n"]) for _ in range(900)),
        "long_word": "w" * 10_000,
        "long_word_in_prose": prose[:300] + " " + "ü" * 10_000 + " " + prose[300:600],
        "empty": "",
        "whitespace": " \n\t\u3000 \n\n ",
    }


REGEXES = [
    [r"\n\s*\n", r"(?<=[.!?]) ", r"\s+", ""],
    [r"\r?\n", " ", ""],
    [r"[,.;]", r"\d+", ""],
    ["$", " ", ""],
]


def case(text, keep, strip, chunk_size, chunk_overlap, separators=None, regex=False, language=None,
         length="chars"):
    kwargs = dict(chunk_size=chunk_size, chunk_overlap=chunk_overlap, keep_separator=keep,
                  strip_whitespace=strip, add_start_index=True)
    if length == "bytes":
        kwargs["length_function"] = lambda s: len(s.encode("utf-8"))
    if language is not None:
        splitter = RecursiveCharacterTextSplitter.from_language(Language(language), **kwargs)
    else:
        if separators is not None:
            kwargs["separators"] = separators
        splitter = RecursiveCharacterTextSplitter(is_separator_regex=regex, **kwargs)
    docs = splitter.create_documents([text])
    return {
        "text": text, "chunk_size": chunk_size, "chunk_overlap": chunk_overlap,
        "keep_separator": "start" if keep is True else ("none" if keep is False else keep),
        "strip_whitespace": strip, "separators": separators, "regex": regex, "language": language,
        "length": length,
        "chunks": [d.page_content for d in docs],
        "start_index": [d.metadata["start_index"] for d in docs],
    }


def main():
    rng = random.Random(20261127)
    cases = []
    for _ in range(400):
        chunk_size = rng.choice([1, 2, 5, 10, 17, 40, 100, 400])
        chunk_overlap = rng.randint(0, chunk_size // 2) if chunk_size > 1 else 0
        keep = rng.choice([True, "start", "end", False])
        strip = rng.random() < 0.8
        separators = rng.choice([None, ["\n\n", "\n", " ", ""], [" ", ""], ["\n"], ["东", "", " "]])
        cases.append(case(random_text(rng), keep, strip, chunk_size, chunk_overlap, separators))

    languages = [l.value for l in Language if l != Language.PERL]
    for language in languages:
        for _ in range(4):
            size = rng.choice([20, 50, 100, 300])
            cases.append(case(code_text(rng, Language(language)), rng.choice([True, "end", False]),
                              rng.random() < 0.8, size, rng.randint(0, size // 3), language=language))
    for name, text in special_texts(rng).items():
        for _ in range(6):
            size = rng.choice([1, 7, 50, 256, 1000])
            overlap = rng.randint(0, size // 2) if size > 1 else 0
            kind = rng.choice(["literal", "regex", "language", "bytes"])
            keep = rng.choice([True, "end", False])
            strip = rng.random() < 0.8
            if kind == "regex":
                cases.append(case(text, keep, strip, size, overlap, rng.choice(REGEXES), regex=True))
            elif kind == "language":
                cases.append(case(text, keep, strip, size, overlap, language=rng.choice(languages)))
            else:
                cases.append(case(text, keep, strip, size, overlap, length="chars" if kind == "literal"
                                  else "bytes"))
    with open(sys.argv[1], "w") as f:
        json.dump({"generator": "langchain-text-splitters 1.1.3, benches/reference/langchain_splitter_cases.py",
                   "cases": cases}, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
