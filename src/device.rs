//! Choosing where a run trains: `cpu`, `cuda` or `cuda:N` (the `cuda` cargo feature), and the
//! CPU thread count. The rest of the crate is generic over the backend; this module is the one
//! place that names concrete devices.

use crate::{Error, Result};

/// A parsed `train.device` / `--device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
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
            DeviceChoice::Cuda(_) => Err(Error::msg(
                "device 'cuda' needs a build with the cuda feature: \
                 cargo build --release --features cuda (or cargo install --path . --features cuda)",
            )),
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

/// The autodiff CUDA backend.
#[cfg(feature = "cuda")]
pub type CudaAutodiff = burn::backend::Autodiff<burn::backend::Cuda>;

/// CUDA device `n`.
#[cfg(feature = "cuda")]
pub fn cuda_device(n: usize) -> burn::backend::cuda::CudaDevice {
    burn::backend::cuda::CudaDevice::new(n)
}

/// Touch CUDA device `n` once; burn panics when the driver library cannot be loaded, which
/// becomes a clear error here.
#[cfg(feature = "cuda")]
fn cuda_probe(n: usize) -> Result<()> {
    use burn::tensor::Tensor;
    let probe = std::panic::catch_unwind(|| {
        let device = cuda_device(n);
        let t = Tensor::<burn::backend::Cuda, 1>::from_floats([1.0f32, 2.0], &device);
        t.sum().into_scalar()
    });
    probe.map(|_| ()).map_err(|_| {
        Error::msg(format!(
            "CUDA device {n} is not usable: no NVIDIA driver/GPU could be loaded on this machine \
             (use --device cpu)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_build() {
        let e = DeviceChoice::Cuda(0)
            .check_available()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }
}
