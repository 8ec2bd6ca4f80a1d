//! Shared set-up of the training benches (`train_step`, `scaling`, `matmul`): the benchmark
//! world and model, a driver of the real optimiser step (`lpc_bench::train::train_step`), the
//! device choice (`LPC_BENCH_DEVICE=cpu|cuda|cuda:N`, CUDA needing `--features cuda`;
//! `LPC_BENCH_FUSION=off` for CUDA without kernel fusion), the
//! matmul-peak measurement and the timing record the summary tables are printed from.
//!
//! Every case is built outside the timed closures from fixed seeds. On a GPU the device is
//! synchronised before each clock read (`Backend::sync`).

#![allow(dead_code)]

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burn::optim::Adam;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, FloatDType, Tensor};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};
use lpc_bench::data::PreferenceData;
use lpc_bench::device::DeviceChoice;
use lpc_bench::model::backbone::{Policy, PolicyConfig};
use lpc_bench::rng::{SeededRng, derive_seed, stream};
use lpc_bench::scenario::{CheckedScenario, Precision, ResolvedMethod, Scenario};
use lpc_bench::train::{
    MethodContext, MethodModel, ReferenceCache, StepSchedule, batch_order, method_optimizer,
    train_step,
};

/// Steps the schedules of a bench case are laid out over (the step counter wraps around, so
/// every timed step sees mid-training values of tau, g, lambda and the learning rate).
pub const SCHEDULE_STEPS: usize = 500;

/// Criterion settings for the shared 2-core machine: 10 samples, flat sampling (each sample
/// the same number of steps), short warm-up and measurement.
pub fn criterion() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args()
}

/// Where a bench runs: the device and, on CUDA, whether kernels fuse.
#[derive(Debug, Clone, Copy)]
pub struct BenchDevice {
    /// `LPC_BENCH_DEVICE`.
    pub choice: DeviceChoice,
    /// `LPC_BENCH_FUSION` (`on`, the default, or `off`); CUDA only.
    pub fusion: bool,
}

impl BenchDevice {
    /// A short name for bench ids and tables: `cpu`, `cuda0`, `cuda0-unfused`.
    pub fn name(self) -> String {
        match self.choice {
            DeviceChoice::Cpu => "cpu".into(),
            DeviceChoice::Cuda(n) if self.fusion => format!("cuda{n}"),
            DeviceChoice::Cuda(n) => format!("cuda{n}-unfused"),
        }
    }

    /// Run `job` on this device's backend.
    pub fn dispatch<J: lpc_bench::device::OnBackend>(self, job: J) -> J::Output {
        lpc_bench::device::dispatch(self.choice, self.fusion, job)
            .expect("bench_device checked that the device is available")
    }
}

/// The device from `LPC_BENCH_DEVICE` (default `cpu`) and CUDA's kernel fusion from
/// `LPC_BENCH_FUSION` (`on` default, `off`). Exits with a message when the device cannot be used
/// (CUDA in a build without `--features cuda`, or no usable GPU) or a value is not understood.
pub fn bench_device() -> BenchDevice {
    let text = std::env::var("LPC_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let choice = DeviceChoice::parse(&text)
        .and_then(|d| d.check_available().map(|()| d))
        .unwrap_or_else(|e| {
            eprintln!("LPC_BENCH_DEVICE: {e}");
            std::process::exit(2)
        });
    let fusion = match std::env::var("LPC_BENCH_FUSION").as_deref() {
        Err(_) | Ok("on") => true,
        Ok("off") => false,
        Ok(other) => {
            eprintln!("LPC_BENCH_FUSION must be on or off, got '{other}'");
            std::process::exit(2)
        }
    };
    BenchDevice { choice, fusion }
}

/// The matmul precision of the benched policy from `LPC_BENCH_PRECISION` (`f32` default,
/// `bf16`, `f16`: mixed precision, GPU only; see `Policy::with_precision`).
pub fn bench_precision() -> Precision {
    match std::env::var("LPC_BENCH_PRECISION").as_deref() {
        Err(_) | Ok("f32") => Precision::F32,
        Ok("bf16") => Precision::Bf16,
        Ok("f16") => Precision::F16,
        Ok(other) => {
            eprintln!("LPC_BENCH_PRECISION must be f32, bf16 or f16, got '{other}'");
            std::process::exit(2)
        }
    }
}

/// Shape of one bench case.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub d_model: usize,
    pub layers: usize,
    /// Attention heads (`d_model` must be a multiple).
    pub heads: usize,
    pub batch: usize,
    /// Prompt tokens (the sequence is `prompt + 1 + response`).
    pub prompt_len: usize,
    pub response_len: usize,
}

