//! Sweeps: a scenario's `[sweep]` grid expanded into cells, the cells' identities and folders,
//! sharding a grid over machines, resume bookkeeping, the merged metrics table and its
//! mean ± std summary over seeds, and a relative cost estimate for `--dry-run`.
//!
//! This module never trains and never computes a metric: running one cell is the `run`
//! pipeline's job (`experiment::run_scenario`), which the `sweep` command calls inside
//! [`run_cell_atomically`]; the metric values are copied from each cell's `metrics.csv` as
//! strings. Plots and `report.md` belong to the report command.
//!
//! # Grid files
//! A `[sweep]` table maps dotted field paths to lists of values:
//! ```toml
//! [sweep]
//! world.distance = [0.0, 0.25, 0.5, 0.75, 1.0]
//! noise.flip_rate = [0.1, 0.5]
//! methods.codebook = [8, 16, 32]
//! seed = [0, 1, 2]                 # alias of data.seed
//! ```
//! Keys may be written nested (`world.distance = ..` under `[sweep]`, or `[sweep.world]`) or as
//! one quoted key (`"world.distance" = ..`); both mean the same path. Every value replaces the
//! field at that path (so a list-valued field such as `world.type_weights` is swept with a list
//! of lists). A path the scenario schema does not know is an error, as are `name`,
//! `methods.method`, `methods.label` and `methods` itself (the methods list is already a grid axis).
//!
//! **`methods.<field>`** sets `<field>` on every method that accepts it (the scenario's own
//! validation rules decide: `codebook` applies to discrete `lpc-*` methods, `gamma` to SimPO,
//! ...), overriding any value the method sets itself. A method that does not accept the field
//! is not crossed with that axis: it gets one cell per point of the other axes, so a bare `dpo`
//! is not trained six times for six codebook sizes. Naming a field that no listed method accepts
//! is an error.
//!
//! # Cells
//! A cell is one grid point × one method. Its scenario is the base scenario with the point's
//! overrides applied, `sweep` removed and `methods` filtered to that one method; it is
//! validated, and a broken rule names the sweep key and index (`sweep.world.distance[2] must be
//! in [0, 1]`). The number of cells is
//! ```text
//! cells = Π_{a ∈ global axes} |a|  ·  Σ_{m ∈ methods} Π_{a ∈ method axes accepted by m} |a|
//! ```
//! which is `Π |a| · |methods|` when every axis applies to every method. Cells come in a fixed
//! order: axes sorted by canonical path, the product taken with the last axis varying fastest,
//! methods in file order inside each point of the global axes, values in list order.
//!
//! A cell's id is `<point>/<method>`: the point is `key=value` pairs joined by `,`, sorted by
//! canonical path (`base` for a grid without axes), e.g. `seed=2,flip_rate=0.1,distance=0.25/lpc-dpo`
//! (`data.seed` sorts before `noise.` and `world.`). The key is the path's last segment unless
//! two axes share it (`train.lr`, `methods.lr`), then the full path. The id depends only on the
//! cell's own values, never on list positions or file order, so adding values to a list or
//! reordering the file keeps every existing id. Values that are not plain numbers, booleans or
//! `[A-Za-z0-9._+-]` strings are written with unsafe characters as `_` plus `~` and 8 hex digits
//! of the SHA-256 of their TOML text, which keeps ids filesystem-safe and distinct; expansion
//! checks that ids are unique.
//!
//! # Output folder
//! ```text
//! OUT/cells/<point>/<method>/               a finished cell: run outputs, cell.toml, DONE
//!                                           or a failed cell: cell.toml, FAILED (no DONE)
//! OUT/cells/<point>/<method>.tmp-<pid>-XXXX  a cell being run (or killed while running, or failed)
//! OUT/cells/<point>/<method>.stale-<pid>-N   an unfinished folder moved aside on rerun
//! OUT/all-metrics.csv                       merged table (see [`merge`])
//! OUT/all-metrics-summary.csv               mean ± std over seeds (see [`summarise`])
//! ```
//! The only folders deleted here are failure records ([`record_failure`]: `cell.toml` and
//! `FAILED`, nothing else), replaced when the cell is retried. `*.tmp-*` and `*.stale-*` folders
//! are never read and may be removed by hand once no sweep is running.

use crate::results::{read_string_csv, write_atomic};
use crate::scenario::{MethodName, ObjectiveKind, Scenario, ScenarioError};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use toml::Value;

