//! Integration tests of the real `lpc-bench` binary, one module per area.

#[path = "cli/generate.rs"]
mod generate;
#[path = "cli/limits.rs"]
mod limits;
#[path = "cli/report.rs"]
mod report;
#[path = "cli/sweep.rs"]
mod sweep;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Run the binary with `args`.
pub fn lpc_bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .args(args)
        .output()
        .expect("the lpc-bench binary runs")
}

/// A shipped scenario file.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}
