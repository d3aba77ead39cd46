//! The chat inference loop: several requests decoded together, in shared batches.
//!
//! The context holds `n_seq` sequences ("slots"). Each loop iteration builds one batch from the
//! next token of every generating request plus as much of waiting prompts as fits in `n_batch`,
//! decodes it once, and samples every request whose logits are ready. So N concurrent requests
//! share each forward pass instead of queueing behind one another, and a long prompt is fed in
//! chunks without stalling the others.
//!
//! Each slot keeps the tokens it has evaluated. A new request that continues a slot's
//! conversation (an agent's next step, a chat's next turn) goes to that slot and evaluates only
//! what is new; any other request takes the least recently used free slot.
//!
//! With speculative decoding (see [`Speculation`](super::Speculation)), a generating request puts
//! a guess of its next tokens into the batch after its pending token, with logits at every
//! position. Sampling then walks the guess: the request's own sampler picks the token at each
//! position, and while the pick equals the guess the next position's logits are already there.
//! At the first mismatch the pick becomes the pending token and the KV cells of the rest of the
//! guess are removed, so the sequence holds exactly the reply's tokens.

use std::collections::VecDeque;
use std::sync::mpsc::Receiver;

use catena_core::{ChatDelta, ChatRequest, Error, FinishReason, Result, ToolCall, Usage};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::decode::{TextAssembler, build_sampler, format_grammar, sample};
use super::speculate::{Drafter, Shape, common_prefix};
use super::template::ChatTemplate;
use super::tools::{self, NativeReply, ToolFormat, ToolPlan};

/// One request for the inference thread: what to generate, where its deltas go, and how its
/// caller stops it.
pub(crate) struct Job {
    pub(crate) request: ChatRequest,
    pub(crate) deltas: UnboundedSender<Result<ChatDelta>>,
    pub(crate) cancel: CancellationToken,
}

pub(crate) struct Scheduler<'m> {
    model: &'m LlamaModel,
    template: &'m ChatTemplate,
    slots: Vec<Slot>,
    waiting: VecDeque<Job>,
    n_batch: usize,
    /// Most tokens one sequence may hold.
    seq_ctx: usize,
    /// Tool calls made so far, for unique call ids.
    calls: u64,
    /// Admissions so far: the clock for least-recently-used slot choice.
    clock: u64,
    reuse_prefix: bool,
    /// How this model writes tool calls.
    tool_format: ToolFormat,
    /// Where speculative guesses come from (or none).
    drafter: Drafter<'m>,
}

/// A free slot is chosen for a prompt when the prompt continues it: it keeps at least this share
/// of the slot's cached tokens. Otherwise the least recently used free slot is taken, so one
/// conversation does not evict another's cache just because both start with the same system prompt.
const CONTINUES_THRESHOLD: f64 = 0.8;

struct Slot {
    seq: i32,
    /// Tokens evaluated into this sequence's KV cells, in order.
    cached: Vec<LlamaToken>,
    active: Option<Active>,
    last_used: u64,
}

/// A request being served.
struct Active {
    deltas: UnboundedSender<Result<ChatDelta>>,
    cancel: tokio_util::sync::CancellationToken,
    prompt: Vec<LlamaToken>,
    /// Prompt tokens already in the cache (reused or fed).
    fed: usize,
    reused: usize,
    sampler: LlamaSampler,
    text: TextAssembler,
    reply: Reply,
    generated: usize,
    max_new: usize,
    /// A sampled token still to be fed.
    next: Option<LlamaToken>,
    /// Where this request's logits are in the batch just decoded: its pending token's, followed
    /// by one for each token of `draft`.
    logits_at: Option<i32>,
    /// The prompt and every token generated so far (the pending one included): what guesses
    /// are looked up in.
    history: Vec<LlamaToken>,
    /// The guessed tokens fed after the pending token in the batch just decoded.
    draft: Vec<LlamaToken>,
    /// Tokens guessed, and guesses confirmed, over the request.
    drafted: usize,
    accepted: usize,
    /// Most tokens the next guess may have: doubles while guesses are confirmed whole, falls to
    /// what was confirmed when one is not (none for one step after a guess fails outright).
    /// A wrong guess costs nearly a forward pass per token on a CPU, so guesses stay short until
    /// the reply shows it is copying.
    draft_cap: usize,
}

/// What sampling one position gave a request.
enum Emit {
    /// A token to continue with.
    Next(LlamaToken),
    /// The reply is complete.
    Done(FinishReason),
    /// The request failed; its error was sent.
    Failed,
}

