//! `catena eval rag`: run the store's RAG pipeline over a dataset, score it with the Ragas
//! metrics, and write results.jsonl, summary.json and a self-contained HTML report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use catena::core::{CachedChatModel, CachedEmbedder, ChatCache, EmbeddingCache};
use catena::core::{ChatModel, Embedder, Error, Event, Result, Retriever, RunContext, Runnable, async_trait};
use catena::eval::rag::Judge;
use catena::eval::runner::{RagAnswer, RagEvaluation, RagMetric, RagReport, read_dataset};
use catena::models::LlamaEmbedder;
use catena::models::openai::{OpenAiChatModel, OpenAiConfig};
use catena::retrievers::LanceKeywordRetriever;
use catena::retrievers::{CitedAnswer, EnsembleRetriever, LanceDbStore, VectorStoreRetriever};
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};

/// `catena eval rag` options.
#[derive(Args)]
pub(crate) struct EvalRagArgs {
    /// JSONL, one `{"question", "reference"?, "reference_contexts"?, "reference_ids"?}` per line.
    #[arg(long)]
    dataset: PathBuf,
    /// The store folder written by `catena ingest`.
    #[arg(long)]
    store: PathBuf,
    /// The collection inside the store.
    #[arg(long, default_value = "chunks")]
    collection: String,
    /// Chunks retrieved per question (hybrid: BM25 and similarity fused).
    #[arg(short, default_value_t = 4)]
    k: usize,
    /// Metrics, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = PossibleValuesParser::new(RagMetric::ALL.map(RagMetric::name))
            .try_map(|name| name.parse::<RagMetric>()),
        default_value = "faithfulness,answer_relevancy,context_precision,context_recall"
    )]
    metrics: Vec<RagMetric>,
    /// The model that answers: `chat` (small, fast), `agent` (Qwen2.5-Coder 1.5B), `agent-small`
    /// or a GGUF path.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// The judge: a local model name (`chat`, `agent`; the answering model itself when it is the
    /// same name), a GGUF file, or `openai:MODEL` for a model
    /// on an OpenAI-compatible server (OPENAI_BASE_URL, OPENAI_API_KEY), the intended use: a
    /// capable judge gives meaningful scores, a 135M one mostly shows the pipeline runs.
    #[arg(long, default_value = "chat")]
    judge: String,
    /// Questions in flight at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Where results.jsonl, summary.json and report.html go (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Model replies and embeddings are cached in this folder (default: OUT/cache; chat.jsonl,
    /// embeddings.jsonl), so a re-run with the same questions, contexts and prompts reuses every
    /// answer, verdict and vector.
    #[arg(long, conflicts_with = "no_cache")]
    cache: Option<PathBuf>,
    /// Call the models for every request, reading and writing no cache.
    #[arg(long)]
    no_cache: bool,
    /// Answer without catena's prompt-injection defences (spotlighting, canary, link
    /// cleaning), to measure what they cost in answer quality (see docs/security.md).
    #[arg(long)]
    no_defences: bool,
}

/// The pipeline under evaluation: hybrid retrieval, then the cited answer `catena query --answer`
/// gives ([`CitedAnswer`]), as the evaluation runner's answer.
struct StoreRag(CitedAnswer);

#[async_trait]
impl Runnable<String, RagAnswer> for StoreRag {
    async fn invoke(&self, question: String, ctx: &RunContext) -> Result<RagAnswer> {
        let answer = self.0.invoke(question, ctx).await?;
        Ok(RagAnswer { answer: answer.text, contexts: answer.sources })
    }
}

