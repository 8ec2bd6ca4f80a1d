//! The reference policy: the supervised warm-up that fits the starting policy to the world's
//! pi_ref, the fit report, and the frozen copy every objective compares against.
//!
//! METHOD.md §1: the reference `pi_ref(y|x)` is the frozen starting policy and is never given a
//! code. The issue asks that the starting policy first be fitted to the world's reference
//! distribution (a short next-token warm-up on samples from pi_ref) and that the fit be reported
//! as `KL(pi_ref || pi_start)` on held-out prompts. This module owns those three steps:
//! [`warmup`], [`kl_ref_to_policy`] and [`Reference`]. It does not own the preference losses.

use super::backbone::{Policy, SeqLogProbs};
use crate::data::batch::{SeqBatch, chunk_rows};
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::ElementConversion;
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rand::Rng;
use rand::seq::SliceRandom;

/// Sequences per chunk when scoring many sequences without gradients: every chunk of a call
/// has `min(SCORE_CHUNK, n)` rows (the last one padded), so a call builds one batch shape.
pub const SCORE_CHUNK: usize = 512;

/// A frozen copy of a policy, evaluated without any autodiff graph and never given a code.
///
/// It holds the policy on the backend's inner (non-autodiff) backend, as burn's
/// `AutodiffModule::valid` makes it, so its parameters cannot receive gradients and later
/// optimiser steps on the trained policy cannot change it.
#[derive(Debug, Clone)]
pub struct Reference<I: Backend> {
    policy: Policy<I>,
}

impl<I: Backend> Reference<I> {
    /// Freeze a copy of a (trainable) policy: `policy.valid()`.
    pub fn freeze<A: AutodiffBackend<InnerBackend = I>>(policy: &Policy<A>) -> Self {
        Reference {
            policy: policy.valid(),
        }
    }

    /// Wrap a policy that already lives on a plain backend.
    pub fn from_policy(policy: Policy<I>) -> Self {
        Reference { policy }
    }

    /// `log pi_ref(y|x)` of a training batch, lifted onto the autodiff backend as constants
    /// (no gradient flows into them).
    pub fn log_probs<A: AutodiffBackend<InnerBackend = I>>(
        &self,
        batch: &SeqBatch<A>,
    ) -> SeqLogProbs<A> {
        let inner = self.log_probs_inner(&batch.inner());
        SeqLogProbs {
            per_token: Tensor::from_inner(inner.per_token),
            sum: Tensor::from_inner(inner.sum),
            mean: Tensor::from_inner(inner.mean),
        }
    }

    /// `log pi_ref(y|x)` of a batch on the plain backend (evaluation).
    pub fn log_probs_inner(&self, batch: &SeqBatch<I>) -> SeqLogProbs<I> {
        let hidden = self.policy.hidden(batch.ids.clone());
        self.policy.log_probs(hidden, batch, None)
    }

    /// The frozen policy (for sampling from pi_ref or scoring with it).
    pub fn policy(&self) -> &Policy<I> {
        &self.policy
    }
}

/// Fit `policy` to samples from pi_ref by next-token cross-entropy on the response tokens.
///
/// ```text
/// loss = - sum_{b, i < |y_b|} log pi(y_{b,i} | x_b, y_{b,<i}) / sum_b |y_b|   (per step)
/// ```
///
/// `samples` are `(prompt, response)` pairs drawn from pi_ref. Each step takes the next
/// `batch_size` samples of a shuffled order (reshuffled with `rng` at every pass), then takes
/// one Adam step (burn defaults: beta 0.9/0.999, eps 1e-5) at learning rate `lr`. Returns the
/// fitted policy and the loss of every step (nats per response token). With no samples or zero
/// steps the policy is returned unchanged with no losses.
pub fn warmup<B: AutodiffBackend>(
    policy: Policy<B>,
    samples: &[(Vec<u32>, Vec<u32>)],
    separator: u32,
    steps: usize,
    lr: f64,
    batch_size: usize,
    rng: &mut impl Rng,
) -> (Policy<B>, Vec<f32>) {
    if samples.is_empty() || steps == 0 || batch_size == 0 {
        return (policy, Vec::new());
    }
    let device = policy.device();
    let mut optim = AdamConfig::new().init::<B, Policy<B>>();
    let mut order: Vec<usize> = (0..samples.len()).collect();
    let mut cursor = order.len();
    let mut policy = policy;
    let mut losses = Vec::with_capacity(steps);
    for _ in 0..steps {
        let mut chosen: Vec<(&[u32], &[u32])> = Vec::with_capacity(batch_size);
        while chosen.len() < batch_size.min(samples.len()) {
            if cursor == order.len() {
                order.shuffle(rng);
                cursor = 0;
            }
            let (p, r) = &samples[order[cursor]];
            chosen.push((p, r));
            cursor += 1;
        }
        let batch = SeqBatch::<B>::new(&chosen, separator, &device);
        let hidden = policy.hidden(batch.ids.clone());
        let lp = policy.log_probs(hidden, &batch, None);
        let tokens = batch.response_lens_host.iter().sum::<usize>().max(1);
        let loss = lp.sum.sum().neg().div_scalar(tokens as f64);
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &policy);
        policy = optim.step(lr, policy, grads);
    }
    (policy, losses)
}

