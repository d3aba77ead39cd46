#!/usr/bin/env python3
"""The agent task suite: runs the `agent` example on every question of a JSONL task file (memory
reset between questions), checks each answer against what it must contain, and prints one JSON
line per task and a summary line per configuration.

  benches/agent_tasks.py AGENT_BINARY TASKS.jsonl MODEL PROTOCOL [MAX_ITERATIONS [AGENT_ARGS...]]

Expected answers may name today's date: {weekday}, {iso_date}, {month}, {day}, {year}, and the
same for Tokyo ({tokyo_iso_date}, ...), filled in when the run starts. A number in an answer
counts with or without thousands separators; the check ignores case."""
import datetime, json, os, re, subprocess, sys, tempfile, time, zoneinfo

binary, tasks_file, model, protocol = sys.argv[1:5]
max_iterations = sys.argv[5] if len(sys.argv) > 5 else "4"
extra = sys.argv[6:]
label = " ".join([protocol, *extra])
tasks = [json.loads(line) for line in open(tasks_file) if line.strip()]

def fields(prefix, now):
    return {f"{prefix}weekday": now.strftime("%A"), f"{prefix}iso_date": now.strftime("%Y-%m-%d"),
            f"{prefix}month": now.strftime("%B"), f"{prefix}day": str(now.day), f"{prefix}year": str(now.year)}

now = datetime.datetime.now().astimezone()
values = {**fields("", now), **fields("tokyo_", datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo")))}

def passed(answer, expect):
    text = re.sub(r"(?<=\d),(?=\d{3})", "", answer).lower()
    for pattern in expect:
        want = pattern.format(**values).lower()
        if re.fullmatch(r"\d+", want):
            if re.search(rf"(?<![\d.]){want}(?![\d])", text):
                return True
        elif want in text:
            return True
    return False

script = "".join(f"{t['question']}\n/reset\n" for t in tasks)
with tempfile.TemporaryDirectory() as home:
    env = {**os.environ, "CATENA_AGENT_DIR": os.environ.get("CATENA_AGENT_DIR", home)}
    env.pop("OPENAI_API_KEY", None)
    started = time.time()
    run = subprocess.run([binary, "--json", "--yes", "--model", model, "--protocol", protocol,
                          "--max-iterations", max_iterations, "--session", f"tasks-{model}-{protocol}", *extra],
                         input=script, capture_output=True, text=True, env=env)
    wall = time.time() - started
answers = [json.loads(l) for l in run.stdout.splitlines() if l.startswith("{")]
if len(answers) != len(tasks):
    print(json.dumps({"model": model, "protocol": label, "error": f"{len(answers)} answers for {len(tasks)} tasks",
                      "stderr": run.stderr[-2000:]}))
    sys.exit(1)
ok = 0
for task, out in zip(tasks, answers):
    answer = out.get("answer") or out.get("error", "")
    good = "answer" in out and passed(answer, task["expect"])
    ok += good
    print(json.dumps({"model": model, "protocol": label, "question": task["question"], "tool": task["tool"],
                      "passed": good, "seconds": round(out["seconds"], 2), "tools": out.get("tools", []),
                      "answer": answer[:300]}))
seconds = [a["seconds"] for a in answers]
print(json.dumps({"model": model, "protocol": label, "summary": True, "passed": ok, "tasks": len(tasks),
                  "success": round(ok / len(tasks), 3), "mean_seconds": round(sum(seconds) / len(seconds), 2),
                  "wall_seconds": round(wall, 1)}))
