//! What `lpc-bench sweep` does beyond reading its arguments: run the cells of a shard of a
//! scenario's `[sweep]` grid, resumably, N at a time, and describe a shard for `--dry-run`.
//!
//! Grid expansion, cell folders, the atomic commit of a cell, sharding and merging belong to
//! [`crate::sweep`]; one cell is one `run` ([`run_scenario`]) into a temporary folder. This
//! module only schedules cells, reports progress and failures, and estimates time for
//! `--dry-run`; the command merges what is finished.
//!
//! # Jobs and threads
//! With `--jobs 1` cells run one after another in this process, on a tensor-backend pool of
//! `threads_per_cell` threads. With `--jobs N > 1`, each cell runs in a child process of this
//! executable (`lpc-bench run CELL.toml --out TMP --threads T --quiet`, the cell's scenario
//! written as TOML, which loads back equal): burn keeps process-global state (the RNG behind
//! `B::seed` parameter initialisation and dropout, rayon's global pool), so two cells in one
//! process would interleave draws and give results that depend on timing. In a child each cell
//! has its own RNG and a pool of exactly `T` threads. Results do not depend on `--jobs` or the
//! thread count (the interrupt-and-resume test compares a `--jobs 2` run with a `--jobs 1` one),
//! so a sweep may be resumed with other settings. `threads_per_cell` defaults to the scenario's
//! `train.threads`, or, when that is 0 (all cores), to the cores divided by the jobs.
//!
//! A child outlives a sweep killed with SIGKILL by at most its cell (interrupting with Ctrl-C
//! stops the whole process group); its temporary folder is never committed.
//!
//! # Failures
//! No cell can take the sweep down: every cell's scenario is checked against the resource
//! estimate (`plan`) before it starts (a cell too large for the machine fails at once, before
//! any allocation); an error or a panic in this process is caught; with `--jobs N > 1` a cell
//! that aborts (or is killed, e.g. for memory) takes only its child process with it. A failed
//! cell is reported with its error and the sweep goes on; it is recorded as failed
//! (`sweep::record_failure`: `cells/<point>/<method>/` holding `cell.toml` and `FAILED` with the
//! message), and the merged table has a row for it with `status = failed` and the message in an
//! `error` column. Its temporary folder stays for inspection. **Resume retries failed cells**:
//! the next invocation runs them again (a cell refused by the estimate fails again at once,
//! costing nothing), replacing the failure record by the result when it succeeds. The command
//! exits non-zero after merging, naming every failed cell. A cell whose training diverged is a
//! result, not a failure: it is committed with `status = diverged` in its `metrics.csv` and
//! listed at the end.

use crate::experiment::{RunOptions, run_scenario};
use crate::plan::{
    CALIBRATION_OVERHEAD_S, CALIBRATION_SECONDS_PER_UNIT, estimated_seconds, format_duration,
};
use crate::results::metrics_row::{MetricsRow, read_metrics};
use crate::sweep::{self, Cell, CellRun, Shard};
use crate::{Error, Result};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// What running the cells did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `(cell id, error)` of cells that failed.
    pub failed: Vec<(String, String)>,
    /// Ids of committed cells with a diverged method.
    pub diverged: Vec<String>,
}

/// Run `todo` with `jobs` workers pulling from a shared queue (the next index), printing one
/// line per finished cell: in this process when `jobs` is 1, else each cell in a child process
/// with `threads` threads (see the module docs). `device` (`sweep --device`) replaces every
/// cell's `train.device`; a cell it breaks a rule of fails like any other.
pub fn run_cells(
    out: &Path,
    todo: &[&Cell],
    device: Option<&str>,
    jobs: usize,
    threads: usize,
    quiet: bool,
) -> Outcome {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let outcome = Mutex::new(Outcome::default());
    let total = todo.len();
    let opts = RunOptions {
        force: false,
        quiet: true,
        skip_invalid: false,
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(cell) = todo.get(i) else { break };
                    let start = Instant::now();
                    let mut diverged = Vec::new();
                    let result = catch_unwind(AssertUnwindSafe(|| {
                        sweep::run_cell_atomically(out, cell, |tmp| {
                            diverged = if jobs == 1 {
                                let scenario = match device {
                                    Some(d) => cell
                                        .scenario
                                        .clone()
                                        .amend(|s| s.train.device = d.to_string())?,
                                    None => cell.scenario.clone(),
                                };
                                run_scenario(&scenario, tmp, &opts)?.diverged
                            } else {
                                run_in_child(cell, device, tmp, threads)?
                            };
                            Ok(())
                        })
                    }))
                    .unwrap_or_else(|panic| Err(Error::msg(panic_message(&*panic))));
                    let seconds = format_duration(start.elapsed().as_secs_f64());
                    let k = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let mut o = outcome.lock().unwrap_or_else(|p| p.into_inner());
                    match result {
                        Ok(run) => {
                            if !quiet {
                                let note = match run {
                                    CellRun::Skipped => " (finished meanwhile by another process)",
                                    CellRun::Ran if !diverged.is_empty() => " (diverged)",
                                    CellRun::Ran => "",
                                };
                                println!("[{k}/{total}] {} {seconds}{note}", cell.id);
                            }
                            if !diverged.is_empty() {
                                o.diverged.push(cell.id.clone());
                            }
                        }
                        Err(e) => {
                            eprintln!("[{k}/{total}] {} FAILED after {seconds}: {e}", cell.id);
                            if let Err(r) = sweep::record_failure(out, cell, &e.to_string()) {
                                eprintln!("cannot record the failure of {}: {r}", cell.id);
                            }
                            o.failed.push((cell.id.clone(), e.to_string()));
                        }
                    }
                }
            });
        }
    });
    let mut o = outcome.into_inner().unwrap_or_else(|p| p.into_inner());
    o.failed.sort();
    o.diverged.sort();
    o
}

