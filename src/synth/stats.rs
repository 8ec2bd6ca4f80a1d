//! What a world measures about itself on a set of pairs (normally the held-out pairs every
//! method is scored on): the distance it produced between types, the accuracy ceilings of three
//! oracles, and the identifiability bound (METHOD.md §2-3).
//!
//! This module owns these world-side numbers only. Scores of trained methods, and the NMI of
//! the bound's labels, belong to the `metrics` module: [`bayes_argmax_types`] hands it the
//! bound's labels.
//!
//! # The oracles
//!
//! For a pair with prompt x, observed chosen y_w and rejected y_l, and each type k:
//!
//! ```text
//! D_k = r_k(x, y_w) - r_k(x, y_l)
//! q_k = sigmoid(D_k / tau_bt)              P(y_w > y_l | k), before flips
//! Q_k = eps + (1 - 2 eps) q_k              P(the observed label names y_w | k)
//! N_k = 1[D_k > 0] + 1/2 1[D_k = 0]         the noiseless preference of type k
//! pi(k) = P(k | x, y_w, y_l)                 World::type_posterior_given_context
//! w(k)  = P(k)                                the population type mixture
//! ```
//!
//! Each oracle is the Bayes-optimal predictor of its target given what it knows, and it knows
//! r_1..r_T, tau_bt and eps:
//! - type oracle: the pair's true type t;
//! - prompt oracle: pi (for a uniform reference pi(k) = P(k | x); a Markov reference also
//!   reveals the source through the responses, and the oracle uses that too);
//! - population oracle: w only.
//!
//! With belief b over types, the oracle says "y_w wins" with weight d = step(sum_k b(k) Q_k)
//! against observed labels and d = step(sum_k b(k) N_k) against the noiseless preference,
//! where step(p) = 1 if p > 1/2 + 1e-12, 0 if p < 1/2 - 1e-12, else 1/2 (a tie, half credit;
//! the tolerance absorbs rounding in sums that equal 1/2 exactly). A prediction d earns
//! credit d y + (1 - d)(1 - y) against a target y, the probability that y_w is the target's
//! winner.
//!
//! # Realised and expected ceilings
//!
//! - `*_acc_observed`, `*_acc_noiseless`: realised accuracy on these pairs, with their true
//!   types and drawn labels (y = 1 for the observed label, y = N_t for the noiseless one):
//!   directly comparable with a method's accuracy on the same pairs.
//! - `*_exp_observed`, `*_exp_noiseless`: the exact expectation conditional on each pair's
//!   prompt and (unordered) responses, over its type t ~ pi and its label noise:
//!   y = sum_k pi(k) Q_k (observed) or sum_k pi(k) N_k (noiseless); the type oracle earns
//!   sum_k pi(k) max(Q_k, 1 - Q_k) and sum_k pi(k) max(N_k, 1 - N_k). These have no sampling
//!   noise from labels or types.
//!
//! Theorems (tested): per pair, every expected ceiling satisfies type >= prompt >= population
//! (up to the 1e-12 tie tolerance), because each oracle is Bayes-optimal for an information set
//! that contains the next one's and the expectation is taken under the prompt oracle's own
//! belief. Realised against the noiseless preference, type >= prompt and type >= population
//! hold per pair (the type oracle is always right, except half credit on exact ties); realised
//! against observed labels no ordering is guaranteed.
//!
//! # Distance statistics
//!
//! - `disagreement_rate`: mean over type pairs i < j of the fraction of pairs with
//!   N_i != N_j (types would give different noiseless preferences; a tie differs from a win).
//!   For T = 2 and T = 3 without a length term it is non-decreasing in d pair by pair (the
//!   rewards are sqrt(1-d) a + sqrt(d) b_k with sum_k b_k = 0). For T >= 4 it is not a theorem:
//!   when three of four b_k share a sign, the number of disagreeing type pairs goes
//!   0 -> 3 -> 4 -> 3 as d grows.
//! - `js_bits_mean`: mean over pairs and type pairs of JS(Bernoulli(q_i), Bernoulli(q_j)), in
//!   bits, range [0, 1].
//! - `cosine_min`, `cosine_mean`: over type pairs of the realised cos(theta_i, theta_j), next
//!   to `cosine_target` = 1 - d T/(T-1).
//!
//! Statistics over type pairs are blank (None) for T = 1. Rates over an empty pair set are NaN.

use serde::Serialize;

use super::labels::{js_bernoulli_bits, noiseless, observed_prob, sigmoid};
use super::{World, label_posterior};
use crate::data::PreferencePair;
use crate::data::context::ContextPool;
use crate::metrics::preference_credit;
use crate::rng::stream;

