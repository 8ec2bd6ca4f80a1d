//! The linear-probe baseline (`lpc_bench::probe`): cross-validating and fitting a Bradley–Terry
//! probe at the shipped SmolLM2 scenario's size, 800 training pairs of 576 features (35 fits
//! for the 7 × 5 cross-validation grid, then one on every pair).
//!
//! ```text
//! cargo bench --bench probe
//! ```
//!
//! The differences are drawn once from a fixed seed: standard normal features whose pair is
//! oriented by a Bradley–Terry model on a fixed weight vector, so the fit is neither separable
//! nor pure noise.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lpc_bench::probe::Probe;
use lpc_bench::rng::stream;
use rand::RngExt;
use rand_distr::{Distribution, StandardNormal};

fn diffs(n: usize, d: usize) -> Vec<Vec<f64>> {
    let mut rng = stream(0, "bench/probe");
    let truth: Vec<f64> = (0..d).map(|j| if j < 8 { 0.3 } else { 0.0 }).collect();
    (0..n)
        .map(|_| {
            let x: Vec<f64> = (0..d).map(|_| StandardNormal.sample(&mut rng)).collect();
            let m: f64 = x.iter().zip(&truth).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-m).exp());
            if rng.random::<f64>() < p {
                x
            } else {
                x.iter().map(|v| -v).collect()
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    for (n, d) in [(800, 576), (800, 64)] {
        let xs = diffs(n, d);
        group.bench_with_input(
            BenchmarkId::new("train", format!("{n}x{d}")),
            &xs,
            |b, xs| b.iter(|| black_box(Probe::train(xs))),
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
