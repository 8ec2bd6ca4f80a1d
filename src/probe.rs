//! A linear Bradley–Terry probe: the preference a reward model linear in fixed features learns
//! from the training pairs, as a reference point for what a method could take from them.
//!
//! Each response `y` of a pair has a feature vector `f(y)` (for a pretrained policy: the mean of
//! the frozen model's final hidden states over the response's tokens). The probe scores a pair
//! by a linear reward difference, with no bias, so it is antisymmetric in the pair:
//!
//! ```text
//! x_i = (f(y_w,i) - f(y_l,i)) / s          (s: per-feature root mean square of the training x)
//! P(y_w > y_l) = sigmoid(w . x_i)
//! w = argmin_w  sum_i softplus(-w . x_i) + (lambda / 2) |w|^2
//! ```
//!
//! The objective is strictly convex for `lambda > 0`; [`fit`] minimises it by Newton's method
//! with a Cholesky solve and a backtracking line search, to a gradient whose largest entry is
//! below [`GRAD_TOL`] (relative to the number of pairs). `lambda` is chosen from [`LAMBDAS`] by
//! [`FOLDS`]-fold cross-validation on the training pairs alone (the mean held-out log-loss;
//! pair `i` sits in fold `i mod FOLDS`), so nothing outside the training pairs shapes the probe.

use rayon::prelude::*;

/// The L2 weights cross-validation chooses from.
pub const LAMBDAS: [f64; 7] = [1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4];
/// Cross-validation folds.
pub const FOLDS: usize = 5;
/// Newton stops when every gradient entry is below `GRAD_TOL * max(1, n)`.
pub const GRAD_TOL: f64 = 1e-9;
/// Newton iterations at most (the objective is smooth and strictly convex: a few tens suffice).
const MAX_ITERS: usize = 100;

/// A fitted probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Weights on the scaled feature differences.
    pub weights: Vec<f64>,
    /// Per-feature scale `s` of the differences (root mean square over the training pairs; 1
    /// where that is 0).
    pub scale: Vec<f64>,
    /// The chosen L2 weight.
    pub lambda: f64,
    /// Mean cross-validated log-loss per entry of [`LAMBDAS`] (NaN where a fold had no pairs).
    pub cv_loss: Vec<f64>,
}

impl Probe {
    /// Train a probe on the training pairs' feature differences `f(y_w) - f(y_l)` (all of one
    /// length): scale, cross-validate lambda, refit on every pair. `None` without pairs. With
    /// fewer pairs than folds there is no cross-validation and lambda is the grid's middle, 10.
    pub fn train(diffs: &[Vec<f64>]) -> Option<Probe> {
        let d = diffs.first()?.len();
        let scale: Vec<f64> = (0..d)
            .map(|j| {
                let ms = diffs.iter().map(|x| x[j] * x[j]).sum::<f64>() / diffs.len() as f64;
                if ms > 0.0 { ms.sqrt() } else { 1.0 }
            })
            .collect();
        let xs: Vec<Vec<f64>> = diffs
            .iter()
            .map(|x| x.iter().zip(&scale).map(|(v, s)| v / s).collect())
            .collect();
        let cv_loss = cross_validate(&xs, &LAMBDAS, FOLDS);
        // The smallest mean loss; on an exact tie the larger lambda (the simpler probe).
        let best = (0..LAMBDAS.len())
            .filter(|&k| cv_loss[k].is_finite())
            .fold(None, |acc: Option<usize>, k| match acc {
                Some(b) if cv_loss[b] < cv_loss[k] => Some(b),
                _ => Some(k),
            })
            .unwrap_or(LAMBDAS.len() / 2);
        let lambda = LAMBDAS[best];
        Some(Probe {
            weights: fit(&xs, lambda),
            scale,
            lambda,
            cv_loss,
        })
    }

    /// The probe's reward margin `w . (f(y_w) - f(y_l)) / s` of a pair's two feature vectors.
    pub fn margin(&self, chosen: &[f32], rejected: &[f32]) -> f64 {
        self.weights
            .iter()
            .zip(&self.scale)
            .zip(chosen.iter().zip(rejected))
            .map(|((w, s), (c, r))| w * (*c as f64 - *r as f64) / s)
            .sum()
    }
}

/// `ln(1 + e^t)`, without overflow.
fn softplus(t: f64) -> f64 {
    if t > 0.0 {
        t + (-t).exp().ln_1p()
    } else {
        t.exp().ln_1p()
    }
}

/// `1 / (1 + e^-t)`.
fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The penalised objective `sum_i softplus(-w . x_i) + lambda/2 |w|^2`.
pub fn objective(xs: &[Vec<f64>], w: &[f64], lambda: f64) -> f64 {
    xs.iter().map(|x| softplus(-dot(w, x))).sum::<f64>() + 0.5 * lambda * dot(w, w)
}

