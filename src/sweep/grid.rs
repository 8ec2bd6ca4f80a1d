//! Grid expansion: the `[sweep]` axes of a scenario table, their product, and each cell's
//! validated scenario (see the module docs of [`crate::sweep`]).

use super::ids::{cell_id, short_names, value_text};
use super::{MAX_CELLS, SEED_PATH, SweepError};
use crate::scenario::{CheckedScenario, Scenario, ScenarioError};
use crate::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use toml::Value;

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
    pub scenario: CheckedScenario,
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
) -> Result<CheckedScenario, SweepError> {
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
pub(super) fn last_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
        .to_string()
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
}