/// Canonical path of the master seed; `seed` is accepted as an alias in `[sweep]`, and it is the
/// column [`summarise`] averages over.
pub const SEED_PATH: &str = "data.seed";
/// Largest number of cells a grid may expand to.
pub const MAX_CELLS: u64 = 100_000;
/// Sub-folder of the output folder that holds one folder per cell.
pub const CELLS_DIR: &str = "cells";
/// Marker written last into a cell folder; a cell is finished iff its folder holds it.
pub const DONE_FILE: &str = "DONE";
/// The cell's identity (id, method label, overrides) written beside its results.
pub const CELL_FILE: &str = "cell.toml";
/// Marker of a failed cell: its folder holds `cell.toml` and this file (the error message),
/// never `DONE`. See [`record_failure`].
pub const FAILED_FILE: &str = "FAILED";
/// Status written in the merged table for a failed cell's row.
pub const FAILED_STATUS: &str = "failed";
/// Column of the merged table holding a failed cell's error (present only when a cell failed).
pub const ERROR_COLUMN: &str = "error";
/// Each cell's metrics table, written by the run pipeline.
pub const METRICS_FILE: &str = "metrics.csv";
/// The merged table written by [`write_merged`].
pub const MERGED_FILE: &str = "all-metrics.csv";
/// The summary table written by [`write_summary`].
pub const SUMMARY_FILE: &str = "all-metrics-summary.csv";

/// Why a grid could not be expanded or a shard not parsed. Every variant names the sweep key
/// (and the value's index) or the cell.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    /// The scenario outside `[sweep]` does not parse.
    #[error("{0}")]
    Base(String),
    /// A sweep key is malformed or names no field: `sweep.world.distnace is not a scenario field`.
    #[error("sweep.{key} {rule}")]
    Key {
        /// The key as written after `sweep.`.
        key: String,
        /// The rule it breaks.
        rule: String,
    },
    /// One listed value breaks a rule: `sweep.world.distance[2] must be in [0, 1]`.
    #[error("sweep.{key}[{index}] {rule}")]
    Value {
        /// The key as written after `sweep.`.
        key: String,
        /// Position of the value in the key's list.
        index: usize,
        /// The rule the value breaks.
        rule: String,
    },
    /// A combination of values breaks a rule that no single key owns.
    #[error("sweep cell {id}: {message}")]
    Cell {
        /// The cell id.
        id: String,
        /// The rule broken and the values that break it.
        message: String,
    },
    /// A bad `--shard` argument.
    #[error("{0}")]
    Shard(String),
}

impl From<SweepError> for Error {
    fn from(e: SweepError) -> Error {
        Error::Msg(e.to_string())
    }
}

/// One grid axis: a field path and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The key as written in `[sweep]` (`seed`, `world.distance`), used in error messages.
    pub key: String,
    /// Canonical dotted path (`data.seed`, `world.distance`, `methods.codebook`).
    pub path: String,
    /// The values, in file order (at least one, no repeats).
    pub values: Vec<Value>,
}

impl Axis {
    /// The method field for a `methods.<field>` axis, `None` for a global axis.
    pub fn method_field(&self) -> Option<&str> {
        self.path.strip_prefix("methods.")
    }
}

/// One override of a cell: an axis at one of its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Canonical dotted path.
    pub path: String,
    /// The key as written in `[sweep]`.
    pub key: String,
    /// Position of the value in the axis' list.
    pub index: usize,
    /// The value, as TOML.
    pub value: Value,
}

/// One grid point × one method.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Stable, unique, filesystem-safe id `<point>/<method>` (see the module docs).
    pub id: String,
    /// The overrides applied, sorted by canonical path.
    pub overrides: Vec<Override>,
    /// The method's label (unique within the scenario).
    pub method: String,
    /// The validated scenario of this cell: one method, no `sweep`.
    pub scenario: Scenario,
}

/// Read a scenario file and expand its grid; the name defaults to the file stem. Errors outside
/// `[sweep]` carry the file's line and column.
pub fn load(path: &Path) -> Result<Vec<Cell>> {
    let text = crate::scenario::read_text(path)?;
    load_text(&text, &crate::scenario::file_stem(path), path)
}

/// [`load`] on a file's text; `path` only names the file in errors.
pub fn load_text(text: &str, stem: &str, path: &Path) -> Result<Vec<Cell>> {
    let parse_error = |message: String| {
        Error::Scenario(ScenarioError::Parse {
            path: path.to_path_buf(),
            message: message.trim_end().to_string(),
        })
    };
    // Parse as a scenario first so that errors outside [sweep] keep their line numbers.
    toml::from_str::<Scenario>(text).map_err(|e| parse_error(e.to_string()))?;
    let table: toml::Table = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
    if table.is_empty() {
        // The same rule as `Scenario::from_file_text`.
        return Err(Scenario::from_file_text(text, stem)
            .map_err(|e| e.with_path(path))
            .err()
            .map(Error::from)
            .unwrap_or_else(|| Error::msg("empty scenario file")));
    }
    expand(&table, stem).map_err(|e| Error::msg(format!("{}: {e}", path.display())))
}

