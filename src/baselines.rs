//! Reference points for real-data scores: what a held-out accuracy or a code NMI should be read
//! against.
//!
//! - **Accuracy baselines** on the held-out pairs, against the observed labels (a pair scores 1
//!   when the rule picks the chosen response, 0 when it picks the rejected one, 0.5 when it
//!   cannot tell): `chance` (0.5); `majority label` (the position, first or second, that won
//!   most often among the training pairs; it applies only where the files record positions:
//!   `pairwise` labels and votes, `pku-saferlhf`); `longer wins` and `shorter wins` (response
//!   length in tokens before truncation); `length rule (train)`, whichever of the two did better
//!   on the training pairs; `length rule per group (train)`, that choice made per group on its
//!   training pairs (a group without training pairs takes the overall choice). Every rule is
//!   learned on training pairs only and scored on held-out pairs.
//! - **Pretrained-model baselines** ([`pretrained_baselines`]): the model's zero-shot
//!   preference ([`zero_shot_baselines`]) and a linear Bradley–Terry probe on its frozen
//!   features, fitted to the training pairs ([`probe_baseline`], [`crate::probe`]).
//! - **Shuffled-code NMI**: the NMI of a method's codes after a seeded random permutation of the
//!   codes over the pairs (which keeps how often each code and each group occur and breaks any
//!   link between them), over [`NULL_PERMUTATIONS`] permutations: its mean and 95th percentile
//!   (nearest rank). A code NMI at or below the 95th percentile is what codes unrelated to the
//!   groups reach by chance on groups of these sizes.
//! - **Small groups**: a group with fewer than [`MIN_GROUP_PAIRS`] held-out pairs is flagged;
//!   the worst-group accuracy is taken over the other groups, and the flagged groups are scored
//!   pooled (their pairs together).
//!
//! A score that does not apply (a majority label without positions) is kept apart from one
//! with no pairs to score (an empty group): [`Score`].

use crate::data::PreferencePair;
use crate::data::real::{LoadReport, PairInfo};
use crate::metrics;
use crate::probe::Probe;
use crate::results::metrics_row::{MetricsRow, NmiNull, finite};
use crate::results::rows::{BaselineCell, BaselineHead, BaselineRow, BaselineTail, CodeRow};
use crate::rng::stream;
use crate::train::{PairFeatures, ReferenceCache};
use rand::seq::SliceRandom;

/// Held-out pairs below which a group is flagged and pooled.
pub const MIN_GROUP_PAIRS: usize = 20;
/// Permutations of the shuffled-code NMI null.
pub const NULL_PERMUTATIONS: usize = 200;

/// One number of a reference table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    /// The value.
    Value(f64),
    /// There is nothing to score (no held-out pairs in the group).
    NoPairs,
    /// The score does not apply to this data.
    NotApplicable,
    /// Every group with pairs is below the minimum size (a worst group is not taken).
    AllSmall,
}

impl Score {
    /// The value, if any.
    pub fn value(self) -> Option<f64> {
        match self {
            Score::Value(v) => Some(v),
            _ => None,
        }
    }
    /// Three decimals, `no pairs` or `n/a`.
    pub fn show(self) -> String {
        match self {
            Score::Value(v) => format!("{v:.3}"),
            Score::NoPairs => "no pairs".to_string(),
            Score::NotApplicable => "n/a".to_string(),
            Score::AllSmall => "all groups small".to_string(),
        }
    }
}

/// What a baseline knows about one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Group id of the pair.
    pub group: usize,
    /// Length of the chosen response (tokens, before truncation where the loader knows it).
    pub chosen_len: usize,
    /// Length of the rejected response, like `chosen_len`.
    pub rejected_len: usize,
    /// Whether the chosen response came first (`None`: positions unknown).
    pub first_won: Option<bool>,
}

/// Samples of `pairs`, with the loader's `info` where it has one for every pair (untruncated
/// lengths, positions), else the pairs' token lengths and no positions.
pub fn samples(pairs: &[PreferencePair], info: &[PairInfo]) -> Vec<Sample> {
    pairs
        .iter()
        .enumerate()
        .map(
            |(i, p)| match info.get(i).filter(|_| info.len() == pairs.len()) {
                Some(x) => Sample {
                    group: p.group,
                    chosen_len: x.chosen_len,
                    rejected_len: x.rejected_len,
                    first_won: x.first_won,
                },
                None => Sample {
                    group: p.group,
                    chosen_len: p.chosen.len(),
                    rejected_len: p.rejected.len(),
                    first_won: None,
                },
            },
        )
        .collect()
}

/// A length rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthRule {
    /// Predict that the longer response wins.
    Longer,
    /// Predict that the shorter response wins.
    Shorter,
}

impl LengthRule {
    fn name(self) -> &'static str {
        match self {
            LengthRule::Longer => "longer",
            LengthRule::Shorter => "shorter",
        }
    }
    /// Credit against the observed label: 1 when the rule picks the chosen response, 0 when it
    /// picks the rejected one, 0.5 on equal lengths (the crate's accuracy rule, with the length
    /// difference as the margin: [`metrics::margin_prediction`]).
    pub fn credit(self, s: &Sample) -> f64 {
        let longer = s.chosen_len as f64 - s.rejected_len as f64;
        let margin = match self {
            LengthRule::Longer => longer,
            LengthRule::Shorter => -longer,
        };
        metrics::preference_credit(metrics::margin_prediction(margin), 1.0)
    }
}

