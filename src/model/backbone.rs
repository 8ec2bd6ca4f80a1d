//! The policy backbone: a small causal transformer language model, and its log-probabilities.
//!
//! This module owns [`Policy`] (token and learned positional embeddings, pre-LN transformer
//! [`Block`]s with a causal mask, a final LayerNorm and the LM head), its config [`PolicyConfig`],
//! and the read-outs a training step needs from ONE backbone pass: response log-probs under an
//! optional code z ([`Policy::log_probs`]), and the hidden states at the separator and at the
//! last token ([`hidden_at_separator`], [`hidden_at_last`]) that feed the prior and posterior.
//! It does not own codes, heads or losses.
//!
//! The code z enters as in LPC (METHOD.md §1): it is added to the final hidden state of every
//! position just before the LM head, so the backbone itself never sees z:
//!
//! ```text
//! h      = Backbone([x, SEP, y])                     [N, L, d]   (no z)
//! log pi(y_i | x, y_<i, z) = log_softmax(W (h_{P+i} + z) + b)[y_i]
//! log pi(y | x, z)         = sum_{i < |y|} log pi(y_i | x, y_<i, z)
//! ```
//!
//! Right padding is safe because attention is causal: position t attends only to positions
//! `<= t` (the others get a score of -1e9, whose softmax weight underflows to exactly 0 in f32),
//! and every other layer acts per position, so tokens after t never change h_t.

use crate::data::batch::SeqBatch;
use crate::model::pretrained::PretrainedPolicy;
use crate::scenario::{ModelSpec, Precision};
use burn::config::Config;
use burn::module::Module;
use burn::nn::activation::{Activation, ActivationConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear,
    LinearConfig,
};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor};

/// Score given to attention from a position to a later one. Its softmax weight is exactly 0 in
/// f32 (exp(-1e9) underflows), and unlike -inf it cannot produce `inf - inf = NaN`.
const MASKED_SCORE: f64 = -1.0e9;

/// Shape of the policy backbone.
#[derive(Config, Debug)]
pub struct PolicyConfig {
    /// Model vocabulary: content tokens plus the separator (`PreferenceData::model_vocab()`).
    pub vocab: usize,
    /// Longest `[prompt, separator, response]` sequence the positional table covers.
    pub max_seq_len: usize,
    /// Hidden size d (also the code dimension).
    pub d_model: usize,
    /// Number of transformer blocks.
    pub n_layers: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Dropout probability on the residual branches (burn's dropout draws from the backend
    /// RNG, so keep it 0 where runs must be reproducible).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Feed-forward activation. ReLU by default: on the Flex CPU backend GELU evaluates `erf`
    /// element by element and made a d_model-64 training step about 25% slower.
    #[config(default = "ActivationConfig::Relu")]
    pub activation: ActivationConfig,
}

impl PolicyConfig {
    /// The config a scenario's `[model]` section describes, for a data set's vocabulary and
    /// longest sequence (`PreferenceData::model_vocab()`, `PreferenceData::max_seq_len()`).
    pub fn from_spec(spec: &ModelSpec, vocab: usize, max_seq_len: usize) -> Self {
        PolicyConfig::new(
            vocab,
            max_seq_len,
            spec.d_model,
            spec.layers,
            spec.heads,
            spec.d_ff(),
        )
        .with_dropout(spec.dropout)
    }

    /// Build the policy on `device`. Parameters are drawn from the backend RNG (seed it with
    /// `B::seed` for reproducible initialisation) and materialised at once, so a clone of the
    /// returned policy is an identical copy.
    ///
    /// # Panics
    /// If `n_heads` does not divide `d_model` (the scenario's validation rejects that).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Policy<B> {
        assert!(
            self.n_heads > 0 && self.d_model.is_multiple_of(self.n_heads),
            "n_heads {} must divide d_model {}",
            self.n_heads,
            self.d_model
        );
        let blocks = (0..self.n_layers).map(|_| self.block(device)).collect();
        let policy = ScratchPolicy {
            token_embedding: EmbeddingConfig::new(self.vocab, self.d_model).init(device),
            position_embedding: EmbeddingConfig::new(self.max_seq_len, self.d_model).init(device),
            blocks,
            final_norm: LayerNormConfig::new(self.d_model).init(device),
            lm_head: LinearConfig::new(self.d_model, self.vocab).init(device),
            vocab: self.vocab,
            max_seq_len: self.max_seq_len,
            compute: None,
        };
        Policy::Scratch(materialise(policy))
    }

