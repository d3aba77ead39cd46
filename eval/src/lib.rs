//! # catena-eval
//!
//! Measuring pipelines. So far: rank-based retrieval metrics over lists of document ids, the
//! convenience forms LlamaIndex reports (hit rate, MRR). trec_eval-exact measures, RAG metrics and
//! text metrics follow (see the README's feature table).
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

pub mod retrieval;
pub mod trec;
