//! Bradley–Terry labels with temperature and label flips (METHOD.md §2), and the small
//! probability functions the world's statistics share.
//!
//! This module owns scalar formulas only; which rewards go in is the world's business.

/// Logistic sigmoid 1 / (1 + e^{-z}), evaluated without overflow. Range [0, 1]; it rounds to
/// exactly 1 for z > 37 and stays > 0 down to z ~ -745.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Probability that the first response wins under Bradley–Terry with temperature tau > 0:
///
/// ```text
/// P(y_1 > y_2) = sigmoid((r(y_1) - r(y_2)) / tau)
/// ```
#[inline]
pub fn bt_prob(r1: f64, r2: f64, tau: f64) -> f64 {
    sigmoid((r1 - r2) / tau)
}

/// Probability that an observed label (after flips with probability eps) names `a` as chosen,
/// given the noiseless Bradley–Terry probability q = P(a > b):
///
/// ```text
/// Q = (1 - eps) q + eps (1 - q) = eps + (1 - 2 eps) q
/// ```
#[inline]
pub fn observed_prob(q: f64, eps: f64) -> f64 {
    (1.0 - eps) * q + eps * (1.0 - q)
}

/// One label draw. `u_bt` and `u_flip` are independent uniforms in [0, 1):
/// y_1 wins the Bradley–Terry draw iff `u_bt < p`, the label is flipped iff `u_flip < eps`, and
/// y_1 is chosen iff it won and was not flipped, or lost and was flipped (`wins XOR flipped`). Returns `(first_chosen, flipped)`. Taking the uniforms as inputs keeps
/// the number of random draws per pair fixed, so worlds that differ only in tau, eps or the
/// rewards see the same draws.
#[inline]
pub fn draw_label(p: f64, eps: f64, u_bt: f64, u_flip: f64) -> (bool, bool) {
    let wins = u_bt < p;
    let flipped = u_flip < eps;
    (wins != flipped, flipped)
}

/// Noiseless preference of a reward difference: 1 if positive, 0 if negative, 1/2 on a tie
/// (the convention of `PairTruth::noiseless_chosen_wins`).
#[inline]
pub fn noiseless(delta: f64) -> f64 {
    if delta > 0.0 {
        1.0
    } else if delta < 0.0 {
        0.0
    } else {
        0.5
    }
}

/// Jensen–Shannon divergence between Bernoulli(p) and Bernoulli(q), in bits, range [0, 1]:
///
/// ```text
/// JS(p, q) = H((p + q)/2) - (H(p) + H(q)) / 2,   H(p) = -p log2 p - (1-p) log2 (1-p)
/// ```
pub fn js_bernoulli_bits(p: f64, q: f64) -> f64 {
    fn h(p: f64) -> f64 {
        let term = |x: f64| if x > 0.0 { -x * x.log2() } else { 0.0 };
        term(p) + term(1.0 - p)
    }
    (h(0.5 * (p + q)) - 0.5 * (h(p) + h(q))).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_matches_its_definition() {
        for z in [-30.0, -2.0, -0.5, 0.0, 0.5, 2.0, 30.0] {
            assert!((sigmoid(z) - 1.0 / (1.0 + f64::exp(-z))).abs() < 1e-15);
        }
        assert_eq!(sigmoid(40.0), 1.0);
        assert!(sigmoid(-700.0) > 0.0);
    }

    #[test]
    fn js_extremes() {
        // JS(p, p) = 0; JS(0, 1) = H(1/2) = 1 bit.
        assert_eq!(js_bernoulli_bits(0.3, 0.3), 0.0);
        assert!((js_bernoulli_bits(0.0, 1.0) - 1.0).abs() < 1e-15);
    }

    #[test]
    fn observed_prob_at_half_is_half() {
        // eps = 1/2 makes every label a fair coin whatever q.
        assert_eq!(observed_prob(0.9, 0.5), 0.5);
        assert_eq!(observed_prob(0.9, 0.0), 0.9);
    }
}
