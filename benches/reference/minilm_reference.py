"""Reference sentence embeddings for all-MiniLM-L6-v2, computed independently of catena.

catena converts the model's safetensors to GGUF and embeds through llama.cpp; this script embeds the
same sentences with a plain NumPy implementation of BERT (the published architecture: embeddings +
LayerNorm, 6 post-LN encoder layers with GELU, mean pooling over the attention mask, L2 norm),
tokenising with Hugging Face's `tokenizers` library from the model's own tokenizer.json, truncating
at the model's max_seq_length (256) as sentence-transformers does.

Usage: python3 minilm_reference.py MODEL_DIR OUT.json
(MODEL_DIR holds model.safetensors and tokenizer.json; `catena models pull embed` keeps a copy.)
Needs: numpy, tokenizers, safetensors (pip install numpy tokenizers safetensors).
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

SENTENCES = [
    "The cat sits on the mat.",
    "A feline rests on a rug.",
    "Rust is a systems programming language focused on safety and speed.",
    "How do I split documents into chunks?",
    "Retrieval-augmented generation grounds answers in retrieved text.",
    "The quick brown fox jumps over the lazy dog.",
    "Stock markets fell sharply on Tuesday after the announcement.",
    "Café naïve résumé — accents and punctuation!",
    "東京は日本の首都です。",
    "1234 5678 + 42 = ?",
    "",
    "a",
    "Supercalifragilisticexpialidocious is a long word.",
    "Vector databases store embeddings for similarity search.",
    "   leading and trailing whitespace   ",
    " ".join(["token"] * 300),  # longer than max_seq_length: exercises truncation
]


def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def gelu(x):
    # BERT's exact (erf) GELU
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def embed(weights, ids, heads=12, layers=6):
    p = lambda name: weights.get(name, weights.get("bert." + name))  # noqa: E731
    n = len(ids)
    x = p("embeddings.word_embeddings.weight")[ids]
    x = x + p("embeddings.position_embeddings.weight")[:n]
    x = x + p("embeddings.token_type_embeddings.weight")[np.zeros(n, dtype=int)]
    x = layer_norm(x, p("embeddings.LayerNorm.weight"), p("embeddings.LayerNorm.bias"))
    d = x.shape[1]
    hd = d // heads
    for i in range(layers):
        pre = f"encoder.layer.{i}."
        lin = lambda t, name: t @ p(pre + name + ".weight").T + p(pre + name + ".bias")  # noqa: E731
        q = lin(x, "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s = s / s.sum(-1, keepdims=True)
        a = (s @ v).transpose(1, 0, 2).reshape(n, d)
        x = layer_norm(x + lin(a, "attention.output.dense"),
                       p(pre + "attention.output.LayerNorm.weight"), p(pre + "attention.output.LayerNorm.bias"))
        h = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(x + lin(h, "output.dense"), p(pre + "output.LayerNorm.weight"), p(pre + "output.LayerNorm.bias"))
    pooled = x.mean(0)
    return pooled / max(np.linalg.norm(pooled), 1e-12)


def main():
    model_dir, out = sys.argv[1], sys.argv[2]
    weights = {k: v.astype(np.float64) for k, v in load_file(f"{model_dir}/model.safetensors").items()}
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    rows = []
    for s in SENTENCES:
        ids = tok.encode(s).ids
        rows.append({"text": s, "n_tokens": len(ids), "embedding": [round(float(v), 7) for v in embed(weights, ids)]})
    with open(out, "w") as f:
        json.dump({"model": "all-MiniLM-L6-v2", "method": __doc__.strip().splitlines()[0], "sentences": rows}, f)


if __name__ == "__main__":
    main()
