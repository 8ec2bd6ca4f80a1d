//! Typed rows of the result files besides `metrics.csv`: `curves.csv`, `codes.csv`,
//! `steering.csv`, `timing.csv` (one struct each) and `baselines.csv` (serde head and tail with
//! per-group columns `acc_obs_<group>` between). Each file's columns are the fields of its
//! structs (serde names them), so a column is named in one place and renaming a field is a
//! compile error wherever it is used.
//! Rows are written with [`write_rows`] and read back with [`read_rows`] through the csv crate's
//! serde support.
//!
//! Numbers are written as [`super::fmt_f64`] writes them (the shortest text that reads back to
//! the same `f64`, never an exponent; `None`, NaN and infinities blank), so files are
//! byte-identical to the ones written before the rows were typed. A blank reads back as `None`
//! (optional columns) or NaN (required ones); a column missing from an older file reads as
//! `None`.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{fmt_f64, read_csv, write_atomic};
use crate::{Error, Result};

/// One evaluation point of a method's training curve (`curves.csv`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CurveRow {
    /// Method label.
    pub method: String,
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean training loss over the steps since the previous point.
    #[serde(with = "num")]
    pub train_loss: f64,
    /// Validation base loss with the inference (prior) code.
    #[serde(with = "num")]
    pub val_loss: f64,
    /// Validation accuracy against observed labels with the inference code.
    #[serde(with = "num")]
    pub val_accuracy: f64,
    /// Validation training objective (the `best-val` selection criterion).
    #[serde(with = "num")]
    pub val_objective: f64,
    /// Validation mean KL(q‖p) (blank for baselines).
    #[serde(with = "opt_num", default)]
    pub val_kl: Option<f64>,
    /// Validation argmax-posterior code perplexity (blank without a codebook).
    #[serde(with = "opt_num", default)]
    pub code_perplexity: Option<f64>,
    /// NMI of the validation pairs' argmax posterior codes against their true types.
    #[serde(with = "opt_num", default)]
    pub val_post_nmi: Option<f64>,
    /// NMI of the validation pairs' argmax prior codes against their true types.
    #[serde(with = "opt_num", default)]
    pub val_prior_nmi: Option<f64>,
}

/// The codes of one held-out pair under one method (`codes.csv`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CodeRow {
    /// Method label.
    pub method: String,
    /// Index of the pair among the held-out pairs.
    pub pair: usize,
    /// The pair's true type (group).
    #[serde(rename = "type")]
    pub ty: usize,
    /// The pair's source.
    pub source: usize,
    /// The pair's annotator.
    pub annotator: usize,
    /// Argmax of the prior p(z | x).
    pub prior_code: usize,
    /// Argmax of the posterior q(z | x, y_w > y_l).
    pub posterior_code: usize,
    /// KL(q ‖ p) of the pair (blank when not computed).
    #[serde(with = "opt_num", default)]
    pub kl: Option<f64>,
    /// Prior code probabilities, written with 4 decimals, space-separated.
    #[serde(with = "probs")]
    pub prior_probs: Vec<f64>,
    /// Posterior code probabilities, written with 4 decimals, space-separated.
    #[serde(with = "probs")]
    pub posterior_probs: Vec<f64>,
}

/// One cell of a method's steering table (`steering.csv`): either the mean true reward of a
/// type under a fixed code (`mean_reward` set), or a type's matched code with its type-steered
/// accuracy (`steered_acc_noiseless` set, `matched` true).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteeringRow {
    /// Method label.
    pub method: String,
    /// The code the policy is steered with.
    pub code: usize,
    /// The true type.
    #[serde(rename = "type")]
    pub ty: usize,
    /// Mean true reward of the type over responses sampled with the code.
    #[serde(with = "opt_num", default)]
    pub mean_reward: Option<f64>,
    /// Whether the code is the one matched to the type (written `1` / `0`).
    #[serde(with = "flag")]
    pub matched: bool,
    /// Accuracy against noiseless labels of the type's pairs steered with its matched code.
    #[serde(with = "opt_num", default)]
    pub steered_acc_noiseless: Option<f64>,
}