/// Summed response log-probs `log pi(y|x)` (no code) of many `(prompt, response)` pairs, on the
/// host, computed in chunks without gradients.
pub fn score_responses<B: Backend>(
    policy: &Policy<B>,
    seqs: &[(Vec<u32>, Vec<u32>)],
    separator: u32,
) -> Vec<f64> {
    score_and_pool(policy, seqs, separator, false, |_| {}).sums
}

/// What [`score_and_pool`] returns, one entry per sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseScores {
    /// Summed response log-probs `log pi(y|x)`.
    pub sums: Vec<f64>,
    /// The response's mean final hidden state (`[d]` each), when asked for.
    pub pooled: Option<Vec<Vec<f32>>>,
}

/// [`score_responses`], calling `progress(sequences scored so far)` after each chunk, and with
/// `pool` also each response's features from the same pass: the mean of the final hidden
/// states (after the final norm) at the positions that have read a response token,
///
/// ```text
/// pooled[b] = (1 / R_b) sum_{i < R_b} h[b, P_b + 1 + i]      (R_b = 0: h[b, P_b], the separator)
/// ```
///
/// where `P_b` is the prompt's length (the separator sits at `P_b`).
pub fn score_and_pool<B: Backend>(
    policy: &Policy<B>,
    seqs: &[(Vec<u32>, Vec<u32>)],
    separator: u32,
    pool: bool,
    mut progress: impl FnMut(usize),
) -> ResponseScores {
    let device = policy.device();
    let mut sums = Vec::with_capacity(seqs.len());
    let mut pooled: Option<Vec<Vec<f32>>> = pool.then(|| Vec::with_capacity(seqs.len()));
    // One shape per call: every chunk has `rows` rows, the last one padded with copies of its
    // last sequence whose scores are dropped (rows are independent, so they change nothing).
    let rows = chunk_rows(seqs.len(), SCORE_CHUNK);
    for chunk in seqs.chunks(rows) {
        let mut borrowed: Vec<(&[u32], &[u32])> = chunk
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        let last = borrowed[borrowed.len() - 1];
        borrowed.resize(rows, last);
        let batch = SeqBatch::<B>::new(&borrowed, separator, &device);
        let hidden = policy.hidden(batch.ids.clone());
        if let Some(out) = pooled.as_mut() {
            out.extend(mean_response_states(hidden.clone(), chunk, batch.seq_len));
        }
        let sum = policy.log_probs(hidden, &batch, None).sum;
        let values = sum.into_data().convert::<f64>();
        sums.extend(values.iter::<f64>().take(chunk.len()));
        progress(sums.len());
    }
    ResponseScores { sums, pooled }
}

