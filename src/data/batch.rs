//! Host-built tensor batches of `[prompt, separator, response]` sequences.
//!
//! This module owns the one place where token ids leave the host: a [`SeqBatch`] holds a set of
//! right-padded sequences plus every index the model needs to read them (response positions,
//! separator and last-token rows), all built once on the host and uploaded in a handful of
//! tensors, so a training step runs no per-row host loop. A [`PairBatch`] stacks the chosen and
//! the rejected sequences of a set of preference pairs into ONE [`SeqBatch`] (chosen rows first),
//! so one backbone pass covers both sides of every pair.
//!
//! It knows nothing about the model or about losses: the gathers that use these indices live in
//! `model`.
//!
//! Layout of a batch of `N` sequences, padded to length `L`, longest response `R`:
//!
//! ```text
//! row b:      x_0 .. x_{P_b-1}  SEP  y_0 .. y_{R_b-1}  PAD .. PAD      (length L)
//! position:   0   .. P_b-1      P_b  P_b+1 .. P_b+R_b
//! sep_b  = P_b                 (the separator: last position before the response)
//! last_b = P_b + R_b           (the last real token)
//! response token y_i is predicted at position P_b + i, so its hidden-state row in the
//! flattened [N*L, d] hidden tensor is  b*L + P_b + i.
//! ```
//!
//! Padding uses the separator id. Any id would do: attention is causal, so a padded tail never
//! changes the hidden state of an earlier position, and padded response slots are masked out.

use super::PreferencePair;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

/// The padded `(L, R)` every batch of a run uses: the data's longest sequence
/// (`PreferenceData::max_seq_len()`) and longest response.
///
/// On a GPU every new tensor shape is a new autotune key and a new set of fused kernels
/// (issue 11), so a run fixes `L` and `R` once ([`fix_shapes`]) instead of letting them follow
/// each batch's longest row. Attention is causal and padded response slots are masked, so the
/// padding changes no result beyond float summation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedShape {
    /// Padded sequence length `L`.
    pub seq_len: usize,
    /// Response slots per row `R` (at least 1).
    pub response_slots: usize,
}

impl FixedShape {
    /// The shape of `data`: `L = max_seq_len()`, `R = max(1, max_response_len)`.
    pub fn of(data: &super::PreferenceData) -> Self {
        FixedShape {
            seq_len: data.max_seq_len(),
            response_slots: data.max_response_len.max(1),
        }
    }
}

/// The shape of one [`SeqBatch`] as built: `(rows N, seq_len L, response_slots R)`.
pub type BuiltShape = (usize, usize, usize);

thread_local! {
    static FIXED: Cell<Option<FixedShape>> = const { Cell::new(None) };
    static RECORDED: RefCell<Option<BTreeSet<BuiltShape>>> = const { RefCell::new(None) };
}

/// While the returned guard lives, every [`SeqBatch`] built on this thread is padded to `shape`
/// (a run is single-threaded; tests on other threads are unaffected). Dropping the guard
/// restores the previous setting.
pub fn fix_shapes(shape: FixedShape) -> FixedShapeGuard {
    FixedShapeGuard {
        previous: FIXED.with(|f| f.replace(Some(shape))),
    }
}

/// The shape batches are padded to on this thread, if one is fixed ([`fix_shapes`]).
pub fn fixed_shape() -> Option<FixedShape> {
    FIXED.with(Cell::get)
}

/// Restores the previous fixed shape when dropped (see [`fix_shapes`]).
#[derive(Debug)]
pub struct FixedShapeGuard {
    previous: Option<FixedShape>,
}

impl Drop for FixedShapeGuard {
    fn drop(&mut self) {
        FIXED.with(|f| f.set(self.previous));
    }
}

/// Run `f` and return, beside its result, the set of distinct shapes of every [`SeqBatch`]
/// built on this thread meanwhile (the shape-discipline test reads a whole run through it).
pub fn recording_shapes<R>(f: impl FnOnce() -> R) -> (R, BTreeSet<BuiltShape>) {
    let outer = RECORDED.with(|r| r.replace(Some(BTreeSet::new())));
    let out = f();
    let seen = RECORDED.with(|r| r.replace(outer)).unwrap_or_default();
    (out, seen)
}

