//! Matrix-multiply FLOP counts of one training step, for throughput figures (achieved FLOP/s as
//! a fraction of the machine's measured matmul peak, `benches/train_step.rs`).
//!
//! This module owns only the arithmetic: it counts the multiply-adds of every matmul a step
//! runs (the `2 m n k` convention: one multiply and one add per term), from the model's shape,
//! the batch shape and the method. Element-wise work (softmax, LayerNorm, activations, the
//! embedding gathers, Adam) is not counted; at the sizes the benches use it is a small share of
//! the time on a GPU and a larger one on the CPU, which is part of what the fraction shows.
//!
//! For `n = 2 B` stacked sequences (chosen and rejected rows of `B` pairs), padded length `L`,
//! `R` response slots, width `d`, feed-forward width `f`, `H` layers, model vocabulary `V`:
//!
//! ```text
//! per layer   projections  Q, K, V, O:   4 * 2 n L d d    = 8 n L d^2
//!             attention    Q K^T and A V: 2 * 2 n L L d   = 4 n L^2 d   (summed over heads)
//!             feed-forward W_1, W_2:     2 * 2 n L d f    = 4 n L d f
//! LM head     on the response rows only: 2 n R d V
//! latent (B pairs, K codes, MLP width d_h = d):
//!   LPC       prior MLP 2B(d d_h + d_h K) + posterior MLP 2B(2d d_h + d_h K)
//!             + codes w E for the posterior sample and the prior mix: 2 * 2 B K d
//!   Gaussian  prior MLP 2B(d d_h + d_h 2m) + posterior MLP 2B(2d d_h + d_h 2m)
//!             + projections P u (sample and prior mean): 2 * 2 B m d
//!   oracle    2 B K d (one-hot codes, K = T)
//! annotator context C > 0: one more backbone pass (no LM head) over the 2 B C context rows
//! forward  = H (projections + attention + feed-forward) + LM head + latent (+ context backbone)
//! step     = 3 forward
//! ```
//!
//! The factor 3: the backward pass of `Y = X W` runs two matmuls of the forward's size
//! (`dX = dY W^T`, `dW = X^T dY`), and every matmul operand in a step needs its gradient (the
//! embeddings are trained, so even the first layer's input does). The prior-mix code term is
//! counted at every step although it is skipped while `g = 0` (step 0 of the linear schedule).

use crate::scenario::{LatentKind, ModelSpec, ResolvedMethod};

/// Forward-pass matmul FLOPs of one training step, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MatmulFlops {
    /// Q, K, V and output projections of every layer.
    pub projections: u64,
    /// `Q K^T` and `A V` of every layer.
    pub attention: u64,
    /// The two feed-forward matmuls of every layer.
    pub feed_forward: u64,
    /// The LM head on the response rows.
    pub lm_head: u64,
    /// Prior and posterior heads and codes (0 for baselines).
    pub latent: u64,
}

impl MatmulFlops {
    /// Sum of every part.
    pub fn total(&self) -> u64 {
        self.projections + self.attention + self.feed_forward + self.lm_head + self.latent
    }
}

/// Forward matmul FLOPs of one training step by part (see the module docs for the formula).
///
/// `batch` pairs of sequences padded to `seq_len` tokens (`[prompt, separator, response]`) with
/// `response_len` response slots; `vocab` is the model vocabulary (content tokens plus the
/// separator, `PreferenceData::model_vocab()`).
pub fn forward_matmul_flops(
    spec: &ModelSpec,
    batch: usize,
    seq_len: usize,
    response_len: usize,
    vocab: usize,
    method: &ResolvedMethod,
) -> MatmulFlops {
    let (d, f, h) = (spec.d_model as u64, spec.d_ff() as u64, spec.layers as u64);
    let (b, l, r, v) = (
        batch as u64,
        seq_len as u64,
        response_len as u64,
        vocab as u64,
    );
    // Backbone rows: the pair batch's 2B sequences, plus 2BC context sequences.
    // Only the posterior reads context pairs (the oracle and the baselines never do).
    let context = match method.name.latent {
        LatentKind::Lpc | LatentKind::Gaussian => method.context as u64,
        LatentKind::None | LatentKind::Oracle => 0,
    };
    let n = 2 * b * (1 + context);
    let k = method.codebook as u64;
    let latent = match method.name.latent {
        LatentKind::None => 0,
        LatentKind::Lpc => {
            2 * b * (d * d + d * k) + 2 * b * (2 * d * d + d * k) + 2 * 2 * b * k * d
        }
        LatentKind::Gaussian => {
            let m2 = 2 * method.latent_dim as u64;
            2 * b * (d * d + d * m2)
                + 2 * b * (2 * d * d + d * m2)
                + 2 * 2 * b * (method.latent_dim as u64) * d
        }
        LatentKind::Oracle => 2 * b * k * d,
    };
    MatmulFlops {
        projections: h * 8 * n * l * d * d,
        attention: h * 4 * n * l * l * d,
        feed_forward: h * 4 * n * l * d * f,
        lm_head: 2 * (2 * b) * r * d * v,
        latent,
    }
}