/// Runs `catena eval rag`.
pub(super) async fn eval_rag(args: EvalRagArgs) -> Result<()> {
    let metrics = args.metrics.clone();
    let text = std::fs::read_to_string(&args.dataset).map_err(|e| Error::io(&args.dataset, e))?;
    let dataset =
        read_dataset(&text).map_err(|e| Error::invalid_input(format!("{}: {e}", args.dataset.display())))?;
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    if args.k == 0 {
        return Err(Error::invalid_input("-k must be at least 1"));
    }

    let store =
        Arc::new(LanceDbStore::open(args.store.to_string_lossy().into_owned(), &args.collection).await?);
    let mut embedder: Arc<dyn Embedder> = Arc::new(LlamaEmbedder::load_default().await?);
    let mut model: Arc<dyn ChatModel> = Arc::new(crate::chat_model(&args.model).await?);
    let mut judge_model: Arc<dyn ChatModel> = match args.judge.as_str() {
        same if same == args.model => Arc::clone(&model),
        remote if remote.starts_with("openai:") => {
            let name = remote.trim_start_matches("openai:");
            if name.is_empty() {
                return Err(Error::invalid_input("--judge openai:MODEL needs a model name after the colon"));
            }
            Arc::new(OpenAiChatModel::new(OpenAiConfig::from_env_for(name))?)
        }
        local => Arc::new(crate::chat_model(local).await?),
    };
    let cache = if args.no_cache {
        None
    } else {
        let dir = args.cache.clone().unwrap_or_else(|| args.out.join("cache"));
        let chat = ChatCache::open(dir.join("chat.jsonl")).await?;
        let vectors = EmbeddingCache::open(dir.join("embeddings.jsonl")).await?;
        for (name, skipped) in
            [("chat.jsonl", chat.skipped_lines()), ("embeddings.jsonl", vectors.skipped_lines())]
        {
            if skipped > 0 {
                eprintln!("{}: {skipped} unreadable lines skipped", dir.join(name).display());
            }
        }
        model = Arc::new(CachedChatModel::shared(model, chat.clone()));
        judge_model = Arc::new(CachedChatModel::shared(judge_model, chat.clone()));
        // The namespace names the exact default model, so a new default never reads old vectors.
        let namespace =
            format!("{}@{}", catena::models::files::EMBED.file_name, catena::models::files::EMBED.sha256);
        embedder = Arc::new(CachedEmbedder::shared(embedder, vectors.clone(), namespace));
        Some((chat, vectors, dir))
    };
    let similarity: Arc<dyn Retriever> =
        Arc::new(VectorStoreRetriever::new(store.clone(), embedder.clone()).with_k(args.k));
    let keywords: Arc<dyn Retriever> = Arc::new(LanceKeywordRetriever::new(store).with_k(args.k));
    let retriever = Arc::new(EnsembleRetriever::new(vec![keywords, similarity]).with_k(args.k));
    // Keyed, so the same question over the same sources gets the same prompt: the model-call
    // cache answers a re-run. The key is public, which is fine for an evaluation's own data.
    let defences = if args.no_defences {
        catena::core::security::Defences::off()
    } else {
        catena::core::security::Defences::default().with_key("catena eval rag")
    };
    let pipeline = StoreRag(
        CitedAnswer::new(retriever, model).with_k(args.k).with_max_tokens(256).with_defences(defences),
    );
    let judge = Judge::new(judge_model).with_embedder(embedder).with_questions(2);

    let bar = indicatif::ProgressBar::new(dataset.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} questions",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let ctx = RunContext::new().with_events(move |e: Event| {
        if let Event::Progress { done, .. } = e {
            shown.set_position(done);
        }
    });
    let report = RagEvaluation::new(Arc::new(pipeline), judge, metrics.clone())
        .with_concurrency(args.concurrency)
        .run(&dataset, &ctx)
        .await?;
    bar.finish_and_clear();

    write_outputs(&args.out, &report, &metrics)?;
    for m in &metrics {
        let name = m.name();
        let mean =
            report.means.get(name).copied().flatten().map_or("undefined".to_owned(), |v| format!("{v:.3}"));
        println!(
            "{name:<26} {mean:>9}  ({} of {} samples)",
            report.counts.get(name).copied().unwrap_or(0),
            dataset.len()
        );
    }
    for (question, why) in &report.failed {
        eprintln!("pipeline failed on {question:?}: {why}");
    }
    if let Some((chat, vectors, dir)) = cache {
        println!(
            "model calls: {} answered from the cache, {} made; texts to embed: {} from the cache, {} embedded ({})",
            chat.hits(),
            chat.misses(),
            vectors.hits(),
            vectors.misses(),
            dir.display()
        );
    }
    println!("report: {}", args.out.join("report.html").display());
    Ok(())
}

fn write_outputs(out: &Path, report: &RagReport, metrics: &[RagMetric]) -> Result<()> {
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    };
    let lines: Vec<String> = report
        .samples
        .iter()
        .map(|s| serde_json::to_string(s).map_err(|e| Error::parse("result", e.to_string())))
        .collect::<Result<_>>()?;
    write("results.jsonl", lines.join("\n") + "\n")?;
    let summary = serde_json::json!({"means": report.means, "counts": report.counts, "failed": report.failed, "samples": report.samples.len()});
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary).map_err(|e| Error::parse("summary", e.to_string()))?,
    )?;
    write("report.html", html_report(report, metrics)?)
}