/// Wall-clock training time of one method (`timing.csv`, the one output that varies between
/// identical runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingRow {
    /// Method label.
    pub method: String,
    /// Optimiser steps taken.
    pub steps: usize,
    /// Seconds spent training (the first step included).
    #[serde(with = "num")]
    pub train_seconds: f64,
    /// Milliseconds per step (the first step included).
    #[serde(with = "num")]
    pub ms_per_step: f64,
    /// Seconds of the first optimiser step alone: on a GPU, kernel compilation and autotuning
    /// (near 0 with warm caches).
    #[serde(with = "num")]
    pub first_step_seconds: f64,
    /// Milliseconds per step over the steps after the first (the steady state; blank with a
    /// single step).
    #[serde(with = "num")]
    pub steady_ms_per_step: f64,
}

impl TimingRow {
    /// The row of a method that took `steps` steps in `train_seconds`, the first of them in
    /// `first_step_seconds`.
    pub fn new(method: &str, steps: usize, train_seconds: f64, first_step_seconds: f64) -> Self {
        TimingRow {
            method: method.to_string(),
            steps,
            train_seconds,
            ms_per_step: 1e3 * train_seconds / steps.max(1) as f64,
            first_step_seconds,
            steady_ms_per_step: if steps > 1 {
                1e3 * (train_seconds - first_step_seconds).max(0.0) / (steps - 1) as f64
            } else {
                f64::NAN
            },
        }
    }
}

/// A baseline's accuracy in `baselines.csv`: a number, blank (no pairs to score) or `n/a`
/// (the baseline does not apply to the data).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum BaselineCell {
    /// An accuracy.
    Value(f64),
    /// No pairs to score (written blank).
    #[default]
    Blank,
    /// The baseline does not apply (written `n/a`).
    NotApplicable,
}

impl Serialize for BaselineCell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            BaselineCell::Value(v) => s.serialize_str(&fmt_f64(Some(*v))),
            BaselineCell::Blank => s.serialize_str(""),
            BaselineCell::NotApplicable => s.serialize_str("n/a"),
        }
    }
}

/// The leading columns of a `baselines.csv` row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineHead {
    /// The baseline's name.
    pub baseline: String,
    /// The rule it predicts by.
    pub rule: String,
    /// Accuracy against observed labels over every held-out pair.
    pub acc_obs: BaselineCell,
}

/// The trailing columns of a `baselines.csv` row.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BaselineTail {
    /// The worst group with enough pairs.
    pub acc_obs_worst_group: BaselineCell,
    /// The small groups pooled.
    pub acc_obs_small_groups_pooled: BaselineCell,
}

/// One row of `baselines.csv`: the head, the per-group accuracy (columns
/// `acc_obs_<group>`, in group order) and the tail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaselineRow {
    /// Name, rule, overall accuracy.
    pub head: BaselineHead,
    /// Per group: its name and accuracy.
    pub groups: Vec<(String, BaselineCell)>,
    /// Worst group and pooled small groups.
    pub tail: BaselineTail,
}

impl BaselineRow {
    /// The row's `(column, text)` cells, in file order.
    pub fn cells(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        super::metrics_row::leaf_cells("", &self.head, &mut out);
        for (name, cell) in &self.groups {
            let mut value = Vec::new();
            super::metrics_row::leaf_cells(
                "",
                &BaselineHead {
                    acc_obs: *cell,
                    ..BaselineHead::default()
                },
                &mut value,
            );
            // The per-group column is the overall column's name with the group appended.
            let (column, text) = value.pop().expect("acc_obs is the head's last column");
            out.push((format!("{column}_{name}"), text));
        }
        super::metrics_row::leaf_cells("", &self.tail, &mut out);
        out
    }
}

/// Write `baselines.csv` atomically (an empty file without baselines).
pub fn write_baselines(path: &Path, rows: &[BaselineRow]) -> Result<()> {
    let mut t = super::Table::default();
    for r in rows {
        t.push(r.cells());
    }
    t.write(path)
}

/// Whether an empty table is written as its header line or as an empty file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenEmpty {
    /// Write the header line alone.
    Header,
    /// Write an empty file.
    Nothing,
}

