//! A Llama-family causal language model (SmolLM2-135M-Instruct and kin) as a burn `Module`,
//! loaded from a GGUF file.
//!
//! Owns [`Llama`] (token embedding, [`LlamaBlock`]s, final RMSNorm, output projection tied to the
//! embedding unless the file has its own `output.weight`) and [`LlamaConfig`] (read from the
//! `llama.*` metadata). Quantised weights are dequantised to f32 once at load
//! ([`crate::gguf`]); the model then computes in f32 on any burn backend.
//!
//! The forward pass, as llama.cpp computes it for `general.architecture = llama`:
//!
//! ```text
//! x   = E[ids]                                                     [N*L, d]
//! per block:
//!   a = RMSNorm(x) * g_attn             RMSNorm(x) = x / sqrt(mean(x^2) + eps)
//!   q = RoPE(a Wq), k = RoPE(a Wk), v = a Wv     (H query heads, H_kv key/value heads)
//!   x = x + Wo softmax(q k^T / sqrt(d_h) + causal) v      query head h reads kv head h / (H/H_kv)
//!   f = RMSNorm(x) * g_ffn
//!   x = x + W_down (silu(f W_gate) * (f W_up))
//! h      = RMSNorm(x) * g_out
//! logits = h E^T                       (tied; or h W_out)
//! ```
//!
//! RoPE is llama.cpp's "normal" (GPT-J, interleaved) form over the first `rope_dim` dimensions
//! of each head: the pair `(x_{2i}, x_{2i+1})` at position p is rotated by angle
//! `p * base^(-2i / rope_dim)`. (The HF-to-GGUF converter permutes the Q and K weights so this
//! form matches the Hugging Face model's half-split rotation.)
//!
//! It does not tokenise (see [`crate::data::gguf_tokenizer`]) and does not train: the policy
//! that trains wraps these blocks ([`crate::model::pretrained::PretrainedPolicy`]).

use crate::gguf::{GgufFile, GgufHeader};
use crate::{Error, Result};
use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use std::path::Path;

/// Attention score given to a later position (its softmax weight underflows to exactly 0).
const MASKED_SCORE: f64 = -1.0e9;

/// Shape and constants of a Llama-family model, read from GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// Vocabulary size V (rows of the token embedding).
    pub vocab: usize,
    /// Hidden size d (`llama.embedding_length`).
    pub d_model: usize,
    /// Number of blocks (`llama.block_count`).
    pub n_layers: usize,
    /// Query heads H (`llama.attention.head_count`).
    pub n_heads: usize,
    /// Key/value heads H_kv (`llama.attention.head_count_kv`); H must be a multiple.
    pub n_kv_heads: usize,
    /// Feed-forward width (`llama.feed_forward_length`).
    pub d_ff: usize,
    /// RoPE base (`llama.rope.freq_base`, default 10000).
    pub rope_base: f64,
    /// Rotated dimensions per head (`llama.rope.dimension_count`, default d / H).
    pub rope_dim: usize,
    /// RMSNorm epsilon (`llama.attention.layer_norm_rms_epsilon`).
    pub rms_eps: f64,
    /// Training context length (`llama.context_length`); longer inputs are refused.
    pub context_length: usize,
}