/// One accuracy baseline: overall and per group on held-out pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Row name in reports.
    pub name: &'static str,
    /// What was learned on the training pairs (or why it does not apply).
    pub rule: String,
    /// Over all held-out pairs.
    pub overall: Score,
    /// Per group (in group-id order).
    pub per_group: Vec<Score>,
}

/// Mean of `credit` over `pairs` (all, and per group); `NoPairs` where there is none.
fn score_by_group<T>(
    pairs: &[T],
    groups: usize,
    group_of: impl Fn(&T) -> usize,
    credit: impl Fn(&T) -> Option<f64>,
) -> (Score, Vec<Score>) {
    let mut sum = vec![0.0; groups];
    let mut n = vec![0usize; groups];
    for p in pairs {
        let g = group_of(p);
        if let Some(c) = credit(p)
            && g < groups
        {
            sum[g] += c;
            n[g] += 1;
        }
    }
    let mean = |s: f64, n: usize| {
        if n == 0 {
            Score::NoPairs
        } else {
            Score::Value(s / n as f64)
        }
    };
    let overall = mean(sum.iter().sum(), n.iter().sum());
    (overall, (0..groups).map(|g| mean(sum[g], n[g])).collect())
}

/// The better length rule on `pairs` (longer on a tie or when there are none), with its mean
/// credit there.
pub fn best_length_rule(pairs: &[Sample]) -> (LengthRule, Option<f64>) {
    if pairs.is_empty() {
        return (LengthRule::Longer, None);
    }
    let longer = pairs
        .iter()
        .map(|s| LengthRule::Longer.credit(s))
        .sum::<f64>()
        / pairs.len() as f64;
    // Shorter's credit is 1 - longer's, pair by pair.
    if longer >= 0.5 {
        (LengthRule::Longer, Some(longer))
    } else {
        (LengthRule::Shorter, Some(1.0 - longer))
    }
}

/// Every accuracy baseline, learned on `train` and scored on `eval` (see the module rules).
pub fn accuracy_baselines(
    train: &[Sample],
    eval: &[Sample],
    group_names: &[String],
) -> Vec<Baseline> {
    let groups = group_names.len();
    let mut out = Vec::new();
    let (overall, per_group) = score_by_group(eval, groups, |s| s.group, |_| Some(0.5));
    out.push(Baseline {
        name: "chance",
        rule: "a coin flip".to_string(),
        overall,
        per_group,
    });

    // Majority label: the position that won most often among training pairs with positions.
    let positioned: Vec<bool> = train.iter().filter_map(|s| s.first_won).collect();
    if positioned.is_empty() {
        out.push(Baseline {
            name: "majority label",
            rule: "does not apply: the files record chosen/rejected, not which response came first"
                .to_string(),
            overall: Score::NotApplicable,
            per_group: vec![Score::NotApplicable; groups],
        });
    } else {
        let firsts = positioned.iter().filter(|&&f| f).count();
        let first = 2 * firsts >= positioned.len();
        let (overall, per_group) = score_by_group(
            eval,
            groups,
            |s| s.group,
            |s| s.first_won.map(|f| if f == first { 1.0 } else { 0.0 }),
        );
        out.push(Baseline {
            name: "majority label",
            rule: format!(
                "{} wins ({} of {} training pairs with positions)",
                if first { "first" } else { "second" },
                if first {
                    firsts
                } else {
                    positioned.len() - firsts
                },
                positioned.len()
            ),
            overall,
            per_group,
        });
    }

    for rule in [LengthRule::Longer, LengthRule::Shorter] {
        let (overall, per_group) =
            score_by_group(eval, groups, |s| s.group, |s| Some(rule.credit(s)));
        out.push(Baseline {
            name: match rule {
                LengthRule::Longer => "longer wins",
                LengthRule::Shorter => "shorter wins",
            },
            rule: "response length in tokens before truncation; equal lengths score 0.5"
                .to_string(),
            overall,
            per_group,
        });
    }

    let (best, best_train) = best_length_rule(train);
    let (overall, per_group) = score_by_group(eval, groups, |s| s.group, |s| Some(best.credit(s)));
    out.push(Baseline {
        name: "length rule (train)",
        rule: format!(
            "{} wins (training accuracy {})",
            best.name(),
            best_train.map_or("–".to_string(), |v| format!("{v:.3}"))
        ),
        overall,
        per_group,
    });

    let by_group: Vec<LengthRule> = (0..groups)
        .map(|g| {
            let own: Vec<Sample> = train.iter().filter(|s| s.group == g).copied().collect();
            if own.is_empty() {
                best
            } else {
                best_length_rule(&own).0
            }
        })
        .collect();
    let (overall, per_group) = score_by_group(
        eval,
        groups,
        |s| s.group,
        |s| by_group.get(s.group).map(|r| r.credit(s)),
    );
    let rules: Vec<String> = group_names
        .iter()
        .zip(&by_group)
        .map(|(g, r)| format!("{g}: {}", r.name()))
        .collect();
    out.push(Baseline {
        name: "length rule per group (train)",
        rule: rules.join(", "),
        overall,
        per_group,
    });
    out
}