impl Shape {
    /// The train-step table's shape at width `d`: the smoke world's vocabulary with
    /// two-opposed's lengths (6 + 1 + 6 = 13 tokens), two-opposed's backbone (2 layers,
    /// 4 heads, d_ff = 4 d) and batch 64.
    pub fn standard(d_model: usize) -> Shape {
        Shape {
            d_model,
            layers: 2,
            heads: if d_model.is_multiple_of(4) { 4 } else { 1 },
            batch: 64,
            prompt_len: 6,
            response_len: 6,
        }
    }

    /// The GPU-sized shape of issue 11's PyTorch table (`scenarios/gpu/two-opposed-check.toml`):
    /// d_model 512, 6 layers, 8 heads, d_ff = 4 d, 64 + 1 + 64 = 129 tokens, batch 64 pairs
    /// (128 rows).
    pub fn gpu() -> Shape {
        Shape {
            d_model: 512,
            layers: 6,
            heads: 8,
            batch: 64,
            prompt_len: 64,
            response_len: 64,
        }
    }

    /// Padded sequence length `prompt + 1 + response`.
    pub fn seq_len(&self) -> usize {
        self.prompt_len + 1 + self.response_len
    }

    /// Tokens through the backbone per step: `2 B L` (chosen and rejected rows).
    pub fn tokens_per_step(&self) -> usize {
        2 * self.batch * self.seq_len()
    }
}

/// A bench case: scenario, method and data, built once.
pub struct Case {
    pub scenario: CheckedScenario,
    pub method: ResolvedMethod,
    pub data: PreferenceData,
    pub shape: Shape,
}

impl Case {
    /// The smoke world (`scenarios/smoke.toml`) resized to `shape`, with one method given as
    /// scenario TOML (e.g. `method = "lpc-dpo"\ncodebook = 8`). Enough training pairs for a
    /// few distinct batches.
    pub fn new(shape: Shape, method_toml: &str) -> Case {
        let scenario = bench_scenario(shape, method_toml);
        let method = scenario.resolved_methods().remove(0);
        let (_, data) = lpc_bench::synth::synthetic_data(&scenario);
        Case {
            scenario,
            method,
            data,
            shape,
        }
    }

    /// Matmul FLOPs of one step (`model::matmul_flops_per_step`).
    pub fn flops_per_step(&self) -> u64 {
        flops(&self.scenario, self.shape)
    }

    /// [`Case::flops_per_step`] of a case that is not built (no data drawn).
    pub fn flops_only(shape: Shape, method_toml: &str) -> u64 {
        flops(&bench_scenario(shape, method_toml), shape)
    }
}

fn flops(scenario: &CheckedScenario, shape: Shape) -> u64 {
    lpc_bench::model::matmul_flops_per_step(
        &scenario.model,
        shape.batch,
        shape.seq_len(),
        shape.response_len,
        scenario.world().vocab + 1,
        &scenario.resolved_methods()[0],
    )
}

/// The bench scenario of [`Case::new`].
pub fn bench_scenario(shape: Shape, method_toml: &str) -> CheckedScenario {
    let heads = shape.heads;
    let text = format!(
        "name = \"bench\"\n\
             [world]\nvocab = 16\nprompt_len = {p}\nresponse_len = {r}\nsources = 2\ntypes = 2\n\
             coupling = 1.0\nreward = \"linear\"\nfeature_dim = 8\nreward_scale = 6.0\n\
             distance = 1.0\nreference = \"uniform\"\n\
             [data]\ntrain_pairs = {n}\neval_pairs = 1\nseed = 0\n\
             [model]\nd_model = {d}\nlayers = {l}\nheads = {heads}\n\
             [train]\nsteps = {steps}\nbatch_size = {b}\nlr_warmup_steps = 5\n\
             [[methods]]\n{method_toml}\n",
        p = shape.prompt_len,
        r = shape.response_len,
        n = (4 * shape.batch).max(256),
        d = shape.d_model,
        l = shape.layers,
        steps = SCHEDULE_STEPS,
        b = shape.batch,
    );
    Scenario::from_toml_str(&text, "bench").expect("bench scenario is valid")
}

