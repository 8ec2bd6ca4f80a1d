//! `lpc-bench sweep`: run the cells of a scenario's `[sweep]` grid, resumably, N at a time, one
//! shard of the grid per machine; then merge what is finished.
//!
//! Grid expansion, cell folders, the atomic commit of a cell, sharding and merging belong to
//! [`crate::sweep`]; one cell is one `run` ([`run_scenario`]) into a temporary folder. This
//! module only schedules cells, reports progress and failures, and estimates time for
//! `--dry-run`.
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

use crate::cli::SweepArgs;
use crate::commands::run::{RunOptions, run_scenario};
use crate::sweep::{self, Cell, CellRun, Shard};
use crate::{Error, Result};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Fixed seconds per cell in the `--dry-run` estimate: world generation, scoring, sampling
/// and writing, which [`sweep::relative_cost`] leaves out. See
/// [`CALIBRATION_SECONDS_PER_UNIT`] for the fit.
pub const CALIBRATION_OVERHEAD_S: f64 = 1.0;

/// Seconds per unit of [`sweep::relative_cost`] in the `--dry-run` estimate: CPU seconds of one
/// cell on one thread (`--threads-per-cell 1`), i.e. its wall time on an idle core. Measured on
/// the development machine (2-core x86-64 VM, release build, flex backend) as user CPU time of
/// `lpc-bench sweep` over cells of the two-opposed world (V = 16, lengths 6, T = 2), and fitted
/// by eye through the mid and large cells:
/// ```text
/// seconds ≈ CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT · cost
/// cell                                                      cost      measured   estimate
/// scenarios/smoke.toml (d 32, 1 layer, 400 pairs, 60 steps) 2.6e9     0.3 s      1.1 s
/// d 64, 1 layer, 2000/500 pairs, 200 steps (ipo, lpc-simpo) 7.8e10    4.6 s      4.4 s
/// d 64, 1 layer, 2000/500 pairs, 250 steps (dpo, lpc-dpo)   1.1e11    6.5 s      6.0 s
/// d 64, 2 layers, 8000/2000 pairs, 500 steps (dpo, lpc-dpo) 5.4e11    24.5 s     24.6 s
/// ```
/// Not modelled: the steering table samples 200 prompts per code, so an `lpc-*` cell with
/// K = 256 codes takes about 6 s (1 layer) to 12 s (2 layers) more than estimated. A guide for
/// choosing `--jobs`, shards and SLURM time limits; a loaded machine is slower.
pub const CALIBRATION_SECONDS_PER_UNIT: f64 = 4.4e-11;

/// Estimated seconds of one cell of relative cost `cost`:
/// ```text
/// seconds = CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT · cost
/// ```
pub fn estimated_seconds(cost: f64) -> f64 {
    CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT * cost
}

/// A duration for people: `8.2s`, `3m12s`, `2h05m`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        let minutes = (s / 60.0).round() as u64;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    }
}

/// `lpc-bench sweep`.
pub fn run(args: &SweepArgs) -> Result<()> {
    let mut cells = sweep::load(&args.scenario)?;
    if let Some(device) = &args.device {
        crate::device::DeviceChoice::parse(device)?;
        for c in &mut cells {
            c.scenario.train.device = device.clone();
        }
    }
    let shard = args.shard.unwrap_or(Shard::ALL);
    let mine: Vec<&Cell> = sweep::shard(&cells, shard);
    let name = cells
        .first()
        .map(|c| c.scenario.name.clone())
        .unwrap_or_default();
    if args.dry_run {
        dry_run(&name, cells.len(), shard, &mine, args);
        return Ok(());
    }
    let out = args
        .out
        .as_deref()
        .ok_or_else(|| Error::msg("--out is required unless --dry-run"))?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let todo: Vec<&Cell> = mine
        .iter()
        .copied()
        .filter(|c| !sweep::is_finished(&sweep::cell_dir(out, c)))
        .collect();
    let jobs = args.jobs.get().min(todo.len().max(1));
    let threads = args.threads_per_cell.unwrap_or_else(|| {
        match cells.first().map(|c| c.scenario.train.threads) {
            Some(t) if t > 0 => t,
            _ if jobs > 1 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / jobs).max(1)
            }
            _ => 0,
        }
    });
    if !args.quiet {
        let threads_text = if threads == 0 {
            "sharing all cores".to_string()
        } else {
            format!("{threads} thread(s) each")
        };
        println!(
            "sweep {name}: {} cells in the grid; shard {shard}: {} cells, {} finished, {} to run \
             ({jobs} at a time, {threads_text})",
            cells.len(),
            mine.len(),
            mine.len() - todo.len(),
            todo.len(),
        );
    }
    if jobs == 1 {
        crate::device::set_cpu_threads(threads);
    }
    let outcome = run_cells(out, &todo, jobs, threads, args.quiet);

    let table = sweep::merge(out)?;
    let merged = sweep::write_merged(out, &table)?;
    sweep::write_summary(out, &sweep::summarise(&table))?;
    let finished_here = mine
        .iter()
        .filter(|c| sweep::is_finished(&sweep::cell_dir(out, c)))
        .count();
    println!(
        "sweep {name}: shard {shard}: {finished_here} of {} cells finished; merged {} rows into {}",
        mine.len(),
        table.rows.len(),
        merged.display()
    );
    if !outcome.diverged.is_empty() {
        println!(
            "diverged (kept, with status = diverged in metrics.csv): {}",
            outcome.diverged.join(", ")
        );
    }
    if outcome.failed.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = outcome
        .failed
        .iter()
        .map(|(id, e)| format!("  {id}: {e}"))
        .collect();
    Err(Error::msg(format!(
        "{} of {} cells failed (marked `failed` in the merged table; rerun the same command to \
         retry them; their temporary folders are kept for inspection):\n{}",
        outcome.failed.len(),
        todo.len(),
        list.join("\n")
    )))
}

