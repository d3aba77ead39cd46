"""Per-step overhead of LangChain's AgentExecutor (langchain-classic) on scripted models, the
same scripts as agents/benches/executor.rs: ten echo tool calls, then the final answer.

Output: one JSON line per agent, like the Rust side.
"""
import json
import sys
import time

from langchain_classic.agents import AgentExecutor, create_react_agent, create_tool_calling_agent
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.tools import tool

CALLS = 10


@tool
def echo(text: str) -> str:
    """Echoes its text."""
    return text


class ScriptedChat(FakeMessagesListChatModel):
    """A scripted chat model that accepts tools, as a real tool-calling model does."""

    def bind_tools(self, tools, **kwargs):
        return self


def tool_calling_executor():
    replies = [
        AIMessage(content="", tool_calls=[{"name": "echo", "args": {"text": f"step {i}"}, "id": f"call_{i}"}])
        for i in range(CALLS)
    ] + [AIMessage(content="done")]
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), ("human", "{input}"), ("placeholder", "{agent_scratchpad}")]
    )
    agent = create_tool_calling_agent(ScriptedChat(responses=replies), [echo], prompt)
    return AgentExecutor(agent=agent, tools=[echo])


REACT_PROMPT = PromptTemplate.from_template(
    "Answer the question. Tools:\n{tools}\nUse the format Thought/Action ({tool_names})/Action Input/"
    "Observation/Final Answer.\nQuestion: {input}\nThought:{agent_scratchpad}"
)


def react_executor():
    replies = [
        f'Thought: I should echo.\nAction: echo\nAction Input: step {i}' for i in range(CALLS)
    ] + ["Thought: I now know the final answer\nFinal Answer: done"]
    agent = create_react_agent(FakeListLLM(responses=replies), [echo], REACT_PROMPT)
    return AgentExecutor(agent=agent, tools=[echo])


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for name, make in [("tool_calling", tool_calling_executor), ("react", react_executor)]:
        executors = [make() for _ in range(runs)]
        start = time.perf_counter()
        for executor in executors:
            out = executor.invoke({"input": "Echo ten times."})
            assert out["output"] == "done", out
        elapsed = time.perf_counter() - start
        steps = runs * (CALLS + 1)
        print(json.dumps({"impl": "langchain", "agent": name, "runs": runs, "steps_per_run": CALLS + 1,
                          "us_per_step": elapsed * 1e6 / steps}))


if __name__ == "__main__":
    main()
