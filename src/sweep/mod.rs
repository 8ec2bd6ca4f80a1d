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

mod cost;
mod grid;
mod ids;
mod merge;
mod resume;
mod shard;
mod summary;

pub use cost::relative_cost;
pub use grid::{Axis, Cell, Override, axes, expand, load, load_text};
pub use ids::value_text;
pub use merge::{
    FinishedCell, MergedRow, MergedTable, RESERVED_COLUMNS, failed_cells, finished_cells, merge,
    write_merged,
};
pub use resume::{
    CellRecord, CellRun, cell_dir, is_finished, mark_finished, record_failure, run_cell_atomically,
};
pub use shard::{Shard, shard};
pub use summary::{ColumnStat, Summary, SummaryRow, summarise, without_seed, write_summary};

use crate::Error;

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
