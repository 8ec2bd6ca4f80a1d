//! Generator throughput, in pairs per second (criterion `Throughput::Elements`).
//!
//! - `pairs/smoke`: the smoke world's 600 pairs (train + eval), drawn in memory;
//! - `pairs/1M`: one million pairs of the two-opposed world (METHOD.md world a), streamed and
//!   dropped one at a time, as `generate` does;
//! - `jsonl/*`: the same plus JSON Lines serialisation into a sink (no disk);
//! - `stats/smoke-eval`: the held-out statistics (ceilings, bound) of the smoke world.
//!
//! Worlds are built outside the timed closures from the scenario's seed. Sample sizes are the
//! minimum (10) so the whole bench runs in about a minute on 2 cores:
//! `cargo bench --bench generate`.
//!
//! Measured on the project's shared 2-core CPU machine (medians, noisy): `pairs/draw/smoke`
//! 3.3 M pairs/s, `pairs/draw/1M` 2.0 M pairs/s, `jsonl/write/1M` 0.59 M pairs/s,
//! `stats/smoke-eval` 1.35 M pairs/s. `lpc-bench generate` of a 1M-pair world writes its
//! 347 MB `train.jsonl` in about 3 s.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lpc_bench::experiment::generate::write_jsonl;
use lpc_bench::rng::stream;
use lpc_bench::scenario::{CheckedScenario, Scenario};
use lpc_bench::synth::{StatsAccumulator, TRAIN_STREAM, WORLD_STREAM, World};

fn load(name: &str) -> CheckedScenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name);
    Scenario::load(&path).expect("shipped scenario is valid")
}

fn world_of(s: &Scenario) -> World {
    World::new(
        &s.world(),
        s.noise.flip_rate,
        &mut stream(s.data.seed, WORLD_STREAM),
    )
}

fn bench(c: &mut Criterion) {
    let smoke = load("smoke.toml");
    let opposed = load("two-opposed.toml");
    let cases = [
        (
            "smoke",
            world_of(&smoke),
            smoke.data.train_pairs + smoke.data.eval_pairs,
            smoke.data.seed,
        ),
        ("1M", world_of(&opposed), 1_000_000, opposed.data.seed),
    ];

    let mut group = c.benchmark_group("pairs");
    group.sample_size(10);
    for (name, world, n, seed) in &cases {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::new("draw", name), n, |b, &n| {
            b.iter(|| {
                let mut rng = stream(*seed, TRAIN_STREAM);
                world.pairs(&mut rng).take(n).for_each(|p| {
                    black_box(p);
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("jsonl");
    group.sample_size(10);
    for (name, world, n, seed) in &cases {
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_with_input(BenchmarkId::new("write", name), n, |b, &n| {
            b.iter(|| {
                let mut rng = stream(*seed, TRAIN_STREAM);
                write_jsonl(world, &mut rng, n, std::io::sink(), |_| {}).unwrap()
            })
        });
    }
    group.finish();

    let (_, world, _, seed) = &cases[0];
    let eval: Vec<_> = world
        .pairs(&mut stream(*seed, "pairs/eval"))
        .take(smoke.data.eval_pairs)
        .collect();
    let mut group = c.benchmark_group("stats");
    group.sample_size(10);
    group.throughput(Throughput::Elements(eval.len() as u64));
    group.bench_function("smoke-eval", |b| {
        b.iter(|| {
            let mut acc = StatsAccumulator::new(world);
            eval.iter().for_each(|p| acc.add(p));
            black_box(acc.finish())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
