//! The report of a result folder: a sweep folder (`lpc-bench sweep`, merged first) or a single
//! `lpc-bench run` folder. Reads the merged metrics and their mean ± std over seeds, and each
//! cell's `steering.csv` and `codes.csv`; decides which figures the data supports; writes the
//! text of `report.md`.
//!
//! It computes no metric: every number is a mean or std of `all-metrics.csv` columns (see
//! [`crate::sweep::summarise`]), a steering-table entry, or a principal-component coordinate of
//! the posterior code probabilities in `codes.csv`. Drawing belongs to [`crate::plots`], merging
//! to [`crate::sweep`].
//!
//! # Figures (each only when the data has its axis)
//! | file stem | when | panels |
//! |---|---|---|
//! | `accuracy-vs-distance` | `world.distance` takes ≥ 2 values | accuracy vs observed labels and vs the noiseless preference, one column per value of the other grid axes; band between the population- and type-oracle ceilings, dashed prompt-oracle ceiling |
//! | `nmi-vs-distance` | same, and a method has codes | posterior NMI (dashed: the Bayes bound), prior NMI |
//! | `accuracy-vs-flip-rate` | `noise.flip_rate` takes ≥ 2 values | as for distance |
//! | `codebook` | `methods.codebook` takes ≥ 2 values | both accuracies and posterior NMI against K (log2 axis); methods without a codebook as dashed horizontal lines |
//! | `steering-<method>` | the method has a steering table | codes × types mean true reward (diverging colours, matched codes outlined) |
//! | `codes-pca-<method>` | the method writes posterior code probabilities | their 2-D PCA, coloured by true type |
//!
//! Line points are means over seeds with ± one sample std as error bars. Heat maps and PCA
//! plots show one seed (the smallest) per grid point, because code indices are arbitrary per
//! run and cannot be averaged; at most [`MAX_PANELS`] grid points, evenly spaced.

use crate::plots::{
    self, Band, Figure, Guide, HeatMap, HeatPanel, LineChart, LinePanel, Point, ScatterChart,
    ScatterPanel, Series, XScale,
};
use crate::results::Table;
use crate::results::rows::{CodeRow, CurveRow, SteeringRow, read_rows};
use crate::sweep::{self, ColumnStat, MergedRow, MergedTable, Summary, SummaryRow};
use crate::{Error, Result};
use serde::de::DeserializeOwned;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};

/// Grid points shown per heat-map or PCA figure at most.
pub const MAX_PANELS: usize = 12;
/// The report file written into the folder.
pub const REPORT_FILE: &str = "report.md";
/// The sub-folder holding the plots.
pub const PLOTS_DIR: &str = "plots";

/// What kind of folder a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderKind {
    /// `lpc-bench sweep` output: `cells/<point>/<method>/` plus the merged tables.
    Sweep,
    /// `lpc-bench run` output: one `metrics.csv` row per method.
    Run,
}

/// One finished cell (a sweep cell, or one method of a run folder).
#[derive(Debug, Clone, PartialEq)]
pub struct CellInfo {
    /// The cell id (its path under `cells/`; the method label for a run folder).
    pub id: String,
    /// The method's label.
    pub method: String,
    /// The folder holding its `steering.csv` and `codes.csv` (rows filtered by `method`).
    pub dir: PathBuf,
    /// The grid point without the seed (`distance=0.5,coupling=1.0`; `base` without axes).
    pub point: String,
    /// The cell's `data.seed` override, if seeds are an axis.
    pub seed: Option<String>,
}

/// A loaded result folder.
#[derive(Debug, Clone)]
pub struct ResultFolder {
    /// The folder.
    pub dir: PathBuf,
    /// Sweep or run output.
    pub kind: FolderKind,
    /// The scenario's name and description (from a `scenario.resolved.toml`).
    pub name: String,
    /// The scenario's description.
    pub description: String,
    /// Every cell's `metrics.csv` row.
    pub merged: MergedTable,
    /// Mean and std over seeds per grid point and method.
    pub summary: Summary,
    /// In merged-table order (override values numerically, then method).
    pub cells: Vec<CellInfo>,
}

impl ResultFolder {
    /// Load `dir`. A sweep folder (it has `cells/`) is merged first, rewriting
    /// `all-metrics.csv` and `all-metrics-summary.csv`; a run folder (it has `metrics.csv`) is
    /// read as one cell per method with no grid axes.
    pub fn load(dir: &Path) -> Result<ResultFolder> {
        if dir.join(sweep::CELLS_DIR).is_dir() {
            Self::load_sweep(dir)
        } else if dir.join(sweep::METRICS_FILE).is_file() {
            Self::load_run(dir)
        } else {
            Err(Error::msg(format!(
                "{}: neither a sweep folder (no {}/) nor a run folder (no {})",
                dir.display(),
                sweep::CELLS_DIR,
                sweep::METRICS_FILE
            )))
        }
    }

    fn load_sweep(dir: &Path) -> Result<ResultFolder> {
        let merged = sweep::merge(dir)?;
        if merged.rows.is_empty() {
            return Err(Error::msg(format!(
                "{}: no finished cells under {}/ yet",
                dir.display(),
                sweep::CELLS_DIR
            )));
        }
        sweep::write_merged(dir, &merged)?;
        let summary = sweep::summarise(&merged);
        sweep::write_summary(dir, &summary)?;
        let finished = sweep::finished_cells(dir)?;
        let mut cells = Vec::new();
        for row in &merged.rows {
            if cells.iter().any(|c: &CellInfo| c.id == row.cell) {
                continue;
            }
            let Some(f) = finished.iter().find(|f| f.record.id == row.cell) else {
                continue;
            };
            cells.push(CellInfo {
                id: row.cell.clone(),
                method: row.method.clone(),
                dir: f.dir.clone(),
                point: point_of(&sweep::without_seed(&row.cell)),
                seed: f
                    .record
                    .overrides
                    .get(sweep::SEED_PATH)
                    .map(sweep::value_text),
            });
        }
        let (name, description) = cells
            .first()
            .map(|c| scenario_text(&c.dir))
            .unwrap_or_default();
        Ok(ResultFolder {
            dir: dir.to_path_buf(),
            kind: FolderKind::Sweep,
            name,
            description,
            merged,
            summary,
            cells,
        })
    }