    fn block<B: Backend>(&self, device: &B::Device) -> Block<B> {
        let d = self.d_model;
        Block {
            attn_norm: LayerNormConfig::new(d).init(device),
            query: LinearConfig::new(d, d).init(device),
            key: LinearConfig::new(d, d).init(device),
            value: LinearConfig::new(d, d).init(device),
            attn_out: LinearConfig::new(d, d).init(device),
            ff_norm: LayerNormConfig::new(d).init(device),
            ff_in: LinearConfig::new(d, self.d_ff).init(device),
            ff_out: LinearConfig::new(self.d_ff, d).init(device),
            activation: self.activation.init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            n_heads: self.n_heads,
        }
    }
}

/// Force burn's lazily initialised parameters to be drawn now, in field order. Without this a
/// clone made before the first forward pass would draw its own, different, weights.
pub(crate) fn materialise<B: Backend, M: Module<B>>(module: M) -> M {
    let _ = module.num_params();
    module
}

/// One pre-LN transformer block with causal self-attention (Vaswani et al. 2017; the pre-LN
/// placement of GPT-2):
///
/// ```text
/// x = x + Dropout(W_o Attn(LN_1(x)))        Attn: softmax(q k^T / sqrt(d_k) + causal) v, per head
/// x = x + Dropout(W_2 act(W_1 LN_2(x)))
/// ```
///
/// Activations stay flattened to `[N*L, d]` so every linear layer is one 2-D matmul (burn's
/// generic 3-D linear backward materialises a `[N, d_in, d_out]` tensor per layer).
#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    attn_norm: LayerNorm<B>,
    query: Linear<B>,
    key: Linear<B>,
    value: Linear<B>,
    attn_out: Linear<B>,
    ff_norm: LayerNorm<B>,
    ff_in: Linear<B>,
    ff_out: Linear<B>,
    activation: Activation<B>,
    dropout: Dropout,
    n_heads: usize,
}

impl<B: Backend> Block<B> {
    /// `x` is `[N*L, d]` (sequence-major); `layout` carries the batch shape, the causal mask
    /// and the head permutations of the pass. `compute`: the precision of the matmuls
    /// ([`Policy::with_precision`]); everything else stays in f32.
    fn forward(
        &self,
        x: Tensor<B, 2>,
        layout: &AttentionLayout<B>,
        compute: Option<FloatDType>,
    ) -> Tensor<B, 2> {
        let [rows, d] = x.dims();
        let (n, l) = (layout.n, layout.l);
        let (h, dk) = (self.n_heads, d / self.n_heads);
        let split_heads = |t: Tensor<B, 2>| {
            t.reshape([rows * h, dk])
                .select(0, layout.to_heads.clone())
                .reshape([n, h, l, dk])
        };
        let linear = |layer: &Linear<B>, t: Tensor<B, 2>| linear_in(layer, t, compute);
        let a = self.attn_norm.forward(x.clone());
        let q = split_heads(linear(&self.query, a.clone()));
        let k = split_heads(linear(&self.key, a.clone()));
        let v = split_heads(linear(&self.value, a));
        // `[N*h, L*L] + [1, L*L]`: a shared-row broadcast, which the CPU backend adds with SIMD
        // in place (a `[1, 1, L, L]` mask against `[N, h, L, L]` takes its scalar strided path).
        let scores = matmul_in(q, k.swap_dims(2, 3), compute)
            .div_scalar((dk as f64).sqrt())
            .reshape([n * h, l * l])
            + layout.causal.clone();
        let scores = scores.reshape([n, h, l, l]);
        let context = matmul_in(softmax(scores, 3), v, compute)
            .reshape([rows * h, dk])
            .select(0, layout.from_heads.clone())
            .reshape([rows, d]);
        let x = x + self.dropout.forward(linear(&self.attn_out, context));
        let f = self.ff_norm.forward(x.clone());
        let f = linear(
            &self.ff_out,
            self.activation.forward(linear(&self.ff_in, f)),
        );
        x + self.dropout.forward(f)
    }
}

/// What every block of one forward pass shares: the batch shape, the causal mask and the head
/// permutations ([`head_order`]), built once per pass.
pub struct AttentionLayout<B: Backend> {
    /// Sequences `N`.
    n: usize,
    /// Sequence length `L`.
    l: usize,
    /// The `[L, L]` causal mask flattened to `[1, L*L]`: 0 on and below the diagonal,
    /// [`MASKED_SCORE`] above it.
    causal: Tensor<B, 2>,
    /// Sequence-major rows to head-major rows.
    to_heads: Tensor<B, 1, Int>,
    /// Head-major rows back to sequence-major rows.
    from_heads: Tensor<B, 1, Int>,
}