/// The pretrained policy's own preference, zero-shot (before any training): a pair scores 1
/// when the policy gives the chosen response the higher log-probability, 0 when the rejected
/// one, 0.5 on a tie. Two forms, as the objectives read log-probabilities:
/// `zero-shot log-prob (sum)`, `log pi_ref(y | x)` summed over the response tokens (the
/// log-likelihood DPO's implicit reward is measured from), and `zero-shot log-prob (per token)`, the sum
/// divided by the response's token count (SimPO's length-normalised score).
/// `chosen[i]`, `rejected[i]` are the summed log-probs of `pairs[i]`'s responses.
pub fn zero_shot_baselines(
    pairs: &[PreferencePair],
    chosen: &[f64],
    rejected: &[f64],
    group_names: &[String],
) -> Vec<Baseline> {
    let groups = group_names.len();
    let credit =
        |w: f64, l: f64| metrics::preference_credit(metrics::margin_prediction(w - l), 1.0);
    let index: Vec<usize> = (0..pairs.len()).collect();
    let score = |f: &dyn Fn(usize) -> f64| {
        score_by_group(&index, groups, |&i| pairs[i].group, |&i| Some(f(i)))
    };
    let (overall, per_group) = score(&|i| credit(chosen[i], rejected[i]));
    let sum = Baseline {
        name: "zero-shot log-prob (sum)",
        rule: "the pretrained policy prefers the response with the higher summed log-probability"
            .to_string(),
        overall,
        per_group,
    };
    let per_token = |lp: f64, len: usize| lp / len.max(1) as f64;
    let (overall, per_group) = score(&|i| {
        credit(
            per_token(chosen[i], pairs[i].chosen.len()),
            per_token(rejected[i], pairs[i].rejected.len()),
        )
    });
    let mean = Baseline {
        name: "zero-shot log-prob (per token)",
        rule: "the pretrained policy prefers the response with the higher mean log-probability \
               per token"
            .to_string(),
        overall,
        per_group,
    };
    vec![sum, mean]
}

/// The linear Bradley–Terry probe ([`crate::probe`]) on the pretrained reference's response
/// features: trained on the training pairs' features (lambda by cross-validation on them),
/// scored on the held-out pairs (credit 1 for a positive margin, 0 for a negative, 0.5 on a
/// tie). `train` and `eval` are the features of the training and held-out pairs, `eval_pairs`
/// the held-out pairs (for their groups).
pub fn probe_baseline(
    train: &PairFeatures,
    eval_pairs: &[PreferencePair],
    eval: &PairFeatures,
    group_names: &[String],
) -> Baseline {
    let name = "linear probe on frozen features (train)";
    let diffs = train.diffs();
    let Some(probe) = Probe::train(&diffs) else {
        return Baseline {
            name,
            rule: "no training pairs to fit".to_string(),
            overall: Score::NoPairs,
            per_group: vec![Score::NoPairs; group_names.len()],
        };
    };
    let index: Vec<usize> = (0..eval_pairs.len()).collect();
    let (overall, per_group) = score_by_group(
        &index,
        group_names.len(),
        |&i| eval_pairs[i].group,
        |&i| {
            let m = probe.margin(&eval.chosen[i], &eval.rejected[i]);
            Some(metrics::preference_credit(
                metrics::margin_prediction(m),
                1.0,
            ))
        },
    );
    let chosen_by = if probe.cv_loss.iter().any(|l| l.is_finite()) {
        format!(
            "chosen by {}-fold cross-validation on them",
            crate::probe::FOLDS
        )
    } else {
        "fixed: too few pairs to cross-validate".to_string()
    };
    Baseline {
        name,
        rule: format!(
            "a reward linear in the pretrained model's mean final hidden state over the \
             response (Bradley-Terry, no bias), fitted to the {} training pairs; L2 weight {} \
             {chosen_by}",
            diffs.len(),
            probe.lambda,
        ),
        overall,
        per_group,
    }
}

/// The baselines that read a pretrained reference: its zero-shot preference on the held-out
/// pairs ([`zero_shot_baselines`]) and, where the caches hold features, the linear probe
/// ([`probe_baseline`]).
pub fn pretrained_baselines(
    data: &crate::data::PreferenceData,
    train_refs: &ReferenceCache,
    eval_refs: &ReferenceCache,
) -> Vec<Baseline> {
    let mut out = zero_shot_baselines(
        &data.eval,
        &eval_refs.chosen,
        &eval_refs.rejected,
        &data.group_names,
    );
    if let (Some(train), Some(eval)) = (&train_refs.features, &eval_refs.features) {
        out.push(probe_baseline(train, &data.eval, eval, &data.group_names));
    }
    out
}

/// Mean and 95th percentile of the shuffled-code NMI.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NullStats {
    /// Mean NMI over the shuffles.
    pub mean: f64,
    /// 95th percentile of the NMI over the shuffles.
    pub p95: f64,
}

