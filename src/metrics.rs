//! Scores from predictions and ground truth, as plain functions on slices with `f64` results.
//!
//! Owns: partition agreement between predicted codes (clusters) and true types (classes) —
//! contingency table, NMI, ARI, purity, one-to-one Hungarian accuracy and the matching itself;
//! code usage (perplexity, active codes); binary preference accuracy with half credit for ties;
//! mean and standard deviation across seeds.
//!
//! Does not own: tensors (turn them into `f64`/`usize` at the boundary), files or formatting.
//!
//! Labels are arbitrary `usize` ids; only the labels that occur matter (a code never predicted is
//! not a row of the table). Everything runs from one contingency table built in one pass, so the
//! cost is `O(n + K T)` (Hungarian matching adds `O(min(K,T)^2 max(K,T))`).
//!
//! Conventions for degenerate inputs (no items, one cluster) follow scikit-learn where it defines
//! a value, with one exception: with no items every score here is `NaN` (undefined), where
//! scikit-learn returns 1.0 for NMI and ARI.

use std::collections::{BTreeMap, HashMap};

use pathfinding::prelude::{Matrix, kuhn_munkres};
use serde::Serialize;

/// Maps arbitrary labels to dense ids `0..len`, in increasing label order.
enum Relabel {
    /// `slot[label]` is the dense id (labels are small: a direct table is fastest).
    Table(Vec<u32>),
    /// Large, sparse labels.
    Map(HashMap<usize, u32>),
}

impl Relabel {
    /// Build the relabelling and return it with the distinct labels in increasing order.
    fn new(labels: &[usize]) -> (Relabel, Vec<usize>) {
        let max = labels.iter().copied().max().unwrap_or(0);
        if max <= labels.len().max(1 << 16) {
            let mut used = vec![false; max + 1];
            for &l in labels {
                used[l] = true;
            }
            let mut slot = vec![u32::MAX; max + 1];
            let mut values = Vec::new();
            for (label, _) in used.iter().enumerate().filter(|(_, u)| **u) {
                slot[label] = values.len() as u32;
                values.push(label);
            }
            (Relabel::Table(slot), values)
        } else {
            let mut values = labels.to_vec();
            values.sort_unstable();
            values.dedup();
            let map = values
                .iter()
                .enumerate()
                .map(|(i, &v)| (v, i as u32))
                .collect();
            (Relabel::Map(map), values)
        }
    }

    #[inline]
    fn id(&self, label: usize) -> usize {
        match self {
            Relabel::Table(slot) => slot[label] as usize,
            Relabel::Map(map) => map[&label] as usize,
        }
    }
}

/// Count of items per distinct label, in increasing label order.
fn label_counts(labels: &[usize]) -> Vec<u64> {
    let (relabel, values) = Relabel::new(labels);
    let mut counts = vec![0u64; values.len()];
    for &l in labels {
        counts[relabel.id(l)] += 1;
    }
    counts
}

/// Shannon entropy in nats of a count vector: `-sum_i (c_i/n) ln(c_i/n)`.
fn entropy(counts: &[u64]) -> f64 {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    let ln_n = (n as f64).ln();
    -counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| (c as f64 / n as f64) * ((c as f64).ln() - ln_n))
        .sum::<f64>()
}

/// The contingency table of predicted clusters (rows) against true classes (columns).
///
/// ```text
/// n_ij = #{items with pred = cluster_labels[i] and truth = class_labels[j]}
/// a_i  = sum_j n_ij (cluster sizes),  b_j = sum_i n_ij (class sizes),  n = sum_ij n_ij
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contingency {
    /// Distinct predicted labels, increasing: row `i` is `cluster_labels[i]`.
    pub cluster_labels: Vec<usize>,
    /// Distinct true labels, increasing: column `j` is `class_labels[j]`.
    pub class_labels: Vec<usize>,
    /// Row-major `clusters × classes` counts.
    counts: Vec<u64>,
    /// Number of items.
    pub n: u64,
}

impl Contingency {
    /// Build the table in one pass over the items.
    ///
    /// # Panics
    /// If `pred` and `truth` differ in length (a caller bug: they label the same items).
    pub fn new(pred: &[usize], truth: &[usize]) -> Contingency {
        assert_eq!(
            pred.len(),
            truth.len(),
            "pred and truth must label the same items"
        );
        let (rows, cluster_labels) = Relabel::new(pred);
        let (cols, class_labels) = Relabel::new(truth);
        let t = class_labels.len();
        let mut counts = vec![0u64; cluster_labels.len() * t];
        for (&p, &c) in pred.iter().zip(truth) {
            counts[rows.id(p) * t + cols.id(c)] += 1;
        }
        Contingency {
            cluster_labels,
            class_labels,
            counts,
            n: pred.len() as u64,
        }
    }

    /// Number of distinct predicted labels K.
    pub fn clusters(&self) -> usize {
        self.cluster_labels.len()
    }

    /// Number of distinct true labels T.
    pub fn classes(&self) -> usize {
        self.class_labels.len()
    }

    /// `n_ij` for row `i`, column `j` (dense indices, not labels).
    pub fn count(&self, i: usize, j: usize) -> u64 {
        self.counts[i * self.classes() + j]
    }

    /// Row `i` of the table.
    pub fn row(&self, i: usize) -> &[u64] {
        let t = self.classes();
        &self.counts[i * t..(i + 1) * t]
    }

