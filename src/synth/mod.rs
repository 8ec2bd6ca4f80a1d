//! Synthetic preference worlds with known ground truth (METHOD.md §2).
//!
//! A [`World`] is fully defined by a [`WorldSpec`], a flip rate and a seeded stream. It owns the
//! ground truth: prompt sources and their token distributions, latent types and their mixture,
//! the coupling P(type | source), the token feature maps and the type directions built from a
//! simplex (the distance knob), the reward families, the reference policy pi_ref, the
//! Bradley–Terry labels with flips, and the exact quantities derived from them (the KL-optimal
//! policy pi*_t, type posteriors, and, in [`stats`], the measured distances and the accuracy
//! ceilings). It streams [`PreferencePair`]s; [`synthetic_data`] turns a scenario into the
//! train/held-out split every method uses.
//!
//! This module never imports `model` or `objective`, and never writes files.
//!
//! # Generative process of one pair
//!
//! ```text
//! s ~ source mixture w_s                       (WorldSpec::source_weights)
//! t ~ P(t | s) = c 1[t = s mod T] + (1-c) w_t  (WorldSpec::type_given_source)
//! a ~ uniform over annotators of type t        (only when world.annotators > 0)
//! x = (x_1..x_Lx),   x_i ~ p_s iid             (p_s ~ Dirichlet(prompt_concentration))
//! y_1, y_2 ~ pi_ref(. | s)  independently      (length uniform in [L_min, L_max])
//! p = sigmoid((r_t(x, y_1) - r_t(x, y_2)) / tau_bt);  y_1 wins w.p. p;  flip w.p. eps
//! ```
//!
//! Annotators: each of the `annotators` ids has a fixed type drawn from the population type
//! mixture P(t) = sum_s w_s P(t | s). A type that occurs in the data but drew no annotator is
//! labelled by a stand-in annotator with id `annotators + t` (one per such type), so the
//! annotator always determines the type. With `annotators = 0` every pair has annotator 0.
//!
//! Every component draws from the world stream in a fixed order (phi, psi, the frame of the
//! type directions, the prompt distributions, the reference, the annotator types), and every
//! pair makes the same number of draws whatever d, c, tau_bt, eps, reward_scale or
//! length_weight are: two worlds that differ only in those knobs see the same sources, prompts,
//! responses and uniforms (types and annotators differ only where c changes P(t | s)).

pub mod geometry;
pub mod labels;
pub mod reference;
pub mod reward;
pub mod stats;

#[cfg(test)]
mod tests;

use rand::distr::Distribution;
use rand::{Rng, RngExt};
use rand_distr::weighted::WeightedAliasIndex;
use serde::Serialize;

use crate::data::{PairTruth, PreferenceData, PreferencePair};
use crate::rng::{SeededRng, stream};
use crate::scenario::{RewardFamily, Scenario, WorldSpec};
use labels::{bt_prob, draw_label, observed_prob};
use reference::{Reference, alias, dirichlet, log_sum_exp};
use reward::RewardTables;

pub use stats::{
    ContextBound, StatsAccumulator, WorldStats, bayes_argmax_types, context_bound, world_stats,
};

/// A synthetic preference world: its parameters (serialised to `world.json`) and the samplers
/// and tables built from them.
#[derive(Debug, Clone, Serialize)]
pub struct World {
    /// The world table it was built from.
    spec: WorldSpec,
    /// Label flip probability eps.
    flip_rate: f64,
    /// Normalised source mixture w_s.
    source_weights: Vec<f64>,
    /// P(type | source), row per source.
    type_given_source: Vec<Vec<f64>>,
    /// Population type mixture P(t) = sum_s w_s P(t | s).
    type_marginal: Vec<f64>,
    /// Prompt-token distribution p_s of each source (S rows of V probabilities).
    prompt_probs: Vec<Vec<f64>>,
    /// phi: V unit rows in R^m.
    token_features: Vec<Vec<f64>>,
    /// psi (bigram family only): V*V unit rows in R^m, row u*V + v is psi(u, v).
    #[serde(skip_serializing_if = "Option::is_none")]
    bigram_features: Option<Vec<Vec<f64>>>,
    /// The shared unit direction c.
    shared_direction: Vec<f64>,
    /// theta_t, T unit rows in R^m.
    thetas: Vec<Vec<f64>>,
    /// Realised cos(theta_i, theta_j), T x T.
    type_cosine: Vec<Vec<f64>>,
    /// Reward family, length weights and L_max.
    reward: RewardTables,
    /// pi_ref's parameters.
    reference: Reference,
    /// Fixed type of each annotator.
    annotator_types: Vec<usize>,
    #[serde(skip)]
    samplers: Samplers,
}