/// Drives `train::train_step` on a case, exactly as `train::train_method` does (same optimiser,
/// schedules, batch order and random streams), without evaluation.
pub struct Stepper<'a, B: AutodiffBackend> {
    case: &'a Case,
    ctx: MethodContext<'a>,
    model: Option<MethodModel<B>>,
    optim: OptimizerAdaptor<Adam, MethodModel<B>, B>,
    refs: ReferenceCache,
    batches: Vec<Vec<usize>>,
    step: usize,
    noise_rng: SeededRng,
    device: B::Device,
}

impl<'a, B: AutodiffBackend> Stepper<'a, B> {
    /// A freshly initialised policy (no warm-up: it does not change the cost of a step) as
    /// start and reference, the reference log-probs cached once, as in a run.
    pub fn new(case: &'a Case, device: &B::Device) -> Self {
        let seed = case.scenario.data.seed;
        B::seed(device, derive_seed(seed, "init/policy"));
        let data = &case.data;
        let start: Policy<B> =
            PolicyConfig::from_spec(&case.scenario.model, data.model_vocab(), data.max_seq_len())
                .init(device)
                .with_precision(bench_precision());
        let reference = burn::module::AutodiffModule::valid(&start);
        let refs = ReferenceCache::compute(&reference, &data.train, data.separator());
        let batches = batch_order(
            data.train.len(),
            case.scenario.train.batch_size,
            SCHEDULE_STEPS,
            seed,
        );
        Stepper {
            case,
            ctx: MethodContext::new(&case.method, data),
            model: Some(MethodModel::init(&case.method, &start, seed, device)),
            optim: method_optimizer::<B>(&case.scenario.train),
            refs,
            batches,
            step: 0,
            noise_rng: stream(seed, &format!("gumbel/{}", case.method.label)),
            device: device.clone(),
        }
    }

    /// One optimiser step; returns its training loss.
    pub fn step(&mut self) -> f64 {
        let s = self.step % SCHEDULE_STEPS;
        let plan = StepSchedule::at(&self.case.scenario, &self.case.method, s, SCHEDULE_STEPS);
        let model = self.model.take().expect("model present between steps");
        let out = train_step(
            model,
            &mut self.optim,
            &self.ctx,
            &self.case.data.train,
            &self.refs,
            &self.batches[s],
            &plan,
            &mut self.noise_rng,
            &self.device,
        );
        self.model = Some(out.model);
        self.step += 1;
        out.loss
    }

    /// `iters` steps between two device synchronisations: criterion's `iter_custom` body.
    pub fn timed(&mut self, iters: u64) -> Duration {
        sync::<B>(&self.device);
        let clock = Instant::now();
        for _ in 0..iters {
            std::hint::black_box(self.step());
        }
        sync::<B>(&self.device);
        clock.elapsed()
    }
}

/// Register a train-step bench of the case `make` builds, under criterion id `id`, recording its
/// samples under `key`. The case and its stepper are built only if criterion runs the bench (so
/// a filter skips their set-up) and once, however many samples criterion takes.
pub fn bench_case<B: AutodiffBackend>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    key: &str,
    make: impl Fn() -> Case,
    device: &B::Device,
) {
    let case = OnceCell::new();
    let mut stepper: Option<Stepper<'_, B>> = None;
    group.bench_function(id, |b| {
        let stepper = stepper.get_or_insert_with(|| Stepper::new(case.get_or_init(&make), device));
        b.iter_custom(|iters| {
            let took = stepper.timed(iters);
            record(key, iters, took);
            took
        })
    });
}

/// Wait for the device's queued work (a no-op on the CPU backend).
pub fn sync<B: Backend>(device: &B::Device) {
    B::sync(device).expect("device synchronisation");
}

