//! Merging: every finished (and failed) cell's `metrics.csv` in one table with the cell's
//! overrides as leading columns, written as `all-metrics.csv`.

use super::grid::last_line;
use super::ids::value_text;
use super::resume::{CellRecord, is_failure_record, is_finished};
use super::{
    CELL_FILE, CELLS_DIR, ERROR_COLUMN, FAILED_FILE, FAILED_STATUS, MERGED_FILE, METRICS_FILE,
};
use crate::results::{read_string_csv, write_atomic};
use crate::{Error, Result};
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A finished cell found in an output folder.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedCell {
    /// The cell's folder.
    pub dir: PathBuf,
    /// Its `cell.toml`.
    pub record: CellRecord,
}

/// Every finished cell under `out/cells`, sorted by id. A folder counts only if it holds
/// `DONE` and a `cell.toml` whose id equals its path under `cells/`, so temporary and stale
/// folders never count.
pub fn finished_cells(out: &Path) -> Result<Vec<FinishedCell>> {
    recorded_cells(out, is_finished)
}

/// Every failed cell under `out/cells` (a failure record, see
/// [`record_failure`](super::record_failure)), sorted by id.
pub fn failed_cells(out: &Path) -> Result<Vec<FinishedCell>> {
    recorded_cells(out, is_failure_record)
}

fn recorded_cells(out: &Path, select: fn(&Path) -> bool) -> Result<Vec<FinishedCell>> {
    let root = out.join(CELLS_DIR);
    let mut found = Vec::new();
    if !root.is_dir() {
        return Ok(found);
    }
    for point in sorted_subdirs(&root)? {
        for dir in sorted_subdirs(&point)? {
            if !select(&dir) {
                continue;
            }
            let path = dir.join(CELL_FILE);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let record: CellRecord = toml::from_str(&text).map_err(|e| Error::Data {
                path: path.clone(),
                line: 1,
                message: last_line(&e.to_string()),
            })?;
            let rel = dir.strip_prefix(&root).unwrap_or(&dir);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if rel.join("/") == record.id {
                found.push(FinishedCell { dir, record });
            }
        }
    }
    found.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    Ok(found)
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_dir() {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Column names the merged and summary tables use themselves; a `metrics.csv` may not.
pub const RESERVED_COLUMNS: [&str; 3] = ["cell", "group", "n_seeds"];

/// The merged metrics of every finished cell.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedTable {
    /// Canonical paths of every override seen, sorted (`data.seed`, `world.distance`, ...).
    pub override_columns: Vec<String>,
    /// The `metrics.csv` columns, in order of first appearance over cells sorted by id.
    pub metric_columns: Vec<String>,
    /// One row per finished cell and method, sorted by overrides then method.
    pub rows: Vec<MergedRow>,
}

/// One row of a cell's `metrics.csv` with the cell's overrides in front.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRow {
    /// Cell id.
    pub cell: String,
    /// The cell's method label.
    pub method: String,
    /// Aligned with `override_columns`; blank where the cell has no such override.
    pub overrides: Vec<String>,
    /// Aligned with `metric_columns`; blank where the cell's file has no such column.
    pub metrics: Vec<String>,
}