/// The pooled states of [`score_and_pool`] for the first `seqs.len()` rows of `hidden`
/// (`[rows, L, d]`, built from `seqs` by [`SeqBatch::new`] with sequence length `seq_len`).
fn mean_response_states<B: Backend>(
    hidden: Tensor<B, 3>,
    seqs: &[(Vec<u32>, Vec<u32>)],
    seq_len: usize,
) -> Vec<Vec<f32>> {
    let d = hidden.dims()[2];
    let mut idx: Vec<i64> = Vec::new();
    let mut counts = Vec::with_capacity(seqs.len());
    for (b, (p, r)) in seqs.iter().enumerate() {
        let sep = b * seq_len + p.len();
        if r.is_empty() {
            idx.push(sep as i64);
        } else {
            idx.extend((1..=r.len()).map(|i| (sep + i) as i64));
        }
        counts.push(r.len().max(1));
    }
    let n = idx.len();
    let rows = Tensor::<B, 1, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(idx, [n]),
        &hidden.device(),
    );
    let states = super::backbone::gather_rows(hidden, rows).into_data();
    let states = states.convert::<f32>();
    let flat = states.as_slice::<f32>().expect("f32 data after convert");
    let mut out = Vec::with_capacity(seqs.len());
    let mut at = 0;
    for c in counts {
        let mut acc = vec![0.0f64; d];
        for row in flat[at * d..(at + c) * d].chunks_exact(d) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += *v as f64;
            }
        }
        out.push(acc.iter().map(|a| (a / c as f64) as f32).collect());
        at += c;
    }
    out
}