/// Achieved matmul FLOP/s of the backend on square `n x n` matmuls in `precision` (operands
/// cast once, outside the clock): the best of `reps` timed products after one untimed warm-up
/// (`2 n^3` FLOPs each).
pub fn matmul_peak<B: Backend>(
    device: &B::Device,
    n: usize,
    precision: Precision,
    reps: usize,
) -> f64 {
    let (a, b) = square_operands::<B>(device, n, precision);
    let run = || {
        let c = a.clone().matmul(b.clone());
        sync::<B>(device);
        std::hint::black_box(c);
    };
    run();
    let best = (0..reps)
        .map(|_| {
            let clock = Instant::now();
            run();
            clock.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best
}

/// One core's f32 FMA peak in FLOP/s, measured: clock x FMA width, run rather than read from a
/// data sheet (a virtual machine's clock varies with its host's load, so the figure is taken in
/// the same process, minutes apart at most, as the rates divided by it).
///
/// The loop keeps 12 independent 8-wide AVX2 FMA chains in flight (enough to cover the FMA
/// latency on two FMA pipes), so it runs at the core's FMA throughput: `2 x 8 x 2 = 32` f32
/// FLOPs per cycle on a core with two 256-bit FMA units (Zen 4, which splits AVX-512 into two
/// halves, peaks at the same rate). The best of `reps` runs of about 0.2 s each. `None` on a
/// CPU without AVX2 and FMA (or not x86-64).
pub fn core_fma_peak(reps: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return None;
        }
        const ITERS: u64 = 40_000_000;
        let best = (0..reps.max(1))
            .map(|_| {
                let clock = Instant::now();
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                std::hint::black_box(unsafe { fma_chains(ITERS) });
                clock.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        Some((ITERS * FMA_CHAINS as u64 * 16) as f64 / best)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = reps;
        None
    }
}

/// Independent FMA chains in [`core_fma_peak`]'s loop.
#[cfg(target_arch = "x86_64")]
const FMA_CHAINS: usize = 12;

/// `iters` rounds of [`FMA_CHAINS`] independent `a = a * m + c` on 8-wide f32 vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iters: u64) -> f32 {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_storeu_ps,
    };
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    let mut acc: [__m256; FMA_CHAINS] = [_mm256_set1_ps(1.0); FMA_CHAINS];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let sum = acc
        .iter()
        .fold(_mm256_set1_ps(0.0), |s, &a| _mm256_add_ps(s, a));
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
    lanes.iter().sum()
}

/// Two seeded `n x n` standard-normal operands in `precision`.
pub fn square_operands<B: Backend>(
    device: &B::Device,
    n: usize,
    precision: Precision,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    B::seed(device, 1);
    let a = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<B, 2>::random([n, n], Distribution::Normal(0.0, 1.0), device);
    let dtype = match precision {
        Precision::F32 => FloatDType::F32,
        Precision::Bf16 => FloatDType::BF16,
        Precision::F16 => FloatDType::F16,
    };
    (a.cast(dtype), b.cast(dtype))
}

/// Sides of the square matmuls whose best rate the train-step table divides by (512 to 2048 on
/// the CPU, where the 512^2 product often runs fastest on the shared 2-core machine; 4096 and
/// 8192 on a GPU). The best of them is used so that the fraction of peak is not overstated.
pub fn peak_sides(device: DeviceChoice) -> &'static [usize] {
    match device {
        DeviceChoice::Cpu => &[512, 1024, 2048],
        DeviceChoice::Cuda(_) => &[4096, 8192],
    }
}

thread_local! {
    static RECORD: RefCell<BTreeMap<String, Vec<(u64, Duration)>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Remember one `iter_custom` sample of bench `id`.
pub fn record(id: &str, iters: u64, took: Duration) {
    RECORD.with(|r| {
        r.borrow_mut()
            .entry(id.into())
            .or_default()
            .push((iters, took))
    });
}

/// Median seconds per iteration over the last `samples` recorded samples of `id` (criterion's
/// measurement samples follow its warm-up calls), or `None` when `id` did not run (filtered).
pub fn seconds_per_iter(id: &str, samples: usize) -> Option<f64> {
    RECORD.with(|r| {
        let r = r.borrow();
        let all = r.get(id)?;
        let last = &all[all.len().saturating_sub(samples)..];
        let mut per: Vec<f64> = last
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, d)| d.as_secs_f64() / *n as f64)
            .collect();
        if per.is_empty() {
            return None;
        }
        per.sort_by(f64::total_cmp);
        Some(per[per.len() / 2])
    })
}

/// Whether criterion was asked only to list, test or profile the benches (then no table is
/// printed).
pub fn listing_or_testing() -> bool {
    std::env::args().any(|a| a == "--list" || a == "--test" || a == "--profile-time")
}
