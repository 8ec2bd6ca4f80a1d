//! Resume bookkeeping: a cell's folder, its `DONE` marker, failure records, and running a cell
//! into a temporary folder renamed into place, so an interrupted sweep resumes where it stopped.

use super::grid::Cell;
use super::{CELL_FILE, CELLS_DIR, DONE_FILE, FAILED_FILE};
use crate::results::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder of a cell's results: `out/cells/<point>/<method>`.
pub fn cell_dir(out: &Path, cell: &Cell) -> PathBuf {
    out.join(CELLS_DIR).join(&cell.id)
}

/// A cell folder is finished iff it holds the `DONE` marker.
pub fn is_finished(dir: &Path) -> bool {
    dir.join(DONE_FILE).is_file()
}

/// A folder holding only a failure record ([`record_failure`](super::record_failure)): `FAILED`,
/// `cell.toml`, no `DONE`.
pub(super) fn is_failure_record(dir: &Path) -> bool {
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
/// `DONE`, so [`merge`](fn@super::merge) lists the cell as failed and the next invocation runs it
/// again (retry).
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

/// The identity written to `cell.toml` in every finished cell; [`merge`](fn@super::merge) reads it
/// back.
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
