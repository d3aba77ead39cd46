// The catena console: a chat playground, a trace explorer and the eval reports, over the
// server's own routes. Everything shown is set as text (textContent), never parsed as HTML;
// an eval report, which is HTML, is shown in a sandboxed frame with no script and no origin.
'use strict';

const $ = (selector) => document.querySelector(selector);

/** An element with attributes and children; strings become text nodes. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- the API, with the key asked for when a route says 401 ----

let apiKey = sessionStorage.getItem('catena-api-key') || '';

function askKey() {
  const dialog = $('#key-dialog');
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const key = $('#key-input').value.trim();
      if (dialog.returnValue === 'ok' && key) {
        apiKey = key;
        sessionStorage.setItem('catena-api-key', key);
        resolve(true);
      } else resolve(false);
    }, { once: true });
    dialog.showModal();
  });
}

async function api(path, options = {}) {
  for (;;) {
    const headers = Object.assign({}, options.headers || {});
    if (apiKey) headers.Authorization = `Bearer ${apiKey}`;
    if (options.json !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method: options.method || (options.json !== undefined ? 'POST' : 'GET'),
      headers,
      body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
    });
    if (response.status === 401 && await askKey()) continue;
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`;
      try { message = (await response.json()).error.message || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }
}

/** Server-sent events of a response, as {event, data} objects. */
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { event, data: data.join('\n') };
    }
  }
}

const formatCost = (usd) => `$${Number(usd || 0).toFixed(4)}`;
const formatMs = (ms) => (ms === null || ms === undefined) ? '…' : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;

// ---- tabs ----

const tabs = ['chat', 'traces', 'evals'];

function showTab(name, focus) {
  for (const tab of tabs) {
    const button = $(`#tab-${tab}`);
    const selected = tab === name;
    button.setAttribute('aria-selected', String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`#${tab}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  if (name === 'traces') loadRuns();
  if (name === 'evals') loadEvals();
}

function setUpTabs() {
  tabs.forEach((tab, i) => {
    const button = $(`#tab-${tab}`);
    button.addEventListener('click', () => showTab(tab));
    button.addEventListener('keydown', (e) => {
      const step = e.key === 'ArrowRight' ? 1 : e.key === 'ArrowLeft' ? -1 : 0;
      if (step) showTab(tabs[(i + step + tabs.length) % tabs.length], true);
    });
  });
}

// ---- chat ----

const chat = { history: [], thread: newThread(), busy: false };

