//! Where does DPO's first full-batch step point? Writes [`lpc_bench::direction::first_steps`]'s
//! rows for one seed of a real-data scenario with a pretrained policy (docs/RESULTS.md §6,
//! pilots 9 and 9b).
//!
//! ```text
//! cargo run --release --example dpo_direction -- SCENARIO SEED THREADS OUT.csv [GD_STEPS [SIGN_STEPS]]
//! ```
//!
//! GD_STEPS and SIGN_STEPS are comma-separated step sizes (defaults `1e-6,1e-5,1e-4,1e-3` and
//! `1e-5,1e-4,1e-3`; the runs docs/RESULTS.md reports name theirs). The scenario's first method
//! must be DPO; the held-out pairs are never read. Progress, with the gradient's
//! root-mean-square, goes to stderr.

use lpc_bench::direction::{CSV_HEADER, first_steps};
use lpc_bench::scenario::Scenario;
use std::path::PathBuf;

const GD_STEPS: &str = "1e-6,1e-5,1e-4,1e-3";
const SIGN_STEPS: &str = "1e-5,1e-4,1e-3";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: dpo_direction SCENARIO SEED THREADS OUT.csv [GD_STEPS [SIGN_STEPS]]";
    let (Some([path, seed, threads, out]), rest) = (args.first_chunk::<4>(), args.get(4..)) else {
        return Err(usage.into());
    };
    let grid = |k: usize, default: &str| -> Result<Vec<f64>, std::num::ParseFloatError> {
        let text = rest.and_then(|r| r.get(k)).map_or(default, String::as_str);
        text.split(',').map(str::parse).collect()
    };
    let (gd, sign) = (grid(0, GD_STEPS)?, grid(1, SIGN_STEPS)?);
    let (seed, threads): (u64, usize) = (seed.parse()?, threads.parse()?);
    let scenario = Scenario::load(&PathBuf::from(path))?.amend(|s| {
        s.data.seed = seed;
        s.train.threads = threads;
    })?;
    lpc_bench::device::set_cpu_threads(threads);
    let clock = std::time::Instant::now();
    let say = |m: &str| eprintln!("[{:6.0}s] {m}", clock.elapsed().as_secs_f64());
    let found = first_steps(&scenario, &gd, &sign, &say)?;
    let lines: Vec<String> = std::iter::once(CSV_HEADER.to_string())
        .chain(found.rows.iter().map(|r| r.csv_line()))
        .collect();
    lpc_bench::results::write_atomic(out.as_ref(), (lines.join("\n") + "\n").as_bytes())?;
    Ok(())
}
