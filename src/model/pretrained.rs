//! A pretrained Llama-family language model (read from a GGUF file) as the policy.
//!
//! [`PretrainedPolicy`] is the second family behind [`crate::model::Policy`]: the same
//! read-outs (hidden states `[N, L, d]` for the prior and posterior, next-token logits of the
//! final hidden state plus the code z) over the model's own tokens, so every method, objective,
//! score and report runs on it unchanged. The code enters as for the scratch policy, added to
//! the final (RMS-normed) hidden state just before the output projection.
//!
//! What trains is chosen by `model.trainable` ([`Trainable`]):
//!
//! ```text
//! "all"     E (tied output) -> blocks 0 .. n-1 -> norm -> E^T        every parameter trains
//! "last:k"  [E -> blocks 0 .. n-k-1]  -> blocks n-k .. n-1 -> norm -> H (frozen, = E^T)
//!            frozen prefix, host CPU,     trainable tail on the run's device
//!            memoised per sequence
//! ```
//!
//! With `last:k` the frozen prefix's output (the residual stream after block n-k-1) depends
//! only on the tokens, so it is computed once per distinct sequence and kept
//! ([`FrozenPrefix`]); every later pass (reference log-probs, each training step, evaluation)
//! runs only the k trainable blocks. The output projection stays frozen in that mode: it is the
//! tied input embedding, it is the largest matrix of a small model (49152 x 576 for
//! SmolLM2-135M) and its weight gradient alone would cost as much as the tail's.