/// The CSV header line of `T` (its field names, as serde names them), with its newline.
fn header_line<T: Serialize + Default>() -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default())
        .map_err(|e| Error::msg(format!("cannot write a CSV header: {e}")))?;
    let bytes = w
        .into_inner()
        .map_err(|e| Error::msg(format!("cannot write a CSV header: {e}")))?;
    let end = bytes.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    Ok(bytes[..end].to_vec())
}

/// Write `rows` to `path` as CSV, atomically: a header from the field names of `T`, then one
/// line per row. With no rows the file holds the header alone or nothing, as `empty` says.
/// Errors name the path and the row.
pub fn write_rows<T: Serialize + Default>(path: &Path, rows: &[T], empty: WhenEmpty) -> Result<()> {
    if rows.is_empty() {
        let bytes = match empty {
            WhenEmpty::Header => header_line::<T>()?,
            WhenEmpty::Nothing => Vec::new(),
        };
        return write_atomic(path, &bytes);
    }
    super::write_csv_atomic(path, rows)
}

/// Read the rows of a result file (see [`read_csv`]: errors name the file, line and column).
pub fn read_rows<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    read_csv(path)
}

/// Serde for a required number: written by [`fmt_f64`] (non-finite → blank), blank read as NaN.
pub mod num {
    use super::fmt_f64;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `v` as result files write numbers.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_f64(Some(*v)))
    }

    /// Read a number (the csv reader's own parsing, so an error names the column); a blank
    /// cell is NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// Serde for an optional number: `None` (and non-finite values) blank.
pub mod opt_num {
    use super::fmt_f64;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `v` as result files write numbers.
    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&fmt_f64(*v))
    }

    /// Read a number (the csv reader's own parsing, so an error names the column); a blank
    /// cell is `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        Option::<f64>::deserialize(d)
    }
}

/// Serde for a probability vector: each entry with 4 decimals, separated by spaces.
pub mod probs {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `p` as `0.2603 0.2532 ...`.
    pub fn serialize<S: Serializer>(p: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = p.iter().map(|v| format!("{v:.4}")).collect();
        s.serialize_str(&text.join(" "))
    }

    /// Read space-separated numbers.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let s = String::deserialize(d)?;
        s.split_whitespace()
            .map(|v| {
                v.parse::<f64>().map_err(|e| {
                    serde::de::Error::custom(format!("'{v}' is not a probability: {e}"))
                })
            })
            .collect()
    }
}