fn record(shape: BuiltShape) {
    RECORDED.with(|r| {
        if let Some(set) = r.borrow_mut().as_mut() {
            set.insert(shape);
        }
    });
}

/// Rows per chunk when `n` sequences are processed `chunk` at a time with one shape:
/// `min(chunk, n)`, every chunk (the last one padded) that many rows.
pub fn chunk_rows(n: usize, chunk: usize) -> usize {
    chunk.min(n).max(1)
}

/// `N` right-padded `[prompt, separator, response]` sequences and their index tensors.
///
/// Build it with [`SeqBatch::new`]; every field is consistent with the layout in the module
/// docs. All tensors live on the device given at construction.
#[derive(Debug, Clone)]
pub struct SeqBatch<B: Backend> {
    /// Token ids `[N, L]`, right-padded with the separator id.
    pub ids: Tensor<B, 2, Int>,
    /// Rows of the flattened hidden states `[N*L, d]` that predict each response token,
    /// `[N*R]`, row-major over `(b, i)`: `b*L + P_b + i` (padding slots point at the separator
    /// row of their sequence and are masked out).
    pub response_rows: Tensor<B, 1, Int>,
    /// Response token ids `[N, R]`: `y_{b,i}`, 0 in padding slots.
    pub response_targets: Tensor<B, 2, Int>,
    /// `[N, R]`: 1.0 where `i < R_b` (a real response token), else 0.0.
    pub response_mask: Tensor<B, 2>,
    /// Response lengths `R_b` as floats, `[N]` (for length-normalised log-probs).
    pub response_lens: Tensor<B, 1>,
    /// Rows of the flattened hidden states at each separator, `[N]`: `b*L + P_b`.
    pub separator_rows: Tensor<B, 1, Int>,
    /// Rows of the flattened hidden states at each last real token, `[N]`: `b*L + P_b + R_b`.
    pub last_rows: Tensor<B, 1, Int>,
    /// Response lengths `R_b` on the host.
    pub response_lens_host: Vec<usize>,
    /// Number of sequences `N`.
    pub rows: usize,
    /// Padded sequence length `L = max_b (P_b + 1 + R_b)`, or the run's fixed `L`
    /// ([`fix_shapes`]).
    pub seq_len: usize,
    /// Response slots per row `R = max(1, max_b R_b)`, or the run's fixed `R`.
    pub response_slots: usize,
}

impl<B: Backend> SeqBatch<B> {
    /// Build a batch from `(prompt, response)` pairs joined by `separator`, on `device`.
    ///
    /// Empty prompts and empty responses are allowed (an empty response has sum log-prob 0 and
    /// its last token is the separator). An empty slice gives a batch of zero rows. While a
    /// shape is fixed on this thread ([`fix_shapes`]) `L` and `R` are the fixed ones.
    ///
    /// # Panics
    /// If a shape is fixed and a sequence or response is longer than it allows (the run fixes
    /// the data's own maxima, so this is a bug).
    pub fn new(seqs: &[(&[u32], &[u32])], separator: u32, device: &B::Device) -> Self {
        let n = seqs.len();
        let mut seq_len = seqs
            .iter()
            .map(|(p, r)| p.len() + 1 + r.len())
            .max()
            .unwrap_or(1);
        let mut response_slots = seqs.iter().map(|(_, r)| r.len()).max().unwrap_or(0).max(1);
        if let Some(fixed) = fixed_shape() {
            assert!(
                seq_len <= fixed.seq_len && response_slots <= fixed.response_slots,
                "batch needs (L {seq_len}, R {response_slots}) beyond the run's fixed shape \
                 (L {}, R {})",
                fixed.seq_len,
                fixed.response_slots
            );
            seq_len = fixed.seq_len;
            response_slots = fixed.response_slots;
        }
        record((n, seq_len, response_slots));

        let mut ids = Vec::with_capacity(n * seq_len);
        let mut response_rows = Vec::with_capacity(n * response_slots);
        let mut response_targets = Vec::with_capacity(n * response_slots);
        let mut response_mask = Vec::with_capacity(n * response_slots);
        let mut separator_rows = Vec::with_capacity(n);
        let mut last_rows = Vec::with_capacity(n);
        for (b, (prompt, response)) in seqs.iter().enumerate() {
            let base = (b * seq_len) as i64;
            let sep = prompt.len() as i64;
            ids.extend(prompt.iter().map(|&t| i64::from(t)));
            ids.push(i64::from(separator));
            ids.extend(response.iter().map(|&t| i64::from(t)));
            ids.resize((b + 1) * seq_len, i64::from(separator));
            for i in 0..response_slots {
                let real = i < response.len();
                response_rows.push(base + if real { sep + i as i64 } else { sep });
                response_targets.push(if real { i64::from(response[i]) } else { 0 });
                response_mask.push(if real { 1.0f32 } else { 0.0 });
            }
            separator_rows.push(base + sep);
            last_rows.push(base + sep + response.len() as i64);
        }
        let response_lens_host: Vec<usize> = seqs.iter().map(|(_, r)| r.len()).collect();
        let lens_f32: Vec<f32> = response_lens_host.iter().map(|&l| l as f32).collect();

        SeqBatch {
            ids: int2(ids, [n, seq_len], device),
            response_rows: int1(response_rows, device),
            response_targets: int2(response_targets, [n, response_slots], device),
            response_mask: Tensor::from_data(
                TensorData::new(response_mask, [n, response_slots]),
                device,
            ),
            response_lens: Tensor::from_data(TensorData::new(lens_f32, [n]), device),
            separator_rows: int1(separator_rows, device),
            last_rows: int1(last_rows, device),
            response_lens_host,
            rows: n,
            seq_len,
            response_slots,
        }
    }

