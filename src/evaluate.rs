//! Scores for one trained method on the held-out pairs (METHOD.md §3), computed on the host from
//! per-pair numbers the model produced: implicit-reward margins, code probabilities and KLs.
//!
//! This module turns predictions into typed scores (the segments of
//! `results::metrics_row`); it does not run models (see `train`) and does
//! not write files (see `results`). A score that does not apply (codes for a baseline, true
//! rewards for real data) is `None` and is written as a blank, never as 0.

use crate::data::PreferencePair;
use crate::metrics;
use crate::results::metrics_row::{
    Accuracy, AccuracyPair, Information, KlColumns, MethodScores, Recovery, Unseen, WorstGroup,
};

/// What a trained method predicts for each held-out pair.
#[derive(Debug, Clone, Default)]
pub struct PairPredictions {
    /// Implicit-reward margin with the code from the prior (or no code):
    /// `beta [(log pi(y_w|x,z) - log pi_ref(y_w|x)) - (log pi(y_l|x,z) - log pi_ref(y_l|x))]`
    /// (SimPO: the length-normalised form). Positive = the model prefers `chosen`.
    pub margin: Vec<f64>,
    /// The same margin with the code matched to the pair's true type (type-steered view).
    pub steered_margin: Option<Vec<f64>>,
    /// Posterior code probabilities q(z | x, y_w > y_l), one row per pair.
    pub posterior: Option<Vec<Vec<f64>>>,
    /// Prior code probabilities p(z | x), one row per pair.
    pub prior: Option<Vec<Vec<f64>>>,
    /// KL(q || p) per pair.
    pub kl: Option<Vec<f64>>,
}

/// Index of the largest entry (first on ties).
pub fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// [`metrics::margin_accuracy`] of the margins against `target(pair)` over the pairs `keep`
/// admits (a tie counts 1/2, a NaN margin gives NaN); `None` when no pair is kept or a kept
/// pair has no target.
fn mean_where(
    pairs: &[PreferencePair],
    margins: &[f64],
    keep: impl Fn(&PreferencePair) -> bool,
    target: impl Fn(&PreferencePair) -> Option<f64>,
) -> Option<f64> {
    let (mut kept, mut targets) = (Vec::new(), Vec::new());
    for (p, m) in pairs.iter().zip(margins) {
        if !keep(p) {
            continue;
        }
        targets.push(target(p)?);
        kept.push(*m);
    }
    (!kept.is_empty()).then(|| metrics::margin_accuracy(&kept, &targets))
}

/// Preference accuracy of `margins`: against observed labels (the chosen side always won the
/// observed comparison, target 1) and, where the world knows it, against the noiseless type
/// preference; overall, per group (named by `group_names`) and of the worst group.
pub fn accuracy_scores(
    pairs: &[PreferencePair],
    margins: &[f64],
    group_names: &[String],
) -> Accuracy {
    let observed = |_: &PreferencePair| Some(1.0);
    let noiseless = |p: &PreferencePair| p.truth.map(|t| t.noiseless_chosen_wins());
    let overall = AccuracyPair {
        acc_obs: mean_where(pairs, margins, |_| true, observed),
        acc_noiseless: mean_where(pairs, margins, |_| true, noiseless),
    };
    let groups: Vec<(String, AccuracyPair)> = group_names
        .iter()
        .enumerate()
        .map(|(g, name)| {
            let pair = AccuracyPair {
                acc_obs: mean_where(pairs, margins, |p| p.group == g, observed),
                acc_noiseless: mean_where(pairs, margins, |p| p.group == g, noiseless),
            };
            (name.clone(), pair)
        })
        .collect();
    let worst = groups
        .iter()
        .filter_map(|(_, a)| a.acc_obs)
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.min(v)))
        });
    Accuracy {
        overall,
        groups,
        worst: WorstGroup {
            acc_obs_worst_group: worst,
        },
    }
}

