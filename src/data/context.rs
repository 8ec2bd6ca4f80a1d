//! Where a posterior with annotator context (METHOD.md §4) finds its context pairs.
//!
//! A pair's context is `C` other labelled pairs by the same annotator. During training they come
//! from the annotator-grouped batches (`annotator_batch_order`). When a split is scored
//! (validation, held-out, or training pairs for the code↔type match), [`ContextPool`] draws them:
//!
//! 1. the annotator's **training** pairs (never the scored pair itself);
//! 2. for an annotator with no training pairs (an unseen annotator, `data.heldout_annotators`),
//!    the annotator's **other pairs of the same split**, excluding the pair scored;
//! 3. when the annotator has no other labelled pair at all, the pair itself (its own evidence,
//!    nothing borrowed from another annotator).
//!
//! Draws are without replacement while the pool is large enough, with replacement otherwise.

use crate::data::PreferencePair;
use crate::rng::SeededRng;
use rand::RngExt;
use rand::seq::IndexedRandom;
use std::collections::HashMap;

/// Context pools for the pairs of one split.
pub struct ContextPool<'a> {
    train: &'a [PreferencePair],
    split: &'a [PreferencePair],
    /// Whether `split` is the training pairs themselves (then a pair never draws itself).
    split_is_train: bool,
    train_by_annotator: HashMap<usize, Vec<usize>>,
    split_by_annotator: HashMap<usize, Vec<usize>>,
    c: usize,
}

fn by_annotator(pairs: &[PreferencePair]) -> HashMap<usize, Vec<usize>> {
    let mut out: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, p) in pairs.iter().enumerate() {
        out.entry(p.annotator).or_default().push(i);
    }
    out
}

impl<'a> ContextPool<'a> {
    /// Pools for scoring `split` with `c` context pairs each; `split_is_train` when `split` is
    /// (a prefix of) `train`, so that indices coincide.
    pub fn new(
        train: &'a [PreferencePair],
        split: &'a [PreferencePair],
        split_is_train: bool,
        c: usize,
    ) -> Self {
        ContextPool {
            train,
            split,
            split_is_train,
            train_by_annotator: by_annotator(train),
            split_by_annotator: if c > 0 && !split_is_train {
                by_annotator(split)
            } else {
                HashMap::new()
            },
            c,
        }
    }

    /// Whether the annotator of split pair `i` has no training pairs.
    pub fn is_unseen(&self, i: usize) -> bool {
        !self
            .train_by_annotator
            .contains_key(&self.split[i].annotator)
    }

    /// The `C` context pairs of split pair `i` (see the module docs for the rule).
    pub fn draw(&self, i: usize, rng: &mut SeededRng) -> Vec<&'a PreferencePair> {
        if self.c == 0 {
            return Vec::new();
        }
        let annotator = self.split[i].annotator;
        let (source, candidates): (&'a [PreferencePair], Vec<usize>) =
            match self.train_by_annotator.get(&annotator) {
                Some(idx) => {
                    let own = self.split_is_train.then_some(i);
                    let c: Vec<usize> = idx.iter().copied().filter(|&j| Some(j) != own).collect();
                    (self.train, c)
                }
                None => {
                    let idx = self
                        .split_by_annotator
                        .get(&annotator)
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                    let c: Vec<usize> = idx.iter().copied().filter(|&j| j != i).collect();
                    (self.split, c)
                }
            };
        if candidates.is_empty() {
            return vec![&self.split[i]; self.c];
        }
        if candidates.len() >= self.c {
            candidates
                .sample(rng, self.c)
                .map(|&j| &source[j])
                .collect()
        } else {
            (0..self.c)
                .map(|_| &source[candidates[rng.random_range(0..candidates.len())]])
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;

    fn pair(annotator: usize, tag: u32) -> PreferencePair {
        PreferencePair {
            prompt: vec![tag],
            chosen: vec![1],
            rejected: vec![2],
            group: 0,
            source: 0,
            annotator,
            truth: None,
        }
    }

    #[test]
    fn seen_annotators_draw_training_pairs_of_their_own_annotator() {
        let train = vec![pair(0, 0), pair(1, 1), pair(0, 2), pair(0, 3)];
        let eval = vec![pair(0, 10), pair(1, 11)];
        let pool = ContextPool::new(&train, &eval, false, 2);
        let mut rng = stream(0, "t");
        for _ in 0..20 {
            let c = pool.draw(0, &mut rng);
            assert_eq!(c.len(), 2);
            assert!(c.iter().all(|p| p.annotator == 0 && p.prompt[0] < 10));
            // Three candidates >= C: drawn without replacement.
            assert_ne!(c[0].prompt, c[1].prompt);
            let c = pool.draw(1, &mut rng);
            assert!(c.iter().all(|p| p.prompt == vec![1]));
        }
        assert!(!pool.is_unseen(0));
    }

    #[test]
    fn unseen_annotators_draw_their_own_other_pairs_never_another_annotator() {
        // Annotator 7 has no training pairs: its context comes from its other held-out pairs,
        // never the pair scored and never training pair 0 (annotator 0's).
        let train = vec![pair(0, 0), pair(0, 1)];
        let eval = vec![pair(7, 20), pair(7, 21), pair(7, 22), pair(8, 30)];
        let pool = ContextPool::new(&train, &eval, false, 3);
        let mut rng = stream(1, "t");
        assert!(pool.is_unseen(0) && pool.is_unseen(3));
        for _ in 0..20 {
            let c = pool.draw(0, &mut rng);
            assert_eq!(c.len(), 3);
            assert!(c.iter().all(|p| p.annotator == 7 && p.prompt != vec![20]));
        }
        // Annotator 8 has a single labelled pair: its only evidence is itself.
        let c = pool.draw(3, &mut rng);
        assert!(c.iter().all(|p| p.prompt == vec![30]));
    }

    #[test]
    fn training_pairs_never_draw_themselves() {
        let train = vec![pair(0, 0), pair(0, 1), pair(0, 2)];
        let pool = ContextPool::new(&train, &train, true, 1);
        let mut rng = stream(2, "t");
        for _ in 0..50 {
            assert_ne!(pool.draw(1, &mut rng)[0].prompt, vec![1]);
        }
    }
}