/// Samplers and log tables derived from the world's parameters.
#[derive(Debug, Clone)]
struct Samplers {
    source: WeightedAliasIndex<f64>,
    type_given_source: Vec<WeightedAliasIndex<f64>>,
    prompt: Vec<WeightedAliasIndex<f64>>,
    /// ln p_s(v) at `s * V + v`.
    prompt_log: Vec<f64>,
    /// Annotator ids of each type.
    annotators_by_type: Vec<Vec<usize>>,
}

impl Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.params.serialize(s)
    }
}

impl World {
    /// Build a world from a validated spec ([`WorldSpec::validate`]) and the flip rate eps in
    /// [0, 1]. Draws, in order: phi (V x m normals), psi (bigram only, V^2 x m), the orthonormal
    /// frame of the type directions (T x m), the S prompt distributions, the reference policy,
    /// then the annotator types.
    ///
    /// Panics if the spec breaks a validation rule.
    pub fn new<R: Rng + ?Sized>(spec: &WorldSpec, flip_rate: f64, rng: &mut R) -> World {
        if let Err(e) = spec.validate() {
            panic!("World::new needs a validated spec: {e}");
        }
        let (v, m) = (spec.vocab, spec.feature_dim);
        let token_features = geometry::random_unit_rows(v, m, rng);
        let bigram_features = (spec.reward == RewardFamily::Bigram)
            .then(|| geometry::random_unit_rows(v * v, m, rng));
        let (shared_direction, thetas) =
            geometry::type_directions(spec.types, m, spec.distance, rng);
        let prompt_probs: Vec<Vec<f64>> = (0..spec.sources)
            .map(|_| dirichlet(spec.prompt_concentration, v, rng))
            .collect();
        let reference = Reference::new(
            spec.reference,
            spec.sources,
            v,
            spec.response_len_min(),
            spec.response_len,
            spec.markov_concentration,
            rng,
        );
        let source_weights = spec.source_weights();
        let type_given_source = spec.type_given_source();
        let type_marginal: Vec<f64> = (0..spec.types)
            .map(|t| {
                source_weights
                    .iter()
                    .zip(&type_given_source)
                    .map(|(w, row)| w * row[t])
                    .sum()
            })
            .collect();
        let marginal_alias = alias(&type_marginal);
        let annotator_types: Vec<usize> = (0..spec.annotators)
            .map(|_| marginal_alias.sample(rng))
            .collect();

        let features = bigram_features.as_ref().unwrap_or(&token_features);
        let reward = RewardTables::new(
            spec.reward,
            v,
            spec.reward_scale,
            &thetas,
            features,
            spec.length_weights(),
            spec.response_len,
        );
        let mut annotators_by_type = vec![Vec::new(); spec.types];
        for (a, &t) in annotator_types.iter().enumerate() {
            annotators_by_type[t].push(a);
        }
        let samplers = Samplers {
            source: alias(&source_weights),
            type_given_source: type_given_source.iter().map(|r| alias(r)).collect(),
            prompt: prompt_probs.iter().map(|p| alias(p)).collect(),
            prompt_log: prompt_probs.iter().flatten().map(|p| p.ln()).collect(),
            annotators_by_type,
        };
        World {
            spec: spec.clone(),
            flip_rate,
            source_weights,
            type_given_source,
            type_marginal,
            prompt_probs,
            token_features,
            bigram_features,
            type_cosine: geometry::cosine_matrix(&thetas),
            shared_direction,
            thetas,
            reward,
            reference,
            annotator_types,
            samplers,
        }
    }

