//! Summary over seeds: the merged table grouped by every override but the seed, each metric
//! column as mean ± sample std (numbers) or its distinct values (text); `all-metrics-summary.csv`.

use super::merge::{MergedRow, MergedTable, cmp_fields, csv_bytes};
use super::{SEED_PATH, SUMMARY_FILE};
use crate::Result;
use crate::results::write_atomic;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The merged table grouped over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The override columns except `data.seed`.
    pub group_columns: Vec<String>,
    /// The metric columns, as in the merged table.
    pub columns: Vec<String>,
    /// Whether each metric column is numeric: every non-blank value in the whole merged table
    /// parses as `f64`.
    pub numeric: Vec<bool>,
    /// One row per group (grid point without the seed, and method).
    pub rows: Vec<SummaryRow>,
}

/// One group: cells equal in every override but the seed, one method, one row position.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// The group's cell id without its seed: `distance=0.5/lpc-dpo` (`base/<method>` when the
    /// seed was the only axis).
    pub label: String,
    /// Aligned with `group_columns`.
    pub group: Vec<String>,
    /// The method label of the group's cells.
    pub method: String,
    /// Rows (seeds) in the group.
    pub n: usize,
    /// Aligned with `columns`.
    pub stats: Vec<ColumnStat>,
}

/// A column's summary within a group.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnStat {
    /// Over the k non-blank values x_1..x_k of the group:
    /// ```text
    /// mean = (1/k) Σ x_i                             (None when k = 0)
    /// std  = sqrt( Σ (x_i - mean)² / (k - 1) )       (sample std; None when k < 2)
    /// ```
    /// computed by [`crate::metrics::mean_std`].
    Numeric {
        /// The mean; None when k = 0.
        mean: Option<f64>,
        /// The sample standard deviation; None when k < 2.
        std: Option<f64>,
        /// Number of non-blank values.
        k: usize,
    },
    /// A text column: its distinct non-blank values, sorted, joined by `|` (blank if none).
    Text(String),
}

/// Group the merged rows by every override column except `data.seed`, the cell's method, and
/// the row's position within its cell (cells normally hold one row), and summarise each metric
/// column over the group. Groups are sorted like merged rows.
pub fn summarise(table: &MergedTable) -> Summary {
    let seed = table.override_columns.iter().position(|c| c == SEED_PATH);
    let group_columns: Vec<String> = table
        .override_columns
        .iter()
        .filter(|c| *c != SEED_PATH)
        .cloned()
        .collect();
    let numeric: Vec<bool> = (0..table.metric_columns.len())
        .map(|j| {
            table
                .rows
                .iter()
                .map(|r| r.metrics[j].trim())
                .filter(|v| !v.is_empty())
                .all(|v| v.parse::<f64>().is_ok())
        })
        .collect();
    // Position of each row within its cell.
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut groups: BTreeMap<(Vec<String>, String, usize), Vec<&MergedRow>> = BTreeMap::new();
    for r in &table.rows {
        let p = position.entry(r.cell.as_str()).or_default();
        let key: Vec<String> = r
            .overrides
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != seed)
            .map(|(_, v)| v.clone())
            .collect();
        groups
            .entry((key, r.method.clone(), *p))
            .or_default()
            .push(r);
        *p += 1;
    }
    let mut rows: Vec<SummaryRow> = groups
        .into_iter()
        .map(|((group, method, _), members)| {
            let stats = numeric
                .iter()
                .enumerate()
                .map(|(j, &is_num)| {
                    let values = members
                        .iter()
                        .map(|r| r.metrics[j].trim())
                        .filter(|v| !v.is_empty());
                    if is_num {
                        let xs: Vec<f64> = values.filter_map(|v| v.parse().ok()).collect();
                        let m = crate::metrics::mean_std(&xs);
                        ColumnStat::Numeric {
                            mean: (m.n >= 1).then_some(m.mean),
                            std: (m.n >= 2).then_some(m.std),
                            k: m.n,
                        }
                    } else {
                        let distinct: BTreeSet<&str> = values.collect();
                        ColumnStat::Text(distinct.into_iter().collect::<Vec<_>>().join("|"))
                    }
                })
                .collect();
            SummaryRow {
                label: without_seed(&members[0].cell),
                group,
                method,
                n: members.len(),
                stats,
            }
        })
        .collect();
    rows.sort_by(|a, b| cmp_fields(&a.group, &b.group).then_with(|| a.method.cmp(&b.method)));
    Summary {
        group_columns,
        columns: table.metric_columns.clone(),
        numeric,
        rows,
    }
}

/// A cell id without its `seed=` (or `data.seed=`) component.
pub fn without_seed(id: &str) -> String {
    let (point, method) = id.split_once('/').unwrap_or((id, ""));
    let kept: Vec<&str> = point
        .split(',')
        .filter(|c| !(c.starts_with("seed=") || c.starts_with("data.seed=")))
        .collect();
    let point = if kept.is_empty() {
        "base".to_string()
    } else {
        kept.join(",")
    };
    format!("{point}/{method}")
}

impl Summary {
    /// `group` (the label), the group columns, `n_seeds`, then `<col>_mean,<col>_std` for
    /// numeric columns and `<col>` for text columns. Blank where a statistic is undefined.
    pub fn header(&self) -> Vec<String> {
        let mut h = vec!["group".to_string()];
        h.extend(self.group_columns.iter().cloned());
        h.push("n_seeds".to_string());
        for (c, &is_num) in self.columns.iter().zip(&self.numeric) {
            if is_num {
                h.push(format!("{c}_mean"));
                h.push(format!("{c}_std"));
            } else {
                h.push(c.clone());
            }
        }
        h
    }

    /// The summary as CSV bytes (`\n` line ends; numbers in shortest round-trip form).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let num = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
        let rows = self.rows.iter().map(|r| {
            let mut row = vec![r.label.clone()];
            row.extend(r.group.iter().cloned());
            row.push(r.n.to_string());
            for s in &r.stats {
                match s {
                    ColumnStat::Numeric { mean, std, .. } => {
                        row.push(num(*mean));
                        row.push(num(*std));
                    }
                    ColumnStat::Text(t) => row.push(t.clone()),
                }
            }
            row
        });
        csv_bytes(self.header(), rows)
    }
}

/// Write `out/all-metrics-summary.csv` atomically; returns its path.
pub fn write_summary(out: &Path, summary: &Summary) -> Result<PathBuf> {
    let path = out.join(SUMMARY_FILE);
    write_atomic(&path, &summary.to_csv()?)?;
    Ok(path)
}
