//! `catena eval`: retrieval (trec_eval), text (BLEU, ROUGE, SQuAD) and RAG (Ragas) metrics, and
//! a model's perplexity.

mod rag;

use std::path::{Path, PathBuf};

use catena::core::{Error, Result};
use catena::eval::trec;
use catena::models::LlamaOptions;
use clap::{Args, Subcommand, ValueEnum};

use crate::{blocking, model_path};

#[derive(Subcommand)]
pub(crate) enum EvalCommand {
    /// Run the store's RAG pipeline over a JSONL dataset, score it with the Ragas metrics (the
    /// local model as judge) and write results.jsonl, summary.json and report.html.
    Rag(rag::EvalRagArgs),
    /// trec_eval's measures for a TREC run against TREC (or BEIR TSV) judgements, in trec_eval's
    /// layout or as JSON.
    Retrieval(RetrievalArgs),
    /// Score hypotheses against references, line by line: BLEU (sacrebleu's), ROUGE (rouge-score's),
    /// exact match and token F1 (SQuAD's).
    Text(TextArgs),
    /// A model's perplexity on a text file (sliding window; lower is better).
    Perplexity(PerplexityArgs),
}

/// Runs `catena eval ...`.
pub(crate) async fn run(cmd: EvalCommand) -> Result<()> {
    match cmd {
        EvalCommand::Rag(args) => rag::eval_rag(args).await,
        EvalCommand::Retrieval(args) => retrieval(&args),
        EvalCommand::Text(args) => text(&args),
        EvalCommand::Perplexity(args) => perplexity(args).await,
    }
}

/// `catena eval retrieval` options.
#[derive(Args)]
pub(crate) struct RetrievalArgs {
    /// Judgements: `query 0 document grade` lines, or BEIR's `query-id corpus-id score` TSV.
    #[arg(long)]
    qrels: PathBuf,
    /// The run: `query Q0 document rank score tag` lines.
    #[arg(long)]
    run: PathBuf,
    /// Measures: P_k, recall_k, map, map_cut_k, ndcg, ndcg_cut_k, ndcg_exp, ndcg_exp_cut_k,
    /// recip_rank, recip_rank_cut_k, success_k, num_rel, num_rel_ret (k a positive integer).
    #[arg(
        long = "measure",
        short = 'm',
        num_args = 1..,
        value_parser = |name: &str| name.parse::<trec::Measure>(),
        default_values = ["map", "P_10", "recall_100", "ndcg_cut_10", "recip_rank"]
    )]
    measures: Vec<trec::Measure>,
    /// Also print every query's values (trec_eval -q).
    #[arg(short = 'q', long)]
    per_query: bool,
    /// Average over every judged query, scoring unretrieved ones 0 (trec_eval -c).
    #[arg(short = 'c', long)]
    complete: bool,
    /// Lowest grade that counts as relevant (trec_eval -l).
    #[arg(short = 'l', long, default_value_t = 1)]
    relevance_level: i64,
    /// `{"all": {...}, "per_query": {...}}` at full precision instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `catena eval retrieval`.
fn retrieval(args: &RetrievalArgs) -> Result<()> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| Error::io(path, e));
    let located =
        |path: &Path, e: trec::TrecFileError| Error::invalid_input(format!("{}: {e}", path.display()));
    let judged = trec::read_qrels(&read(&args.qrels)?).map_err(|e| located(&args.qrels, e))?;
    let ranked = trec::read_run(&read(&args.run)?).map_err(|e| located(&args.run, e))?;
    if judged.is_empty() {
        return Err(Error::invalid_input(format!("{} has no judgements", args.qrels.display())));
    }
    let options = trec::Options { relevance_level: args.relevance_level, complete: args.complete };
    let evaluation = trec::evaluate(&judged, &ranked, &args.measures, &options);
    if args.json {
        let out = if args.per_query {
            serde_json::json!({"all": evaluation.all, "per_query": evaluation.per_query})
        } else {
            serde_json::json!({"all": evaluation.all})
        };
        println!("{out}");
    } else {
        print!("{}", trec::format_trec(&evaluation, &args.measures, args.per_query));
    }
    Ok(())
}

