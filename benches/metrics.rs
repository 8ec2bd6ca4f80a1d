//! Partition scores on one million labels: NMI, ARI and the Hungarian code ↔ type matching
//! (`lpc_bench::metrics`), for K = 8 and K = 64 predicted codes against T = 4 true types.
//! Criterion's throughput is in labels per second.
//!
//! ```text
//! cargo bench --bench metrics
//! ```
//!
//! The labels are drawn once from a fixed seed: the truth uniform on T types, the prediction
//! equal to a type-specific code with probability 0.7 and uniform otherwise, so the contingency
//! table is neither diagonal nor flat.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lpc_bench::metrics::{ari, matching, nmi};
use lpc_bench::rng::stream;
use rand::RngExt;

const LABELS: usize = 1_000_000;
const TYPES: usize = 4;

fn labels(k: usize) -> (Vec<usize>, Vec<usize>) {
    let mut rng = stream(0, "bench/metrics");
    let truth: Vec<usize> = (0..LABELS).map(|_| rng.random_range(0..TYPES)).collect();
    let pred = truth
        .iter()
        .map(|&t| {
            if rng.random::<f64>() < 0.7 {
                (t * 7) % k
            } else {
                rng.random_range(0..k)
            }
        })
        .collect();
    (pred, truth)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("metrics-1M");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(LABELS as u64));
    for k in [8, 64] {
        let (pred, truth) = labels(k);
        group.bench_with_input(BenchmarkId::new("nmi", k), &k, |b, _| {
            b.iter(|| black_box(nmi(&pred, &truth)))
        });
        group.bench_with_input(BenchmarkId::new("ari", k), &k, |b, _| {
            b.iter(|| black_box(ari(&pred, &truth)))
        });
        group.bench_with_input(BenchmarkId::new("hungarian", k), &k, |b, _| {
            b.iter(|| black_box(matching(&pred, &truth)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
