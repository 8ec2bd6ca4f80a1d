//! Choosing where a run trains: `cpu`, `cuda` or `cuda:N` (the `cuda` cargo feature), and the
//! CPU thread count. The rest of the crate is generic over the backend; this module is the one
//! place that names concrete devices.

use crate::{Error, Result};
use burn::module::Module;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};

/// A parsed `train.device` / `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The host CPU.
    Cpu,
    /// CUDA device index.
    Cuda(usize),
}

impl DeviceChoice {
    /// Parse `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(s: &str) -> Result<DeviceChoice> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    Error::msg(format!("device must be cpu, cuda or cuda:N, got '{s}'"))
                }),
        }
    }

    /// Fail early, with a message that says what to do, when the device cannot be used: CUDA in
    /// a build without the `cuda` feature, or CUDA requested where no driver can be loaded.
    pub fn check_available(self) -> Result<()> {
        match self {
            DeviceChoice::Cpu => Ok(()),
            #[cfg(not(feature = "cuda"))]
            DeviceChoice::Cuda(_) => Err(cuda_not_built()),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda(n) => cuda_probe(n),
        }
    }
}

/// Use `threads` CPU threads for the tensor backend (0 = all cores). The CPU backends run on
/// rayon's global pool, which can be sized once per process; later calls keep the first size.
pub fn set_cpu_threads(threads: usize) {
    if threads > 0 {
        // An error only means the pool was already built (e.g. by an earlier run in this
        // process); the first size stays.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global();
    }
}

/// Build a module with the CPU backend's seeded generator, then copy its parameters, bit for
/// bit, onto `device` of backend `B` (through an in-memory f32 record).
///
/// burn's backends draw different random streams from the same seed, so a module initialised
/// on the GPU would differ from the one the CPU draws. Initialising on the host makes a run's
/// starting point (and so its results, up to floating-point order) the same on every device.
///
/// `skeleton` builds the same module on `B` (its values are replaced; build it before this call
/// draws, so that with `B` = the CPU backend the generator ends where a direct build leaves it);
/// `host` builds it on the CPU backend after `seed` is set there.
pub fn init_on_host<B, M, H>(
    seed: u64,
    skeleton: M,
    host: impl FnOnce(&burn::tensor::Device<crate::model::CpuBackend>) -> H,
    device: &B::Device,
) -> M
where
    B: Backend,
    M: Module<B>,
    H: Module<crate::model::CpuBackend>,
{
    let cpu = Default::default();
    crate::model::CpuBackend::seed(&cpu, seed);
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes =
        Recorder::<crate::model::CpuBackend>::record(&recorder, host(&cpu).into_record(), ())
            .expect("in-memory record of a module");
    let record = Recorder::<B>::load(&recorder, bytes, device)
        .expect("the same module's record loads on any backend");
    skeleton.load_record(record)
}

/// A piece of work generic over the training backend, run by [`dispatch`] on the backend a
/// device choice names: the run itself, or a bench.
pub trait OnBackend {
    /// What the work returns.
    type Output;
    /// Do the work on autodiff backend `B` (its inner backend is `B::InnerBackend`) and
    /// `device`; `compiles_kernels` says whether `B` JIT-compiles its kernels (a GPU), which the
    /// progress of a first step says.
    fn on<B: AutodiffBackend>(self, device: B::Device, compiles_kernels: bool) -> Self::Output;
}

/// Run `job` on the backend that `device` names, CUDA with or without kernel `fusion` (the CPU
/// backend has none: `fusion` is ignored there). CUDA in a build without the `cuda` feature is
/// the error [`DeviceChoice::check_available`] gives.
#[cfg_attr(not(feature = "cuda"), expect(unused_variables))]
pub fn dispatch<J: OnBackend>(device: DeviceChoice, fusion: bool, job: J) -> Result<J::Output> {
    match device {
        DeviceChoice::Cpu => Ok(job.on::<crate::model::CpuAutodiff>(Default::default(), false)),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(n) if fusion => Ok(job.on::<CudaAutodiff>(cuda_device(n), true)),
        #[cfg(feature = "cuda")]
        DeviceChoice::Cuda(n) => Ok(job.on::<CudaUnfusedAutodiff>(cuda_device(n), true)),
        #[cfg(not(feature = "cuda"))]
        DeviceChoice::Cuda(_) => Err(cuda_not_built()),
    }
}

/// What a CUDA device asked of a build without the `cuda` feature says.
#[cfg(not(feature = "cuda"))]
fn cuda_not_built() -> Error {
    Error::msg(
        "device 'cuda' needs a build with the cuda feature: \
         cargo build --release --features cuda (or cargo install --path . --features cuda)",
    )
}

/// The CUDA backend with kernel fusion (burn-cuda's default): chains of element-wise operations
/// are recorded and compiled into fused kernels, one per chain and shape.
#[cfg(feature = "cuda")]
pub type CudaFused = burn_cuda::Cuda;

/// The CUDA backend without fusion: every operation launches its own kernel (fewer, more
/// general kernels to compile; more launches and memory traffic per step).
#[cfg(feature = "cuda")]
pub type CudaUnfused = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>;

/// The autodiff CUDA backend, fused (`train.fusion = true`, the default).
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<CudaFused>;

/// The autodiff CUDA backend without fusion (`train.fusion = false`).
#[cfg(feature = "cuda")]
pub type CudaUnfusedAutodiff = burn::backend::Autodiff<CudaUnfused>;

