//! Autoregressive sampling of responses from a policy, with host-drawn uniforms.
//!
//! This module owns drawing `y ~ pi(.|x, z)` for a batch of prompts, token by token, with every
//! random number taken from an explicitly seeded generator, so samples are fixed by the seed
//! whatever the backend. The world decides each response's length (`lens`); the model only picks
//! the tokens. It does not score the samples (the world's rewards live in `synth`).
//!
//! Each step re-runs the backbone on the whole prefix (sequences are short, and this keeps the
//! code to the one forward pass the training step uses) and reads the next-token distribution
//! at each row's last real token.

use super::backbone::Policy;
use crate::data::batch::SeqBatch;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use rand::{Rng, RngExt};

/// Sample one response per prompt from `pi(.|x, z)`, with `lens[j]` tokens for prompt j.
///
/// ```text
/// for i in 0..lens[j]:
///     p_i(v) = pi(v | x_j, y_<i, z_j) / (1 - pi(SEP | x_j, y_<i, z_j)),   v in 0..SEP
///     y_i    = min { v : sum_{u <= v} p_i(u) > U },   U ~ U[0, 1) from rng
/// returns y_j and  log p(y_j) = sum_i log p_i(y_i)
/// ```
///
/// Content tokens are `0..separator`; the separator (the model's last token) is never sampled,
/// so each step draws from pi restricted to content tokens and renormalised, and the returned
/// log-probability is that of the distribution actually sampled from:
/// `log pi(y|x,z) - sum_i log(1 - pi(SEP | x, y_<i, z))` (equal to `log pi(y|x,z)` when the
/// policy puts no mass on the separator, as a warmed-up policy nearly does).
///
/// `z` is `[N, d]` (one code per prompt) or `None`. Prompts are processed together, all `N`
/// rows every step (one batch shape); rows whose response is complete draw no more tokens.
/// Uniforms are drawn in row order, one per active row per step.
///
/// # Panics
/// If `prompts`, `lens` (and `z`) disagree in length, or a sequence exceeds the policy's
/// `max_seq_len`.
pub fn sample_responses<B: Backend>(
    policy: &Policy<B>,
    prompts: &[Vec<u32>],
    lens: &[usize],
    z: Option<Tensor<B, 2>>,
    separator: u32,
    rng: &mut impl Rng,
) -> (Vec<Vec<u32>>, Vec<f64>) {
    let n = prompts.len();
    assert_eq!(lens.len(), n, "one length per prompt");
    if let Some(z) = &z {
        assert_eq!(z.dims()[0], n, "one code per prompt");
    }
    let device = policy.device();
    let vocab = policy.vocab();
    let content = (separator as usize).min(vocab);
    let mut responses: Vec<Vec<u32>> = lens.iter().map(|&l| Vec::with_capacity(l)).collect();
    let mut log_probs = vec![0.0f64; n];
    let steps = lens.iter().copied().max().unwrap_or(0);
    for i in 0..steps {
        // Every step scores all n rows (rows are independent, so a finished row changes no
        // other): one batch shape for the whole loop. Only active rows draw a token.
        let seqs: Vec<(&[u32], &[u32])> = (0..n)
            .map(|j| (prompts[j].as_slice(), responses[j].as_slice()))
            .collect();
        let batch = SeqBatch::<B>::new(&seqs, separator, &device);
        let hidden = policy.hidden(batch.ids.clone());
        let logp = policy.next_token_log_probs(hidden, batch.last_rows.clone(), z.clone());
        let logp = logp.into_data().convert::<f64>();
        let logp: Vec<f64> = logp.iter::<f64>().collect();
        for j in (0..n).filter(|&j| lens[j] > i) {
            let dist = &logp[j * vocab..j * vocab + content];
            let (token, lp) = draw_restricted(dist, rng.random::<f64>());
            responses[j].push(token as u32);
            log_probs[j] += lp;
        }
    }
    (responses, log_probs)
}