    /// Build a batch from owned `(prompt, response)` pairs (warm-up samples, held-out sets).
    pub fn from_owned(seqs: &[(Vec<u32>, Vec<u32>)], separator: u32, device: &B::Device) -> Self {
        let borrowed: Vec<(&[u32], &[u32])> = seqs
            .iter()
            .map(|(p, r)| (p.as_slice(), r.as_slice()))
            .collect();
        Self::new(&borrowed, separator, device)
    }
}

impl<B: AutodiffBackend> SeqBatch<B> {
    /// The same batch on the inner (non-autodiff) backend, for graph-free evaluation
    /// (the frozen reference).
    pub fn inner(&self) -> SeqBatch<B::InnerBackend> {
        SeqBatch {
            ids: self.ids.clone().inner(),
            response_rows: self.response_rows.clone().inner(),
            response_targets: self.response_targets.clone().inner(),
            response_mask: self.response_mask.clone().inner(),
            response_lens: self.response_lens.clone().inner(),
            separator_rows: self.separator_rows.clone().inner(),
            last_rows: self.last_rows.clone().inner(),
            response_lens_host: self.response_lens_host.clone(),
            rows: self.rows,
            seq_len: self.seq_len,
            response_slots: self.response_slots,
        }
    }
}

/// A batch of preference pairs: the chosen and rejected sequences stacked in one [`SeqBatch`].
///
/// ```text
/// seqs rows 0 .. N      : (x_j, y_w,j)   chosen
/// seqs rows N .. 2N     : (x_j, y_l,j)   rejected
/// ```
///
/// One backbone pass over `seqs` serves both sides; [`PairBatch::split`] turns any per-row
/// result (`[2N, ...]`) back into `(chosen, rejected)` halves of `[N, ...]`, and
/// [`PairBatch::stack_codes`] repeats a per-pair code `[N, d]` for the `2N` rows.
#[derive(Debug, Clone)]
pub struct PairBatch<B: Backend> {
    /// Chosen rows then rejected rows, `2N` sequences.
    pub seqs: SeqBatch<B>,
    /// Number of pairs `N`.
    pub pairs: usize,
    /// Group label (true type in synthetic worlds) of each pair, `N`, on the host.
    pub groups: Vec<usize>,
    /// Annotator id of each pair, `N`, on the host.
    pub annotators: Vec<usize>,
}

