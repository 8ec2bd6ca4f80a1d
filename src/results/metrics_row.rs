//! The typed row of `metrics.csv`: one method's scores, as segments that are serde structs.
//!
//! A segment's columns are its field names (with a prefix where one struct serves twice:
//! `steered_` accuracy, `post_` / `prior_` code scores), so every column is named once, here,
//! and renaming a field is a compile error wherever the score is produced or read. Per-group
//! accuracy is a typed map (group name → [`AccuracyPair`]) written as the columns
//! `{prefix}acc_obs_{group}` then `{prefix}acc_noiseless_{group}`.
//!
//! Segments a row does not have (the training columns of a rescored row, every score of a
//! diverged method, the world statistics of real data, the NMI null of synthetic worlds) are
//! left out, and [`write_metrics`] writes the union of the rows' columns in order of first
//! appearance with blanks elsewhere, so the file is byte-identical to the one the untyped table
//! wrote. [`read_metrics`] reads a file back into rows; a segment whose columns are all absent
//! reads as `None`.

use std::path::Path;

use csv::StringRecord;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Table;
use super::rows::opt_num;
use crate::{Error, Result};

/// Which method a row scores, its canonical kind, and how its training ended (`ok`,
/// `diverged@<step>`, `rescored`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunColumns {
    /// Method label.
    pub method: String,
    /// Canonical method name (`lpc-dpo`, `dpo`, ...).
    pub kind: String,
    /// `ok`, `diverged@<step>` or `rescored`.
    pub status: String,
}

/// How a method was trained (absent in `lpc-bench eval`'s rescored rows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingColumns {
    /// Optimiser steps taken.
    pub steps: usize,
    /// The step of the selected checkpoint.
    pub selected_step: usize,
    /// KL(pi_ref || pi_start) of the shared starting policy (synthetic worlds).
    #[serde(with = "opt_num", default)]
    pub warmup_kl_ref_start: Option<f64>,
}

/// The held-out loss with the inference code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossColumns {
    /// Mean held-out base loss.
    #[serde(with = "opt_num", default)]
    pub eval_loss: Option<f64>,
}

/// Preference accuracy against observed labels and against the noiseless type preference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccuracyPair {
    /// Against observed labels.
    #[serde(with = "opt_num", default)]
    pub acc_obs: Option<f64>,
    /// Against the noiseless type preference (synthetic worlds).
    #[serde(with = "opt_num", default)]
    pub acc_noiseless: Option<f64>,
}

/// The worst group's accuracy against observed labels.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorstGroup {
    /// Smallest per-group accuracy against observed labels.
    #[serde(with = "opt_num", default)]
    pub acc_obs_worst_group: Option<f64>,
}

/// Accuracy overall, per group (in group order) and of the worst group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accuracy {
    /// Over every held-out pair.
    pub overall: AccuracyPair,
    /// Per group: its name and its accuracy.
    pub groups: Vec<(String, AccuracyPair)>,
    /// The worst group.
    pub worst: WorstGroup,
}

/// Latent recovery of argmax codes against the true groups (prefix `post_` or `prior_`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Normalised mutual information.
    #[serde(with = "opt_num", default)]
    pub nmi: Option<f64>,
    /// Adjusted Rand index.
    #[serde(with = "opt_num", default)]
    pub ari: Option<f64>,
    /// Purity.
    #[serde(with = "opt_num", default)]
    pub purity: Option<f64>,
    /// Hungarian one-to-one accuracy.
    #[serde(with = "opt_num", default)]
    pub matched_acc: Option<f64>,
    /// Code-usage perplexity.
    #[serde(with = "opt_num", default)]
    pub perplexity: Option<f64>,
    /// Codes used by at least 1 % of the pairs.
    #[serde(with = "opt_num", default)]
    pub active_codes: Option<f64>,
}

/// What the code distributions carry, in nats (prefix `post_` or `prior_`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Information {
    /// I(pair; z).
    #[serde(with = "opt_num", default)]
    pub code_info: Option<f64>,
    /// I(type; z).
    #[serde(with = "opt_num", default)]
    pub type_info: Option<f64>,
}

/// Mean KL(q ‖ p) over the held-out pairs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KlColumns {
    /// Mean KL(q ‖ p) (blank without a posterior).
    #[serde(with = "opt_num", default)]
    pub mean_kl: Option<f64>,
}