/// How a reply's text becomes deltas.
enum Reply {
    /// Plain text, streamed as it comes.
    Text,
    /// A generic-format tool reply: one JSON object, held and parsed whole at the end.
    Generic(String),
    /// A native tool reply: text streamed until the first call, each call sent as it closes.
    Native(NativeReply),
}

impl<'m> Scheduler<'m> {
    pub(crate) fn new(
        model: &'m LlamaModel,
        template: &'m ChatTemplate,
        shape: &Shape,
        options: &super::LlamaOptions,
        tool_format: ToolFormat,
        drafter: Drafter<'m>,
    ) -> Self {
        let slots = (0..shape.n_seq.max(1))
            .map(|s| Slot {
                seq: i32::try_from(s).unwrap_or(0),
                cached: Vec::new(),
                active: None,
                last_used: 0,
            })
            .collect();
        Self {
            model,
            template,
            slots,
            waiting: VecDeque::new(),
            n_batch: usize::try_from(shape.n_batch).unwrap_or(512).max(1),
            seq_ctx: usize::try_from(shape.seq_ctx).unwrap_or(2048),
            calls: 0,
            clock: 0,
            reuse_prefix: options.reuse_prefix,
            tool_format,
            drafter,
        }
    }

    /// Serves jobs until every sender is gone and no request is left.
    pub(crate) fn run(&mut self, ctx: &mut LlamaContext<'_>, jobs: &Receiver<Job>) {
        let mut batch = LlamaBatch::new(self.n_batch, i32::try_from(self.slots.len()).unwrap_or(1));
        loop {
            let busy = self.slots.iter().any(|s| s.active.is_some()) || !self.waiting.is_empty();
            if !busy {
                match jobs.recv() {
                    Ok(job) => self.waiting.push_back(job),
                    Err(_) => return,
                }
            }
            while let Ok(job) = jobs.try_recv() {
                self.waiting.push_back(job);
            }
            self.admit(ctx);
            self.drop_abandoned();
            if !self.fill(&mut batch) {
                continue;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                self.fail_batch(ctx, &format!("llama.cpp decode failed: {e}"));
                continue;
            }
            self.sample_all(ctx);
        }
    }

    /// Moves waiting jobs into free slots: the one whose conversation the prompt continues, or else
    /// the least recently used.
    fn admit(&mut self, ctx: &mut LlamaContext<'_>) {
        while self.slots.iter().any(|s| s.active.is_none()) {
            let Some(job) = self.waiting.pop_front() else { return };
            let deltas = job.deltas.clone();
            let prepared = match self.prepare(job) {
                Ok(p) => p,
                Err(e) => {
                    let _ = deltas.send(Err(e));
                    continue;
                }
            };
            let prompt = &prepared.prompt;
            let free = || self.slots.iter().enumerate().filter(|(_, s)| s.active.is_none());
            let continued = free()
                .map(|(i, s)| (i, common_prefix(&s.cached, prompt), s.cached.len()))
                .filter(|&(_, shared, held)| shared > 0 && shared as f64 >= CONTINUES_THRESHOLD * held as f64)
                .max_by_key(|&(_, shared, _)| shared)
                .map(|(i, _, _)| i);
            let chosen = continued.or_else(|| free().min_by_key(|(_, s)| s.last_used).map(|(i, _)| i));
            self.clock += 1;
            let clock = self.clock;
            let Some(slot) = chosen.and_then(|i| self.slots.get_mut(i)) else { return };
            slot.last_used = clock;
            // At least the last prompt token is evaluated again: its logits are needed.
            let mut common = if self.reuse_prefix {
                common_prefix(&slot.cached, &prepared.prompt).min(prepared.prompt.len() - 1)
            } else {
                0
            };
            if ctx.clear_kv_cache_seq(u32::try_from(slot.seq).ok(), u32::try_from(common).ok(), None).ok()
                != Some(true)
            {
                let _ = ctx.clear_kv_cache_seq(u32::try_from(slot.seq).ok(), None, None);
                common = 0;
            }
            slot.cached.truncate(common);
            let mut active = prepared;
            active.fed = common;
            active.reused = common;
            slot.active = Some(active);
        }
    }