/// What running the cells did.
#[derive(Debug, Default)]
struct Outcome {
    /// `(cell id, error)` of cells that failed.
    failed: Vec<(String, String)>,
    /// Ids of committed cells with a diverged method.
    diverged: Vec<String>,
}

/// Run `todo` with `jobs` workers pulling from a shared queue (the next index), printing one
/// line per finished cell: in this process when `jobs` is 1, else each cell in a child process
/// with `threads` threads (see the module docs).
fn run_cells(out: &Path, todo: &[&Cell], jobs: usize, threads: usize, quiet: bool) -> Outcome {
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
                                run_scenario(&cell.scenario, tmp, &opts)?.diverged
                            } else {
                                run_in_child(cell, tmp, threads)?
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
/// returns the labels of diverged methods (from the `status` column of its `metrics.csv`).
fn run_in_child(cell: &Cell, tmp: &Path, threads: usize) -> Result<Vec<String>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::msg(format!("cannot find the lpc-bench executable: {e}")))?;
    let mut file = tempfile::Builder::new()
        .prefix("lpc-bench-cell-")
        .suffix(".toml")
        .tempfile()
        .map_err(|e| Error::msg(format!("cannot write a cell scenario file: {e}")))?;
    std::io::Write::write_all(&mut file, cell.scenario.to_toml().as_bytes())
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
    let metrics = crate::report::folder::read_table(&tmp.join(sweep::METRICS_FILE))?;
    let (Some(m), Some(st)) = (
        metrics.columns.iter().position(|c| c == "method"),
        metrics.columns.iter().position(|c| c == "status"),
    ) else {
        return Ok(Vec::new());
    };
    Ok(metrics
        .rows
        .iter()
        .filter(|r| r[st].starts_with("diverged"))
        .map(|r| r[m].clone())
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

/// Print this shard's cells with their cost and estimated time; reads `--out` if given (to mark
/// finished cells) and writes nothing.
fn dry_run(name: &str, grid: usize, shard: Shard, mine: &[&Cell], args: &SweepArgs) {
    let finished = |c: &Cell| {
        args.out
            .as_deref()
            .is_some_and(|out| sweep::is_finished(&sweep::cell_dir(out, c)))
    };
    println!(
        "sweep {name}: {grid} cells in the grid; shard {shard}: {} cells",
        mine.len()
    );
    let width = mine.iter().map(|c| c.id.len()).max().unwrap_or(4).max(4);
    println!(
        "{:>5}  {:<width$}  {:>9}  {:>8}",
        "#", "cell", "cost", "est."
    );
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
        println!("{:>5}  {:<width$}  {:>9.3e}  {:>8}", i + 1, c.id, cost, est);
    }
    if !too_big.is_empty() {
        println!(
            "{} cell(s) exceed this machine's memory budget and would fail at once (recorded as \
             failed; the other cells run):\n{}",
            too_big.len(),
            too_big.join("\n")
        );
    }
    let jobs = args.jobs.get();
    println!(
        "to run: {n_left} cells, cost {cost_left:.3e}, estimated {} of one thread \
         (≈ {} wall with --jobs {jobs} on ≥ {jobs} free cores)",
        format_duration(seconds_left),
        format_duration(seconds_left / jobs.min(n_left.max(1)) as f64),
    );
    println!(
        "estimate = {CALIBRATION_OVERHEAD_S} s + {CALIBRATION_SECONDS_PER_UNIT:e} s × cost per \
         cell on one idle core, calibrated on a 2-core x86-64 VM \
         (see commands::sweep::CALIBRATION_SECONDS_PER_UNIT)"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(8.24), "8.2s");
        // 192 s = 3 min 12 s.
        assert_eq!(format_duration(192.0), "3m12s");
        // 7500 s = 125 min = 2 h 05 min.
        assert_eq!(format_duration(7500.0), "2h05m");
        assert_eq!(format_duration(-1.0), "0.0s");
    }

    #[test]
    fn the_estimate_is_affine_in_cost() {
        // The formula of `estimated_seconds`: overhead at zero cost, slope per unit.
        assert_eq!(estimated_seconds(0.0), CALIBRATION_OVERHEAD_S);
        let (a, b) = (estimated_seconds(1e9), estimated_seconds(3e9));
        assert!((b - a - 2e9 * CALIBRATION_SECONDS_PER_UNIT).abs() < 1e-12);
    }
}
