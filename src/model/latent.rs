//! The discrete latent of LPC: codebook, prior and posterior heads, and code weights.
//!
//! This module owns the parts of METHOD.md §1 that sit beside the backbone:
//!
//! ```text
//! codebook  E = [e_1 .. e_K]                          [K, d]
//! prior     p(z|x)        = softmax(MLP_prior(h_x))                     h_x: state at SEP
//! posterior q(z|x,yw>yl)  = softmax(MLP_post([h(x,yw)_last ; h(x,yl)_last]))
//! code      z = w^T E     for weights w in the simplex (Gumbel-softmax, prior, one-hot)
//! ```
//!
//! plus the annotator-context pooling of posterior features, the inference-time code choice
//! from the prior, the posterior→prior mixing `z = (1-g) z_q + g z_p`, and one-hot weights for
//! the oracle and for steering with a single code. It returns logits; the KL between the
//! resulting categoricals and every loss live in `objective`.

use super::backbone::{gather_rows, hidden_at_last, hidden_at_separator};
use super::gumbel::{gumbel_noise, one_hot_argmax};
use crate::data::batch::PairBatch;
use crate::scenario::InferenceMode;
use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rand::Rng;

/// A two-layer perceptron `d_input -> d_hidden -> d_output` with a GELU between.
#[derive(Config, Debug)]
pub struct MlpConfig {
    /// Input width.
    pub d_input: usize,
    /// Hidden width.
    pub d_hidden: usize,
    /// Output width.
    pub d_output: usize,
    /// Initialise the output layer to zero, so the MLP starts at exactly 0 for every input.
    #[config(default = false)]
    pub zero_output: bool,
}

impl MlpConfig {
    /// A fresh MLP on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let mut outer = LinearConfig::new(self.d_hidden, self.d_output);
        if self.zero_output {
            outer = outer.with_initializer(Initializer::Zeros);
        }
        Mlp {
            inner: LinearConfig::new(self.d_input, self.d_hidden).init(device),
            outer: outer.init(device),
        }
    }
}

/// `MLP(x) = W_2 gelu(W_1 x + b_1) + b_2`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    inner: Linear<B>,
    outer: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// `[N, d_input] -> [N, d_output]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.outer.forward(gelu(self.inner.forward(x)))
    }
}

/// K learned codes of dimension d.
#[derive(Module, Debug)]
pub struct Codebook<B: Backend> {
    /// `E`, `[K, d]`.
    pub codes: Param<Tensor<B, 2>>,
}

impl<B: Backend> Codebook<B> {
    /// K codes of size d drawn i.i.d. from N(0, init_std^2). A small `init_std` keeps
    /// `pi(.|x, z)` close to `pi(.|x)` at the start, so the initial implicit rewards are ~0.
    pub fn new(k: usize, d: usize, init_std: f64, device: &B::Device) -> Self {
        let codes = Initializer::Normal {
            mean: 0.0,
            std: init_std,
        }
        .init([k, d], device);
        super::backbone::materialise(Codebook { codes })
    }

    /// `z = w (E - mean_k E)`, `[N, d]`, from weights `w` `[N, K]` (rows in the simplex, or
    /// one-hot).
    ///
    /// The codebook is centred: codes carry only their deviation from the codebook mean, since a
    /// shared offset would duplicate the LM head's bias. So with `K = 1` the code is exactly 0
    /// (and gets no gradient), and LPC with one code and lambda = 0 is its base objective bit
    /// for bit (docs/DESIGN.md).
    pub fn code(&self, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        let codes = self.codes.val();
        let centred = codes.clone() - codes.mean_dim(0);
        weights.matmul(centred)
    }

    /// Number of codes K.
    pub fn size(&self) -> usize {
        self.codes.dims()[0]
    }
}

/// Shape of the LPC heads.
#[derive(Config, Debug)]
pub struct LatentConfig {
    /// Backbone hidden size d (= code dimension).
    pub d_model: usize,
    /// Codebook size K.
    pub codebook: usize,
    /// Hidden width of the prior and posterior MLPs. Default: `d_model`.
    #[config(default = "None")]
    pub d_hidden: Option<usize>,
    /// Standard deviation of the initial codes.
    #[config(default = 0.5)]
    pub code_init_std: f64,
}

