//! # catena-eval
//!
//! Measuring pipelines: rank-based retrieval metrics (trec_eval's semantics, and the convenience
//! forms LlamaIndex reports), and text metrics that agree with sacrebleu, rouge-score and the SQuAD
//! script, and RAG metrics with the Ragas definitions judged by any chat model.
//!
//! ```
//! use catena_eval::retrieval::{hit_rate, reciprocal_rank, mean};
//!
//! let retrieved = ["d3", "d1", "d7"];
//! let relevant = ["d1"];
//! assert_eq!(hit_rate(&retrieved, &relevant, 2), 1.0);
//! assert_eq!(reciprocal_rank(&retrieved, &relevant, 10), 0.5);
//! assert_eq!(mean(&[1.0, 0.5]), Some(0.75));
//! ```
//!
//! ## Contents
//! - [`retrieval`]: hit rate, reciprocal rank, precision and recall at k, over id lists.
//! - [`trec`]: trec_eval's measures and conventions (P, recall, MAP, nDCG, reciprocal rank, success)
//!   over judgement and run maps.
//! - [`rag`]: faithfulness, answer relevancy, context precision and recall, answer correctness
//!   (LLM-judged, structured outputs), and the string- and id-based context metrics.
//! - [`runner`]: [`runner::RagEvaluation`] runs a RAG pipeline over a JSONL dataset and scores
//!   every answer, with bounded concurrency, progress events and per-sample errors.
//! - [`text`]: BLEU (sacrebleu), ROUGE-N/L/Lsum (rouge-score), exact match and token F1 (SQuAD).

mod porter;
pub mod rag;
pub mod retrieval;
pub mod runner;
pub mod text;
pub mod trec;