impl<B: Backend> PairBatch<B> {
    /// Stack `pairs` into one batch of `2N` sequences on `device`.
    pub fn new(pairs: &[&PreferencePair], separator: u32, device: &B::Device) -> Self {
        let chosen = pairs
            .iter()
            .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()));
        let rejected = pairs
            .iter()
            .map(|p| (p.prompt.as_slice(), p.rejected.as_slice()));
        let seqs: Vec<(&[u32], &[u32])> = chosen.chain(rejected).collect();
        PairBatch {
            seqs: SeqBatch::new(&seqs, separator, device),
            pairs: pairs.len(),
            groups: pairs.iter().map(|p| p.group).collect(),
            annotators: pairs.iter().map(|p| p.annotator).collect(),
        }
    }

    /// Split a per-row result `[2N, ...]` into `(chosen [N, ...], rejected [N, ...])`.
    pub fn split<const D: usize>(&self, per_row: Tensor<B, D>) -> (Tensor<B, D>, Tensor<B, D>) {
        let chosen = per_row.clone().narrow(0, 0, self.pairs);
        let rejected = per_row.narrow(0, self.pairs, self.pairs);
        (chosen, rejected)
    }

    /// Repeat a per-pair tensor `[N, d]` for the stacked rows: `[z; z]`, `[2N, d]`.
    pub fn stack_codes(&self, per_pair: Tensor<B, 2>) -> Tensor<B, 2> {
        Tensor::cat(vec![per_pair.clone(), per_pair], 0)
    }
}

fn int1<B: Backend>(values: Vec<i64>, device: &B::Device) -> Tensor<B, 1, Int> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