/// Half-width of the band around 1/2 that counts as a tie.
const TIE_TOLERANCE: f64 = 1e-12;

/// One flat row of world statistics (`summary.csv`); see the module docs for every formula.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldStats {
    /// Pairs the statistics are computed on.
    pub pairs: usize,
    /// Number of types T.
    pub types: usize,
    /// The distance knob d.
    pub distance: f64,
    /// 1 - d T/(T-1), the cosine the construction promises.
    pub cosine_target: Option<f64>,
    /// Smallest realised cos(theta_i, theta_j), i != j.
    pub cosine_min: Option<f64>,
    /// Mean realised cos(theta_i, theta_j) over i < j.
    pub cosine_mean: Option<f64>,
    /// Mean over type pairs of the fraction of pairs where their noiseless preferences differ.
    pub disagreement_rate: Option<f64>,
    /// Mean JS divergence (bits) between the types' Bradley–Terry probabilities.
    pub js_bits_mean: Option<f64>,
    /// Fraction of pairs whose label was flipped.
    pub flip_fraction: f64,
    /// Fraction of pairs whose observed label agrees with the true type's noiseless preference
    /// (ties count 1/2).
    pub label_agreement: f64,
    /// Type oracle, realised against observed labels (see the module docs).
    pub type_oracle_acc_observed: f64,
    /// Type oracle, realised against the noiseless preference.
    pub type_oracle_acc_noiseless: f64,
    /// Prompt oracle, realised against observed labels.
    pub prompt_oracle_acc_observed: f64,
    /// Prompt oracle, realised against the noiseless preference.
    pub prompt_oracle_acc_noiseless: f64,
    /// Population oracle, realised against observed labels.
    pub population_oracle_acc_observed: f64,
    /// Population oracle, realised against the noiseless preference.
    pub population_oracle_acc_noiseless: f64,
    /// Type oracle, expected against observed labels.
    pub type_oracle_exp_observed: f64,
    /// Type oracle, expected against the noiseless preference.
    pub type_oracle_exp_noiseless: f64,
    /// Prompt oracle, expected against observed labels.
    pub prompt_oracle_exp_observed: f64,
    /// Prompt oracle, expected against the noiseless preference.
    pub prompt_oracle_exp_noiseless: f64,
    /// Population oracle, expected against observed labels.
    pub population_oracle_exp_observed: f64,
    /// Population oracle, expected against the noiseless preference.
    pub population_oracle_exp_noiseless: f64,
    /// Identifiability bound: accuracy of argmax_t P(t | x, y_w > y_l) against the true types.
    pub bayes_type_acc: f64,
}

/// Per-pair credits of the three oracles, in the order type, prompt, population.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PairCredits {
    /// Realised credit against the observed label.
    pub acc_observed: [f64; 3],
    /// Realised credit against the noiseless preference of the true type.
    pub acc_noiseless: [f64; 3],
    /// Expected credit against the label, over the type posterior and label noise.
    pub exp_observed: [f64; 3],
    /// Expected credit against the noiseless preference, over the type posterior.
    pub exp_noiseless: [f64; 3],
}

/// step(p): 1, 0 or 1/2 (see the module docs).
fn step(p: f64) -> f64 {
    if p > 0.5 + TIE_TOLERANCE {
        1.0
    } else if p < 0.5 - TIE_TOLERANCE {
        0.0
    } else {
        0.5
    }
}

/// Streaming accumulator of [`WorldStats`]: add pairs one at a time, then `finish`.
#[derive(Debug, Clone)]
pub struct StatsAccumulator<'w> {
    world: &'w World,
    n: usize,
    flips: usize,
    agreement: f64,
    disagreement: f64,
    js: f64,
    credits: [[f64; 3]; 4],
    bayes_hits: usize,
    delta: Vec<f64>,
    q_obs: Vec<f64>,
    q_bt: Vec<f64>,
    nl: Vec<f64>,
    pi: Vec<f64>,
}

impl<'w> StatsAccumulator<'w> {
    /// An empty accumulator.
    pub fn new(world: &'w World) -> Self {
        let t = world.types();
        StatsAccumulator {
            world,
            n: 0,
            flips: 0,
            agreement: 0.0,
            disagreement: 0.0,
            js: 0.0,
            credits: [[0.0; 3]; 4],
            bayes_hits: 0,
            delta: vec![0.0; t],
            q_obs: vec![0.0; t],
            q_bt: vec![0.0; t],
            nl: vec![0.0; t],
            pi: vec![0.0; t],
        }
    }