/// Inverse-CDF draw from `p(v) ∝ exp(logp[v])` with uniform `u` in `[0, 1)`; returns the token
/// and its log-probability under the renormalised distribution.
fn draw_restricted(logp: &[f64], u: f64) -> (usize, f64) {
    let total: f64 = logp.iter().map(|l| l.exp()).sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut pick = logp.len() - 1;
    for (v, l) in logp.iter().enumerate() {
        acc += l.exp();
        if acc > target {
            pick = v;
            break;
        }
    }
    (pick, logp[pick] - total.ln())
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::CpuBackend;
    use crate::model::backbone::PolicyConfig;
    use crate::rng::stream;
    use burn::tensor::Distribution;

    type B = CpuBackend;

    fn floats<const D: usize>(t: Tensor<B, D>) -> Vec<f64> {
        t.into_data().convert::<f64>().iter::<f64>().collect()
    }

    #[test]
    fn sampled_tokens_follow_the_model_softmax() {
        let _rng = crate::rng::backend_rng_lock();
        // A random (untrained) policy over 4 content tokens + separator 4. For every one of
        // n = 6000 draws from the same prompt and code, the first token is Categorical(p) with
        // p the model's restricted softmax at the separator, so each count is Binomial(n, p_k):
        // allow 5 standard deviations. The second token is checked the same way conditionally
        // on the first being the most frequent token.
        let device = Default::default();
        B::seed(&device, 17);
        let policy = PolicyConfig::new(5, 8, 16, 2, 2, 32).init::<B>(&device);
        let n = 6000;
        let prompt = vec![1u32, 3, 0];
        let z_one = Tensor::<B, 2>::random([1, 16], Distribution::Normal(0.0, 1.0), &device);
        let z = z_one.clone().repeat_dim(0, n);
        let prompts = vec![prompt.clone(); n];
        let (ys, lps) = sample_responses(
            &policy,
            &prompts,
            &vec![2; n],
            Some(z),
            4,
            &mut stream(1, "s"),
        );

        let restricted = |prefix: &[u32]| -> Vec<f64> {
            let batch = SeqBatch::<B>::new(&[(prompt.as_slice(), prefix)], 4, &device);
            let h = policy.hidden(batch.ids.clone());
            let lp = floats(policy.next_token_log_probs(
                h,
                batch.last_rows.clone(),
                Some(z_one.clone()),
            ));
            let total: f64 = lp[..4].iter().map(|l| l.exp()).sum();
            lp[..4].iter().map(|l| l.exp() / total).collect()
        };
        let check = |counts: &[usize], p: &[f64]| {
            let m: usize = counts.iter().sum();
            for k in 0..4 {
                let sd = (m as f64 * p[k] * (1.0 - p[k])).sqrt();
                let dev = (counts[k] as f64 - m as f64 * p[k]).abs();
                assert!(
                    dev <= 5.0 * sd + 1e-9,
                    "token {k}: {} of {m}, p {}",
                    counts[k],
                    p[k]
                );
            }
        };
        let p0 = restricted(&[]);
        let mut c0 = [0usize; 4];
        for y in &ys {
            assert_eq!(y.len(), 2);
            assert!(y.iter().all(|&t| t < 4), "the separator is never sampled");
            c0[y[0] as usize] += 1;
        }
        check(&c0, &p0);
        let top = (0..4).max_by_key(|&k| c0[k]).unwrap() as u32;
        let p1 = restricted(&[top]);
        let mut c1 = [0usize; 4];
        for y in ys.iter().filter(|y| y[0] == top) {
            c1[y[1] as usize] += 1;
        }
        check(&c1, &p1);
        // The returned log-prob is that of the restricted distribution: for a sample (a, b),
        // ln p0[a] + ln p1(a)[b].
        for (y, lp) in ys.iter().zip(&lps).take(20) {
            let want = p0[y[0] as usize].ln() + restricted(&y[..1])[y[1] as usize].ln();
            assert!((lp - want).abs() < 1e-4, "{lp} vs {want}");
        }
    }

    #[test]
    fn ragged_lengths_and_reproducibility() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        B::seed(&device, 3);
        let policy = PolicyConfig::new(6, 10, 8, 1, 2, 16).init::<B>(&device);
        let prompts = vec![vec![0u32, 1], vec![2u32], vec![3u32, 4, 0]];
        let lens = [3usize, 0, 5];
        let (a, la) = sample_responses(&policy, &prompts, &lens, None, 5, &mut stream(2, "r"));
        let (b, lb) = sample_responses(&policy, &prompts, &lens, None, 5, &mut stream(2, "r"));
        assert_eq!(a, b);
        assert_eq!(la, lb);
        assert_eq!(a.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 0, 5]);
        assert_eq!(la[1], 0.0);
        assert!(la[0] < 0.0 && la[2] < 0.0);
    }

    #[test]
    fn inverse_cdf_draw_picks_by_cumulative_mass() {
        // p = [0.2, 0.5, 0.3]: u in [0, .2) -> 0, [.2, .7) -> 1, [.7, 1) -> 2.
        let lp = [0.2f64.ln(), 0.5f64.ln(), 0.3f64.ln()];
        assert_eq!(draw_restricted(&lp, 0.0).0, 0);
        assert_eq!(draw_restricted(&lp, 0.19).0, 0);
        assert_eq!(draw_restricted(&lp, 0.21).0, 1);
        assert_eq!(draw_restricted(&lp, 0.69).0, 1);
        assert_eq!(draw_restricted(&lp, 0.71).0, 2);
        assert!((draw_restricted(&lp, 0.5).1 - 0.5f64.ln()).abs() < 1e-12);
        // Unnormalised input is renormalised: [0.1, 0.1] -> each 1/2.
        let (_, l) = draw_restricted(&[0.1f64.ln(), 0.1f64.ln()], 0.3);
        assert!((l - 0.5f64.ln()).abs() < 1e-12);
    }
}