/// Run one cell as `lpc-bench run` in a child process of this executable, writing into `tmp`;
/// returns the labels of diverged methods (from the `status` of its `metrics.csv` rows).
fn run_in_child(
    cell: &Cell,
    device: Option<&str>,
    tmp: &Path,
    threads: usize,
) -> Result<Vec<String>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::msg(format!("cannot find the lpc-bench executable: {e}")))?;
    let mut file = tempfile::Builder::new()
        .prefix("lpc-bench-cell-")
        .suffix(".toml")
        .tempfile()
        .map_err(|e| Error::msg(format!("cannot write a cell scenario file: {e}")))?;
    // The child checks the file as it loads it (with `device` in place).
    let mut scenario = cell.scenario.clone().into_inner();
    if let Some(d) = device {
        scenario.train.device = d.to_string();
    }
    std::io::Write::write_all(&mut file, scenario.to_toml()?.as_bytes())
        .map_err(|e| Error::io(file.path(), e))?;
    let output = std::process::Command::new(&exe)
        .arg("run")
        .arg(file.path())
        .arg("--out")
        .arg(tmp)
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::msg(format!("cannot start {}: {e}", exe.display())))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        tail.reverse();
        return Err(Error::msg(format!(
            "`lpc-bench run` exited with {}: {}",
            output.status,
            tail.join(" | ")
        )));
    }
    let metrics = read_metrics(&tmp.join(sweep::METRICS_FILE))?;
    Ok(metrics
        .into_iter()
        .filter(MetricsRow::diverged)
        .map(|r| r.run.method)
        .collect())
}

/// The text of a caught panic.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    format!("panicked: {text}")
}

/// The `--dry-run` text of a shard: its cells with their cost and estimated time (one thread,
/// and wall time with `jobs` workers). Reads `out` if given (to mark finished cells) and writes
/// nothing.
pub fn dry_run_text(
    name: &str,
    grid: usize,
    shard: Shard,
    mine: &[&Cell],
    out: Option<&Path>,
    jobs: usize,
) -> String {
    let finished = |c: &Cell| out.is_some_and(|out| sweep::is_finished(&sweep::cell_dir(out, c)));
    let mut lines = Vec::new();
    lines.push(format!(
        "sweep {name}: {grid} cells in the grid; shard {shard}: {} cells",
        mine.len()
    ));
    let width = mine.iter().map(|c| c.id.len()).max().unwrap_or(4).max(4);
    lines.push(format!(
        "{:>5}  {:<width$}  {:>9}  {:>8}",
        "#", "cell", "cost", "est."
    ));
    let (mut cost_left, mut seconds_left, mut n_left) = (0.0, 0.0, 0usize);
    let budget = crate::plan::memory_budget().ok();
    let mut too_big = Vec::new();
    for (i, c) in mine.iter().enumerate() {
        let cost = sweep::relative_cost(&c.scenario);
        let seconds = estimated_seconds(cost);
        let refused = budget.as_ref().and_then(|b| {
            crate::plan::check_fits(&c.scenario.name, &crate::plan::estimate(&c.scenario), b).err()
        });
        let est = if finished(c) {
            "done".to_string()
        } else if let Some(e) = refused {
            too_big.push(format!("  {}: {e}", c.id));
            "too big".to_string()
        } else {
            cost_left += cost;
            seconds_left += seconds;
            n_left += 1;
            format_duration(seconds)
        };
        lines.push(format!(
            "{:>5}  {:<width$}  {:>9.3e}  {:>8}",
            i + 1,
            c.id,
            cost,
            est
        ));
    }
    if !too_big.is_empty() {
        lines.push(format!(
            "{} cell(s) exceed this machine's memory budget and would fail at once (recorded as \
             failed; the other cells run):\n{}",
            too_big.len(),
            too_big.join("\n")
        ));
    }
    lines.push(format!(
        "to run: {n_left} cells, cost {cost_left:.3e}, estimated {} of one thread \
         (≈ {} wall with --jobs {jobs} on ≥ {jobs} free cores)",
        format_duration(seconds_left),
        format_duration(seconds_left / jobs.min(n_left.max(1)) as f64),
    ));
    lines.push(format!(
        "estimate = {CALIBRATION_OVERHEAD_S} s + {CALIBRATION_SECONDS_PER_UNIT:e} s × cost per \
         cell on one idle core, calibrated on a 2-core x86-64 VM \
         (see plan::CALIBRATION_SECONDS_PER_UNIT)"
    ));
    lines.join("\n")
}