/// The grid axes of a scenario table, sorted by canonical path (empty without `[sweep]`).
pub fn axes(base: &toml::Table) -> Result<Vec<Axis>, SweepError> {
    let Some(sweep) = base.get("sweep") else {
        return Ok(Vec::new());
    };
    let Value::Table(sweep) = sweep else {
        return Err(SweepError::Base(
            "sweep must be a table of `field.path = [values]`".to_string(),
        ));
    };
    let mut leaves = Vec::new();
    flatten("", sweep, &mut leaves);
    let mut by_path: BTreeMap<String, Axis> = BTreeMap::new();
    for (key, value) in leaves {
        let path = canonical_path(&key)?;
        let Value::Array(values) = value else {
            return Err(SweepError::Key {
                key,
                rule: format!(
                    "must be a list of values (one per grid point), e.g. [0.1, 0.5], got a {}",
                    value.type_str()
                ),
            });
        };
        if values.is_empty() {
            return Err(SweepError::Key {
                key,
                rule: "must list at least one value".to_string(),
            });
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(i) = values[..j].iter().position(|u| u == v) {
                return Err(SweepError::Value {
                    rule: format!("repeats sweep.{key}[{i}] ({})", value_text(v)),
                    key,
                    index: j,
                });
            }
        }
        if let Some(other) = by_path.get(&path) {
            return Err(SweepError::Key {
                rule: format!("sets {path} twice (also as `{}`)", other.key),
                key,
            });
        }
        by_path.insert(path.clone(), Axis { key, path, values });
    }
    Ok(by_path.into_values().collect())
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => flatten(&key, t, out),
            other => out.push((key, other.clone())),
        }
    }
}

/// Check a key's syntax, resolve the `seed` alias and refuse paths that cannot be swept.
fn canonical_path(key: &str) -> Result<String, SweepError> {
    let bad = |rule: &str| SweepError::Key {
        key: key.to_string(),
        rule: rule.to_string(),
    };
    let segment_ok =
        |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !key.split('.').all(segment_ok) {
        return Err(bad(
            "is not a dotted field path (segments of letters, digits and '_')",
        ));
    }
    let path = if key == "seed" { SEED_PATH } else { key };
    match path.split('.').next() {
        Some("sweep") => return Err(bad("cannot be swept")),
        Some("name") => return Err(bad("cannot be swept (cells share the scenario name)")),
        _ => {}
    }
    if path == "methods" {
        return Err(bad(
            "cannot be swept: cells are already crossed with the methods list; sweep a method \
             field as methods.<field>",
        ));
    }
    if path == "methods.method" || path == "methods.label" {
        return Err(bad(
            "cannot be swept: list the methods in [[methods]] instead",
        ));
    }
    Ok(path.to_string())
}