impl LlamaConfig {
    /// Read the config from a GGUF file's `llama.*` metadata, checking that the architecture is
    /// `llama` and that the shapes are consistent (H divides d, H_kv divides H, the RoPE
    /// dimension is even and at most the head size).
    pub fn from_gguf(file: &GgufHeader) -> Result<LlamaConfig> {
        let bad = |rule: String| Error::msg(format!("{}: GGUF: {rule}", file.path().display()));
        let arch = file.meta_str("general.architecture")?;
        if arch != "llama" {
            return Err(bad(format!(
                "general.architecture is '{arch}'; this model reads 'llama' only"
            )));
        }
        let get = |k: &str| file.meta_u64(&format!("llama.{k}")).map(|v| v as usize);
        let d_model = get("embedding_length")?;
        let n_heads = get("attention.head_count")?;
        let n_kv_heads = match file.metadata.get("llama.attention.head_count_kv") {
            Some(_) => get("attention.head_count_kv")?,
            None => n_heads,
        };
        if n_heads == 0 || !d_model.is_multiple_of(n_heads) {
            return Err(bad(format!(
                "llama.attention.head_count {n_heads} must divide llama.embedding_length {d_model}"
            )));
        }
        if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(bad(format!(
                "llama.attention.head_count_kv {n_kv_heads} must divide head_count {n_heads}"
            )));
        }
        let head_dim = d_model / n_heads;
        let rope_dim = match file.metadata.get("llama.rope.dimension_count") {
            Some(_) => get("rope.dimension_count")?,
            None => head_dim,
        };
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(bad(format!(
                "llama.rope.dimension_count {rope_dim} must be even and at most the head size {head_dim}"
            )));
        }
        let rope_base = match file.metadata.get("llama.rope.freq_base") {
            Some(_) => file.meta_f64("llama.rope.freq_base")?,
            None => 10_000.0,
        };
        let emb_shape = file.tensor_info("token_embd.weight")?.shape();
        if emb_shape.len() != 2 || emb_shape[1] != d_model {
            return Err(bad(format!(
                "token_embd.weight has shape {emb_shape:?}, expected [vocab, {d_model}]"
            )));
        }
        Ok(LlamaConfig {
            vocab: emb_shape[0],
            d_model,
            n_layers: get("block_count")?,
            n_heads,
            n_kv_heads,
            d_ff: get("feed_forward_length")?,
            rope_base,
            rope_dim,
            rms_eps: file.meta_f64("llama.attention.layer_norm_rms_epsilon")?,
            context_length: get("context_length")?,
        })
    }

    /// Size of one attention head, d / H.
    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }
}

/// RMSNorm with a learned gain: `x / sqrt(mean(x^2) + eps) * g`, over the last dimension.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Gain g, `[d]`.
    pub gain: Param<Tensor<B, 1>>,
    eps: f64,
}

/// A host tensor copied to `device` of backend `B2` (a fresh leaf: on an autodiff backend it
/// becomes a trainable parameter when wrapped in [`Param::from_tensor`]).
pub(crate) fn copy_to<B1: Backend, B2: Backend, const D: usize>(
    t: &Tensor<B1, D>,
    device: &B2::Device,
) -> Tensor<B2, D> {
    Tensor::from_data(t.to_data(), device)
}

fn copy_param<B1: Backend, B2: Backend, const D: usize>(
    p: &Param<Tensor<B1, D>>,
    device: &B2::Device,
) -> Param<Tensor<B2, D>> {
    Param::from_tensor(copy_to(&p.val(), device))
}

impl<B: Backend> RmsNorm<B> {
    /// This norm's weights on `device` of another backend.
    pub fn copy_to<B2: Backend>(&self, device: &B2::Device) -> RmsNorm<B2> {
        RmsNorm {
            gain: copy_param(&self.gain, device),
            eps: self.eps,
        }
    }
}

impl<B: Backend> RmsNorm<B> {
    /// Normalise each row of `x` `[rows, d]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let ms = x.clone().square().mean_dim(1);
        let d = self.gain.dims()[0];
        x / (ms + self.eps).sqrt() * self.gain.val().reshape([1, d])
    }
}

/// One Llama block: pre-RMSNorm grouped-query causal attention with RoPE, then a pre-RMSNorm
/// SwiGLU feed-forward, each added to the residual stream. Weights are `[d_in, d_out]`.
#[derive(Module, Debug)]
pub struct LlamaBlock<B: Backend> {
    attn_norm: RmsNorm<B>,
    wq: Param<Tensor<B, 2>>,
    wk: Param<Tensor<B, 2>>,
    wv: Param<Tensor<B, 2>>,
    wo: Param<Tensor<B, 2>>,
    ffn_norm: RmsNorm<B>,
    w_gate: Param<Tensor<B, 2>>,
    w_up: Param<Tensor<B, 2>>,
    w_down: Param<Tensor<B, 2>>,
    n_heads: usize,
    n_kv_heads: usize,
}

