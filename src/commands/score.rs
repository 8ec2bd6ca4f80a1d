//! `lpc-bench score`: read two label columns from any CSV file and print partition scores
//! (`metrics::PartitionScores`) as JSON on stdout.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::cli::ScoreArgs;
use crate::metrics;
use crate::results::csv_error;
use crate::{Error, Result};

/// Score `--pred` against `--truth` and print `{n, nmi, ari, purity, matched_accuracy,
/// clusters, classes}`.
pub fn run(args: &ScoreArgs) -> Result<()> {
    let (pred, truth) = read_label_columns(&args.file, &args.pred, &args.truth)?;
    let scores = metrics::partition_scores(&pred, &truth);
    let json = serde_json::to_string_pretty(&scores)
        .map_err(|e| Error::msg(format!("cannot encode scores as JSON: {e}")))?;
    println!("{json}");
    Ok(())
}

/// Interns string labels as ids `0, 1, ...` in order of first appearance.
#[derive(Default)]
struct Interner(HashMap<String, usize>);

impl Interner {
    fn id(&mut self, label: &str) -> usize {
        let next = self.0.len();
        *self.0.entry(label.to_string()).or_insert(next)
    }
}

/// Read the columns named `pred` and `truth` of a CSV file with a header row, mapping each
/// column's distinct strings (trimmed) to ids. Errors name the file, and the column and line
/// where they apply: a missing column, a row too short to hold a column, an empty value, bad
/// UTF-8, or a file with no data rows.
pub fn read_label_columns(
    path: &Path,
    pred: &str,
    truth: &str,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::new(file));
    let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
    if headers.iter().all(str::is_empty) {
        return Err(Error::msg(format!(
            "{}: empty file (expected a header row naming the columns, then one row per item)",
            path.display()
        )));
    }
    let column = |name: &str| -> Result<usize> {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            let known: Vec<&str> = headers.iter().collect();
            Error::msg(format!(
                "{}: no column '{name}' in the header (columns: {})",
                path.display(),
                known.join(", ")
            ))
        })
    };
    let (pred_col, truth_col) = (column(pred)?, column(truth)?);
    let (mut pred_ids, mut truth_ids) = (Interner::default(), Interner::default());
    let (mut pred_labels, mut truth_labels) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map(|p| p.line() as usize).unwrap_or(0);
        let value = |col: usize, name: &str| -> Result<&str> {
            let data_error = |message: String| Error::Data {
                path: path.to_path_buf(),
                line,
                message,
            };
            match record.get(col) {
                None => Err(data_error(format!(
                    "row has {} field(s), so no value for column '{name}' (field {})",
                    record.len(),
                    col + 1
                ))),
                Some("") => Err(data_error(format!("empty value in column '{name}'"))),
                Some(v) => Ok(v),
            }
        };
        pred_labels.push(pred_ids.id(value(pred_col, pred)?));
        truth_labels.push(truth_ids.id(value(truth_col, truth)?));
    }
    if pred_labels.is_empty() {
        return Err(Error::msg(format!(
            "{}: no data rows to score",
            path.display()
        )));
    }
    Ok((pred_labels, truth_labels))
}
