//! `lpc-bench validate`: load each scenario, print it resolved or the error; for a scenario with
//! a `[sweep]` table, also expand the grid (every cell is validated) and print its cell count.

use crate::cli::ValidateArgs;
use crate::scenario::Scenario;
use crate::{Error, Result};

/// Validate every file; all are checked, and the command fails if any is invalid.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let mut bad = 0usize;
    for path in &args.files {
        let checked = Scenario::load(path).map_err(Error::from).and_then(|s| {
            let cells = match s.sweep {
                Some(_) => Some(crate::sweep::load(path)?.len()),
                None => None,
            };
            Ok((s, cells))
        });
        match checked {
            Ok((s, cells)) => {
                if args.quiet {
                    continue;
                }
                match cells {
                    Some(n) => println!("# {} — ok, sweep grid of {n} cells", path.display()),
                    None => println!("# {} — ok", path.display()),
                }
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