/// A `catena eval text` metric.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum TextMetric {
    /// Corpus BLEU, 0-100.
    Bleu,
    /// Mean sentence BLEU, 0-100.
    SentenceBleu,
    /// Mean ROUGE-1 precision/recall/F, 0-1.
    #[value(name = "rouge1")]
    Rouge1,
    /// Mean ROUGE-2 precision/recall/F, 0-1.
    #[value(name = "rouge2")]
    Rouge2,
    /// Mean ROUGE-L precision/recall/F, 0-1.
    #[value(name = "rougeL")]
    RougeL,
    /// Mean ROUGE-Lsum, 0-1; a `\n` in a line separates sentences.
    #[value(name = "rougeLsum")]
    RougeLsum,
    /// Exact match (SQuAD), mean 0-100.
    Em,
    /// Token F1 (SQuAD), mean 0-100.
    F1,
}

impl TextMetric {
    /// The metric's name on the command line and in JSON output.
    fn name(self) -> &'static str {
        match self {
            Self::Bleu => "bleu",
            Self::SentenceBleu => "sentence-bleu",
            Self::Rouge1 => "rouge1",
            Self::Rouge2 => "rouge2",
            Self::RougeL => "rougeL",
            Self::RougeLsum => "rougeLsum",
            Self::Em => "em",
            Self::F1 => "f1",
        }
    }
}

/// `catena eval text` options.
#[derive(Args)]
pub(crate) struct TextArgs {
    /// The metric.
    #[arg(long, short, value_enum)]
    metric: TextMetric,
    /// The system's outputs, one per line.
    #[arg(long)]
    hypotheses: PathBuf,
    /// Reference files, one reference per line, aligned with the hypotheses (repeat the option
    /// for several references per line).
    #[arg(long = "references", required = true, num_args = 1..)]
    references: Vec<PathBuf>,
    /// Lowercase before BLEU.
    #[arg(long)]
    lowercase: bool,
    /// Porter-stem words longer than 3 letters before ROUGE (rouge-score's `use_stemmer=True`).
    #[arg(long)]
    stem: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `catena eval perplexity` options.
#[derive(Args)]
pub(crate) struct PerplexityArgs {
    /// The text file.
    file: PathBuf,
    /// `chat` (the default model) or a path to a GGUF file.
    #[arg(long, short, default_value = "chat")]
    model: String,
    /// Tokens per window.
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Tokens the window moves each step (default: half the window).
    #[arg(long)]
    stride: Option<usize>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `catena eval perplexity`.
async fn perplexity(args: PerplexityArgs) -> Result<()> {
    let path = model_path(&args.model).await?;
    let text = std::fs::read_to_string(&args.file).map_err(|e| Error::io(&args.file, e))?;
    let window = args.window;
    let stride = args.stride.unwrap_or(window / 2).max(1);
    let report =
        blocking(move || catena::models::perplexity(&path, &text, window, stride, &LlamaOptions::default()))
            .await?;
    if args.json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::parse("report", e.to_string()))?);
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.4} nats over {} of {} tokens, {} windows)",
            report.perplexity, report.mean_nll, report.scored, report.tokens, report.windows
        );
    }
    Ok(())
}

/// The lines of a text file; `\n` inside a line (literally backslash-n) stands for a line break,
/// so multi-sentence summaries fit one line.
fn lines_of(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(|l| l.replace("\\n", "\n")).collect())
}