    /// Renders, tokenizes and validates a request.
    fn prepare(&mut self, job: Job) -> Result<Active> {
        let Job { request, deltas, cancel } = job;
        let ChatRequest { messages, tools: tool_specs, .. } = &request;
        if messages.is_empty() {
            return Err(Error::invalid_input("a chat request needs at least one message"));
        }
        // With tools, calls are decoded under a grammar of "call one of these tools"; see tools.rs.
        // The native format needs the model's own template to render the tools; when it cannot,
        // the generic format takes over.
        let mut plan = tools::plan(&request, self.tool_format)?;
        let mut native = None;
        if let Some(p) = &plan
            && p.format.is_native()
        {
            native = self.template.render_native(&p.messages, &p.tools);
            if native.is_none() {
                plan = tools::plan(&request, ToolFormat::Generic)?;
            }
        }
        let (prompt, kind) = match (&plan, native) {
            (_, Some(prompt)) => (prompt, super::template::TemplateKind::Jinja),
            (Some(p), None) => self.template.render(self.model, &p.messages, &p.tools),
            (None, None) => self.template.render(self.model, messages, tool_specs),
        };
        tracing::trace!(?kind, prompt_len = prompt.len(), "rendered chat prompt");
        let vocab = self.model.vocab();
        // Templates that write the BOS token themselves must not get a second one.
        let bos = self.template.bos();
        let add_bos = vocab.should_add_bos() && !(bos.is_empty() || prompt.starts_with(bos));
        let tokens = vocab.tokenize(prompt.as_bytes(), add_bos, true);
        if tokens.is_empty() {
            return Err(Error::invalid_input("the rendered prompt has no tokens"));
        }
        if tokens.len() >= self.seq_ctx {
            return Err(Error::context_length(format!(
                "the prompt has {} tokens but the context holds {} per request; shorten the conversation \
                 (or use memory that summarises) or load the model with a larger n_ctx",
                tokens.len(),
                self.seq_ctx
            )));
        }
        let (grammar, triggers) = match &plan {
            Some(ToolPlan { grammar, triggers, .. }) => (Some(grammar.clone()), triggers.clone()),
            None => (format_grammar(request.response_format.as_ref())?, Vec::new()),
        };
        let sampler = build_sampler(self.model, &request.sampling, grammar.as_deref(), &triggers)?;
        let room = self.seq_ctx - tokens.len();
        let max_new =
            request.sampling.max_tokens.map_or(room, |m| usize::try_from(m).unwrap_or(usize::MAX)).min(room);
        Ok(Active {
            deltas,
            cancel,
            history: tokens.clone(),
            draft: Vec::new(),
            drafted: 0,
            accepted: 0,
            draft_cap: 1,
            prompt: tokens,
            fed: 0,
            reused: 0,
            sampler,
            text: TextAssembler::new(request.sampling.stop.clone()),
            reply: match plan.map(|p| p.format) {
                None => Reply::Text,
                Some(ToolFormat::Generic) => Reply::Generic(String::new()),
                Some(format) => Reply::Native(NativeReply::new(format)),
            },
            generated: 0,
            max_new,
            next: None,
            logits_at: None,
        })
    }

    /// Ends requests whose caller cancelled or went away.
    fn drop_abandoned(&mut self) {
        for slot in &mut self.slots {
            let gone = slot.active.as_ref().is_some_and(|a| a.cancel.is_cancelled() || a.deltas.is_closed());
            if gone && let Some(a) = slot.active.take() {
                let _ = a.deltas.send(Err(Error::Cancelled));
                // A request cancelled mid-prompt leaves part of its prompt in the cache: still a
                // valid prefix, so it stays for reuse.
            }
        }
    }

