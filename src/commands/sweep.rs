//! `lpc-bench sweep`: run the cells of a scenario's `[sweep]` grid, resumably, N at a time, one
//! shard of the grid per machine; then merge what is finished. How cells run (jobs, threads,
//! failures) is described in [`crate::experiment::sweep`].

use crate::cli::SweepArgs;
use crate::experiment::sweep::{dry_run_text, run_cells};
use crate::sweep::{self, Cell, Shard};
use crate::{Error, Result};

/// `lpc-bench sweep`.
pub fn run(args: &SweepArgs) -> Result<()> {
    let cells = sweep::load(&args.scenario)?;
    if let Some(device) = &args.device {
        crate::device::DeviceChoice::parse(device)?;
    }
    let shard = args.shard.unwrap_or(Shard::ALL);
    let mine: Vec<&Cell> = sweep::shard(&cells, shard);
    let name = cells
        .first()
        .map(|c| c.scenario.name.clone())
        .unwrap_or_default();
    if args.dry_run {
        let out = args.out.as_deref();
        println!(
            "{}",
            dry_run_text(&name, cells.len(), shard, &mine, out, args.jobs.get())
        );
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
    let outcome = run_cells(
        out,
        &todo,
        args.device.as_deref(),
        jobs,
        threads,
        args.quiet,
    );

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