    /// The world table the world was built from.
    pub fn spec(&self) -> &WorldSpec {
        &self.spec
    }
    /// Number of latent types T.
    pub fn types(&self) -> usize {
        self.spec.types
    }
    /// Number of prompt sources S.
    pub fn sources(&self) -> usize {
        self.spec.sources
    }
    /// Vocabulary size V (token ids 0..V).
    pub fn vocab(&self) -> usize {
        self.spec.vocab
    }
    /// Label flip probability eps.
    pub fn flip_rate(&self) -> f64 {
        self.flip_rate
    }
    /// Bradley–Terry temperature tau_bt.
    pub fn bt_temperature(&self) -> f64 {
        self.spec.bt_temperature
    }
    /// Response length bounds (L_min, L_max).
    pub fn response_lengths(&self) -> (usize, usize) {
        self.reference.lengths()
    }
    /// theta_t, one unit row per type.
    pub fn thetas(&self) -> &[Vec<f64>] {
        &self.thetas
    }
    /// Realised cos(theta_i, theta_j), T x T.
    pub fn type_cosine(&self) -> &[Vec<f64>] {
        &self.type_cosine
    }
    /// Population type mixture P(t) = sum_s w_s P(t | s).
    pub fn type_marginal(&self) -> &[f64] {
        &self.type_marginal
    }
    /// Normalised source mixture w_s.
    pub fn source_weights(&self) -> &[f64] {
        &self.source_weights
    }
    /// P(type | source), row per source.
    pub fn type_given_source(&self) -> &[Vec<f64>] {
        &self.type_given_source
    }
    /// Fixed type of each annotator id `0..annotators` (stand-in ids `annotators + t` have
    /// type t).
    pub fn annotator_types(&self) -> &[usize] {
        &self.annotator_types
    }

    /// Draw one labelled pair (see the module docs for the process and the order of draws).
    pub fn sample_pair<R: Rng + ?Sized>(&self, rng: &mut R) -> PreferencePair {
        let s = self.samplers.source.sample(rng);
        let t = self.samplers.type_given_source[s].sample(rng);
        let annotator = if self.spec.annotators == 0 {
            0
        } else {
            // One uniform whatever the type, so later draws do not depend on the coupling.
            let u: f64 = rng.random();
            let ids = &self.samplers.annotators_by_type[t];
            match ids.len() {
                0 => self.spec.annotators + t,
                n => ids[((u * n as f64) as usize).min(n - 1)],
            }
        };
        let prompt = self.sample_prompt(s, rng);
        let (mut y1, mut y2) = (
            Vec::with_capacity(self.spec.response_len),
            Vec::with_capacity(self.spec.response_len),
        );
        self.reference.sample_into(s, rng, &mut y1);
        self.reference.sample_into(s, rng, &mut y2);
        let u_bt: f64 = rng.random();
        let u_flip: f64 = rng.random();
        let tau = self.spec.bt_temperature;
        let r1 = self.reward(t, &prompt, &y1);
        let r2 = self.reward(t, &prompt, &y2);
        let p = bt_prob(r1, r2, tau);
        let (first_chosen, flipped) = draw_label(p, self.flip_rate, u_bt, u_flip);
        let (chosen, rejected, reward_chosen, reward_rejected, label_prob) = if first_chosen {
            (y1, y2, r1, r2, p)
        } else {
            (y2, y1, r2, r1, bt_prob(r2, r1, tau))
        };
        PreferencePair {
            prompt,
            chosen,
            rejected,
            group: t,
            source: s,
            annotator,
            truth: Some(PairTruth {
                reward_chosen,
                reward_rejected,
                label_prob,
                flipped,
            }),
        }
    }