impl<B: Backend> AttentionLayout<B> {
    /// The layout of `n` sequences of `l` tokens split into `heads` heads.
    pub fn new(n: usize, l: usize, heads: usize, device: &B::Device) -> Self {
        // tril_mask marks the entries strictly above the diagonal (key after query).
        let future = Tensor::<B, 2, Bool>::tril_mask([l, l], 0, device);
        let causal = Tensor::<B, 2>::zeros([l, l], device)
            .mask_fill(future, MASKED_SCORE)
            .reshape([1, l * l]);
        AttentionLayout {
            n,
            l,
            causal,
            to_heads: head_order(n, l, heads, false, device),
            from_heads: head_order(n, l, heads, true, device),
        }
    }
}

/// The row permutation between the sequence-major layout `[N, L, h, dk]` of a projection's
/// output and the head-major layout `[N, h, L, dk]` attention reads, both seen as `[N*L*h, dk]`
/// rows: row `(b*h + j)*L + i` of the head-major layout is row `(b*L + i)*h + j` of the
/// sequence-major one (`inverse = false`), and the inverse map for `inverse = true`.
///
/// A row select copies whole `dk`-wide rows (forward) and scatters them back (backward), where a
/// `swap_dims(1, 2)` view costs a four-dimensional strided copy that the CPU backend walks one
/// element at a time (its backward reshape): the same result, measured faster in
/// docs/PERFORMANCE.md.
pub fn head_order<B: Backend>(
    n: usize,
    l: usize,
    h: usize,
    inverse: bool,
    device: &B::Device,
) -> Tensor<B, 1, Int> {
    let mut order = vec![0i64; n * l * h];
    for b in 0..n {
        for j in 0..h {
            for i in 0..l {
                let (head_major, seq_major) = ((b * h + j) * l + i, (b * l + i) * h + j);
                if inverse {
                    order[seq_major] = head_major as i64;
                } else {
                    order[head_major] = seq_major as i64;
                }
            }
        }
    }
    Tensor::from_data(burn::tensor::TensorData::new(order, [n * l * h]), device)
}

/// `layer(x)` with its matmul in precision `compute`: input, weight and bias cast down, the
/// result cast back to the input's precision (f32), so gradients reach the f32 parameters
/// through the casts. `None` is `layer.forward(x)` exactly.
///
/// ```text
/// y = cast_f32( cast_c(x) cast_c(W) + cast_c(b) )
/// ```
pub fn linear_in<B: Backend>(
    layer: &Linear<B>,
    x: Tensor<B, 2>,
    compute: Option<FloatDType>,
) -> Tensor<B, 2> {
    let Some(c) = compute else {
        return layer.forward(x);
    };
    let out = FloatDType::from(x.dtype());
    let weight = layer.weight.val().cast(c);
    let bias = layer.bias.as_ref().map(|b| b.val().cast(c));
    burn::tensor::module::linear(x.cast(c), weight, bias).cast(out)
}

/// `a.matmul(b)` in precision `compute` (operands cast down, the product cast back to `a`'s
/// precision); `None` is the plain matmul.
pub fn matmul_in<B: Backend, const D: usize>(
    a: Tensor<B, D>,
    b: Tensor<B, D>,
    compute: Option<FloatDType>,
) -> Tensor<B, D> {
    match compute {
        None => a.matmul(b),
        Some(c) => {
            let out = FloatDType::from(a.dtype());
            a.cast(c).matmul(b.cast(c)).cast(out)
        }
    }
}

/// A causal transformer LM over `[prompt, separator, response]` token ids, trained from scratch.
#[derive(Module, Debug)]
pub struct ScratchPolicy<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: Embedding<B>,
    blocks: Vec<Block<B>>,
    final_norm: LayerNorm<B>,
    lm_head: Linear<B>,
    vocab: usize,
    max_seq_len: usize,
    /// Precision of the matmuls (`None` = f32, the default; see [`Policy::with_precision`]).
    /// Not a parameter and not saved in checkpoints.
    #[module(skip)]
    compute: Option<FloatDType>,
}