/// Per-forward constants shared by every block (see [`rope_aux`]).
pub(crate) struct Aux<B: Backend> {
    n: usize,
    l: usize,
    /// Earlier positions whose keys and values come from a [`Kv`] cache (0 without one).
    past: usize,
    /// `[1, L*(past+L)]`: 0 where query i may read key j (`j <= past + i`), [`MASKED_SCORE`]
    /// elsewhere.
    causal: Tensor<B, 2>,
    /// Per head count `h` of the model (query heads, key/value heads): the cosines and sines
    /// per position and dimension (1 and 0 past `rope_dim`) repeated over the heads, as
    /// `[1, L*h*d_h]` rows, built once per pass.
    rope_rows: Vec<(usize, Tensor<B, 2>, Tensor<B, 2>)>,
    /// `[d_h, d_h]`: `x rot` maps each pair `(x0, x1)` to `(-x1, x0)`.
    rot: Tensor<B, 2>,
}

/// The keys and values `[N, H_kv, L, d_h]` (after RoPE, before the query-group repeat) that
/// one block computed for a run of positions, so later positions can attend to them without
/// recomputing them.
#[derive(Clone)]
pub(crate) struct Kv<B: Backend> {
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
}

impl<B: Backend> LlamaBlock<B> {
    /// RoPE on `t` `[N*L*heads, d_h]` laid out as `[N, L, heads, d_h]`:
    /// `t * cos + (t rot) * sin`, with the tables broadcast over N and heads.
    fn rope(t: Tensor<B, 2>, heads: usize, aux: &Aux<B>) -> Tensor<B, 2> {
        let [rows, dh] = t.dims();
        let (n, l) = (aux.n, aux.l);
        let rotated = t.clone().matmul(aux.rot.clone());
        // `[N, L*h*dh] * [1, L*h*dh]`: the shared-row broadcast the CPU backend runs with SIMD
        // (a `[1, L, 1, dh]` factor against `[N, L, h, dh]` takes its scalar strided path, 5-8 %
        // of a frozen-prefix pass).
        let (_, cos, sin) = aux
            .rope_rows
            .iter()
            .find(|(h, _, _)| *h == heads)
            .expect("rope_aux builds the rows of every head count of the model");
        let t2 = t.reshape([n, l * heads * dh]);
        let r2 = rotated.reshape([n, l * heads * dh]);
        (t2 * cos.clone() + r2 * sin.clone()).reshape([rows, dh])
    }

    /// This block's weights on `device` of another backend.
    pub fn copy_to<B2: Backend>(&self, device: &B2::Device) -> LlamaBlock<B2> {
        LlamaBlock {
            attn_norm: self.attn_norm.copy_to(device),
            wq: copy_param(&self.wq, device),
            wk: copy_param(&self.wk, device),
            wv: copy_param(&self.wv, device),
            wo: copy_param(&self.wo, device),
            ffn_norm: self.ffn_norm.copy_to(device),
            w_gate: copy_param(&self.w_gate, device),
            w_up: copy_param(&self.w_up, device),
            w_down: copy_param(&self.w_down, device),
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
        }
    }

    /// Query heads.
    pub fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// The block on the residual stream `x` `[N*L, d]`.
    pub(crate) fn forward(&self, x: Tensor<B, 2>, aux: &Aux<B>) -> Tensor<B, 2> {
        self.forward_cached(x, aux, None).0
    }

