"""Reference stems for catena's Porter stemmer (eval/src/porter.rs): NLTK's PorterStemmer in its
default NLTK_EXTENSIONS mode, the stemmer rouge-score uses with use_stemmer=True.

The vocabulary is every token rouge-score's tokenizer produces from the text files given on the
command line (runs of [a-z0-9] after lowercasing), plus words chosen to reach every rule and
exception of the algorithm. Writes one "word<TAB>stem" line per word, sorted.

Run: <bench venv>/bin/python benches/reference/porter_reference.py eval/tests/data/porter.tsv \
         README.md docs/*.md docs/guides/*.md ../shared/data/cranfield/corpus.jsonl
(benches/setup-python.sh installs nltk with rouge-score).
"""
import re
import sys

import nltk
from nltk.stem.porter import PorterStemmer

# Words that reach each step's rules, guards and NLTK's own exceptions.
RULE_WORDS = """
caresses ponies ties cats caress feed agreed plastered bled motoring sing conflated troubled sized
hopping tanned falling hissing fizzed failing filing happy sky skies dying lying tying news innings
inning outings outing cannings canning howe proceed exceed succeed relational conditional rational
valenci hesitanci digitizer conformabli radicalli differentli vileli analogousli vietnamization
predication operator feudalism decisiveness hopefulness callousness formaliti sensitiviti
sensibiliti triplicate formative formalize electriciti electrical hopeful goodness revival
allowance inference airliner gyroscopic adjustable defensible irritant replacement adjustment
dependent adoption homologou communism activate angulariti homologous effective bowdlerize probate
rate cease controll roll generously fully carefulli biologi etymologi tied died spied cried skied
flies trying toy syzygy yyyy ying eyed buy ably idly agreement generalizations generalization
oscillators mispelled relativity stabilities hardiness fatalism revivals dependencies anatomical
visualizations truthfulness peacefulness activities responsibilities abilities possibilities
""".split()


def main():
    out_path, sources = sys.argv[1], sys.argv[2:]
    words = set(RULE_WORDS)
    for path in sources:
        with open(path, encoding="utf-8") as f:
            words.update(re.findall(r"[a-z0-9]+", f.read().lower()))
    stemmer = PorterStemmer()
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(f"# NLTK {nltk.__version__} PorterStemmer() stems, written by benches/reference/porter_reference.py\n")
        for word in sorted(words):
            f.write(f"{word}\t{stemmer.stem(word)}\n")


if __name__ == "__main__":
    main()