/// Expand a scenario table's `[sweep]` grid into cells (see the module docs for the rules, the
/// count and the order). `default_name` names the scenario when the table has no `name`.
pub fn expand(base: &toml::Table, default_name: &str) -> Result<Vec<Cell>, SweepError> {
    let axes = axes(base)?;
    let mut rest = base.clone();
    rest.remove("sweep");
    // The methods list, defaults included: deserialise without validating (a sweep value may
    // be what makes the base valid).
    let parsed: Scenario = Value::Table(rest.clone())
        .try_into()
        .map_err(|e: toml::de::Error| SweepError::Base(e.message().to_string()))?;
    let methods: Vec<toml::Table> = parsed
        .methods
        .iter()
        .map(toml::Table::try_from)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| SweepError::Base(format!("methods: {e}")))?;
    let labels: Vec<String> = parsed.methods.iter().map(|m| m.label()).collect();
    if methods.is_empty() {
        return Err(SweepError::Base(
            "methods must list at least one method".to_string(),
        ));
    }

    let (method_axes, global_axes): (Vec<&Axis>, Vec<&Axis>) =
        axes.iter().partition(|a| a.method_field().is_some());
    // accepts[m][k]: does method m take method axis k?
    let mut accepts = vec![Vec::with_capacity(method_axes.len()); methods.len()];
    for axis in &method_axes {
        let field = axis.method_field().unwrap_or_default();
        let mut refusal = None;
        for (m, method) in methods.iter().enumerate() {
            let ok = method_accepts(method, field, &axis.values[0]);
            if let Err(rule) = &ok {
                refusal.get_or_insert_with(|| rule.clone());
            }
            accepts[m].push(ok.is_ok());
        }
        if accepts
            .iter()
            .all(|row| !row.last().copied().unwrap_or(false))
        {
            return Err(SweepError::Key {
                key: axis.key.clone(),
                rule: format!(
                    "applies to none of the scenario's methods ({field} {})",
                    refusal.unwrap_or_default()
                ),
            });
        }
    }
    let names = short_names(&axes);
    // cells = Π global |a| · Σ_m Π accepted method |a|, checked before anything is built.
    let count = global_axes
        .iter()
        .try_fold(1u64, |n, a| n.checked_mul(a.values.len() as u64))
        .zip(accepts.iter().try_fold(0u64, |sum, row| {
            let per = method_axes
                .iter()
                .zip(row)
                .filter(|(_, ok)| **ok)
                .try_fold(1u64, |n, (a, _)| n.checked_mul(a.values.len() as u64))?;
            sum.checked_add(per)
        }))
        .and_then(|(g, m)| g.checked_mul(m));
    match count {
        Some(n) if n <= MAX_CELLS => {}
        _ => {
            return Err(SweepError::Base(format!(
                "the [sweep] grid has {} cells, more than the sanity bound of {MAX_CELLS}",
                count.map_or("more than 2^64".to_string(), |n| n.to_string())
            )));
        }
    }

    let mut cells = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let global_lens: Vec<usize> = global_axes.iter().map(|a| a.values.len()).collect();
    for global_point in product(&global_lens) {
        for (m, method) in methods.iter().enumerate() {
            let taken: Vec<&Axis> = method_axes
                .iter()
                .zip(&accepts[m])
                .filter(|(_, ok)| **ok)
                .map(|(a, _)| *a)
                .collect();
            let lens: Vec<usize> = taken.iter().map(|a| a.values.len()).collect();
            for method_point in product(&lens) {
                let mut overrides: Vec<Override> = global_axes
                    .iter()
                    .zip(&global_point)
                    .chain(taken.iter().zip(&method_point))
                    .map(|(a, &i)| Override {
                        path: a.path.clone(),
                        key: a.key.clone(),
                        index: i,
                        value: a.values[i].clone(),
                    })
                    .collect();
                overrides.sort_by(|a, b| a.path.cmp(&b.path));
                let id = cell_id(&overrides, &names, &labels[m]);
                let scenario = cell_scenario(&rest, method, m, &overrides, &id, default_name)?;
                if seen.insert(id.clone(), cells.len()).is_some() {
                    return Err(SweepError::Cell {
                        message: "two cells get this id: make the swept values distinct (e.g. 1 \
                                  and \"1\" both read 1)"
                            .to_string(),
                        id,
                    });
                }
                cells.push(Cell {
                    id,
                    overrides,
                    method: labels[m].clone(),
                    scenario,
                });
            }
        }
    }
    Ok(cells)
}

/// All index tuples of a product of lists with these lengths, the last index varying fastest.
fn product(lens: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new()];
    for &n in lens {
        out = out
            .into_iter()
            .flat_map(|p| {
                (0..n).map(move |i| {
                    let mut q = p.clone();
                    q.push(i);
                    q
                })
            })
            .collect();
    }
    out
}

/// Does this method take `field`? Decided by the scenario's own rules: a one-method scenario
/// with the field set is validated, and only the rule "applies only to ..." on that field means
/// no. Any other failure means yes (the real cell then reports it).
fn method_accepts(
    method: &toml::Table,
    field: &str,
    value: &Value,
) -> std::result::Result<(), String> {
    let mut probe = toml::Table::new();
    if let Some(name) = method.get("method") {
        probe.insert("method".to_string(), name.clone());
    }
    probe.insert(field.to_string(), value.clone());
    let mut table = toml::Table::new();
    table.insert(
        "methods".to_string(),
        Value::Array(vec![Value::Table(probe)]),
    );
    match Scenario::from_table(table, "probe") {
        Err(ScenarioError::Invalid { field: f, rule, .. })
            if f == format!("methods[0].{field}") && rule.starts_with("applies only to") =>
        {
            Err(rule)
        }
        _ => Ok(()),
    }
}

/// Apply one override to a scenario table, creating intermediate tables.
fn set_path(table: &mut toml::Table, o: &Override) -> Result<(), SweepError> {
    let segments: Vec<&str> = o.path.split('.').collect();
    let (last, parents) = segments.split_last().unwrap_or((&"", &[]));
    let mut node = table;
    for (depth, seg) in parents.iter().enumerate() {
        let entry = node
            .entry(seg.to_string())
            .or_insert_with(|| Value::Table(toml::Table::new()));
        let Value::Table(t) = entry else {
            return Err(SweepError::Key {
                key: o.key.clone(),
                rule: format!(
                    "is not a scenario field ({} is not a table)",
                    segments[..=depth].join(".")
                ),
            });
        };
        node = t;
    }
    node.insert(last.to_string(), o.value.clone());
    Ok(())
}

