#!/usr/bin/env python3
"""An MCP server over stdio that misbehaves on purpose, for catena's fault tests.

Usage: misbehaving_mcp_server.py MODE
  silent      never answers `initialize`
  garbage     answers the handshake, then writes malformed JSON-RPC for any tools/call
  crash       answers the handshake, then exits in the middle of a tools/call
  huge        answers the handshake; `big` returns 5 MB of text
  bad-schema  lists a tool whose input schema is not valid JSON Schema beside a good one
  unknown     answers every request but the handshake with "method not found"
  changing    offers `ok` and `grow`; calling `grow` replaces it by `grown` and announces the
              change (notifications/tools/list_changed), as servers whose tools depend on state do
  record FILE answers the handshake, never answers a tools/call, and appends every message it
              receives to FILE (to see what the client sent, a cancellation for one)
Only the standard library: no installation needed.
"""
import json
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "silent"
GOOD = {"name": "ok", "description": "Answers ok.", "inputSchema": {"type": "object", "properties": {}}}
BAD = {"name": "broken", "description": "Has a broken schema.",
       "inputSchema": {"type": "object", "properties": {"x": {"type": "not-a-type"}}}}
GROW = {"name": "grow", "description": "Adds a tool.", "inputSchema": {"type": "object", "properties": {}}}
GROWN = {"name": "grown", "description": "Was added.", "inputSchema": {"type": "object", "properties": {}}}
BIG = {"name": "big", "description": "Returns a lot.", "inputSchema": {"type": "object", "properties": {}}}


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(request_id, value):
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


changing_tools = [GOOD, GROW]

for line in sys.stdin:
    if MODE == "record":
        with open(sys.argv[2], "a") as log:
            log.write(line)
    try:
        request = json.loads(line)
    except ValueError:
        continue
    method, request_id = request.get("method"), request.get("id")
    if request_id is None:
        continue  # a notification
    if method == "initialize":
        if MODE == "silent":
            continue
        result(request_id, {
            "protocolVersion": request["params"].get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {"listChanged": MODE == "changing"}},
            "serverInfo": {"name": "misbehaving", "version": "0"},
        })
    elif MODE == "unknown":
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"Method not found: {method}"}})
    elif method == "tools/list":
        tools = {"bad-schema": [BAD, GOOD], "huge": [BIG, GOOD], "changing": changing_tools}.get(MODE, [GOOD])
        result(request_id, {"tools": tools})
    elif method == "tools/call":
        name = request["params"]["name"]
        if MODE == "record":
            continue
        if MODE == "garbage":
            sys.stdout.write('{"jsonrpc": "2.0", "id": ' + json.dumps(request_id) + ', "result": {oops\n')
            sys.stdout.flush()
        elif MODE == "crash":
            sys.exit(3)
        elif name == "grow":
            changing_tools = [GOOD, GROWN]
            send({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
            result(request_id, {"content": [{"type": "text", "text": "grown"}]})
        elif name == "big":
            result(request_id, {"content": [{"type": "text", "text": "x" * 5_000_000}]})
        else:
            result(request_id, {"content": [{"type": "text", "text": "ok"}]})
    elif method == "ping":
        result(request_id, {})
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": f"Method not found: {method}"}})