    /// The block on `x` `[N*L, d]` at positions `aux.past ..`, whose queries also read the
    /// `aux.past` earlier positions held in a cache: `past = (kv, owner)` gives row r the cached
    /// row `owner[r]` of `kv`. Returns the output and this run's own keys and values. With
    /// `past = None` and `aux.past = 0` it is [`LlamaBlock::forward`].
    pub(crate) fn forward_cached(
        &self,
        x: Tensor<B, 2>,
        aux: &Aux<B>,
        past: Option<(&Kv<B>, &Tensor<B, 1, Int>)>,
    ) -> (Tensor<B, 2>, Kv<B>) {
        let [rows, d] = x.dims();
        let (n, l) = (aux.n, aux.l);
        let s = aux.past + l;
        let (h, hkv) = (self.n_heads, self.n_kv_heads);
        let dh = d / h;
        let a = self.attn_norm.forward(x.clone());
        let q = Self::rope(
            a.clone().matmul(self.wq.val()).reshape([rows * h, dh]),
            h,
            aux,
        );
        let k = Self::rope(
            a.clone().matmul(self.wk.val()).reshape([rows * hkv, dh]),
            hkv,
            aux,
        );
        let v = a.matmul(self.wv.val());
        // [N, L, heads, d_h] -> [N, heads, L, d_h]; kv heads repeated so head j reads j / group.
        let q = q.reshape([n, l, h, dh]).swap_dims(1, 2);
        let own = Kv {
            k: k.reshape([n, l, hkv, dh]).swap_dims(1, 2),
            v: v.reshape([n, l, hkv, dh]).swap_dims(1, 2),
        };
        let (k, v) = match past {
            None => (own.k.clone(), own.v.clone()),
            Some((p, owner)) => {
                let widen = |t: &Tensor<B, 4>| t.clone().select(0, owner.clone());
                (
                    Tensor::cat(vec![widen(&p.k), own.k.clone()], 2),
                    Tensor::cat(vec![widen(&p.v), own.v.clone()], 2),
                )
            }
        };
        let group = h / hkv;
        let expand = |t: Tensor<B, 4>| {
            t.reshape([n, hkv, 1, s * dh])
                .repeat_dim(2, group)
                .reshape([n, h, s, dh])
        };
        let (k, v) = (expand(k), expand(v));
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .div_scalar((dh as f64).sqrt())
            .reshape([n * h, l * s])
            + aux.causal.clone();
        let probs = softmax(scores.reshape([n, h, l, s]), 3);
        let context = probs.matmul(v).swap_dims(1, 2).reshape([rows, d]);
        let x = x + context.matmul(self.wo.val());
        let f = self.ffn_norm.forward(x.clone());
        let gate = silu(f.clone().matmul(self.w_gate.val()));
        let up = f.matmul(self.w_up.val());
        (x + (gate * up).matmul(self.w_down.val()), own)
    }
}

/// A Llama-family causal LM. See the module docs for the forward pass.
#[derive(Module, Debug)]
pub struct Llama<B: Backend> {
    /// Token embedding E, `[V, d]`; also the output projection when tied.
    pub token_embd: Param<Tensor<B, 2>>,
    pub(crate) blocks: Vec<LlamaBlock<B>>,
    pub(crate) output_norm: RmsNorm<B>,
    /// Untied output projection `[d, V]` (`output.weight`), if the file has one.
    pub(crate) output: Option<Param<Tensor<B, 2>>>,
    pub(crate) vocab: usize,
    pub(crate) rope_base: f64,
    pub(crate) rope_dim: usize,
    pub(crate) context_length: usize,
}