/// Build a cell's table: base overrides, then the one method with its method overrides.
fn cell_table(
    rest: &toml::Table,
    method: &toml::Table,
    overrides: &[Override],
) -> Result<toml::Table, SweepError> {
    let mut table = rest.clone();
    let mut method = method.clone();
    for o in overrides {
        match o.path.strip_prefix("methods.") {
            Some(field) => {
                method.insert(field.to_string(), o.value.clone());
            }
            None => set_path(&mut table, o)?,
        }
    }
    table.insert(
        "methods".to_string(),
        Value::Array(vec![Value::Table(method)]),
    );
    Ok(table)
}

/// Validate a cell, naming the sweep key and index of the value that broke a rule.
fn cell_scenario(
    rest: &toml::Table,
    method: &toml::Table,
    method_index: usize,
    overrides: &[Override],
    id: &str,
    default_name: &str,
) -> Result<Scenario, SweepError> {
    let table = cell_table(rest, method, overrides)?;
    match Scenario::from_table(table, default_name) {
        Ok(s) => Ok(s),
        Err(ScenarioError::Invalid { field, rule, .. }) => {
            let owner = overrides
                .iter()
                .find(|o| match o.path.strip_prefix("methods.") {
                    Some(f) => field == format!("methods[0].{f}"),
                    None => field == o.path,
                });
            Err(match owner {
                Some(o) => SweepError::Value {
                    key: o.key.clone(),
                    index: o.index,
                    rule,
                },
                None => SweepError::Cell {
                    id: id.to_string(),
                    message: format!(
                        "{} {rule}",
                        field.replacen("methods[0]", &format!("methods[{method_index}]"), 1)
                    ),
                },
            })
        }
        Err(ScenarioError::Parse { message, .. }) => {
            let message = last_line(&message);
            // Find the one override that fails to parse on its own.
            for o in overrides {
                let alone = cell_table(rest, method, std::slice::from_ref(o))?;
                if let Err(ScenarioError::Parse { message, .. }) =
                    Scenario::from_table(alone, default_name)
                {
                    let message = last_line(&message);
                    return Err(if message.contains("unknown field") {
                        SweepError::Key {
                            key: o.key.clone(),
                            rule: format!("is not a scenario field ({message})"),
                        }
                    } else {
                        SweepError::Value {
                            key: o.key.clone(),
                            index: o.index,
                            rule: format!("has the wrong type ({message})"),
                        }
                    });
                }
            }
            Err(SweepError::Cell {
                id: id.to_string(),
                message,
            })
        }
        Err(other) => Err(SweepError::Cell {
            id: id.to_string(),
            message: other.to_string(),
        }),
    }
}

/// The toml crate's message without its source excerpt (which points into re-serialised text).
fn last_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_string()
}

/// Key names in ids: the last path segment, or the full path where two axes share it.
fn short_names(axes: &[Axis]) -> HashMap<String, String> {
    let last = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
    let mut count: HashMap<String, usize> = HashMap::new();
    for a in axes {
        *count.entry(last(&a.path)).or_default() += 1;
    }
    axes.iter()
        .map(|a| {
            let short = last(&a.path);
            let name = if count[&short] > 1 {
                a.path.clone()
            } else {
                short
            };
            (a.path.clone(), name)
        })
        .collect()
}

/// Longest readable part kept in one id component before it is shortened with a hash.
const MAX_COMPONENT: usize = 120;

/// `<point>/<method>`, see the module docs.
fn cell_id(overrides: &[Override], names: &HashMap<String, String>, label: &str) -> String {
    let point = if overrides.is_empty() {
        "base".to_string()
    } else {
        overrides
            .iter()
            .map(|o| format!("{}={}", names[&o.path], value_slug(&o.value)))
            .collect::<Vec<_>>()
            .join(",")
    };
    let method = if is_safe(label) && !label.starts_with('.') {
        label.to_string()
    } else {
        hashed_slug(label)
    };
    format!("{}/{}", cap_length(point), cap_length(method))
}

fn is_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
}

/// Unsafe characters as `_` (runs collapsed), then `~` and 8 hex digits of SHA-256(text).
fn hashed_slug(text: &str) -> String {
    let mut clean = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
            clean.push(c);
        } else if !clean.ends_with('_') {
            clean.push('_');
        }
    }
    let clean = clean.trim_matches(['_', '.']);
    format!("{clean}~{}", short_hash(text))
}