/// Response log-probabilities of a [`SeqBatch`], all from one hidden pass.
#[derive(Debug, Clone)]
pub struct SeqLogProbs<B: Backend> {
    /// `[N, R]`: `log pi(y_i | x, y_<i, z)` for response token i, 0 in padding slots.
    pub per_token: Tensor<B, 2>,
    /// `[N]`: `log pi(y | x, z) = sum_i per_token[., i]` (DPO, IPO, cDPO, rDPO). Range (-inf, 0].
    pub sum: Tensor<B, 1>,
    /// `[N]`: `sum / max(|y|, 1)`, the length-normalised form SimPO uses. Range (-inf, 0].
    pub mean: Tensor<B, 1>,
}

impl<B: Backend> ScratchPolicy<B> {
    /// Final hidden states `[N, L, d]` of the backbone (after the final LayerNorm, without z);
    /// `L` at most `max_seq_len` ([`Policy::hidden`] checks it).
    pub fn hidden(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [n, l] = ids.dims();
        let device = ids.device();
        let d = self.d_model();
        // Broadcasts are written as `[rows, F] + [1, F]` (shared-row) adds, the pattern the CPU
        // backend runs with SIMD; other broadcast shapes take its scalar strided path.
        let positions = self
            .position_embedding
            .weight
            .val()
            .narrow(0, 0, l)
            .reshape([1, l * d]);
        let tokens = self.token_embedding.forward(ids).reshape([n, l * d]);
        let x = (tokens + positions).reshape([n * l, d]);
        let heads = self.blocks.first().map_or(1, |b| b.n_heads);
        let layout = AttentionLayout::new(n, l, heads, &device);
        let x = self
            .blocks
            .iter()
            .fold(x, |x, block| block.forward(x, &layout, self.compute));
        self.final_norm.forward(x).reshape([n, l, d])
    }

    /// Next-token logits `[rows, V]` of final hidden states `[rows, d]` (the LM head, in the
    /// matmul precision).
    pub fn head_logits(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        linear_in(&self.lm_head, h, self.compute)
    }

    /// Mixed precision: run every matmul of the backbone and the LM head in `precision`
    /// (autocast: operands cast down, products cast back), keeping the parameters, the
    /// optimiser state, LayerNorm, softmax, the residual stream, the log-probabilities and so
    /// every loss and KL in f32. `F32` (the default) leaves the policy exactly as built.
    ///
    /// Half precision is meant for GPUs (tensor cores); scenario validation rejects it on the
    /// CPU, where burn Flex has no fast half-precision matmul.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.compute = match precision {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        };
        self
    }

    /// The matmul precision ([`Policy::with_precision`]).
    pub fn precision(&self) -> Precision {
        match self.compute {
            Some(FloatDType::BF16) => Precision::Bf16,
            Some(FloatDType::F16) => Precision::F16,
            _ => Precision::F32,
        }
    }

    /// Hidden size d.
    pub fn d_model(&self) -> usize {
        self.final_norm.gamma.dims()[0]
    }

    /// The device the policy's parameters live on.
    pub fn device(&self) -> B::Device {
        self.lm_head.weight.device()
    }
}

/// The policy pi(y | x, z): a causal LM over `[prompt, separator, response]` token ids whose
/// final hidden state at each response position gets the code z added before the LM head.
///
/// Two families sit behind the one interface every method, objective and score uses:
/// [`ScratchPolicy`], the small transformer trained from scratch for synthetic worlds, and
/// [`PretrainedPolicy`], a pretrained Llama-family model read from a GGUF file (real data).
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Policy<B: Backend> {
    /// A transformer with learned positions, built by [`PolicyConfig::init`].
    Scratch(ScratchPolicy<B>),
    /// A pretrained Llama-family model ([`crate::model::pretrained`]).
    Pretrained(PretrainedPolicy<B>),
}

impl<B: Backend> Policy<B> {
    /// Final hidden states `[N, L, d]` of token ids `[N, L]` (after the final norm, without z).
    ///
    /// # Panics
    /// If `L` exceeds [`Policy::max_seq_len`] (a configuration bug: the run builds the policy
    /// for the data's `max_seq_len()`).
    pub fn hidden(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let l = ids.dims()[1];
        assert!(
            l <= self.max_seq_len(),
            "sequence length {l} exceeds the policy's max_seq_len {}",
            self.max_seq_len()
        );
        match self {
            Policy::Scratch(p) => p.hidden(ids),
            Policy::Pretrained(p) => p.hidden(ids),
        }
    }

