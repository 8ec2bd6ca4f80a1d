//! One optimiser step of DPO, LPC-DPO, SimPO and LPC-SimPO at d_model 64, 256 and 512: pairs
//! per second (criterion's throughput), then a summary table with tokens per second, achieved
//! matmul FLOP/s as a fraction of the backend's own large-matmul peak, and the LPC / base
//! step-time ratios.
//!
//! The step is the real one, `lpc_bench::train::train_step` (the body of `train_method`'s loop):
//! batch building from cached reference log-probs, one backbone pass over the 2B stacked rows,
//! heads, Gumbel code, objective, backward, Adam with gradient clipping. The case is the smoke
//! world with two-opposed's lengths (6 + 1 + 6 tokens), 2 layers, 4 heads, d_ff = 4 d, batch 64,
//! K = 8 (`benches/common`).
//!
//! ```text
//! cargo bench --bench train_step                                         # CPU (burn Flex)
//! LPC_BENCH_DEVICE=cuda cargo bench --features cuda --bench train_step   # GPU
//! ```
//!
//! FLOPs per step come from `model::matmul_flops_per_step` (forward + backward = 3 x forward
//! matmul FLOPs). On the CPU the peak is the cores' own: one core's FMA throughput measured in
//! the same process (`common::core_fma_peak`: clock x 32 f32 FLOPs per cycle) times the rayon
//! threads; the best square matmul (512^2 to 2048^2) is printed beside it. On a GPU the peak is
//! the best rate of square matmuls of side 4096 and 8192 (`benches/matmul.rs` measures them
//! under criterion).
//! `LPC_BENCH_PRECISION=bf16|f16` benches the mixed-precision policy (GPU) and divides by the
//! half-precision matmul peak.
//!
//! The group `gpu-shape` times DPO and LPC-DPO (K = 8) at the GPU-sized shape of issue 11's
//! PyTorch table (d_model 512, 6 layers, 8 heads, 129 tokens, batch 64 pairs; `Shape::gpu`), so
//! its step ms compare directly with the peer's (f32: 53.3 / 53.8 ms; bf16 + fused attention:
//! 16.5 / 21.8 ms on an H200). It runs by default on a GPU; on the CPU one step takes tens of
//! seconds, so it is left out unless `LPC_BENCH_GPU_SHAPE=1`:
//!
//! ```text
//! LPC_BENCH_DEVICE=cuda cargo bench --features cuda --bench train_step -- gpu-shape
//! LPC_BENCH_DEVICE=cuda LPC_BENCH_PRECISION=bf16 cargo bench --features cuda --bench train_step -- gpu-shape
//! ```

mod common;

use burn::tensor::backend::AutodiffBackend;
use common::{
    BenchDevice, Case, Shape, bench_case, bench_device, bench_precision, listing_or_testing,
    matmul_peak, peak_sides, seconds_per_iter,
};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use lpc_bench::device::DeviceChoice;
use lpc_bench::scenario::Precision;