/// Read every finished cell's `metrics.csv` (a header and string fields; columns unknown in
/// advance) into one table with the cell id and its overrides as leading columns. Every failed
/// cell ([`record_failure`](super::record_failure)) adds one row with `status = failed` and its
/// message in an `error` column (added only when a cell failed), blank elsewhere. Rows are
/// sorted by the override values (numbers numerically, before text), then method label, then
/// cell id, then their order in the cell's file; so the result depends only on the set of
/// finished cells, and merging twice gives the same table.
pub fn merge(out: &Path) -> Result<MergedTable> {
    let cells = finished_cells(out)?;
    let failed = failed_cells(out)?;
    let override_columns: Vec<String> = cells
        .iter()
        .chain(&failed)
        .flat_map(|c| c.record.overrides.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut metric_columns: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for c in &cells {
        let path = c.dir.join(METRICS_FILE);
        let (header, records) = read_string_csv(&path)?;
        for (i, h) in header.iter().enumerate() {
            if RESERVED_COLUMNS.contains(&h.as_str()) || override_columns.contains(h) {
                return Err(Error::Data {
                    path: path.clone(),
                    line: 1,
                    message: format!("column `{h}` clashes with a leading column of the merge"),
                });
            }
            if header[..i].contains(h) {
                return Err(Error::Data {
                    path: path.clone(),
                    line: 1,
                    message: format!("column `{h}` appears twice"),
                });
            }
            if !metric_columns.contains(h) {
                metric_columns.push(h.clone());
            }
        }
        files.push((header, records));
    }
    // A cell's values of the override columns, as text (blank where it has none).
    let override_values = |c: &FinishedCell| -> Vec<String> {
        override_columns
            .iter()
            .map(|k| {
                c.record
                    .overrides
                    .get(k)
                    .map(value_text)
                    .unwrap_or_default()
            })
            .collect()
    };
    let mut rows = Vec::new();
    for (c, (header, records)) in cells.iter().zip(files) {
        let overrides = override_values(c);
        for record in records {
            let metrics = metric_columns
                .iter()
                .map(|col| {
                    header
                        .iter()
                        .position(|h| h == col)
                        .map(|i| record[i].clone())
                        .unwrap_or_default()
                })
                .collect();
            rows.push(MergedRow {
                cell: c.record.id.clone(),
                method: c.record.method.clone(),
                overrides: overrides.clone(),
                metrics,
            });
        }
    }
    // Failed cells: one row each, `status = failed` and the error message.
    if !failed.is_empty() {
        for col in ["method", "status", ERROR_COLUMN] {
            if !metric_columns.iter().any(|c| c == col) {
                metric_columns.push(col.to_string());
            }
        }
        for c in &failed {
            let path = c.dir.join(FAILED_FILE);
            let message = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let message = message.trim().replace(['\n', '\r'], " ");
            let metrics = metric_columns
                .iter()
                .map(|col| match col.as_str() {
                    "method" => c.record.method.clone(),
                    "status" => FAILED_STATUS.to_string(),
                    ERROR_COLUMN => message.clone(),
                    _ => String::new(),
                })
                .collect();
            rows.push(MergedRow {
                cell: c.record.id.clone(),
                method: c.record.method.clone(),
                overrides: override_values(c),
                metrics,
            });
        }
        // Rows merged before the error column existed get a blank there.
        for r in &mut rows {
            r.metrics.resize(metric_columns.len(), String::new());
        }
    }
    // Stable sort: rows of one cell keep their file order.
    rows.sort_by(|a, b| {
        cmp_fields(&a.overrides, &b.overrides)
            .then_with(|| a.method.cmp(&b.method))
            .then_with(|| a.cell.cmp(&b.cell))
    });
    Ok(MergedTable {
        override_columns,
        metric_columns,
        rows,
    })
}

/// Compare field lists: numbers (anything `f64` parses) numerically and before text, text
/// lexicographically; ties between equal numbers written differently (`1`, `1.0`) by text.
pub(super) fn cmp_fields(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) => p.total_cmp(&q).then_with(|| x.cmp(y)),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

impl MergedTable {
    /// `cell`, the override columns, then the metric columns.
    pub fn header(&self) -> Vec<String> {
        std::iter::once("cell".to_string())
            .chain(self.override_columns.iter().cloned())
            .chain(self.metric_columns.iter().cloned())
            .collect()
    }

    /// The table as CSV bytes (`\n` line ends).
    pub fn to_csv(&self) -> Result<Vec<u8>> {
        let rows = self.rows.iter().map(|r| {
            std::iter::once(r.cell.clone())
                .chain(r.overrides.iter().cloned())
                .chain(r.metrics.iter().cloned())
                .collect::<Vec<_>>()
        });
        csv_bytes(self.header(), rows)
    }
}

pub(super) fn csv_bytes(
    header: Vec<String>,
    rows: impl Iterator<Item = Vec<String>>,
) -> Result<Vec<u8>> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let err = |e: csv::Error| Error::msg(format!("cannot format CSV: {e}"));
    w.write_record(&header).map_err(err)?;
    for row in rows {
        w.write_record(&row).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| Error::msg(format!("cannot format CSV: {e}")))
}

/// Write `out/all-metrics.csv` atomically; returns its path.
pub fn write_merged(out: &Path, table: &MergedTable) -> Result<PathBuf> {
    let path = out.join(MERGED_FILE);
    write_atomic(&path, &table.to_csv()?)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_numerically_before_text() {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(cmp_fields(&v(&["2"]), &v(&["10"])), Ordering::Less);
        assert_eq!(cmp_fields(&v(&["10"]), &v(&["abc"])), Ordering::Less);
        assert_eq!(
            cmp_fields(&v(&["1", "b"]), &v(&["1", "a"])),
            Ordering::Greater
        );
    }
}
