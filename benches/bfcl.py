#!/usr/bin/env python3
"""Function-calling accuracy on the Berkeley Function Calling Leaderboard's single-turn cases
(simple, multiple, parallel, parallel-multiple, irrelevance), scored by BFCL's own AST checker.

  benches/bfcl.py BFCL_DIR CASES SYSTEM NAME [ARG]

BFCL_DIR is the unpacked `bfcl-eval` wheel (its data and checker are used as shipped; only the
checker's table of hosted models is replaced by one entry, so its provider SDKs need not be
installed). CASES is how many cases of each category run (the first ones, in file order).
SYSTEM is `openai` (ARG: the base URL of an OpenAI-compatible server, e.g. `catena serve`) or
`llama-cpp-python` (ARG: a GGUF file, run in process with its `chatml-function-calling`
handler, the format llama-cpp-python documents for tool calling with models that are not
Functionary). NAME labels the rows. Decoding is greedy (temperature 0, seed 0). Prints one JSON
line per case and one summary line per category."""
import json, os, sys, time, types, urllib.request

bfcl_dir, cases, system, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
arg = sys.argv[5] if len(sys.argv) > 5 else None
CATEGORIES = ["simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance"]

# BFCL's checker looks one thing up per model: whether it renamed `a.b` functions to `a_b`
# (OpenAI-style APIs allow no dots in names). Every system here is sent `a_b`.
sys.path.insert(0, bfcl_dir)
config = types.ModuleType("bfcl_eval.constants.model_config")
config.MODEL_CONFIG_MAPPING = type("AnyModel", (dict,), {
    "__missing__": lambda self, key: types.SimpleNamespace(underscore_to_dot=True)})()
sys.modules["bfcl_eval.constants.model_config"] = config
from bfcl_eval.constants.enums import Language  # noqa: E402
from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker  # noqa: E402

TYPES = {"dict": "object", "float": "number", "tuple": "array"}


def json_schema(schema):
    """BFCL writes Python type names (dict, float, tuple, any); tools need JSON Schema."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            if value == "any":
                continue
            out[key] = TYPES.get(value, value)
        elif key in ("properties",):
            out[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf"):
            out[key] = json_schema(value)
        elif key == "optional":
            continue
        else:
            out[key] = value
    return out


def tools_of(functions):
    return [{"type": "function", "function": {"name": f["name"].replace(".", "_"),
             "description": f.get("description", ""), "parameters": json_schema(f["parameters"])}}
            for f in functions]


def load(category):
    data = [json.loads(l) for l in open(os.path.join(bfcl_dir, "bfcl_eval/data", f"BFCL_v4_{category}.json"))]
    answers = {}
    path = os.path.join(bfcl_dir, "bfcl_eval/data/possible_answer", f"BFCL_v4_{category}.json")
    if os.path.exists(path):
        answers = {a["id"]: a["ground_truth"] for a in map(json.loads, open(path))}
    return [(case, answers.get(case["id"])) for case in data[:cases]]


def ask_openai(messages, tools):
    body = json.dumps({"model": "chat", "messages": messages, "tools": tools, "tool_choice": "auto",
                       "temperature": 0, "seed": 0, "max_tokens": 512}).encode()
    request = urllib.request.Request(arg.rstrip("/") + "/chat/completions", body,
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as reply:
        return json.load(reply)["choices"][0]["message"]


llama = None


def ask_llama_cpp(messages, tools):
    global llama
    if llama is None:
        from llama_cpp import Llama
        llama = Llama(model_path=arg, n_ctx=4096, chat_format="chatml-function-calling", seed=0,
                      n_threads=os.cpu_count(), verbose=False)
    reply = llama.create_chat_completion(messages=messages, tools=tools, tool_choice="auto",
                                         temperature=0, seed=0, max_tokens=512)
    return reply["choices"][0]["message"]


ask = ask_openai if system == "openai" else ask_llama_cpp
for category in CATEGORIES:
    passed, seconds = 0, 0.0
    for case, truth in load(category):
        started = time.time()
        try:
            message = ask(case["question"][0], tools_of(case["function"]))
            error = None
        except Exception as e:  # a failed request scores as a miss, with its reason kept
            message, error = {}, f"{type(e).__name__}: {e}"
        elapsed = time.time() - started
        calls = []
        for call in message.get("tool_calls") or []:
            try:
                calls.append({call["function"]["name"]: json.loads(call["function"]["arguments"] or "{}")})
            except (KeyError, json.JSONDecodeError) as e:
                error = f"undecodable call: {e}"
        if category == "irrelevance":
            good = error is None and not calls
        elif error is None and calls:
            verdict = ast_checker(case["function"], calls, truth, Language.PYTHON, category, "catena")
            good, error = verdict["valid"], (None if verdict["valid"] else verdict.get("error"))
        else:
            good, error = False, error or "no call"
        passed += good
        seconds += elapsed
        print(json.dumps({"system": name, "category": category, "id": case["id"], "passed": good,
                          "seconds": round(elapsed, 2), "calls": calls, "error": error,
                          "text": (message.get("content") or "")[:200]}), flush=True)
    print(json.dumps({"system": name, "category": category, "summary": True, "passed": passed, "cases": cases,
                      "accuracy": round(passed / cases, 3), "mean_seconds": round(seconds / cases, 2)}), flush=True)