    /// Cluster sizes `a_i`.
    pub fn cluster_sizes(&self) -> Vec<u64> {
        (0..self.clusters())
            .map(|i| self.row(i).iter().sum())
            .collect()
    }

    /// Class sizes `b_j`.
    pub fn class_sizes(&self) -> Vec<u64> {
        let mut b = vec![0u64; self.classes()];
        for i in 0..self.clusters() {
            for (bj, &c) in b.iter_mut().zip(self.row(i)) {
                *bj += c;
            }
        }
        b
    }

    /// Mutual information in nats: `sum_ij (n_ij/n) ln(n n_ij / (a_i b_j))`, clipped at 0.
    pub fn mutual_information(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let (a, b) = (self.cluster_sizes(), self.class_sizes());
        let n = self.n as f64;
        let ln_n = n.ln();
        let mut mi = 0.0;
        for (i, &ai) in a.iter().enumerate() {
            let ln_ai = (ai as f64).ln();
            for (j, &bj) in b.iter().enumerate() {
                let nij = self.count(i, j);
                if nij > 0 {
                    let nij = nij as f64;
                    mi += (nij / n) * (nij.ln() + ln_n - ln_ai - (bj as f64).ln());
                }
            }
        }
        mi.max(0.0)
    }

    /// Normalised mutual information with the arithmetic-mean normaliser (scikit-learn's
    /// default, `average_method="arithmetic"`).
    ///
    /// ```text
    /// NMI = MI / ((H(pred) + H(truth)) / 2)                   range [0, 1]
    /// ```
    /// Degenerate cases: both sides a single label → 1 (the same trivial partition); exactly one
    /// side a single label → 0 (it carries no information); no items → NaN. The first two are
    /// scikit-learn's conventions.
    pub fn nmi(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let (k, t) = (self.clusters(), self.classes());
        if k == 1 && t == 1 {
            return 1.0;
        }
        if k == 1 || t == 1 {
            return 0.0;
        }
        let mi = self.mutual_information();
        if mi == 0.0 {
            return 0.0;
        }
        let h = (entropy(&self.cluster_sizes()) + entropy(&self.class_sizes())) / 2.0;
        (mi / h).clamp(0.0, 1.0)
    }

    /// Adjusted Rand index (Hubert & Arabie 1985), from the pair confusion counts in exact
    /// integer arithmetic (as scikit-learn ≥ 0.24 computes it).
    ///
    /// ```text
    /// ordered pairs of distinct items:  tp = same cluster, same class;  fp = same cluster only;
    ///                                   fn = same class only;           tn = neither
    /// ARI = 2 (tp tn - fn fp) / ((tp + fn)(fn + tn) + (tp + fp)(fp + tn))
    ///     = (sum_ij C(n_ij,2) - E) / ((sum_i C(a_i,2) + sum_j C(b_j,2))/2 - E),
    ///       E = sum_i C(a_i,2) sum_j C(b_j,2) / C(n,2)
    /// ```
    /// Range `[-1/2, 1]`, about 0 for independent partitions, 1 for identical ones. When
    /// `fp = fn = 0` (identical partitions, including one item, one cluster on both sides, or all
    /// singletons on both sides) it is 1; no items → NaN.
    pub fn ari(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let n = self.n as i128;
        let sq = |v: u64| (v as i128) * (v as i128);
        let sum_squares: i128 = self.counts.iter().map(|&c| sq(c)).sum();
        let same_cluster: i128 = self.cluster_sizes().into_iter().map(sq).sum();
        let same_class: i128 = self.class_sizes().into_iter().map(sq).sum();
        let tp = sum_squares - n;
        let fp = same_cluster - sum_squares;
        let fn_ = same_class - sum_squares;
        let tn = n * n - fp - fn_ - sum_squares;
        if fp == 0 && fn_ == 0 {
            return 1.0;
        }
        let num = 2 * (tp * tn - fn_ * fp);
        let den = (tp + fn_) * (fn_ + tn) + (tp + fp) * (fp + tn);
        num as f64 / den as f64
    }

    /// Purity: each cluster takes its majority class (many-to-one), and the score is the
    /// fraction of items that agree.
    ///
    /// ```text
    /// purity = (1/n) sum_i max_j n_ij                         range (0, 1]; NaN with no items
    /// ```
    pub fn purity(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let hits: u64 = (0..self.clusters())
            .map(|i| self.row(i).iter().copied().max().unwrap_or(0))
            .sum();
        hits as f64 / self.n as f64
    }

    /// The many-to-one map behind [`purity`](Self::purity): cluster label → its majority class
    /// label (ties go to the smaller class label).
    pub fn majority_map(&self) -> BTreeMap<usize, usize> {
        (0..self.clusters())
            .map(|i| {
                let row = self.row(i);
                let best = (0..row.len())
                    .max_by_key(|&j| (row[j], std::cmp::Reverse(j)))
                    .unwrap_or(0);
                (self.cluster_labels[i], self.class_labels[best])
            })
            .collect()
    }