/// Scores on held-out pairs whose annotator never appears in training.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Unseen {
    /// Number of such pairs.
    #[serde(with = "opt_num", default)]
    pub n_unseen: Option<f64>,
    /// Accuracy against the noiseless preference, inference code.
    #[serde(with = "opt_num", default)]
    pub acc_noiseless_unseen: Option<f64>,
    /// The same with the type-steered code.
    #[serde(with = "opt_num", default)]
    pub steered_acc_noiseless_unseen: Option<f64>,
    /// Posterior-code NMI.
    #[serde(with = "opt_num", default)]
    pub post_nmi_unseen: Option<f64>,
    /// Posterior-code matched accuracy.
    #[serde(with = "opt_num", default)]
    pub post_matched_acc_unseen: Option<f64>,
}

/// Policy quality with the inference code (synthetic worlds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyColumns {
    /// Mean true reward of the policy's responses.
    #[serde(with = "opt_num", default)]
    pub policy_reward: Option<f64>,
    /// Mean true reward of the reference's responses.
    #[serde(with = "opt_num", default)]
    pub ref_reward: Option<f64>,
    /// Win rate against reference samples.
    #[serde(with = "opt_num", default)]
    pub policy_winrate_vs_ref: Option<f64>,
    /// Monte-Carlo KL(pi ‖ pi_ref).
    #[serde(with = "opt_num", default)]
    pub policy_kl_ref: Option<f64>,
    /// KL(pi ‖ pi*) where pi* is the objective's optimum.
    #[serde(with = "opt_num", default)]
    pub policy_kl_opt: Option<f64>,
}

/// The identifiability bound for the evidence a method reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodBound {
    /// NMI of the Bayes posterior's argmax.
    #[serde(with = "opt_num", default)]
    pub bound_nmi_method: Option<f64>,
    /// Its Monte Carlo standard error.
    #[serde(with = "opt_num", default)]
    pub bound_nmi_method_se: Option<f64>,
    /// Accuracy of the Bayes posterior's argmax.
    #[serde(with = "opt_num", default)]
    pub bound_acc_method: Option<f64>,
    /// NMI on the pairs of unseen annotators.
    #[serde(with = "opt_num", default)]
    pub bound_nmi_method_unseen: Option<f64>,
}

/// The world's accuracy ceilings and identifiability bound (blank for real data).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    /// Type oracle, observed labels.
    #[serde(with = "opt_num", default)]
    pub ceil_type_obs: Option<f64>,
    /// Prompt oracle, observed labels.
    #[serde(with = "opt_num", default)]
    pub ceil_prompt_obs: Option<f64>,
    /// Population oracle, observed labels.
    #[serde(with = "opt_num", default)]
    pub ceil_population_obs: Option<f64>,
    /// Type oracle, noiseless preference.
    #[serde(with = "opt_num", default)]
    pub ceil_type_noiseless: Option<f64>,
    /// Prompt oracle, noiseless preference.
    #[serde(with = "opt_num", default)]
    pub ceil_prompt_noiseless: Option<f64>,
    /// Population oracle, noiseless preference.
    #[serde(with = "opt_num", default)]
    pub ceil_population_noiseless: Option<f64>,
    /// NMI of the Bayes posterior's argmax type given the pair.
    #[serde(with = "opt_num", default)]
    pub bound_nmi: Option<f64>,
    /// Its accuracy.
    #[serde(with = "opt_num", default)]
    pub bound_acc: Option<f64>,
}

/// Expected-value ceilings and world statistics (synthetic worlds only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorldStats {
    /// Type oracle, observed labels, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_type_exp_obs: Option<f64>,
    /// Prompt oracle, observed labels, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_prompt_exp_obs: Option<f64>,
    /// Population oracle, observed labels, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_population_exp_obs: Option<f64>,
    /// Type oracle, noiseless preference, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_type_exp_noiseless: Option<f64>,
    /// Prompt oracle, noiseless preference, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_prompt_exp_noiseless: Option<f64>,
    /// Population oracle, noiseless preference, expected.
    #[serde(with = "opt_num", default)]
    pub ceil_population_exp_noiseless: Option<f64>,
    /// Share of pairs whose observed label agrees with the type's noiseless preference.
    #[serde(with = "opt_num", default)]
    pub world_label_agreement: Option<f64>,
    /// Share of pairs on which two types disagree.
    #[serde(with = "opt_num", default)]
    pub world_disagreement_rate: Option<f64>,
    /// Mean Jensen–Shannon divergence between the types' label distributions, in bits.
    #[serde(with = "opt_num", default)]
    pub world_js_bits: Option<f64>,
    /// Mean cosine between the types' reward directions.
    #[serde(with = "opt_num", default)]
    pub world_cosine_mean: Option<f64>,
}