use crate::Error;
use crate::Result;
use crate::model::CpuBackend;
use crate::model::llama::{Llama, LlamaBlock, RmsNorm, copy_to, rope_aux};
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Which parameters of a pretrained policy train (`model.trainable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trainable {
    /// Every parameter (embedding, tied output, all blocks, final norm).
    All,
    /// The last k blocks and the final norm; the rest is frozen and its output memoised.
    Last(usize),
}

impl Trainable {
    /// Parse `"all"` or `"last:k"` (k ≥ 1). The error states the rule.
    pub fn parse(s: &str) -> std::result::Result<Trainable, String> {
        if s == "all" {
            return Ok(Trainable::All);
        }
        match s.strip_prefix("last:").map(str::parse::<usize>) {
            Some(Ok(k)) if k >= 1 => Ok(Trainable::Last(k)),
            _ => Err(format!(
                "'{s}' is not \"all\" or \"last:K\" with K a whole number of blocks >= 1"
            )),
        }
    }
}

/// Sequences whose frozen-prefix states are computed together (one host forward pass).
const PREFIX_CHUNK: usize = 8;

/// The frozen lower part of a pretrained policy (token embedding and the first blocks) on the
/// host CPU backend, with its output memoised per sequence.
///
/// A row of a batch is a sequence followed by padding (the batch's pad id). Its key is the row
/// with trailing pad ids removed; its states are computed once for the key padded to the
/// policy's `max_seq_len` and kept. Any row with that key and length `L ≤ max_seq_len` holds
/// the same tokens as the first `L` positions of that padded copy, and attention is causal, so
/// its states are exactly those first `L` rows. (A sequence that itself ends in the pad id gets
/// the same key as its shorter form; their tokens after trimming are all pad ids, so the
/// states agree as well.)
pub struct FrozenPrefix {
    model: Llama<CpuBackend>,
    blocks: usize,
    max_seq_len: usize,
    pad: u32,
    memo: Mutex<HashMap<Vec<u32>, Arc<Vec<f32>>>>,
}

impl std::fmt::Debug for FrozenPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenPrefix")
            .field("blocks", &self.blocks)
            .field("max_seq_len", &self.max_seq_len)
            .field("memoised", &self.memoised())
            .finish()
    }
}

impl FrozenPrefix {
    /// Sequences whose states are memoised.
    pub fn memoised(&self) -> usize {
        self.memo.lock().map_or(0, |m| m.len())
    }

    /// Frozen blocks.
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The residual stream `[N*L, d]` of `ids` `[N, L]` after the frozen blocks, on `device`.
    fn states<B: Backend>(&self, ids: Tensor<B, 2, Int>, device: &B::Device) -> Tensor<B, 2> {
        let [n, l] = ids.dims();
        let d = self.model.d_model();
        let flat: Vec<i64> = ids.into_data().convert::<i64>().to_vec().expect("int ids");
        let keys: Vec<Vec<u32>> = flat
            .chunks(l)
            .map(|row| {
                let end = row
                    .iter()
                    .rposition(|&t| t != i64::from(self.pad))
                    .map_or(0, |i| i + 1);
                row[..end].iter().map(|&t| t as u32).collect()
            })
            .collect();
        let mut memo = self.memo.lock().expect("frozen-prefix memo lock");
        let mut missing: Vec<&Vec<u32>> = Vec::new();
        for k in &keys {
            if !memo.contains_key(k) && !missing.contains(&k) {
                missing.push(k);
            }
        }
        for chunk in missing.chunks(PREFIX_CHUNK) {
            let mut padded = Vec::with_capacity(chunk.len() * self.max_seq_len);
            for k in chunk {
                padded.extend(k.iter().map(|&t| i64::from(t)));
                padded.resize(
                    padded.len() + self.max_seq_len - k.len(),
                    i64::from(self.pad),
                );
            }
            let host = Default::default();
            let ids = Tensor::<CpuBackend, 2, Int>::from_data(
                TensorData::new(padded, [chunk.len(), self.max_seq_len]),
                &host,
            );
            let out: Vec<f32> = self
                .model
                .residual(ids, self.blocks)
                .into_data()
                .to_vec()
                .expect("f32 states");
            for (k, rows) in chunk.iter().zip(out.chunks(self.max_seq_len * d)) {
                memo.insert((*k).clone(), Arc::new(rows.to_vec()));
            }
        }
        let mut buf = Vec::with_capacity(n * l * d);
        for k in &keys {
            buf.extend_from_slice(&memo[k][..l * d]);
        }
        Tensor::from_data(TensorData::new(buf, [n * l, d]), device)
    }
}

/// A pretrained Llama-family causal LM as the policy; see the module docs.
#[derive(Module, Debug)]
pub struct PretrainedPolicy<B: Backend> {
    /// Token embedding E `[V, d]` (`trainable = "all"`; with `last:k` it is in the prefix).
    embedding: Option<Param<Tensor<B, 2>>>,
    /// Untied output projection `[d, V]` (`trainable = "all"` and a file that has one).
    output: Option<Param<Tensor<B, 2>>>,
    /// The blocks that train.
    blocks: Vec<LlamaBlock<B>>,
    norm: RmsNorm<B>,
    vocab: usize,
    max_seq_len: usize,
    rope_base: f64,
    rope_dim: usize,
    /// The frozen prefix (`last:k`), shared by every copy of the policy (the reference and
    /// each method's start), so each sequence's prefix states are computed once per run.
    #[module(skip)]
    frozen: Option<Arc<FrozenPrefix>>,
    /// The frozen output projection `[d, V]` (`last:k`): not a parameter.
    #[module(skip)]
    frozen_head: Option<Tensor<B, 2>>,
}

impl<B: Backend> PretrainedPolicy<B> {
    /// Read the GGUF model at `path` and build the policy on `device` for sequences of up to
    /// `max_seq_len` tokens padded with `pad`. The file is read and dequantised on the host
    /// (the frozen prefix stays there); the trainable part is copied to `device`.
    ///
    /// # Errors
    /// A file that cannot be read as a Llama-family GGUF (the error says how to fetch the
    /// model when it is missing); `last:k` with k above the model's block count;
    /// `max_seq_len` beyond the model's context length.
    pub fn load(
        path: &Path,
        trainable: Trainable,
        max_seq_len: usize,
        pad: u32,
        device: &B::Device,
    ) -> Result<PretrainedPolicy<B>> {
        let (mut host, _config) = Llama::<CpuBackend>::load(path, &Default::default())?;
        let n = host.n_layers();
        if max_seq_len > host.context_length {
            return Err(Error::msg(format!(
                "{}: sequences of up to {max_seq_len} tokens exceed the model's context length {} \
                 (lower data.max_prompt_tokens or data.max_response_tokens)",
                path.display(),
                host.context_length
            )));
        }
        let frozen_blocks = match trainable {
            Trainable::All => 0,
            Trainable::Last(k) if k <= n => n - k,
            Trainable::Last(k) => {
                return Err(Error::msg(format!(
                    "model.trainable = \"last:{k}\": {} has {n} blocks, so K must be 1..={n}",
                    path.display()
                )));
            }
        };
        let blocks: Vec<LlamaBlock<B>> = host.blocks[frozen_blocks..]
            .iter()
            .map(|b| b.copy_to(device))
            .collect();
        let norm = host.output_norm.copy_to(device);
        let (vocab, rope_base, rope_dim) = (host.vocab, host.rope_base, host.rope_dim);
        let mut policy = PretrainedPolicy {
            embedding: None,
            output: None,
            blocks,
            norm,
            vocab,
            max_seq_len,
            rope_base,
            rope_dim,
            frozen: None,
            frozen_head: None,
        };
        if frozen_blocks == 0 {
            policy.embedding = Some(Param::from_tensor(copy_to(&host.token_embd.val(), device)));
            policy.output = host
                .output
                .as_ref()
                .map(|w| Param::from_tensor(copy_to(&w.val(), device)));
        } else {
            let head = match &host.output {
                Some(w) => w.val(),
                None => host.token_embd.val().transpose(),
            };
            policy.frozen_head = Some(copy_to(&head, device));
            host.blocks.truncate(frozen_blocks);
            host.output = None;
            policy.frozen = Some(Arc::new(FrozenPrefix {
                model: host,
                blocks: frozen_blocks,
                max_seq_len,
                pad,
                memo: Mutex::new(HashMap::new()),
            }));
        }
        Ok(policy)
    }

    /// Final hidden states `[N, L, d]` (after the final RMSNorm, without z) of ids `[N, L]`;
    /// `L` at most [`PretrainedPolicy::max_seq_len`] ([`crate::model::Policy::hidden`] checks it).
    pub fn hidden(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [n, l] = ids.dims();
        let device = ids.device();
        let d = self.d_model();
        let x = match (&self.embedding, &self.frozen) {
            (Some(e), _) => burn::tensor::module::embedding(e.val(), ids).reshape([n * l, d]),
            (None, Some(f)) => f.states::<B>(ids, &device),
            (None, None) => unreachable!("a pretrained policy has an embedding or a prefix"),
        };
        let dh = self.blocks.first().map_or(d, |b| d / b.n_heads());
        let aux = rope_aux(n, l, dh, self.rope_base, self.rope_dim, &device);
        let x = self.blocks.iter().fold(x, |x, b| b.forward(x, &aux));
        self.norm.forward(x).reshape([n, l, d])
    }

    /// Next-token logits `[rows, V]` of final hidden states `[rows, d]`.
    pub fn head_logits(&self, h: Tensor<B, 2>) -> Tensor<B, 2> {
        match (&self.output, &self.frozen_head, &self.embedding) {
            (Some(w), _, _) => h.matmul(w.val()),
            (None, Some(w), _) => h.matmul(w.clone()),
            (None, None, Some(e)) => h.matmul(e.val().transpose()),
            (None, None, None) => unreachable!("a pretrained policy has an output projection"),
        }
    }

    /// Hidden size d.
    pub fn d_model(&self) -> usize {
        self.norm.gain.dims()[0]
    }

    /// Vocabulary size V.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// Longest sequence accepted.
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The device of the trainable parameters.
    pub fn device(&self) -> B::Device {
        self.norm.gain.device()
    }

    /// Blocks that train.
    pub fn trainable_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The frozen prefix (`last:k`), if any.
    pub fn frozen(&self) -> Option<&FrozenPrefix> {
        self.frozen.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oracle: the grammar in the doc comment.
    #[test]
    fn trainable_parses_all_and_last_k() {
        assert_eq!(Trainable::parse("all"), Ok(Trainable::All));
        assert_eq!(Trainable::parse("last:3"), Ok(Trainable::Last(3)));
        for bad in ["last:0", "last:", "last:x", "first:2", "ALL", ""] {
            assert!(Trainable::parse(bad).is_err(), "{bad}");
        }
    }
}