/// The causal mask and RoPE tables for `n` sequences of `l` positions that follow `past`
/// cached ones (positions `past .. past + l`; `past = 0` without a cache), for blocks like
/// `first` (its head size and head counts; without blocks, one head of size `d`):
/// rotation angle `p * base^(-2i / rope_dim)` for pair i at position p (dimensions past
/// `rope_dim` are not rotated); each query reads every cached key and the keys up to its own
/// position.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_aux<B: Backend>(
    n: usize,
    l: usize,
    past: usize,
    d: usize,
    first: Option<&LlamaBlock<B>>,
    rope_base: f64,
    rope_dim: usize,
    device: &B::Device,
) -> Aux<B> {
    let (dh, head_counts) = first.map_or((d, vec![1]), |b| {
        (d / b.n_heads, vec![b.n_heads, b.n_kv_heads])
    });
    let s = past + l;
    // tril_mask is false where j <= i + offset (readable) and true elsewhere (masked).
    let future = Tensor::<B, 2, Bool>::tril_mask([l, s], past as i64, device);
    let causal = Tensor::<B, 2>::zeros([l, s], device)
        .mask_fill(future, MASKED_SCORE)
        .reshape([1, l * s]);
    let (mut cos, mut sin) = (vec![1.0f32; l * dh], vec![0.0f32; l * dh]);
    for p in 0..l {
        for i in 0..rope_dim / 2 {
            let theta = rope_base.powf(-2.0 * i as f64 / rope_dim as f64);
            let angle = (past + p) as f64 * theta;
            for j in [2 * i, 2 * i + 1] {
                cos[p * dh + j] = angle.cos() as f32;
                sin[p * dh + j] = angle.sin() as f32;
            }
        }
    }
    let mut rot = vec![0.0f32; dh * dh];
    for i in 0..rope_dim / 2 {
        // (x rot)[2i] = -x[2i+1], (x rot)[2i+1] = x[2i]
        rot[(2 * i + 1) * dh + 2 * i] = -1.0;
        rot[(2 * i) * dh + 2 * i + 1] = 1.0;
    }
    // Each position's row repeated `h` times: the `[1, L*h*dh]` layout of `[N, L, h, dh]`.
    let per_head = |v: &[f32], h: usize| {
        let row: Vec<f32> = v
            .chunks(dh)
            .flat_map(|p| std::iter::repeat_n(p, h).flatten().copied())
            .collect();
        Tensor::from_data(TensorData::new(row, [1, l * h * dh]), device)
    };
    let mut rope_rows: Vec<(usize, Tensor<B, 2>, Tensor<B, 2>)> = Vec::new();
    for &h in &head_counts {
        if !rope_rows.iter().any(|(k, _, _)| *k == h) {
            rope_rows.push((h, per_head(&cos, h), per_head(&sin, h)));
        }
    }
    Aux {
        n,
        l,
        past,
        causal,
        rope_rows,
        rot: Tensor::from_data(TensorData::new(rot, [dh, dh]), device),
    }
}

/// A `[rows, cols]` row-major matrix transposed to `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