/// The shuffled-code NMI null of a method's codes (real data).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NmiNull {
    /// Mean NMI of the shuffled prior codes.
    #[serde(with = "opt_num", default)]
    pub prior_nmi_null_mean: Option<f64>,
    /// Its 95th percentile.
    #[serde(with = "opt_num", default)]
    pub prior_nmi_null_p95: Option<f64>,
    /// Mean NMI of the shuffled posterior codes.
    #[serde(with = "opt_num", default)]
    pub post_nmi_null_mean: Option<f64>,
    /// Its 95th percentile.
    #[serde(with = "opt_num", default)]
    pub post_nmi_null_p95: Option<f64>,
}

/// Every held-out score of one trained model (`evaluate::score_method` and the run's
/// additions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodScores {
    /// The held-out loss.
    pub loss: LossColumns,
    /// Accuracy with the inference code.
    pub accuracy: Accuracy,
    /// Accuracy with the code matched to each pair's type (prefix `steered_`).
    pub steered: Accuracy,
    /// Posterior-code recovery (prefix `post_`).
    pub post: Recovery,
    /// Prior-code recovery (prefix `prior_`).
    pub prior: Recovery,
    /// Posterior information (prefix `post_`).
    pub post_info: Information,
    /// Prior information (prefix `prior_`).
    pub prior_info: Information,
    /// Mean KL(q ‖ p).
    pub kl: KlColumns,
    /// Scores on unseen annotators.
    pub unseen: Unseen,
    /// Policy quality.
    pub policy: PolicyColumns,
}

/// One row of `metrics.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsRow {
    /// Method, kind, status.
    pub run: RunColumns,
    /// Training steps (absent when rescored).
    pub training: Option<TrainingColumns>,
    /// The method's scores (absent when it diverged).
    pub scores: Option<MethodScores>,
    /// The bound for the method's evidence.
    pub bound: Option<MethodBound>,
    /// The world's ceilings (blank for real data).
    pub ceilings: Option<Ceilings>,
    /// World statistics (synthetic worlds).
    pub world: Option<WorldStats>,
    /// The shuffled-code NMI null (real data).
    pub nmi_null: Option<NmiNull>,
}

/// Prefixes of the segments that serve twice.
const STEERED: &str = "steered_";
const POST: &str = "post_";
const PRIOR: &str = "prior_";

/// The `(column, text)` cells of a flat serde struct, columns prefixed with `prefix`. Numbers
/// are written as every result file writes them ([`opt_num`]).
pub(super) fn leaf_cells<T: Serialize>(prefix: &str, value: &T, out: &mut Vec<(String, String)>) {
    let mut w = csv::Writer::from_writer(Vec::new());
    // A flat struct of strings, integers and formatted numbers always serialises.
    w.serialize(value).expect("a flat row serialises as CSV");
    let bytes = w.into_inner().expect("writing to memory does not fail");
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header = r.headers().expect("the header just written").clone();
    let record = r.records().next().and_then(|x| x.ok()).unwrap_or_default();
    for (h, v) in header.iter().zip(record.iter()) {
        out.push((format!("{prefix}{h}"), v.to_string()));
    }
}

/// The column names of a flat serde struct (its field names).
fn field_names<T: Serialize + Default>() -> Vec<String> {
    let mut cells = Vec::new();
    leaf_cells("", &T::default(), &mut cells);
    cells.into_iter().map(|(h, _)| h).collect()
}

/// The per-group columns of one accuracy field.
fn group_column(prefix: &str, field: &str, group: &str) -> String {
    format!("{prefix}{field}_{group}")
}

impl Accuracy {
    fn cells(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        leaf_cells(prefix, &self.overall, out);
        let mut per_group: Vec<Vec<(String, String)>> = Vec::new();
        for (_, pair) in &self.groups {
            let mut c = Vec::new();
            leaf_cells("", pair, &mut c);
            per_group.push(c);
        }
        for field in 0..field_names::<AccuracyPair>().len() {
            for ((name, _), cells) in self.groups.iter().zip(&per_group) {
                let (col, value) = &cells[field];
                out.push((group_column(prefix, col, name), value.clone()));
            }
        }
        leaf_cells(prefix, &self.worst, out);
    }
}