impl LatentConfig {
    /// Fresh codebook and heads on `device` (hidden width `d_hidden`, default `d_model`).
    pub fn init<B: Backend>(&self, device: &B::Device) -> LatentHeads<B> {
        let (d, k) = (self.d_model, self.codebook);
        let hidden = self.d_hidden.unwrap_or(d);
        let heads = LatentHeads {
            codebook: Codebook::new(k, d, self.code_init_std, device),
            prior: MlpConfig::new(d, hidden, k).init(device),
            posterior: MlpConfig::new(2 * d, hidden, k).init(device),
        };
        super::backbone::materialise(heads)
    }
}

/// Codebook, prior head and posterior head of LPC.
#[derive(Module, Debug)]
pub struct LatentHeads<B: Backend> {
    /// The K learned codes `[K, d]`.
    pub codebook: Codebook<B>,
    prior: Mlp<B>,
    posterior: Mlp<B>,
}

impl<B: Backend> LatentHeads<B> {
    /// Prior logits `[N, K]` from `h_x` `[N, d]` (`hidden_at_separator`):
    /// `log p(z|x) = log_softmax(prior_logits)`.
    pub fn prior_logits(&self, h_x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.prior.forward(h_x)
    }

    /// Posterior logits `[N, K]` from pair features `[N, 2d]` ([`posterior_features`], or
    /// [`pool_context`] of them): `log q(z|x, yw > yl) = log_softmax(posterior_logits)`.
    pub fn posterior_logits(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.posterior.forward(features)
    }

    /// Posterior logits with annotator context: `features` is `[N*(C+1), 2d]` in groups of
    /// `C+1` consecutive rows (the pair first, then its C context pairs); each group is
    /// mean-pooled before the MLP. `C = 0` is [`LatentHeads::posterior_logits`].
    ///
    /// ```text
    /// logits_j = MLP_post( (1/(C+1)) sum_{r in group j} features_r )
    /// ```
    pub fn posterior_logits_pooled(&self, features: Tensor<B, 2>, group: usize) -> Tensor<B, 2> {
        self.posterior_logits(mean_pool_groups(features, group))
    }

    /// `z = w (E - mean_k E)`, `[N, d]` (see [`Codebook::code`]).
    pub fn code(&self, weights: Tensor<B, 2>) -> Tensor<B, 2> {
        self.codebook.code(weights)
    }

    /// Codebook size K.
    pub fn codebook_size(&self) -> usize {
        self.codebook.size()
    }
}

/// Prior input `h_x` `[N, d]` of a pair batch from its hidden states `[2N, L, d]`: the state at
/// the separator of each chosen row. (The rejected row has the same prompt and, attention being
/// causal, the same state there.)
pub fn prior_features<B: Backend>(hidden: Tensor<B, 3>, batch: &PairBatch<B>) -> Tensor<B, 2> {
    hidden_at_separator(hidden, &batch.seqs).narrow(0, 0, batch.pairs)
}

/// Posterior input features `[N, 2d]` of a pair batch from its hidden states `[2N, L, d]`:
/// `[h(x, y_w) at its last token ; h(x, y_l) at its last token]`.
pub fn posterior_features<B: Backend>(hidden: Tensor<B, 3>, batch: &PairBatch<B>) -> Tensor<B, 2> {
    let last = hidden_at_last(hidden, &batch.seqs);
    let (chosen, rejected) = batch.split(last);
    Tensor::cat(vec![chosen, rejected], 1)
}

/// Posterior input features `[N, 2d]` from the response states averaged over response tokens:
///
/// ```text
/// m(x, y) = (1/|y|) sum_i h(x, y)_(P + i)          (the states that predict y_1 .. y_|y|)
/// features = [m(x, y_w) ; m(x, y_l)]
/// ```
///
/// The option `posterior_pool = "mean"`: unlike the last state, an average over the response
/// is linear in per-token evidence, so a reward that sums over tokens is readable from it.
pub fn posterior_features_mean<B: Backend>(
    hidden: Tensor<B, 3>,
    batch: &PairBatch<B>,
) -> Tensor<B, 2> {
    let seqs = &batch.seqs;
    let [_, _, d] = hidden.dims();
    let rows = gather_rows(hidden, seqs.response_rows.clone()).reshape([
        seqs.rows,
        seqs.response_slots,
        d,
    ]);
    let masked = rows * seqs.response_mask.clone().unsqueeze_dim::<3>(2);
    let mean = masked.sum_dim(1).reshape([seqs.rows, d])
        / seqs
            .response_lens
            .clone()
            .clamp_min(1.0)
            .unsqueeze_dim::<2>(1);
    let (chosen, rejected) = batch.split(mean);
    Tensor::cat(vec![chosen, rejected], 1)
}