    /// An endless stream of labelled pairs; take as many as needed. Nothing is buffered.
    pub fn pairs<'a, R: Rng + ?Sized>(
        &'a self,
        rng: &'a mut R,
    ) -> impl Iterator<Item = PreferencePair> + 'a {
        std::iter::repeat_with(move || self.sample_pair(rng))
    }

    /// The true reward r_t(x, y) of type t; see [`RewardTables::reward`] for the formulas of
    /// both families. Panics if a token id is >= V.
    pub fn reward(&self, t: usize, prompt: &[u32], response: &[u32]) -> f64 {
        self.reward.reward(t, prompt, response)
    }

    /// A prompt of source s: L_x tokens drawn iid from p_s.
    pub fn sample_prompt<R: Rng + ?Sized>(&self, source: usize, rng: &mut R) -> Vec<u32> {
        let p = &self.samplers.prompt[source];
        (0..self.spec.prompt_len)
            .map(|_| p.sample(rng) as u32)
            .collect()
    }

    /// A response from pi_ref(. | x) of source s (the reference sees the prompt only through
    /// its source).
    pub fn sample_reference<R: Rng + ?Sized>(
        &self,
        source: usize,
        _prompt: &[u32],
        rng: &mut R,
    ) -> Vec<u32> {
        let mut y = Vec::with_capacity(self.spec.response_len);
        self.reference.sample_into(source, rng, &mut y);
        y
    }

    /// Exact ln pi_ref(y | x) for a prompt of source s, including the length choice; see
    /// [`Reference::log_prob`]. -inf for impossible responses.
    pub fn reference_log_prob(&self, source: usize, _prompt: &[u32], response: &[u32]) -> f64 {
        self.reference.log_prob(source, response)
    }

    /// ln p_s(x) = sum_i ln p_s(x_i); -inf if a token id is >= V.
    pub fn prompt_log_prob(&self, source: usize, prompt: &[u32]) -> f64 {
        let v = self.spec.vocab;
        prompt
            .iter()
            .map(|&x| match x as usize {
                x if x < v => self.samplers.prompt_log[source * v + x],
                _ => f64::NEG_INFINITY,
            })
            .sum()
    }

    /// The KL-regularised optimal policy of type t for prompts of source s (and this prompt,
    /// whose last token enters the bigram reward), with its normaliser precomputed:
    ///
    /// ```text
    /// pi*_t(y | x) = pi_ref(y | x) exp(r_t(x, y) / beta) / Z_t(x)
    /// Z_t(x) = sum_{L} P(L) e^{l_t L / (L_max beta)} Z_L
    /// ```
    ///
    /// Within one length L both reward families are sums of token or bigram potentials divided
    /// by L, and pi_ref is a Markov chain (or uniform), so Z_L is a forward pass over the chain
    /// ([`Reference::log_tilted_mass`]), O(L_max^2 V^2) in all. Returns `Some` for every current
    /// family; `None` is kept for families without a closed form. Panics unless beta > 0.
    pub fn optimal_policy<'w>(
        &'w self,
        t: usize,
        source: usize,
        prompt: &[u32],
        beta: f64,
    ) -> Option<OptimalPolicy<'w>> {
        assert!(
            beta > 0.0 && beta.is_finite(),
            "beta must be > 0, got {beta}"
        );
        let (lo, hi) = self.reference.lengths();
        let rw = &self.reward;
        let x_last = prompt.last().map(|&x| x as usize);
        let terms: Vec<f64> = (lo..=hi)
            .map(|len| {
                let k = 1.0 / (len as f64 * beta);
                let mass = match rw.family {
                    RewardFamily::Linear => self.reference.log_tilted_mass(
                        source,
                        len,
                        |v| k * rw.token_score(t, v),
                        |_, v| k * rw.token_score(t, v),
                    ),
                    RewardFamily::Bigram => self.reference.log_tilted_mass(
                        source,
                        len,
                        |v| x_last.map_or(0.0, |x| k * rw.bigram_score(t, x, v)),
                        |u, v| k * rw.bigram_score(t, u, v),
                    ),
                };
                self.reference.log_length_prob(len) + rw.length_term(t, len) / beta + mass
            })
            .collect();
        Some(OptimalPolicy {
            world: self,
            t,
            source,
            prompt: prompt.to_vec(),
            beta,
            log_z: log_sum_exp(&terms),
        })
    }

    /// Exact ln pi*_t(y | x) = ln pi_ref(y | x) + r_t(x, y)/beta - ln Z_t(x) (see
    /// [`World::optimal_policy`]; build that once when scoring many responses of one prompt).
    pub fn optimal_log_prob(
        &self,
        t: usize,
        source: usize,
        prompt: &[u32],
        response: &[u32],
        beta: f64,
    ) -> Option<f64> {
        self.optimal_policy(t, source, prompt, beta)
            .map(|p| p.log_prob(response))
    }

    /// Softmax over sources of `log_scores` (ln of an unnormalised P(s | evidence)), mixed into
    /// a type distribution sum_s P(s | evidence) P(t | s). Evidence impossible under every
    /// source (all -inf) falls back to the source mixture.
    fn mix_types(&self, log_scores: &[f64]) -> Vec<f64> {
        let lse = log_sum_exp(log_scores);
        let post: Vec<f64> = if lse.is_finite() {
            log_scores.iter().map(|l| (l - lse).exp()).collect()
        } else {
            self.source_weights.clone()
        };
        let mixed: Vec<f64> = (0..self.spec.types)
            .map(|t| {
                post.iter()
                    .zip(&self.type_given_source)
                    .map(|(p, row)| p * row[t])
                    .sum()
            })
            .collect();
        let total: f64 = mixed.iter().sum();
        mixed.iter().map(|p| p / total).collect()
    }

    /// P(t | x), what the prompt alone says about the type:
    ///
    /// ```text
    /// P(t | x) = sum_s P(s | x) P(t | s),   P(s | x) ∝ w_s prod_i p_s(x_i)
    /// ```
    pub fn type_posterior_given_prompt(&self, prompt: &[u32]) -> Vec<f64> {
        let scores: Vec<f64> = (0..self.spec.sources)
            .map(|s| self.source_weights[s].ln() + self.prompt_log_prob(s, prompt))
            .collect();
        self.mix_types(&scores)
    }

    /// P(t | x, y_a, y_b), what a pair says about the type before its label is seen:
    ///
    /// ```text
    /// P(t | x, y_a, y_b) = sum_s P(s | x, y_a, y_b) P(t | s)
    /// P(s | x, y_a, y_b) ∝ w_s p_s(x) pi_ref(y_a | s) pi_ref(y_b | s)
    /// ```
    ///
    /// A Markov reference makes the responses evidence about the source; a uniform reference
    /// does not, and then this equals [`World::type_posterior_given_prompt`] exactly.
    pub fn type_posterior_given_context(&self, prompt: &[u32], a: &[u32], b: &[u32]) -> Vec<f64> {
        let markov = matches!(
            self.reference.params,
            reference::ReferenceParams::Markov { .. }
        );
        let scores: Vec<f64> = (0..self.spec.sources)
            .map(|s| {
                let mut l = self.source_weights[s].ln() + self.prompt_log_prob(s, prompt);
                if markov {
                    l += self.reference.log_prob(s, a) + self.reference.log_prob(s, b);
                }
                l
            })
            .collect();
        self.mix_types(&scores)
    }

    /// The identifiability bound's posterior: the Bayes posterior over the pair's type given
    /// everything a learner sees (prompt, both responses and the observed label), computed
    /// with the true rewards, the true P(t | x, y_w, y_l) and the flip rate:
    ///
    /// ```text
    /// P(t | x, y_w > y_l) ∝ P(t | x, y_w, y_l) Q_t
    /// Q_t = eps + (1 - 2 eps) sigmoid((r_t(x, y_w) - r_t(x, y_l)) / tau_bt)
    /// ```
    ///
    /// With a uniform reference P(t | x, y_w, y_l) = P(t | x). No posterior can beat this one
    /// at naming the type. If every Q_t underflows to 0 it returns P(t | x, y_w, y_l).
    pub fn bayes_type_posterior(&self, pair: &PreferencePair) -> Vec<f64> {
        let context = self.type_posterior_given_context(&pair.prompt, &pair.chosen, &pair.rejected);
        let tau = self.spec.bt_temperature;
        let label_probs: Vec<f64> = (0..self.spec.types)
            .map(|t| {
                let q = bt_prob(
                    self.reward(t, &pair.prompt, &pair.chosen),
                    self.reward(t, &pair.prompt, &pair.rejected),
                    tau,
                );
                observed_prob(q, self.flip_rate)
            })
            .collect();
        label_posterior(context, &label_probs)
    }
}

