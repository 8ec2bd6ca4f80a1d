//! The synthetic world's reference policy pi_ref(y | x): response lengths and tokens.
//!
//! A response is drawn per source s: its length uniform in `[L_min, L_max]`, then its tokens
//! either uniform over the vocabulary or from a first-order Markov chain of that source
//! (initial distribution mu_s and transition rows P_s(. | u), each Dirichlet). The reference
//! depends on the prompt only through its source. This module also owns the forward dynamic
//! programme over that chain which normalises any tilt of pi_ref by pairwise token potentials;
//! the world uses it for the exact KL-optimal policy pi*_t. It knows nothing about types or
//! labels.

use rand::Rng;
use rand::distr::{Distribution, Uniform};
use rand_distr::multi::Dirichlet;
use rand_distr::weighted::WeightedAliasIndex;
use serde::Serialize;

use crate::scenario::ReferenceKind;

/// The serialised parameters of the reference policy (what `world.json` shows).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReferenceParams {
    /// Every token uniform over the vocabulary: pi_ref(y) = P(|y|) V^{-|y|}.
    Uniform,
    /// Per source s: `initial[s][v]` = mu_s(v), `transition[s][u][v]` = P_s(v | u).
    Markov {
        /// `initial[s][v]`: first-token distribution of source s.
        initial: Vec<Vec<f64>>,
        /// `transition[s][u][v]`: next-token distribution of source s after u.
        transition: Vec<Vec<Vec<f64>>>,
    },
}

/// The reference policy with its samplers and log-probability tables.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The distributions (serialised to `world.json`).
    pub params: ReferenceParams,
    vocab: usize,
    len_min: usize,
    len_max: usize,
    length: Uniform<usize>,
    token: Uniform<u32>,
    /// Markov only: alias samplers `initial[s]`, `transition[s * V + u]`.
    initial_alias: Vec<WeightedAliasIndex<f64>>,
    transition_alias: Vec<WeightedAliasIndex<f64>>,
    /// Markov only: `ln mu_s(v)` at `s * V + v`, `ln P_s(v | u)` at `(s * V + u) * V + v`.
    log_initial: Vec<f64>,
    log_transition: Vec<f64>,
}

/// Alias table over non-negative weights that are not all zero (true for every Dirichlet draw
/// and every row the world builds).
pub(crate) fn alias(weights: &[f64]) -> WeightedAliasIndex<f64> {
    WeightedAliasIndex::new(weights.to_vec()).expect("weights are finite, >= 0 and not all 0")
}

/// One Dirichlet(alpha, .., alpha) draw of dimension `dim >= 2` (needs alpha >= 1e-3, which
/// scenario validation guarantees).
pub(crate) fn dirichlet<R: Rng + ?Sized>(alpha: f64, dim: usize, rng: &mut R) -> Vec<f64> {
    Dirichlet::new(&vec![alpha; dim])
        .expect("validated concentration and dim >= 2")
        .sample(rng)
}

impl Reference {
    /// Draw the reference policy for `sources` sources. The uniform kind draws nothing; the
    /// Markov kind draws, per source, mu_s and then the V rows P_s(. | u) from
    /// Dirichlet(concentration).
    pub fn new<R: Rng + ?Sized>(
        kind: ReferenceKind,
        sources: usize,
        vocab: usize,
        len_min: usize,
        len_max: usize,
        concentration: f64,
        rng: &mut R,
    ) -> Reference {
        let params = match kind {
            ReferenceKind::Uniform => ReferenceParams::Uniform,
            ReferenceKind::Markov => {
                let mut initial = Vec::with_capacity(sources);
                let mut transition = Vec::with_capacity(sources);
                for _ in 0..sources {
                    initial.push(dirichlet(concentration, vocab, rng));
                    transition.push(
                        (0..vocab)
                            .map(|_| dirichlet(concentration, vocab, rng))
                            .collect::<Vec<_>>(),
                    );
                }
                ReferenceParams::Markov {
                    initial,
                    transition,
                }
            }
        };
        let (mut initial_alias, mut transition_alias) = (Vec::new(), Vec::new());
        let (mut log_initial, mut log_transition) = (Vec::new(), Vec::new());
        if let ReferenceParams::Markov {
            initial,
            transition,
        } = &params
        {
            for (mu, rows) in initial.iter().zip(transition) {
                initial_alias.push(alias(mu));
                log_initial.extend(mu.iter().map(|p| p.ln()));
                for row in rows {
                    transition_alias.push(alias(row));
                    log_transition.extend(row.iter().map(|p| p.ln()));
                }
            }
        }
        Reference {
            params,
            vocab,
            len_min,
            len_max,
            length: Uniform::new_inclusive(len_min, len_max).expect("1 <= len_min <= len_max"),
            token: Uniform::new(0, vocab as u32).expect("vocab >= 2"),
            initial_alias,
            transition_alias,
            log_initial,
            log_transition,
        }
    }