/// Mean-pool a pair's features with its annotator context, `[N, F]`:
///
/// ```text
/// pooled_j = (own_j + sum_{c < C} context_{j*C + c}) / (C + 1)
/// ```
///
/// `own` is `[N, F]`, `context` is `[N*C, F]` with pair j's C context rows consecutive
/// (build the context [`PairBatch`] in that order and take its [`posterior_features`]). With
/// `c = 0`, `context` is ignored and `own` is returned. Gradients flow into the context
/// features too; `detach()` them to train the posterior on the pair's own features only.
pub fn pool_context<B: Backend>(
    own: Tensor<B, 2>,
    context: Tensor<B, 2>,
    c: usize,
) -> Tensor<B, 2> {
    if c == 0 {
        return own;
    }
    let [n, f] = own.dims();
    let context_sum = context.reshape([n, c, f]).sum_dim(1).reshape([n, f]);
    (own + context_sum).div_scalar((c + 1) as f64)
}

/// Mean over consecutive groups of `group` rows: `[N*group, F] -> [N, F]`.
pub fn mean_pool_groups<B: Backend>(features: Tensor<B, 2>, group: usize) -> Tensor<B, 2> {
    let [rows, f] = features.dims();
    assert!(
        group >= 1 && rows % group == 0,
        "{rows} feature rows do not split into groups of {group}"
    );
    features
        .reshape([rows / group, group, f])
        .mean_dim(1)
        .reshape([rows / group, f])
}

/// Code weights `[N, K]` at inference, from prior logits `[N, K]` (METHOD.md §1):
///
/// ```text
/// Expectation: w = softmax(logits)                      (default; z = p(.|x)^T E)
/// Argmax:      w = one_hot(argmax_k logits)
/// Sample:      w = one_hot(argmax_k (logits + g)),  g ~ Gumbel(0, 1) from rng
/// ```
///
/// `rng` is drawn from only in `Sample` mode.
pub fn prior_code_weights<B: Backend>(
    prior_logits: Tensor<B, 2>,
    mode: InferenceMode,
    rng: &mut impl Rng,
) -> Tensor<B, 2> {
    match mode {
        InferenceMode::Expectation => softmax(prior_logits, 1),
        InferenceMode::Argmax => one_hot_argmax(prior_logits),
        InferenceMode::Sample => {
            let [n, k] = prior_logits.dims();
            let noise = gumbel_noise::<B>(rng, n, k, &prior_logits.device());
            one_hot_argmax(prior_logits + noise)
        }
    }
}

/// The posterior→prior schedule's code: `z = (1 - g) z_q + g z_p`, `g` in `[0, 1]`
/// (0 = posterior only, 1 = prior only).
pub fn mix_codes<B: Backend>(
    z_posterior: Tensor<B, 2>,
    z_prior: Tensor<B, 2>,
    g: f64,
) -> Tensor<B, 2> {
    z_posterior.mul_scalar(1.0 - g) + z_prior.mul_scalar(g)
}