    /// Puts the next token of every generating request, then waiting prompt tokens, into the
    /// batch. Returns whether there is anything to decode.
    fn fill(&mut self, batch: &mut LlamaBatch) -> bool {
        batch.clear();
        let mut used = 0usize;
        // Every pending token gets a place before any guess does.
        let mut pending =
            self.slots.iter().filter(|s| s.active.as_ref().is_some_and(|a| a.next.is_some())).count();
        for slot in &mut self.slots {
            let Some(a) = slot.active.as_mut() else { continue };
            a.logits_at = None;
            a.draft.clear();
            if let Some(token) = a.next.take() {
                pending = pending.saturating_sub(1);
                let pos = i32::try_from(slot.cached.len()).unwrap_or(i32::MAX);
                if batch.add(token, pos, &[slot.seq], true).is_err() {
                    a.next = Some(token);
                    continue;
                }
                slot.cached.push(token);
                a.logits_at = Some(i32::try_from(used).unwrap_or(0));
                used += 1;
                // A guess of n tokens can give n + 1; no more than the request may still generate.
                let room = self.n_batch.saturating_sub(used + pending);
                let limit =
                    a.max_new.saturating_sub(a.generated).saturating_sub(1).min(room).min(a.draft_cap);
                if a.draft_cap == 0 {
                    a.draft_cap = 1;
                }
                for guess in self.drafter.draft(slot.seq, &a.history, limit) {
                    let pos = i32::try_from(slot.cached.len()).unwrap_or(i32::MAX);
                    if batch.add(guess, pos, &[slot.seq], true).is_err() {
                        break;
                    }
                    slot.cached.push(guess);
                    a.draft.push(guess);
                    used += 1;
                }
                a.drafted += a.draft.len();
            }
        }
        for slot in &mut self.slots {
            let Some(a) = slot.active.as_mut() else { continue };
            if a.logits_at.is_some() || a.fed >= a.prompt.len() || a.next.is_some() {
                continue;
            }
            let budget = self.n_batch.saturating_sub(used);
            if budget == 0 {
                break;
            }
            let end = (a.fed + budget).min(a.prompt.len());
            for i in a.fed..end {
                let last = i + 1 == a.prompt.len();
                let Some(&token) = a.prompt.get(i) else { break };
                let pos = i32::try_from(slot.cached.len()).unwrap_or(i32::MAX);
                if batch.add(token, pos, &[slot.seq], last).is_err() {
                    break;
                }
                slot.cached.push(token);
                if last {
                    a.logits_at = Some(i32::try_from(used).unwrap_or(0));
                }
                used += 1;
                a.fed += 1;
            }
        }
        used > 0
    }

    /// A failed decode leaves the KV cells of every sequence in the batch in an unknown state, so
    /// every active request gets the error and its cache is dropped.
    fn fail_batch(&mut self, ctx: &mut LlamaContext<'_>, message: &str) {
        for slot in &mut self.slots {
            if let Some(a) = slot.active.take() {
                let _ = a.deltas.send(Err(Error::model_transient(message.to_owned())));
                let _ = ctx.clear_kv_cache_seq(u32::try_from(slot.seq).ok(), None, None);
                slot.cached.clear();
            }
        }
    }

    /// Samples every request whose logits are ready: its pending token's position, then, while
    /// the picks confirm its guess, the guess's positions; then removes the KV cells of what the
    /// picks did not confirm.
    fn sample_all(&mut self, ctx: &mut LlamaContext<'_>) {
        for slot in &mut self.slots {
            let Some(a) = slot.active.as_mut() else { continue };
            let Some(at) = a.logits_at.take() else { continue };
            let mut confirmed = 0usize;
            let outcome = loop {
                let offset = i32::try_from(confirmed).unwrap_or(0);
                match emit(a, self.model, ctx, at + offset, &mut self.calls) {
                    Emit::Next(token) if a.draft.get(confirmed) == Some(&token) => {
                        // The guess was right: its position's logits came with this decode.
                        confirmed += 1;
                        a.accepted += 1;
                    }
                    Emit::Next(token) => {
                        a.next = Some(token);
                        break Emit::Next(token);
                    }
                    other => break other,
                }
            };
            let unconfirmed = a.draft.len() - confirmed;
            if !a.draft.is_empty() {
                a.draft_cap = if unconfirmed == 0 { confirmed.saturating_mul(2) } else { confirmed };
            }
            if matches!(outcome, Emit::Failed) {
                slot.active = None;
            }
            if unconfirmed > 0 {
                let keep = slot.cached.len() - unconfirmed;
                let removed = ctx
                    .clear_kv_cache_seq(u32::try_from(slot.seq).ok(), u32::try_from(keep).ok(), None)
                    .unwrap_or(false);
                if removed {
                    slot.cached.truncate(keep);
                } else {
                    // Cannot happen for the models speculation is enabled on; if it does, the
                    // sequence is no longer what `cached` says, so it is dropped whole.
                    let _ = ctx.clear_kv_cache_seq(u32::try_from(slot.seq).ok(), None, None);
                    slot.cached.clear();
                    if let Some(a) = slot.active.take() {
                        let _ = a.deltas.send(Err(Error::model_permanent(
                            "llama.cpp could not remove rejected speculative tokens from the KV cache; \
                             load the model with `Speculation::Off`",
                        )));
                    }
                    continue;
                }
            }
            if let Emit::Done(reason) = outcome
                && let Some(done) = slot.active.take()
            {
                finish(done, reason, &mut self.calls);
            }
        }
    }
}