    /// Next-token logits `[rows, V]` of final hidden states `[rows, d]` (plus code, if any).
    fn head_logits(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            Policy::Scratch(p) => p.head_logits(h),
            Policy::Pretrained(p) => p.head_logits(h),
        }
    }

    /// Next-token log-distributions at every response slot, `[N, R, V]`:
    ///
    /// ```text
    /// out[b, i, :] = log_softmax(head(h[b, P_b + i] + z_b))
    /// ```
    ///
    /// `hidden` is [`Policy::hidden`] of `batch.ids`; `z` is `[N, d]` or `None`. Padding slots
    /// hold the distribution at the separator and must be ignored (`batch.response_mask`).
    pub fn response_distributions(
        &self,
        hidden: Tensor<B, 3>,
        batch: &SeqBatch<B>,
        z: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 3> {
        let (n, r) = (batch.rows, batch.response_slots);
        let flat = self.response_log_softmax(hidden, batch, z);
        flat.reshape([n, r, self.vocab()])
    }

    /// `[N*R, V]` form of [`Policy::response_distributions`] (rows ordered `(b, i)`).
    fn response_log_softmax(
        &self,
        hidden: Tensor<B, 3>,
        batch: &SeqBatch<B>,
        z: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        let (n, r) = (batch.rows, batch.response_slots);
        let h = gather_rows(hidden, batch.response_rows.clone());
        let h = match z {
            // Each row's code repeated over its R slots, then one contiguous add (a `[N, 1, d]`
            // broadcast against `[N, R, d]` takes the CPU backend's scalar strided path).
            Some(z) => {
                let [_, d] = h.dims();
                h + z.unsqueeze_dim::<3>(1).repeat_dim(1, r).reshape([n * r, d])
            }
            None => h,
        };
        log_softmax(self.head_logits(h), 1)
    }

    /// Response log-probabilities (per token, summed, length-normalised) under code `z`.
    ///
    /// ```text
    /// per_token[b, i] = log pi(y_{b,i} | x_b, y_{b,<i}, z_b) * mask[b, i]
    /// sum[b]          = sum_i per_token[b, i]
    /// mean[b]         = sum[b] / max(|y_b|, 1)
    /// ```
    ///
    /// `hidden` is [`Policy::hidden`] of `batch.ids`, so the backbone pass can be shared with
    /// the prior and posterior read-outs.
    pub fn log_probs(
        &self,
        hidden: Tensor<B, 3>,
        batch: &SeqBatch<B>,
        z: Option<Tensor<B, 2>>,
    ) -> SeqLogProbs<B> {
        let (n, r) = (batch.rows, batch.response_slots);
        let logp = self.response_log_softmax(hidden, batch, z);
        let targets = batch.response_targets.clone().reshape([n * r, 1]);
        let per_token = logp.gather(1, targets).reshape([n, r]) * batch.response_mask.clone();
        let sum = per_token.clone().sum_dim(1).reshape([n]);
        let mean = sum.clone() / batch.response_lens.clone().clamp_min(1.0);
        SeqLogProbs {
            per_token,
            sum,
            mean,
        }
    }

    /// Next-token log-distribution `[N, V]` read at given rows of the flattened hidden states
    /// (e.g. `batch.last_rows`, for sampling), with optional code `z` `[N, d]`.
    pub fn next_token_log_probs(
        &self,
        hidden: Tensor<B, 3>,
        rows: Tensor<B, 1, Int>,
        z: Option<Tensor<B, 2>>,
    ) -> Tensor<B, 2> {
        let h = gather_rows(hidden, rows);
        let h = match z {
            Some(z) => h + z,
            None => h,
        };
        log_softmax(self.head_logits(h), 1)
    }

    /// Mixed precision of the matmuls (see [`ScratchPolicy::with_precision`]); a pretrained
    /// policy runs in f32 and ignores it.
    pub fn with_precision(self, precision: Precision) -> Self {
        match self {
            Policy::Scratch(p) => Policy::Scratch(p.with_precision(precision)),
            other => other,
        }
    }

    /// The matmul precision.
    pub fn precision(&self) -> Precision {
        match self {
            Policy::Scratch(p) => p.precision(),
            Policy::Pretrained(_) => Precision::F32,
        }
    }

    /// Hidden size d (also the code dimension).
    pub fn d_model(&self) -> usize {
        match self {
            Policy::Scratch(p) => p.d_model(),
            Policy::Pretrained(p) => p.d_model(),
        }
    }

    /// Model vocabulary V (for a scratch policy: content tokens plus the separator).
    pub fn vocab(&self) -> usize {
        match self {
            Policy::Scratch(p) => p.vocab,
            Policy::Pretrained(p) => p.vocab(),
        }
    }

    /// The device the policy's parameters live on.
    pub fn device(&self) -> B::Device {
        match self {
            Policy::Scratch(p) => p.device(),
            Policy::Pretrained(p) => p.device(),
        }
    }

    /// Longest sequence the policy accepts.
    pub fn max_seq_len(&self) -> usize {
        match self {
            Policy::Scratch(p) => p.max_seq_len,
            Policy::Pretrained(p) => p.max_seq_len(),
        }
    }
}

