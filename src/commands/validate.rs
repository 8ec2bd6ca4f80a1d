//! `lpc-bench validate`: load each scenario, print it resolved or the error.

use crate::cli::ValidateArgs;
use crate::scenario::Scenario;
use crate::{Error, Result};

/// Validate every file; all are checked, and the command fails if any is invalid.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let mut bad = 0usize;
    for path in &args.files {
        match Scenario::load(path) {
            Ok(s) => {
                if args.quiet {
                    continue;
                }
                println!("# {} — ok", path.display());
                println!("{}", s.to_toml());
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
