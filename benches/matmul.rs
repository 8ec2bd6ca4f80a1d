//! The backend's own large-matmul rate: square f32 matmuls `C = A B` of side 512, 1024 and
//! 2048 on the same backend the training step runs on (burn Flex on the CPU; CUDA with
//! `LPC_BENCH_DEVICE=cuda` and `--features cuda`). Criterion's throughput is in FLOPs
//! (`2 n^3` per product), so its `elem/s` reads as FLOP/s; the train-step bench divides its
//! achieved matmul FLOP/s by the best of these.
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

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use common::{bench_device, device_name, sync};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lpc_bench::device::DeviceChoice;

const SIDES: [usize; 3] = [512, 1024, 2048];

fn bench_on<B: Backend>(c: &mut Criterion, device: B::Device, dev: &str) {
    let mut group = c.benchmark_group(format!("matmul-{dev}"));
    group.sampling_mode(SamplingMode::Flat);
    for n in SIDES {
        B::seed(&device, 1);
        let a = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
        group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        group.bench_function(BenchmarkId::new("f32", n), |bench| {
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

fn main() {
    let mut c = common::criterion();
    let device = bench_device();
    let dev = device_name(device);
    match device {
        DeviceChoice::Cpu => {
            bench_on::<lpc_bench::model::CpuBackend>(&mut c, Default::default(), &dev)
        }
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(n) => {
            bench_on::<burn::backend::Cuda>(&mut c, lpc_bench::device::cuda_device(n), &dev)
        }
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => unreachable!("bench_device rejects cuda without the feature"),
    }
    c.final_summary();
}