/// Its gradient `-sum_i sigmoid(-w . x_i) x_i + lambda w`.
pub fn gradient(xs: &[Vec<f64>], w: &[f64], lambda: f64) -> Vec<f64> {
    let mut g: Vec<f64> = w.iter().map(|v| lambda * v).collect();
    for x in xs {
        let c = sigmoid(-dot(w, x));
        for (gj, xj) in g.iter_mut().zip(x) {
            *gj -= c * xj;
        }
    }
    g
}

/// Minimise [`objective`] by damped Newton (module docs). `xs` must all have one length;
/// `lambda > 0`. Zero weights for no pairs.
pub fn fit(xs: &[Vec<f64>], lambda: f64) -> Vec<f64> {
    let d = xs.first().map_or(0, Vec::len);
    let mut w = vec![0.0; d];
    if xs.is_empty() {
        return w;
    }
    let tol = GRAD_TOL * (xs.len() as f64).max(1.0);
    let mut f = objective(xs, &w, lambda);
    for _ in 0..MAX_ITERS {
        let g = gradient(xs, &w, lambda);
        if g.iter().all(|v| v.abs() < tol) {
            break;
        }
        // Hessian: sum_i p_i (1 - p_i) x_i x_i^T + lambda I (upper triangle, then mirrored).
        let mut h = vec![0.0; d * d];
        for x in xs {
            let p = sigmoid(dot(&w, x));
            let c = p * (1.0 - p);
            for a in 0..d {
                let ca = c * x[a];
                let row = &mut h[a * d..(a + 1) * d];
                for b in a..d {
                    row[b] += ca * x[b];
                }
            }
        }
        for a in 0..d {
            h[a * d + a] += lambda;
            for b in 0..a {
                h[a * d + b] = h[b * d + a];
            }
        }
        let neg_g: Vec<f64> = g.iter().map(|v| -v).collect();
        let step = cholesky_solve(&mut h, d, &neg_g);
        // Backtracking: the full Newton step unless it fails to decrease the objective (near
        // the optimum the decrease falls below the objective's rounding, and the step is kept).
        let slope = dot(&g, &step);
        let rounding = 1e-13 * f.abs().max(1.0);
        let mut t = 1.0;
        loop {
            let trial: Vec<f64> = w.iter().zip(&step).map(|(a, s)| a + t * s).collect();
            let ft = objective(xs, &trial, lambda);
            if ft <= f + 1e-4 * t * slope || (ft - f).abs() <= rounding || t < 1e-10 {
                w = trial;
                f = ft;
                break;
            }
            t *= 0.5;
        }
    }
    w
}

/// Solve `H s = rhs` for a symmetric positive definite `H` (`d x d`, row-major), overwriting
/// `H` with its Cholesky factor.
fn cholesky_solve(h: &mut [f64], d: usize, rhs: &[f64]) -> Vec<f64> {
    for j in 0..d {
        let mut diag = h[j * d + j];
        for k in 0..j {
            diag -= h[j * d + k] * h[j * d + k];
        }
        let l_jj = diag.max(f64::MIN_POSITIVE).sqrt();
        h[j * d + j] = l_jj;
        for i in j + 1..d {
            let mut v = h[i * d + j];
            for k in 0..j {
                v -= h[i * d + k] * h[j * d + k];
            }
            h[i * d + j] = v / l_jj;
        }
    }
    // L y = rhs, then L^T s = y.
    let mut y = rhs.to_vec();
    for i in 0..d {
        for k in 0..i {
            y[i] -= h[i * d + k] * y[k];
        }
        y[i] /= h[i * d + i];
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            y[i] -= h[k * d + i] * y[k];
        }
        y[i] /= h[i * d + i];
    }
    y
}