impl<B: Backend> Llama<B> {
    /// Read a GGUF file and build the model on `device`. A missing file gets an error that says
    /// to run `scripts/fetch-model.sh`.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<(Llama<B>, LlamaConfig)> {
        let file = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        Ok((Llama::from_gguf(&file, &config, device)?, config))
    }

    /// Build the model from an opened GGUF file with its [`LlamaConfig`]. Every tensor's shape
    /// is checked against the config; a mismatch names the tensor.
    pub fn from_gguf(file: &GgufFile, cfg: &LlamaConfig, device: &B::Device) -> Result<Llama<B>> {
        let d = cfg.d_model;
        let dkv = cfg.n_kv_heads * cfg.head_dim();
        // A GGUF matrix with ne = [d_in, d_out] is a row-major [d_out, d_in] (the PyTorch
        // layout); burn's `x W` wants [d_in, d_out], so transpose on the host once.
        let matrix = |name: &str, d_in: usize, d_out: usize| -> Result<Param<Tensor<B, 2>>> {
            let (data, shape) = file.tensor_f32(name)?;
            if shape != [d_out, d_in] {
                return Err(Error::msg(format!(
                    "{}: GGUF: tensor '{name}' has shape {shape:?}, expected [{d_out}, {d_in}]",
                    file.path().display()
                )));
            }
            let t = transpose(&data, d_out, d_in);
            Ok(Param::from_tensor(Tensor::from_data(
                TensorData::new(t, [d_in, d_out]),
                device,
            )))
        };
        let norm = |name: &str| -> Result<RmsNorm<B>> {
            let (data, shape) = file.tensor_f32(name)?;
            if shape != [d] {
                return Err(Error::msg(format!(
                    "{}: GGUF: tensor '{name}' has shape {shape:?}, expected [{d}]",
                    file.path().display()
                )));
            }
            Ok(RmsNorm {
                gain: Param::from_tensor(Tensor::from_data(TensorData::new(data, [d]), device)),
                eps: cfg.rms_eps,
            })
        };
        // No `with_capacity(n_layers)`: the count comes from the file, and a corrupt one must end in
        // the missing-tensor error below, not an allocation failure.
        let mut blocks = Vec::new();
        for i in 0..cfg.n_layers {
            let t = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(LlamaBlock {
                attn_norm: norm(&t("attn_norm"))?,
                wq: matrix(&t("attn_q"), d, d)?,
                wk: matrix(&t("attn_k"), d, dkv)?,
                wv: matrix(&t("attn_v"), d, dkv)?,
                wo: matrix(&t("attn_output"), d, d)?,
                ffn_norm: norm(&t("ffn_norm"))?,
                w_gate: matrix(&t("ffn_gate"), d, cfg.d_ff)?,
                w_up: matrix(&t("ffn_up"), d, cfg.d_ff)?,
                w_down: matrix(&t("ffn_down"), cfg.d_ff, d)?,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
            });
        }
        let (emb, shape) = file.tensor_f32("token_embd.weight")?;
        let token_embd = Param::from_tensor(Tensor::from_data(
            TensorData::new(emb, [shape[0], shape[1]]),
            device,
        ));
        let output = match file.tensor_info("output.weight") {
            Ok(_) => Some(matrix("output.weight", d, cfg.vocab)?),
            Err(_) => None,
        };
        Ok(Llama {
            token_embd,
            blocks,
            output_norm: norm("output_norm.weight")?,
            output,
            vocab: cfg.vocab,
            rope_base: cfg.rope_base,
            rope_dim: cfg.rope_dim,
            context_length: cfg.context_length,
        })
    }

    /// Vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Hidden size d.
    pub fn d_model(&self) -> usize {
        self.token_embd.dims()[1]
    }

    /// Number of blocks.
    pub fn n_layers(&self) -> usize {
        self.blocks.len()
    }

    /// [`rope_aux`] for `n` rows of `l` positions after `past` cached ones, at this model's
    /// heads and RoPE settings.
    fn aux(&self, n: usize, l: usize, past: usize, device: &B::Device) -> Aux<B> {
        rope_aux(
            n,
            l,
            past,
            self.d_model(),
            self.blocks.first(),
            self.rope_base,
            self.rope_dim,
            device,
        )
    }

    /// The token embedding of ids `[N, L]`, flattened to the residual stream `[N*L, d]`.
    fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let [n, l] = ids.dims();
        burn::tensor::module::embedding(self.token_embd.val(), ids).reshape([n * l, self.d_model()])
    }

    /// The residual stream `[N*L, d]` after the token embedding and the first `blocks` blocks
    /// (no final norm) of token ids `[N, L]`: the frozen part of a policy whose upper blocks
    /// train ([`crate::model::pretrained`]).
    pub fn residual(&self, ids: Tensor<B, 2, Int>, blocks: usize) -> Tensor<B, 2> {
        let [n, l] = ids.dims();
        let aux = self.aux(n, l, 0, &ids.device());
        let x = self.embed(ids);
        self.blocks[..blocks]
            .iter()
            .fold(x, |x, b| b.forward(x, &aux))
    }

    /// [`Llama::residual`] of rows that share their first `c` tokens with others, without
    /// computing those positions more than once: the shared starts `prefixes` `[M, c]` run
    /// through the blocks once, keeping each block's keys and values, and `tails` `[G, T]`
    /// (each row's tokens after its first `c`) run at positions `c .. c + T`, tail r reading the
    /// cached keys and values of prefix `owner[r]`. Returns `[M*c, d]` (the shared positions)
    /// and `[G*T, d]` (the tails). Causal attention makes this equal to `residual` of each whole
    /// row `[prefixes[owner[r]], tails[r]]`.
    pub fn residual_shared(
        &self,
        prefixes: Tensor<B, 2, Int>,
        tails: Tensor<B, 2, Int>,
        owner: Tensor<B, 1, Int>,
        blocks: usize,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [m, c] = prefixes.dims();
        let [g, t] = tails.dims();
        let device = prefixes.device();
        let aux_prefix = self.aux(m, c, 0, &device);
        let aux_tails = self.aux(g, t, c, &device);
        let (mut xp, mut xt) = (self.embed(prefixes), self.embed(tails));
        for block in &self.blocks[..blocks] {
            let (yp, kv) = block.forward_cached(xp, &aux_prefix, None);
            xt = block.forward_cached(xt, &aux_tails, Some((&kv, &owner))).0;
            xp = yp;
        }
        (xp, xt)
    }

    /// Final hidden states `[N, L, d]` (after the output RMSNorm) of token ids `[N, L]`.
    /// Right padding is harmless: attention is causal.
    ///
    /// Every id must be below [`Llama::vocab`] (a tokeniser built from the same file ensures it).
    ///
    /// # Errors
    /// If `L` is 0 or exceeds the model's context length.
    pub fn hidden(&self, ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        let [n, l] = ids.dims();
        if l == 0 || n == 0 {
            return Err(Error::msg(format!(
                "token ids of shape [{n}, {l}]: need at least one row and one position"
            )));
        }
        if l > self.context_length {
            return Err(Error::msg(format!(
                "sequence length {l} exceeds the model's context length {}",
                self.context_length
            )));
        }
        let x = self.residual(ids, self.blocks.len());
        Ok(self.output_norm.forward(x).reshape([n, l, self.d_model()]))
    }

    /// Next-token logits `[rows, V]` of hidden states `[rows, d]` (tied: `h E^T`).
    pub fn logits_from_hidden(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.output {
            Some(w) => h.matmul(w.val()),
            None => h.matmul(self.token_embd.val().transpose()),
        }
    }

    /// Next-token logits `[N, L, V]` at every position of `ids` `[N, L]`.
    pub fn logits(&self, ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>> {
        let h = self.hidden(ids)?;
        let [n, l, d] = h.dims();
        Ok(self
            .logits_from_hidden(h.reshape([n * l, d]))
            .reshape([n, l, self.vocab]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CpuBackend;

    /// Oracle: the RoPE rotation written out by hand for one head of size 4 at position 1 with
    /// base 100 (theta_0 = 1, theta_1 = 100^(-1/2) = 0.1): pair (1, 0) rotated by 1 rad is
    /// (cos 1, sin 1); pair (0, 1) rotated by 0.1 rad is (-sin 0.1, cos 0.1).
    #[test]
    fn rope_rotates_interleaved_pairs() {
        let device = Default::default();
        let model = Llama::<CpuBackend> {
            token_embd: Param::from_tensor(Tensor::zeros([1, 4], &device)),
            blocks: vec![],
            output_norm: RmsNorm {
                gain: Param::from_tensor(Tensor::ones([4], &device)),
                eps: 1e-5,
            },
            output: None,
            vocab: 1,
            rope_base: 100.0,
            rope_dim: 4,
            context_length: 8,
        };
        let aux = model.aux(1, 2, 0, &device);
        let x = Tensor::<CpuBackend, 2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [2, 4]),
            &device,
        );
        let y: Vec<f32> = LlamaBlock::rope(x, 1, &aux).into_data().to_vec().unwrap();
        let want = [
            1.0,
            0.0,
            0.0,
            1.0, // position 0: identity
            1f32.cos(),
            1f32.sin(),
            -(0.1f32.sin()),
            0.1f32.cos(),
        ];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {want:?}");
        }
    }

    /// Oracle: RMSNorm by hand: x = (3, 4), mean square 12.5, gain (1, 2) -> (3, 8) / sqrt(12.5).
    #[test]
    fn rms_norm_by_hand() {
        let device = Default::default();
        let norm = RmsNorm::<CpuBackend> {
            gain: Param::from_tensor(Tensor::from_data(
                TensorData::new(vec![1.0f32, 2.0], [2]),
                &device,
            )),
            eps: 0.0,
        };
        let x = Tensor::from_data(TensorData::new(vec![3.0f32, 4.0], [1, 2]), &device);
        let y: Vec<f32> = norm.forward(x).into_data().to_vec().unwrap();
        let s = 12.5f32.sqrt();
        assert!(
            (y[0] - 3.0 / s).abs() < 1e-6 && (y[1] - 8.0 / s).abs() < 1e-6,
            "{y:?}"
        );
    }

    /// Oracle: transposition by hand.
    #[test]
    fn transpose_by_hand() {
        assert_eq!(
            transpose(&[1., 2., 3., 4., 5., 6.], 2, 3),
            [1., 4., 2., 5., 3., 6.]
        );
    }
}