/// The report: a self-contained HTML page (inline CSS and SVG, no script, no network) with the
/// mean of each metric, its score distribution, the lowest-scoring samples with their contexts,
/// and a table of every sample's scores. Rendered with minijinja, which escapes every value.
fn html_report(report: &RagReport, metrics: &[RagMetric]) -> Result<String> {
    let mut sections = Vec::new();
    for m in metrics {
        let name = m.name();
        let mut scored: Vec<(f64, usize)> = report
            .samples
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.scores.get(name).and_then(|sc| sc.value).map(|v| (v, i)))
            .collect();
        let mut bins = [0usize; 10];
        for (v, _) in &scored {
            let bin = ((v.clamp(0.0, 1.0) * 10.0) as usize).min(9);
            if let Some(b) = bins.get_mut(bin) {
                *b += 1;
            }
        }
        let tallest = bins.iter().copied().max().unwrap_or(0).max(1);
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        let worst: Vec<serde_json::Value> = scored
            .iter()
            .take(3)
            .filter_map(|(v, i)| report.samples.get(*i).map(|s| (v, s)))
            .map(|(v, s)| {
                serde_json::json!({
                    "score": format!("{v:.3}"),
                    "question": s.sample.question,
                    "answer": s.sample.answer,
                    "contexts": s.sample.contexts,
                })
            })
            .collect();
        let errors: Vec<String> = report
            .samples
            .iter()
            .filter_map(|s| s.errors.get(name).map(|e| format!("{}: {e}", s.sample.question)))
            .collect();
        sections.push(serde_json::json!({
            "name": name,
            "mean": report.means.get(name).copied().flatten(),
            "mean_text": report.means.get(name).copied().flatten().map_or("undefined".to_owned(), |v| format!("{v:.3}")),
            "count": report.counts.get(name).copied().unwrap_or(0),
            "bins": bins.iter().enumerate().map(|(i, n)| serde_json::json!({
                "x": i * 30, "h": (*n as f64 / tallest as f64 * 100.0).round(), "n": n,
            })).collect::<Vec<_>>(),
            "worst": worst,
            "errors": errors,
        }));
    }
    // Every sample with each metric's score ("-" when undefined or not computed).
    let rows: Vec<serde_json::Value> = report
        .samples
        .iter()
        .map(|s| {
            let cells: Vec<String> = metrics
                .iter()
                .map(|m| {
                    s.scores
                        .get(m.name())
                        .and_then(|sc| sc.value)
                        .map_or("-".to_owned(), |v| format!("{v:.3}"))
                })
                .collect();
            serde_json::json!({"question": s.sample.question, "cells": cells})
        })
        .collect();
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("report", REPORT).map_err(|e| Error::parse("report template", e.to_string()))?;
    let template = env.get_template("report").map_err(|e| Error::parse("report template", e.to_string()))?;
    template
        .render(minijinja::context! {
            sections => minijinja::Value::from(minijinja::value::Serde(&sections)),
            samples => report.samples.len(),
            names => metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
            rows => minijinja::Value::from(minijinja::value::Serde(&rows)),
            failed => report.failed.iter().map(|(q, w)| format!("{q}: {w}")).collect::<Vec<_>>(),
        })
        .map_err(|e| Error::parse("report", e.to_string()))
}

const REPORT: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>catena RAG evaluation</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.bar{fill:#4a7ab5} .mean{fill:#2c6e49} .axis{stroke:#999} small{color:#666}
.sample{background:#f6f6f6;padding:.6rem;margin:.5rem 0;border-radius:4px}
.ctx{font-size:.85em;color:#444;white-space:pre-wrap;border-left:3px solid #ccc;padding-left:.5rem;margin:.3rem 0}
.err{color:#a33} table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.2rem .4rem;text-align:left}
</style></head><body>
<h1>RAG evaluation</h1>
<p>{{ samples }} samples scored{% if failed %}; the pipeline failed on {{ failed|length }}{% endif %}.</p>
<svg width="520" height="{{ sections|length * 28 + 10 }}" role="img" aria-label="mean of each metric">
{% for s in sections %}<text x="0" y="{{ loop.index0 * 28 + 20 }}">{{ s.name }}</text>
<rect class="mean" x="220" y="{{ loop.index0 * 28 + 6 }}" height="18" width="{{ ((s.mean or 0) * 250)|round }}"></rect>
<text x="{{ 228 + ((s.mean or 0) * 250)|round }}" y="{{ loop.index0 * 28 + 20 }}">{{ s.mean_text }}</text>
{% endfor %}</svg>
{% for s in sections %}
<h2>{{ s.name }} <small>mean {{ s.mean_text }} over {{ s.count }} samples</small></h2>
<svg width="320" height="130" role="img" aria-label="distribution of {{ s.name }}">
{% for b in s.bins %}<rect class="bar" x="{{ b.x + 10 }}" y="{{ 110 - b.h }}" width="26" height="{{ b.h }}"><title>{{ b.n }} samples</title></rect>{% endfor %}
<line class="axis" x1="10" y1="110" x2="310" y2="110"></line>
<text x="6" y="126">0</text><text x="150" y="126">0.5</text><text x="298" y="126">1</text>
</svg>
{% if s.worst %}<p>Lowest scores:</p>{% endif %}
{% for w in s.worst %}<div class="sample"><b>{{ w.score }}</b> — {{ w.question }}<br><i>{{ w.answer }}</i>
{% for c in w.contexts %}<div class="ctx">{{ c }}</div>{% endfor %}</div>{% endfor %}
{% for e in s.errors %}<p class="err">not computed: {{ e }}</p>{% endfor %}
{% endfor %}
<h2>All samples</h2>
<table><tr><th>question</th>{% for n in names %}<th>{{ n }}</th>{% endfor %}</tr>
{% for r in rows %}<tr><td>{{ r.question }}</td>{% for c in r.cells %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for f in failed %}<p class="err">pipeline failed: {{ f }}</p>{% endfor %}
</body></html>
"#;