/// Mean held-out log-loss `softplus(-w . x)` of each lambda over `folds` folds (pair `i` in fold
/// `i mod folds`); NaN for a lambda when some fold has no held-out or no training pairs.
pub fn cross_validate(xs: &[Vec<f64>], lambdas: &[f64], folds: usize) -> Vec<f64> {
    if xs.len() < folds.max(2) {
        return vec![f64::NAN; lambdas.len()];
    }
    let jobs: Vec<(usize, usize)> = (0..lambdas.len())
        .flat_map(|k| (0..folds).map(move |f| (k, f)))
        .collect();
    let losses: Vec<(usize, f64)> = jobs
        .par_iter()
        .map(|&(k, fold)| {
            let train: Vec<Vec<f64>> = xs
                .iter()
                .enumerate()
                .filter(|(i, _)| i % folds != fold)
                .map(|(_, x)| x.clone())
                .collect();
            let w = fit(&train, lambdas[k]);
            let held: f64 = xs
                .iter()
                .enumerate()
                .filter(|(i, _)| i % folds == fold)
                .map(|(_, x)| softplus(-dot(&w, x)))
                .sum();
            (k, held)
        })
        .collect();
    let mut total = vec![0.0; lambdas.len()];
    for (k, l) in losses {
        total[k] += l;
    }
    total.iter().map(|t| t / xs.len() as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::stream;
    use proptest::prelude::*;
    use rand::RngExt;
    use rand_distr::{Distribution, StandardNormal};

    /// Pairs whose difference is a draw of N(0, I) oriented by the Bradley–Terry model with
    /// weights `truth`: the chosen side is the one sigmoid(truth . x) picks.
    fn bt_pairs(truth: &[f64], n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = stream(seed, "probe-test");
        (0..n)
            .map(|_| {
                let x: Vec<f64> = truth
                    .iter()
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect();
                let p = sigmoid(dot(truth, &x));
                if rng.random::<f64>() < p {
                    x
                } else {
                    x.iter().map(|v| -v).collect()
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Oracle: the first-order optimality condition of the strictly convex objective,
        /// gradient = 0 (module formula), and no better point nearby.
        #[test]
        fn the_fit_zeroes_the_gradient(
            xs in prop::collection::vec(prop::collection::vec(-3.0f64..3.0, 4), 1..40),
            lambda in 0.01f64..100.0,
        ) {
            let w = fit(&xs, lambda);
            let g = gradient(&xs, &w, lambda);
            let tol = GRAD_TOL * (xs.len() as f64).max(1.0);
            prop_assert!(g.iter().all(|v| v.abs() < tol), "gradient {g:?}");
            let f = objective(&xs, &w, lambda);
            for j in 0..w.len() {
                for delta in [-1e-3, 1e-3] {
                    let mut v = w.clone();
                    v[j] += delta;
                    prop_assert!(objective(&xs, &v, lambda) >= f - 1e-12);
                }
            }
        }
    }

    /// Oracle: in one dimension with n copies of x = a the optimum solves
    /// n a sigmoid(-w a) = lambda w, found here by bisection (independent of Newton).
    #[test]
    fn one_dimension_matches_bisection() {
        let (n, a, lambda) = (7usize, 1.3, 2.5);
        let xs = vec![vec![a]; n];
        let w = fit(&xs, lambda)[0];
        let h = |w: f64| n as f64 * a * sigmoid(-w * a) - lambda * w;
        let (mut lo, mut hi) = (0.0, 100.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if h(mid) > 0.0 { lo = mid } else { hi = mid }
        }
        assert!((w - lo).abs() < 1e-9, "newton {w}, bisection {lo}");
    }

    /// Oracle: Bradley–Terry pairs drawn from known weights; with many pairs and light
    /// regularisation the fitted direction is the true one (cosine near 1), and a probe trained
    /// on one draw ranks fresh pairs of the same model at about the Bayes accuracy
    /// E[max(p, 1 - p)], estimated on the fresh pairs from the true weights.
    #[test]
    fn recovers_known_weights_and_reaches_the_bayes_accuracy() {
        let truth = [1.5, -1.0, 0.0, 0.5];
        let train = bt_pairs(&truth, 4000, 1);
        let probe = Probe::train(&train).unwrap();
        let w: Vec<f64> = probe
            .weights
            .iter()
            .zip(&probe.scale)
            .map(|(w, s)| w / s)
            .collect();
        let cos = dot(&w, &truth) / (dot(&w, &w).sqrt() * dot(&truth, &truth).sqrt());
        assert!(cos > 0.99, "cosine {cos}");
        let fresh = bt_pairs(&truth, 4000, 2);
        let to32 = |x: &[f64]| x.iter().map(|v| *v as f32).collect::<Vec<f32>>();
        let zero = vec![0.0f32; truth.len()];
        let acc = fresh
            .iter()
            .filter(|x| probe.margin(&to32(x), &zero) > 0.0)
            .count() as f64
            / fresh.len() as f64;
        let bayes = fresh
            .iter()
            .map(|x| {
                let p = sigmoid(dot(&truth, x));
                p.max(1.0 - p)
            })
            .sum::<f64>()
            / fresh.len() as f64;
        // Both are means of 4000 draws (standard error about 0.007).
        assert!((acc - bayes).abs() < 0.03, "probe {acc}, Bayes {bayes}");
    }

    /// Pure noise features: the cross-validated loss is smallest for strong regularisation,
    /// near ln 2 (a probe that knows nothing), and the margin is antisymmetric.
    #[test]
    fn noise_picks_strong_regularisation_and_margins_are_antisymmetric() {
        let train = bt_pairs(&[0.0; 20], 200, 3);
        let probe = Probe::train(&train).unwrap();
        assert!(probe.lambda >= 1e2, "lambda {}", probe.lambda);
        let best = probe.cv_loss.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(
            (best - std::f64::consts::LN_2).abs() < 0.02,
            "cv loss {best}"
        );
        let a: Vec<f32> = (0..20).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..20).map(|i| 1.0 - i as f32 * 0.05).collect();
        assert_eq!(probe.margin(&a, &b), -probe.margin(&b, &a));
        assert!(Probe::train(&[]).is_none());
        // Fewer pairs than folds: no cross-validation, the grid's middle.
        let few = Probe::train(&train[..FOLDS - 1]).unwrap();
        assert_eq!(few.lambda, 10.0);
        assert!(few.cv_loss.iter().all(|l| l.is_nan()));
    }
}
