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
//! "last:k"  [E -> blocks 0 .. n-k-1]  -> blocks n-k .. n-1 -> norm -> H (= E^T at the start)
//!            frozen prefix, host CPU,     trainable tail on the run's device
//!            memoised per sequence
//! ```
//!
//! With `last:k` the frozen prefix's output (the residual stream after block n-k-1) depends
//! only on the tokens, so it is computed once per distinct sequence and kept
//! ([`FrozenPrefix`]); every later pass (reference log-probs, each training step, evaluation)
//! runs only the k trainable blocks. In that mode the output projection H trains or not by
//! `model.train_head`: when it trains it is a copy of the (tied) input embedding's transpose,
//! untied from it (the embedding only feeds the frozen prefix). It is the largest matrix of a
//! small model (49152 x 576 for SmolLM2-135M): training it made a CPU step of the shipped
//! SmolLM2 scenario 9 % slower (10.18 against 9.35 s, one thread; docs/RESULTS.md §6, pilot 7)
//! and adds 12 bytes of optimiser state per entry.

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
    /// The last `blocks` blocks and the final norm, and the output projection when `head`;
    /// the rest is frozen and its output memoised.
    Last {
        /// Blocks that train (k >= 1), counted from the top.
        blocks: usize,
        /// Whether the output projection trains (`model.train_head`).
        head: bool,
    },
}

impl Trainable {
    /// Parse `"all"` or `"last:k"` (k ≥ 1; the head frozen, see [`Trainable::with_head`]).
    /// The error states the rule.
    pub fn parse(s: &str) -> std::result::Result<Trainable, String> {
        if s == "all" {
            return Ok(Trainable::All);
        }
        match s.strip_prefix("last:").map(str::parse::<usize>) {
            Some(Ok(k)) if k >= 1 => Ok(Trainable::Last {
                blocks: k,
                head: false,
            }),
            _ => Err(format!(
                "'{s}' is not \"all\" or \"last:K\" with K a whole number of blocks >= 1"
            )),
        }
    }

    /// The same choice with the output projection training or not (`All` always trains it).
    pub fn with_head(self, head: bool) -> Trainable {
        match self {
            Trainable::All => Trainable::All,
            Trainable::Last { blocks, .. } => Trainable::Last { blocks, head },
        }
    }

    /// Whether the output projection trains.
    pub fn trains_head(self) -> bool {
        match self {
            Trainable::All => true,
            Trainable::Last { head, .. } => head,
        }
    }
}

/// Unshared sequences whose frozen-prefix states are computed together (one host forward pass).
const PREFIX_CHUNK: usize = 8;

/// Shared starts are cut to a multiple of this many tokens (at least one multiple), so groups
/// whose starts differ by a token or two still run as one batch.
const SHARE_STEP: usize = 8;

/// Most sequences in one shared-start group.
const MAX_SHARED_GROUP: usize = 16;

/// Most groups in one unit of shared work (one batched pass).
const SHARED_UNIT: usize = 8;

/// One unit of frozen-prefix work: indices into the padded sequences it computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixWork {
    /// Groups of sequences, each group agreeing on its first `common` tokens: each group's
    /// start runs once, each sequence's remaining positions read its cached keys and values
    /// ([`Llama::residual_shared`]); all groups of the unit run in one batched pass.
    Shared {
        /// Length of the common start (a multiple of the step, at least one step).
        common: usize,
        /// The groups, each of at least two sequences.
        groups: Vec<Vec<usize>>,
    },
    /// Sequences run as one batch, each from its first token ([`Llama::residual`]).
    Whole(Vec<usize>),
}

