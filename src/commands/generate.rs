//! `lpc-bench generate`: write a synthetic world's pairs, parameters and statistics (see
//! [`crate::experiment::generate`] for the files).

use crate::Result;
use crate::cli::GenerateArgs;
use crate::experiment::generate::{summary_table, write_dataset};
use crate::scenario::Scenario;

/// Run the subcommand: load and validate the scenario (nothing is created before it passes),
/// write the outputs, print the summary table.
pub fn run(args: &GenerateArgs) -> Result<()> {
    let scenario = Scenario::load(&args.scenario)?.amend(|scenario| {
        if let Some(seed) = args.seed {
            scenario.data.seed = seed;
        }
    })?;
    let stats = write_dataset(&scenario, &args.out, args.force)?;
    if !args.quiet {
        print!("{}", summary_table(&scenario, &args.out, &stats));
    }
    Ok(())
}