function newThread() {
  return `console-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

function resetChat() {
  chat.history = [];
  chat.thread = newThread();
  $('#transcript').replaceChildren();
  $('#prompt').focus();
}

function bubble(role, text) {
  const body = el('div', { class: 'text' }, text || '');
  const item = el('li', { class: `msg ${role}` }, body);
  $('#transcript').append(item);
  item.scrollIntoView({ block: 'end' });
  return { item, body, meta: null };
}

function meta(reply, runId, usage) {
  const line = el('div', { class: 'meta' });
  if (usage) {
    line.append(`${usage.prompt_tokens ?? usage.input_tokens ?? 0} prompt + ${usage.completion_tokens ?? usage.output_tokens ?? 0} completion tokens`);
  }
  if (runId) {
    line.append(el('button', { type: 'button', class: 'open-trace', 'data-run-id': runId, onclick: () => openTrace(runId) }, 'View trace'));
  }
  reply.item.append(line);
}

function failed(reply, error) {
  reply.item.classList.add('error');
  reply.body.textContent = `Error: ${error.message || error}`;
}

async function send(text) {
  if (chat.busy || !text.trim()) return;
  chat.busy = true;
  $('#send').disabled = true;
  bubble('user', text);
  try {
    const target = $('#target').value;
    if (target === 'agent') await agentTurn({ path: 'runs', body: { input: text } });
    else await modelTurn(target.slice('model:'.length), text);
  } finally {
    chat.busy = false;
    $('#send').disabled = false;
  }
}

async function modelTurn(model, text) {
  chat.history.push({ role: 'user', content: text });
  const reply = bubble('assistant', '');
  reply.item.setAttribute('aria-busy', 'true');
  try {
    const response = await api('/v1/chat/completions', {
      json: { model, messages: chat.history, stream: true, stream_options: { include_usage: true } },
    });
    const runId = response.headers.get('x-catena-run-id');
    let answer = '';
    let usage = null;
    for await (const { data } of events(response)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        answer += delta.content;
        reply.body.textContent = answer;
      }
    }
    chat.history.push({ role: 'assistant', content: answer });
    meta(reply, runId, usage);
  } catch (error) {
    chat.history.pop();
    failed(reply, error);
  } finally {
    reply.item.removeAttribute('aria-busy');
  }
}

function stepView(step) {
  const call = step.call ? `${step.call.name}(${JSON.stringify(step.call.arguments)})` : '(unreadable reply)';
  return el('div', { class: `step${step.failed ? ' failed' : ''}` },
    el('div', null, 'Tool ', el('code', null, call)),
    el('div', null, '→ ', el('code', null, step.observation)));
}

/** One agent run or resume, streamed: tokens, tool steps, then the answer or the calls that wait. */
async function agentTurn({ path, body }) {
  const reply = bubble('assistant', '');
  reply.item.setAttribute('aria-busy', 'true');
  const steps = el('div', { class: 'steps' });
  reply.item.insertBefore(steps, reply.body);
  let streamed = '';
  try {
    const response = await api(`/v1/threads/${encodeURIComponent(chat.thread)}/${path}`, {
      json: Object.assign({ stream: true, stream_mode: ['updates', 'messages'] }, body),
    });
    const runId = response.headers.get('x-catena-run-id');
    for await (const { event, data } of events(response)) {
      const value = JSON.parse(data);
      if (event === 'messages') {
        streamed += value.text || '';
        reply.body.textContent = streamed;
      } else if (event === 'updates') {
        // A node's update carries the steps it added (the state appends them).
        const update = value.update || {};
        if (Array.isArray(update.steps) && update.steps.length) {
          for (const step of update.steps) steps.append(stepView(step));
          streamed = '';
          reply.body.textContent = '';
        }
      } else if (event === 'end') {
        // Its `steps` are the whole run's, resumed parts included: this reply showed its own.
        reply.body.textContent = value.answer || '';
        if (value.status === 'interrupted') approvals(reply, value.interrupts || []);
        meta(reply, runId, value.usage);
      } else if (event === 'error') {
        throw new Error(value.error ? value.error.message : data);
      }
    }
  } catch (error) {
    failed(reply, error);
  } finally {
    reply.item.removeAttribute('aria-busy');
  }
}

/** The calls an agent waits on, each with Approve and Reject. */
function approvals(reply, interrupts) {
  const calls = interrupts.flatMap((i) => (i.payload && i.payload.calls) || []);
  if (!calls.length) return;
  const decisions = {};
  const card = el('div', { class: 'approval', role: 'group', 'aria-label': 'Waiting for your approval' },
    el('strong', null, 'Waiting for your approval'));
  const decide = async () => {
    if (Object.keys(decisions).length < calls.length) return;
    card.querySelectorAll('button').forEach((b) => { b.disabled = true; });
    await agentTurn({ path: 'resume', body: { decisions } });
  };
  for (const call of calls) {
    const row = el('div', { class: 'call', 'data-call-id': call.id },
      el('code', null, `${call.name}(${JSON.stringify(call.arguments)})`), ' ',
      el('button', { type: 'button', class: 'approve', onclick: () => { decisions[call.id] = { decision: 'approve' }; decide(); } }, 'Approve'), ' ',
      el('button', { type: 'button', class: 'reject', onclick: () => { decisions[call.id] = { decision: 'reject', message: 'The user declined this call.' }; decide(); } }, 'Reject'));
    card.append(row);
  }
  reply.item.append(card);
  card.querySelector('button.approve').focus();
}

async function setUpChat() {
  const about = await (await api('/api/console')).json();
  const target = $('#target');
  for (const model of about.chat) target.append(el('option', { value: `model:${model}` }, `model ${model}`));
  if (about.agent) target.append(el('option', { value: 'agent' }, 'agent (tools, approvals)'));
  target.addEventListener('change', resetChat);
  $('#new-chat').addEventListener('click', resetChat);
  $('#chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const prompt = $('#prompt');
    const text = prompt.value;
    prompt.value = '';
    send(text);
  });
  $('#prompt').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('#chat-form').requestSubmit();
    }
  });
  return about;
}

// ---- traces ----

async function loadRuns() {
  const params = new URLSearchParams({ status: $('#run-status').value, limit: '100' });
  const query = $('#run-query').value.trim();
  if (query) params.set('q', query);
  const body = $('#runs tbody');
  try {
    const { runs } = await (await api(`/api/runs?${params}`)).json();
    body.replaceChildren(...runs.map((run) => el('tr', { 'data-run-id': run.id },
      el('td', { class: 'name' }, el('button', { type: 'button', onclick: () => openTrace(run.id) }, run.name || run.id)),
      el('td', { class: `status-${run.status}` }, run.status),
      el('td', null, new Date(run.started_ms).toLocaleString()),
      el('td', null, formatMs(run.duration_ms)),
      el('td', null, run.spans),
      el('td', null, `${run.input_tokens} + ${run.output_tokens}`),
      el('td', null, formatCost(run.cost_usd)))));
    $('#runs-note').textContent = runs.length ? '' : 'No runs yet: chat with a model or the agent, and its trace appears here.';
  } catch (error) {
    body.replaceChildren();
    $('#runs-note').textContent = error.message;
  }
}

function depthsOf(spans) {
  const byId = new Map(spans.map((s) => [s.id, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    if (span.parent && byId.has(span.parent)) {
      if (!children.has(span.parent)) children.set(span.parent, []);
      children.get(span.parent).push(span);
    } else roots.push(span);
  }
  // Depth-first, parents before children, siblings by start (the API's order), no recursion:
  // a run may be thousands of spans deep in loops.
  const ordered = [];
  const stack = roots.reverse().map((span) => [span, 0]);
  while (stack.length) {
    const [span, depth] = stack.pop();
    ordered.push([span, depth]);
    const kids = children.get(span.id) || [];
    for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i], depth + 1]);
  }
  return ordered;
}

function attributesView(span) {
  const rows = Object.entries(span.attributes).map(([key, value]) => {
    let shown = typeof value === 'string' ? value : JSON.stringify(value);
    if (typeof value === 'string' && /^[[{]/.test(value)) {
      try { shown = JSON.stringify(JSON.parse(value), null, 2); } catch (_) { /* plain text */ }
    }
    return el('tr', null, el('th', { scope: 'row' }, key), el('td', null, el('pre', null, shown)));
  });
  return el('table', { class: 'attrs', 'aria-label': `Attributes of ${span.name}` },
    el('tbody', null, el('tr', null, el('th', { scope: 'row' }, 'duration'), el('td', null, formatMs((span.end_ns - span.start_ns) / 1e6))), rows));
}

async function openTrace(runId) {
  if ($('#traces').hidden) showTab('traces');
  const detail = $('#run-detail');
  const started = performance.now();
  detail.replaceChildren(el('p', { class: 'note' }, 'Loading the trace…'));
  let run;
  try {
    run = await (await api(`/api/runs/${encodeURIComponent(runId)}`)).json();
  } catch (error) {
    detail.replaceChildren(el('p', { class: 'note' }, error.message));
    return;
  }
  const spans = run.spans;
  const t0 = Math.min(...spans.map((s) => s.start_ns));
  const t1 = Math.max(...spans.map((s) => s.end_ns));
  const total = Math.max(t1 - t0, 1);
  const attrs = el('div', { class: 'attrs-panel' });
  const tree = el('div', { class: 'tree', role: 'list', 'aria-label': 'Spans' });
  const rows = document.createDocumentFragment();
  for (const [span, depth] of depthsOf(spans)) {
    const tokens = span.attributes['gen_ai.usage.input_tokens'] !== undefined
      ? ` · ${span.attributes['gen_ai.usage.input_tokens']}+${span.attributes['gen_ai.usage.output_tokens'] ?? 0} tok` : '';
    const bar = el('i');
    bar.style.left = `${((span.start_ns - t0) / total) * 100}%`;
    bar.style.width = `${((span.end_ns - span.start_ns) / total) * 100}%`;
    const row = el('button', {
      type: 'button', role: 'listitem', class: `span-row${span.error ? ' error' : ''}`, 'data-span-id': span.id, 'aria-pressed': 'false',
    },
    el('span', { class: 'label' }, el('span', { class: 'indent' }, '\u00a0'.repeat(depth * 2)), span.kind ? el('span', { class: 'kind' }, span.kind) : null, span.name, tokens),
    el('span', { class: 'lane' }, bar),
    el('span', { class: 'dur' }, formatMs((span.end_ns - span.start_ns) / 1e6)));
    row.addEventListener('click', () => {
      tree.querySelectorAll('[aria-pressed="true"]').forEach((r) => r.setAttribute('aria-pressed', 'false'));
      row.setAttribute('aria-pressed', 'true');
      attrs.replaceChildren(el('h3', null, span.name), attributesView(span));
    });
    rows.append(row);
  }
  tree.append(rows);
  const summary = run.run;
  detail.replaceChildren(
    el('h2', null, summary.name || summary.id),
    el('p', { class: 'summary' },
      el('span', { class: `status-${summary.status}` }, summary.status), ` · ${formatMs(summary.duration_ms)} · ${summary.spans} spans · `,
      `${summary.input_tokens} prompt + ${summary.output_tokens} completion tokens`,
      summary.cached_tokens ? ` (${summary.cached_tokens} cached)` : '', ` · ${formatCost(summary.cost_usd)}`),
    tree, attrs);
  detail.dataset.runId = runId;
  detail.dataset.renderMs = (performance.now() - started).toFixed(1);
  detail.focus();
}

// ---- evals ----

async function loadEvals() {
  const list = $('#eval-list');
  try {
    const { reports } = await (await api('/api/evals')).json();
    list.replaceChildren(...reports.map((r) => el('li', null,
      el('button', { type: 'button', onclick: () => openEval(r.name) }, r.name),
      r.summary ? ` · ${r.summary.samples} samples` : '')));
    $('#evals-note').textContent = reports.length ? '' : 'No reports yet: write one with `catena eval rag --out DIR`.';
  } catch (error) {
    list.replaceChildren();
    $('#evals-note').textContent = error.message;
  }
}

async function openEval(name) {
  const detail = $('#eval-detail');
  try {
    const report = await (await api(`/api/evals/${encodeURIComponent(name)}`)).json();
    const means = Object.entries(report.summary.means || {});
    const table = el('table', { 'aria-label': `Mean scores of ${name}` },
      el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'metric'), el('th', { scope: 'col' }, 'mean'))),
      el('tbody', null, means.map(([metric, mean]) => el('tr', null, el('td', null, metric), el('td', null, typeof mean === 'number' ? mean.toFixed(3) : String(mean))))));
    detail.replaceChildren(el('h2', null, name), table);
    if (report.has_report) {
      const html = await (await api(`/api/evals/${encodeURIComponent(name)}/report`)).text();
      // No allow-scripts, no allow-same-origin: the report is inert and cannot reach this page.
      const frame = el('iframe', { sandbox: '', title: `Report ${name}` });
      frame.srcdoc = html;
      detail.append(frame);
    }
  } catch (error) {
    detail.replaceChildren(el('p', { class: 'note' }, error.message));
  }
}

// ---- start ----

document.addEventListener('DOMContentLoaded', async () => {
  setUpTabs();
  $('#run-filters').addEventListener('submit', (e) => { e.preventDefault(); loadRuns(); });
  try {
    const about = await setUpChat();
    if (!about.traces) $('#runs-note').textContent = 'This server keeps no traces (start it with --console).';
  } catch (error) {
    $('#transcript').append(el('li', { class: 'msg error' }, `The server did not answer: ${error.message}`));
  }
  document.body.dataset.ready = '1';
});
