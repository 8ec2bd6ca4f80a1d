//! The shipped GPU scenarios (`scenarios/gpu/`): every file validates; the GPU-sized ones meet
//! issue 7's sizes (d_model >= 512, >= 6 layers, sequences >= 128 tokens, >= 100k training
//! pairs, device cuda); `gpu/smoke.toml` is `smoke.toml` with only the name and the device
//! changed (so the GPU check may compare their losses); `gpu/smoke-bf16.toml` adds only bf16.

use std::path::{Path, PathBuf};

use lpc_bench::scenario::{Precision, Scenario};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn load(rel: &str) -> Scenario {
    Scenario::load(&dir().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_inner()
}

#[test]
fn gpu_sized_scenarios_meet_the_issue_sizes() {
    let mut sized = 0;
    for entry in std::fs::read_dir(dir().join("gpu")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let s = load(&format!("gpu/{name}"));
        assert!(
            s.train.device.starts_with("cuda"),
            "{name}: device {}",
            s.train.device
        );
        if name.starts_with("smoke") {
            continue;
        }
        let w = s.world();
        let seq = w.prompt_len + 1 + w.response_len;
        assert!(
            s.model.d_model >= 512,
            "{name}: d_model {}",
            s.model.d_model
        );
        assert!(s.model.layers >= 6, "{name}: layers {}", s.model.layers);
        assert!(seq >= 128, "{name}: sequence {seq}");
        assert!(
            s.data.train_pairs >= 100_000,
            "{name}: {} pairs",
            s.data.train_pairs
        );
        sized += 1;
    }
    assert!(sized >= 5, "only {sized} GPU-sized scenarios");
}

#[test]
fn gpu_smoke_is_the_cpu_smoke_on_cuda() {
    let cpu = load("smoke.toml");
    let mut gpu = load("gpu/smoke.toml");
    assert_eq!(gpu.train.device, "cuda");
    gpu.name = cpu.name.clone();
    gpu.description = cpu.description.clone();
    gpu.train.device = cpu.train.device.clone();
    assert_eq!(gpu.to_toml().unwrap(), cpu.to_toml().unwrap());

    let mut bf16 = load("gpu/smoke-bf16.toml");
    assert_eq!(bf16.train.precision, Precision::Bf16);
    bf16.name = cpu.name.clone();
    bf16.description = cpu.description.clone();
    bf16.train.device = cpu.train.device.clone();
    bf16.train.precision = Precision::F32;
    assert_eq!(bf16.to_toml().unwrap(), cpu.to_toml().unwrap());
}