/// The nearest-rank `q` quantile of `values` (sorted in place): the smallest value with at least
/// `q · n` values at or below it, `sorted[ceil(q · n) - 1]`.
pub fn nearest_rank(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// NMI of `codes` against `truth` after each of `permutations` seeded shuffles of the codes:
/// mean and 95th percentile (nearest rank). The stream is `stream(seed, "baselines/nmi-null")`.
pub fn nmi_null(codes: &[usize], truth: &[usize], permutations: usize, seed: u64) -> NullStats {
    let mut rng = stream(seed, "baselines/nmi-null");
    let mut shuffled = codes.to_vec();
    let mut values: Vec<f64> = (0..permutations.max(1))
        .map(|_| {
            shuffled.shuffle(&mut rng);
            metrics::nmi(&shuffled, truth)
        })
        .collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    NullStats {
        mean,
        p95: nearest_rank(&mut values, 0.95),
    }
}

/// Add the shuffled-code NMI null beside every code NMI of `metrics`
/// (`{prior,post}_nmi_null_mean`, `{prior,post}_nmi_null_p95`), from each method's per-pair
/// codes in `codes` (the rows of `codes.csv`). Methods without codes get blanks.
pub fn add_nmi_nulls(metrics: &mut [MetricsRow], codes: &[CodeRow], seed: u64) {
    for row in metrics.iter_mut() {
        let rows: Vec<&CodeRow> = codes
            .iter()
            .filter(|c| c.method == row.run.method)
            .collect();
        let truth: Vec<usize> = rows.iter().map(|c| c.ty).collect();
        let null = |codes: Vec<usize>| {
            (!truth.is_empty()).then(|| nmi_null(&codes, &truth, NULL_PERMUTATIONS, seed))
        };
        let prior = null(rows.iter().map(|c| c.prior_code).collect());
        let post = null(rows.iter().map(|c| c.posterior_code).collect());
        row.nmi_null = Some(NmiNull {
            prior_nmi_null_mean: prior.map(|n| n.mean),
            prior_nmi_null_p95: prior.map(|n| n.p95),
            post_nmi_null_mean: post.map(|n| n.mean),
            post_nmi_null_p95: post.map(|n| n.p95),
        });
    }
}

/// Everything a real-data summary sets beside the methods.
#[derive(Debug, Clone, PartialEq)]
pub struct RealReference {
    /// Group names, indexed by group id.
    pub group_names: Vec<String>,
    /// Training pairs per group.
    pub train_counts: Vec<usize>,
    /// Held-out pairs per group.
    pub eval_counts: Vec<usize>,
    /// The accuracy baselines (see [`accuracy_baselines`]).
    pub baselines: Vec<Baseline>,
    /// [`MIN_GROUP_PAIRS`].
    pub min_group_pairs: usize,
}

impl RealReference {
    /// The reference points of a loaded real data set.
    pub fn new(data: &crate::data::PreferenceData, load: &LoadReport) -> RealReference {
        let train = samples(&data.train, &load.train_info);
        let eval = samples(&data.eval, &load.eval_info);
        let count = |pairs: &[PreferencePair]| {
            let mut n = vec![0usize; data.groups];
            for p in pairs {
                if p.group < n.len() {
                    n[p.group] += 1;
                }
            }
            n
        };
        RealReference {
            group_names: data.group_names.clone(),
            train_counts: count(&data.train),
            eval_counts: count(&data.eval),
            baselines: accuracy_baselines(&train, &eval, &data.group_names),
            min_group_pairs: MIN_GROUP_PAIRS,
        }
    }

    /// Add the baselines that read a pretrained reference ([`pretrained_baselines`]), given its
    /// training and held-out caches; unchanged with `None` (a scratch policy).
    pub fn with_pretrained(
        mut self,
        data: &crate::data::PreferenceData,
        refs: Option<(&ReferenceCache, &ReferenceCache)>,
    ) -> RealReference {
        if let Some((train_refs, eval_refs)) = refs {
            self.baselines
                .extend(pretrained_baselines(data, train_refs, eval_refs));
        }
        self
    }

    /// Whether some group with held-out pairs has fewer than `min_group_pairs` (then the
    /// summary shows a "small groups pooled" column).
    pub fn any_small(&self) -> bool {
        self.eval_counts
            .iter()
            .any(|&n| n > 0 && n < self.min_group_pairs)
    }

    /// The trailing cells of a summary row: the worst group, and the small groups pooled when
    /// there are any.
    fn tail(&self, worst: Score, pooled: Score) -> String {
        if self.any_small() {
            format!(" {} | {} |", worst.show(), pooled.show())
        } else {
            format!(" {} |", worst.show())
        }
    }

    /// Whether group `g` has too few held-out pairs to be read alone.
    pub fn is_small(&self, g: usize) -> bool {
        self.eval_counts[g] < self.min_group_pairs
    }

    /// Worst accuracy over groups with at least `min_group_pairs` held-out pairs, and the pooled
    /// accuracy of the smaller groups (their per-group accuracies weighted by their pair counts,
    /// which is the accuracy over their pairs together). `per_group[g]` is group `g`'s accuracy.
    pub fn worst_and_pooled(&self, per_group: &[Option<f64>]) -> (Score, Score) {
        let mut worst: Option<f64> = None;
        let (mut sum, mut n) = (0.0, 0usize);
        for (g, v) in per_group.iter().enumerate().take(self.eval_counts.len()) {
            let Some(v) = v else { continue };
            if self.is_small(g) {
                sum += v * self.eval_counts[g] as f64;
                n += self.eval_counts[g];
            } else {
                worst = Some(worst.map_or(*v, |w: f64| w.min(*v)));
            }
        }
        let worst = match worst {
            Some(w) => Score::Value(w),
            None if n > 0 => Score::AllSmall,
            None => Score::NoPairs,
        };
        let pooled = if n == 0 {
            Score::NoPairs
        } else {
            Score::Value(sum / n as f64)
        };
        (worst, pooled)
    }

    /// `baselines.csv`: one row per baseline, overall and per group, with the worst group (of
    /// groups with enough pairs) and the small groups pooled; `n/a` where it does not apply,
    /// blank where there are no pairs.
    pub fn baselines_rows(&self) -> Vec<BaselineRow> {
        let cell = |s: Score| match s {
            Score::Value(v) => BaselineCell::Value(v),
            Score::NoPairs | Score::AllSmall => BaselineCell::Blank,
            Score::NotApplicable => BaselineCell::NotApplicable,
        };
        self.baselines
            .iter()
            .map(|b| {
                let (worst, pooled) = if b.overall == Score::NotApplicable {
                    (Score::NotApplicable, Score::NotApplicable)
                } else {
                    self.worst_and_pooled(
                        &b.per_group.iter().map(|s| s.value()).collect::<Vec<_>>(),
                    )
                };
                BaselineRow {
                    head: BaselineHead {
                        baseline: b.name.to_string(),
                        rule: b.rule.clone(),
                        acc_obs: cell(b.overall),
                    },
                    groups: self
                        .group_names
                        .iter()
                        .zip(&b.per_group)
                        .map(|(name, s)| (name.clone(), cell(*s)))
                        .collect(),
                    tail: BaselineTail {
                        acc_obs_worst_group: cell(worst),
                        acc_obs_small_groups_pooled: cell(pooled),
                    },
                }
            })
            .collect()
    }

    /// The Markdown of the real-data reference points (groups, baselines, the NMI null and the
    /// per-group table) for `summary.md`; `metrics` is the run's metrics table.
    pub fn summary_markdown(&self, metrics: &[MetricsRow]) -> String {
        let mut s = String::new();
        s.push_str("## Groups (pairs per side)\n\n| group | train | held-out |\n|---|---|---|\n");
        for (g, name) in self.group_names.iter().enumerate() {
            let flag = if self.is_small(g) { " †" } else { "" };
            s.push_str(&format!(
                "| {name}{flag} | {} | {} |\n",
                self.train_counts[g], self.eval_counts[g]
            ));
        }
        let small = (0..self.group_names.len())
            .filter(|&g| self.is_small(g))
            .count();
        if small > 0 {
            s.push_str(&format!(
                "\n† {small} group(s) with fewer than {} held-out pairs: not read alone; the worst \
                 group is taken over the others and these are scored pooled.\n",
                self.min_group_pairs
            ));
        }
        let pooled_header = if self.any_small() {
            " small groups pooled |"
        } else {
            ""
        };
        s.push_str(&format!(
            "\n## Reference points (held-out pairs, accuracy vs observed labels)\n\n\
             | baseline | acc obs | learned on training pairs | worst group (n ≥ {}) |{pooled_header}\n\
             |---|---|---|---|{}\n",
            self.min_group_pairs,
            if self.any_small() { "---|" } else { "" }
        ));
        for b in &self.baselines {
            let (worst, pooled) = if b.overall == Score::NotApplicable {
                (Score::NotApplicable, Score::NotApplicable)
            } else {
                self.worst_and_pooled(&b.per_group.iter().map(|s| s.value()).collect::<Vec<_>>())
            };
            s.push_str(&format!(
                "| {} | {} | {} |{}\n",
                b.name,
                b.overall.show(),
                b.rule,
                self.tail(worst, pooled)
            ));
        }
        if !metrics.is_empty() {
            s.push_str(
                "\n## Code NMI against the shuffled-code null\n\n\
                 | method | prior NMI | null mean | null 95th pct | posterior NMI | null mean | null 95th pct |\n\
                 |---|---|---|---|---|---|---|\n",
            );
            let num = |v: Option<f64>| match finite(v) {
                Some(v) => format!("{v:.3}"),
                None => "n/a".to_string(),
            };
            for r in metrics {
                let scores = r.scores.clone().unwrap_or_default();
                let null = r.nmi_null.clone().unwrap_or_default();
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    r.run.method,
                    num(scores.prior.nmi),
                    num(null.prior_nmi_null_mean),
                    num(null.prior_nmi_null_p95),
                    num(scores.post.nmi),
                    num(null.post_nmi_null_mean),
                    num(null.post_nmi_null_p95),
                ));
            }
            s.push_str(&format!(
                "\nThe null is the NMI of the method's own codes shuffled over the held-out pairs \
                 ({NULL_PERMUTATIONS} seeded permutations): an NMI at or below its 95th percentile \
                 is what codes unrelated to the groups reach by chance. `n/a`: the method has no codes.\n"
            ));
        }
        s.push_str(&self.per_group_markdown(metrics));
        s
    }

    /// Per-group accuracy of the methods and the baselines, with the held-out count of each
    /// group in its header.
    fn per_group_markdown(&self, metrics: &[MetricsRow]) -> String {
        let mut s = String::from(
            "\n## Per-group accuracy vs observed labels (prior code; held-out pairs per group in the header)\n\n| method |",
        );
        for (g, name) in self.group_names.iter().enumerate() {
            let flag = if self.is_small(g) { " †" } else { "" };
            s.push_str(&format!(" {name}{flag} (n={}) |", self.eval_counts[g]));
        }
        let extra = if self.any_small() {
            " small groups pooled |"
        } else {
            ""
        };
        s.push_str(&format!(
            " worst group (n ≥ {}) |{extra}\n|---|",
            self.min_group_pairs
        ));
        s.push_str(&"---|".repeat(self.group_names.len() + 1 + usize::from(self.any_small())));
        s.push('\n');
        let groups = self.group_names.len();
        for r in metrics {
            let per: Vec<Option<f64>> = self
                .group_names
                .iter()
                .map(|g| finite(r.group_accuracy(g).and_then(|a| a.acc_obs)))
                .collect();
            let status = r.run.status.as_str();
            s.push_str(&format!("| {} |", r.run.method));
            for (g, v) in per.iter().enumerate() {
                let shown = match v {
                    Some(v) => format!("{v:.3}"),
                    None if self.eval_counts[g] == 0 => "no pairs".to_string(),
                    None if status.starts_with("diverged") => "diverged".to_string(),
                    None => "n/a".to_string(),
                };
                s.push_str(&format!(" {shown} |"));
            }
            if status.starts_with("diverged") {
                let cell = Score::NotApplicable;
                s.push_str(&self.tail(cell, cell).replace("n/a", "diverged"));
                s.push('\n');
                continue;
            }
            let (worst, pooled) = self.worst_and_pooled(&per);
            s.push_str(&self.tail(worst, pooled));
            s.push('\n');
        }
        for b in &self.baselines {
            s.push_str(&format!("| *{}* |", b.name));
            for g in 0..groups {
                s.push_str(&format!(" {} |", b.per_group[g].show()));
            }
            let (worst, pooled) = if b.overall == Score::NotApplicable {
                (Score::NotApplicable, Score::NotApplicable)
            } else {
                self.worst_and_pooled(&b.per_group.iter().map(|x| x.value()).collect::<Vec<_>>())
            };
            s.push_str(&self.tail(worst, pooled));
            s.push('\n');
        }
        s.push_str(
            "\n`n/a`: does not apply (no codes for a baseline method, no positions for the \
             majority label); `no pairs`: nothing to score (a group without held-out pairs); \
             `all groups small`: no group is large enough for a worst group. Baselines are in \
             italics; their numbers are in `baselines.csv`.\n",
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::metrics_row::{Accuracy, AccuracyPair, MethodScores, RunColumns};

    /// Oracle, by hand. Pair 0 (group 0): sums -10 vs -12 -> chosen (1); per token -10/2 = -5
    /// vs -12/4 = -3 -> rejected (0). Pair 1 (group 0): -6 vs -6 -> tie (0.5); per token -6/3
    /// = -2 vs -6/2 = -3 -> chosen (1). Pair 2 (group 1): -20 vs -5 -> rejected (0); per token
    /// -20/4 = -5 vs -5/1 = -5 -> tie (0.5). Sum: overall 1.5/3, groups 0.75 and 0; per token:
    /// overall 1.5/3, groups 0.5 and 0.5.
    #[test]
    fn zero_shot_baselines_by_hand() {
        let pair = |group, c: usize, r: usize| PreferencePair {
            prompt: vec![],
            chosen: vec![1; c],
            rejected: vec![2; r],
            group,
            source: 0,
            annotator: 0,
            truth: None,
        };
        let pairs = [pair(0, 2, 4), pair(0, 3, 2), pair(1, 4, 1)];
        let names = ["a".to_string(), "b".to_string()];
        let b = zero_shot_baselines(&pairs, &[-10.0, -6.0, -20.0], &[-12.0, -6.0, -5.0], &names);
        assert_eq!(b[0].overall, Score::Value(0.5));
        assert_eq!(b[0].per_group, vec![Score::Value(0.75), Score::Value(0.0)]);
        assert_eq!(b[1].overall, Score::Value(0.5));
        assert_eq!(b[1].per_group, vec![Score::Value(0.5), Score::Value(0.5)]);
    }

    /// Oracle: every training pair's chosen response is one unit higher on feature 0 and the
    /// two sides of feature 1 alternate, so the probe's weight on feature 0 is positive and the
    /// held-out margins' signs follow feature 0: group a has two pairs oriented like training
    /// (credit 1 each) and one with equal features (0.5), group b two reversed pairs (0).
    /// Without features only the two zero-shot rows are made.
    #[test]
    fn the_probe_scores_held_out_pairs_by_the_direction_learned_on_training_pairs() {
        let pair = |group| PreferencePair {
            prompt: vec![],
            chosen: vec![1],
            rejected: vec![2],
            group,
            source: 0,
            annotator: 0,
            truth: None,
        };
        let train = crate::train::PairFeatures {
            chosen: (0..40).map(|i| vec![1.0, (i % 2) as f32]).collect(),
            rejected: (0..40).map(|i| vec![0.0, ((i + 1) % 2) as f32]).collect(),
        };
        let eval_pairs = [pair(0), pair(0), pair(0), pair(1), pair(1)];
        let eval = crate::train::PairFeatures {
            chosen: vec![
                vec![2.0, 0.0],
                vec![0.5, 1.0],
                vec![0.3, 0.3],
                vec![0.0, 0.0],
                vec![-1.0, 0.5],
            ],
            rejected: vec![
                vec![1.0, 0.0],
                vec![0.0, 1.0],
                vec![0.3, 0.3],
                vec![1.0, 0.0],
                vec![0.0, 0.5],
            ],
        };
        let names = ["a".to_string(), "b".to_string()];
        let b = probe_baseline(&train, &eval_pairs, &eval, &names);
        assert_eq!(
            b.per_group,
            vec![Score::Value(2.5 / 3.0), Score::Value(0.0)]
        );
        assert_eq!(b.overall, Score::Value(2.5 / 5.0));
        assert!(
            b.rule.contains("40 training pairs") && b.rule.contains("cross-validation"),
            "{}",
            b.rule
        );
        let few = crate::train::PairFeatures {
            chosen: train.chosen[..3].to_vec(),
            rejected: train.rejected[..3].to_vec(),
        };
        let b3 = probe_baseline(&few, &eval_pairs, &eval, &names);
        assert!(
            b3.rule.contains("L2 weight 10 fixed: too few pairs"),
            "{}",
            b3.rule
        );
        let none = probe_baseline(
            &crate::train::PairFeatures {
                chosen: vec![],
                rejected: vec![],
            },
            &eval_pairs,
            &eval,
            &names,
        );
        assert_eq!(none.overall, Score::NoPairs);

        let data = crate::data::PreferenceData {
            train: vec![],
            val: vec![],
            eval: eval_pairs.to_vec(),
            vocab: 3,
            groups: 2,
            group_names: names.to_vec(),
            max_prompt_len: 0,
            max_response_len: 1,
            chat_separator: None,
        };
        let refs = |features| ReferenceCache {
            chosen: vec![-1.0; 5],
            rejected: vec![-2.0; 5],
            features,
        };
        let with =
            pretrained_baselines(&data, &refs(Some(train.clone())), &refs(Some(eval.clone())));
        assert_eq!(with.len(), 3);
        assert_eq!(with[2], b);
        assert_eq!(
            pretrained_baselines(&data, &refs(None), &refs(None)).len(),
            2
        );
    }

    fn s(group: usize, c: usize, r: usize, first_won: Option<bool>) -> Sample {
        Sample {
            group,
            chosen_len: c,
            rejected_len: r,
            first_won,
        }
    }

    fn find<'a>(bs: &'a [Baseline], name: &str) -> &'a Baseline {
        bs.iter().find(|b| b.name == name).unwrap()
    }

    #[test]
    fn length_rules_learned_on_train_scored_on_held_out() {
        // Train: group 0 prefers longer (3 of 4 pairs, one equal-length pair), group 1 shorter.
        let train = [
            s(0, 10, 5, None),
            s(0, 8, 2, None),
            s(0, 3, 9, None),
            s(0, 4, 4, None),
            s(1, 2, 9, None),
            s(1, 1, 5, None),
        ];
        // Held-out: g0: longer, longer, shorter; g1: shorter, equal.
        let eval = [
            s(0, 9, 1, None),
            s(0, 7, 6, None),
            s(0, 1, 6, None),
            s(1, 3, 8, None),
            s(1, 5, 5, None),
        ];
        let names = vec!["a".to_string(), "b".to_string()];
        let bs = accuracy_baselines(&train, &eval, &names);
        // Longer wins on eval: g0 1+1+0 = 2/3; g1 0 + 0.5 = 0.25; overall 2.5/5 = 0.5.
        let longer = find(&bs, "longer wins");
        assert_eq!(longer.overall, Score::Value(0.5));
        assert_eq!(longer.per_group[0], Score::Value(2.0 / 3.0));
        assert_eq!(longer.per_group[1], Score::Value(0.25));
        // Shorter is 1 - longer pair by pair: g0 1/3, g1 0.75, overall 0.5.
        let shorter = find(&bs, "shorter wins");
        assert_eq!(shorter.per_group[1], Score::Value(0.75));
        // On train, longer scores (1 + 1 + 0 + 0.5 + 0 + 0)/6 = 2.5/6 < 0.5 → shorter overall.
        let best = find(&bs, "length rule (train)");
        assert!(best.rule.starts_with("shorter"), "{}", best.rule);
        assert_eq!(best.overall, Score::Value(0.5));
        // Per group: g0 longer (2.5/4 on train), g1 shorter: eval (2 + 1 + 0.5)/5 = 0.7.
        let per = find(&bs, "length rule per group (train)");
        assert_eq!(per.rule, "a: longer, b: shorter");
        assert_eq!(per.overall, Score::Value(3.5 / 5.0));
        // Chance is 0.5 everywhere; no positions: the majority label does not apply.
        assert_eq!(find(&bs, "chance").overall, Score::Value(0.5));
        assert_eq!(find(&bs, "majority label").overall, Score::NotApplicable);
    }

    #[test]
    fn majority_label_and_empty_groups() {
        // Train: first won 2 of 3. Held-out: first, second, first in group 0; group 1 empty.
        let train = [
            s(0, 1, 1, Some(true)),
            s(0, 1, 1, Some(true)),
            s(0, 1, 1, Some(false)),
        ];
        let eval = [
            s(0, 1, 1, Some(true)),
            s(0, 1, 1, Some(false)),
            s(0, 1, 1, Some(true)),
        ];
        let names = vec!["a".to_string(), "b".to_string()];
        let bs = accuracy_baselines(&train, &eval, &names);
        let m = find(&bs, "majority label");
        assert_eq!(m.rule, "first wins (2 of 3 training pairs with positions)");
        assert_eq!(m.overall, Score::Value(2.0 / 3.0));
        assert_eq!(m.per_group, vec![Score::Value(2.0 / 3.0), Score::NoPairs]);
        // Group 1 has no training pairs: it takes the overall length rule (all equal → longer).
        assert_eq!(
            find(&bs, "length rule per group (train)").rule,
            "a: longer, b: longer"
        );
    }

    #[test]
    fn nearest_rank_percentile() {
        // 20 values 1..=20: the 95th percentile is the 19th smallest.
        let mut v: Vec<f64> = (1..=20).rev().map(f64::from).collect();
        assert_eq!(nearest_rank(&mut v, 0.95), 19.0);
        let mut one = vec![0.3];
        assert_eq!(nearest_rank(&mut one, 0.95), 0.3);
    }

    #[test]
    fn shuffled_code_null_matches_its_exact_distribution() {
        // Codes [0,0,1,1] against groups [0,0,1,1]: of the 6 equally likely placements of the two
        // 1-codes, 2 reproduce the partition (NMI 1) and 4 split both groups (NMI 0), so the null
        // mean is 1/3 and its 95th percentile is 1.
        let codes = [0, 0, 1, 1];
        let truth = [0, 0, 1, 1];
        let null = nmi_null(&codes, &truth, 3000, 7);
        assert!((null.mean - 1.0 / 3.0).abs() < 0.03, "{null:?}");
        assert!((null.p95 - 1.0).abs() < 1e-9);
        // A constant code carries no information under any permutation.
        let flat = nmi_null(&[2, 2, 2, 2], &truth, 50, 0);
        assert_eq!((flat.mean, flat.p95), (0.0, 0.0));
        // Seeded: the same seed gives the same numbers.
        assert_eq!(
            nmi_null(&codes, &truth, 100, 3),
            nmi_null(&codes, &truth, 100, 3)
        );
    }

    #[test]
    fn small_groups_are_pooled_and_left_out_of_the_worst_group() {
        let r = RealReference {
            group_names: vec!["big".into(), "tiny".into(), "small".into(), "empty".into()],
            train_counts: vec![100, 10, 10, 0],
            eval_counts: vec![40, 3, 7, 0],
            baselines: Vec::new(),
            min_group_pairs: 20,
        };
        // tiny 0/3 correct, small 7/7: pooled 7/10; the worst group is big alone.
        let (worst, pooled) = r.worst_and_pooled(&[Some(0.6), Some(0.0), Some(1.0), None]);
        assert_eq!(worst, Score::Value(0.6));
        assert_eq!(pooled, Score::Value(0.7));
    }

    #[test]
    fn summary_tells_no_pairs_from_does_not_apply_and_pools_only_when_needed() {
        let names = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let train = [s(0, 9, 1, None), s(1, 1, 9, None)];
        // Group a: 25 held-out pairs (longer wins each); b: 2 (shorter wins); c: none.
        let mut eval = vec![s(0, 9, 1, None); 25];
        eval.extend([s(1, 1, 9, None); 2]);
        let r = RealReference {
            group_names: names.clone(),
            train_counts: vec![1, 1, 0],
            eval_counts: vec![25, 2, 0],
            baselines: accuracy_baselines(&train, &eval, &names),
            min_group_pairs: 20,
        };
        let acc = |v: Option<f64>| AccuracyPair {
            acc_obs: v,
            acc_noiseless: None,
        };
        let metrics = vec![MetricsRow {
            run: RunColumns {
                method: "dpo".into(),
                kind: "dpo".into(),
                status: "ok".into(),
            },
            scores: Some(MethodScores {
                accuracy: Accuracy {
                    groups: vec![
                        ("a".into(), acc(Some(0.6))),
                        ("b".into(), acc(Some(0.0))),
                        ("c".into(), acc(None)),
                    ],
                    ..Accuracy::default()
                },
                ..MethodScores::default()
            }),
            ..MetricsRow::default()
        }];
        let md = r.summary_markdown(&metrics);
        // dpo: a 0.6, b 0 (flagged, pooled alone), c has no pairs; the worst group is a alone.
        assert!(
            md.contains("| dpo | 0.600 | 0.000 | no pairs | 0.600 | 0.000 |"),
            "{md}"
        );
        // Longer wins: a 1, b 0, c no pairs. The majority label does not apply anywhere.
        assert!(
            md.contains("| *longer wins* | 1.000 | 0.000 | no pairs | 1.000 | 0.000 |"),
            "{md}"
        );
        assert!(
            md.contains("| *majority label* | n/a | n/a | n/a | n/a | n/a |"),
            "{md}"
        );
        assert!(md.contains("| b † | 1 | 2 |"), "{md}");
        // Without small groups (only a), there is no pooled column.
        let big = RealReference {
            group_names: vec!["a".into()],
            train_counts: vec![1],
            eval_counts: vec![25],
            baselines: accuracy_baselines(&train[..1], &eval[..25], &names[..1]),
            min_group_pairs: 20,
        };
        let md = big.summary_markdown(&[]);
        assert!(!md.contains("pooled"), "{md}");
        assert!(
            md.contains("| chance | 0.500 | a coin flip | 0.500 |"),
            "{md}"
        );
    }

    #[test]
    fn nmi_null_columns_sit_beside_each_method() {
        let row = |m: &str| MetricsRow {
            run: RunColumns {
                method: m.into(),
                ..RunColumns::default()
            },
            ..MetricsRow::default()
        };
        let mut metrics = vec![row("dpo"), row("lpc")];
        let codes: Vec<CodeRow> = [(0, 1), (0, 1), (1, 0), (1, 0)]
            .into_iter()
            .map(|(t, c)| CodeRow {
                method: "lpc".into(),
                ty: t,
                prior_code: 0,
                posterior_code: c,
                ..CodeRow::default()
            })
            .collect();
        add_nmi_nulls(&mut metrics, &codes, 0);
        // Oracle: dpo has no codes (blank); lpc's prior codes are constant, so every shuffle
        // has NMI 0; its posterior codes split the two groups exactly, and some permutation
        // reproduces them (NMI 1).
        let null = |i: usize| metrics[i].nmi_null.clone().unwrap();
        assert_eq!(null(0).post_nmi_null_mean, None);
        assert_eq!(null(1).prior_nmi_null_p95, Some(0.0));
        assert!((null(1).post_nmi_null_p95.unwrap() - 1.0).abs() < 1e-9);
    }
}
