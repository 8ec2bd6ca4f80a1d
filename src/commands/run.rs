//! `lpc-bench run`: load a scenario, apply the command-line overrides and run it with
//! [`run_scenario`] (or, with `--dry-run`, print its plan and stop).

use crate::experiment::{RUN_FILES, RunOptions, checkpoint_stems, plan_text, run_scenario};
use crate::scenario::{CheckedScenario, Scenario};
use crate::{Error, Result};
use std::path::Path;

/// `lpc-bench run`: load the scenario, apply command-line overrides, run it (or, with
/// `--dry-run`, print its plan and resource estimate and stop).
pub fn run(args: &crate::cli::RunArgs) -> Result<()> {
    let scenario = Scenario::load(&args.scenario)?;
    if scenario.sweep.is_some() {
        // Validate the grid first, so a bad [sweep] table is reported as such.
        let cells = crate::sweep::load(&args.scenario)?;
        let path = args.scenario.display();
        return Err(Error::msg(format!(
            "{path}: this file is a sweep (its [sweep] grid has {} cells); `run` trains one \
             scenario. Run the grid with `lpc-bench sweep {path} --out DIR` (add --dry-run to list \
             the cells), or remove the [sweep] table",
            cells.len()
        )));
    }
    let scenario = scenario.amend(|scenario| {
        if let Some(d) = &args.device {
            scenario.train.device = d.clone();
        }
        if let Some(t) = args.threads {
            scenario.train.threads = t;
        }
        if let Some(f) = args.fusion {
            scenario.train.fusion = f;
        }
        if let Some(s) = args.seed {
            scenario.data.seed = s;
        }
    })?;
    if args.dry_run {
        return dry_run(&scenario, args.out.as_deref());
    }
    let out = args
        .out
        .as_deref()
        .ok_or_else(|| Error::msg("--out is required unless --dry-run"))?;
    crate::device::set_cpu_threads(scenario.train.threads);
    let opts = RunOptions {
        force: args.force,
        quiet: args.quiet,
        skip_invalid: args.skip_invalid,
    };
    let outcome = run_scenario(&scenario, out, &opts)?;
    if !args.quiet {
        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
        println!("{summary}");
    }
    if !outcome.diverged.is_empty() {
        eprintln!("diverged: {}", outcome.diverged.join(", "));
    }
    Ok(())
}

/// `run --dry-run`: print the plan and, with `--out`, what the run would do there; train and
/// write nothing.
fn dry_run(scenario: &CheckedScenario, out: Option<&Path>) -> Result<()> {
    let budget = crate::plan::memory_budget()?;
    let text = plan_text(scenario, &budget)?;
    println!("{text}");
    if let Some(out) = out {
        let mut owned: Vec<String> = RUN_FILES
            .iter()
            .filter(|f| out.join(f).exists())
            .map(|f| f.to_string())
            .collect();
        owned.extend(crate::checkpoint::existing(out));
        let stale = crate::checkpoint::stale(out, &checkpoint_stems(scenario));
        if owned.is_empty() {
            println!("  out         {}: no results there yet", out.display());
        } else {
            println!(
                "  out         {}: holds {} (a run needs --force to replace them{})",
                out.display(),
                owned.join(", "),
                if stale.is_empty() {
                    String::new()
                } else {
                    format!("; --force removes the stale {}", stale.join(", "))
                }
            );
        }
    }
    println!("dry run: nothing trained, nothing written");
    Ok(())
}
