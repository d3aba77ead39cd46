"""The llama-cpp-python side of the local-inference benchmarks (what LangChain's LlamaCpp and
LlamaCppEmbeddings wrap), with the parameters of models/benches/llama.rs: 2 threads, n_ctx 2048,
n_batch 512, greedy, repeat penalty off, the same prompt text and the same model files.

Usage: python llama_cpp_python_bench.py chat|embed CHAT_GGUF EMBED_GGUF
       python llama_cpp_python_bench.py speculation-off|speculation-on GGUF PROMPTS.jsonl
Prints JSON lines like the Rust side. The speculation parts replay the conversations
`cargo bench -p catena-models --bench llama -- speculation-prompts` prints, greedy, at most 192
tokens, n_ctx 4096, without and with `LlamaPromptLookupDecoding` (its defaults: n-grams up to 2
tokens, 10 tokens guessed); tokens/s is generation only (first token to last), as on the Rust side,
with a reply's tokens counted by tokenizing its text again (the stream does not report usage).
"""
import json
import resource
import sys
import time

from llama_cpp import Llama
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

THREADS, N_CTX, N_BATCH, GEN_TOKENS, RUNS = 2, 2048, 512, 128, 5


def long_prompt(run):
    body = ("Retrieval-augmented generation grounds a language model's answer in documents "
            "retrieved for the question. A splitter cuts documents into chunks, an embedder "
            "turns each chunk into a vector, and a vector store finds the chunks nearest to the "
            "question. ")
    return f"Run {run}. {body * 8} Summarise the text above in detail."


def chatml(user):
    return ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def median(v):
    return sorted(v)[len(v) // 2]


def chat(path):
    llm = Llama(model_path=path, n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=THREADS,
                n_threads_batch=THREADS, verbose=False)
    pp, tg = [], []
    for run in range(RUNS):
        prompt = chatml(long_prompt(run))
        n_prompt = len(llm.tokenize(prompt.encode(), add_bos=False, special=True))
        llm.reset()  # no prompt cache between runs, like the Rust side's varied prompts
        start = time.perf_counter()
        first, n = None, 0
        for _ in llm.create_completion(prompt, max_tokens=GEN_TOKENS, temperature=0.0, repeat_penalty=1.0,
                                       top_k=1, stream=True):
            n += 1
            if first is None:
                first = time.perf_counter() - start
        total = time.perf_counter() - start
        pp.append(n_prompt / first)
        tg.append((n - 1) / (total - first))
        print(json.dumps({"run": run, "prompt_tokens": n_prompt, "generated": n, "pp": pp[-1], "tg": tg[-1]}))
    print(json.dumps({"summary": "chat", "impl": "llama-cpp-python", "pp_tok_s": median(pp), "tg_tok_s": median(tg)}))


def chunks(n):
    words = ["vector", "store", "query", "rust", "ownership", "borrow", "model", "token", "chunk", "embed",
             "retrieval", "agent", "tool", "memory", "prompt", "splitter"]
    return [" ".join(words[(i * 7 + j * 13 + j // 5) % len(words)] for j in range(230)) for i in range(n)]


def embed(path):
    llm = Llama(model_path=path, embedding=True, n_ctx=512, n_batch=512, n_ubatch=512, n_threads=THREADS,
                n_threads_batch=THREADS, verbose=False)
    texts = chunks(128)
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        out = llm.embed(texts, normalize=True)
        assert len(out) == len(texts)
        rates.append(len(texts) / (time.perf_counter() - start))
    print(json.dumps({"summary": "embed", "impl": "llama-cpp-python", "chunks_s": median(rates)}))


def speculation(path, prompts, on):
    label = "on" if on else "off"
    llm = Llama(model_path=path, n_ctx=4096, n_batch=N_BATCH, n_ubatch=N_BATCH, n_threads=THREADS,
                n_threads_batch=THREADS, verbose=False,
                # Verifying a guess reads the logits of every guessed position.
                logits_all=on, draft_model=LlamaPromptLookupDecoding() if on else None)
    # Warm-up, as the Rust side: the first decode pays one-off allocations.
    llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0)
    sets = {}
    for line in open(prompts):
        p = json.loads(line)
        sets.setdefault(p["set"], []).append(p)
    for name, items in sets.items():
        tokens, secs = 0, 0.0
        for p in items:
            llm.reset()
            start = time.perf_counter()
            first, text = None, ""
            for chunk in llm.create_chat_completion(p["messages"], max_tokens=192, temperature=0.0, top_k=1,
                                                    repeat_penalty=1.0, stream=True):
                piece = chunk["choices"][0]["delta"].get("content") or ""
                if first is None and piece:
                    first = time.perf_counter() - start
                text += piece
            total = time.perf_counter() - start
            n = len(llm.tokenize(text.encode(), add_bos=False, special=True))
            generating = total - (first if first is not None else total)
            tokens += max(n - 1, 0)
            secs += generating
            print(json.dumps({"set": name, "prompt": p["prompt"], "speculation": label, "impl": "llama-cpp-python",
                              "tokens": n, "generation_s": generating, "total_s": total, "text": text}))
        print(json.dumps({"summary": "speculation", "set": name, "speculation": label, "impl": "llama-cpp-python",
                          "tokens": tokens, "generation_s": secs, "tok_s": tokens / secs if secs else 0.0}))


if __name__ == "__main__":
    part = sys.argv[1]
    if part.startswith("speculation-"):
        speculation(sys.argv[2], sys.argv[3], part == "speculation-on")
    elif part == "chat":
        chat(sys.argv[2])
    else:
        embed(sys.argv[3])
    print(json.dumps({"part": part, "impl": "llama-cpp-python",
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