/// One-hot weights `[N, K]`: row n is `e_{indices[n]}`. The oracle's weights are
/// `one_hot_weights(true types, T)` into a K = T [`Codebook`]; steering with code k is
/// `one_hot_weights(&[k; N], K)`.
///
/// # Panics
/// If an index is `>= k`.
pub fn one_hot_weights<B: Backend>(
    indices: &[usize],
    k: usize,
    device: &B::Device,
) -> Tensor<B, 2> {
    let mut values = vec![0.0f32; indices.len() * k];
    for (n, &i) in indices.iter().enumerate() {
        assert!(i < k, "one-hot index {i} out of range for {k} codes");
        values[n * k + i] = 1.0;
    }
    Tensor::from_data(TensorData::new(values, [indices.len(), k]), device)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::gumbel::{Relaxation, gumbel_softmax};
    use crate::model::{CpuAutodiff, CpuBackend};
    use crate::rng::stream;
    use burn::tensor::Tolerance;

    type B = CpuBackend;
    type A = CpuAutodiff;

    fn floats<const D: usize, BB: Backend>(t: Tensor<BB, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
    }

    #[test]
    fn soft_gumbel_sends_gradient_to_every_code() {
        let _rng = crate::rng::backend_rng_lock();
        // dL/de_k = sum_n w_{n,k} dL/dz_n with w_{n,k} > 0 for soft weights, so every row of
        // E gets a non-zero gradient.
        let device = Default::default();
        A::seed(&device, 11);
        let heads = LatentConfig::new(8, 5).init::<A>(&device);
        let features = Tensor::<A, 2>::random(
            [6, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let mut rng = stream(1, "codes");
        for relax in [Relaxation::Soft, Relaxation::StraightThrough] {
            let noise = gumbel_noise::<A>(&mut rng, 6, 5, &device);
            let w = gumbel_softmax(heads.posterior_logits(features.clone()), 1.0, relax, noise);
            let picked: Vec<i64> = w
                .clone()
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .to_vec()
                .unwrap();
            let z = heads.code(w);
            let target = Tensor::<A, 2>::ones([6, 8], &device);
            let grads = (z - target).powi_scalar(2).sum().backward();
            let g = heads
                .codebook
                .codes
                .val()
                .grad(&grads)
                .expect("codebook grad");
            let row_norms = floats(g.powi_scalar(2).sum_dim(1));
            for (k, &r) in row_norms.iter().enumerate() {
                // Soft: w_{n,k} > 0 everywhere, so every row moves. Straight-through: the
                // forward weights are one-hot, so dL/de_k = sum_{n: code(n) = k} dL/dz_n and
                // exactly the picked codes move.
                let expect = relax == Relaxation::Soft || picked.contains(&(k as i64));
                assert_eq!(r > 1e-12, expect, "{relax:?} row {k}: {row_norms:?}");
            }
        }
    }

    #[test]
    fn pair_features_read_the_documented_states() {
        let _rng = crate::rng::backend_rng_lock();
        use crate::data::PreferencePair;
        use crate::data::batch::PairBatch;
        use crate::model::PolicyConfig;
        let device = Default::default();
        B::seed(&device, 6);
        let policy = PolicyConfig::new(6, 10, 8, 1, 2, 16).init::<B>(&device);
        let pair = |prompt: Vec<u32>, chosen: Vec<u32>, rejected: Vec<u32>| PreferencePair {
            prompt,
            chosen,
            rejected,
            group: 0,
            source: 0,
            annotator: 0,
            truth: None,
        };
        let pairs = [
            pair(vec![1, 2], vec![3, 4], vec![0]),
            pair(vec![4], vec![1], vec![2, 3, 1]),
        ];
        let batch = PairBatch::<B>::new(&[&pairs[0], &pairs[1]], 5, &device);
        let h = policy.hidden(batch.seqs.ids.clone());
        // h_x of each pair equals the separator state of both its rows.
        let sep = hidden_at_separator(h.clone(), &batch.seqs);
        let (c, r) = batch.split(sep);
        let hx = prior_features(h.clone(), &batch);
        hx.clone()
            .into_data()
            .assert_approx_eq::<f32>(&c.into_data(), Tolerance::absolute(0.0));
        hx.into_data()
            .assert_approx_eq::<f32>(&r.into_data(), Tolerance::absolute(1e-5));
        // Posterior features: [chosen last ; rejected last], and the chosen last state of pair 0
        // is the state at position 4 of sequence [1, 2, SEP, 3, 4].
        let f = posterior_features(h.clone(), &batch);
        assert_eq!(f.dims(), [2, 16]);
        let alone = policy.hidden(Tensor::from_ints([[1, 2, 5, 3, 4]], &device));
        let want = alone.narrow(1, 4, 1).reshape([1, 8]);
        f.narrow(0, 0, 1)
            .narrow(1, 0, 8)
            .into_data()
            .assert_approx_eq::<f32>(&want.into_data(), Tolerance::absolute(1e-5));
    }

    #[test]
    fn code_is_the_weighted_sum_of_centred_codes() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        B::seed(&device, 3);
        let book = Codebook::<B>::new(3, 4, 1.0, &device);
        let e = floats(book.codes.val());
        // Centred rows c_k = e_k - (e_0 + e_1 + e_2)/3 (the formula in Codebook::code).
        let c = |k: usize, j: usize| e[4 * k + j] - (e[j] + e[4 + j] + e[8 + j]) / 3.0;
        let w = Tensor::<B, 2>::from_floats([[0.2, 0.3, 0.5]], &device);
        let z = floats(book.code(w));
        for (j, zj) in z.iter().enumerate() {
            let want = 0.2 * c(0, j) + 0.3 * c(1, j) + 0.5 * c(2, j);
            assert!((zj - want).abs() < 1e-6);
        }
        // One-hot weights pick a centred row (oracle / steering).
        let z1 = floats(book.code(one_hot_weights(&[2], 3, &device)));
        for (j, zj) in z1.iter().enumerate() {
            assert!((zj - c(2, j)).abs() < 1e-6);
        }
        // One code: the code is exactly zero, whatever E is.
        let single = Codebook::<B>::new(1, 4, 1.0, &device);
        let z0 = floats(single.code(one_hot_weights(&[0], 1, &device)));
        assert_eq!(z0, vec![0.0; 4]);
    }

    #[test]
    fn pooling_matches_its_formula_and_c0_is_identity() {
        let _rng = crate::rng::backend_rng_lock();
        let device = Default::default();
        let own = Tensor::<B, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &device);
        let ctx = Tensor::<B, 2>::from_floats(
            [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0], [11.0, 12.0]],
            &device,
        );
        // pair 0: (1+5+7)/3 = 13/3, (2+6+8)/3 = 16/3; pair 1: (3+9+11)/3, (4+10+12)/3.
        let pooled = floats(pool_context(own.clone(), ctx, 2));
        let want = [13.0 / 3.0, 16.0 / 3.0, 23.0 / 3.0, 26.0 / 3.0];
        for (a, b) in pooled.iter().zip(want) {
            assert!((a - b).abs() < 1e-5);
        }
        assert_eq!(
            floats(pool_context(own.clone(), own.clone(), 0)),
            floats(own.clone())
        );
        // Grouped layout: rows [own_0, ctx_0, ctx_1, own_1, ctx_2, ctx_3] give the same means.
        let grouped = Tensor::<B, 2>::from_floats(
            [
                [1.0, 2.0],
                [5.0, 6.0],
                [7.0, 8.0],
                [3.0, 4.0],
                [9.0, 10.0],
                [11.0, 12.0],
            ],
            &device,
        );
        let g = floats(mean_pool_groups(grouped, 3));
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-5);
        }
        B::seed(&device, 5);
        let heads = LatentConfig::new(1, 3).init::<B>(&device);
        heads
            .posterior_logits_pooled(own.clone(), 1)
            .into_data()
            .assert_approx_eq::<f32>(
                &heads.posterior_logits(own).into_data(),
                Tolerance::absolute(1e-6),
            );
    }

    #[test]
    fn inference_weights_follow_their_mode() {
        let device = Default::default();
        let logits = Tensor::<B, 2>::from_floats([[0.0, 2.0, 1.0], [3.0, 0.0, 0.0]], &device);
        let mut rng = stream(7, "prior");
        let e = floats(prior_code_weights(
            logits.clone(),
            InferenceMode::Expectation,
            &mut rng,
        ));
        // softmax([0,2,1]) = exp(v) / (1 + e^2 + e).
        let z = 1.0 + 2f32.exp() + 1f32.exp();
        assert!((e[1] - 2f32.exp() / z).abs() < 1e-6);
        let a = floats(prior_code_weights(
            logits.clone(),
            InferenceMode::Argmax,
            &mut rng,
        ));
        assert_eq!(a, vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let s = floats(prior_code_weights(logits, InferenceMode::Sample, &mut rng));
        for row in s.chunks(3) {
            assert_eq!(row.iter().sum::<f32>(), 1.0);
            assert!(row.iter().all(|&v| v == 0.0 || v == 1.0));
        }
    }

    #[test]
    fn mixing_interpolates() {
        let device = Default::default();
        let q = Tensor::<B, 2>::from_floats([[1.0, 0.0]], &device);
        let p = Tensor::<B, 2>::from_floats([[0.0, 2.0]], &device);
        assert_eq!(floats(mix_codes(q.clone(), p.clone(), 0.0)), vec![1.0, 0.0]);
        assert_eq!(floats(mix_codes(q.clone(), p.clone(), 1.0)), vec![0.0, 2.0]);
        assert_eq!(floats(mix_codes(q, p, 0.25)), vec![0.75, 0.5]);
    }
}