impl World {
    /// The Bayes posterior over the type of one annotator given several of their labelled pairs
    /// (the pair scored plus its annotator context; every pair by one annotator shares the
    /// annotator's type), computed with the true rewards, P(t | s) and the flip rate:
    ///
    /// ```text
    /// P(t | pairs) ∝ P(t) prod_j [ sum_s P(s | t) p_s(x_j) pi_ref(y_j1 | s) pi_ref(y_j2 | s) ] Q_t(j)
    /// P(s | t) = w_s P(t | s) / P(t),    Q_t(j) = eps + (1 - 2 eps) sigmoid((r_t(x_j, y_w) - r_t(x_j, y_l)) / tau_bt)
    /// ```
    ///
    /// (the pi_ref factors only with a Markov reference; a uniform one gives them equally to
    /// every source). With one pair this is [`World::bayes_type_posterior`]. It is the
    /// identifiability bound of a posterior that reads these pairs: no posterior reading the
    /// same evidence names the type more often.
    pub fn bayes_type_posterior_multi(&self, pairs: &[&PreferencePair]) -> Vec<f64> {
        let types = self.spec.types;
        let markov = matches!(
            self.reference.params,
            reference::ReferenceParams::Markov { .. }
        );
        let tau = self.spec.bt_temperature;
        let mut log_post: Vec<f64> = self.type_marginal.iter().map(|p| p.ln()).collect();
        for pair in pairs {
            let per_source: Vec<f64> = (0..self.spec.sources)
                .map(|s| {
                    let mut l = self.source_weights[s].ln() + self.prompt_log_prob(s, &pair.prompt);
                    if markov {
                        l += self.reference.log_prob(s, &pair.chosen)
                            + self.reference.log_prob(s, &pair.rejected);
                    }
                    l
                })
                .collect();
            for (t, lp) in log_post.iter_mut().enumerate() {
                if self.type_marginal[t] <= 0.0 {
                    *lp = f64::NEG_INFINITY;
                    continue;
                }
                // sum_s P(s | t) p_s(x) ... = sum_s w_s P(t | s) p_s(x) ... / P(t)
                let terms: Vec<f64> = per_source
                    .iter()
                    .zip(&self.type_given_source)
                    .map(|(l, row)| l + row[t].ln())
                    .collect();
                let q = bt_prob(
                    self.reward(t, &pair.prompt, &pair.chosen),
                    self.reward(t, &pair.prompt, &pair.rejected),
                    tau,
                );
                *lp += log_sum_exp(&terms) - self.type_marginal[t].ln()
                    + observed_prob(q, self.flip_rate).ln();
            }
        }
        let norm = log_sum_exp(&log_post);
        if !norm.is_finite() {
            return self.type_marginal.clone();
        }
        (0..types).map(|t| (log_post[t] - norm).exp()).collect()
    }
}

