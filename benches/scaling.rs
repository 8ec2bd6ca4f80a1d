//! Scaling of one LPC-DPO optimiser step along four axes, one criterion group each, around the
//! train-step bench's base case (smoke world, d_model 64, 2 layers, batch 64, 6 + 1 + 6 tokens,
//! K = 8):
//!
//! - `batch`: 16 .. 256 pairs;
//! - `seq`: prompt = response = 3 .. 64 tokens (padded length 7 .. 129);
//! - `codebook`: K = 8 .. 256, beside DPO (no codebook) as the baseline;
//! - `width`: d_model 32 .. 512 (d_ff = 4 d).
//!
//! After criterion's output a table per axis gives step time, pairs/s, tokens/s, achieved
//! matmul GFLOP/s (`model::matmul_flops_per_step`) and, for the codebook axis, the step time
//! relative to DPO's. The step is `lpc_bench::train::train_step`, as in `benches/train_step.rs`.
//!
//! ```text
//! cargo bench --bench scaling
//! cargo bench --bench scaling -- codebook          # one axis
//! LPC_BENCH_DEVICE=cuda cargo bench --features cuda --bench scaling
//! ```

mod common;

use burn::tensor::backend::AutodiffBackend;
use common::{Case, Shape, bench_case, bench_device, listing_or_testing, seconds_per_iter};
use criterion::{BenchmarkId, Criterion, SamplingMode};

const LPC: &str = "method = \"lpc-dpo\"\ncodebook = 8";

/// One measured point: the axis value, its shape and method.
struct Point {
    value: String,
    shape: Shape,
    method: String,
}

/// The four axes and their points.
fn axes() -> Vec<(&'static str, Vec<Point>)> {
    let base = Shape::standard(64);
    let point = |value: String, shape: Shape, method: &str| Point {
        value,
        shape,
        method: method.to_string(),
    };
    let batch = [16, 32, 64, 128, 256]
        .map(|b| point(b.to_string(), Shape { batch: b, ..base }, LPC))
        .into();
    let seq = [3, 6, 12, 24, 48, 64]
        .map(|t| {
            let shape = Shape {
                prompt_len: t,
                response_len: t,
                ..base
            };
            point(shape.seq_len().to_string(), shape, LPC)
        })
        .into();
    let mut codebook = vec![point("dpo".into(), base, "method = \"dpo\"")];
    codebook.extend([8, 16, 32, 64, 128, 256].map(|k| {
        point(
            k.to_string(),
            base,
            &format!("method = \"lpc-dpo\"\ncodebook = {k}"),
        )
    }));
    let width = [32, 64, 128, 256, 512]
        .map(|d| point(d.to_string(), Shape::standard(d), LPC))
        .into();
    vec![
        ("batch", batch),
        ("seq", seq),
        ("codebook", codebook),
        ("width", width),
    ]
}

fn bench_on<B: AutodiffBackend>(c: &mut Criterion, device: B::Device, dev: &str) {
    let axes = axes();
    for (axis, points) in &axes {
        let mut group = c.benchmark_group(format!("scaling-{dev}/{axis}"));
        group.sampling_mode(SamplingMode::Flat);
        for p in points {
            bench_case::<B>(
                &mut group,
                BenchmarkId::from_parameter(&p.value),
                &format!("{axis}/{}", p.value),
                || Case::new(p.shape, &p.method),
                &device,
            );
        }
        group.finish();
    }
    if listing_or_testing() {
        return;
    }
    for (axis, points) in &axes {
        summary(dev, axis, points);
    }
}

fn summary(dev: &str, axis: &str, points: &[Point]) {
    let rows: Vec<(&Point, f64)> = points
        .iter()
        .filter_map(|p| seconds_per_iter(&format!("{axis}/{}", p.value), 10).map(|s| (p, s)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let dpo = seconds_per_iter(&format!("{axis}/dpo"), 10);
    println!("\n## scaling on {dev}: {axis}\n");
    println!(
        "| {axis} | step ms | pairs/s | tokens/s | matmul GFLOP/step | GFLOP/s | step / DPO |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (p, secs) in rows {
        let flops = Case::flops_only(p.shape, &p.method) as f64;
        println!(
            "| {} | {:.2} | {:.0} | {:.0} | {:.3} | {:.2} | {} |",
            p.value,
            secs * 1e3,
            p.shape.batch as f64 / secs,
            p.shape.tokens_per_step() as f64 / secs,
            flops / 1e9,
            flops / secs / 1e9,
            dpo.map_or("-".into(), |d| format!("{:.3}", secs / d))
        );
    }
}

/// The bench's work, handed to the backend the device names.
struct Scaling<'a> {
    c: &'a mut Criterion,
    dev: String,
}

impl lpc_bench::device::OnBackend for Scaling<'_> {
    type Output = ();
    fn on<B: AutodiffBackend>(self, device: B::Device, _compiles_kernels: bool) {
        bench_on::<B>(self.c, device, &self.dev)
    }
}

fn main() {
    let mut c = common::criterion();
    let on = bench_device();
    on.dispatch(Scaling {
        c: &mut c,
        dev: on.name(),
    });
    c.final_summary();
}
