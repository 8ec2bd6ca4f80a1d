//! `lpc-bench validate`: load each scenario, print it resolved (with every method's defaults) or
//! the error; for a scenario with a `[sweep]` table, also expand the grid (every cell is
//! validated) and print its cell count; for real data, check the files and their fields
//! ([`crate::data::real::check_files`]; relative paths resolve against the current directory,
//! as in `run`).

use crate::cli::ValidateArgs;
use crate::data::real::{CHECK_RECORDS, check_files};
use crate::scenario::{ResolvedMethod, Scenario};
use crate::{Error, Result};
use std::path::Path;

/// Validate every file; all are checked, and the command fails if any is invalid.
pub fn run(args: &ValidateArgs) -> Result<()> {
    let mut bad = 0usize;
    for path in &args.files {
        let checked = Scenario::load(path).map_err(Error::from).and_then(|s| {
            let cells = match s.sweep {
                Some(_) => Some(crate::sweep::load(path)?.len()),
                None => None,
            };
            if s.is_real_data() {
                check_files(&s, Path::new("."), CHECK_RECORDS)?;
            }
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
                println!("# methods with every default resolved:");
                for m in s.resolved_methods() {
                    println!("#   {}", method_defaults(&m));
                }
                println!();
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

/// One line with every resolved setting of a method.
pub fn method_defaults(m: &ResolvedMethod) -> String {
    format!(
        "{}: method = {}, beta = {}, gamma = {}, eps = {}, lambda = {}, codebook = {}, \
         tau = {}, tau_end = {}, hard = {}, inference = {:?}, prior_schedule = {:?}, \
         lambda_warmup = {}, free_bits = {}, context = {}, posterior_pool = {:?}, \
         latent_dim = {}, lr = {}, steps = {}",
        m.label,
        m.name.canonical(),
        m.beta,
        m.gamma,
        m.eps,
        m.lambda,
        m.codebook,
        m.tau,
        m.tau_end,
        m.hard,
        m.inference,
        m.prior_schedule,
        m.lambda_warmup,
        m.free_bits,
        m.context,
        m.posterior_pool,
        m.latent_dim,
        m.lr,
        m.steps
    )
}
