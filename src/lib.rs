//! # lpc-bench
//!
//! A testbed for Latent Preference Coding (LPC, Gong et al., ICML 2025) and its peers
//! (DPO, IPO, SimPO, cDPO, rDPO) on synthetic preference worlds with known latent types, and on
//! real preference data. See `README.md` and `docs/METHOD.md`.
//!
//! The data flow, one module per arrow:
//! `scenario → synth (world) → data (pairs, batches) → model → objective → train → metrics →
//! results`, run end to end by `experiment`, with `cli` and `commands` on top (no library module
//! imports them) and `main.rs` a few lines long.

#![warn(missing_docs)]

pub mod baselines;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod direction;
pub mod error;
pub mod evaluate;
pub mod experiment;
pub mod gguf;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod pca;
pub mod plan;
pub mod plots;
pub mod probe;
pub mod progress;
pub mod report;
pub mod results;
pub mod rng;
pub mod scenario;
pub mod sweep;
pub mod synth;
pub mod train;

pub use error::{Error, Result};
