//! Gumbel-softmax relaxation of a categorical code, with host-drawn noise.
//!
//! This module owns the code weights LPC feeds to the codebook during training (METHOD.md §1:
//! `w = Gumbel-softmax(log q, tau)`), in two forms: the soft relaxation (default) and the
//! straight-through hard sample (forward one-hot, gradient of the soft weights). The Gumbel noise
//! is drawn on the host from an explicitly seeded generator and uploaded, so a run is fixed by its
//! seed whatever the backend. It does not own the logits (see `latent`) or the KL (see
//! `objective`).

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;
use rand_distr::{Distribution, Gumbel};

/// How the Gumbel-perturbed logits become code weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Relaxation {
    /// `w = softmax((l + g) / tau)`: a point in the simplex, differentiable.
    #[default]
    Soft,
    /// Straight-through: the forward value is `one_hot(argmax(l + g))`, the gradient is that
    /// of the soft weights (`w = hard - stop_grad(soft) + soft`).
    StraightThrough,
}

impl Relaxation {
    /// `StraightThrough` when `hard` (the scenario's `hard = true`), else `Soft`.
    pub fn from_hard(hard: bool) -> Self {
        if hard {
            Relaxation::StraightThrough
        } else {
            Relaxation::Soft
        }
    }
}

/// Exponentially annealed temperature at training progress `t` in `[0, 1]`:
/// `tau(t) = tau_start (tau_end / tau_start)^t`, so `tau(0) = tau_start` and `tau(1) = tau_end`
/// (equal ends give a constant temperature). Both ends must be positive.
pub fn annealed_tau(tau_start: f64, tau_end: f64, t: f64) -> f64 {
    tau_start * (tau_end / tau_start).powf(t.clamp(0.0, 1.0))
}

/// Standard Gumbel noise `g = -ln(-ln u)`, `u ~ U(0, 1]`, of shape `[rows, k]`, drawn on the host
/// from `rng` (in f64, so `u = 1`, which would give `+inf`, has probability 2^-53) and uploaded.
pub fn gumbel_noise<B: Backend>(
    rng: &mut impl Rng,
    rows: usize,
    k: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let gumbel = Gumbel::new(0.0f64, 1.0).expect("scale 1 is valid");
    let values: Vec<f32> = (0..rows * k).map(|_| gumbel.sample(rng) as f32).collect();
    Tensor::from_data(TensorData::new(values, [rows, k]), device)
}

/// Gumbel-softmax weights `[N, K]` from logits `[N, K]` (Jang et al. 2017; Maddison et al. 2017):
///
/// ```text
/// soft = softmax((logits + noise) / tau)          rows sum to 1, entries in (0, 1)
/// Soft:            w = soft
/// StraightThrough: w = one_hot(argmax(soft)) - stop_grad(soft) + soft
/// ```
///
/// `noise` is [`gumbel_noise`] of the same shape; `tau > 0`. Any logits shift per row is
/// harmless, so unnormalised logits and log-probabilities give the same weights. With either
/// relaxation `argmax_k w` is a draw from `softmax(logits)` (the Gumbel-max trick).
pub fn gumbel_softmax<B: Backend>(
    logits: Tensor<B, 2>,
    tau: f64,
    relaxation: Relaxation,
    noise: Tensor<B, 2>,
) -> Tensor<B, 2> {
    let soft = softmax((logits + noise).div_scalar(tau), 1);
    match relaxation {
        Relaxation::Soft => soft,
        Relaxation::StraightThrough => {
            one_hot_argmax(soft.clone().detach()) - soft.clone().detach() + soft
        }
    }
}