    fn load_run(dir: &Path) -> Result<ResultFolder> {
        let metrics = read_table(&dir.join(sweep::METRICS_FILE))?;
        let method_col = metrics
            .columns
            .iter()
            .position(|c| c == "method")
            .ok_or_else(|| Error::Data {
                path: dir.join(sweep::METRICS_FILE),
                line: 1,
                message: "no `method` column".to_string(),
            })?;
        let rows: Vec<MergedRow> = metrics
            .rows
            .iter()
            .map(|r| MergedRow {
                cell: format!("base/{}", r[method_col]),
                method: r[method_col].clone(),
                overrides: Vec::new(),
                metrics: r.clone(),
            })
            .collect();
        let merged = MergedTable {
            override_columns: Vec::new(),
            metric_columns: metrics.columns.clone(),
            rows,
        };
        let summary = sweep::summarise(&merged);
        let cells = merged
            .rows
            .iter()
            .map(|r| CellInfo {
                id: r.cell.clone(),
                method: r.method.clone(),
                dir: dir.to_path_buf(),
                point: "base".to_string(),
                seed: None,
            })
            .collect();
        let (name, description) = scenario_text(dir);
        Ok(ResultFolder {
            dir: dir.to_path_buf(),
            kind: FolderKind::Run,
            name,
            description,
            merged,
            summary,
            cells,
        })
    }

    /// Distinct values of an override column in the merged table, sorted (numbers
    /// numerically, before text), blanks left out.
    pub fn axis_values(&self, column: &str) -> Vec<String> {
        let Some(j) = self
            .merged
            .override_columns
            .iter()
            .position(|c| c == column)
        else {
            return Vec::new();
        };
        let mut values: Vec<String> = Vec::new();
        for r in &self.merged.rows {
            let v = &r.overrides[j];
            if !v.is_empty() && !values.contains(v) {
                values.push(v.clone());
            }
        }
        values.sort_by(|a, b| cmp_text(a, b));
        values
    }
}

/// The point part of an id (`<point>/<method>`).
fn point_of(id: &str) -> String {
    id.split_once('/')
        .map(|(p, _)| p.to_string())
        .unwrap_or_else(|| id.to_string())
}

