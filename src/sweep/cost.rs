//! Cost estimate: the relative cost of one cell, for `--dry-run`.

use crate::scenario::{MethodName, ObjectiveKind, Scenario};

/// Relative cost of one cell for `--dry-run`, in multiply-adds of the policy backbone (a
/// proxy: the sweep command calibrates seconds per unit on the machine). For a cell's scenario
/// (its first method is the one that runs):
/// ```text
/// L      = prompt_len + 1 + response_len                 tokens per sequence (with separator)
/// d, f   = model.d_model, model.d_ff;   n = model.layers;   V = world.vocab + 1
/// F      = L · ( n (4 d² + 2 d f + 2 L d) + d V )         one forward pass of one sequence:
///                                                        projections, feed-forward, attention
///                                                        scores and values, output head
/// S      = method.steps, else ⌈epochs · train_pairs / B⌉ when train.epochs is set, else train.steps
/// B      = train.batch_size
/// r      = 0 for SimPO (reference-free), else 1           reference forward passes
/// warmup = model.warmup_steps · B · 3F                   supervised fit, one sequence, fwd + bwd
/// train  = S · B · (2 · 3F + 2 r F)                      chosen and rejected, fwd + bwd ≈ 3
///                                                        forwards, plus the reference forwards
/// eval   = (⌊S / eval_every⌋ + 1) · eval_pairs · (2 + 2r) F
/// cost   = warmup + train + eval
/// ```
/// The code's posterior, prior and codebook (O(K d) per pair) are left out: they are small
/// beside the backbone for every K this crate runs. Range: > 0.
pub fn relative_cost(s: &Scenario) -> f64 {
    let w = s.world();
    let l = (w.prompt_len + 1 + w.response_len) as f64;
    let d = s.model.d_model as f64;
    let f = s.model.d_ff() as f64;
    let n = s.model.layers as f64;
    let v = (w.vocab + 1) as f64;
    let forward = l * (n * (4.0 * d * d + 2.0 * d * f + 2.0 * l * d) + d * v);
    let b = s.train.batch_size as f64;
    let method = s.methods.first();
    let steps = match (method.and_then(|m| m.steps), s.train.epochs) {
        (Some(steps), _) => steps,
        (None, Some(epochs)) => epochs
            .saturating_mul(s.data.train_pairs)
            .div_ceil(s.train.batch_size.max(1)),
        (None, None) => s.train.steps,
    };
    let simpo = method
        .and_then(|m| MethodName::parse(&m.method))
        .is_some_and(|m| m.objective == ObjectiveKind::Simpo);
    let reference = if simpo { 0.0 } else { 1.0 };
    let warmup = s.model.warmup_steps as f64 * b * 3.0 * forward;
    let train = steps as f64 * b * (6.0 * forward + 2.0 * reference * forward);
    let evals = (steps / s.train.eval_every + 1) as f64;
    let eval = evals * s.data.eval_pairs as f64 * (2.0 + 2.0 * reference) * forward;
    warmup + train + eval
}