impl MetricsRow {
    /// The row's `(column, text)` cells, in file order.
    pub fn cells(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        leaf_cells("", &self.run, &mut out);
        if let Some(t) = &self.training {
            leaf_cells("", t, &mut out);
        }
        if let Some(s) = &self.scores {
            leaf_cells("", &s.loss, &mut out);
            s.accuracy.cells("", &mut out);
            s.steered.cells(STEERED, &mut out);
            leaf_cells(POST, &s.post, &mut out);
            leaf_cells(PRIOR, &s.prior, &mut out);
            leaf_cells(POST, &s.post_info, &mut out);
            leaf_cells(PRIOR, &s.prior_info, &mut out);
            leaf_cells("", &s.kl, &mut out);
            leaf_cells("", &s.unseen, &mut out);
            leaf_cells("", &s.policy, &mut out);
        }
        if let Some(b) = &self.bound {
            leaf_cells("", b, &mut out);
        }
        if let Some(c) = &self.ceilings {
            leaf_cells("", c, &mut out);
        }
        if let Some(w) = &self.world {
            leaf_cells("", w, &mut out);
        }
        if let Some(n) = &self.nmi_null {
            leaf_cells("", n, &mut out);
        }
        out
    }

    /// The accuracy of group `group` (by name), when the row has scores and the group.
    pub fn group_accuracy(&self, group: &str) -> Option<&AccuracyPair> {
        let groups = &self.scores.as_ref()?.accuracy.groups;
        groups.iter().find(|(g, _)| g == group).map(|(_, a)| a)
    }

    /// Whether the method's training diverged.
    pub fn diverged(&self) -> bool {
        self.run.status.starts_with("diverged")
    }
}

/// The table `metrics.csv` holds: the union of the rows' columns in order of first appearance.
pub fn metrics_table(rows: &[MetricsRow]) -> Table {
    let mut t = Table::default();
    for r in rows {
        t.push(r.cells());
    }
    t
}

/// Write `metrics.csv` atomically.
pub fn write_metrics(path: &Path, rows: &[MetricsRow]) -> Result<()> {
    metrics_table(rows).write(path)
}

/// One record of a metrics file with its header, for reading segments.
struct Record<'a> {
    header: &'a StringRecord,
    record: &'a StringRecord,
}

impl Record<'_> {
    fn get(&self, column: &str) -> Option<&str> {
        let i = self.header.iter().position(|h| h == column)?;
        self.record.get(i)
    }

    /// The segment `T` from the columns `prefix` + its field names; `None` when none of them
    /// is in the header. A value that does not parse is an error naming the column.
    fn leaf<T: Serialize + DeserializeOwned + Default>(
        &self,
        prefix: &str,
    ) -> std::result::Result<Option<T>, String> {
        let mut header = StringRecord::new();
        let mut record = StringRecord::new();
        for f in field_names::<T>() {
            if let Some(v) = self.get(&format!("{prefix}{f}")) {
                header.push_field(&f);
                record.push_field(v);
            }
        }
        if header.is_empty() {
            return Ok(None);
        }
        record.deserialize(Some(&header)).map(Some).map_err(|e| {
            let column = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| header.get(i as usize))
                    .map(|c| format!("column '{prefix}{c}': "))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            format!("{column}{e}")
        })
    }

    fn accuracy(&self, prefix: &str) -> std::result::Result<Accuracy, String> {
        let fields = field_names::<AccuracyPair>();
        let worst = field_names::<WorstGroup>();
        let first = format!("{prefix}{}_", fields[0]);
        let groups: Vec<String> = self
            .header
            .iter()
            .filter_map(|h| h.strip_prefix(&first))
            .filter(|g| !worst.iter().any(|w| format!("{}_{g}", fields[0]) == *w))
            .map(str::to_string)
            .collect();
        let mut per_group = Vec::new();
        for g in groups {
            let mut header = StringRecord::new();
            let mut record = StringRecord::new();
            for f in &fields {
                if let Some(v) = self.get(&group_column(prefix, f, &g)) {
                    header.push_field(f);
                    record.push_field(v);
                }
            }
            let pair: AccuracyPair = record
                .deserialize(Some(&header))
                .map_err(|e| format!("group '{g}': {e}"))?;
            per_group.push((g, pair));
        }
        Ok(Accuracy {
            overall: self.leaf(prefix)?.unwrap_or_default(),
            groups: per_group,
            worst: self.leaf(prefix)?.unwrap_or_default(),
        })
    }

    fn row(&self) -> std::result::Result<MetricsRow, String> {
        let scores = match self.leaf::<LossColumns>("")? {
            None => None,
            Some(loss) => Some(MethodScores {
                loss,
                accuracy: self.accuracy("")?,
                steered: self.accuracy(STEERED)?,
                post: self.leaf(POST)?.unwrap_or_default(),
                prior: self.leaf(PRIOR)?.unwrap_or_default(),
                post_info: self.leaf(POST)?.unwrap_or_default(),
                prior_info: self.leaf(PRIOR)?.unwrap_or_default(),
                kl: self.leaf("")?.unwrap_or_default(),
                unseen: self.leaf("")?.unwrap_or_default(),
                policy: self.leaf("")?.unwrap_or_default(),
            }),
        };
        Ok(MetricsRow {
            run: self.leaf("")?.unwrap_or_default(),
            training: self.leaf("")?,
            scores,
            bound: self.leaf("")?,
            ceilings: self.leaf("")?,
            world: self.leaf("")?,
            nmi_null: self.leaf("")?,
        })
    }
}