    /// The best one-to-one assignment as dense `(row, column)` index pairs, `min(K, T)` of them.
    /// `kuhn_munkres` needs rows <= columns, so a tall table is solved transposed.
    fn assignment(&self) -> Vec<(usize, usize)> {
        let (k, t) = (self.clusters(), self.classes());
        if self.n == 0 {
            Vec::new()
        } else if k <= t {
            let weights = Matrix::from_fn(k, t, |(i, j)| self.count(i, j) as i64);
            let (_, cols) = kuhn_munkres(&weights);
            cols.into_iter().enumerate().collect()
        } else {
            let weights = Matrix::from_fn(t, k, |(j, i)| self.count(i, j) as i64);
            let (_, rows) = kuhn_munkres(&weights);
            rows.into_iter().enumerate().map(|(j, i)| (i, j)).collect()
        }
    }

    /// The one-to-one matching of clusters to classes that maximises the number of agreeing
    /// items (Hungarian algorithm, `pathfinding::kuhn_munkres`), as cluster label → class label.
    /// It has `min(K, T)` entries: with more clusters than classes some clusters stay unmatched,
    /// and vice versa. Among equally good matchings the solver's choice is kept. Empty with no
    /// items.
    pub fn matching(&self) -> BTreeMap<usize, usize> {
        self.assignment()
            .into_iter()
            .map(|(i, j)| (self.cluster_labels[i], self.class_labels[j]))
            .collect()
    }

    /// One-to-one matched accuracy: the fraction of items whose cluster is matched to their
    /// class under the best one-to-one matching ([`matching`](Self::matching)).
    ///
    /// ```text
    /// acc = (1/n) max_{injective m} sum_i n_{i, m(i)}         range (0, 1]; NaN with no items
    /// ```
    pub fn matched_accuracy(&self) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let hits: u64 = self
            .assignment()
            .into_iter()
            .map(|(i, j)| self.count(i, j))
            .sum();
        hits as f64 / self.n as f64
    }
}

/// The contingency table of `pred` against `truth` (see [`Contingency`]).
pub fn contingency(pred: &[usize], truth: &[usize]) -> Contingency {
    Contingency::new(pred, truth)
}

/// NMI of `pred` against `truth` (see [`Contingency::nmi`]).
pub fn nmi(pred: &[usize], truth: &[usize]) -> f64 {
    Contingency::new(pred, truth).nmi()
}

/// ARI of `pred` against `truth` (see [`Contingency::ari`]).
pub fn ari(pred: &[usize], truth: &[usize]) -> f64 {
    Contingency::new(pred, truth).ari()
}

/// Purity of `pred` against `truth` (see [`Contingency::purity`]).
pub fn purity(pred: &[usize], truth: &[usize]) -> f64 {
    Contingency::new(pred, truth).purity()
}

/// One-to-one Hungarian accuracy of `pred` against `truth` (see
/// [`Contingency::matched_accuracy`]).
pub fn matched_accuracy(pred: &[usize], truth: &[usize]) -> f64 {
    Contingency::new(pred, truth).matched_accuracy()
}

/// The best one-to-one code → type map (see [`Contingency::matching`]).
pub fn matching(pred: &[usize], truth: &[usize]) -> BTreeMap<usize, usize> {
    Contingency::new(pred, truth).matching()
}

/// Every partition score at once, from one contingency table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PartitionScores {
    /// Number of items.
    pub n: u64,
    /// Normalised mutual information (arithmetic-mean normalisation), in [0, 1].
    pub nmi: f64,
    /// Adjusted Rand index, 0 in expectation for random labels, 1 for equal partitions.
    pub ari: f64,
    /// Purity: the share of items whose predicted label's majority true label is theirs.
    pub purity: f64,
    /// Accuracy under the best one-to-one matching of predicted to true labels.
    pub matched_accuracy: f64,
    /// Distinct predicted labels K.
    pub clusters: usize,
    /// Distinct true labels T.
    pub classes: usize,
}

impl Contingency {
    /// NMI, ARI, purity and matched accuracy of this table.
    pub fn scores(&self) -> PartitionScores {
        PartitionScores {
            n: self.n,
            nmi: self.nmi(),
            ari: self.ari(),
            purity: self.purity(),
            matched_accuracy: self.matched_accuracy(),
            clusters: self.clusters(),
            classes: self.classes(),
        }
    }
}

/// NMI, ARI, purity and matched accuracy of `pred` against `truth`.
pub fn partition_scores(pred: &[usize], truth: &[usize]) -> PartitionScores {
    Contingency::new(pred, truth).scores()
}

/// Fraction of items a code must label to count as active (METHOD.md §3: 1 %).
pub const ACTIVE_CODE_FRACTION: f64 = 0.01;

/// Perplexity of code usage: the exponential of the entropy (nats) of the empirical code
/// frequencies.
///
/// ```text
/// f_k = #{items with code k} / n;   perplexity = exp(-sum_k f_k ln f_k)
/// ```
/// Range `[1, number of distinct codes]`: 1 when one code takes everything, K when K codes are
/// used equally. NaN with no items.
pub fn code_perplexity(codes: &[usize]) -> f64 {
    if codes.is_empty() {
        return f64::NAN;
    }
    entropy(&label_counts(codes)).exp()
}