/// Bayes' rule over types: `context[t] * label_prob[t]`, normalised; the context itself when
/// every product is 0 (or not finite).
pub(crate) fn label_posterior(context: Vec<f64>, label_prob: &[f64]) -> Vec<f64> {
    let joint: Vec<f64> = context.iter().zip(label_prob).map(|(p, q)| p * q).collect();
    let total: f64 = joint.iter().sum();
    if total > 0.0 && total.is_finite() {
        joint.iter().map(|j| j / total).collect()
    } else {
        context
    }
}

/// pi*_t(. | x) of one type, source and prompt with its log-normaliser precomputed (see
/// [`World::optimal_policy`]).
#[derive(Debug, Clone)]
pub struct OptimalPolicy<'w> {
    world: &'w World,
    t: usize,
    source: usize,
    prompt: Vec<u32>,
    beta: f64,
    log_z: f64,
}

impl OptimalPolicy<'_> {
    /// ln Z_t(x).
    pub fn log_normaliser(&self) -> f64 {
        self.log_z
    }

    /// ln pi*_t(y | x) = ln pi_ref(y | x) + r_t(x, y) / beta - ln Z_t(x); -inf for a response
    /// pi_ref cannot produce (wrong length, token id >= V, zero-probability transition).
    pub fn log_prob(&self, response: &[u32]) -> f64 {
        let lp = self.world.reference.log_prob(self.source, response);
        if lp == f64::NEG_INFINITY {
            return lp;
        }
        lp + self.world.reward(self.t, &self.prompt, response) / self.beta - self.log_z
    }
}