/// Matmul FLOPs of one optimiser step (forward and backward), `3 *` [`forward_matmul_flops`].
pub fn matmul_flops_per_step(
    spec: &ModelSpec,
    batch: usize,
    seq_len: usize,
    response_len: usize,
    vocab: usize,
    method: &ResolvedMethod,
) -> u64 {
    3 * forward_matmul_flops(spec, batch, seq_len, response_len, vocab, method).total()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    fn method(text: &str) -> ResolvedMethod {
        Scenario::from_toml_str(
            &format!("[world]\nannotators = 10\n[[methods]]\n{text}\n"),
            "t",
        )
        .unwrap()
        .resolved_methods()
        .remove(0)
    }

    fn spec(d: usize, f: usize, layers: usize) -> ModelSpec {
        ModelSpec {
            d_model: d,
            d_ff: Some(f),
            layers,
            heads: 1,
            ..ModelSpec::default()
        }
    }

    #[test]
    fn dpo_matches_a_hand_count() {
        // d = 4, f = 8, 1 layer, B = 1 pair -> n = 2 rows, L = 3, R = 1, V = 5. By hand:
        // projections 4 matmuls [6 x 4] x [4 x 4]: 4 * 2*6*4*4       = 768
        // attention  per row [3 x 4] x [4 x 3] and [3 x 3] x [3 x 4]: 2 * (2*3*4*3) * 2 rows = 288
        // feed-forward [6 x 4] x [4 x 8] and [6 x 8] x [8 x 4]: 2 * 2*6*4*8 = 768
        // LM head [2 x 4] x [4 x 5]: 2*2*4*5 = 80
        let m = method("method = \"dpo\"");
        let f = forward_matmul_flops(&spec(4, 8, 1), 1, 3, 1, 5, &m);
        assert_eq!(
            f,
            MatmulFlops {
                projections: 768,
                attention: 288,
                feed_forward: 768,
                lm_head: 80,
                latent: 0
            }
        );
        assert_eq!(
            matmul_flops_per_step(&spec(4, 8, 1), 1, 3, 1, 5, &m),
            3 * 1904
        );
    }

    #[test]
    fn lpc_adds_its_heads_and_codes_only() {
        // K = 3, d = 4, B = 2: prior [2x4]x[4x4], [2x4]x[4x3] -> 2*2*(16+12) = 112;
        // posterior [2x8]x[8x4], [2x4]x[4x3] -> 2*2*(32+12) = 176; codes 2 * [2x3]x[3x4] = 96.
        let s = spec(4, 8, 2);
        let base = forward_matmul_flops(&s, 2, 5, 2, 7, &method("method = \"dpo\""));
        let lpc = forward_matmul_flops(
            &s,
            2,
            5,
            2,
            7,
            &method("method = \"lpc-dpo\"\ncodebook = 3"),
        );
        assert_eq!(lpc.latent, 112 + 176 + 96);
        assert_eq!(lpc.total() - base.total(), lpc.latent);
        // Oracle (K = T = 2 types by default): one [2x2]x[2x4] code matmul = 2*2*2*4 = 32.
        let oracle = forward_matmul_flops(&s, 2, 5, 2, 7, &method("method = \"oracle-dpo\""));
        assert_eq!(oracle.latent, 32);
        // Annotator context C = 2 adds a backbone pass over 2*B*C = 8 context rows beside the
        // 2B = 4 pair rows, so the backbone parts triple (4 -> 12 rows); the LM head does not.
        let ctx = forward_matmul_flops(
            &s,
            2,
            5,
            2,
            7,
            &method("method = \"lpc-dpo\"\ncodebook = 3\ncontext = 2"),
        );
        assert_eq!(ctx.projections, 3 * lpc.projections);
        assert_eq!(ctx.attention, 3 * lpc.attention);
        assert_eq!(ctx.feed_forward, 3 * lpc.feed_forward);
        assert_eq!(ctx.lm_head, lpc.lm_head);
    }

    proptest::proptest! {
        /// Every part but the latent one is linear in the batch, and the attention part grows
        /// as L^2 while the rest of the backbone grows as L.
        #[test]
        fn scales_as_the_formula_says(b in 1usize..50, l in 2usize..40, d in 1usize..40) {
            let m = method("method = \"lpc-simpo\"\ncodebook = 8");
            let s = spec(d, 4 * d, 2);
            let one = forward_matmul_flops(&s, b, l, l / 2, 17, &m);
            let two = forward_matmul_flops(&s, 2 * b, l, l / 2, 17, &m);
            proptest::prop_assert_eq!(two.total(), 2 * one.total());
            let long = forward_matmul_flops(&s, b, 2 * l, l / 2, 17, &m);
            proptest::prop_assert_eq!(long.attention, 4 * one.attention);
            proptest::prop_assert_eq!(long.projections, 2 * one.projections);
            proptest::prop_assert_eq!(long.feed_forward, 2 * one.feed_forward);
        }
    }
}