/// Name and description from `dir/scenario.resolved.toml` (blank if unreadable).
fn scenario_text(dir: &Path) -> (String, String) {
    let table: Option<toml::Table> = std::fs::read_to_string(dir.join("scenario.resolved.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok());
    let get = |k: &str| {
        table
            .as_ref()
            .and_then(|t| t.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    (get("name"), get("description"))
}

/// Read a CSV file with a header into a [`Table`] of strings.
pub fn read_table(path: &Path) -> Result<Table> {
    let (columns, rows) = crate::results::read_string_csv(path)?;
    Ok(Table { columns, rows })
}

/// Text comparison with numbers first and numerically (`2` < `10` < `abc`).
fn cmp_text(a: &str, b: &str) -> Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The last segment of a dotted path (`world.distance` → `distance`).
fn short(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

// ---------------------------------------------------------------------------------------------
// Statistics from the summary

/// Mean and std of `column` in a summary row (None when the column is missing or blank).
fn stat(s: &Summary, row: &SummaryRow, column: &str) -> Option<(f64, Option<f64>)> {
    let j = s.columns.iter().position(|c| c == column)?;
    match &row.stats[j] {
        ColumnStat::Numeric {
            mean: Some(m), std, ..
        } => Some((*m, *std)),
        _ => None,
    }
}

/// `0.742 ± 0.012`, `0.742` without a std, `–` without a value.
fn fmt_stat(v: Option<(f64, Option<f64>)>) -> String {
    match v {
        Some((m, Some(s))) => format!("{m:.3} ± {s:.3}"),
        Some((m, None)) => format!("{m:.3}"),
        None => "–".to_string(),
    }
}

/// The grid point of a summary row as text: `coupling=1.0, distance=0.5` (global axes only,
/// short names), or `all` when there are none.
fn facet_text(s: &Summary, row: &SummaryRow, skip: Option<usize>) -> String {
    let parts: Vec<String> = s
        .group_columns
        .iter()
        .enumerate()
        .filter(|(j, c)| Some(*j) != skip && !c.starts_with("methods."))
        .map(|(j, c)| format!("{}={}", short(c), row.group[j]))
        .collect();
    parts.join(", ")
}

/// The series label of a row: the method plus its `methods.*` axis values other than `skip`.
fn series_label(s: &Summary, row: &SummaryRow, skip: Option<usize>) -> String {
    let mut label = row.method.clone();
    for (j, c) in s.group_columns.iter().enumerate() {
        if Some(j) != skip && c.starts_with("methods.") && !row.group[j].is_empty() {
            label.push_str(&format!(" {}={}", short(c), row.group[j]));
        }
    }
    label
}

/// Every series label of the summary (see [`series_label`]), ordered by method label, then by
/// the values of the `methods.*` axes (numerically); a series' palette index is its position.
fn series_order(s: &Summary, skip: Option<usize>) -> Vec<String> {
    let method_axes: Vec<usize> = s
        .group_columns
        .iter()
        .enumerate()
        .filter(|(j, c)| Some(*j) != skip && c.starts_with("methods."))
        .map(|(j, _)| j)
        .collect();
    let mut keys: Vec<(&str, Vec<&str>, String)> = Vec::new();
    for r in &s.rows {
        let label = series_label(s, r, skip);
        if keys.iter().all(|k| k.2 != label) {
            let values = method_axes.iter().map(|&j| r.group[j].as_str()).collect();
            keys.push((r.method.as_str(), values, label));
        }
    }
    keys.sort_by(|a, b| {
        a.0.cmp(b.0).then_with(|| {
            a.1.iter()
                .zip(&b.1)
                .map(|(x, y)| cmp_text(x, y))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        })
    });
    keys.into_iter().map(|k| k.2).collect()
}

// ---------------------------------------------------------------------------------------------
// Line figures

/// One row of panels in a line figure: a metric, and the world's reference values for it.
#[derive(Debug, Clone, Copy)]
struct MetricRow {
    column: &'static str,
    title: &'static str,
    y_label: &'static str,
    /// `(low, high, legend)` columns of a shaded band.
    band: Option<(&'static str, &'static str, &'static str)>,
    /// `(column, legend)` of a dashed guide line.
    guide: Option<(&'static str, &'static str)>,
    /// Whether the axis starts at 0 (NMI); accuracies show their data's range.
    from_zero: bool,
}

const ACC_OBS: MetricRow = MetricRow {
    column: "acc_obs",
    title: "accuracy vs observed labels",
    y_label: "held-out accuracy (observed labels)",
    band: Some((
        "ceil_population_obs",
        "ceil_type_obs",
        "ceiling band: population oracle (low) to type oracle (high)",
    )),
    guide: Some(("ceil_prompt_obs", "prompt-oracle ceiling")),
    from_zero: false,
};
const ACC_NOISELESS: MetricRow = MetricRow {
    column: "acc_noiseless",
    title: "accuracy vs noiseless preference",
    y_label: "held-out accuracy (noiseless type preference)",
    band: Some((
        "ceil_population_noiseless",
        "ceil_type_noiseless",
        "ceiling band: population oracle (low) to type oracle (high)",
    )),
    guide: Some(("ceil_prompt_noiseless", "prompt-oracle ceiling")),
    from_zero: false,
};
const POST_NMI: MetricRow = MetricRow {
    column: "post_nmi",
    title: "posterior-code NMI with true types",
    y_label: "NMI (posterior code vs type)",
    band: None,
    guide: Some(("bound_nmi", "Bayes-posterior bound (NMI)")),
    from_zero: true,
};
const PRIOR_NMI: MetricRow = MetricRow {
    column: "prior_nmi",
    title: "prior-code NMI with true types",
    y_label: "NMI (prior code vs type)",
    band: None,
    guide: None,
    from_zero: true,
};

/// A line figure against the grid axis `x_column` (None when it has fewer than 2 numeric
/// values or no panel has data). Panels: one row per metric with data, one column per value
/// of the other global axes.
fn line_figure(
    s: &Summary,
    x_column: &str,
    x_label: &str,
    x_scale: XScale,
    title: &str,
    metrics: &[MetricRow],
) -> Option<LineChart> {
    let xi = s.group_columns.iter().position(|c| c == x_column)?;
    let x_of = |r: &SummaryRow| r.group[xi].parse::<f64>().ok();
    let mut xs: Vec<f64> = s.rows.iter().filter_map(x_of).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    if xs.len() < 2 {
        return None;
    }
    let x_is_method_axis = x_column.starts_with("methods.");
    // Facets: distinct values of the other global axes, sorted.
    let facet_key = |r: &SummaryRow| -> Vec<String> {
        s.group_columns
            .iter()
            .enumerate()
            .filter(|(j, c)| *j != xi && !c.starts_with("methods."))
            .map(|(j, _)| r.group[j].clone())
            .collect()
    };
    let mut facets: Vec<Vec<String>> = Vec::new();
    for r in &s.rows {
        let k = facet_key(r);
        if !facets.contains(&k) {
            facets.push(k);
        }
    }
    facets.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| cmp_text(x, y))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    let order = series_order(s, Some(xi));
    let mut rows_of_panels: Vec<Vec<LinePanel>> = Vec::new();
    for m in metrics {
        let mut panels = Vec::new();
        let mut any = false;
        for f in &facets {
            let members: Vec<&SummaryRow> = s.rows.iter().filter(|r| facet_key(r) == *f).collect();
            let mut series: Vec<Series> = Vec::new();
            for r in &members {
                let Some((y, err)) = stat(s, r, m.column) else {
                    continue;
                };
                let label = series_label(s, r, Some(xi));
                let (x, constant) = match x_of(r) {
                    Some(x) => (x, false),
                    None => (xs[0], true),
                };
                let i = match series.iter().position(|q| q.label == label) {
                    Some(i) => i,
                    None => {
                        series.push(Series {
                            label: if constant {
                                format!("{label} (no {})", short(x_column))
                            } else {
                                label.clone()
                            },
                            color: order.iter().position(|l| *l == label).unwrap_or(0),
                            points: Vec::new(),
                            constant,
                        });
                        series.len() - 1
                    }
                };
                series[i].points.push(Point { x, y, err });
            }
            for q in &mut series {
                q.points.sort_by(|a, b| a.x.total_cmp(&b.x));
            }
            series.sort_by_key(|q| q.color);
            // The world's values at each x: mean over the facet's rows there (over all its
            // rows when x is a method field, which leaves the world unchanged).
            let world_at = |column: &str, x: f64| -> Option<f64> {
                let vals: Vec<f64> = members
                    .iter()
                    .filter(|r| x_is_method_axis || x_of(r) == Some(x))
                    .filter_map(|r| stat(s, r, column).map(|v| v.0))
                    .collect();
                (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
            };
            let band = m.band.and_then(|(lo, hi, label)| {
                let points: Vec<(f64, f64, f64)> = xs
                    .iter()
                    .filter_map(|&x| Some((x, world_at(lo, x)?, world_at(hi, x)?)))
                    .collect();
                (points.len() >= 2).then(|| Band {
                    label: label.to_string(),
                    points,
                })
            });
            let guides: Vec<Guide> = m
                .guide
                .and_then(|(col, label)| {
                    let points: Vec<(f64, f64)> = xs
                        .iter()
                        .filter_map(|&x| Some((x, world_at(col, x)?)))
                        .collect();
                    (points.len() >= 2).then(|| Guide {
                        label: label.to_string(),
                        color: usize::from(m.band.is_none()),
                        points,
                    })
                })
                .into_iter()
                .collect();
            any |= series.iter().any(|q| !q.constant);
            let facet = members
                .first()
                .map(|r| facet_text(s, r, Some(xi)))
                .unwrap_or_default();
            panels.push(LinePanel {
                title: if facet.is_empty() {
                    m.title.to_string()
                } else {
                    format!("{} · {facet}", m.title)
                },
                y_label: m.y_label.to_string(),
                series,
                band,
                guides,
                // Accuracies and NMI lie in [0, 1].
                y_clamp: Some((0.0, 1.0)),
                y_include: m.from_zero.then_some(0.0),
            });
        }
        if any {
            rows_of_panels.push(panels);
        }
    }
    if rows_of_panels.is_empty() {
        return None;
    }
    Some(LineChart {
        title: title.to_string(),
        x_label: x_label.to_string(),
        x_scale,
        columns: facets.len(),
        panels: rows_of_panels.into_iter().flatten().collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Per-cell figures: steering heat maps and code PCA

/// For each method, the cells shown in per-cell figures: the smallest seed at each grid point,
/// at most [`MAX_PANELS`] points evenly spaced. Returns `(method, cells, points in total)`.
fn representative_cells(folder: &ResultFolder) -> Vec<(String, Vec<&CellInfo>, usize)> {
    let mut methods: Vec<&str> = folder.cells.iter().map(|c| c.method.as_str()).collect();
    methods.sort();
    methods.dedup();
    methods
        .into_iter()
        .map(|m| {
            let mine: Vec<&CellInfo> = folder.cells.iter().filter(|c| c.method == m).collect();
            let min_seed = mine
                .iter()
                .filter_map(|c| c.seed.as_deref())
                .min_by(|a, b| cmp_text(a, b))
                .map(str::to_string);
            let chosen: Vec<&CellInfo> = mine.into_iter().filter(|c| c.seed == min_seed).collect();
            let n = chosen.len();
            (m.to_string(), evenly_spaced(chosen, MAX_PANELS), n)
        })
        .collect()
}

/// At most `max` items of `items`, evenly spaced and including the first and last:
/// ```text
/// indices i·(n-1)/(max-1) (integer division), i = 0..max, when n > max
/// ```
pub fn evenly_spaced<T: Clone>(items: Vec<T>, max: usize) -> Vec<T> {
    let n = items.len();
    if n <= max || max == 0 {
        return if max == 0 { Vec::new() } else { items };
    }
    if max == 1 {
        return vec![items[0].clone()];
    }
    (0..max)
        .map(|i| items[i * (n - 1) / (max - 1)].clone())
        .collect()
}

/// A per-cell panel title: the grid point and seed, or the method in a run folder.
fn cell_title(folder: &ResultFolder, c: &CellInfo) -> String {
    match folder.kind {
        FolderKind::Run => c.method.clone(),
        FolderKind::Sweep => {
            let point = if c.point == "base" {
                String::new()
            } else {
                c.point.replace(',', ", ")
            };
            match (&c.seed, point.is_empty()) {
                (Some(s), true) => format!("seed {s}"),
                (Some(s), false) => format!("{point} · seed {s}"),
                (None, true) => c.method.clone(),
                (None, false) => point,
            }
        }
    }
}

/// Typed rows of `file` in cell `c`'s folder that belong to its method (missing file: none).
fn cell_rows<T: DeserializeOwned>(
    c: &CellInfo,
    file: &str,
    method: impl Fn(&T) -> &str,
) -> Result<Option<Vec<T>>> {
    let path = c.dir.join(file);
    if !path.is_file() {
        return Ok(None);
    }
    let mut rows: Vec<T> = read_rows(&path)?;
    rows.retain(|r| method(r) == c.method);
    Ok(Some(rows))
}

/// The steering heat map of cell `c`, or None when it has no steering rows: mean true reward
/// `[code][type]` from the rows with a `mean_reward`, and each type's matched code outlined.
fn steering_panel(folder: &ResultFolder, c: &CellInfo) -> Result<Option<HeatPanel>> {
    let Some(t) = cell_rows(c, "steering.csv", |r: &SteeringRow| &r.method)? else {
        return Ok(None);
    };
    let entries: Vec<(usize, usize, f64, bool)> = t
        .iter()
        .filter_map(|r| Some((r.code, r.ty, r.mean_reward?, r.matched)))
        .collect();
    if entries.is_empty() {
        return Ok(None);
    }
    let k = entries.iter().map(|e| e.0).max().unwrap_or(0) + 1;
    let types = entries.iter().map(|e| e.1).max().unwrap_or(0) + 1;
    let mut values = vec![vec![0.0; types]; k];
    let mut marked = Vec::new();
    for (code, ty, v, matched) in entries {
        values[code][ty] = v;
        if matched {
            marked.push((code, ty));
        }
    }
    Ok(Some(HeatPanel {
        title: cell_title(folder, c),
        row_label: "code k (policy steered with e_k)".to_string(),
        col_label: "true type".to_string(),
        rows: (0..k).map(|i| i.to_string()).collect(),
        cols: (0..types).map(|i| format!("type {i}")).collect(),
        values,
        marked,
        marked_label: "the code matched to the type (from training-pair posteriors)".to_string(),
    }))
}

/// The PCA panel of cell `c`'s posterior code probabilities, or None when it has fewer than 3
/// rows or fewer than 2 codes. Returns the panel and the number of types seen.
fn pca_panel(folder: &ResultFolder, c: &CellInfo) -> Result<Option<(ScatterPanel, usize)>> {
    let Some(t) = cell_rows(c, "codes.csv", |r: &CodeRow| &r.method)? else {
        return Ok(None);
    };
    let (rows, types): (Vec<Vec<f64>>, Vec<usize>) =
        t.into_iter().map(|r| (r.posterior_probs, r.ty)).unzip();
    if rows.len() < 3 || rows[0].len() < 2 {
        return Ok(None);
    }
    let Some(p) = crate::pca::pca(&rows, 2) else {
        return Ok(None);
    };
    let pct = |j: usize| {
        if p.total_variance > 0.0 {
            100.0 * p.variances.get(j).copied().unwrap_or(0.0) / p.total_variance
        } else {
            0.0
        }
    };
    let points = rows
        .iter()
        .zip(&types)
        .take(plots::MAX_SCATTER_POINTS)
        .map(|(r, &ty)| {
            let z = p.project(r);
            (z[0], z.get(1).copied().unwrap_or(0.0), ty)
        })
        .collect();
    let n_types = types.iter().max().map_or(0, |m| m + 1);
    Ok(Some((
        ScatterPanel {
            title: cell_title(folder, c),
            x_label: format!("PC1 ({:.0} % of variance)", pct(0)),
            y_label: format!("PC2 ({:.0} % of variance)", pct(1)),
            points,
        },
        n_types,
    )))
}

// ---------------------------------------------------------------------------------------------
// All figures

/// A figure with its file stem (under `plots/`) and a caption for `report.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedFigure {
    /// File name without extension.
    pub stem: String,
    /// One-paragraph caption.
    pub caption: String,
    /// What to draw.
    pub figure: Figure,
}

/// File-safe form of a method label.
fn file_safe(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Validation curves (`curves.csv`) of the first representative cell of each method: one
/// panel per metric, one line per method. `None` when no cell has curves.
fn curves_figure(folder: &ResultFolder, name: &str) -> Result<Option<NamedFigure>> {
    /// `(curves.csv column, panel title, y range)`.
    type PanelSpec = (
        fn(&CurveRow) -> Option<f64>,
        &'static str,
        Option<(f64, f64)>,
    );
    const PANELS: [PanelSpec; 6] = [
        (
            |r| Some(r.val_objective),
            "validation objective (selection criterion)",
            None,
        ),
        (
            |r| Some(r.val_accuracy),
            "validation accuracy (prior code)",
            Some((0.0, 1.0)),
        ),
        (|r| r.val_kl, "validation KL(q‖p)", None),
        (|r| r.code_perplexity, "posterior code perplexity", None),
        (
            |r| r.val_post_nmi,
            "posterior-code NMI with true types",
            Some((0.0, 1.0)),
        ),
        (
            |r| r.val_prior_nmi,
            "prior-code NMI with true types",
            Some((0.0, 1.0)),
        ),
    ];
    let mut series: Vec<Vec<Series>> = vec![Vec::new(); PANELS.len()];
    let mut point_note = String::new();
    for (i, (method, cells, _)) in representative_cells(folder).into_iter().enumerate() {
        let Some(c) = cells.first() else { continue };
        let Some(t) = cell_rows(c, "curves.csv", |r: &CurveRow| &r.method)? else {
            continue;
        };
        if folder.kind == FolderKind::Sweep {
            point_note = format!(" (grid point {}, smallest seed)", c.id);
        }
        for (p, (value, _, _)) in PANELS.iter().enumerate() {
            let points: Vec<Point> = t
                .iter()
                .filter_map(|r| {
                    Some(Point {
                        x: r.step as f64,
                        y: value(r).filter(|y| !y.is_nan())?,
                        err: None,
                    })
                })
                .collect();
            if !points.is_empty() {
                series[p].push(Series {
                    label: method.clone(),
                    color: i,
                    points,
                    constant: false,
                });
            }
        }
    }
    let panels: Vec<LinePanel> = PANELS
        .iter()
        .zip(series)
        .filter(|(_, s)| !s.is_empty())
        .map(|((_, title, clamp), s)| LinePanel {
            title: title.to_string(),
            y_label: title.to_string(),
            series: s,
            band: None,
            guides: Vec::new(),
            y_clamp: *clamp,
            y_include: clamp.map(|(lo, _)| lo),
        })
        .collect();
    if panels.is_empty() {
        return Ok(None);
    }
    Ok(Some(NamedFigure {
        stem: "curves".to_string(),
        caption: format!(
            "training curves on the validation pairs{point_note}: the selection criterion, \
             accuracy, KL(q‖p), code use and the NMI of posterior and prior codes with the true \
             types, per evaluation step — when (or whether) the codes break symmetry"
        ),
        figure: Figure::Line(LineChart {
            title: format!("{name}validation curves"),
            x_label: "training step".to_string(),
            x_scale: XScale::Linear,
            columns: 3,
            panels,
        }),
    }))
}

/// Every figure the folder's data supports, in report order.
pub fn figures(folder: &ResultFolder) -> Result<Vec<NamedFigure>> {
    let s = &folder.summary;
    let name = if folder.name.is_empty() {
        String::new()
    } else {
        format!("{}: ", folder.name)
    };
    let mut out = Vec::new();
    let lines = [
        (
            "accuracy-vs-distance",
            "world.distance",
            "type distance d",
            XScale::Linear,
            "held-out preference accuracy vs type distance",
            vec![ACC_OBS, ACC_NOISELESS],
        ),
        (
            "nmi-vs-distance",
            "world.distance",
            "type distance d",
            XScale::Linear,
            "latent recovery (NMI of codes with true types) vs type distance",
            vec![POST_NMI, PRIOR_NMI],
        ),
        (
            "accuracy-vs-flip-rate",
            "noise.flip_rate",
            "label flip rate",
            XScale::Linear,
            "held-out preference accuracy vs label flip rate",
            vec![ACC_OBS, ACC_NOISELESS],
        ),
        (
            "codebook",
            "methods.codebook",
            "codebook size K (log scale)",
            XScale::Log2,
            "accuracy and latent recovery vs codebook size",
            vec![ACC_OBS, ACC_NOISELESS, POST_NMI],
        ),
    ];
    for (stem, x, x_label, scale, title, metrics) in lines {
        if let Some(chart) = line_figure(s, x, x_label, scale, &format!("{name}{title}"), &metrics)
        {
            out.push(NamedFigure {
                stem: stem.to_string(),
                caption: format!(
                    "{title}: mean ± std over seeds; grey band from the population-oracle to the \
                     type-oracle ceiling, dashed lines the prompt-oracle ceiling or the Bayes bound"
                ),
                figure: Figure::Line(chart),
            });
        }
    }
    if let Some(f) = curves_figure(folder, &name)? {
        out.push(f);
    }
    for (method, cells, total) in representative_cells(folder) {
        let shown = cells.len();
        let note = if shown < total {
            format!(" ({shown} of {total} grid points, evenly spaced)")
        } else {
            String::new()
        };
        let seed_note = if cells.iter().any(|c| c.seed.is_some()) {
            " One seed (the smallest) per grid point: code indices are arbitrary per run."
        } else {
            ""
        };
        let mut heat = Vec::new();
        let mut scatter = Vec::new();
        let mut n_types = 0;
        for c in &cells {
            if let Some(p) = steering_panel(folder, c)? {
                heat.push(p);
            }
            if let Some((p, t)) = pca_panel(folder, c)? {
                n_types = n_types.max(t);
                scatter.push(p);
            }
        }
        let columns = |n: usize| if n <= 4 { n } else { n.div_ceil(2).min(4) };
        if !heat.is_empty() {
            out.push(NamedFigure {
                stem: format!("steering-{}", file_safe(&method)),
                caption: format!(
                    "{method}: steering table, mean true reward of each type when the policy is \
                     steered with code k{note}.{seed_note}"
                ),
                figure: Figure::Heat(HeatMap {
                    title: format!("{name}{method}: codes × types steering table"),
                    value_label: "mean true reward of the type over responses sampled with code k"
                        .to_string(),
                    columns: columns(heat.len()),
                    panels: heat,
                }),
            });
        }
        if !scatter.is_empty() {
            out.push(NamedFigure {
                stem: format!("codes-pca-{}", file_safe(&method)),
                caption: format!(
                    "{method}: 2-D PCA of posterior code probabilities q(z | x, y_w > y_l) on \
                     held-out pairs, coloured by true type (first {} pairs){note}.{seed_note}",
                    plots::MAX_SCATTER_POINTS
                ),
                figure: Figure::Scatter(ScatterChart {
                    title: format!(
                        "{name}{method}: posterior code probabilities (PCA) by true type"
                    ),
                    columns: columns(scatter.len()),
                    classes: (0..n_types).map(|t| format!("type {t}")).collect(),
                    panels: scatter,
                }),
            });
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// report.md

/// Method columns of the per-point tables: `(header, column)`.
const TABLE_COLUMNS: [(&str, &str); 14] = super::HEADLINE_COLUMNS;

/// World rows under each table: `(label, [(table column, world column)])`.
const WORLD_ROWS: [(&str, &[(&str, &str)]); 4] = [
    (
        "*ceiling: type oracle*",
        &[
            ("acc_obs", "ceil_type_obs"),
            ("acc_noiseless", "ceil_type_noiseless"),
            ("steered_acc_noiseless", "ceil_type_noiseless"),
        ],
    ),
    (
        "*ceiling: prompt oracle*",
        &[
            ("acc_obs", "ceil_prompt_obs"),
            ("acc_noiseless", "ceil_prompt_noiseless"),
        ],
    ),
    (
        "*ceiling: population oracle*",
        &[
            ("acc_obs", "ceil_population_obs"),
            ("acc_noiseless", "ceil_population_noiseless"),
        ],
    ),
    (
        "*bound: Bayes posterior*",
        &[("post_nmi", "bound_nmi"), ("post_matched_acc", "bound_acc")],
    ),
];

/// The summary rows of each grid point (all group columns but the method axes), in order.
fn points(s: &Summary) -> Vec<(String, Vec<&SummaryRow>)> {
    let mut out: Vec<(String, Vec<&SummaryRow>)> = Vec::new();
    for r in &s.rows {
        let key = facet_text(s, r, None);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(r),
            None => out.push((key, vec![r])),
        }
    }
    out
}

/// The whole `report.md`.
pub fn markdown(folder: &ResultFolder, figures: &[NamedFigure]) -> String {
    let s = &folder.summary;
    let mut md = String::new();
    let title = if folder.name.is_empty() {
        folder.dir.display().to_string()
    } else {
        folder.name.clone()
    };
    md.push_str(&format!("# {title} — lpc-bench report\n\n"));
    if !folder.description.trim().is_empty() {
        md.push_str(&format!("{}\n\n", folder.description.trim()));
    }
    match folder.kind {
        FolderKind::Sweep => {
            md.push_str(&format!(
                "A sweep folder with {} finished cells ({} result rows). Grid axes:\n\n",
                folder.cells.len(),
                folder.merged.rows.len()
            ));
            for c in &folder.merged.override_columns {
                md.push_str(&format!(
                    "- `{c}` ∈ {{{}}}\n",
                    folder.axis_values(c).join(", ")
                ));
            }
            let mut methods: Vec<&str> = s.rows.iter().map(|r| r.method.as_str()).collect();
            methods.sort();
            methods.dedup();
            md.push_str(&format!("- methods: {}\n\n", methods.join(", ")));
            md.push_str(
                "Numbers are mean ± sample std over seeds (`n` = seeds finished); the merged rows \
                 are in `all-metrics.csv`, the means and stds in `all-metrics-summary.csv`. ",
            );
        }
        FolderKind::Run => {
            md.push_str("A single run folder: one seed, so no ± std. ");
        }
    }
    md.push_str(
        "Accuracies are on held-out pairs with the prior code; *acc obs* is against the observed \
         labels, *acc noiseless* against the true type's noiseless preference. Under each table, \
         the world's ceilings (type, prompt and population oracles) and the Bayes-posterior bound \
         on latent recovery are in the columns they bound. `–` marks a score that does not apply.\n\n",
    );

    if !figures.is_empty() {
        md.push_str("## Figures\n\n");
        for f in figures {
            md.push_str(&format!(
                "![{}]({PLOTS_DIR}/{}.png)\n\n*{}* ([SVG]({PLOTS_DIR}/{}.svg))\n\n",
                f.stem, f.stem, f.caption, f.stem
            ));
        }
    }

    let present: Vec<(&str, &str)> = TABLE_COLUMNS
        .iter()
        .copied()
        .filter(|(_, c)| s.columns.iter().any(|x| x == c))
        .collect();
    md.push_str("## Results per grid point\n\n");
    for (key, rows) in points(s) {
        if !key.is_empty() {
            md.push_str(&format!("### {key}\n\n"));
        }
        md.push_str("| method | n |");
        for (h, _) in &present {
            md.push_str(&format!(" {h} |"));
        }
        md.push_str(" status |\n|---|---|");
        md.push_str(&"---|".repeat(present.len() + 1));
        md.push('\n');
        for r in &rows {
            md.push_str(&format!("| {} | {} |", series_label(s, r, None), r.n));
            for (_, c) in &present {
                md.push_str(&format!(" {} |", fmt_stat(stat(s, r, c))));
            }
            let status = s
                .columns
                .iter()
                .position(|c| c == "status")
                .and_then(|j| match &r.stats[j] {
                    ColumnStat::Text(t) => Some(t.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            md.push_str(&format!(" {status} |\n"));
        }
        for (label, map) in WORLD_ROWS {
            // The world's values are the same for every method at a seed; take the first row
            // that has them.
            let cells: Vec<String> = present
                .iter()
                .map(|(_, c)| {
                    map.iter()
                        .find(|(tc, _)| tc == c)
                        .and_then(|(_, wc)| rows.iter().find_map(|r| stat(s, r, wc)))
                        .map(|v| fmt_stat(Some(v)))
                        .unwrap_or_default()
                })
                .collect();
            if cells.iter().all(String::is_empty) {
                continue;
            }
            md.push_str(&format!("| {label} | |"));
            for c in cells {
                md.push_str(&format!(" {c} |"));
            }
            md.push_str(" |\n");
        }
        md.push('\n');
    }

    // Per-type accuracy.
    let groups: Vec<String> = s
        .columns
        .iter()
        // Group names from the observed-accuracy columns (`acc_noiseless_unseen` is not a group).
        .filter_map(|c| c.strip_prefix("acc_obs_").map(str::to_string))
        .filter(|g| g != "worst_group")
        .collect();
    if !groups.is_empty() {
        md.push_str(
            "## Per-type accuracy (held-out pairs, prior code)\n\nAgainst the noiseless type \
             preference, per true type, then the worst type against the observed labels.\n\n",
        );
        md.push_str("| grid point | method |");
        for g in &groups {
            md.push_str(&format!(" {g} |"));
        }
        md.push_str(" worst type (obs) |\n|---|---|");
        md.push_str(&"---|".repeat(groups.len() + 1));
        md.push('\n');
        for (key, rows) in points(s) {
            for r in rows {
                md.push_str(&format!(
                    "| {} | {} |",
                    if key.is_empty() { "all" } else { &key },
                    series_label(s, r, None)
                ));
                for g in &groups {
                    md.push_str(&format!(
                        " {} |",
                        fmt_stat(stat(s, r, &format!("acc_noiseless_{g}")))
                    ));
                }
                md.push_str(&format!(
                    " {} |\n",
                    fmt_stat(stat(s, r, "acc_obs_worst_group"))
                ));
            }
        }
        md.push('\n');
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metrics_column_the_report_names_is_a_column_of_a_metrics_row() {
        // Oracle: the columns a synthetic run's `metrics.csv` row has (`MetricsRow::cells`
        // with every segment present and one group, `type0`). The sweep report reads the
        // merged table by name; a renamed score field must fail here, not at report time.
        use crate::results::metrics_row::{
            Accuracy, AccuracyPair, Ceilings, MethodBound, MethodScores, MetricsRow, NmiNull,
            TrainingColumns, WorldStats,
        };
        let row = MetricsRow {
            training: Some(TrainingColumns::default()),
            scores: Some(MethodScores {
                accuracy: Accuracy {
                    groups: vec![("type0".into(), AccuracyPair::default())],
                    ..Accuracy::default()
                },
                ..MethodScores::default()
            }),
            bound: Some(MethodBound::default()),
            ceilings: Some(Ceilings::default()),
            world: Some(WorldStats::default()),
            nmi_null: Some(NmiNull::default()),
            ..MetricsRow::default()
        };
        let columns: Vec<String> = row.cells().into_iter().map(|(c, _)| c).collect();
        let mut named: Vec<&str> = vec!["method", "status", "acc_obs_worst_group"];
        for m in [ACC_OBS, ACC_NOISELESS, POST_NMI, PRIOR_NMI] {
            named.push(m.column);
            if let Some((lo, hi, _)) = m.band {
                named.extend([lo, hi]);
            }
            if let Some((g, _)) = m.guide {
                named.push(g);
            }
        }
        named.extend(TABLE_COLUMNS.iter().map(|(_, c)| *c));
        for (_, pairs) in WORLD_ROWS {
            named.extend(pairs.iter().flat_map(|(a, b)| [*a, *b]));
        }
        for c in named {
            assert!(
                columns.iter().any(|x| x == c),
                "`{c}` is not a metrics.csv column"
            );
        }
    }

    #[test]
    fn evenly_spaced_keeps_both_ends() {
        let v: Vec<usize> = (0..30).collect();
        // Indices i·29/11 for i = 0..12: 0, 2, 5, 7, 10, 13, 15, 18, 21, 23, 26, 29.
        assert_eq!(
            evenly_spaced(v.clone(), 12),
            [0, 2, 5, 7, 10, 13, 15, 18, 21, 23, 26, 29]
        );
        assert_eq!(evenly_spaced(v[..5].to_vec(), 12), [0, 1, 2, 3, 4]);
        assert_eq!(evenly_spaced(v.clone(), 1), [0]);
        assert!(evenly_spaced(v, 0).is_empty());
    }

    #[test]
    fn stats_format_with_and_without_std() {
        assert_eq!(fmt_stat(Some((0.7421, Some(0.0123)))), "0.742 ± 0.012");
        assert_eq!(fmt_stat(Some((0.5, None))), "0.500");
        assert_eq!(fmt_stat(None), "–");
    }

    #[test]
    fn text_sorts_numbers_numerically_first() {
        let mut v = vec!["abc", "10", "2", "0.5"];
        v.sort_by(|a, b| cmp_text(a, b));
        assert_eq!(v, ["0.5", "2", "10", "abc"]);
    }

    fn summary(rows: &[(&str, &str, &str, &str)]) -> Summary {
        // (distance, codebook, method, acc_obs) rows, one seed each.
        let merged = MergedTable {
            override_columns: vec!["methods.codebook".into(), "world.distance".into()],
            metric_columns: vec!["method".into(), "acc_obs".into(), "ceil_type_obs".into()],
            rows: rows
                .iter()
                .map(|(d, k, m, a)| MergedRow {
                    cell: format!("d={d},k={k}/{m}"),
                    method: m.to_string(),
                    overrides: vec![k.to_string(), d.to_string()],
                    metrics: vec![m.to_string(), a.to_string(), "0.9".into()],
                })
                .collect(),
        };
        sweep::summarise(&merged)
    }

    #[test]
    fn a_line_figure_needs_two_values_of_its_axis() {
        let s = summary(&[("0.5", "", "dpo", "0.6"), ("0.5", "8", "lpc-dpo", "0.7")]);
        assert!(line_figure(&s, "world.distance", "d", XScale::Linear, "t", &[ACC_OBS]).is_none());
    }

    #[test]
    fn methods_without_the_axis_become_constant_lines() {
        let s = summary(&[
            ("0.5", "", "dpo", "0.6"),
            ("0.5", "8", "lpc-dpo", "0.7"),
            ("0.5", "16", "lpc-dpo", "0.75"),
        ]);
        let c = line_figure(&s, "methods.codebook", "K", XScale::Log2, "t", &[ACC_OBS]).unwrap();
        assert_eq!(c.panels.len(), 1);
        let p = &c.panels[0];
        let dpo = p
            .series
            .iter()
            .find(|q| q.label.starts_with("dpo"))
            .unwrap();
        assert!(dpo.constant);
        assert_eq!(dpo.points[0].y, 0.6);
        let lpc = p.series.iter().find(|q| q.label == "lpc-dpo").unwrap();
        let pts: Vec<(f64, f64)> = lpc.points.iter().map(|q| (q.x, q.y)).collect();
        assert_eq!(pts, [(8.0, 0.7), (16.0, 0.75)]);
        // The band needs both of its columns; only ceil_type_obs exists here.
        assert!(p.band.is_none());
    }

    #[test]
    fn other_global_axes_become_panel_columns() {
        let s = summary(&[
            ("0.0", "8", "lpc-dpo", "0.6"),
            ("1.0", "8", "lpc-dpo", "0.7"),
            ("0.0", "16", "lpc-dpo", "0.65"),
            ("1.0", "16", "lpc-dpo", "0.8"),
        ]);
        // x = distance: codebook is a method axis, so it splits series, not panels.
        let c = line_figure(&s, "world.distance", "d", XScale::Linear, "t", &[ACC_OBS]).unwrap();
        assert_eq!(c.columns, 1);
        let labels: Vec<&str> = c.panels[0]
            .series
            .iter()
            .map(|q| q.label.as_str())
            .collect();
        assert_eq!(labels, ["lpc-dpo codebook=8", "lpc-dpo codebook=16"]);
    }
}