/// Read a `metrics.csv` into typed rows. Errors name the file, the line and the column.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::Reader::from_reader(std::io::BufReader::new(file));
    let header = reader
        .headers()
        .map_err(|e| super::csv_error(path, e))?
        .clone();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| super::csv_error(path, e))?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let r = Record {
            header: &header,
            record: &record,
        };
        rows.push(r.row().map_err(|message| Error::Data {
            path: path.to_path_buf(),
            line,
            message,
        })?);
    }
    Ok(rows)
}

/// A score as a report shows it: `None` for a blank, NaN or infinite value (the file writes
/// those blank).
pub fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(o: f64, n: f64) -> AccuracyPair {
        AccuracyPair {
            acc_obs: Some(o),
            acc_noiseless: Some(n),
        }
    }

    #[test]
    fn a_row_writes_the_columns_of_the_untyped_table_and_reads_back() {
        // Oracle: the column order `metrics.csv` has always had (run, training, eval_loss,
        // accuracy with per-group columns field-major, steered accuracy, post/prior recovery
        // and information, mean_kl, unseen, policy, bound, ceilings), blanks for None.
        let row = MetricsRow {
            run: RunColumns {
                method: "lpc".into(),
                kind: "lpc-dpo".into(),
                status: "ok".into(),
            },
            training: Some(TrainingColumns {
                steps: 60,
                selected_step: 20,
                warmup_kl_ref_start: Some(0.125),
            }),
            scores: Some(MethodScores {
                loss: LossColumns {
                    eval_loss: Some(0.5),
                },
                accuracy: Accuracy {
                    overall: acc(0.5, 0.25),
                    groups: vec![
                        ("type0".into(), acc(1.0, 0.75)),
                        ("type1".into(), acc(0.0, 0.5)),
                    ],
                    worst: WorstGroup {
                        acc_obs_worst_group: Some(0.0),
                    },
                },
                ..MethodScores::default()
            }),
            bound: Some(MethodBound::default()),
            ceilings: Some(Ceilings::default()),
            world: None,
            nmi_null: None,
        };
        let cells = row.cells();
        let names: Vec<&str> = cells.iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(
            &names[..14],
            [
                "method",
                "kind",
                "status",
                "steps",
                "selected_step",
                "warmup_kl_ref_start",
                "eval_loss",
                "acc_obs",
                "acc_noiseless",
                "acc_obs_type0",
                "acc_obs_type1",
                "acc_noiseless_type0",
                "acc_noiseless_type1",
                "acc_obs_worst_group",
            ]
        );
        assert_eq!(names[14], "steered_acc_obs");
        assert!(names.contains(&"post_nmi") && names.contains(&"prior_type_info"));
        assert_eq!(names.last(), Some(&"bound_acc"));
        let values: Vec<&str> = cells.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            &values[3..10],
            ["60", "20", "0.125", "0.5", "0.5", "0.25", "1"]
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        let diverged = MetricsRow {
            run: RunColumns {
                method: "dpo".into(),
                kind: "dpo".into(),
                status: "diverged@3".into(),
            },
            training: Some(TrainingColumns::default()),
            ..MetricsRow::default()
        };
        write_metrics(&path, &[row.clone(), diverged]).unwrap();
        let back = read_metrics(&path).unwrap();
        assert_eq!(back[0], row);
        // The diverged row reads back with blank scores (its columns exist in the file).
        assert!(back[1].diverged());
        assert_eq!(back[1].scores.as_ref().unwrap().loss.eval_loss, None);
    }

    #[test]
    fn a_bad_number_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        std::fs::write(
            &path,
            "method,kind,status,eval_loss,post_nmi\nm,k,ok,0.5,high\n",
        )
        .unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(
            err.contains("metrics.csv:2") && err.contains("post_nmi"),
            "{err}"
        );
    }
}