    /// Response length bounds `(L_min, L_max)`.
    pub fn lengths(&self) -> (usize, usize) {
        (self.len_min, self.len_max)
    }

    /// ln P(|y| = l) = -ln(L_max - L_min + 1) inside the range, -inf outside.
    pub fn log_length_prob(&self, len: usize) -> f64 {
        if (self.len_min..=self.len_max).contains(&len) {
            -((self.len_max - self.len_min + 1) as f64).ln()
        } else {
            f64::NEG_INFINITY
        }
    }

    /// Draw a response of source `s` into `out` (cleared first): one length draw, then one
    /// token draw per position. The number of draws depends only on the drawn length.
    pub fn sample_into<R: Rng + ?Sized>(&self, s: usize, rng: &mut R, out: &mut Vec<u32>) {
        out.clear();
        let len = self.length.sample(rng);
        match self.params {
            ReferenceParams::Uniform => out.extend((0..len).map(|_| self.token.sample(rng))),
            ReferenceParams::Markov { .. } => {
                let v = self.vocab;
                let mut prev = self.initial_alias[s].sample(rng);
                out.push(prev as u32);
                for _ in 1..len {
                    prev = self.transition_alias[s * v + prev].sample(rng);
                    out.push(prev as u32);
                }
            }
        }
    }

    /// ln mu_s(v): the first token's reference log-probability.
    #[inline]
    pub fn log_first(&self, s: usize, v: usize) -> f64 {
        match self.params {
            ReferenceParams::Uniform => -(self.vocab as f64).ln(),
            ReferenceParams::Markov { .. } => self.log_initial[s * self.vocab + v],
        }
    }

    /// ln P_s(v | u): a later token's reference log-probability given the previous token u.
    #[inline]
    pub fn log_next(&self, s: usize, u: usize, v: usize) -> f64 {
        match self.params {
            ReferenceParams::Uniform => -(self.vocab as f64).ln(),
            ReferenceParams::Markov { .. } => {
                self.log_transition[(s * self.vocab + u) * self.vocab + v]
            }
        }
    }

    /// Exact log pi_ref(y | source s), including the length choice:
    ///
    /// ```text
    /// ln pi_ref(y | s) = ln P(|y|) + ln mu_s(y_1) + sum_{i >= 2} ln P_s(y_i | y_{i-1})
    /// ```
    ///
    /// -inf for a length outside the range or a token id >= V (probability 0).
    pub fn log_prob(&self, s: usize, response: &[u32]) -> f64 {
        let v = self.vocab;
        if response.iter().any(|&t| t as usize >= v) {
            return f64::NEG_INFINITY;
        }
        let mut lp = self.log_length_prob(response.len());
        if let Some((&first, _)) = response.split_first() {
            lp += self.log_first(s, first as usize);
        }
        for w in response.windows(2) {
            lp += self.log_next(s, w[0] as usize, w[1] as usize);
        }
        lp
    }

    /// ln of the sum, over every token sequence y of length `len`, of pi_ref's token
    /// probabilities tilted by potentials: the forward algorithm in log space, O(len V^2).
    ///
    /// ```text
    /// Z_len = sum_y mu_s(y_1) e^{first(y_1)} prod_{i=2..len} P_s(y_i | y_{i-1}) e^{pair(y_{i-1}, y_i)}
    /// alpha_1(v) = ln mu_s(v) + first(v)
    /// alpha_i(v) = logsumexp_u [alpha_{i-1}(u) + ln P_s(v | u) + pair(u, v)]
    /// ln Z_len   = logsumexp_v alpha_len(v)
    /// ```
    pub fn log_tilted_mass(
        &self,
        s: usize,
        len: usize,
        first: impl Fn(usize) -> f64,
        pair: impl Fn(usize, usize) -> f64,
    ) -> f64 {
        let v = self.vocab;
        if len == 0 {
            return 0.0;
        }
        let mut alpha: Vec<f64> = (0..v).map(|t| self.log_first(s, t) + first(t)).collect();
        let mut next = vec![0.0; v];
        let mut terms = vec![0.0; v];
        for _ in 1..len {
            for (b, slot) in next.iter_mut().enumerate() {
                for (a, term) in terms.iter_mut().enumerate() {
                    *term = alpha[a] + self.log_next(s, a, b) + pair(a, b);
                }
                *slot = log_sum_exp(&terms);
            }
            std::mem::swap(&mut alpha, &mut next);
        }
        log_sum_exp(&alpha)
    }
}

/// ln sum_i e^{x_i}, stable; -inf for an empty slice or all -inf.
pub fn log_sum_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    if m == f64::INFINITY {
        return m;
    }
    m + xs.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}