/// Information the code distributions carry about their inputs, in nats: the mutual information
/// between an item `i` (uniform over the rows) and a code `z ~ probs[i]`.
///
/// ```text
/// I(i; z) = H( (1/n) sum_i probs_i ) - (1/n) sum_i H(probs_i)
/// ```
/// 0 when every row is the same distribution (however peaked), `ln K` at most. By the data
/// processing inequality it bounds the information the codes can carry about any label of the
/// items ([`type_code_information`]). An argmax over nearly flat rows can still give a high
/// NMI; this number shows how much the distributions themselves say. NaN with no rows.
pub fn code_information(probs: &[Vec<f64>]) -> f64 {
    if probs.is_empty() {
        return f64::NAN;
    }
    let mean_entropy =
        probs.iter().map(|r| distribution_entropy(r)).sum::<f64>() / probs.len() as f64;
    (distribution_entropy(&mean_row(probs.iter(), probs.len())) - mean_entropy).max(0.0)
}

/// Information the code distributions carry about a label (the true type), in nats: the mutual
/// information between `truth` and a code drawn from each item's row.
///
/// ```text
/// I(t; z) = H( mean_i probs_i ) - sum_t (n_t / n) H( mean_{i: truth_i = t} probs_i )
/// ```
/// `0 <= I(t; z) <= min(H(t), I(i; z))`; equal to `H(t)` when each type's rows are one-hot on
/// codes of their own. Divide by `H(t)` for the fraction of the type's entropy the soft codes
/// recover. NaN with no rows.
pub fn type_code_information(probs: &[Vec<f64>], truth: &[usize]) -> f64 {
    assert_eq!(probs.len(), truth.len(), "one label per row");
    if probs.is_empty() {
        return f64::NAN;
    }
    let n = probs.len() as f64;
    // Distinct types in increasing order, with their counts in the same order.
    let (_, types) = Relabel::new(truth);
    let within: f64 = types
        .into_iter()
        .zip(label_counts(truth))
        .map(|(t, count)| {
            let count = count as usize;
            let rows = probs.iter().zip(truth).filter(|&(_, &u)| u == t);
            count as f64 / n * distribution_entropy(&mean_row(rows.map(|(r, _)| r), count))
        })
        .sum();
    (distribution_entropy(&mean_row(probs.iter(), probs.len())) - within).max(0.0)
}

/// Entropy (nats) of one distribution; zero entries contribute 0.
fn distribution_entropy(p: &[f64]) -> f64 {
    -p.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * x.ln())
        .sum::<f64>()
}

/// The element-wise mean of `count` equally long rows (accumulated as `sum_r row / count`).
fn mean_row<'a>(rows: impl Iterator<Item = &'a Vec<f64>>, count: usize) -> Vec<f64> {
    let mut m: Vec<f64> = Vec::new();
    for r in rows {
        m.resize(r.len(), 0.0);
        for (a, b) in m.iter_mut().zip(r) {
            *a += b / count as f64;
        }
    }
    m
}

/// Number of codes that label at least `min_fraction` of the items
/// (`count_k / n >= min_fraction`; use [`ACTIVE_CODE_FRACTION`]). 0 with no items.
pub fn active_codes(codes: &[usize], min_fraction: f64) -> usize {
    if codes.is_empty() {
        return 0;
    }
    let n = codes.len() as f64;
    label_counts(codes)
        .into_iter()
        .filter(|&c| c as f64 / n >= min_fraction)
        .count()
}

/// A pair's predicted preference from a reward margin `r(chosen) - r(rejected)`:
/// 1 if positive, 0 if negative, 1/2 on an exact tie; NaN stays NaN (a diverged model is not
/// silently scored).
///
/// This and [`preference_credit`] are the crate's one accuracy rule: every preference accuracy
/// (of a model's margins, a baseline's rule, the world's reference predictors) scores a pair as
/// `preference_credit(margin_prediction(margin), target)`, so a tie counts 1/2 and a NaN margin
/// makes the accuracy NaN.
pub fn margin_prediction(margin: f64) -> f64 {
    if margin > 0.0 {
        1.0
    } else if margin < 0.0 {
        0.0
    } else if margin == 0.0 {
        0.5
    } else {
        f64::NAN
    }
}

/// Agreement of one prediction with one target, both in `[0, 1]` (1 = "chosen wins"): the
/// chance that two independent draws from them agree.
///
/// ```text
/// credit = p t + (1 - p)(1 - t)          range [0, 1]
/// ```
/// For 0/1 values this is 1 on agreement and 0 otherwise; a tie on either side (0.5) earns half
/// credit; NaN stays NaN.
pub fn preference_credit(prediction: f64, target: f64) -> f64 {
    prediction * target + (1.0 - prediction) * (1.0 - target)
}

/// Mean agreement between predictions and targets ([`preference_credit`] averaged):
///
/// ```text
/// acc = (1/n) sum_i [p_i t_i + (1 - p_i)(1 - t_i)]          range [0, 1]; NaN with no items
/// ```
///
/// # Panics
/// If the slices differ in length.
pub fn binary_accuracy(predictions: &[f64], targets: &[f64]) -> f64 {
    assert_eq!(
        predictions.len(),
        targets.len(),
        "predictions and targets must have the same length"
    );
    let agree: Vec<f64> = predictions
        .iter()
        .zip(targets)
        .map(|(&p, &t)| preference_credit(p, t))
        .collect();
    mean(&agree)
}

/// Preference accuracy of reward margins against targets in `[0, 1]`
/// ([`margin_prediction`] then [`binary_accuracy`]).
pub fn margin_accuracy(margins: &[f64], targets: &[f64]) -> f64 {
    let predictions: Vec<f64> = margins.iter().map(|&m| margin_prediction(m)).collect();
    binary_accuracy(&predictions, targets)
}