/// First 8 hex digits of SHA-256(text): a stable fingerprint (std's hashers may change between
/// releases).
fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

fn cap_length(s: String) -> String {
    if s.len() <= MAX_COMPONENT {
        return s;
    }
    let mut cut = MAX_COMPONENT - 10;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}", &s[..cut], short_hash(&s))
}

/// A value in an id: numbers, booleans and safe strings as themselves (floats in Rust's
/// shortest round-trip form with a `.0` or exponent, so `1` and `1.0` stay distinct), anything
/// else through [`hashed_slug`].
fn value_slug(v: &Value) -> String {
    match v {
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) if is_safe(s) => s.clone(),
        other => hashed_slug(&value_text(other)),
    }
}

/// A value as text in tables: strings bare, floats as in ids (`0.25`, `1.0`, `1e-7`), lists
/// and tables as inline TOML.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Float(f) => format!("{f:?}"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// Sharding

/// The I-th of N disjoint slices of a grid, 0-based (`0 <= index < count`), matching
/// `SLURM_ARRAY_TASK_ID` for `--array=0-(N-1)`. Cell `k` (in expansion order) belongs to shard
/// `k mod N` (round robin), so every shard gets every method and `⌊len/N⌋` or `⌈len/N⌉` cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole grid as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`; requires `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Shard, SweepError> {
        if count == 0 || index >= count {
            return Err(SweepError::Shard(format!(
                "--shard {index}/{count}: needs I/N with N >= 1 and 0 <= I < N (0-based, as \
                 SLURM_ARRAY_TASK_ID for --array=0-(N-1))"
            )));
        }
        Ok(Shard { index, count })
    }
    /// This shard's 0-based index.
    pub fn index(self) -> usize {
        self.index
    }
    /// Number of shards.
    pub fn count(self) -> usize {
        self.count
    }
    /// Whether position `k` of the expansion order belongs to this shard.
    pub fn contains(self, k: usize) -> bool {
        k % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = SweepError;
    /// Parse `I/N`, e.g. `0/4` .. `3/4`.
    fn from_str(s: &str) -> Result<Shard, SweepError> {
        let bad = || {
            SweepError::Shard(format!(
                "--shard must be I/N with 0 <= I < N (0-based, as SLURM_ARRAY_TASK_ID), got '{s}'"
            ))
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let i: usize = i.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The items of one shard, in order: `{ items[k] : k mod N = I }`.
pub fn shard<T>(items: &[T], s: Shard) -> Vec<&T> {
    items
        .iter()
        .enumerate()
        .filter(|(k, _)| s.contains(*k))
        .map(|(_, x)| x)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Resume bookkeeping

/// The folder of a cell's results: `out/cells/<point>/<method>`.
pub fn cell_dir(out: &Path, cell: &Cell) -> PathBuf {
    out.join(CELLS_DIR).join(&cell.id)
}

/// A cell folder is finished iff it holds the `DONE` marker.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(DONE_FILE).is_file()
}

/// A folder holding only a failure record ([`record_failure`]): `FAILED`, `cell.toml`, no `DONE`.
fn is_failure_record(dir: &Path) -> bool {
    if !dir.join(FAILED_FILE).is_file() || is_finished(dir) {
        return false;
    }
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).all(|e| {
            let n = e.file_name();
            n == FAILED_FILE || n == CELL_FILE
        })
    })
}

/// Record that `cell` failed with `message`: the cell folder gets `cell.toml` and `FAILED` (the
/// message), committed like a finished cell (a temporary folder renamed into place) but without
/// `DONE`, so [`merge`] lists the cell as failed and the next invocation runs it again (retry).
/// A finished cell is left alone; an earlier failure record of the cell is replaced.
pub fn record_failure(out: &Path, cell: &Cell, message: &str) -> Result<()> {
    let dir = cell_dir(out, cell);
    if is_finished(&dir) {
        return Ok(());
    }
    let (parent, name) = split_cell_dir(&dir)?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.failed-{}-", std::process::id()))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let record = toml::to_string(&CellRecord::of(cell))
        .map_err(|e| Error::msg(format!("cannot write {CELL_FILE} of {}: {e}", cell.id)))?;
    write_atomic(&tmp.path().join(CELL_FILE), record.as_bytes())?;
    write_atomic(
        &tmp.path().join(FAILED_FILE),
        format!("{message}\n").as_bytes(),
    )?;
    if dir.exists() {
        if is_failure_record(&dir) {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        } else {
            move_aside(&dir, parent, name)?;
        }
    }
    let tmp = tmp.keep();
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    sync_dir(parent);
    Ok(())
}