fn common_start(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Plan the frozen-prefix work for distinct sequences of one length (the padded keys).
///
/// Sort them, so sequences with a common start are neighbours. A run of neighbours that all
/// agree with the run's first sequence on the tokens its first two share (at most `max_group`
/// sequences) is a group, if that common start holds at least `step` tokens; its start is cut
/// to a multiple of `step`. Groups with the same cut start form [`PrefixWork::Shared`] units of
/// at most `unit` groups; the other sequences form [`PrefixWork::Whole`] chunks of `chunk`.
/// Every index appears exactly once.
pub fn plan_prefix_work(
    rows: &[Vec<u32>],
    step: usize,
    max_group: usize,
    unit: usize,
    chunk: usize,
) -> Vec<PrefixWork> {
    let step = step.max(1);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[a].cmp(&rows[b]));
    let mut by_start: std::collections::BTreeMap<usize, Vec<Vec<usize>>> = Default::default();
    let mut alone = Vec::new();
    let mut i = 0;
    while i < order.len() {
        let first = &rows[order[i]];
        let common = order
            .get(i + 1)
            .map_or(0, |&j| common_start(first, &rows[j]));
        let mut end = i + 1;
        if common >= step {
            while end < order.len()
                && end - i < max_group.max(2)
                && common_start(first, &rows[order[end]]) >= common
            {
                end += 1;
            }
        }
        if end - i >= 2 {
            by_start
                .entry(common / step * step)
                .or_default()
                .push(order[i..end].to_vec());
        } else {
            alone.push(order[i]);
        }
        i = end;
    }
    let mut work = Vec::new();
    for (common, groups) in by_start {
        for units in groups.chunks(unit.max(1)) {
            work.push(PrefixWork::Shared {
                common,
                groups: units.to_vec(),
            });
        }
    }
    work.extend(
        alone
            .chunks(chunk.max(1))
            .map(|c| PrefixWork::Whole(c.to_vec())),
    );
    work
}

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
///
/// New sequences are computed in units planned by [`plan_prefix_work`]: a chosen and a rejected
/// response to one prompt share the prompt's positions, which run once for both; the units run
/// in parallel on the rayon pool.
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
        let missing: Vec<Vec<u32>> = {
            let memo = self.memo.lock().expect("frozen-prefix memo lock");
            let mut seen = std::collections::HashSet::new();
            keys.iter()
                .filter(|k| !memo.contains_key(*k) && seen.insert(*k))
                .cloned()
                .collect()
        };
        let computed = self.compute(&missing);
        let mut memo = self.memo.lock().expect("frozen-prefix memo lock");
        memo.extend(missing.into_iter().zip(computed));
        let mut buf = Vec::with_capacity(n * l * d);
        for k in &keys {
            buf.extend_from_slice(&memo[k][..l * d]);
        }
        Tensor::from_data(TensorData::new(buf, [n * l, d]), device)
    }

    /// States `[max_seq_len * d]` of each key padded to `max_seq_len`, in order.
    fn compute(&self, keys: &[Vec<u32>]) -> Vec<Arc<Vec<f32>>> {
        use rayon::prelude::*;
        let (len, d) = (self.max_seq_len, self.model.d_model());
        let padded: Vec<Vec<u32>> = keys
            .iter()
            .map(|k| {
                let mut row = k.clone();
                row.resize(len, self.pad);
                row
            })
            .collect();
        let host = Default::default();
        let ids = |rows: &[&[u32]]| {
            let width = rows.first().map_or(0, |r| r.len());
            let flat: Vec<i64> = rows
                .iter()
                .flat_map(|r| r.iter().map(|&t| i64::from(t)))
                .collect();
            Tensor::<CpuBackend, 2, Int>::from_data(
                TensorData::new(flat, [rows.len(), width]),
                &host,
            )
        };
        let to_vec =
            |t: Tensor<CpuBackend, 2>| -> Vec<f32> { t.into_data().to_vec().expect("f32 states") };
        let work = plan_prefix_work(
            &padded,
            SHARE_STEP,
            MAX_SHARED_GROUP,
            SHARED_UNIT,
            PREFIX_CHUNK,
        );
        let done: Vec<Vec<(usize, Vec<f32>)>> = work
            .par_iter()
            .map(|unit| match unit {
                PrefixWork::Whole(rows) => {
                    let batch: Vec<&[u32]> = rows.iter().map(|&r| padded[r].as_slice()).collect();
                    let out = to_vec(self.model.residual(ids(&batch), self.blocks));
                    rows.iter()
                        .zip(out.chunks(len * d))
                        .map(|(&r, s)| (r, s.to_vec()))
                        .collect()
                }
                PrefixWork::Shared { common, groups } => {
                    let c = *common;
                    let prefixes: Vec<&[u32]> = groups.iter().map(|g| &padded[g[0]][..c]).collect();
                    let (mut tails, mut owner, mut rows) = (Vec::new(), Vec::new(), Vec::new());
                    for (gi, g) in groups.iter().enumerate() {
                        for &r in g {
                            tails.push(&padded[r][c..]);
                            owner.push(gi as i64);
                            rows.push((r, gi));
                        }
                    }
                    let owner = Tensor::<CpuBackend, 1, Int>::from_data(
                        TensorData::new(owner, [rows.len()]),
                        &host,
                    );
                    let (shared, tails) =
                        self.model
                            .residual_shared(ids(&prefixes), ids(&tails), owner, self.blocks);
                    let (shared, tails) = (to_vec(shared), to_vec(tails));
                    rows.iter()
                        .zip(tails.chunks((len - c) * d))
                        .map(|(&(r, gi), tail)| {
                            let mut s = Vec::with_capacity(len * d);
                            s.extend_from_slice(&shared[gi * c * d..(gi + 1) * c * d]);
                            s.extend_from_slice(tail);
                            (r, s)
                        })
                        .collect()
                }
            })
            .collect();
        let mut out: Vec<Option<Arc<Vec<f32>>>> = vec![None; keys.len()];
        for (r, s) in done.into_iter().flatten() {
            out[r] = Some(Arc::new(s));
        }
        out.into_iter()
            .map(|s| s.expect("every sequence is in one unit of work"))
            .collect()
    }
}