const WIDTHS: [usize; 3] = [64, 256, 512];
const METHODS: [(&str, &str); 4] = [
    ("dpo", "method = \"dpo\""),
    ("lpc-dpo", "method = \"lpc-dpo\"\ncodebook = 8"),
    ("simpo", "method = \"simpo\""),
    ("lpc-simpo", "method = \"lpc-simpo\"\ncodebook = 8"),
];
fn bench_on<B: AutodiffBackend>(c: &mut Criterion, device: B::Device, on: BenchDevice) {
    let choice = on.choice;
    let precision = bench_precision();
    let dev = match precision {
        Precision::F32 => on.name(),
        p => format!("{}-{}", on.name(), p.as_str()),
    };
    for d in WIDTHS {
        let mut group = c.benchmark_group(format!("train_step-{dev}/d{d}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(Shape::standard(d).batch as u64));
        for (name, toml) in METHODS {
            bench_case::<B>(
                &mut group,
                BenchmarkId::new(name, d),
                &format!("{d}/{name}"),
                || Case::new(Shape::standard(d), toml),
                &device,
            );
        }
        group.finish();
    }
    if gpu_shape_wanted(choice) {
        let mut group = c.benchmark_group(format!("train_step-{dev}/gpu-shape"));
        group
            .sampling_mode(SamplingMode::Flat)
            .throughput(Throughput::Elements(Shape::gpu().batch as u64));
        for (name, toml) in &METHODS[..2] {
            bench_case::<B>(
                &mut group,
                BenchmarkId::new(*name, "d512-l6-t129"),
                &format!("gpu/{name}"),
                || Case::new(Shape::gpu(), toml),
                &device,
            );
        }
        group.finish();
    }
    if listing_or_testing() {
        return;
    }
    let (matmul, side) = peak_sides(choice)
        .iter()
        .map(|&n| (matmul_peak::<B::InnerBackend>(&device, n, precision, 5), n))
        .fold((0.0, 0), |best, x| if x.0 > best.0 { x } else { best });
    let matmul_text = format!(
        "best square matmul {:.1} GFLOP/s ({side}^2 {})",
        matmul / 1e9,
        precision.as_str()
    );
    // On the CPU the fraction is of the cores' own peak (clock x FMA width, measured), not of
    // the matmul library's best; on a GPU, of the best large matmul.
    let (peak, peak_text) = match (choice, common::core_fma_peak(3)) {
        (DeviceChoice::Cpu, Some(core)) => {
            let threads = rayon::current_num_threads();
            (
                core * threads as f64,
                format!(
                    "core FMA peak {:.1} GFLOP/s ({:.2} GHz x 32 FLOP/cycle) x {threads} \
                     thread(s); {matmul_text}",
                    core / 1e9,
                    core / 32e9
                ),
            )
        }
        _ => (matmul, matmul_text),
    };
    summary(&dev, peak, &peak_text);
}

/// Whether to bench the GPU-sized shape: always on a GPU, on the CPU only when
/// `LPC_BENCH_GPU_SHAPE=1` (a step there takes tens of seconds).
fn gpu_shape_wanted(choice: DeviceChoice) -> bool {
    !matches!(choice, DeviceChoice::Cpu)
        || std::env::var("LPC_BENCH_GPU_SHAPE").is_ok_and(|v| v == "1")
}

/// One table row: step time, throughput and matmul rate of the case recorded under `key`.
fn row(label: &str, name: &str, key: &str, shape: Shape, toml: &str, peak: f64) {
    let Some(secs) = seconds_per_iter(key, 10) else {
        return;
    };
    let flops = Case::flops_only(shape, toml) as f64;
    println!(
        "| {label} | {name} | {:.2} | {:.0} | {:.0} | {:.3} | {:.2} | {:.1} |",
        secs * 1e3,
        shape.batch as f64 / secs,
        shape.tokens_per_step() as f64 / secs,
        flops / 1e9,
        flops / secs / 1e9,
        100.0 * flops / secs / peak
    );
}

/// The table printed after criterion's own output.
fn summary(dev: &str, peak: f64, peak_text: &str) {
    println!(
        "\n## train_step on {dev}: % of peak against {:.1} GFLOP/s ({peak_text})\n",
        peak / 1e9
    );
    println!(
        "| d_model | method | step ms | pairs/s | tokens/s | matmul GFLOP/step | GFLOP/s | % of peak |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for d in WIDTHS {
        for (name, toml) in METHODS {
            let key = format!("{d}/{name}");
            row(&d.to_string(), name, &key, Shape::standard(d), toml, peak);
        }
    }
    for (name, toml) in &METHODS[..2] {
        let key = format!("gpu/{name}");
        row(
            "512 (6 layers, 129 tokens)",
            name,
            &key,
            Shape::gpu(),
            toml,
            peak,
        );
    }
    if let (Some(l), Some(d)) = (
        seconds_per_iter("gpu/lpc-dpo", 10),
        seconds_per_iter("gpu/dpo", 10),
    ) {
        println!("\nGPU-sized shape: LPC-DPO / DPO = {:.3}", l / d);
    }
    println!("\n| d_model | LPC-DPO / DPO | LPC-SimPO / SimPO |");
    println!("|---:|---:|---:|");
    for d in WIDTHS {
        let t = |m: &str| seconds_per_iter(&format!("{d}/{m}"), 10);
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.3}", a / b),
            _ => "-".into(),
        };
        println!(
            "| {d} | {} | {} |",
            ratio(t("lpc-dpo"), t("dpo")),
            ratio(t("lpc-simpo"), t("simpo"))
        );
    }
}

/// The bench's work, handed to the backend the device names.
struct Steps<'a> {
    c: &'a mut Criterion,
    on: BenchDevice,
}

impl lpc_bench::device::OnBackend for Steps<'_> {
    type Output = ();
    fn on<B: AutodiffBackend>(self, device: B::Device, _compiles_kernels: bool) {
        bench_on::<B>(self.c, device, self.on)
    }
}

fn main() {
    let mut c = common::criterion();
    let on = bench_device();
    on.dispatch(Steps { c: &mut c, on });
    c.final_summary();
}
