//! Drafting for speculative decoding: where the guesses the scheduler verifies come from.
//!
//! The scheduler (see scheduler.rs) feeds a request's pending token together with a draft, gets
//! logits at every position from one decode, and keeps the draft's tokens for as long as they
//! equal what the request's sampler picks. This module only guesses; it never decides.

use llama_cpp_2::token::LlamaToken;

use super::Speculation;

/// Guesses continuations of a token sequence.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Drafter {
    Off,
    PromptLookup { ngram_min: usize, ngram_max: usize, max_draft: usize },
}

impl Drafter {
    pub(crate) fn new(speculation: Speculation) -> Self {
        let size = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
        match speculation {
            Speculation::PromptLookup { ngram_min, ngram_max, max_draft } if max_draft > 0 => {
                let ngram_min = size(ngram_min).max(1);
                Self::PromptLookup {
                    ngram_min,
                    ngram_max: size(ngram_max).max(ngram_min),
                    max_draft: size(max_draft),
                }
            }
            _ => Self::Off,
        }
    }

    /// Up to `limit` tokens guessed to follow `history` (the prompt and the reply so far); empty
    /// when there is no guess.
    ///
    /// Prompt lookup takes the longest n-gram ending `history` (from `ngram_max` down to
    /// `ngram_min` tokens) that occurred before, at its most recent earlier occurrence, and guesses
    /// the tokens that followed it there. The most recent occurrence because a reply that copies a
    /// passage keeps copying from where it last matched.
    pub(crate) fn draft(&self, history: &[LlamaToken], limit: usize) -> Vec<LlamaToken> {
        let Self::PromptLookup { ngram_min, ngram_max, max_draft } = *self else { return Vec::new() };
        let limit = limit.min(max_draft);
        if limit == 0 {
            return Vec::new();
        }
        for n in (ngram_min..=ngram_max).rev() {
            let Some(start) = history.len().checked_sub(n) else { continue };
            let Some(tail) = history.get(start..) else { continue };
            // Occurrences ending before the tail itself, latest first.
            let earlier = (0..start).rev().find(|&j| history.get(j..j + n) == Some(tail));
            if let Some(j) = earlier {
                let from = j + n;
                let to = (from + limit).min(history.len());
                return history.get(from..to).map(<[_]>::to_vec).unwrap_or_default();
            }
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&i| LlamaToken::new(i)).collect()
    }

    fn lookup(ngram_min: u32, ngram_max: u32, max_draft: u32) -> Drafter {
        Drafter::new(Speculation::PromptLookup { ngram_min, ngram_max, max_draft })
    }

    #[test]
    fn guesses_what_followed_the_latest_earlier_match() {
        let d = lookup(2, 3, 4);
        // "1 2" occurs twice before the tail; the later one was followed by 7 8.
        let h = tokens(&[1, 2, 3, 4, 1, 2, 7, 8, 9, 5, 1, 2]);
        assert_eq!(d.draft(&h, 10), tokens(&[7, 8, 9, 5]));
        // The guess stops at the draft limit and at the request's limit.
        assert_eq!(d.draft(&h, 2), tokens(&[7, 8]));
        assert_eq!(d.draft(&h, 0), tokens(&[]));
    }

    #[test]
    fn longer_ngrams_win_over_shorter() {
        let d = lookup(1, 2, 2);
        // The 2-gram "3 4" matched at 0 is preferred to the 1-gram "4" matched later at 4.
        let h = tokens(&[3, 4, 5, 6, 4, 9, 3, 4]);
        assert_eq!(d.draft(&h, 8), tokens(&[5, 6]));
    }

    #[test]
    fn no_guess_without_an_earlier_occurrence() {
        let d = lookup(2, 3, 8);
        assert!(d.draft(&tokens(&[1, 2, 3, 4, 5]), 8).is_empty());
        assert!(d.draft(&tokens(&[1]), 8).is_empty());
        assert!(d.draft(&[], 8).is_empty());
        // A repeated token is a 1-gram, below this drafter's minimum.
        assert!(d.draft(&tokens(&[1, 2, 9, 2]), 8).is_empty());
    }

    #[test]
    fn a_match_at_the_very_end_guesses_what_is_there() {
        // "5 5" matches one position earlier; the guess is the one token after it.
        let d = lookup(2, 2, 8);
        assert_eq!(d.draft(&tokens(&[5, 5, 5]), 8), tokens(&[5]));
    }

    #[test]
    fn off_and_degenerate_settings_never_guess() {
        let h = tokens(&[1, 2, 1, 2, 1, 2]);
        assert!(Drafter::new(Speculation::Off).draft(&h, 8).is_empty());
        assert!(lookup(2, 3, 0).draft(&h, 8).is_empty());
        // ngram_min 0 means 1; ngram_max below ngram_min means ngram_min.
        assert_eq!(lookup(0, 0, 2).draft(&h, 8), tokens(&[1, 2]));
    }
}