/// A pretrained Llama-family causal LM as the policy; see the module docs.
#[derive(Module, Debug)]
pub struct PretrainedPolicy<B: Backend> {
    /// Token embedding E `[V, d]` (`trainable = "all"`; with `last:k` it is in the prefix).
    embedding: Option<Param<Tensor<B, 2>>>,
    /// Untied output projection `[d, V]` that trains: with `trainable = "all"` when the file
    /// has one, with `last:k` when the head trains (a copy of the tied embedding's transpose).
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
    /// The frozen output projection `[d, V]` (`last:k` with the head frozen): not a parameter.
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
            Trainable::Last { blocks: k, .. } if k <= n => n - k,
            Trainable::Last { blocks: k, .. } => {
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
            if trainable.trains_head() {
                policy.output = Some(Param::from_tensor(copy_to(&head, device)));
            } else {
                policy.frozen_head = Some(copy_to(&head, device));
            }
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
        let aux = rope_aux(
            n,
            l,
            0,
            d,
            self.blocks.first(),
            self.rope_base,
            self.rope_dim,
            &device,
        );
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

    /// Whether the output projection trains.
    pub fn trains_head(&self) -> bool {
        self.output.is_some() || self.embedding.is_some()
    }

    /// The frozen prefix (`last:k`), if any.
    pub fn frozen(&self) -> Option<&FrozenPrefix> {
        self.frozen.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Oracle: the plan worked by hand. Rows 0, 2 and 3 start with the same 9 tokens (2 and 3
    /// with the same 10; a group's common start is what its first two sorted rows share), cut
    /// to the step of 8; row 1 shares 2 tokens with them, below one step, and runs alone; rows
    /// 4 and 5 share 12, also cut to 8, so both groups batch in one unit. With a group limit of
    /// 2, row 3 is left alone; with units of one group, the groups run apart. Every index
    /// appears exactly once.
    #[test]
    fn prefix_plan_groups_common_starts() {
        let row = |start: &[u32], fill: u32| {
            let mut r = start.to_vec();
            r.resize(16, fill);
            r
        };
        let base: Vec<u32> = (1..=9).collect();
        let rows = vec![
            row(&base, 50),
            row(&[1, 2, 77], 0),
            row(&[base.clone(), vec![60]].concat(), 61),
            row(&[base.clone(), vec![60]].concat(), 62),
            row(&[99; 12], 1),
            row(&[99; 12], 2),
        ];
        let shared = |groups: Vec<Vec<usize>>| PrefixWork::Shared { common: 8, groups };
        assert_eq!(
            plan_prefix_work(&rows, 8, 16, 8, 8),
            vec![
                shared(vec![vec![0, 2, 3], vec![4, 5]]),
                PrefixWork::Whole(vec![1])
            ]
        );
        assert_eq!(
            plan_prefix_work(&rows, 8, 2, 8, 8),
            vec![
                shared(vec![vec![0, 2], vec![4, 5]]),
                PrefixWork::Whole(vec![3, 1])
            ]
        );
        let plan = plan_prefix_work(&rows, 8, 16, 1, 8);
        assert_eq!(
            plan,
            vec![
                shared(vec![vec![0, 2, 3]]),
                shared(vec![vec![4, 5]]),
                PrefixWork::Whole(vec![1])
            ]
        );
        let mut seen: Vec<usize> = plan
            .iter()
            .flat_map(|w| match w {
                PrefixWork::Shared { groups, .. } => groups.concat(),
                PrefixWork::Whole(rows) => rows.clone(),
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..rows.len()).collect::<Vec<_>>());
    }

    /// Oracle: the grammar in the doc comment.
    #[test]
    fn trainable_parses_all_and_last_k() {
        assert_eq!(Trainable::parse("all"), Ok(Trainable::All));
        let last3 = Trainable::Last {
            blocks: 3,
            head: false,
        };
        assert_eq!(Trainable::parse("last:3"), Ok(last3));
        assert!(!last3.trains_head() && last3.with_head(true).trains_head());
        assert!(Trainable::All.with_head(false).trains_head());
        for bad in ["last:0", "last:", "last:x", "first:2", "ALL", ""] {
            assert!(Trainable::parse(bad).is_err(), "{bad}");
        }
    }
}
