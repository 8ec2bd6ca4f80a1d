//! What `lpc-bench validate` reports for one scenario file: the resolved scenario, every method's
//! resolved settings and the resource estimate as TOML comments, or the error.

use crate::Result;
use crate::plan::{self, Budget};
use crate::scenario::{ResolvedMethod, Scenario};
use std::path::Path;

/// What `validate` prints for one file's text, or its error: the resolved scenario and the
/// resource estimate (of the largest cell, for a sweep). `path` names the file in the output and
/// errors only; nothing is read or written. Allocates nothing proportional to the scenario's
/// size fields (the `scenario_fuzz` test calls this on mutated files).
pub fn check_text(text: &str, stem: &str, path: &Path, budget: &Budget) -> Result<String> {
    let s = Scenario::from_file_text(text, stem).map_err(|e| e.with_path(path))?;
    let mut out = Vec::new();
    let (estimate, which) = match s.sweep {
        Some(_) => {
            let cells = crate::sweep::load_text(text, stem, path)?;
            out.push(format!(
                "# {} — ok, sweep grid of {} cells",
                path.display(),
                cells.len()
            ));
            let largest = cells
                .iter()
                .map(|c| (plan::estimate(&c.scenario), c.id.clone()))
                .max_by(|a, b| a.0.host_bytes().total_cmp(&b.0.host_bytes()));
            match largest {
                Some((e, id)) => (e, format!("largest cell {id}: ")),
                None => (plan::estimate(&s), String::new()),
            }
        }
        None => {
            out.push(format!("# {} — ok", path.display()));
            (plan::estimate(&s), String::new())
        }
    };
    out.push(s.to_toml()?);
    out.push("# methods with every default resolved:".to_string());
    for m in s.resolved_methods() {
        out.push(format!("#   {}", method_defaults(&m)));
    }
    let mut lines = estimate.lines("# ", budget);
    if !which.is_empty() {
        lines[0] = format!("# {which}{}", lines[0].trim_start_matches("# "));
    }
    out.extend(lines);
    if let Err(e) = plan::check_fits(&s.name, &estimate, budget) {
        out.push(format!("# warning: `run` would refuse this here: {e}"));
    }
    Ok(out.join("\n"))
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
