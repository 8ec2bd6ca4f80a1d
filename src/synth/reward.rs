//! The reward families r_t(x, y) of a synthetic world (METHOD.md §2), precomputed as tables of
//! per-token or per-bigram scores so that a reward costs O(|y|).
//!
//! This module owns the formulas only; the feature maps and theta vectors come from
//! [`super::geometry`], and labels from [`super::labels`].

use serde::Serialize;

use super::geometry::dot;
use crate::scenario::RewardFamily;

/// Score tables of every type, with the scale folded in.
///
/// ```text
/// linear:  g_t(v)    = scale <theta_t, phi(v)>        table[t][v]
/// bigram:  b_t(u, v) = scale <theta_t, psi(u, v)>     table[t][u][v]
/// ```
#[derive(Debug, Clone, Serialize)]
pub struct RewardTables {
    /// Linear (per-token) or bigram rewards.
    pub family: RewardFamily,
    vocab: usize,
    /// Length-term weight l_t per type.
    pub length_weights: Vec<f64>,
    /// L_max, the length term's normaliser.
    len_max: usize,
    /// Linear: T x V, row-major; bigram: T x V x V.
    #[serde(skip)]
    scores: Vec<f64>,
    /// Entries per type: V (linear) or V^2 (bigram).
    #[serde(skip)]
    per_type: usize,
}

impl RewardTables {
    /// Fold `scale`, the type directions and the feature map into score tables. `features` is
    /// phi (V rows) for the linear family and psi (V*V rows, row u*V + v) for the bigram family.
    pub fn new(
        family: RewardFamily,
        vocab: usize,
        scale: f64,
        thetas: &[Vec<f64>],
        features: &[Vec<f64>],
        length_weights: Vec<f64>,
        len_max: usize,
    ) -> RewardTables {
        let scores = thetas
            .iter()
            .flat_map(|theta| features.iter().map(move |f| scale * dot(theta, f)))
            .collect();
        RewardTables {
            family,
            vocab,
            length_weights,
            len_max,
            scores,
            per_type: features.len(),
        }
    }

    /// g_t(v) = scale <theta_t, phi(v)> (linear family).
    #[inline]
    pub fn token_score(&self, t: usize, v: usize) -> f64 {
        self.scores[t * self.vocab + v]
    }

    /// b_t(u, v) = scale <theta_t, psi(u, v)> (bigram family).
    #[inline]
    pub fn bigram_score(&self, t: usize, u: usize, v: usize) -> f64 {
        self.scores[(t * self.vocab + u) * self.vocab + v]
    }

    /// The length term l_t |y| / L_max.
    #[inline]
    pub fn length_term(&self, t: usize, len: usize) -> f64 {
        self.length_weights[t] * len as f64 / self.len_max as f64
    }

    /// The true reward of type t. With L = |y| >= 1 and x_L the last prompt token:
    ///
    /// ```text
    /// linear:  r_t(x, y) = (1/L) sum_{i=1..L} g_t(y_i)                               + l_t L / L_max
    /// bigram:  r_t(x, y) = (1/L) [b_t(x_L, y_1) + sum_{i=2..L} b_t(y_{i-1}, y_i)]   + l_t L / L_max
    /// ```
    ///
    /// The first part lies in [-scale, scale] (unit theta and unit features). The bigram reward
    /// is not a sum of per-token terms, so a policy must model which tokens follow which; its
    /// first term ties the response to the prompt. An empty prompt drops that term; an empty
    /// response has reward 0.
    ///
    /// Exact ties: the sum is evaluated as sum_k (n_k / L) score(k) over the distinct tokens
    /// (bigrams) k in increasing order, with n_k their counts. Two responses whose token (bigram)
    /// frequencies n_k / L coincide, such as `t2 t2` and `t2 t2 t2`, have equal rewards in exact
    /// arithmetic; this order makes them bit-identical too, so their preference is an exact
    /// tie (label probability 1/2, noiseless preference 1/2) and not a rounding accident.
    ///
    /// Panics if a token id is >= V.
    pub fn reward(&self, t: usize, prompt: &[u32], response: &[u32]) -> f64 {
        let v = self.vocab as u32;
        assert!(
            response.iter().chain(prompt.last()).all(|&t| t < v),
            "token id out of range: the world's vocabulary is 0..{v}"
        );
        let len = response.len();
        if len == 0 {
            return 0.0;
        }
        let vocab = self.vocab as u64;
        // Keys into the score table of type t: tokens, or bigrams u * V + v.
        let keys = |out: &mut dyn FnMut(u64)| match self.family {
            RewardFamily::Linear => response.iter().for_each(|&y| out(u64::from(y))),
            RewardFamily::Bigram => {
                if let Some(&x) = prompt.last() {
                    out(u64::from(x) * vocab + u64::from(response[0]));
                }
                response
                    .windows(2)
                    .for_each(|w| out(u64::from(w[0]) * vocab + u64::from(w[1])));
            }
        };
        let offset = t * self.per_type;
        let mut stack = [0u64; 64];
        let mut heap = Vec::new();
        let mut n = 0;
        keys(&mut |k| {
            if n < stack.len() {
                stack[n] = k;
            } else {
                if heap.is_empty() {
                    heap.extend_from_slice(&stack);
                }
                heap.push(k);
            }
            n += 1;
        });
        let sorted: &mut [u64] = if n <= stack.len() {
            &mut stack[..n]
        } else {
            &mut heap
        };
        sorted.sort_unstable();
        let mut body = 0.0;
        for run in sorted.chunk_by(|a, b| a == b) {
            let freq = run.len() as f64 / len as f64;
            body += freq * self.scores[offset + run[0] as usize];
        }
        body + self.length_term(t, len)
    }
}