/// Accuracy with every score blank and the groups named (a method that cannot steer).
fn blank_accuracy(group_names: &[String]) -> Accuracy {
    Accuracy {
        groups: group_names
            .iter()
            .map(|n| (n.clone(), AccuracyPair::default()))
            .collect(),
        ..Accuracy::default()
    }
}

/// Latent-recovery scores of argmax codes against the true groups: NMI, ARI, purity,
/// Hungarian one-to-one accuracy, code-usage perplexity and active codes (>= 1 % of pairs).
/// Blank without codes.
pub fn recovery_scores(codes: Option<&[usize]>, truth: &[usize]) -> Recovery {
    let Some(codes) = codes else {
        return Recovery::default();
    };
    Recovery {
        nmi: Some(metrics::nmi(codes, truth)),
        ari: Some(metrics::ari(codes, truth)),
        purity: Some(metrics::purity(codes, truth)),
        matched_acc: Some(metrics::matched_accuracy(codes, truth)),
        perplexity: Some(metrics::code_perplexity(codes)),
        active_codes: Some(metrics::active_codes(codes, metrics::ACTIVE_CODE_FRACTION) as f64),
    }
}

/// What the code distributions themselves say, in nats: `code_info` = I(pair; z), the
/// information the head's distribution carries about its input, and `type_info` = I(type; z),
/// about the true type ([`metrics::code_information`], [`metrics::type_code_information`]).
/// Beside the argmax scores, these tell a nearly flat head (whose argmax NMI can still be high)
/// from one that commits to its codes. Blank for methods without the head.
pub fn information_scores(probs: Option<&[Vec<f64>]>, truth: &[usize]) -> Information {
    Information {
        code_info: probs.map(metrics::code_information),
        type_info: probs.map(|p| metrics::type_code_information(p, truth)),
    }
}

/// Every held-out score of one method that its predictions give (the loss, unseen-annotator
/// scores and policy quality are the caller's: left blank here).
pub fn score_method(
    pairs: &[PreferencePair],
    preds: &PairPredictions,
    group_names: &[String],
) -> MethodScores {
    let truth: Vec<usize> = pairs.iter().map(|p| p.group).collect();
    let accuracy = accuracy_scores(pairs, &preds.margin, group_names);
    let steered = match &preds.steered_margin {
        Some(m) => accuracy_scores(pairs, m, group_names),
        None => blank_accuracy(group_names),
    };
    let post: Option<Vec<usize>> = preds
        .posterior
        .as_ref()
        .map(|rows| rows.iter().map(|r| argmax(r)).collect());
    let prior: Option<Vec<usize>> = preds
        .prior
        .as_ref()
        .map(|rows| rows.iter().map(|r| argmax(r)).collect());
    MethodScores {
        accuracy,
        steered,
        post: recovery_scores(post.as_deref(), &truth),
        prior: recovery_scores(prior.as_deref(), &truth),
        post_info: information_scores(preds.posterior.as_deref(), &truth),
        prior_info: information_scores(preds.prior.as_deref(), &truth),
        kl: KlColumns {
            mean_kl: preds
                .kl
                .as_ref()
                .map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64),
        },
        ..MethodScores::default()
    }
}