/// Serde for a flag written `1` / `0`.
pub mod flag {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Write `1` for true, `0` for false.
    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(u8::from(*v))
    }

    /// Read `1` or `0`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        match String::deserialize(d)?.trim() {
            "1" => Ok(true),
            "0" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "'{other}' is not a flag (1 or 0)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_rows_split_the_first_step_from_the_steady_ones() {
        // Oracle: 11 steps in 3 s, the first 2 s: 1 s over 10 steps = 100 ms steady, 3000/11
        // ms overall; one step has no steady state (NaN, written blank).
        let r = TimingRow::new("dpo", 11, 3.0, 2.0);
        assert_eq!(r.first_step_seconds, 2.0);
        assert!((r.steady_ms_per_step - 100.0).abs() < 1e-9);
        assert!((r.ms_per_step - 3000.0 / 11.0).abs() < 1e-9);
        assert!(
            TimingRow::new("dpo", 1, 3.0, 3.0)
                .steady_ms_per_step
                .is_nan()
        );
    }

    #[test]
    fn rows_write_the_text_the_string_tables_wrote_and_read_back() {
        // Oracle: the lines the untyped tables wrote for these values (numbers by `{}`, no
        // exponent; None blank; probabilities with 4 decimals; matched as 1/0).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steering.csv");
        let rows = vec![
            SteeringRow {
                method: "lpc-dpo".into(),
                code: 1,
                ty: 0,
                mean_reward: Some(0.0000020203335300283953),
                matched: false,
                steered_acc_noiseless: None,
            },
            SteeringRow {
                method: "lpc-dpo".into(),
                code: 0,
                ty: 1,
                mean_reward: None,
                matched: true,
                steered_acc_noiseless: Some(0.5),
            },
        ];
        write_rows(&path, &rows, WhenEmpty::Header).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "method,code,type,mean_reward,matched,steered_acc_noiseless\n\
             lpc-dpo,1,0,0.0000020203335300283953,0,\n\
             lpc-dpo,0,1,,1,0.5\n"
        );
        assert_eq!(read_rows::<SteeringRow>(&path).unwrap(), rows);

        let codes = dir.path().join("codes.csv");
        let row = CodeRow {
            method: "m".into(),
            pair: 3,
            ty: 1,
            source: 1,
            annotator: 7,
            prior_code: 0,
            posterior_code: 1,
            kl: Some(0.25),
            prior_probs: vec![0.26034, 0.73966],
            posterior_probs: vec![0.5, 0.5],
        };
        write_rows(&codes, std::slice::from_ref(&row), WhenEmpty::Header).unwrap();
        assert_eq!(
            std::fs::read_to_string(&codes).unwrap(),
            "method,pair,type,source,annotator,prior_code,posterior_code,kl,prior_probs,posterior_probs\n\
             m,3,1,1,7,0,1,0.25,0.2603 0.7397,0.5000 0.5000\n"
        );
        let back = read_rows::<CodeRow>(&codes).unwrap();
        assert_eq!(back[0].prior_probs, vec![0.2603, 0.7397]);
    }

    #[test]
    fn empty_tables_are_a_header_or_nothing() {
        // Oracle: codes.csv and steering.csv keep their header with no rows (the run writes
        // them for every scenario); timing and curves are empty files.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("codes.csv");
        write_rows::<CodeRow>(&path, &[], WhenEmpty::Header).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "method,pair,type,source,annotator,prior_code,posterior_code,kl,prior_probs,posterior_probs\n"
        );
        assert!(read_rows::<CodeRow>(&path).unwrap().is_empty());
        write_rows::<TimingRow>(&path, &[], WhenEmpty::Nothing).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn blanks_read_as_nan_or_none_and_bad_numbers_name_the_column() {
        // Oracle: a diverged curve point has blank losses (NaN written blank) and no KL.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.csv");
        std::fs::write(
            &path,
            "method,step,train_loss,val_loss,val_accuracy,val_objective\ndpo,20,,0.5,0.5,0.5\n",
        )
        .unwrap();
        let rows = read_rows::<CurveRow>(&path).unwrap();
        assert!(rows[0].train_loss.is_nan());
        assert_eq!((rows[0].val_loss, rows[0].val_kl), (0.5, None));
        std::fs::write(
            &path,
            "method,step,train_loss,val_loss,val_accuracy,val_objective\ndpo,20,x,0.5,0.5,0.5\n",
        )
        .unwrap();
        let err = read_rows::<CurveRow>(&path).unwrap_err().to_string();
        assert!(
            err.contains("curves.csv:2") && err.contains("train_loss"),
            "{err}"
        );
    }

    #[test]
    fn baseline_rows_write_numbers_blanks_and_not_applicable() {
        // Oracle: the lines of a real-data run's baselines.csv before the rows were typed
        // (per-group columns `acc_obs_<group>` between the overall and worst-group columns).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baselines.csv");
        let row = |name: &str, v: BaselineCell, pooled: BaselineCell| BaselineRow {
            head: BaselineHead {
                baseline: name.into(),
                rule: "a, rule".into(),
                acc_obs: v,
            },
            groups: vec![("helpful".into(), v), ("harmless".into(), v)],
            tail: BaselineTail {
                acc_obs_worst_group: v,
                acc_obs_small_groups_pooled: pooled,
            },
        };
        let na = BaselineCell::NotApplicable;
        let rows = [
            row("chance", BaselineCell::Value(0.5), BaselineCell::Blank),
            row("majority", na, na),
        ];
        write_baselines(&path, &rows).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "baseline,rule,acc_obs,acc_obs_helpful,acc_obs_harmless,acc_obs_worst_group,acc_obs_small_groups_pooled\n\
             chance,\"a, rule\",0.5,0.5,0.5,0.5,\n\
             majority,\"a, rule\",n/a,n/a,n/a,n/a,n/a\n"
        );
    }
}