/// Rows of the flattened hidden states: `hidden.reshape([N*L, d])[rows]`, `[len(rows), d]`.
pub fn gather_rows<B: Backend>(hidden: Tensor<B, 3>, rows: Tensor<B, 1, Int>) -> Tensor<B, 2> {
    let [n, l, d] = hidden.dims();
    hidden.reshape([n * l, d]).select(0, rows)
}

/// `h_x`: the hidden state at each separator, `[N, d]` — the state after the whole prompt,
/// which the prior reads (METHOD.md §1: "last prompt token"; here the separator closes the
/// prompt, so its state has seen every prompt token).
pub fn hidden_at_separator<B: Backend>(hidden: Tensor<B, 3>, batch: &SeqBatch<B>) -> Tensor<B, 2> {
    gather_rows(hidden, batch.separator_rows.clone())
}

/// The hidden state at each sequence's last real token, `[N, d]` — what the posterior reads.
pub fn hidden_at_last<B: Backend>(hidden: Tensor<B, 3>, batch: &SeqBatch<B>) -> Tensor<B, 2> {
    gather_rows(hidden, batch.last_rows.clone())
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::CpuBackend;
    use burn::tensor::Tolerance;

    type B = CpuBackend;

    fn tiny(vocab: usize, max_seq_len: usize) -> Policy<B> {
        B::seed(&Default::default(), 7);
        PolicyConfig::new(vocab, max_seq_len, 16, 2, 4, 32).init(&Default::default())
    }

    /// Oracle: `swap_dims(1, 2)` of the `[N, L, h, dk]` view, made contiguous: the head split
    /// the row select replaces. The inverse select brings the rows back (a round trip).
    #[test]
    fn head_order_is_the_head_swap_and_its_inverse() {
        let (n, l, h, dk) = (3, 5, 4, 2);
        let device = Default::default();
        let t = Tensor::<B, 1>::from_data(
            burn::tensor::TensorData::new(
                (0..n * l * h * dk).map(|i| i as f32).collect::<Vec<_>>(),
                [n * l * h * dk],
            ),
            &device,
        )
        .reshape([n * l * h, dk]);
        let split = t
            .clone()
            .select(0, head_order::<B>(n, l, h, false, &device))
            .reshape([n, h, l, dk]);
        let swapped = t.clone().reshape([n, l, h, dk]).swap_dims(1, 2);
        assert_eq!(floats(split.clone()), floats(swapped));
        let back = split
            .reshape([n * h * l, dk])
            .select(0, head_order::<B>(n, l, h, true, &device));
        assert_eq!(floats(back), floats(t));
    }

    fn floats<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn log_probs_are_normalised_at_every_position() {
        let _rng = crate::rng::backend_rng_lock();
        // sum_v exp(log pi(v | prefix, z)) = 1 by definition of log_softmax; checked at every
        // response slot of a ragged batch, with and without a code z.
        let device = Default::default();
        let policy = tiny(7, 12);
        let a: (&[u32], &[u32]) = (&[1, 2, 3], &[4, 5]);
        let b: (&[u32], &[u32]) = (&[0], &[1, 2, 3, 4]);
        let batch = SeqBatch::<B>::new(&[a, b], 6, &device);
        let h = policy.hidden(batch.ids.clone());
        let z = Tensor::<B, 2>::random(
            [2, 16],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        for code in [None, Some(z)] {
            let dist = policy.response_distributions(h.clone(), &batch, code.clone());
            let sums = floats(dist.clone().exp().sum_dim(2));
            for s in sums {
                assert!((s - 1.0).abs() < 1e-5, "exp-sum {s}");
            }
            // The per-token log-probs are the target entries of those distributions.
            let lp = policy.log_probs(h.clone(), &batch, code);
            let picked = dist
                .gather(2, batch.response_targets.clone().unsqueeze_dim::<3>(2))
                .squeeze_dim::<2>(2)
                * batch.response_mask.clone();
            lp.per_token
                .clone()
                .into_data()
                .assert_approx_eq::<f32>(&picked.into_data(), Tolerance::absolute(1e-6));
            // sum and mean follow from per_token (lengths 2 and 4).
            let per = floats(lp.per_token);
            let sum = floats(lp.sum);
            let mean = floats(lp.mean);
            assert!((sum[0] - (per[0] + per[1])).abs() < 1e-5);
            assert!((sum[1] - per[4..8].iter().sum::<f32>()).abs() < 1e-5);
            assert!((mean[0] - sum[0] / 2.0).abs() < 1e-6);
            assert!((mean[1] - sum[1] / 4.0).abs() < 1e-6);
        }
    }

    #[test]
    fn padding_never_changes_earlier_positions() {
        let _rng = crate::rng::backend_rng_lock();
        // Causality: the hidden states of a sequence are identical whether it stands alone or
        // is right-padded (with any token) in a batch beside a longer sequence.
        let device = Default::default();
        let policy = tiny(9, 16);
        let short: (&[u32], &[u32]) = (&[1, 2], &[3, 4]);
        let long: (&[u32], &[u32]) = (&[5, 6, 7, 8], &[0, 1, 2, 3, 4]);
        let alone = SeqBatch::<B>::new(&[short], 8, &device);
        let padded = SeqBatch::<B>::new(&[short, long], 8, &device);
        let h_alone = policy.hidden(alone.ids.clone());
        let h_padded = policy
            .hidden(padded.ids.clone())
            .narrow(0, 0, 1)
            .narrow(1, 0, 5);
        h_alone
            .clone()
            .into_data()
            .assert_approx_eq::<f32>(&h_padded.into_data(), Tolerance::absolute(1e-5));
        // Changing the padding token itself (ids after position 4 of row 0) changes nothing.
        let mut ids = padded
            .ids
            .clone()
            .into_data()
            .convert::<i64>()
            .to_vec::<i64>()
            .unwrap();
        for t in &mut ids[5..padded.seq_len] {
            *t = 3;
        }
        let ids = Tensor::<B, 2, Int>::from_data(
            burn::tensor::TensorData::new(ids, [2, padded.seq_len]),
            &device,
        );
        let h_other = policy.hidden(ids).narrow(0, 0, 1).narrow(1, 0, 5);
        h_alone
            .into_data()
            .assert_approx_eq::<f32>(&h_other.into_data(), Tolerance::absolute(1e-5));
        // And the log-probs of the short sequence agree too.
        let lp_alone = floats(
            policy
                .log_probs(policy.hidden(alone.ids.clone()), &alone, None)
                .sum,
        );
        let lp_padded = floats(
            policy
                .log_probs(policy.hidden(padded.ids.clone()), &padded, None)
                .sum,
        );
        assert!((lp_alone[0] - lp_padded[0]).abs() < 1e-5);
    }

    #[test]
    fn future_tokens_do_not_leak_into_earlier_states() {
        let _rng = crate::rng::backend_rng_lock();
        // Changing token t changes h at positions >= t only.
        let device = Default::default();
        let policy = tiny(9, 8);
        let ids_a = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 4, 5, 6]], &device);
        let ids_b = Tensor::<B, 2, Int>::from_ints([[1, 2, 3, 7, 5, 6]], &device);
        let (ha, hb) = (policy.hidden(ids_a), policy.hidden(ids_b));
        let diff = floats((ha - hb).abs().sum_dim(2).squeeze_dim::<2>(2));
        assert!(diff[..3].iter().all(|&x| x < 1e-6), "{diff:?}");
        assert!(diff[3..].iter().all(|&x| x > 1e-4), "{diff:?}");
    }

    #[test]
    fn clones_of_a_fresh_policy_are_identical() {
        let _rng = crate::rng::backend_rng_lock();
        // Pins the lazy-initialisation pitfall `materialise` exists for.
        let device = Default::default();
        let policy = tiny(5, 6);
        let copy = policy.clone();
        let ids = Tensor::<B, 2, Int>::from_ints([[1, 2, 3]], &device);
        policy
            .hidden(ids.clone())
            .into_data()
            .assert_eq(&copy.hidden(ids).into_data(), true);
    }

    #[test]
    fn half_precision_matmuls_track_f32_and_train_f32_parameters() {
        let _rng = crate::rng::backend_rng_lock();
        // Autocast rounds every matmul operand to the half format (relative rounding error
        // u = 2^-9 for bf16, 2^-11 for f16) and accumulates in f32, so log-probs move by a
        // small multiple of u times their size; the parameters, their gradients and the
        // log-probs themselves stay f32. Flex runs both half matmuls (slowly), so the cast path
        // is checked here even though scenarios allow half precision on GPUs only.
        use crate::model::CpuAutodiff;
        use burn::module::AutodiffModule;
        type A = CpuAutodiff;
        let device = Default::default();
        A::seed(&device, 7);
        let policy = PolicyConfig::new(9, 12, 32, 2, 4, 64).init::<A>(&device);
        let a: (&[u32], &[u32]) = (&[1, 2, 3], &[4, 5, 6, 7]);
        let b: (&[u32], &[u32]) = (&[0, 8], &[1, 2]);
        let batch = SeqBatch::<A>::new(&[a, b], 8, &device);
        let grads_of = |policy: &Policy<A>| {
            let lp = policy.log_probs(policy.hidden(batch.ids.clone()), &batch, None);
            let sum = lp.sum.clone();
            let grads = lp.sum.sum().backward();
            let Policy::Scratch(p) = policy else {
                unreachable!("PolicyConfig::init builds a scratch policy")
            };
            let g = p
                .lm_head
                .weight
                .val()
                .grad(&grads)
                .expect("lm head gradient");
            let g0 = p.blocks[0]
                .query
                .weight
                .val()
                .grad(&grads)
                .expect("query gradient");
            (
                floats(sum.inner()),
                floats(g),
                floats(g0),
                g0_dtype(&p.blocks[0]),
            )
        };
        fn g0_dtype<B: Backend>(block: &Block<B>) -> burn::tensor::DType {
            block.query.weight.val().dtype()
        }
        let (lp32, g32, q32, _) = grads_of(&policy);
        for (precision, u) in [
            (Precision::Bf16, 2f32.powi(-9)),
            (Precision::F16, 2f32.powi(-11)),
        ] {
            let half = policy.clone().with_precision(precision);
            assert_eq!(half.precision(), precision);
            assert_eq!(
                half.valid().precision(),
                precision,
                "valid() keeps the precision"
            );
            let (lp, g, q, dtype) = grads_of(&half);
            assert_eq!(dtype, burn::tensor::DType::F32, "parameters stay f32");
            // The products really were rounded (were the casts no-ops, these would be equal).
            assert_ne!(lp, lp32, "{precision:?} changed nothing");
            println!("{precision:?}: {lp:?} vs f32 {lp32:?}");
            for (x, y) in lp.iter().zip(&lp32) {
                // 8 u relative: a few roundings of each operand's size (seen: ~u |y| to 2u |y|).
                assert!(
                    (x - y).abs() <= 8.0 * u * y.abs().max(1.0),
                    "{precision:?} {x} vs {y}"
                );
            }
            let cos = |a: &[f32], b: &[f32]| {
                let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                dot / (na * nb)
            };
            assert!(
                cos(&g, &g32) > 0.999,
                "{precision:?} lm-head grad cos {}",
                cos(&g, &g32)
            );
            assert!(
                cos(&q, &q32) > 0.99,
                "{precision:?} query grad cos {}",
                cos(&q, &q32)
            );
        }
        // F32 is the policy exactly as built.
        let same = policy.clone().with_precision(Precision::F32);
        assert_eq!(grads_of(&same).0, lp32);
    }

    #[test]
    fn config_from_spec_uses_every_field() {
        let _rng = crate::rng::backend_rng_lock();
        let spec = ModelSpec {
            d_model: 32,
            layers: 3,
            heads: 2,
            d_ff: None,
            dropout: 0.1,
            ..ModelSpec::default()
        };
        let c = PolicyConfig::from_spec(&spec, 17, 13);
        assert_eq!(
            (
                c.vocab,
                c.max_seq_len,
                c.d_model,
                c.n_layers,
                c.n_heads,
                c.d_ff
            ),
            (17, 13, 32, 3, 2, 128)
        );
        assert_eq!(c.dropout, 0.1);
        let p = c.with_dropout(0.0).init::<B>(&Default::default());
        assert_eq!((p.d_model(), p.vocab(), p.max_seq_len()), (32, 17, 13));
    }
}
