//! `lpc-bench validate`: load each scenario, print it resolved (with every method's defaults) or
//! the error; for a scenario with a `[sweep]` table, also expand the grid (every cell is
//! validated) and print its cell count; for real data, check the files and their fields
//! ([`crate::data::real::check_files`]; relative paths resolve against the current directory,
//! as in `run`). Each report ends with the resource estimate (`plan`) as TOML comments, so the
//! output stays a loadable scenario; a scenario too large for this machine gets a warning line,
//! not an error (it may be meant for a larger one; `run` refuses it here). The report is
//! [`check_text`].

use crate::cli::ValidateArgs;
use crate::data::real::{CHECK_RECORDS, check_files};
use crate::experiment::validate::check_text;
use crate::plan;
use crate::scenario::Scenario;
use crate::{Error, Result};
use std::path::Path;

/// Validate every file; all are checked, and the command fails if any is invalid.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let budget = plan::memory_budget()?;
    let mut bad = 0usize;
    for path in &args.files {
        let checked = crate::scenario::read_text(path)
            .map_err(Error::from)
            .and_then(|text| check_text(&text, &crate::scenario::file_stem(path), path, &budget))
            .and_then(|report| {
                let s = Scenario::load(path)?;
                if s.is_real_data() {
                    check_files(&s, Path::new("."), CHECK_RECORDS)?;
                }
                Ok(report)
            });
        match checked {
            Ok(report) => {
                if !args.quiet {
                    println!("{report}");
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                bad += 1;
            }
        }
    }
    if bad > 0 {
        return Err(Error::msg(format!(
            "{bad} of {} scenario file(s) invalid",
            args.files.len()
        )));
    }
    Ok(())
}