/// Preference accuracy of reward margins against the observed labels (the chosen response is
/// the label): [`margin_accuracy`] with every target 1.
pub fn observed_accuracy(margins: &[f64]) -> f64 {
    margin_accuracy(margins, &vec![1.0; margins.len()])
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Sample standard deviation (`n - 1` denominator, as across seeds); NaN for fewer than two
/// values.
///
/// ```text
/// s = sqrt( sum_i (x_i - mean)^2 / (n - 1) )
/// ```
pub fn sample_std(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return f64::NAN;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// A mean and its sample standard deviation over `n` values (e.g. seeds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    /// Number of values.
    pub n: usize,
    /// NaN when `n = 0`.
    pub mean: f64,
    /// NaN when `n < 2`.
    pub std: f64,
}

/// [`mean`] and [`sample_std`] together.
pub fn mean_std(xs: &[f64]) -> MeanStd {
    MeanStd {
        n: xs.len(),
        mean: mean(xs),
        std: sample_std(xs),
    }
}

impl std::fmt::Display for MeanStd {
    /// `0.935 ± 0.012` (precision from the format, default 3); the mean alone when the
    /// standard deviation is undefined.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(3);
        if self.std.is_nan() {
            write!(f, "{:.p$}", self.mean)
        } else {
            write!(f, "{:.p$} ± {:.p$}", self.mean, self.std)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::RngExt;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    // Case A, used for the hand computation below and in tests/score.rs:
    // pred  = [0, 0, 1, 1, 2, 2, 2, 0], truth = [0, 0, 0, 1, 1, 1, 2, 2]
    const A_PRED: [usize; 8] = [0, 0, 1, 1, 2, 2, 2, 0];
    const A_TRUTH: [usize; 8] = [0, 0, 0, 1, 1, 1, 2, 2];

    #[test]
    fn hand_computed_case() {
        let c = contingency(&A_PRED, &A_TRUTH);
        // Rows pred 0, 1, 2 (items {0,1,7}, {2,3}, {4,5,6}); columns truth 0, 1, 2.
        assert_eq!(c.row(0), &[2, 0, 1]);
        assert_eq!(c.row(1), &[1, 1, 0]);
        assert_eq!(c.row(2), &[0, 2, 1]);
        assert_eq!(c.cluster_sizes(), vec![3, 2, 3]);
        assert_eq!(c.class_sizes(), vec![3, 3, 2]);
        // purity = (2 + 1 + 2) / 8
        assert_eq!(c.purity(), 5.0 / 8.0);
        // One-to-one: the best matchings total 4 (e.g. 0->0: 2, 2->1: 2, 1->2: 0) -> 4/8.
        assert_eq!(c.matched_accuracy(), 0.5);
        // ARI: sum C(n_ij,2) = 1 + 1 = 2; sum C(a_i,2) = 3 + 1 + 3 = 7; sum C(b_j,2) = 3 + 3 + 1 = 7;
        // E = 7 * 7 / C(8,2) = 49/28 = 1.75; ARI = (2 - 1.75) / (7 - 1.75) = 0.25 / 5.25 = 1/21.
        assert!(close(c.ari(), 1.0 / 21.0, 1e-15));
        // NMI: MI = sum (n_ij/8) ln(8 n_ij / (a_i b_j))
        //  = 2/8 ln(16/9) + 1/8 ln(8/6) + 1/8 ln(8/6) + 1/8 ln(8/6) + 2/8 ln(16/9) + 1/8 ln(8/6)
        //  = 1/2 ln(16/9) + 1/2 ln(4/3) = 0.287682 + 0.143841 = 0.431523
        // H(pred) = H(truth) = -(2 * 3/8 ln(3/8) + 2/8 ln(2/8)) = 0.735622 + 0.346574 = 1.082196
        // NMI = 0.431523 / 1.082196 = 0.398748
        let mi = 0.5 * (16.0f64 / 9.0).ln() + 0.5 * (4.0f64 / 3.0).ln();
        let h = -(0.75 * (3.0f64 / 8.0).ln() + 0.25 * 0.25f64.ln());
        assert!(close(c.mutual_information(), mi, 1e-15));
        assert!(close(c.nmi(), mi / h, 1e-15));
    }

    /// Reference values from scikit-learn 1.9.1 (`normalized_mutual_info_score(truth, pred)`,
    /// `adjusted_rand_score(truth, pred)`), purity from its `contingency_matrix`
    /// (`c.max(axis=0).sum() / n`) and matched accuracy from scipy 1.17.1
    /// `linear_sum_assignment(-c)`, run once on these inputs.
    #[test]
    fn matches_scikit_learn() {
        let f_pred: Vec<usize> = (0..200).map(|i| (i * 7 + i * i) % 5).collect();
        let f_truth: Vec<usize> = (0..200)
            .map(|i| {
                if i % 3 != 0 {
                    (i * 3 + 1) % 4
                } else {
                    (i / 3) % 4
                }
            })
            .collect();
        #[allow(clippy::type_complexity)]
        let cases: Vec<(Vec<usize>, Vec<usize>, [f64; 4])> = vec![
            (
                A_PRED.to_vec(),
                A_TRUTH.to_vec(),
                [0.3987478202411471, 0.047619047619047616, 0.625, 0.5],
            ),
            (
                vec![0, 1, 2, 3, 0, 1, 2, 3, 4, 4],
                vec![0, 0, 1, 1, 0, 0, 1, 1, 1, 0],
                [0.48164799306236983, 0.17297297297297298, 0.9, 0.4],
            ),
            (
                vec![7, 7, 3, 3, 100, 3],
                vec![1, 1, 2, 2, 2, 5],
                [0.6853314789615863, 0.3181818181818182, 5.0 / 6.0, 4.0 / 6.0],
            ),
            (vec![0, 0, 0, 0], vec![0, 1, 0, 1], [0.0, 0.0, 0.5, 0.5]),
            (vec![5, 5, 5], vec![2, 2, 2], [1.0, 1.0, 1.0, 1.0]),
            (
                f_pred,
                f_truth,
                [0.0011480388059748824, -0.010253761692225236, 0.265, 0.265],
            ),
        ];
        for (pred, truth, [n, a, p, m]) in cases {
            let s = partition_scores(&pred, &truth);
            assert!(close(s.nmi, n, 1e-12), "nmi {} vs {n} for {pred:?}", s.nmi);
            assert!(close(s.ari, a, 1e-12), "ari {} vs {a} for {pred:?}", s.ari);
            assert!(close(s.purity, p, 1e-12), "purity {} vs {p}", s.purity);
            assert!(
                close(s.matched_accuracy, m, 1e-12),
                "matched {} vs {m}",
                s.matched_accuracy
            );
        }
    }

    #[test]
    fn degenerate_cases() {
        let empty = partition_scores(&[], &[]);
        assert_eq!((empty.n, empty.clusters, empty.classes), (0, 0, 0));
        assert!(empty.nmi.is_nan() && empty.ari.is_nan() && empty.purity.is_nan());
        assert!(empty.matched_accuracy.is_nan());
        // One item: one cluster and one class on both sides.
        let one = partition_scores(&[3], &[9]);
        assert_eq!(
            (one.nmi, one.ari, one.purity, one.matched_accuracy),
            (1.0, 1.0, 1.0, 1.0)
        );
        // All singletons on both sides: identical partitions (fp = fn = 0).
        assert_eq!(ari(&[0, 1, 2, 3], &[3, 2, 1, 0]), 1.0);
        assert_eq!(nmi(&[0, 1, 2, 3], &[3, 2, 1, 0]), 1.0);
        // Truth a single class, pred split in two: NMI 0 by convention. ARI from the ordered
        // pair counts: n_ij = [[2], [2]], sum n_ij^2 = 8, tp = 8 - 4 = 4, fp = sum a_i^2 - 8 = 0,
        // fn = sum b_j^2 - 8 = 16 - 8 = 8, tn = 16 - 0 - 8 - 8 = 0
        // -> ARI = 2 (4*0 - 8*0) / ((4+8)(8+0) + (4+0)(0+0)) = 0.
        assert_eq!(nmi(&[0, 0, 1, 1], &[4, 4, 4, 4]), 0.0);
        assert_eq!(ari(&[0, 0, 1, 1], &[4, 4, 4, 4]), 0.0);
        assert_eq!(purity(&[0, 0, 1, 1], &[4, 4, 4, 4]), 1.0);
        assert_eq!(matched_accuracy(&[0, 0, 1, 1], &[4, 4, 4, 4]), 0.5);
    }

    #[test]
    fn matching_maps_codes_to_types() {
        // Codes 10, 11, 12 vs types 0, 1: code 10 is type 1, code 11 is type 0, code 12 mixed.
        let pred = [10, 10, 10, 11, 11, 12, 12, 12];
        let truth = [1, 1, 1, 0, 0, 0, 1, 0];
        // Rows 10: [0, 3], 11: [2, 0], 12: [2, 1]. Best one-to-one total 5, reached by
        // {10->1, 11->0} and {10->1, 12->0}: both send 10 to 1, so check that and the total.
        let m = matching(&pred, &truth);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&10), Some(&1));
        let c = contingency(&pred, &truth);
        assert_eq!(c.matched_accuracy(), 5.0 / 8.0);
        // Many-to-one: 10 -> 1, 11 -> 0, 12 -> 0 (2 of 3).
        let major = c.majority_map();
        assert_eq!(major, BTreeMap::from([(10, 1), (11, 0), (12, 0)]));
        assert_eq!(c.purity(), (3.0 + 2.0 + 2.0) / 8.0);
    }

    #[test]
    fn sparse_huge_labels_give_the_same_scores() {
        // Labels far above n take the hash-map path; scores depend only on the partition.
        let pred: Vec<usize> = A_PRED.iter().map(|&l| l * 1_000_000_007 + 5).collect();
        let truth: Vec<usize> = A_TRUTH.iter().map(|&l| usize::MAX - l).collect();
        assert_eq!(
            partition_scores(&pred, &truth),
            partition_scores(&A_PRED, &A_TRUTH)
        );
    }

    #[test]
    fn code_information_closed_forms() {
        // Oracles: identical rows carry no information however peaked; one-hot rows on a code
        // per type carry H(t) = ln 2 about a balanced type and about the items; uniform mixing
        // of two one-hot halves within each type carries ln 2 about the items but 0 about it.
        let peaked = vec![vec![0.9, 0.1]; 4];
        assert!(code_information(&peaked).abs() < 1e-12);
        assert!(type_code_information(&peaked, &[0, 0, 1, 1]).abs() < 1e-12);
        let onehot = vec![
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, 1.0],
        ];
        let ln2 = 2f64.ln();
        assert!(close(code_information(&onehot), ln2, 1e-12));
        assert!(close(
            type_code_information(&onehot, &[0, 0, 1, 1]),
            ln2,
            1e-12
        ));
        assert!(type_code_information(&onehot, &[0, 1, 0, 1]).abs() < 1e-12);
        // A hand-computed case: rows (1/2, 1/2) and (1, 0), one per type.
        // H(mean) = H(3/4, 1/4); within = 1/2 ln 2 + 0.
        let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        let rows = vec![vec![0.5, 0.5], vec![1.0, 0.0]];
        assert!(close(
            type_code_information(&rows, &[0, 1]),
            h - 0.5 * ln2,
            1e-12
        ));
        assert!(close(code_information(&rows), h - 0.5 * ln2, 1e-12));
        assert!(code_information(&[]).is_nan());
    }

    #[test]
    fn code_usage() {
        // Uniform over 4 codes: H = ln 4, perplexity 4.
        assert!(close(
            code_perplexity(&[0, 1, 2, 3, 3, 2, 1, 0]),
            4.0,
            1e-12
        ));
        assert_eq!(code_perplexity(&[7, 7, 7]), 1.0);
        // Frequencies 1/3, 2/3: H = -(1/3 ln 1/3 + 2/3 ln 2/3) = 0.366204 + 0.270310 = 0.636514;
        // exp(H) = 1.889882
        let h = -(1.0f64 / 3.0 * (1.0f64 / 3.0).ln() + 2.0 / 3.0 * (2.0f64 / 3.0).ln());
        assert!(close(code_perplexity(&[0, 0, 1, 1, 1, 1]), h.exp(), 1e-12));
        assert!(close(h.exp(), 1.889_881_574_8, 1e-9));
        assert!(code_perplexity(&[]).is_nan());
        // 100 items: code 1 used once = exactly 1 % -> active; 101 items -> 0.99 % -> not.
        let mut codes = vec![0usize; 99];
        codes.push(1);
        assert_eq!(active_codes(&codes, ACTIVE_CODE_FRACTION), 2);
        codes.push(0);
        assert_eq!(active_codes(&codes, ACTIVE_CODE_FRACTION), 1);
        assert_eq!(active_codes(&[], ACTIVE_CODE_FRACTION), 0);
    }

    #[test]
    fn binary_accuracy_with_ties() {
        assert_eq!(margin_prediction(0.3), 1.0);
        assert_eq!(margin_prediction(-2.0), 0.0);
        assert_eq!(margin_prediction(0.0), 0.5);
        assert!(margin_prediction(f64::NAN).is_nan());
        // Observed labels: margins right, wrong, tie, right -> (1 + 0 + 0.5 + 1) / 4
        assert_eq!(observed_accuracy(&[1.0, -1.0, 0.0, 4.0]), 0.625);
        // Against targets: (m>0, t=1) 1; (m>0, t=0) 0; (tie, t=0) 0.5; (m<0, t=0.5) 0.5
        assert_eq!(
            margin_accuracy(&[1.0, 1.0, 0.0, -1.0], &[1.0, 0.0, 0.0, 0.5]),
            0.5
        );
        assert_eq!(binary_accuracy(&[1.0, 0.0], &[1.0, 0.0]), 1.0);
        assert!(binary_accuracy(&[], &[]).is_nan());
        // A tie on both sides: two fair coins agree half the time, p t + (1-p)(1-t) = 1/2.
        assert_eq!(preference_credit(0.5, 0.5), 0.5);
        assert!(preference_credit(f64::NAN, 1.0).is_nan());
        assert!(margin_accuracy(&[1.0, f64::NAN], &[1.0, 1.0]).is_nan());
    }

    #[test]
    fn mean_and_std() {
        // mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5; s = sqrt(5/3) = 1.290994
        let s = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!((s.n, s.mean), (4, 2.5));
        assert!(close(s.std, (5.0f64 / 3.0).sqrt(), 1e-15));
        assert_eq!(format!("{s}"), "2.500 ± 1.291");
        assert_eq!(format!("{s:.1}"), "2.5 ± 1.3");
        let one = mean_std(&[0.9]);
        assert!(one.std.is_nan());
        assert_eq!(format!("{one}"), "0.900");
        assert!(mean(&[]).is_nan());
    }

    /// Labels `0..k` for `n` items, at most 6 distinct on each side (so brute force is cheap).
    fn labelling() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        (1usize..120, 1usize..7, 1usize..7).prop_flat_map(|(n, k, t)| {
            (
                proptest::collection::vec(0..k, n),
                proptest::collection::vec(0..t, n),
            )
        })
    }

    /// The best total over injective maps from the smaller side, by brute force.
    fn brute_force_matched(c: &Contingency) -> u64 {
        fn best(c: &Contingency, i: usize, used: &mut Vec<bool>, transposed: bool) -> u64 {
            let (rows, cols) = if transposed {
                (c.classes(), c.clusters())
            } else {
                (c.clusters(), c.classes())
            };
            if i == rows {
                return 0;
            }
            let mut top = 0;
            for j in 0..cols {
                if !used[j] {
                    used[j] = true;
                    let w = if transposed {
                        c.count(j, i)
                    } else {
                        c.count(i, j)
                    };
                    top = top.max(w + best(c, i + 1, used, transposed));
                    used[j] = false;
                }
            }
            top
        }
        let transposed = c.clusters() > c.classes();
        let cols = c.clusters().max(c.classes());
        best(c, 0, &mut vec![false; cols], transposed)
    }

    proptest! {
        #[test]
        fn scores_stay_in_range((pred, truth) in labelling()) {
            let s = partition_scores(&pred, &truth);
            prop_assert!((0.0..=1.0).contains(&s.nmi));
            prop_assert!((-0.5..=1.0).contains(&s.ari));
            prop_assert!(s.purity > 0.0 && s.purity <= 1.0);
            prop_assert!(s.matched_accuracy > 0.0 && s.matched_accuracy <= s.purity);
            // NMI and ARI are symmetric in their arguments.
            let r = partition_scores(&truth, &pred);
            prop_assert!(close(s.nmi, r.nmi, 1e-12) && close(s.ari, r.ari, 1e-12));
            let perplexity = code_perplexity(&pred);
            prop_assert!(perplexity >= 1.0 - 1e-12 && perplexity <= s.clusters as f64 + 1e-9);
            prop_assert!(active_codes(&pred, ACTIVE_CODE_FRACTION) <= s.clusters);
        }

        #[test]
        fn code_information_obeys_data_processing(
            rows in prop::collection::vec(prop::collection::vec(0.001f64..1.0, 3), 1..40),
            labels in prop::collection::vec(0usize..3, 40),
        ) {
            // Oracle: 0 <= I(t; z) <= min(I(i; z), H(t)) and I(i; z) <= ln K (information
            // inequalities for a label that is a function of the item).
            let probs: Vec<Vec<f64>> = rows
                .iter()
                .map(|r| { let s: f64 = r.iter().sum(); r.iter().map(|x| x / s).collect() })
                .collect();
            let truth = &labels[..probs.len()];
            let ci = code_information(&probs);
            let ti = type_code_information(&probs, truth);
            let h_t = entropy(&label_counts(truth));
            prop_assert!(ci >= 0.0 && ci <= 3f64.ln() + 1e-12);
            prop_assert!(ti >= 0.0 && ti <= ci + 1e-12 && ti <= h_t + 1e-12);
        }

        #[test]
        fn hungarian_is_optimal((pred, truth) in labelling()) {
            let c = contingency(&pred, &truth);
            let best = brute_force_matched(&c);
            prop_assert_eq!(c.matched_accuracy(), best as f64 / pred.len() as f64);
            // The matching is one-to-one.
            let m = c.matching();
            prop_assert_eq!(m.len(), c.clusters().min(c.classes()));
            let mut types: Vec<usize> = m.values().copied().collect();
            types.sort_unstable();
            types.dedup();
            prop_assert_eq!(types.len(), m.len());
        }

        #[test]
        fn invariant_to_relabelling(
            (pred, truth) in labelling(),
            perm_p in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
            perm_t in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle(),
            offset in 0usize..1000,
        ) {
            let pred2: Vec<usize> = pred.iter().map(|&l| perm_p[l] + offset).collect();
            let truth2: Vec<usize> = truth.iter().map(|&l| perm_t[l] * 3).collect();
            let (a, b) = (partition_scores(&pred, &truth), partition_scores(&pred2, &truth2));
            prop_assert!(close(a.nmi, b.nmi, 1e-12));
            prop_assert!(close(a.ari, b.ari, 1e-12));
            prop_assert_eq!(a.purity, b.purity);
            prop_assert_eq!(a.matched_accuracy, b.matched_accuracy);
            prop_assert!(close(code_perplexity(&pred), code_perplexity(&pred2), 1e-12));
        }

        #[test]
        fn identical_partitions_score_one(labels in proptest::collection::vec(0usize..8, 1..100)) {
            let s = partition_scores(&labels, &labels);
            prop_assert!(close(s.nmi, 1.0, 1e-12), "nmi {}", s.nmi);
            prop_assert_eq!((s.ari, s.purity, s.matched_accuracy), (1.0, 1.0, 1.0));
        }

        /// Independent uniform labellings of n = 5000 items with K, T in 2..=10: NMI < 0.01 and
        /// |ARI| < 0.01. Bound check (numpy + scikit-learn 1.9.1, 20,000 draws of this design):
        /// max |ARI| = 0.0019 (sd 0.00016), max NMI = 0.0048. Under independence 2 n MI is about
        /// chi-square with (K-1)(T-1) degrees of freedom; NMI = 0.01 needs chi-square >= 230 at
        /// K = T = 10 (mean 81, sd 13) and >= 69 at K = T = 2 (1 dof), both far out in the tail.
        #[test]
        fn independent_partitions_score_near_zero(seed in any::<u64>(), k in 2usize..=10, t in 2usize..=10) {
            let mut rng = crate::rng::stream(seed, "metrics-independent");
            let pred: Vec<usize> = (0..5000).map(|_| rng.random_range(0..k)).collect();
            let truth: Vec<usize> = (0..5000).map(|_| rng.random_range(0..t)).collect();
            let s = partition_scores(&pred, &truth);
            prop_assert!(s.nmi < 0.01, "nmi {}", s.nmi);
            prop_assert!(s.ari.abs() < 0.01, "ari {}", s.ari);
        }
    }
}