/// The world and the train/validation/held-out pairs of a scenario: the world from
/// `stream(seed, "world")`, train pairs from `stream(seed, "pairs/train")`, validation pairs
/// from `stream(seed, "pairs/val")`, held-out pairs from `stream(seed, "pairs/eval")`, with
/// `seed = data.seed`. Groups are the true types, named `type0`, `type1`, ...
///
/// With `data.heldout_annotators = h > 0`, the annotator ids of [`heldout_annotators`] are
/// held out whole: pairs they label are skipped when drawing the training and validation pairs
/// (the streams keep going until enough pairs are kept), and kept in the held-out pairs.
pub fn synthetic_data(scenario: &Scenario) -> (World, PreferenceData) {
    let spec = scenario.world();
    let seed = scenario.data.seed;
    let world = world_of(scenario);
    let heldout = heldout_annotators(scenario);
    let draw = |name: &str, n: usize, skip_heldout: bool| -> Vec<PreferencePair> {
        let mut rng: SeededRng = stream(seed, name);
        world
            .pairs(&mut rng)
            .filter(|p| !(skip_heldout && heldout.contains(&p.annotator)))
            .take(n)
            .collect()
    };
    let train = draw(TRAIN_STREAM, scenario.data.train_pairs, true);
    let val = draw(VAL_STREAM, scenario.data.val_pairs(), true);
    let eval = draw(EVAL_STREAM, scenario.data.eval_pairs, false);
    let data = PreferenceData {
        train,
        val,
        eval,
        vocab: spec.vocab,
        groups: spec.types,
        group_names: (0..spec.types).map(|t| format!("type{t}")).collect(),
        max_prompt_len: spec.prompt_len,
        max_response_len: spec.response_len,
        chat_separator: None,
    };
    (world, data)
}

/// The annotator ids held out of training and validation: `floor(h A)` of the `A =
/// world.annotators` ids (at most `A - 1`), a uniform draw from `stream(seed,
/// "annotators/heldout")`. Empty when `h = 0` or the world has no annotators. Stand-in ids
/// (`A + t`) are never held out.
pub fn heldout_annotators(scenario: &Scenario) -> std::collections::BTreeSet<usize> {
    use rand::seq::SliceRandom;
    let a = scenario.world.as_ref().map_or(0, |w| w.annotators);
    let h = scenario.data.heldout_annotators();
    let n = ((h * a as f64).floor() as usize).min(a.saturating_sub(1));
    if n == 0 {
        return Default::default();
    }
    let mut ids: Vec<usize> = (0..a).collect();
    ids.shuffle(&mut stream(scenario.data.seed, HELDOUT_ANNOTATOR_STREAM));
    ids.into_iter().take(n).collect()
}

/// The world of a scenario, drawn from `stream(data.seed, "world")`.
pub fn world_of(scenario: &Scenario) -> World {
    World::new(
        &scenario.world(),
        scenario.noise.flip_rate,
        &mut stream(scenario.data.seed, WORLD_STREAM),
    )
}

/// Name of the world's random stream.
pub const WORLD_STREAM: &str = "world";
/// Name of the training pairs' random stream.
pub const TRAIN_STREAM: &str = "pairs/train";
/// Name of the validation pairs' random stream.
pub const VAL_STREAM: &str = "pairs/val";
/// Name of the stream that picks the held-out annotators.
pub const HELDOUT_ANNOTATOR_STREAM: &str = "annotators/heldout";
/// Name of the held-out pairs' random stream.
pub const EVAL_STREAM: &str = "pairs/eval";