/// Scores on the held-out pairs at `unseen` (indices of pairs whose annotator has no training
/// pairs): `n_unseen`, accuracy against the noiseless preference (inference and type-steered
/// code) and posterior-code recovery (NMI, matched accuracy). Blank when there are no such pairs
/// or the score does not apply.
pub fn unseen_scores(
    pairs: &[PreferencePair],
    preds: &PairPredictions,
    unseen: &[usize],
) -> Unseen {
    let sub: Vec<PreferencePair> = unseen.iter().map(|&i| pairs[i].clone()).collect();
    let pick = |v: &[f64]| -> Vec<f64> { unseen.iter().map(|&i| v[i]).collect() };
    let noiseless = |p: &PreferencePair| p.truth.map(|t| t.noiseless_chosen_wins());
    let acc = |m: &[f64]| mean_where(&sub, &pick(m), |_| true, noiseless);
    let post: Option<Vec<usize>> = preds
        .posterior
        .as_ref()
        .filter(|_| !unseen.is_empty())
        .map(|rows| unseen.iter().map(|&i| argmax(&rows[i])).collect());
    let truth: Vec<usize> = sub.iter().map(|p| p.group).collect();
    Unseen {
        n_unseen: Some(unseen.len() as f64),
        acc_noiseless_unseen: acc(&preds.margin),
        steered_acc_noiseless_unseen: preds.steered_margin.as_deref().and_then(acc),
        post_nmi_unseen: post.as_ref().map(|c| metrics::nmi(c, &truth)),
        post_matched_acc_unseen: post.as_ref().map(|c| metrics::matched_accuracy(c, &truth)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PairTruth;

    fn pair(group: usize, rc: f64, rr: f64) -> PreferencePair {
        PreferencePair {
            prompt: vec![0],
            chosen: vec![1],
            rejected: vec![2],
            group,
            source: 0,
            annotator: 0,
            truth: Some(PairTruth {
                reward_chosen: rc,
                reward_rejected: rr,
                label_prob: 0.5,
                flipped: false,
            }),
        }
    }

    #[test]
    fn accuracy_counts_ties_as_half_and_splits_by_group() {
        // Pairs: (g0, truly chosen), (g0, truly rejected), (g1, truly chosen).
        let pairs = vec![pair(0, 1.0, 0.0), pair(0, 0.0, 1.0), pair(1, 1.0, 0.0)];
        let names = vec!["a".to_string(), "b".to_string()];
        // Margins +, +, 0: observed accuracy = (1 + 1 + 0.5)/3; noiseless = (1 + 0 + 0.5)/3.
        let s = accuracy_scores(&pairs, &[1.0, 2.0, 0.0], &names);
        assert!((s.overall.acc_obs.unwrap() - 2.5 / 3.0).abs() < 1e-12);
        assert!((s.overall.acc_noiseless.unwrap() - 1.5 / 3.0).abs() < 1e-12);
        assert_eq!(s.groups[0].0, "a");
        assert_eq!(s.groups[0].1.acc_obs, Some(1.0));
        assert_eq!(s.groups[0].1.acc_noiseless, Some(0.5));
        assert_eq!(s.groups[1].1.acc_obs, Some(0.5));
        assert_eq!(s.worst.acc_obs_worst_group, Some(0.5));
    }

    #[test]
    fn accuracy_uses_the_crate_rule_for_double_ties_and_nan() {
        // Oracle: metrics::preference_credit(margin_prediction(m), t) = p t + (1 - p)(1 - t).
        // Equal true rewards give the noiseless target 1/2; a zero margin predicts 1/2; the
        // credit is 1/4 + 1/4 = 1/2 (not 1: two coin flips agree half the time).
        let names = vec!["a".to_string()];
        let tie = accuracy_scores(&[pair(0, 1.0, 1.0)], &[0.0], &names);
        assert_eq!(tie.overall.acc_noiseless, Some(0.5));
        assert_eq!(tie.overall.acc_obs, Some(0.5));
        // A NaN margin (a diverged model) is not scored as a tie: the accuracy is NaN.
        let nan = accuracy_scores(&[pair(0, 1.0, 0.0)], &[f64::NAN], &names);
        assert!(
            nan.overall.acc_obs.unwrap().is_nan() && nan.overall.acc_noiseless.unwrap().is_nan()
        );
    }

    #[test]
    fn baselines_get_blank_code_scores() {
        let pairs = vec![pair(0, 1.0, 0.0)];
        let preds = PairPredictions {
            margin: vec![1.0],
            ..Default::default()
        };
        // Oracle: without a posterior or prior every code score is blank (None).
        let s = score_method(&pairs, &preds, &["t0".to_string()]);
        assert_eq!(s.post, Recovery::default());
        assert_eq!(s.prior, Recovery::default());
        assert_eq!(s.post_info, Information::default());
        assert_eq!(s.prior_info, Information::default());
        assert_eq!(s.kl.mean_kl, None);
    }
}
