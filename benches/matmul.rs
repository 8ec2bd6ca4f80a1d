//! The backend's own large-matmul rate: square matmuls `C = A B` of side 512, 1024 and 2048 in
//! f32 on the same backend the training step runs on (burn Flex on the CPU); with
//! `LPC_BENCH_DEVICE=cuda` and `--features cuda`, sides 1024 to 8192 in f32, bf16 and f16. Criterion's throughput is in FLOPs
//! (`2 n^3` per product), so its `elem/s` reads as FLOP/s. On the CPU the bench then prints the
//! cores' own FMA peak (`common::core_fma_peak`: clock x FMA width, measured), against which the
//! train-step bench reports its fraction; on a GPU the train-step bench divides by the best of
//! the matmul rates.
//!
//! ```text
//! cargo bench --bench matmul
//! LPC_BENCH_DEVICE=cuda cargo bench --features cuda --bench matmul
//! ```
//!
//! Operands are drawn once, outside the timed closure, from a fixed seed; the device is
//! synchronised before the clock is read.

mod common;

use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use common::{BenchDevice, bench_device, square_operands, sync};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lpc_bench::device::DeviceChoice;
use lpc_bench::scenario::Precision;

fn bench_on<B: Backend>(c: &mut Criterion, device: B::Device, on: BenchDevice) {
    let (sides, precisions): (&[usize], &[Precision]) = match on.choice {
        DeviceChoice::Cpu => (&[512, 1024, 2048], &[Precision::F32]),
        DeviceChoice::Cuda(_) => (
            &[1024, 2048, 4096, 8192],
            &[Precision::F32, Precision::Bf16, Precision::F16],
        ),
    };
    let mut group = c.benchmark_group(format!("matmul-{}", on.name()));
    group.sampling_mode(SamplingMode::Flat);
    for (&n, &precision) in sides
        .iter()
        .flat_map(|n| precisions.iter().map(move |p| (n, p)))
    {
        let (a, b) = square_operands::<B>(&device, n, precision);
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_function(BenchmarkId::new(precision.as_str(), n), |bench| {
            bench.iter_custom(|iters| {
                sync::<B>(&device);
                let clock = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(a.clone().matmul(b.clone()));
                }
                sync::<B>(&device);
                clock.elapsed()
            })
        });
    }
    group.finish();
}

/// The matmuls run on the inner (non-autodiff) backend of the device's training backend.
struct Matmul<'a> {
    c: &'a mut Criterion,
    on: BenchDevice,
}

impl lpc_bench::device::OnBackend for Matmul<'_> {
    type Output = ();
    fn on<B: AutodiffBackend>(self, device: B::Device, _compiles_kernels: bool) {
        bench_on::<B::InnerBackend>(self.c, device, self.on)
    }
}

fn main() {
    let mut c = common::criterion();
    let on = bench_device();
    on.dispatch(Matmul { c: &mut c, on });
    c.final_summary();
    // The cores' own peak beside criterion's matmul rates: the rates above are a library's
    // best, this is the hardware's (clock x FMA width, measured here).
    if matches!(on.choice, DeviceChoice::Cpu)
        && !common::listing_or_testing()
        && let Some(core) = common::core_fma_peak(5)
    {
        println!(
            "core FMA peak (one core): {:.1} GFLOP/s = {:.2} GHz x 32 f32 FLOP/cycle (2 FMA units x \
             8 lanes x 2); x {} rayon thread(s) = {:.1} GFLOP/s",
            core / 1e9,
            core / 32e9,
            rayon::current_num_threads(),
            core * rayon::current_num_threads() as f64 / 1e9
        );
    }
}