/// Monte-Carlo `KL(pi_ref || pi)` from held-out samples of pi_ref with their exact
/// `log pi_ref(y|x)`:
///
/// ```text
/// KL_hat = (1/n) sum_j [ log pi_ref(y_j | x_j) - log pi(y_j | x_j) ],   (x_j, y_j) ~ pi_ref
/// ```
///
/// `log pi(y|x)` is the policy's summed log-probability of the response TOKENS given their
/// number: the model never chooses a length. So pass the world's reference log-prob of the
/// tokens given the length (for a world that draws lengths, subtract its length term,
/// `log P(|y|)`, first); then the estimate is the KL of the token distributions given the
/// length, averaged over the world's lengths. Unbiased, but a single estimate can be slightly
/// negative. Returns NaN for an empty set. Pass `policy.valid()` for a trainable policy.
pub fn kl_ref_to_policy<B: Backend>(
    policy: &Policy<B>,
    heldout: &[(Vec<u32>, Vec<u32>, f64)],
    separator: u32,
) -> f64 {
    if heldout.is_empty() {
        return f64::NAN;
    }
    let seqs: Vec<(Vec<u32>, Vec<u32>)> = heldout
        .iter()
        .map(|(p, r, _)| (p.clone(), r.clone()))
        .collect();
    let lp = score_responses(policy, &seqs, separator);
    let total: f64 = heldout
        .iter()
        .zip(&lp)
        .map(|((_, _, lp_ref), lp_pol)| lp_ref - lp_pol)
        .sum();
    total / heldout.len() as f64
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::backbone::PolicyConfig;
    use crate::model::{CpuAutodiff, CpuBackend};
    use crate::rng::stream;
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tolerance;
    use rand::RngExt;

    type A = CpuAutodiff;

    /// A toy pi_ref over content tokens 0..4 (separator 4): prompts are 3 uniform tokens, the
    /// response has 4 tokens, token i drawn from a fixed categorical TABLE[i] independent of
    /// everything else. So log pi_ref(y|x) = sum_i ln TABLE[i][y_i] exactly.
    const TABLE: [[f64; 4]; 4] = [
        [0.70, 0.10, 0.10, 0.10],
        [0.05, 0.05, 0.45, 0.45],
        [0.25, 0.25, 0.25, 0.25],
        [0.10, 0.60, 0.20, 0.10],
    ];

    fn draw(rng: &mut impl Rng, n: usize) -> Vec<(Vec<u32>, Vec<u32>, f64)> {
        (0..n)
            .map(|_| {
                let prompt: Vec<u32> = (0..3).map(|_| rng.random_range(0..4u32)).collect();
                let mut lp = 0.0;
                let response = TABLE
                    .iter()
                    .map(|row| {
                        let u: f64 = rng.random();
                        let mut acc = 0.0;
                        let k = row
                            .iter()
                            .position(|&p| {
                                acc += p;
                                u < acc
                            })
                            .unwrap_or(3);
                        lp += row[k].ln();
                        k as u32
                    })
                    .collect();
                (prompt, response, lp)
            })
            .collect()
    }

    #[test]
    fn warmup_fits_pi_ref_and_the_kl_falls() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        A::seed(&device, 21);
        let policy = PolicyConfig::new(5, 8, 16, 1, 2, 32).init::<A>(&device);
        let mut rng = stream(0, "warmup-test");
        let train: Vec<(Vec<u32>, Vec<u32>)> = draw(&mut rng, 2000)
            .into_iter()
            .map(|(p, r, _)| (p, r))
            .collect();
        let heldout = draw(&mut rng, 1000);
        let kl_before = kl_ref_to_policy(&policy.valid(), &heldout, 4);
        let (fitted, losses) = warmup(policy, &train, 4, 200, 3e-3, 64, &mut rng);
        let kl_after = kl_ref_to_policy(&fitted.valid(), &heldout, 4);
        // The cross-entropy cannot go below the mean per-token entropy of TABLE:
        // H = mean_i -sum_k p_ik ln p_ik.
        let entropy: f64 = TABLE
            .iter()
            .map(|row| -row.iter().map(|p| p * p.ln()).sum::<f64>())
            .sum::<f64>()
            / 4.0;
        let first = losses[..10].iter().sum::<f32>() as f64 / 10.0;
        let last = losses[losses.len() - 10..].iter().sum::<f32>() as f64 / 10.0;
        println!(
            "entropy {entropy:.4} loss {first:.4} -> {last:.4} kl {kl_before:.4} -> {kl_after:.4}"
        );
        assert_eq!(losses.len(), 200);
        assert!(last < first - 0.2, "loss {first} -> {last}");
        // KL(pi_ref||pi) per sequence = 4 * (CE - H) in expectation; allow 0.05 nats/token.
        assert!(
            last < entropy + 0.05,
            "final CE {last} vs entropy {entropy}"
        );
        assert!(kl_after < 0.5 * kl_before, "kl {kl_before} -> {kl_after}");
        assert!(kl_after < 4.0 * 0.05, "kl {kl_after}");
    }

    /// Oracle: each sequence alone, in a batch of one at its own length, read straight from
    /// `Policy::hidden` at positions `P + 1 ..= P + R` (the separator at `P` for an empty
    /// response) and averaged; the sums equal `score_responses`. 600 sequences make two chunks
    /// of `SCORE_CHUNK`, the second padded.
    #[test]
    fn pooled_features_are_the_mean_states_that_read_the_response() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        CpuBackend::seed(&device, 5);
        let policy = PolicyConfig::new(5, 12, 8, 1, 2, 16).init::<CpuBackend>(&device);
        let mut rng = stream(2, "pool");
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = (0..600)
            .map(|_| {
                let mut tokens = |max: usize| -> Vec<u32> {
                    let n = rng.random_range(0..max);
                    (0..n).map(|_| rng.random_range(0..4u32)).collect()
                };
                let p = tokens(5);
                (p, tokens(6))
            })
            .collect();
        assert!(seqs.iter().any(|(_, r)| r.is_empty()));
        let scored = score_and_pool(&policy, &seqs, 4, true, |_| {});
        assert_eq!(scored.sums, score_responses(&policy, &seqs, 4));
        let pooled = scored.pooled.expect("asked for");
        assert_eq!(pooled.len(), seqs.len());
        for ((p, r), got) in seqs.iter().zip(&pooled).step_by(7) {
            let batch = SeqBatch::<CpuBackend>::new(&[(p.as_slice(), r.as_slice())], 4, &device);
            let hidden = policy
                .hidden(batch.ids.clone())
                .into_data()
                .convert::<f32>();
            let h = hidden.as_slice::<f32>().unwrap();
            let d = 8;
            let positions: Vec<usize> = if r.is_empty() {
                vec![p.len()]
            } else {
                (p.len() + 1..=p.len() + r.len()).collect()
            };
            for j in 0..d {
                let want =
                    positions.iter().map(|&t| h[t * d + j]).sum::<f32>() / positions.len() as f32;
                assert!(
                    (got[j] - want).abs() < 1e-5,
                    "{p:?} {r:?} dim {j}: {} vs {want}",
                    got[j]
                );
            }
        }
        assert!(
            score_and_pool(&policy, &seqs, 4, false, |_| {})
                .pooled
                .is_none()
        );
    }

    #[test]
    fn kl_of_a_policy_to_itself_is_zero() {
        let _rng = crate::rng::backend_rng_lock();
        // With lp_ref set to the policy's own scores the estimate is exactly 0 (up to f32
        // rounding): checks the sign convention and the pairing of rows.
        let device = Default::default();
        CpuBackend::seed(&device, 4);
        let policy = PolicyConfig::new(5, 8, 8, 1, 2, 16).init::<CpuBackend>(&device);
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = draw(&mut stream(1, "self"), 50)
            .into_iter()
            .map(|(p, r, _)| (p, r))
            .collect();
        let own = score_responses(&policy, &seqs, 4);
        let heldout: Vec<_> = seqs
            .iter()
            .zip(&own)
            .map(|((p, r), &l)| (p.clone(), r.clone(), l))
            .collect();
        assert!(kl_ref_to_policy(&policy, &heldout, 4).abs() < 1e-9);
        let shifted: Vec<_> = heldout
            .iter()
            .map(|(p, r, l)| (p.clone(), r.clone(), l + 0.5))
            .collect();
        assert!((kl_ref_to_policy(&policy, &shifted, 4) - 0.5).abs() < 1e-9);
        assert!(kl_ref_to_policy(&policy, &[], 4).is_nan());
    }

    /// Asserts that two gradient sets agree on every float parameter of a module, counting the
    /// compared entries.
    struct SameGrads<'a> {
        a: &'a GradientsParams,
        b: &'a GradientsParams,
        compared: usize,
    }

    impl ModuleVisitor<A> for SameGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            let (a, b) = (
                self.a.get::<CpuBackend, D>(param.id),
                self.b.get::<CpuBackend, D>(param.id),
            );
            match (a, b) {
                (Some(a), Some(b)) => {
                    self.compared += a.shape().num_elements();
                    a.into_data()
                        .assert_approx_eq::<f32>(&b.into_data(), Tolerance::absolute(1e-6));
                }
                (None, None) => self.compared += param.val().shape().num_elements(),
                _ => panic!("gradient present in one set only"),
            }
        }
    }

    #[test]
    fn the_reference_receives_no_gradient_and_never_moves() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        A::seed(&device, 8);
        let policy = PolicyConfig::new(5, 8, 16, 1, 2, 32).init::<A>(&device);
        let reference = Reference::freeze(&policy);
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = draw(&mut stream(2, "ref"), 16)
            .into_iter()
            .map(|(p, r, _)| (p, r))
            .collect();
        let batch = SeqBatch::<A>::from_owned(&seqs, 4, &device);
        let lp_ref = reference.log_probs(&batch);
        assert!(!lp_ref.sum.is_require_grad());
        let lp_pol = policy.log_probs(policy.hidden(batch.ids.clone()), &batch, None);
        // A DPO-like loss that uses both.
        let loss = (lp_pol.sum.clone() - lp_ref.sum.clone())
            .powi_scalar(2)
            .sum();
        let grads = loss.backward();
        // Reference outputs are graph constants: they have no gradient...
        assert!(lp_ref.sum.grad(&grads).is_none());
        // ...and the policy's gradients equal those of the same loss with the reference values
        // fed as plain data, so nothing flowed through the reference.
        let plain_ref = Tensor::<A, 1>::from_data(lp_ref.sum.to_data(), &device);
        let lp_pol2 = policy.log_probs(policy.hidden(batch.ids.clone()), &batch, None);
        let loss2 = (lp_pol2.sum - plain_ref).powi_scalar(2).sum();
        let g1 = GradientsParams::from_grads(grads, &policy);
        let g2 = GradientsParams::from_grads(loss2.backward(), &policy);
        assert_eq!(g1.len(), g2.len());
        assert!(!g1.is_empty());
        let mut cmp = SameGrads {
            a: &g1,
            b: &g2,
            compared: 0,
        };
        policy.visit(&mut cmp);
        assert_eq!(cmp.compared, policy.num_params());
        // An optimiser step on the policy leaves the reference's log-probs unchanged.
        let before = lp_ref.sum.to_data();
        let mut optim = AdamConfig::new().init::<A, Policy<A>>();
        let moved = optim.step(1e-2, policy, g1);
        let after = reference.log_probs(&batch).sum.to_data();
        before.assert_eq(&after, true);
        let moved_lp = moved
            .log_probs(moved.hidden(batch.ids.clone()), &batch, None)
            .sum;
        assert!(moved_lp.to_data() != before, "the policy itself did move");
    }
}