fn split_cell_dir(dir: &Path) -> Result<(&Path, String)> {
    let parent = dir
        .parent()
        .ok_or_else(|| Error::msg(format!("{}: cell folder has no parent", dir.display())))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((parent, name))
}

/// Rename an unfinished cell folder to `<name>.stale-<pid>-N`.
fn move_aside(dir: &Path, parent: &Path, name: String) -> Result<()> {
    let aside = (0..)
        .map(|k| parent.join(format!("{name}.stale-{}-{k}", std::process::id())))
        .find(|p| !p.exists())
        .unwrap_or_else(|| parent.join(format!("{name}.stale")));
    std::fs::rename(dir, &aside).map_err(|e| Error::io(dir, e))
}

/// Write the `DONE` marker atomically (temporary file, fsync, rename). Call it last.
pub fn mark_finished(dir: &Path) -> Result<()> {
    write_atomic(&dir.join(DONE_FILE), b"done\n")
}

/// What [`run_cell_atomically`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellRun {
    /// The closure ran and the cell is now finished.
    Ran,
    /// The cell was already finished; nothing ran.
    Skipped,
}

/// The identity written to `cell.toml` in every finished cell; [`merge`] reads it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellRecord {
    /// The cell id, equal to the folder's path under `cells/`.
    pub id: String,
    /// The method label.
    pub method: String,
    /// Canonical path → value of every override.
    pub overrides: toml::Table,
}

impl CellRecord {
    fn of(cell: &Cell) -> CellRecord {
        CellRecord {
            id: cell.id.clone(),
            method: cell.method.clone(),
            overrides: cell
                .overrides
                .iter()
                .map(|o| (o.path.clone(), o.value.clone()))
                .collect(),
        }
    }
}

/// Run a cell unless it is finished, so that a killed run never leaves a folder that looks
/// finished:
/// 1. a finished `cell_dir` (holding `DONE`) is left alone: `Skipped`;
/// 2. `run(tmp)` writes into a fresh `<method>.tmp-<pid>-XXXX` beside the final folder;
/// 3. `cell.toml` and then `DONE` are written into it;
/// 4. an unfinished folder at the final path (a killed older run) is renamed aside to
///    `<method>.stale-<pid>-N`, and the temporary folder is renamed into place.
///
/// The rename is the commit: before it the final path holds no `DONE`. If `run` fails, its
/// temporary folder stays (unread) for inspection and the error is returned.
pub fn run_cell_atomically<F>(out: &Path, cell: &Cell, run: F) -> Result<CellRun>
where
    F: FnOnce(&Path) -> Result<()>,
{
    let dir = cell_dir(out, cell);
    if is_finished(&dir) {
        return Ok(CellRun::Skipped);
    }
    let (parent, name) = split_cell_dir(&dir)?;
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.tmp-{}-", std::process::id()))
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?
        .keep();
    run(&tmp)?;
    let record = toml::to_string(&CellRecord::of(cell))
        .map_err(|e| Error::msg(format!("cannot write {CELL_FILE} of {}: {e}", cell.id)))?;
    write_atomic(&tmp.join(CELL_FILE), record.as_bytes())?;
    mark_finished(&tmp)?;
    if dir.exists() {
        if is_finished(&dir) {
            // Another process finished this cell meanwhile; keep its result.
            return Ok(CellRun::Skipped);
        }
        if is_failure_record(&dir) {
            // An earlier failure of this cell, now retried successfully.
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        } else {
            move_aside(&dir, parent, name)?;
        }
    }
    std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
    sync_dir(parent);
    Ok(CellRun::Ran)
}

/// Best-effort fsync of a folder so a rename inside it survives a crash (not all platforms
/// allow opening a folder; a failure only weakens durability, never correctness of resume).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

// ---------------------------------------------------------------------------------------------
// Merging

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

