//! `lpc-bench inspect`: load a scenario's data and print what a run would train on (the load
//! table, group sizes on each side of the split, the reference baselines), training nothing.
//! Real data fails as `run` would when a file drops too many pairs, after printing the table.

use crate::Result;
use crate::baselines::RealReference;
use crate::cli::InspectArgs;
use crate::data::real::{CHECK_RECORDS, check_files, load_real_data_unchecked};
use crate::scenario::Scenario;
use std::path::Path;

/// Load and describe the data of `args.scenario`.
pub fn run(args: &InspectArgs) -> Result<()> {
    let clock = std::time::Instant::now();
    let scenario = Scenario::load(&args.scenario)?.amend(|scenario| {
        if let Some(s) = args.seed {
            scenario.data.seed = s;
        }
    })?;
    println!("# {} — data", scenario.name);
    if scenario.is_real_data() {
        check_files(&scenario, Path::new("."), CHECK_RECORDS)?;
        let (data, report) =
            load_real_data_unchecked(&scenario, Path::new("."), args.skip_invalid)?;
        println!("{report}");
        let reference = RealReference::new(&data, &report);
        println!("reference points on the held-out pairs (accuracy vs observed labels):");
        for b in &reference.baselines {
            println!("  {:<32} {:>8}  {}", b.name, b.overall.show(), b.rule);
        }
        println!(
            "loaded in {:.2}s; nothing trained",
            clock.elapsed().as_secs_f64()
        );
        report.check_drops()?;
    } else {
        let (_, data) = crate::synth::synthetic_data(&scenario);
        println!(
            "synthetic world: {} train and {} held-out pairs",
            data.train.len(),
            data.eval.len()
        );
        for (g, name) in data.group_names.iter().enumerate() {
            let count = |pairs: &[crate::data::PreferencePair]| {
                pairs.iter().filter(|p| p.group == g).count()
            };
            println!(
                "  type {name}: train {}, held-out {}",
                count(&data.train),
                count(&data.eval)
            );
        }
        println!(
            "generated in {:.2}s; nothing trained",
            clock.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
