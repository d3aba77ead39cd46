#!/usr/bin/env python3
"""The Python MCP SDK as a client, for catena's tests and benchmarks (run with the interpreter
of the virtual environment scripts/fetch-data.sh makes, $CATENA_DATA_DIR/pymcp/bin/python).

  py_client.py check URL
      Talks to an MCP server over streamable HTTP: lists its tools, calls `calculator` with
      "6 * 7", lists and reads its resources, lists its prompts; prints one JSON object.
  py_client.py bench CALLS TOOL ARGUMENTS COMMAND [ARGS...]
      Starts COMMAND as a stdio MCP server, calls its tool TOOL with the JSON object ARGUMENTS
      CALLS times one after the other, and prints the mean seconds per call and the client's own
      CPU seconds per call (after 20 warm-up calls) as JSON.
"""
import asyncio
import json
import sys
import time

from mcp import Client, StdioServerParameters


def text_of(result):
    return "".join(getattr(part, "text", "") for part in result.content)


async def check(url):
    async with Client(url) as client:
        tools = await client.list_tools()
        calculated = await client.call_tool("calculator", {"expression": "6 * 7"})
        refused = await client.call_tool("calculator", {"expr": "1"})
        resources = await client.list_resources()
        read = []
        for resource in resources.resources:
            contents = await client.read_resource(str(resource.uri))
            read.append("".join(getattr(part, "text", "") for part in contents.contents))
        prompts = await client.list_prompts()
        return {
            "tools": sorted(tool.name for tool in tools.tools),
            "calculator": text_of(calculated),
            "refused_is_error": bool(refused.is_error),
            "resources": [str(resource.uri) for resource in resources.resources],
            "read": read,
            "prompts": [prompt.name for prompt in prompts.prompts],
        }


async def bench(calls, tool, arguments, command, args):
    async with Client(StdioServerParameters(command=command, args=args)) as client:
        for _ in range(20):
            await client.call_tool(tool, arguments)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            result = await client.call_tool(tool, arguments)
            assert not result.is_error, text_of(result)
        return {
            "calls": calls,
            "seconds_per_call": (time.perf_counter() - started) / calls,
            # This process's CPU time (its threads, not the server's): the client's own cost.
            "client_cpu_seconds_per_call": (time.process_time() - cpu) / calls,
        }


if __name__ == "__main__":
    if sys.argv[1] == "check":
        print(json.dumps(asyncio.run(check(sys.argv[2]))))
    elif sys.argv[1] == "bench":
        calls, tool, arguments, command = int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), sys.argv[5]
        print(json.dumps(asyncio.run(bench(calls, tool, arguments, command, sys.argv[6:]))))
    else:
        sys.exit(__doc__)
