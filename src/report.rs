//! Human-readable reports: the `summary.md` a person reads first after a run.
//!
//! Reports read the same tables that are written as CSV, so a number in a report is always the
//! number in the files. The report of a whole result folder (`lpc-bench report`: tables over
//! seeds and the figures) is in [`folder`].

pub mod folder;

use crate::results::metrics_row::{MethodScores, MetricsRow, finite};
use crate::scenario::Scenario;

/// The headline score columns of a method, `(header, metrics.csv column)`: a sweep's
/// `report.md` reads them from the merged table by name; a run's `summary.md` reads the same
/// scores from typed rows through [`HEADLINE_SCORES`] (a test checks the two agree).
pub const HEADLINE_COLUMNS: [(&str, &str); 14] = [
    ("acc obs", "acc_obs"),
    ("acc noiseless", "acc_noiseless"),
    ("type-steered acc noiseless", "steered_acc_noiseless"),
    ("prior NMI", "prior_nmi"),
    ("posterior NMI", "post_nmi"),
    ("prior type info (nats)", "prior_type_info"),
    ("posterior type info (nats)", "post_type_info"),
    ("bound NMI for its evidence", "bound_nmi_method"),
    ("posterior matched acc", "post_matched_acc"),
    ("mean KL(q‖p)", "mean_kl"),
    ("policy reward", "policy_reward"),
    ("win vs π_ref", "policy_winrate_vs_ref"),
    ("KL(π‖π_ref)", "policy_kl_ref"),
    ("KL(π‖π*)", "policy_kl_opt"),
];

/// Reads a headline score from a row (`None` when blank or the row has no scores).
pub type ScoreOf = fn(&MetricsRow) -> Option<f64>;

/// The row's scores, when it has them (a diverged method has none).
fn scores(r: &MetricsRow) -> Option<&MethodScores> {
    r.scores.as_ref()
}

/// The typed readers of [`HEADLINE_COLUMNS`], in the same order.
pub const HEADLINE_SCORES: [ScoreOf; 14] = [
    |r| scores(r)?.accuracy.overall.acc_obs,
    |r| scores(r)?.accuracy.overall.acc_noiseless,
    |r| scores(r)?.steered.overall.acc_noiseless,
    |r| scores(r)?.prior.nmi,
    |r| scores(r)?.post.nmi,
    |r| scores(r)?.prior_info.type_info,
    |r| scores(r)?.post_info.type_info,
    |r| r.bound.as_ref()?.bound_nmi_method,
    |r| scores(r)?.post.matched_acc,
    |r| scores(r)?.kl.mean_kl,
    |r| scores(r)?.policy.policy_reward,
    |r| scores(r)?.policy.policy_winrate_vs_ref,
    |r| scores(r)?.policy.policy_kl_ref,
    |r| scores(r)?.policy.policy_kl_opt,
];

/// Headline score `i` of a row.
fn headline(row: &MetricsRow, i: usize) -> Option<f64> {
    HEADLINE_SCORES[i](row)
}

/// The TOML name of a checkpoint-selection rule.
fn select_name(s: crate::scenario::CheckpointSelect) -> &'static str {
    match s {
        crate::scenario::CheckpointSelect::Last => "last",
        crate::scenario::CheckpointSelect::BestVal => "best-val",
        crate::scenario::CheckpointSelect::BestValLoss => "best-val-loss",
    }
}

/// Format a score as a 3-decimal number, or `–` when blank.
fn cell(v: Option<f64>) -> String {
    match finite(v) {
        Some(v) => format!("{v:.3}"),
        None => "–".to_string(),
    }
}

/// The `summary.md` of one run: the world, its ceilings and bounds, then one line per method.
pub fn run_summary(scenario: &Scenario, metrics: &[MetricsRow]) -> String {
    run_summary_with(scenario, metrics, None)
}

