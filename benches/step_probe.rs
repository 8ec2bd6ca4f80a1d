//! A/B probe for a shared machine: the distribution of single-step wall times of one train-step
//! case, to compare two builds when criterion's means are swamped by other processes' load.
//! Run it with one thread so that other processes steal whole steps rather than halves:
//!
//! ```text
//! RAYON_NUM_THREADS=1 cargo bench --bench step_probe -- [D_MODEL] [STEPS] [METHOD] [LEN] [K]
//! RAYON_NUM_THREADS=1 cargo bench --bench step_probe -- 64 80 lpc-dpo 64
//! ```
//!
//! Defaults: d_model 64, 80 steps, `lpc-dpo`, prompt = response = 6 tokens, K = 8 codes for
//! `lpc-*` methods (the train-step bench's base case, `benches/common`). Prints the minimum, 25th percentile and
//! median step time in ms after 3 untimed steps (the minimum is the least disturbed step), the
//! step's matmul FLOPs, and the core's FMA peak measured right after
//! ([`common::core_fma_peak`]) with the median step's matmul rate as a share of it.

mod common;

use common::{Case, Shape, Stepper};

fn main() {
    // `cargo bench` appends `--bench`; positional arguments are the rest.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let parse = |i: usize, default: &str| -> usize {
        arg(i, default).parse().unwrap_or_else(|_| {
            eprintln!("usage: step_probe [D_MODEL] [STEPS] [METHOD] [LEN] [K]");
            std::process::exit(2)
        })
    };
    let (d, steps, method, len) = (
        parse(0, "64"),
        parse(1, "80"),
        arg(2, "lpc-dpo"),
        parse(3, "6"),
    );
    let k = parse(4, "8");
    let toml = if method.starts_with("lpc-") {
        format!("method = \"{method}\"\ncodebook = {k}")
    } else {
        format!("method = \"{method}\"")
    };
    let shape = Shape {
        prompt_len: len,
        response_len: len,
        ..Shape::standard(d)
    };
    let case = Case::new(shape, &toml);
    let mut stepper = Stepper::<lpc_bench::model::CpuAutodiff>::new(&case, &Default::default());
    for _ in 0..3 {
        stepper.step();
    }
    let mut ms: Vec<f64> = (0..steps.max(1))
        .map(|_| stepper.timed(1).as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let gflop = case.flops_per_step() as f64 / 1e9;
    // The core's own peak, measured right after the steps (one thread: the probe's setting).
    let peak = common::core_fma_peak(3).map_or(String::new(), |p| {
        format!(
            "; core FMA peak {:.1} GFLOP/s ({:.2} GHz x 32 FLOP/cycle), median at {:.0} % of it",
            p / 1e9,
            p / 32e9,
            100.0 * gflop / (median / 1e3) / (p / 1e9)
        )
    });
    println!(
        "d_model {d}, {method}{}, {} tokens, {} steps: min {:.2} ms, p25 {:.2} ms, median {:.2} ms; \
         {gflop:.3} matmul GFLOP/step{peak}",
        if method.starts_with("lpc-") {
            format!(" K={k}")
        } else {
            String::new()
        },
        shape.seq_len(),
        ms.len(),
        ms[0],
        ms[ms.len() / 4],
        median
    );
}