fn int2<B: Backend>(values: Vec<i64>, shape: [usize; 2], device: &B::Device) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    type B = burn::backend::Flex;

    fn ints<const D: usize>(t: Tensor<B, D, Int>) -> Vec<i64> {
        t.into_data().convert::<i64>().to_vec::<i64>().unwrap()
    }

    #[test]
    fn layout_matches_the_documented_indices() {
        // Two rows: prompt [1,2], response [3] and prompt [4], response [5,6,7]; separator 9.
        // L = max(2+1+1, 1+1+3) = 5, R = 3. Expected values written from the module-doc layout.
        let device = Default::default();
        let a: (&[u32], &[u32]) = (&[1, 2], &[3]);
        let b: (&[u32], &[u32]) = (&[4], &[5, 6, 7]);
        let batch = SeqBatch::<B>::new(&[a, b], 9, &device);
        assert_eq!((batch.rows, batch.seq_len, batch.response_slots), (2, 5, 3));
        assert_eq!(ints(batch.ids), vec![1, 2, 9, 3, 9, 4, 9, 5, 6, 7]);
        // row 0: sep at 2 -> rows 2 (real), 2, 2 (padding); row 1: base 5, sep 1 -> 6, 7, 8.
        assert_eq!(ints(batch.response_rows), vec![2, 2, 2, 6, 7, 8]);
        assert_eq!(ints(batch.response_targets), vec![3, 0, 0, 5, 6, 7]);
        assert_eq!(
            batch.response_mask.into_data().to_vec::<f32>().unwrap(),
            vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(ints(batch.separator_rows), vec![2, 6]);
        assert_eq!(ints(batch.last_rows), vec![3, 9]);
        assert_eq!(batch.response_lens_host, vec![1, 3]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// For any ragged set of sequences, every index points where the module docs say:
        /// the row predicting response token i holds the token just before it, the separator
        /// row holds the separator, the last row holds the last real token, and the mask counts
        /// the response lengths.
        #[test]
        fn indices_point_at_the_right_tokens(
            seqs in proptest::collection::vec(
                (proptest::collection::vec(0u32..7, 0..5), proptest::collection::vec(0u32..7, 0..5)),
                1..6,
            )
        ) {
            let device = Default::default();
            let borrowed: Vec<(&[u32], &[u32])> =
                seqs.iter().map(|(p, r)| (p.as_slice(), r.as_slice())).collect();
            let batch = SeqBatch::<B>::new(&borrowed, 7, &device);
            let flat = ints(batch.ids.clone());
            let rows = ints(batch.response_rows.clone());
            let targets = ints(batch.response_targets.clone());
            let mask = batch.response_mask.clone().into_data().to_vec::<f32>().unwrap();
            let (l, r) = (batch.seq_len, batch.response_slots);
            for (b, (p, y)) in seqs.iter().enumerate() {
                for i in 0..r {
                    let row = rows[b * r + i] as usize;
                    proptest::prop_assert_eq!(row / l, b);
                    if i < y.len() {
                        // The token after the predicting position is the target.
                        proptest::prop_assert_eq!(flat[row + 1], i64::from(y[i]));
                        proptest::prop_assert_eq!(targets[b * r + i], i64::from(y[i]));
                        proptest::prop_assert_eq!(mask[b * r + i], 1.0);
                    } else {
                        proptest::prop_assert_eq!(mask[b * r + i], 0.0);
                    }
                }
                let sep = ints(batch.separator_rows.clone())[b] as usize;
                proptest::prop_assert_eq!(sep, b * l + p.len());
                proptest::prop_assert_eq!(flat[sep], 7);
                let last = ints(batch.last_rows.clone())[b] as usize;
                let want = if y.is_empty() { 7 } else { i64::from(y[y.len() - 1]) };
                proptest::prop_assert_eq!(flat[last], want);
                proptest::prop_assert_eq!(batch.response_lens_host[b], y.len());
            }
        }
    }

    #[test]
    fn a_fixed_shape_pads_every_batch_and_keeps_the_indices() {
        // Oracle: the layout doc with L and R replaced by the fixed (7, 4): row 0 = [1,2,9,3]
        // then three separators, row 1 = [4,9,5,6,7] then two; response rows b*7 + P_b + i.
        let device = Default::default();
        let a: (&[u32], &[u32]) = (&[1, 2], &[3]);
        let b: (&[u32], &[u32]) = (&[4], &[5, 6, 7]);
        let shape = FixedShape {
            seq_len: 7,
            response_slots: 4,
        };
        let (batch, seen) = recording_shapes(|| {
            let _fixed = fix_shapes(shape);
            SeqBatch::<B>::new(&[a, b], 9, &device)
        });
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![(2, 7, 4)]);
        assert_eq!(fixed_shape(), None, "the guard restores the unfixed state");
        assert_eq!(
            ints(batch.ids),
            vec![1, 2, 9, 3, 9, 9, 9, 4, 9, 5, 6, 7, 9, 9]
        );
        assert_eq!(ints(batch.response_rows), vec![2, 2, 2, 2, 8, 9, 10, 8]);
        assert_eq!(ints(batch.separator_rows), vec![2, 8]);
        assert_eq!(ints(batch.last_rows), vec![3, 11]);
        assert_eq!(chunk_rows(600, 256), 256);
        assert_eq!(chunk_rows(200, 256), 200);
    }

    #[test]
    #[should_panic(expected = "beyond the run's fixed shape")]
    fn a_sequence_longer_than_the_fixed_shape_is_refused() {
        let device = Default::default();
        let a: (&[u32], &[u32]) = (&[1, 2, 3], &[3]);
        let _fixed = fix_shapes(FixedShape {
            seq_len: 4,
            response_slots: 1,
        });
        let _ = SeqBatch::<B>::new(&[a], 9, &device);
    }

    #[test]
    fn pair_batch_stacks_chosen_then_rejected() {
        let device = Default::default();
        let pair = |c: u32, r: u32, g: usize| PreferencePair {
            prompt: vec![0],
            chosen: vec![c],
            rejected: vec![r],
            group: g,
            source: 0,
            annotator: 0,
            truth: None,
        };
        let (p, q) = (pair(1, 2, 0), pair(3, 4, 1));
        let batch = PairBatch::<B>::new(&[&p, &q], 5, &device);
        assert_eq!(batch.pairs, 2);
        assert_eq!(batch.groups, vec![0, 1]);
        assert_eq!(ints(batch.seqs.response_targets.clone()), vec![1, 3, 2, 4]);
        let per_row = Tensor::<B, 1>::from_floats([10.0, 11.0, 20.0, 21.0], &device);
        let (c, r) = batch.split(per_row);
        assert_eq!(c.into_data().to_vec::<f32>().unwrap(), vec![10.0, 11.0]);
        assert_eq!(r.into_data().to_vec::<f32>().unwrap(), vec![20.0, 21.0]);
    }
}