    /// The three oracles' credits on one pair (module docs), plus the per-type quantities.
    pub fn pair_credits(&mut self, pair: &PreferencePair) -> PairCredits {
        let w = self.world;
        let (tau, eps) = (w.bt_temperature(), w.flip_rate());
        for k in 0..w.types() {
            let d =
                w.reward(k, &pair.prompt, &pair.chosen) - w.reward(k, &pair.prompt, &pair.rejected);
            self.delta[k] = d;
            self.q_bt[k] = sigmoid(d / tau);
            self.q_obs[k] = observed_prob(self.q_bt[k], eps);
            self.nl[k] = noiseless(d);
        }
        self.pi = w.type_posterior_given_context(&pair.prompt, &pair.chosen, &pair.rejected);
        let pi = &self.pi;
        let mix = |b: &[f64], v: &[f64]| b.iter().zip(v).map(|(x, y)| x * y).sum::<f64>();
        let t = pair.group;
        let (y_obs, y_nl) = (mix(pi, &self.q_obs), mix(pi, &self.nl));

        let mut c = PairCredits::default();
        // Type oracle.
        c.acc_observed[0] = step(self.q_obs[t]);
        c.acc_noiseless[0] = preference_credit(step(self.nl[t]), self.nl[t]);
        c.exp_observed[0] = (0..w.types())
            .map(|k| pi[k] * preference_credit(step(self.q_obs[k]), self.q_obs[k]))
            .sum();
        c.exp_noiseless[0] = (0..w.types())
            .map(|k| pi[k] * preference_credit(step(self.nl[k]), self.nl[k]))
            .sum();
        // Prompt (index 1) and population (index 2) oracles.
        for (i, belief) in [(1, pi.as_slice()), (2, w.type_marginal())] {
            let d_obs = step(mix(belief, &self.q_obs));
            let d_nl = step(mix(belief, &self.nl));
            c.acc_observed[i] = d_obs;
            c.acc_noiseless[i] = preference_credit(d_nl, self.nl[t]);
            c.exp_observed[i] = preference_credit(d_obs, y_obs);
            c.exp_noiseless[i] = preference_credit(d_nl, y_nl);
        }
        c
    }

    /// Add one pair.
    pub fn add(&mut self, pair: &PreferencePair) {
        let c = self.pair_credits(pair);
        for (sum, part) in self.credits.iter_mut().zip([
            c.acc_observed,
            c.acc_noiseless,
            c.exp_observed,
            c.exp_noiseless,
        ]) {
            sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
        }
        let types = self.world.types();
        if types > 1 {
            let (mut dis, mut js) = (0usize, 0.0);
            for i in 0..types {
                for j in 0..i {
                    dis += usize::from(self.nl[i] != self.nl[j]);
                    js += js_bernoulli_bits(self.q_bt[i], self.q_bt[j]);
                }
            }
            let type_pairs = (types * (types - 1) / 2) as f64;
            self.disagreement += dis as f64 / type_pairs;
            self.js += js / type_pairs;
        }
        self.agreement += self.nl[pair.group];
        self.flips += usize::from(pair.truth.is_some_and(|t| t.flipped));
        let bayes = label_posterior(self.pi.clone(), &self.q_obs);
        self.bayes_hits += usize::from(argmax(&bayes) == pair.group);
        self.n += 1;
    }

    /// The statistics of every pair added so far.
    pub fn finish(&self) -> WorldStats {
        let w = self.world;
        let spec = w.spec();
        let types = w.types();
        let n = self.n as f64;
        let multi = types > 1;
        let off_diagonal: Vec<f64> = (0..types)
            .flat_map(|i| (0..i).map(move |j| (i, j)))
            .map(|(i, j)| w.type_cosine()[i][j])
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let [acc_o, acc_n, exp_o, exp_n] = self.credits.map(|c| c.map(|x| x / n));
        WorldStats {
            pairs: self.n,
            types,
            distance: spec.distance,
            cosine_target: multi.then(|| 1.0 - spec.distance * types as f64 / (types as f64 - 1.0)),
            cosine_min: multi.then(|| off_diagonal.iter().copied().fold(f64::INFINITY, f64::min)),
            cosine_mean: multi.then(|| mean(&off_diagonal)),
            disagreement_rate: multi.then(|| self.disagreement / n),
            js_bits_mean: multi.then(|| self.js / n),
            flip_fraction: self.flips as f64 / n,
            label_agreement: self.agreement / n,
            type_oracle_acc_observed: acc_o[0],
            type_oracle_acc_noiseless: acc_n[0],
            prompt_oracle_acc_observed: acc_o[1],
            prompt_oracle_acc_noiseless: acc_n[1],
            population_oracle_acc_observed: acc_o[2],
            population_oracle_acc_noiseless: acc_n[2],
            type_oracle_exp_observed: exp_o[0],
            type_oracle_exp_noiseless: exp_n[0],
            prompt_oracle_exp_observed: exp_o[1],
            prompt_oracle_exp_noiseless: exp_n[1],
            population_oracle_exp_observed: exp_o[2],
            population_oracle_exp_noiseless: exp_n[2],
            bayes_type_acc: self.bayes_hits as f64 / n,
        }
    }
}

