"""Reference values for catena's text metrics, from the tools they must agree with:
sacrebleu (corpus and sentence BLEU), rouge-score (ROUGE-1/2/L/Lsum, without and with stemming) and the SQuAD
v2.0 evaluation script's normalisation, exact match and F1 (re-stated below from the official
script, which is not a package). Writes eval/tests/data/text_metrics.json.

Run: <bench venv>/bin/python benches/reference/text_metrics_reference.py eval/tests/data/text_metrics.json
(benches/setup-python.sh installs sacrebleu and rouge-score).
"""
import collections
import json
import re
import string
import sys

import sacrebleu
from rouge_score import rouge_scorer

PAIRS = [
    ("The cat sat on the mat.", ["The cat is on the mat."]),
    ("the the the the the the the", ["the cat is on the mat", "there is a cat on the mat"]),
    ("", ["An empty hypothesis scores zero."]),
    ("Prices rose 3,5% to 1.234,56 euros in 2019-2020; analysts said: \"unexpected!\"",
     ["Prices rose by 3,5 % to 1.234,56 euros in 2019-2020, analysts said it was unexpected."]),
    ("Ünïcödé façade — naïve café: 東京 is big.", ["Unicode facade - naive cafe: 東京 is large."]),
    ("AT&amp;T &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; <skipped> text", ["AT&T <b>bold</b> \"quoted\" text"]),
    ("It is a guide to action which ensures that the military always obeys the commands of the party.",
     ["It is a guide to action that ensures that the military will forever heed Party commands.",
      "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
      "It is the practical guide for the army always to heed the directions of the party."]),
    ("First sentence here.\nSecond one follows, with a well-known hyphen-ated word.",
     ["Here is the first sentence.\nThe second follows with a well-known hyphenated word."]),
    ("a b c d e f g", ["a b c d e f g"]),
    ("short", ["a much longer reference sentence with many words in it"]),
    ("Tab\tseparated\u00a0and\u2003odd   spaces", ["Tab separated and odd spaces"]),
    ("The Eiffel Tower is in Paris, France.", ["Paris"]),
    ("The cats were running quickly between the generalized relational databases.",
     ["A cat runs quick; generalizations relate databases.\nHopefully nobody was dying."]),
    ("Controlling oscillations: the agreed conditional probabilities happily",
     ["controlled oscillators agree conditionally, probably happy"]),
]

SQUAD = [
    ("The Eiffel Tower", ["eiffel tower"]),
    ("an apple a day", ["Apple, day!"]),
    ("", [""]),
    ("", ["something"]),
    ("Denver Broncos", ["Denver Broncos", "The Broncos"]),
    ("1,000 people", ["1000 people"]),
    ("Ünïcödé the word", ["ünïcödé word"]),
    ("the the the", ["the"]),
    ("New York City, New York", ["New York"]),
]


# The SQuAD v2.0 official evaluation script's functions.
def normalize_answer(s):
    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def get_tokens(s):
    return normalize_answer(s).split() if s else []


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def main():
    out_path = sys.argv[1]
    hyps = [h for h, _ in PAIRS]
    max_refs = max(len(r) for _, r in PAIRS)
    # sacrebleu takes reference *streams*; a missing reference is None.
    streams = [[refs[i] if i < len(refs) else None for _, refs in PAIRS] for i in range(max_refs)]
    corpus = sacrebleu.corpus_bleu(hyps, streams)
    corpus_lc = sacrebleu.corpus_bleu(hyps, streams, lowercase=True)
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=False)
    stemming = rouge_scorer.RougeScorer(types, use_stemmer=True)
    pairs = []
    for hyp, refs in PAIRS:
        sb = sacrebleu.sentence_bleu(hyp, refs)
        rs = scorer.score(refs[0], hyp)
        rss = stemming.score(refs[0], hyp)
        pairs.append({
            "hypothesis": hyp,
            "references": refs,
            "tok13a": sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(hyp),
            "sentence_bleu": sb.score,
            "rouge": {k: [v.precision, v.recall, v.fmeasure] for k, v in rs.items()},
            "rouge_stemmed": {k: [v.precision, v.recall, v.fmeasure] for k, v in rss.items()},
        })
    squad = [{"prediction": p, "references": g,
              "em": max(compute_exact(r, p) for r in g), "f1": max(compute_f1(r, p) for r in g)} for p, g in SQUAD]
    data = {
        "versions": {"sacrebleu": sacrebleu.__version__},
        "corpus_bleu": {"score": corpus.score, "precisions": corpus.precisions, "bp": corpus.bp,
                        "sys_len": corpus.sys_len, "ref_len": corpus.ref_len},
        "corpus_bleu_lowercase": corpus_lc.score,
        "pairs": pairs,
        "squad": squad,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