/// CUDA device `n`.
#[cfg(feature = "cuda")]
pub fn cuda_device(n: usize) -> burn_cuda::CudaDevice {
    burn_cuda::CudaDevice::new(n)
}

/// Touch CUDA device `n` once; burn panics when the driver library cannot be loaded, which
/// becomes a clear error here. The default panic hook is silenced while probing (and restored
/// after), so the library's panic messages and backtraces, from this thread or a runtime thread
/// it starts, do not precede the error; the first panic's text is kept for the error.
#[cfg(feature = "cuda")]
fn cuda_probe(n: usize) -> Result<()> {
    use burn::tensor::Tensor;
    use std::sync::{Arc, Mutex};
    let first: Arc<Mutex<Option<String>>> = Arc::default();
    let previous = std::panic::take_hook();
    {
        let first = Arc::clone(&first);
        std::panic::set_hook(Box::new(move |info| {
            let text = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let mut slot = first.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(text);
        }));
    }
    let probe = std::panic::catch_unwind(|| {
        let device = cuda_device(n);
        let t = Tensor::<CudaFused, 1>::from_floats([1.0f32, 2.0], &device);
        t.sum().into_scalar()
    });
    std::panic::set_hook(previous);
    let cause = first.lock().unwrap_or_else(|p| p.into_inner()).take();
    probe.map(|_| ()).map_err(|_| {
        let cause = cause
            .map(|c| format!(" ({})", c.lines().next().unwrap_or("").trim()))
            .unwrap_or_default();
        Error::msg(format!(
            "CUDA device {n} is not usable: no NVIDIA driver/GPU could be loaded on this machine{cause} \
             (use --device cpu)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_builds_in_parallel_threads_are_identical_under_the_lock() {
        // Oracle: a seeded build is a pure function of the seed when nothing else draws between
        // the seed and the build; the lock guarantees that across threads of one process.
        use crate::model::CpuBackend;
        use burn::nn::LinearConfig;
        let build = || {
            let _rng = crate::rng::backend_rng_lock();
            let device = Default::default();
            CpuBackend::seed(&device, 9);
            let l: burn::nn::Linear<CpuBackend> =
                crate::model::backbone::materialise(LinearConfig::new(16, 16).init(&device));
            l.weight.val().into_data().to_vec::<f32>().unwrap()
        };
        let first = build();
        let all: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(build)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(all.iter().all(|w| *w == first));
    }

    #[test]
    fn parses_devices() {
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::parse("cuda").unwrap(), DeviceChoice::Cuda(0));
        assert_eq!(
            DeviceChoice::parse("cuda:3").unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert!(DeviceChoice::parse("gpu").is_err());
        assert!(DeviceChoice::parse("cuda:x").is_err());
    }

    #[test]
    fn host_initialisation_equals_a_direct_build_and_leaves_the_generator_alike() {
        let _rng = crate::rng::backend_rng_lock();
        // On the CPU backend (and its autodiff wrapper) init_on_host must give exactly the
        // module a direct seeded build gives, and leave the generator where that build leaves
        // it: both are checked by comparing weights and the next random draw.
        use crate::model::{CpuAutodiff, CpuBackend};
        use burn::nn::{Linear, LinearConfig};
        use burn::tensor::{Distribution, Tensor};
        fn weights<B: Backend>(l: &Linear<B>) -> Vec<f32> {
            l.weight
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap()
        }
        fn next_draw<B: Backend>(device: &B::Device) -> Vec<f32> {
            Tensor::<B, 1>::random([4], Distribution::Default, device)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .unwrap()
        }
        let config = LinearConfig::new(5, 3);
        let device = Default::default();
        CpuBackend::seed(&device, 42);
        // Materialised at once (burn draws lazily), as every model config of the crate does.
        let direct: Linear<CpuBackend> = crate::model::backbone::materialise(config.init(&device));
        let (direct_w, direct_next) = (weights(&direct), next_draw::<CpuBackend>(&device));

        CpuAutodiff::seed(&device, 42);
        let skeleton: Linear<CpuAutodiff> =
            crate::model::backbone::materialise(config.init(&device));
        let hosted = init_on_host(42, skeleton, |cpu| config.init(cpu), &device);
        assert_eq!(weights(&hosted), direct_w);
        assert_eq!(next_draw::<CpuAutodiff>(&device), direct_next);
        assert!(
            hosted.weight.val().is_require_grad(),
            "still a trainable parameter"
        );
    }

    /// Records which backend [`dispatch`] chose, by its type name.
    struct Which;
    impl OnBackend for Which {
        type Output = (&'static str, bool);
        fn on<B: AutodiffBackend>(
            self,
            _device: B::Device,
            compiles_kernels: bool,
        ) -> Self::Output {
            (std::any::type_name::<B>(), compiles_kernels)
        }
    }

    #[test]
    fn the_cpu_runs_on_the_cpu_backend_with_or_without_fusion() {
        // Oracle: the crate's CPU training backend, named by its type; the CPU compiles nothing.
        let cpu = (std::any::type_name::<crate::model::CpuAutodiff>(), false);
        assert_eq!(dispatch(DeviceChoice::Cpu, true, Which).unwrap(), cpu);
        assert_eq!(dispatch(DeviceChoice::Cpu, false, Which).unwrap(), cpu);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build() {
        let e = DeviceChoice::Cuda(0)
            .check_available()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features cuda"), "{e}");
        for fusion in [true, false] {
            let e = dispatch(DeviceChoice::Cuda(0), fusion, Which)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--features cuda"), "{e}");
        }
    }
}