/// Index of the largest entry (the first on ties).
fn argmax(v: &[f64]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv { (i, x) } else { (bi, bv) }
        })
        .0
}

/// [`WorldStats`] of `pairs` (normally the held-out pairs).
pub fn world_stats(world: &World, pairs: &[PreferencePair]) -> WorldStats {
    let mut acc = StatsAccumulator::new(world);
    pairs.iter().for_each(|p| acc.add(p));
    acc.finish()
}

/// The identifiability bound for a posterior that reads a pair plus `c` context pairs of its
/// annotator ([`World::bayes_type_posterior_multi`]), on `pairs` with context drawn as the
/// method draws it ([`ContextPool`] over `train`). `c = 0` is the single-pair bound (exact);
/// for `c > 0` the context draw is random, so the NMI is a Monte Carlo estimate over `reps`
/// independent draws (streams `bound/context/<c>/<r>`) with its standard error.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextBound {
    /// Mean NMI of the Bayes argmax type against the true types.
    pub nmi: f64,
    /// Standard error of `nmi` over the draws (0 for `c = 0`).
    pub nmi_se: f64,
    /// Mean accuracy of the Bayes argmax type.
    pub acc: f64,
    /// Mean NMI restricted to pairs whose annotator has no training pairs (`None` if none).
    pub nmi_unseen: Option<f64>,
}

/// See [`ContextBound`].
pub fn context_bound(
    world: &World,
    train: &[PreferencePair],
    pairs: &[PreferencePair],
    c: usize,
    seed: u64,
    reps: usize,
) -> ContextBound {
    let pool = ContextPool::new(train, pairs, false, c);
    let reps = if c == 0 { 1 } else { reps.max(2) };
    let truth: Vec<usize> = pairs.iter().map(|p| p.group).collect();
    let unseen: Vec<usize> = (0..pairs.len()).filter(|&i| pool.is_unseen(i)).collect();
    let mut nmis = Vec::with_capacity(reps);
    let mut accs = Vec::with_capacity(reps);
    let mut unseen_nmis = Vec::with_capacity(reps);
    for r in 0..reps {
        let mut rng = stream(seed, &format!("bound/context/{c}/{r}"));
        let guess: Vec<usize> = pairs
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut evidence = vec![p];
                evidence.extend(pool.draw(i, &mut rng));
                argmax(&world.bayes_type_posterior_multi(&evidence))
            })
            .collect();
        nmis.push(crate::metrics::nmi(&guess, &truth));
        let hits = guess.iter().zip(&truth).filter(|(a, b)| a == b).count();
        accs.push(hits as f64 / truth.len().max(1) as f64);
        if !unseen.is_empty() {
            let g: Vec<usize> = unseen.iter().map(|&i| guess[i]).collect();
            let t: Vec<usize> = unseen.iter().map(|&i| truth[i]).collect();
            unseen_nmis.push(crate::metrics::nmi(&g, &t));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let m = mean(&nmis);
    let se = if nmis.len() > 1 {
        let var = nmis.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (nmis.len() - 1) as f64;
        (var / nmis.len() as f64).sqrt()
    } else {
        0.0
    };
    ContextBound {
        nmi: m,
        nmi_se: se,
        acc: mean(&accs),
        nmi_unseen: (!unseen_nmis.is_empty()).then(|| mean(&unseen_nmis)),
    }
}

/// The identifiability bound's labels: argmax_t of [`World::bayes_type_posterior`] for each
/// pair (first index on ties). Score them against the true types with the metrics module.
pub fn bayes_argmax_types(world: &World, pairs: &[PreferencePair]) -> Vec<usize> {
    pairs
        .iter()
        .map(|p| argmax(&world.bayes_type_posterior(p)))
        .collect()
}