/// Samples the token at batch position `at` for `a` and passes it on as text or tool-call deltas.
fn emit(a: &mut Active, model: &LlamaModel, ctx: &LlamaContext<'_>, at: i32, calls: &mut u64) -> Emit {
    if a.generated >= a.max_new {
        return Emit::Done(FinishReason::Length);
    }
    let token = match sample(&mut a.sampler, ctx, at) {
        Ok(token) => token,
        Err(e) => {
            let _ = a.deltas.send(Err(e));
            return Emit::Failed;
        }
    };
    let vocab = model.vocab();
    if vocab.is_eog(token) {
        return Emit::Done(FinishReason::Stop);
    }
    a.generated += 1;
    a.history.push(token);
    let (piece, stopped) = a.text.push(&vocab.token_to_piece(token, false, None));
    let delta = match &mut a.reply {
        Reply::Text => Ok(ChatDelta { content: piece, ..ChatDelta::default() }),
        Reply::Generic(held) => {
            held.push_str(&piece);
            Ok(ChatDelta::default())
        }
        Reply::Native(reply) => reply
            .push(&piece, &mut || next_call_id(calls))
            .map(|(content, tool_calls)| ChatDelta { content, tool_calls, ..ChatDelta::default() }),
    };
    let failed = delta.is_err();
    let worth_sending = delta.as_ref().map_or(true, |d| !d.content.is_empty() || !d.tool_calls.is_empty());
    if worth_sending && a.deltas.send(delta).is_err() {
        // Nobody listens any more: stop spending compute on it.
        a.cancel.cancel();
    }
    if failed {
        // A malformed call (a model outside its grammar): the error was sent.
        Emit::Failed
    } else if stopped {
        Emit::Done(FinishReason::Stop)
    } else if a.generated >= a.max_new {
        Emit::Done(FinishReason::Length)
    } else {
        Emit::Next(token)
    }
}

/// The next tool call's id: `call_0`, `call_1`, ... for the model's lifetime.
fn next_call_id(calls: &mut u64) -> String {
    let id = format!("call_{calls}");
    *calls += 1;
    id
}

/// Sends a finished request's last delta: the remaining text (or the parsed tool call), the finish
/// reason and the token counts.
fn finish(a: Active, reason: FinishReason, calls: &mut u64) {
    let usage = Usage {
        prompt_tokens: u32::try_from(a.prompt.len()).unwrap_or(u32::MAX),
        cached_prompt_tokens: u32::try_from(a.reused).unwrap_or(u32::MAX),
        completion_tokens: u32::try_from(a.generated).unwrap_or(u32::MAX),
        draft_tokens: u32::try_from(a.drafted).unwrap_or(u32::MAX),
        accepted_draft_tokens: u32::try_from(a.accepted).unwrap_or(u32::MAX),
    };
    let tail = a.text.finish();
    let last = |content: String, tool_calls: Vec<ToolCall>, reason: FinishReason| ChatDelta {
        content,
        tool_calls,
        finish_reason: Some(reason),
        usage: Some(usage),
    };
    let delta = match a.reply {
        Reply::Text => Ok(last(tail, Vec::new(), reason)),
        Reply::Native(mut reply) => {
            // The tail (held back by a stop string that never came) may still close a call.
            reply.push(&tail, &mut || next_call_id(calls)).and_then(|(content, tool_calls)| {
                let called = reply.made_calls();
                let rest = reply.finish()?;
                let reason = if called { FinishReason::ToolCalls } else { reason };
                Ok(last(content + &rest, tool_calls, reason))
            })
        }
        Reply::Generic(mut held) => {
            held.push_str(&tail);
            generic_finish(&held, reason, calls)
                .map(|(content, tool_calls, reason)| last(content, tool_calls, reason))
        }
    };
    let _ = a.deltas.send(delta);
}

/// The end of a generic-format reply: its answer or call, or an error for a call that was cut.
fn generic_finish(
    held: &str,
    reason: FinishReason,
    calls: &mut u64,
) -> Result<(String, Vec<ToolCall>, FinishReason)> {
    if reason == FinishReason::Length {
        // A plain answer cut at the limit is still an answer, as it is without tools: its text so
        // far, finishing with `Length`. Only a cut tool call (which cannot run) is an error.
        return match tools::partial_response(held) {
            Some(partial) => Ok((partial, Vec::new(), FinishReason::Length)),
            None => Err(Error::parse(
                "tool-call reply",
                format!(
                    "generation hit max_tokens before the JSON was complete ({held:?}); raise max_tokens"
                ),
            )),
        };
    }
    let (content, tool_calls) = tools::parse_reply(held, &next_call_id(calls))?;
    let reason = if tool_calls.is_empty() { reason } else { FinishReason::ToolCalls };
    Ok((content, tool_calls, reason))
}