/// `one_hot(argmax_k x[n, k])`, `[N, K]`, a constant (no gradient).
pub fn one_hot_argmax<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, k] = x.dims();
    x.argmax(1).reshape([n]).one_hot::<2>(k).float()
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::{CpuAutodiff, CpuBackend};
    use crate::rng::stream;

    type B = CpuBackend;

    fn floats<const D: usize, BB: Backend>(t: Tensor<BB, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    #[test]
    fn weights_sum_to_one_and_hard_is_one_hot() {
        let device = Default::default();
        let mut rng = stream(1, "gumbel-test");
        let logits = Tensor::<B, 2>::from_floats([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], &device);
        for tau in [0.3, 1.0, 3.0] {
            let noise = gumbel_noise::<B>(&mut rng, 2, 3, &device);
            let soft = gumbel_softmax(logits.clone(), tau, Relaxation::Soft, noise.clone());
            let hard = gumbel_softmax(logits.clone(), tau, Relaxation::StraightThrough, noise);
            for row in floats(soft.clone()).chunks(3) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
                assert!(row.iter().all(|&w| w > 0.0 && w < 1.0));
            }
            // The hard forward value is exactly one-hot, at the soft argmax.
            let (s, h) = (floats(soft), floats(hard));
            for (srow, hrow) in s.chunks(3).zip(h.chunks(3)) {
                let arg = (0..3).max_by(|&a, &b| srow[a].total_cmp(&srow[b])).unwrap();
                for (k, &v) in hrow.iter().enumerate() {
                    let want = if k == arg { 1.0 } else { 0.0 };
                    assert!((v - want).abs() < 1e-6, "{hrow:?}");
                }
            }
        }
    }

    #[test]
    fn argmax_frequencies_follow_softmax_of_logits() {
        // Gumbel-max: argmax(l + g) ~ Categorical(softmax(l)), for any tau. With n draws the
        // count of class k is Binomial(n, p_k); we allow 5 standard deviations
        // (5 sqrt(n p (1-p))), a false-alarm rate below 1e-5 per class.
        let device = Default::default();
        let mut rng = stream(2, "gumbel-freq");
        let logits_host = [1.0f32, 0.0, -1.0, 0.5];
        let n = 20_000;
        let logits = Tensor::<B, 1>::from_floats(logits_host, &device)
            .reshape([1, 4])
            .repeat_dim(0, n);
        let noise = gumbel_noise::<B>(&mut rng, n, 4, &device);
        let w = gumbel_softmax(logits, 0.7, Relaxation::Soft, noise);
        let arg = w
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        let mut counts = [0usize; 4];
        for a in arg {
            counts[a as usize] += 1;
        }
        let z: f32 = logits_host.iter().map(|l| l.exp()).sum();
        for k in 0..4 {
            let p = (logits_host[k].exp() / z) as f64;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            let dev = (counts[k] as f64 - n as f64 * p).abs();
            assert!(
                dev < 5.0 * sd,
                "class {k}: {} vs {}",
                counts[k],
                n as f64 * p
            );
        }
    }

    #[test]
    fn straight_through_gradient_is_the_soft_gradient() {
        // d/dl sum_k c_k w_k must be the same for Soft and StraightThrough (same noise).
        type A = CpuAutodiff;
        let device = Default::default();
        let mut rng = stream(3, "gumbel-st");
        let noise = gumbel_noise::<A>(&mut rng, 2, 3, &device);
        let c = Tensor::<A, 2>::from_floats([[1.0, -2.0, 0.5], [0.3, 0.2, -0.7]], &device);
        let grad = |relax| {
            let l = Tensor::<A, 2>::from_floats([[0.1, 0.2, 0.3], [1.0, -1.0, 0.0]], &device)
                .require_grad();
            let w = gumbel_softmax(l.clone(), 0.5, relax, noise.clone());
            let g = (w * c.clone()).sum().backward();
            floats(l.grad(&g).unwrap())
        };
        let (gs, gh) = (grad(Relaxation::Soft), grad(Relaxation::StraightThrough));
        for (a, b) in gs.iter().zip(&gh) {
            assert!((a - b).abs() < 1e-6, "{gs:?} vs {gh:?}");
        }
        assert!(gs.iter().any(|g| g.abs() > 1e-4));
    }

    #[test]
    fn temperature_anneals_geometrically() {
        assert_eq!(annealed_tau(2.0, 0.5, 0.0), 2.0);
        assert!((annealed_tau(2.0, 0.5, 1.0) - 0.5).abs() < 1e-12);
        // Halfway is the geometric mean sqrt(2 * 0.5) = 1.
        assert!((annealed_tau(2.0, 0.5, 0.5) - 1.0).abs() < 1e-12);
        assert_eq!(annealed_tau(1.0, 1.0, 0.3), 1.0);
    }

    #[test]
    fn noise_is_reproducible_from_the_seed() {
        let device = Default::default();
        let a = floats(gumbel_noise::<B>(&mut stream(4, "g"), 3, 5, &device));
        let b = floats(gumbel_noise::<B>(&mut stream(4, "g"), 3, 5, &device));
        assert_eq!(a, b);
        // Standard Gumbel has mean = Euler–Mascheroni constant 0.5772 and variance pi^2/6;
        // 10^4 draws put the sample mean within 5 sd (5 * 1.28 / 100) of it.
        let many = floats(gumbel_noise::<B>(&mut stream(5, "g"), 100, 100, &device));
        let mean = many.iter().map(|&x| x as f64).sum::<f64>() / many.len() as f64;
        assert!((mean - 0.577_215_66).abs() < 5.0 * 1.2825 / 100.0, "{mean}");
    }
}