/// [`run_summary`], with a real-data run's reference points (groups and their sizes, baselines,
/// the shuffled-code NMI null, per-group accuracy with small groups flagged) after the methods.
pub fn run_summary_with(
    scenario: &Scenario,
    metrics: &[MetricsRow],
    reference: Option<&crate::baselines::RealReference>,
) -> String {
    let mut s = String::new();
    s.push_str(&format!("# {} — lpc-bench run\n\n", scenario.name));
    if !scenario.description.is_empty() {
        s.push_str(&format!("{}\n\n", scenario.description.trim()));
    }
    if scenario.is_real_data() {
        s.push_str("Data: real preference files (see `scenario.resolved.toml`); groups are the files' group labels.");
        if reference.is_some() {
            s.push_str(" What was read, kept, tied and dropped is in `load.md`; reference points follow the methods.");
        }
        s.push_str("\n\n");
    } else {
        let w = scenario.world();
        s.push_str(&format!(
            "World: T = {} types (weights {:?}), S = {} sources, coupling {}, distance d = {}, {:?} reward × {}, \
             BT temperature {}, flip rate {}, {:?} reference; V = {}, L_x = {}, L_y = {}; {} train / {} validation / {} held-out pairs, seed {}. \
             Checkpoints are selected on the validation pairs only (`train.select = {}`); the held-out pairs are scored once.\n\n",
            w.types,
            w.type_weights(),
            w.sources,
            w.coupling,
            w.distance,
            w.reward,
            w.reward_scale,
            w.bt_temperature,
            scenario.noise.flip_rate,
            w.reference,
            w.vocab,
            w.prompt_len,
            w.response_len,
            scenario.data.train_pairs,
            scenario.data.val_pairs(),
            scenario.data.eval_pairs,
            scenario.data.seed,
            select_name(scenario.train.select),
        ));
        if let Some(first) = metrics.first() {
            let c = first.ceilings.clone().unwrap_or_default();
            s.push_str("## What the world allows (held-out pairs)\n\n");
            s.push_str("| ceiling | accuracy vs observed labels | accuracy vs noiseless type preference |\n|---|---|---|\n");
            for (name, obs, noiseless) in [
                (
                    "type oracle (knows the type)",
                    c.ceil_type_obs,
                    c.ceil_type_noiseless,
                ),
                (
                    "prompt oracle (knows P(type | x))",
                    c.ceil_prompt_obs,
                    c.ceil_prompt_noiseless,
                ),
                (
                    "population oracle (knows the mixture)",
                    c.ceil_population_obs,
                    c.ceil_population_noiseless,
                ),
            ] {
                s.push_str(&format!(
                    "| {name} | {} | {} |\n",
                    cell(obs),
                    cell(noiseless)
                ));
            }
            s.push_str(&format!(
                "\nIdentifiability bound (Bayes posterior P(type | x, y_w > y_l), argmax): NMI {}, accuracy {}. \
                 A method whose posterior reads C context pairs of the annotator is shown beside the bound for \
                 that evidence (`bound NMI for its evidence`: the Bayes posterior given the pair and C context pairs, \
                 Monte Carlo over context draws; standard error in `bound_nmi_method_se`).\n\n",
                cell(c.bound_nmi),
                cell(c.bound_acc)
            ));
        }
    }
    s.push_str("## Methods (held-out pairs; prior code unless stated)\n\n");
    let cols = HEADLINE_COLUMNS;
    s.push_str("| method | status |");
    for (h, _) in &cols {
        s.push_str(&format!(" {h} |"));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(cols.len()));
    s.push('\n');
    for r in metrics {
        s.push_str(&format!("| {} | {} |", r.run.method, r.run.status));
        for i in 0..cols.len() {
            s.push_str(&format!(" {} |", cell(headline(r, i))));
        }
        s.push('\n');
    }
    if let Some(r) = reference {
        s.push('\n');
        s.push_str(&r.summary_markdown(metrics));
    }
    // Groups in order of first appearance over the rows (the columns of `metrics.csv`).
    let mut groups: Vec<String> = Vec::new();
    for r in metrics {
        for (g, _) in r.scores.iter().flat_map(|s| &s.accuracy.groups) {
            if !groups.contains(g) {
                groups.push(g.clone());
            }
        }
    }
    if !groups.is_empty() && reference.is_none() {
        s.push_str("\n## Per-group accuracy vs observed labels (prior code)\n\n| method |");
        for g in &groups {
            s.push_str(&format!(" {g} |"));
        }
        s.push_str(" worst group |\n|---|");
        s.push_str(&"---|".repeat(groups.len() + 1));
        s.push('\n');
        for r in metrics {
            s.push_str(&format!("| {} |", r.run.method));
            for g in &groups {
                s.push_str(&format!(
                    " {} |",
                    cell(r.group_accuracy(g).and_then(|a| a.acc_obs))
                ));
            }
            let worst = r
                .scores
                .as_ref()
                .and_then(|s| s.accuracy.worst.acc_obs_worst_group);
            s.push_str(&format!(" {} |\n", cell(worst)));
        }
    }
    let unseen = |r: &MetricsRow| {
        r.scores
            .as_ref()
            .map(|s| s.unseen.clone())
            .unwrap_or_default()
    };
    let has_unseen = metrics
        .iter()
        .any(|r| finite(unseen(r).n_unseen).is_some_and(|n| n > 0.0));
    if has_unseen {
        s.push_str(&format!(
            "\n## Held-out annotators never seen in training ({} held-out pairs)\n\n\
             Their posterior context is their own other held-out pairs (never another annotator's).\n\n\
             | method | acc noiseless | type-steered acc noiseless | posterior NMI | posterior matched acc | bound NMI for its evidence |\n|---|---|---|---|---|---|\n",
            cell(metrics.first().and_then(|r| unseen(r).n_unseen)).trim_end_matches(".000")
        ));
        for r in metrics {
            let u = unseen(r);
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.run.method,
                cell(u.acc_noiseless_unseen),
                cell(u.steered_acc_noiseless_unseen),
                cell(u.post_nmi_unseen),
                cell(u.post_matched_acc_unseen),
                cell(r.bound.as_ref().and_then(|b| b.bound_nmi_method_unseen)),
            ));
        }
    }
    s.push_str(
        "\n`–` marks a score that does not apply (codes for a baseline, true rewards for real data). \
         Every number is in `metrics.csv` (wall-clock times, the one output that varies between identical runs, are in `timing.csv`); training curves are in `curves.csv`, per-pair codes in \
         `codes.csv`, the code × type steering table in `steering.csv`.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headline_readers_read_the_named_columns() {
        // Oracle: a metrics.csv holding 0.5 in headline column i (and blanks elsewhere) reads
        // back as a row whose headline score i is 0.5 and every other headline blank.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        for (i, (_, column)) in HEADLINE_COLUMNS.iter().enumerate() {
            let text = format!("method,kind,status,eval_loss,{column}\nm,k,ok,,0.5\n");
            std::fs::write(&path, text).unwrap();
            let rows = crate::results::metrics_row::read_metrics(&path).unwrap();
            for j in 0..HEADLINE_COLUMNS.len() {
                let want = (i == j).then_some(0.5);
                assert_eq!(headline(&rows[0], j), want, "{column} vs headline {j}");
            }
        }
    }
}
