//! Human-readable reports: the `summary.md` a person reads first after a run.
//!
//! Reports read the same tables that are written as CSV, so a number in a report is always the
//! number in the files. The report of a whole result folder (`lpc-bench report`: tables over
//! seeds and the figures) is in [`folder`].

pub mod folder;

use crate::results::Table;
use crate::scenario::Scenario;

/// The headline score columns of a method, `(header, metrics.csv column)`, shared by a run's
/// `summary.md` and a sweep's `report.md`.
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

/// The TOML name of a checkpoint-selection rule.
fn select_name(s: crate::scenario::CheckpointSelect) -> &'static str {
    match s {
        crate::scenario::CheckpointSelect::Last => "last",
        crate::scenario::CheckpointSelect::BestVal => "best-val",
        crate::scenario::CheckpointSelect::BestValLoss => "best-val-loss",
    }
}

/// Format a cell as a 3-decimal number, or `–` when blank.
fn cell(t: &Table, row: usize, col: &str) -> String {
    match t.number(row, col) {
        Some(v) => format!("{v:.3}"),
        None => "–".to_string(),
    }
}

/// The `summary.md` of one run: the world, its ceilings and bounds, then one line per method.
pub fn run_summary(scenario: &Scenario, metrics: &Table) -> String {
    run_summary_with(scenario, metrics, None)
}

/// [`run_summary`], with a real-data run's reference points (groups and their sizes, baselines,
/// the shuffled-code NMI null, per-group accuracy with small groups flagged) after the methods.
pub fn run_summary_with(
    scenario: &Scenario,
    metrics: &Table,
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
        if !metrics.rows.is_empty() {
            s.push_str("## What the world allows (held-out pairs)\n\n");
            s.push_str("| ceiling | accuracy vs observed labels | accuracy vs noiseless type preference |\n|---|---|---|\n");
            for (name, key) in [
                ("type oracle (knows the type)", "type"),
                ("prompt oracle (knows P(type | x))", "prompt"),
                ("population oracle (knows the mixture)", "population"),
            ] {
                s.push_str(&format!(
                    "| {name} | {} | {} |\n",
                    cell(metrics, 0, &format!("ceil_{key}_obs")),
                    cell(metrics, 0, &format!("ceil_{key}_noiseless"))
                ));
            }
            s.push_str(&format!(
                "\nIdentifiability bound (Bayes posterior P(type | x, y_w > y_l), argmax): NMI {}, accuracy {}. \
                 A method whose posterior reads C context pairs of the annotator is shown beside the bound for \
                 that evidence (`bound NMI for its evidence`: the Bayes posterior given the pair and C context pairs, \
                 Monte Carlo over context draws; standard error in `bound_nmi_method_se`).\n\n",
                cell(metrics, 0, "bound_nmi"),
                cell(metrics, 0, "bound_acc")
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
    for r in 0..metrics.rows.len() {
        s.push_str(&format!(
            "| {} | {} |",
            metrics.get(r, "method").unwrap_or(""),
            metrics.get(r, "status").unwrap_or("")
        ));
        for (_, c) in &cols {
            s.push_str(&format!(" {} |", cell(metrics, r, c)));
        }
        s.push('\n');
    }
    if let Some(r) = reference {
        s.push('\n');
        s.push_str(&r.summary_markdown(metrics));
    }
    let groups: Vec<String> = metrics
        .columns
        .iter()
        .filter_map(|c| c.strip_prefix("acc_obs_").map(str::to_string))
        .filter(|g| g != "worst_group")
        .collect();
    if !groups.is_empty() && reference.is_none() {
        s.push_str("\n## Per-group accuracy vs observed labels (prior code)\n\n| method |");
        for g in &groups {
            s.push_str(&format!(" {g} |"));
        }
        s.push_str(" worst group |\n|---|");
        s.push_str(&"---|".repeat(groups.len() + 1));
        s.push('\n');
        for r in 0..metrics.rows.len() {
            s.push_str(&format!("| {} |", metrics.get(r, "method").unwrap_or("")));
            for g in &groups {
                s.push_str(&format!(" {} |", cell(metrics, r, &format!("acc_obs_{g}"))));
            }
            s.push_str(&format!(" {} |\n", cell(metrics, r, "acc_obs_worst_group")));
        }
    }
    let has_unseen =
        (0..metrics.rows.len()).any(|r| metrics.number(r, "n_unseen").is_some_and(|n| n > 0.0));
    if has_unseen {
        s.push_str(&format!(
            "\n## Held-out annotators never seen in training ({} held-out pairs)\n\n\
             Their posterior context is their own other held-out pairs (never another annotator's).\n\n\
             | method | acc noiseless | type-steered acc noiseless | posterior NMI | posterior matched acc | bound NMI for its evidence |\n|---|---|---|---|---|---|\n",
            cell(metrics, 0, "n_unseen").trim_end_matches(".000")
        ));
        for r in 0..metrics.rows.len() {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                metrics.get(r, "method").unwrap_or(""),
                cell(metrics, r, "acc_noiseless_unseen"),
                cell(metrics, r, "steered_acc_noiseless_unseen"),
                cell(metrics, r, "post_nmi_unseen"),
                cell(metrics, r, "post_matched_acc_unseen"),
                cell(metrics, r, "bound_nmi_method_unseen"),
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
