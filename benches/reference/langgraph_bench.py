"""LangGraph's side of agents/benches/graph.rs: the same graphs, the same measures.

- step: a 10-node chain (each node returns count + 1) run to its end, per super-step, without a
  checkpointer, with InMemorySaver, and with SqliteSaver on disk;
- bytes: a one-node conversation appending a reply to a message list (operator.add), on
  SqliteSaver, bytes stored (checkpoints, metadata and writes) after 50, 100, 150, 200 turns.

Prints one JSON line per measure, like the Rust bench. Usage: langgraph_bench.py [RUNS]
"""

import json
import operator
import os
import sqlite3
import sys
import tempfile
import time
from typing import Annotated, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

NODES = 10


class Counter(TypedDict):
    count: int


def chain(checkpointer):
    graph = StateGraph(Counter)
    for i in range(NODES):
        graph.add_node(f"n{i}", lambda state: {"count": state["count"] + 1})
        graph.add_edge(START if i == 0 else f"n{i - 1}", f"n{i}")
    graph.add_edge(f"n{NODES - 1}", END)
    return graph.compile(checkpointer=checkpointer)


def steps(name, graph, runs):
    config = lambda t: {"configurable": {"thread_id": t}}
    graph.invoke({"count": 0}, config("warm"))
    start = time.perf_counter()
    for run in range(runs):
        out = graph.invoke({"count": 0}, config(f"t{run}"))
        assert out["count"] == NODES
    per_step = (time.perf_counter() - start) * 1e6 / (runs * NODES)
    print(json.dumps({"impl": "langgraph", "bench": "step", "checkpointer": name, "runs": runs,
                      "steps_per_run": NODES, "us_per_step": per_step}), flush=True)


class Chat(TypedDict):
    messages: Annotated[list, operator.add]


def stored_bytes(path):
    db = sqlite3.connect(path)
    total = 0
    for query in ("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints",
                  "SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes"):
        total += db.execute(query).fetchone()[0]
    db.close()
    return total


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    with tempfile.TemporaryDirectory() as tmp:
        steps("none", chain(None), runs)
        steps("memory", chain(InMemorySaver()), runs)
        with SqliteSaver.from_conn_string(os.path.join(tmp, "steps.db")) as saver:
            steps("sqlite", chain(saver), runs)
        path = os.path.join(tmp, "chat.db")
        with SqliteSaver.from_conn_string(path) as saver:
            graph = StateGraph(Chat)
            graph.add_node("reply", lambda chat: {"messages": [f"reply {len(chat['messages'])} to the user's message"]})
            graph.add_edge(START, "reply")
            graph.add_edge("reply", END)
            app = graph.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "chat"}}
            for turn in range(1, 201):
                message = f"user message number {turn}, a sentence of ordinary length"
                app.invoke({"messages": [message]}, config)
                if turn % 50 == 0:
                    print(json.dumps({"impl": "langgraph", "bench": "bytes", "turns": turn,
                                      "bytes": stored_bytes(path)}), flush=True)


if __name__ == "__main__":
    main()