/// Every failed cell under `out/cells` (a failure record, see [`record_failure`]), sorted by id.
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
/// cell ([`record_failure`]) adds one row with `status = failed` and its message in an `error`
/// column (added only when a cell failed), blank elsewhere. Rows are
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
fn cmp_fields(a: &[String], b: &[String]) -> Ordering {
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

fn csv_bytes(header: Vec<String>, rows: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>> {
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

// ---------------------------------------------------------------------------------------------
// Summary over seeds

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

// ---------------------------------------------------------------------------------------------
// Cost estimate

/// Relative cost of one cell for `--dry-run`, in multiply-adds of the policy backbone (a
/// proxy: the sweep command calibrates seconds per unit on the machine). For a cell's scenario
/// (its first method is the one that runs):
/// ```text
/// L      = prompt_len + 1 + response_len                 tokens per sequence (with separator)
/// d, f   = model.d_model, model.d_ff;   n = model.layers;   V = world.vocab + 1
/// F      = L · ( n (4 d² + 2 d f + 2 L d) + d V )         one forward pass of one sequence:
///                                                        projections, feed-forward, attention
///                                                        scores and values, output head
/// S      = method.steps, else ⌈epochs · train_pairs / B⌉ when train.epochs is set, else train.steps
/// B      = train.batch_size
/// r      = 0 for SimPO (reference-free), else 1           reference forward passes
/// warmup = model.warmup_steps · B · 3F                   supervised fit, one sequence, fwd + bwd
/// train  = S · B · (2 · 3F + 2 r F)                      chosen and rejected, fwd + bwd ≈ 3
///                                                        forwards, plus the reference forwards
/// eval   = (⌊S / eval_every⌋ + 1) · eval_pairs · (2 + 2r) F
/// cost   = warmup + train + eval
/// ```
/// The code's posterior, prior and codebook (O(K d) per pair) are left out: they are small
/// beside the backbone for every K this crate runs. Range: > 0.
pub fn relative_cost(s: &Scenario) -> f64 {
    let w = s.world();
    let l = (w.prompt_len + 1 + w.response_len) as f64;
    let d = s.model.d_model as f64;
    let f = s.model.d_ff() as f64;
    let n = s.model.layers as f64;
    let v = (w.vocab + 1) as f64;
    let forward = l * (n * (4.0 * d * d + 2.0 * d * f + 2.0 * l * d) + d * v);
    let b = s.train.batch_size as f64;
    let method = s.methods.first();
    let steps = match (method.and_then(|m| m.steps), s.train.epochs) {
        (Some(steps), _) => steps,
        (None, Some(epochs)) => epochs
            .saturating_mul(s.data.train_pairs)
            .div_ceil(s.train.batch_size.max(1)),
        (None, None) => s.train.steps,
    };
    let simpo = method
        .and_then(|m| MethodName::parse(&m.method))
        .is_some_and(|m| m.objective == ObjectiveKind::Simpo);
    let reference = if simpo { 0.0 } else { 1.0 };
    let warmup = s.model.warmup_steps as f64 * b * 3.0 * forward;
    let train = steps as f64 * b * (6.0 * forward + 2.0 * reference * forward);
    let evals = (steps / s.train.eval_every + 1) as f64;
    let eval = evals * s.data.eval_pairs as f64 * (2.0 + 2.0 * reference) * forward;
    warmup + train + eval
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn nested_and_quoted_keys_are_one_path_and_seed_is_an_alias() {
        let a = axes(&table(
            "[sweep]\nworld.distance = [0.5]\n\"noise.flip_rate\" = [0.1]\nseed = [1]\n",
        ))
        .unwrap();
        let paths: Vec<&str> = a.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(paths, ["data.seed", "noise.flip_rate", "world.distance"]);
        assert_eq!(a[0].key, "seed");
        let e = axes(&table("[sweep]\nseed = [1]\ndata.seed = [2]\n")).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn value_slugs_are_safe_and_distinguish_int_from_float() {
        assert_eq!(value_slug(&Value::Integer(1)), "1");
        assert_eq!(value_slug(&Value::Float(1.0)), "1.0");
        assert_eq!(value_slug(&Value::Float(1e-7)), "1e-7");
        assert_eq!(value_slug(&Value::String("cosine".into())), "cosine");
        let list = value_slug(&toml::from_str::<toml::Table>("x = [10, 1]").unwrap()["x"]);
        // "[10, 1]" with unsafe runs as '_' and trimmed, then the hash of "[10, 1]".
        assert_eq!(list, format!("10_1~{}", short_hash("[10, 1]")));
        assert!(is_safe(&list.replace('~', "")));
    }

    #[test]
    fn short_hash_is_sha256_prefix() {
        // SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2, appendix B.1).
        assert_eq!(short_hash("abc"), "ba7816bf");
    }

    #[test]
    fn long_components_are_capped_with_a_hash() {
        let long = "a".repeat(300);
        let capped = cap_length(long.clone());
        assert_eq!(capped.len(), MAX_COMPONENT - 10 + 1 + 8);
        assert!(capped.ends_with(&short_hash(&long)));
    }

    #[test]
    fn product_varies_last_index_fastest() {
        assert_eq!(
            product(&[2, 3]),
            vec![
                vec![0, 0],
                vec![0, 1],
                vec![0, 2],
                vec![1, 0],
                vec![1, 1],
                vec![1, 2]
            ]
        );
        assert_eq!(product(&[]), vec![Vec::<usize>::new()]);
        assert!(product(&[2, 0]).is_empty());
    }

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
