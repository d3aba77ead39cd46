//! `catena eval`: retrieval (trec_eval), text (BLEU, ROUGE, SQuAD) and RAG (Ragas) metrics, and
//! a model's perplexity.

mod rag;

use std::path::PathBuf;

use catena::core::{Error, Result};
use catena::models::LlamaOptions;
use clap::Subcommand;

use crate::{blocking, model_path};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Run the store's RAG pipeline over a JSONL dataset, score it with the Ragas metrics (the
    /// local model as judge) and write results.jsonl, summary.json and report.html.
    Rag(rag::EvalRagArgs),
    /// trec_eval's measures for a TREC run against TREC (or BEIR TSV) judgements, in trec_eval's
    /// layout or as JSON.
    Retrieval {
        /// Judgements: `query 0 document grade` lines, or BEIR's `query-id corpus-id score` TSV.
        #[arg(long)]
        qrels: PathBuf,
        /// The run: `query Q0 document rank score tag` lines.
        #[arg(long)]
        run: PathBuf,
        /// Measures (P_k, recall_k, map, map_cut_k, ndcg, ndcg_cut_k, recip_rank, recip_rank_cut_k,
        /// success_k, num_rel, num_rel_ret) [default: map P_10 recall_100 ndcg_cut_10 recip_rank].
        #[arg(long = "measure", short = 'm', num_args = 1..)]
        measures: Vec<String>,
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
    },
    /// Score hypotheses against references, line by line: BLEU (sacrebleu's), ROUGE (rouge-score's),
    /// exact match and token F1 (SQuAD's).
    Text {
        /// bleu (corpus, 0-100), sentence-bleu (mean, 0-100), rouge1, rouge2, rougeL, rougeLsum
        /// (mean precision/recall/F, 0-1; in rougeLsum a `\n` in a line separates sentences), em, f1 (mean, 0-100).
        #[arg(long, short)]
        metric: String,
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
    },
    /// A model's perplexity on a text file (sliding window; lower is better).
    Perplexity {
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
    },
}

/// Runs `catena eval ...`.
pub async fn run(cmd: EvalCommand) -> Result<()> {
    let (file, model, window, stride, json) = match cmd {
        EvalCommand::Perplexity { file, model, window, stride, json } => (file, model, window, stride, json),
        EvalCommand::Text { metric, hypotheses, references, lowercase, stem, json } => {
            return eval_text(&metric, &hypotheses, &references, lowercase, stem, json);
        }
        EvalCommand::Rag(args) => return rag::eval_rag(args).await,
        EvalCommand::Retrieval { qrels, run, measures, per_query, complete, relevance_level, json } => {
            return eval_retrieval(
                &qrels,
                &run,
                &measures,
                per_query,
                catena::eval::trec::Options { relevance_level, complete },
                json,
            );
        }
    };
    let path = model_path(&model).await?;
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let stride = stride.unwrap_or(window / 2).max(1);
    let report =
        blocking(move || catena::models::perplexity(&path, &text, window, stride, &LlamaOptions::default()))
            .await?;
    if json {
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::parse("report", e.to_string()))?);
    } else {
        println!(
            "perplexity {:.4} (mean NLL {:.4} nats over {} of {} tokens, {} windows)",
            report.perplexity, report.mean_nll, report.scored, report.tokens, report.windows
        );
    }
    Ok(())
}

fn eval_retrieval(
    qrels: &std::path::Path,
    run: &std::path::Path,
    measures: &[String],
    per_query: bool,
    options: catena::eval::trec::Options,
    json: bool,
) -> Result<()> {
    use catena::eval::trec;
    let read = |path: &std::path::Path| std::fs::read_to_string(path).map_err(|e| Error::io(path, e));
    let names: Vec<String> = if measures.is_empty() {
        ["map", "P_10", "recall_100", "ndcg_cut_10", "recip_rank"].map(String::from).to_vec()
    } else {
        measures.to_vec()
    };
    let measures = names
        .iter()
        .map(|m| m.parse::<trec::Measure>().map_err(|e| Error::invalid_input(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let located = |path: &std::path::Path, e: trec::TrecFileError| {
        Error::invalid_input(format!("{}: {e}", path.display()))
    };
    let judged = trec::read_qrels(&read(qrels)?).map_err(|e| located(qrels, e))?;
    let ranked = trec::read_run(&read(run)?).map_err(|e| located(run, e))?;
    if judged.is_empty() {
        return Err(Error::invalid_input(format!("{} has no judgements", qrels.display())));
    }
    let evaluation = trec::evaluate(&judged, &ranked, &measures, &options);
    if json {
        let out = if per_query {
            serde_json::json!({"all": evaluation.all, "per_query": evaluation.per_query})
        } else {
            serde_json::json!({"all": evaluation.all})
        };
        println!("{out}");
    } else {
        print!("{}", trec::format_trec(&evaluation, &measures, per_query));
    }
    Ok(())
}

/// The lines of a text file; `\n` inside a line (literally backslash-n) stands for a line break,
/// so multi-sentence summaries fit one line.
fn lines_of(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text.lines().map(|l| l.replace("\\n", "\n")).collect())
}

fn eval_text(
    metric: &str,
    hypotheses: &std::path::Path,
    references: &[PathBuf],
    lowercase: bool,
    stem: bool,
    json: bool,
) -> Result<()> {
    use catena::eval::text;
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
        "bleu" => {
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
        "sentence-bleu" => {
            let scores = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| text::sentence_bleu(h, r).map(|b| b.score))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(bad)?;
            let score = mean(scores.clone());
            (
                format!("sentence BLEU (mean of {}) = {score:.2}", scores.len()),
                serde_json::json!({"metric": metric, "score": score, "per_line": scores}),
            )
        }
        "em" | "f1" => {
            let scores: Vec<f64> = hyps
                .iter()
                .zip(&refs)
                .map(|(h, r)| {
                    100.0 * if metric == "em" { text::exact_match(h, r) } else { text::token_f1(h, r) }
                })
                .collect();
            let score = mean(scores.clone());
            (
                format!("{} = {score:.2} over {} lines", metric.to_uppercase(), scores.len()),
                serde_json::json!({"metric": metric, "score": score, "per_line": scores}),
            )
        }
        rouge => {
            let kind: text::RougeKind = rouge.parse().map_err(|e: text::TextMetricError| {
                Error::invalid_input(format!("{}; or bleu, sentence-bleu, em, f1", e.0))
            })?;
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