/// Runs `catena eval text`.
fn text(args: &TextArgs) -> Result<()> {
    use catena::eval::text;
    let TextArgs { metric, hypotheses, references, lowercase, stem, json } = args;
    let (metric, lowercase, stem, json) = (*metric, *lowercase, *stem, *json);
    let hyps = lines_of(hypotheses)?;
    let mut streams = Vec::new();
    for path in references {
        let lines = lines_of(path)?;
        if lines.len() != hyps.len() {
            return Err(Error::invalid_input(format!(
                "{} has {} lines but {} has {}; every reference file needs one line per hypothesis",
                path.display(),
                lines.len(),
                hypotheses.display(),
                hyps.len()
            )));
        }
        streams.push(lines);
    }
    let refs: Vec<Vec<String>> =
        (0..hyps.len()).map(|i| streams.iter().filter_map(|s| s.get(i).cloned()).collect()).collect();
    if hyps.is_empty() {
        return Err(Error::invalid_input(format!("{} has no lines to score", hypotheses.display())));
    }
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    let bad = |e: text::TextMetricError| Error::invalid_input(e.0);
    let report = match metric {
        TextMetric::Bleu => {
            let options = text::BleuOptions { lowercase, ..text::BleuOptions::default() };
            let b = text::corpus_bleu(&hyps, &refs, &options).map_err(bad)?;
            let precisions: Vec<String> = b.precisions.iter().map(|p| format!("{p:.1}")).collect();
            let ratio = if b.ref_len > 0 { b.sys_len as f64 / b.ref_len as f64 } else { 0.0 };
            let line = format!(
                "BLEU = {:.2} {} (BP = {:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
                b.score,
                precisions.join("/"),
                b.brevity_penalty,
                b.sys_len,
                b.ref_len
            );
            (
                line,
                serde_json::json!({"metric": "bleu", "score": b.score, "precisions": b.precisions, "bp": b.brevity_penalty, "sys_len": b.sys_len, "ref_len": b.ref_len}),
            )
        }
        TextMetric::SentenceBleu => {
            let scores = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| text::sentence_bleu(h, r).map(|b| b.score))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            let score = mean(scores.clone());
            (
                format!("sentence BLEU (mean of {}) = {score:.2}", scores.len()),
                serde_json::json!({"metric": metric.name(), "score": score, "per_line": scores}),
            )
        }
        TextMetric::Em | TextMetric::F1 => {
            let scores: Vec<f64> = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| {
                    100.0
                        * if metric == TextMetric::Em {
                            text::exact_match(h, r)
                        } else {
                            text::token_f1(h, r)
                        }
                })
                .collect();
            let score = mean(scores.clone());
            (
                format!("{} = {score:.2} over {} lines", metric.name().to_uppercase(), scores.len()),
                serde_json::json!({"metric": metric.name(), "score": score, "per_line": scores}),
            )
        }
        TextMetric::Rouge1 | TextMetric::Rouge2 | TextMetric::RougeL | TextMetric::RougeLsum => {
            let rouge = metric.name();
            let kind: text::RougeKind = rouge.parse().map_err(bad)?;
            let score_pair = if stem { text::rouge_stemmed } else { text::rouge };
            // Several references: the best F-measure per line, as rouge-score's score_multi.
            let scores: Vec<text::Rouge> = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| {
                    r.iter().map(|target| score_pair(target, h, kind)).fold(None::<text::Rouge>, |best, s| {
                        match best {
                            Some(b) if b.fmeasure >= s.fmeasure => Some(b),
                            _ => Some(s),
                        }
                    })
                })
                .map(|s| s.unwrap_or(text::Rouge { precision: 0.0, recall: 0.0, fmeasure: 0.0 }))
                .collect();
            let (p, r, f) = (
                mean(scores.iter().map(|s| s.precision).collect()),
                mean(scores.iter().map(|s| s.recall).collect()),
                mean(scores.iter().map(|s| s.fmeasure).collect()),
            );
            (
                format!("{rouge}: precision {p:.4} recall {r:.4} F {f:.4} (mean of {} lines)", scores.len()),
                serde_json::json!({"metric": rouge, "precision": p, "recall": r, "fmeasure": f, "per_line_fmeasure": scores.iter().map(|s| s.fmeasure).collect::<Vec<_>>()}),
            )
        }
    };
    if json {
        println!("{}", report.1);
    } else {
        println!("{}", report.0);
    }
    Ok(())
}
