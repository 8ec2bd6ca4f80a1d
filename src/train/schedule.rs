//! Schedules over training steps: learning rate, Gumbel temperature, the KL weight and the
//! posterior→prior mixing weight g. All are pure functions of the step, so a run is
//! reproducible and the curves can be recomputed from the resolved scenario.

use crate::scenario::{LrSchedule, PriorSchedule, ResolvedMethod};

/// Learning rate at `step` (0-based) of `total` steps.
///
/// ```text
/// warm-up (step < W):  lr (step + 1) / W
/// then, with u = (step - W) / max(1, total - W - 1) in [0, 1]:
///   constant: lr
///   linear:   lr (1 - u)              (down to 0 at the last step)
///   cosine:   lr (1 + cos(pi u)) / 2  (down to 0 at the last step)
/// ```
pub fn learning_rate(
    lr: f64,
    warmup: usize,
    schedule: LrSchedule,
    step: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup + 1).max(1) as f64;
    let u = ((step - warmup) as f64 / span).clamp(0.0, 1.0);
    match schedule {
        LrSchedule::Constant => lr,
        LrSchedule::Linear => lr * (1.0 - u),
        LrSchedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * u).cos()),
    }
}

/// Fraction of training done, in [0, 1]: `step / (total - 1)` (0 for a one-step run).
pub fn progress(step: usize, total: usize) -> f64 {
    if total <= 1 {
        0.0
    } else {
        (step as f64 / (total - 1) as f64).clamp(0.0, 1.0)
    }
}

/// Gumbel-softmax temperature, annealed exponentially from `tau` to `tau_end`
/// ([`crate::model::annealed_tau`] at the step's progress):
/// ```text
/// tau(step) = tau (tau_end / tau)^progress
/// ```
pub fn temperature(m: &ResolvedMethod, step: usize, total: usize) -> f64 {
    crate::model::annealed_tau(m.tau, m.tau_end, progress(step, total))
}

/// The posterior→prior mixing weight g of METHOD.md §1: the code fed to the policy is
/// `z = (1 - g) z_q + g z_p`.
/// ```text
/// linear: g = progress in [0, 1]      off: g = 0
/// ```
pub fn prior_mix(m: &ResolvedMethod, step: usize, total: usize) -> f64 {
    match m.prior_schedule {
        PriorSchedule::Linear => progress(step, total),
        PriorSchedule::Off => 0.0,
    }
}

/// The KL weight, with an optional linear warm-up from 0 over the first `lambda_warmup`
/// fraction of training (`objective::warmed_up_lambda`):
/// ```text
/// lambda(step) = lambda min(1, progress / lambda_warmup)   (lambda_warmup > 0)
/// ```
pub fn kl_weight(m: &ResolvedMethod, step: usize, total: usize) -> f64 {
    crate::objective::warmed_up_lambda(m.lambda, progress(step, total), m.lambda_warmup)
}

/// The weight of the code-diversity term (`methods[].diversity`), decaying linearly to 0 over
/// the first `diversity_until` fraction of training:
/// ```text
/// alpha(step) = alpha max(0, 1 - progress / diversity_until)
/// ```
pub fn diversity_weight(m: &ResolvedMethod, step: usize, total: usize) -> f64 {
    m.diversity * (1.0 - progress(step, total) / m.diversity_until).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_zero() {
        // Warm-up: lr (s+1)/W, so step 0 of W = 4 gives lr / 4.
        assert_eq!(learning_rate(1.0, 4, LrSchedule::Cosine, 0, 100), 0.25);
        assert_eq!(learning_rate(1.0, 4, LrSchedule::Cosine, 3, 100), 1.0);
        // First post-warm-up step: u = 0, cos(0) = 1 -> full lr.
        assert!((learning_rate(1.0, 4, LrSchedule::Cosine, 4, 100) - 1.0).abs() < 1e-12);
        // Last step: u = 1 -> 0 for linear and cosine.
        assert!(learning_rate(1.0, 4, LrSchedule::Cosine, 99, 100).abs() < 1e-12);
        assert!(learning_rate(1.0, 4, LrSchedule::Linear, 99, 100).abs() < 1e-12);
        assert_eq!(learning_rate(0.5, 4, LrSchedule::Constant, 99, 100), 0.5);
        // Midpoint of the cosine: u = 1/2 -> lr/2.
        let mid = learning_rate(1.0, 0, LrSchedule::Cosine, 50, 101);
        assert!((mid - 0.5).abs() < 1e-12);
    }

    #[test]
    fn diversity_weight_decays_linearly_to_zero() {
        // Oracle: alpha max(0, 1 - progress / until) with progress = step / (total - 1).
        let text = "[[methods]]\nmethod = \"lpc-dpo\"\ndiversity = 0.2\ndiversity_until = 0.5";
        let m = &crate::scenario::Scenario::from_toml_str(text, "t")
            .unwrap()
            .resolved_methods()[0];
        assert_eq!(diversity_weight(m, 0, 101), 0.2);
        assert!((diversity_weight(m, 25, 101) - 0.1).abs() < 1e-12);
        assert_eq!(diversity_weight(m, 50, 101), 0.0);
        assert_eq!(diversity_weight(m, 100, 101), 0.0);
    }
}
