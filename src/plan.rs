//! Planning a run before any work: hard sanity bounds on every size field of a scenario, and a
//! resource estimate (memory by part, and work) computed from a checked scenario, compared with
//! the memory this machine has available.
//!
//! Owns: the bounds table (`BOUNDS`-style constants and [`check_bounds`], called first by
//! [`Scenario::validate`]), the estimate ([`estimate`]), the memory budget ([`memory_budget`]) and
//! the refusal ([`check_fits`]). Every function here is arithmetic on the scenario's numbers (and,
//! for a pretrained model, on its file's header): it never allocates anything proportional to a
//! size field, so it is safe on any scenario file (the `scenario_fuzz` test holds it to that).
//!
//! # Bounds
//! Each size field has an upper bound far above any run this crate is meant for; a value above
//! it is an error naming the field and the bound (`data.train_pairs must be <= 10000000 (a
//! sanity bound), got 1000000000000`). The bounds keep every product of sizes inside `u64`, so
//! no arithmetic on a checked scenario can overflow. Combinations that pass the bounds but do not
//! fit the machine are caught by the memory estimate.
//!
//! # Memory estimate
//! In bytes, by part, with `N` the pairs of every split (train + eval), `Lp`, `Lr` the prompt and
//! response lengths (real data: `max_prompt_tokens`, `max_response_tokens`), `L = Lp + 1 + Lr`,
//! `d`, `f`, `n`, `h` the width, feed-forward width, layers and heads, `V` the model vocabulary
//! (world vocab + 1; real data 257 for bytes, [`ASSUMED_TOKENIZER_VOCAB`] for a tokenizer file),
//! `B` the batch size, `K` the largest codebook of an `lpc-*` method, `S`, `T`, `m` sources,
//! types and feature dimension:
//! ```text
//! pairs        N (136 + 4 (Lp + 2 Lr))                       token vectors and labels
//! reference    N (16 + 2 (48 + 4 (Lp + Lr)))                 cached log-probs, and the scored copies
//! warm-up      W (48 + 4 (Lp + Lr)),  W = clamp(warmup_steps B, 1, 100000) + 500
//! batch plan   max over methods of steps (24 + 8 min(B, train_pairs))
//! world        8 (V m [+ V² m bigram] + 2 T m + T² + 4 S V + 3 S T [+ 3 S V² markov]
//!                 + T V [T V² bigram] + 2 annotators)        synthetic worlds only
//! model        4 (5 P + 4 P_h)       reference, method model, best checkpoint, encoded checkpoint
//! optimiser    12 (P + P_h)          gradients and Adam's two moments
//! batches      max(train step, eval chunk, sampling, warm-up step) activations, f32:
//!              train step  8 · 2B · (n a + 3 L V),  a = L (12 d + 2 f) + 2 h L²
//!              eval chunk  4 · 2 · 256 (1 + C) · (a + 3 L V)      (C: annotator context)
//! codes        K (eval · 60 + min(train, 4000) · 16)         per-pair code probabilities and rows
//! ```
//! with `P` the policy's parameters and `P_h` the largest latent head's. On a CUDA device the
//! model, optimiser and batches parts live on the device and are compared with the device budget.
//! The estimate is deliberately on the high side; it is a guard against absurd runs, not a
//! profiler.
//!
//! # Pretrained models
//! With `model.pretrained` the sizes come from the model's GGUF header (its metadata and tensor
//! table, read once per estimate without the weights; the `model.*` width fields do not apply): `d`, `f`, `n`, `h`, `h_kv`, `V` from its `llama.*`
//! metadata, `P` its parameters and `P_t` those that train (`model.trainable`: all, or the last
//! `K` blocks and the final norm, and the output projection with `model.train_head`), `n_t` the
//! blocks that train. There is no warm-up, and:
//! ```text
//! model        4 (P + 2 P_t + 4 P_h)                 f32 weights, the start and best copies of what trains
//! optimiser    12 (P_t + P_h)
//! prefix       4 · 2N · L · d                        frozen-prefix states (only when blocks are frozen)
//! batches      max(8 · max(min(2N, 512), 2 min(eval, 256)) · Lr · V,    logits and log-softmax of a
//!                  16 · 2B · Lr · V + 8 · 2B · n_t · a)                 scoring chunk; a training step
//! work         2N F + per method S · 2B · 3 F_t + evaluations · eval · 2 F_t,
//!              F = L n b + Lr d V,  F_t = L n_t b + Lr d V,  b = 2 d² + 2 d d_kv + 3 d f + 2 L d
//! ```
//! (`d_kv = d h_kv / h`). Checked against two measured peaks (`tests/smollm2.rs`): the shipped
//! CPU scenario, 5.5 GiB estimated against 5.8 GiB measured, and the same with 64-token
//! responses and 256 validation pairs, 13.2 GiB against 13.6 GiB: a few percent low (the
//! process's own baseline is not counted), not high. A model file that cannot be read is named
//! in the estimate and its sizes are left out; the run then fails with the loader's error.
//!
//! # Budget
//! Host memory: `LPC_BENCH_MEMORY_LIMIT` (bytes, or with a unit: `512MiB`, `4GiB`, `2G`) when set,
//! else `MemAvailable` of `/proc/meminfo`, else [`FALLBACK_MEMORY_CAP`] (8 GiB). Device memory
//! (CUDA runs): `LPC_BENCH_DEVICE_MEMORY_LIMIT`, else [`FALLBACK_DEVICE_CAP`] (80 GiB).
//!
//! # Work
//! In multiply-adds of the backbone (as `sweep::relative_cost`), with
//! `F = L (n (4 d² + 2 d f + 2 L d) + d V)` one forward pass of one sequence:
//! ```text
//! warm-up      warmup_steps · B · 3F
//! reference    2 N F
//! per method   S · 2B · 3F  +  (⌊S / eval_every⌋ + 1) · eval · 2F (1 + C)
//!              + sampling (500 + 200 K) · Lr · F  (policy quality; steering for lpc methods)
//! ```
//! and seconds ≈ [`estimated_seconds`]`(work)` on one idle core.

use crate::scenario::{LatentKind, MethodName, RuleError, Scenario};
use crate::{Error, Result};

/// Largest pair count of any split (`data.train_pairs`, `data.eval_pairs`).
pub const MAX_PAIRS: u64 = 10_000_000;
/// Largest number of optimiser steps (train.steps, methods[].steps, model.warmup_steps,
/// train.lr_warmup_steps, and the steps `train.epochs` resolves to).
pub const MAX_STEPS: u64 = 10_000_000;
/// Largest `train.epochs`.
pub const MAX_EPOCHS: u64 = 1_000_000;
/// Largest `train.batch_size`.
pub const MAX_BATCH: u64 = 1_000_000;
/// Largest `train.threads`.
pub const MAX_THREADS: u64 = 4096;
/// Largest `model.d_model`, `methods[].latent_dim`.
pub const MAX_WIDTH: u64 = 16_384;
/// Largest `model.d_ff`.
pub const MAX_D_FF: u64 = 262_144;
/// Largest `model.layers`.
pub const MAX_LAYERS: u64 = 256;
/// Largest `world.vocab`.
pub const MAX_VOCAB: u64 = 1_000_000;
/// Largest sequence part: `world.prompt_len`, `world.response_len`, `data.max_prompt_tokens`,
/// `data.max_response_tokens`.
pub const MAX_LEN: u64 = 65_536;
/// Largest `world.sources`.
pub const MAX_SOURCES: u64 = 65_536;
/// Largest `world.types`.
pub const MAX_TYPES: u64 = 1024;
/// Largest `world.feature_dim`.
pub const MAX_FEATURE_DIM: u64 = 65_536;
/// Largest `world.annotators`.
pub const MAX_ANNOTATORS: u64 = 10_000_000;
/// Largest `methods[].codebook`.
pub const MAX_CODEBOOK: u64 = 65_536;
/// Largest `methods[].context`.
pub const MAX_CONTEXT: u64 = 1024;
/// Largest number of methods in one scenario.
pub const MAX_METHODS: u64 = 1024;

/// Host memory assumed when neither `LPC_BENCH_MEMORY_LIMIT` nor `/proc/meminfo` tells.
pub const FALLBACK_MEMORY_CAP: f64 = 8.0 * GIB;
/// Device memory assumed for CUDA runs unless `LPC_BENCH_DEVICE_MEMORY_LIMIT` is set.
pub const FALLBACK_DEVICE_CAP: f64 = 80.0 * GIB;
/// Environment variable overriding the host memory budget.
pub const MEMORY_LIMIT_ENV: &str = "LPC_BENCH_MEMORY_LIMIT";
/// Environment variable overriding the device memory budget.
pub const DEVICE_MEMORY_LIMIT_ENV: &str = "LPC_BENCH_DEVICE_MEMORY_LIMIT";
/// Model vocabulary assumed for a real-data scenario with a `tokenizer.json` (not read when
/// planning).
pub const ASSUMED_TOKENIZER_VOCAB: u64 = 262_144;

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Fixed seconds per cell in the `--dry-run` estimate: world generation, scoring, sampling
/// and writing, which [`crate::sweep::relative_cost`] leaves out. See
/// [`CALIBRATION_SECONDS_PER_UNIT`] for the fit.
pub const CALIBRATION_OVERHEAD_S: f64 = 1.0;

/// Seconds per unit of [`crate::sweep::relative_cost`] in the `--dry-run` estimate: CPU seconds of one
/// cell on one thread (`--threads-per-cell 1`), i.e. its wall time on an idle core. Measured on
/// the development machine (2-core x86-64 VM, release build, flex backend) as user CPU time of
/// `lpc-bench sweep` over cells of the two-opposed world (V = 16, lengths 6, T = 2), and fitted
/// by eye through the mid and large cells:
/// ```text
/// seconds ≈ CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT · cost
/// cell                                                      cost      measured   estimate
/// scenarios/smoke.toml (d 32, 1 layer, 400 pairs, 60 steps) 2.6e9     0.3 s      1.1 s
/// d 64, 1 layer, 2000/500 pairs, 200 steps (ipo, lpc-simpo) 7.8e10    4.6 s      4.4 s
/// d 64, 1 layer, 2000/500 pairs, 250 steps (dpo, lpc-dpo)   1.1e11    6.5 s      6.0 s
/// d 64, 2 layers, 8000/2000 pairs, 500 steps (dpo, lpc-dpo) 5.4e11    24.5 s     24.6 s
/// ```
/// Not modelled: the steering table samples 200 prompts per code, so an `lpc-*` cell with
/// K = 256 codes takes about 6 s (1 layer) to 12 s (2 layers) more than estimated. A guide for
/// choosing `--jobs`, shards and SLURM time limits; a loaded machine is slower.
pub const CALIBRATION_SECONDS_PER_UNIT: f64 = 4.4e-11;

/// Estimated seconds of one cell of relative cost `cost`:
/// ```text
/// seconds = CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT · cost
/// ```
pub fn estimated_seconds(cost: f64) -> f64 {
    CALIBRATION_OVERHEAD_S + CALIBRATION_SECONDS_PER_UNIT * cost
}

/// A duration for people: `8.2s`, `3m12s`, `2h05m`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else {
        let minutes = (s / 60.0).round() as u64;
        format!("{}h{:02}m", minutes / 60, minutes % 60)
    }
}

fn bound(field: impl Into<String>, value: u64, max: u64) -> Result<(), RuleError> {
    if value > max {
        Err(RuleError {
            field: field.into(),
            rule: format!("must be <= {max} (a sanity bound), got {value}"),
        })
    } else {
        Ok(())
    }
}

/// Check every size field against its bound (see the module docs). Runs before every other rule,
/// so later rules and the estimate only see sizes whose products fit in `u64`.
pub fn check_bounds(s: &Scenario) -> Result<(), RuleError> {
    let u = |v: usize| v as u64;
    for (field, count) in pair_counts(s) {
        bound(field, u(count), MAX_PAIRS)?;
    }
    bound("train.steps", u(s.train.steps), MAX_STEPS)?;
    bound("train.batch_size", u(s.train.batch_size), MAX_BATCH)?;
    bound(
        "train.lr_warmup_steps",
        u(s.train.lr_warmup_steps),
        MAX_STEPS,
    )?;
    bound("train.threads", u(s.train.threads), MAX_THREADS)?;
    if let Some(e) = s.train.epochs {
        bound("train.epochs", u(e), MAX_EPOCHS)?;
        // ceil(epochs · train_pairs / batch_size), in u128: no overflow.
        let steps =
            (e as u128 * s.data.train_pairs as u128).div_ceil(s.train.batch_size.max(1) as u128);
        if steps > MAX_STEPS as u128 {
            return Err(RuleError {
                field: "train.epochs".into(),
                rule: format!(
                    "gives {steps} steps (train.epochs = {e} × data.train_pairs = {} / \
                     train.batch_size = {}), more than the sanity bound of {MAX_STEPS}",
                    s.data.train_pairs, s.train.batch_size
                ),
            });
        }
    }
    let m = &s.model;
    bound("model.d_model", u(m.d_model), MAX_WIDTH)?;
    bound("model.layers", u(m.layers), MAX_LAYERS)?;
    bound("model.heads", u(m.heads), MAX_WIDTH)?;
    if let Some(f) = m.d_ff {
        bound("model.d_ff", u(f), MAX_D_FF)?;
    }
    bound("model.warmup_steps", u(m.warmup_steps), MAX_STEPS)?;
    if let Some(w) = &s.world {
        let f = |n: &str| format!("world.{n}");
        bound(f("vocab"), u(w.vocab), MAX_VOCAB)?;
        bound(f("prompt_len"), u(w.prompt_len), MAX_LEN)?;
        bound(f("response_len"), u(w.response_len), MAX_LEN)?;
        bound(f("sources"), u(w.sources), MAX_SOURCES)?;
        bound(f("types"), u(w.types), MAX_TYPES)?;
        bound(f("feature_dim"), u(w.feature_dim), MAX_FEATURE_DIM)?;
        bound(f("annotators"), u(w.annotators), MAX_ANNOTATORS)?;
    }
    if let Some(t) = s.data.max_prompt_tokens {
        bound("data.max_prompt_tokens", u(t), MAX_LEN)?;
    }
    if let Some(t) = s.data.max_response_tokens {
        bound("data.max_response_tokens", u(t), MAX_LEN)?;
    }
    bound("methods", u(s.methods.len()), MAX_METHODS)?;
    for (i, method) in s.methods.iter().enumerate() {
        let f = |n: &str| format!("methods[{i}].{n}");
        if let Some(k) = method.codebook {
            bound(f("codebook"), u(k), MAX_CODEBOOK)?;
        }
        if let Some(c) = method.context {
            bound(f("context"), u(c), MAX_CONTEXT)?;
        }
        if let Some(d) = method.latent_dim {
            bound(f("latent_dim"), u(d), MAX_WIDTH)?;
        }
        if let Some(st) = method.steps {
            bound(f("steps"), u(st), MAX_STEPS)?;
        }
    }
    Ok(())
}

/// The pair count of every split, with its field. A new split is one more line here.
pub fn pair_counts(s: &Scenario) -> Vec<(&'static str, usize)> {
    vec![
        ("data.train_pairs", s.data.train_pairs),
        ("data.val_pairs", s.data.val_pairs()),
        ("data.eval_pairs", s.data.eval_pairs),
    ]
}

/// One part of the memory estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// `pairs`, `model`, `batches`, ...
    pub name: &'static str,
    /// Estimated peak bytes.
    pub bytes: f64,
    /// Whether the part lives on the training device (CUDA runs) rather than the host.
    pub on_device: bool,
    /// The fields that set the size, as `field = value`.
    pub fields: Vec<String>,
}

/// The resource estimate of a checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Peak memory by part.
    pub parts: Vec<Part>,
    /// Backbone multiply-adds of the whole run.
    pub work: f64,
    /// Optimiser steps of each method, `(label, steps)`.
    pub steps: Vec<(String, u64)>,
    /// Whether the run trains on a CUDA device.
    pub cuda: bool,
}

impl Estimate {
    /// Bytes on the host (everything on the CPU).
    pub fn host_bytes(&self) -> f64 {
        self.parts
            .iter()
            .filter(|p| !(self.cuda && p.on_device))
            .map(|p| p.bytes)
            .sum()
    }
    /// Bytes on the CUDA device (0 on the CPU).
    pub fn device_bytes(&self) -> f64 {
        self.parts
            .iter()
            .filter(|p| self.cuda && p.on_device)
            .map(|p| p.bytes)
            .sum()
    }
    /// The estimate restricted to the parts named (e.g. `generate` holds only the world).
    pub fn only(mut self, names: &[&str]) -> Estimate {
        self.parts.retain(|p| names.contains(&p.name));
        self
    }

    /// Estimated wall seconds on one idle core (see [`estimated_seconds`]).
    pub fn seconds(&self) -> f64 {
        estimated_seconds(self.work)
    }

    /// The estimate as text lines (no trailing newline), each starting with `prefix`.
    pub fn lines(&self, prefix: &str, budget: &Budget) -> Vec<String> {
        let mut out = vec![format!(
            "{prefix}resources (estimate, see README \"Resource limits\"):"
        )];
        for p in &self.parts {
            let place = if self.cuda && p.on_device {
                " (device)"
            } else {
                ""
            };
            out.push(format!(
                "{prefix}  {:<11} {:>10}{place}  {}",
                p.name,
                human_bytes(p.bytes),
                p.fields.join(", ")
            ));
        }
        out.push(format!(
            "{prefix}  {:<11} {:>10}  of {} available ({})",
            "host total",
            human_bytes(self.host_bytes()),
            human_bytes(budget.host),
            budget.host_source
        ));
        if self.cuda {
            out.push(format!(
                "{prefix}  {:<11} {:>10}  of {} ({})",
                "device",
                human_bytes(self.device_bytes()),
                human_bytes(budget.device),
                budget.device_source
            ));
        }
        let steps: Vec<String> = self.steps.iter().map(|(l, s)| format!("{l} {s}")).collect();
        out.push(format!("{prefix}  steps       {}", steps.join(", ")));
        out.push(format!(
            "{prefix}  work        {:.2e} multiply-adds, about {} on one idle core",
            self.work,
            format_duration(self.seconds())
        ));
        out
    }
}

/// Bytes for people: `812 B`, `3.4 MiB`, `1.2 TiB`.
pub fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b.max(0.0);
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Steps a method trains for: its `steps`, or `ceil(epochs · train_pairs / batch_size)`.
fn method_steps(s: &Scenario, steps: Option<usize>) -> u64 {
    match s.train.epochs {
        Some(e) => ((e as u128 * s.data.train_pairs as u128)
            .div_ceil(s.train.batch_size.max(1) as u128)
            .max(1))
        .min(u64::MAX as u128) as u64,
        None => steps.unwrap_or(s.train.steps) as u64,
    }
}

/// The resource estimate of a scenario that passed [`Scenario::validate`] (see the module docs
/// for every formula). Pure arithmetic in `f64`: it cannot overflow or allocate by size.
pub fn estimate(s: &Scenario) -> Estimate {
    let real = s.is_real_data();
    let (lp, lr, vm, world_fields) = if real {
        let vm = if s.data.tokenizer() == crate::scenario::BYTE_TOKENIZER {
            257
        } else {
            ASSUMED_TOKENIZER_VOCAB
        };
        (
            s.data.max_prompt_tokens() as f64,
            s.data.max_response_tokens() as f64,
            vm as f64,
            vec![
                format!("data.max_prompt_tokens = {}", s.data.max_prompt_tokens()),
                format!(
                    "data.max_response_tokens = {}",
                    s.data.max_response_tokens()
                ),
            ],
        )
    } else {
        let w = s.world();
        let (p, r, v) = (w.prompt_len, w.response_len, w.vocab);
        (
            p as f64,
            r as f64,
            (v + 1) as f64,
            vec![
                format!("world.prompt_len = {p}"),
                format!("world.response_len = {r}"),
            ],
        )
    };
    let counts = pair_counts(s);
    let n: f64 = counts.iter().map(|(_, c)| *c as f64).sum();
    let count_fields: Vec<String> = counts.iter().map(|(f, c)| format!("{f} = {c}")).collect();
    let with = |a: &[String], b: &[String]| -> Vec<String> { a.iter().chain(b).cloned().collect() };
    let len = lp + 1.0 + lr;
    let m = &s.model;
    let pretrained = pretrained_sizes(s);
    let (d, f, layers, heads, vm) = match &pretrained {
        Some(Ok(p)) => (
            p.config.d_model as f64,
            p.config.d_ff as f64,
            p.config.n_layers as f64,
            p.config.n_heads as f64,
            p.config.vocab as f64,
        ),
        _ => (
            m.d_model as f64,
            m.d_ff.unwrap_or(4 * m.d_model) as f64,
            m.layers as f64,
            m.heads as f64,
            vm,
        ),
    };
    let b = s.train.batch_size as f64;
    let train_pairs = s.data.train_pairs as f64;
    // Evaluations during training read the validation pairs; the held-out pairs are scored
    // once at the end. Both are counted as evaluated pairs here (an upper bound).
    let eval_pairs = (s.data.eval_pairs + s.data.val_pairs()) as f64;
    let model_fields = match &pretrained {
        Some(Ok(p)) => p.fields.clone(),
        Some(Err(why)) => vec![why.clone()],
        None => vec![
            format!("model.d_model = {}", m.d_model),
            format!("model.layers = {}", m.layers),
            format!("model.d_ff = {}", m.d_ff.unwrap_or(4 * m.d_model)),
            if real {
                format!("model vocabulary = {vm}")
            } else {
                format!("world.vocab = {}", vm - 1.0)
            },
        ],
    };

    // Methods: steps, largest codebook, context, latent heads.
    let mut steps = Vec::new();
    let (mut max_k, mut max_head, mut max_context, mut max_steps) = (0.0f64, 0.0f64, 0.0f64, 0u64);
    let mut k_field = String::new();
    let mut work_methods = 0.0;
    let world = (!real).then(|| s.world());
    let types = world.as_ref().map_or(2, |w| w.types) as f64;
    let forward = len * (layers * (4.0 * d * d + 2.0 * d * f + 2.0 * len * d) + d * vm);
    for (i, spec) in s.methods.iter().enumerate() {
        let st = method_steps(s, spec.steps);
        steps.push((spec.label(), st));
        max_steps = max_steps.max(st);
        let name = MethodName::parse(&spec.method);
        let latent = name.map_or(LatentKind::None, |n| n.latent);
        let k = match latent {
            LatentKind::Lpc => spec.codebook.unwrap_or(8) as f64,
            LatentKind::Oracle => types,
            _ => 0.0,
        };
        let head = match latent {
            LatentKind::Lpc | LatentKind::Oracle => {
                k * d + (d * d + d + d * k + k) + (2.0 * d * d + d + d * k + k)
            }
            LatentKind::Gaussian => {
                let ld = spec.latent_dim.unwrap_or(m.d_model) as f64;
                (3.0 * d * d + 2.0 * d + 4.0 * d * ld + 4.0 * ld) + ld * d
            }
            LatentKind::None => 0.0,
        };
        max_head = max_head.max(head);
        if latent == LatentKind::Lpc && k > max_k {
            max_k = k;
            k_field = format!("methods[{i}].codebook = {k}");
        }
        let c = spec.context.unwrap_or(0) as f64;
        max_context = max_context.max(c);
        let evals = (st / s.train.eval_every.max(1) as u64 + 1) as f64;
        let steering = if latent == LatentKind::Lpc {
            200.0 * k
        } else {
            0.0
        };
        // Training batches hold runs of C + 1 pairs of one annotator (no extra rows); held-out
        // evaluation passes each pair's C context pairs through the backbone too.
        work_methods += st as f64 * 2.0 * b * 3.0 * forward
            + evals * eval_pairs * 2.0 * (1.0 + c) * forward
            + (500.0 + steering) * lr * forward;
    }

    let mut parts = vec![
        Part {
            name: "pairs",
            bytes: n * (136.0 + 4.0 * (lp + 2.0 * lr)),
            on_device: false,
            fields: with(&count_fields, &world_fields),
        },
        Part {
            name: "reference",
            bytes: n * (16.0 + 2.0 * (48.0 + 4.0 * (lp + lr))),
            on_device: false,
            fields: with(&count_fields, &world_fields),
        },
    ];
    let warm = (m.warmup_steps as f64 * b).clamp(1.0, 100_000.0) + 500.0;
    // A pretrained policy is pi_ref itself: no warm-up.
    parts.extend(m.pretrained.is_none().then(|| Part {
        name: "warm-up",
        bytes: warm * (48.0 + 4.0 * (lp + lr)),
        on_device: false,
        fields: with(
            &[
                format!("model.warmup_steps = {}", m.warmup_steps),
                format!("train.batch_size = {}", s.train.batch_size),
            ],
            &world_fields,
        ),
    }));
    let plan_b = b.min(train_pairs).max(1.0);
    parts.push(Part {
        name: "batch plan",
        bytes: max_steps as f64 * (24.0 + 8.0 * plan_b),
        on_device: false,
        fields: vec![
            match s.train.epochs {
                Some(e) => format!("train.epochs = {e}"),
                None => format!("steps = {max_steps}"),
            },
            format!("train.batch_size = {}", s.train.batch_size),
        ],
    });
    if let Some(w) = &world {
        let (v, mm, t, src) = (
            w.vocab as f64,
            w.feature_dim as f64,
            w.types as f64,
            w.sources as f64,
        );
        let bigram = w.reward == crate::scenario::RewardFamily::Bigram;
        let markov = w.reference == crate::scenario::ReferenceKind::Markov;
        let mut words = v * mm + 2.0 * t * mm + t * t + 4.0 * src * v + 3.0 * src * t;
        words += if bigram {
            v * v * mm + t * v * v
        } else {
            t * v
        };
        if markov {
            words += 3.0 * src * v * v;
        }
        words += 2.0 * w.annotators as f64;
        let mut fields = vec![
            format!("world.vocab = {}", w.vocab),
            format!("world.feature_dim = {}", w.feature_dim),
            format!("world.types = {}", w.types),
            format!("world.sources = {}", w.sources),
        ];
        if bigram {
            fields.push("world.reward = \"bigram\"".into());
        }
        if markov {
            fields.push("world.reference = \"markov\"".into());
        }
        parts.push(Part {
            name: "world",
            bytes: 8.0 * words,
            on_device: false,
            fields,
        });
    }
    // A pretrained model's parts and work come from its own sizes; the scratch model's below.
    let pretrained_work = match &pretrained {
        Some(Ok(p)) => Some(p.push_parts(s, &mut parts, &model_fields, n, len, lr, max_head)),
        _ => None,
    };
    if pretrained_work.is_none() {
        let policy = vm * d
            + len * d
            + layers * (4.0 * d * d + 4.0 * d + 2.0 * d * f + d + f + 4.0 * d)
            + 2.0 * d
            + d * vm
            + vm;
        parts.push(Part {
            name: "model",
            bytes: 4.0 * (5.0 * policy + 4.0 * max_head),
            on_device: true,
            fields: model_fields.clone(),
        });
        parts.push(Part {
            name: "optimiser",
            bytes: 12.0 * (policy + max_head),
            on_device: true,
            fields: model_fields,
        });
        let act = len * (12.0 * d + 2.0 * f) + 2.0 * heads * len * len;
        let train_step = 8.0 * 2.0 * b * (layers * act + 3.0 * len * vm);
        let eval_chunk = 4.0
            * 2.0
            * crate::train::EVAL_CHUNK as f64
            * (1.0 + max_context)
            * (act + 3.0 * len * vm);
        let sampling = 4.0 * 500.0 * (act + 2.0 * len * vm);
        let warm_step = 8.0 * b * (layers * act + 3.0 * len * vm);
        parts.push(Part {
            name: "batches",
            bytes: train_step.max(eval_chunk).max(sampling).max(warm_step),
            on_device: true,
            fields: with(
                &[
                    format!("train.batch_size = {}", s.train.batch_size),
                    format!("model.d_model = {}", m.d_model),
                    format!("model.layers = {}", m.layers),
                    format!("model.heads = {}", m.heads),
                ],
                &world_fields,
            ),
        });
    }
    if max_k > 0.0 {
        parts.push(Part {
            name: "codes",
            bytes: max_k * (eval_pairs * 60.0 + train_pairs.min(4000.0) * 16.0),
            on_device: false,
            fields: vec![k_field, format!("data.eval_pairs = {}", s.data.eval_pairs)],
        });
    }
    let work = pretrained_work
        .unwrap_or(m.warmup_steps as f64 * b * 3.0 * forward + 2.0 * n * forward + work_methods);
    Estimate {
        parts,
        work,
        steps,
        cuda: s.train.device != "cpu",
    }
}

/// A pretrained model's sizes, read from its GGUF file, for the estimate: the scenario's
/// `model.d_model`, `layers`, `heads` and `d_ff` do not apply to it.
struct PretrainedSizes {
    /// The `llama.*` metadata.
    config: crate::model::LlamaConfig,
    /// Every parameter (all tensors of the file).
    params: f64,
    /// Parameters that train (`model.trainable`): all, or the last K blocks and the final norm
    /// (and the output projection with `model.train_head`).
    trainable: f64,
    /// Blocks that train.
    trainable_blocks: f64,
    /// What set the sizes, for the estimate's lines.
    fields: Vec<String>,
}

/// The sizes of the scenario's pretrained model: `None` without one, `Err` (the line to print
/// in place of the sizes) when its file cannot be read, so the estimate cannot know them (the
/// run then fails with the loader's error, which says how to fetch the model).
fn pretrained_sizes(s: &Scenario) -> Option<std::result::Result<PretrainedSizes, String>> {
    let path = s.model.pretrained.as_ref()?;
    let read = || -> Result<PretrainedSizes> {
        let file = crate::gguf::GgufHeader::read(path)?;
        let config = crate::model::LlamaConfig::from_gguf(&file)?;
        let trainable = s
            .model
            .trainable()
            .unwrap_or(crate::model::pretrained::Trainable::All);
        let first_trained = match trainable {
            crate::model::pretrained::Trainable::All => 0,
            crate::model::pretrained::Trainable::Last { blocks, .. } => {
                config.n_layers.saturating_sub(blocks)
            }
        };
        // Tensor names follow llama.cpp: `blk.N.*` for block N, `output_norm.weight`, the
        // embedding `token_embd.weight` (tied output unless `output.weight` exists).
        let output = if file.tensors.iter().any(|t| t.name == "output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let trains = |name: &str| match trainable {
            crate::model::pretrained::Trainable::All => true,
            crate::model::pretrained::Trainable::Last { head, .. } => {
                name == "output_norm.weight"
                    || (head && name == output)
                    || name
                        .strip_prefix("blk.")
                        .and_then(|rest| rest.split('.').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some_and(|n| n >= first_trained)
            }
        };
        let (mut params, mut trained) = (0.0, 0.0);
        for t in &file.tensors {
            let count = t.n_elements() as f64;
            params += count;
            if trains(&t.name) {
                trained += count;
            }
        }
        Ok(PretrainedSizes {
            fields: vec![format!(
                "model.pretrained = {} (d {}, {} blocks, d_ff {}, vocabulary {}, {:.1}M \
                 parameters, {:.1}M training)",
                path.display(),
                config.d_model,
                config.n_layers,
                config.d_ff,
                config.vocab,
                params / 1e6,
                trained / 1e6
            )],
            trainable_blocks: (config.n_layers - first_trained) as f64,
            config,
            params,
            trainable: trained,
        })
    };
    Some(read().map_err(|e| {
        format!(
            "model.pretrained = {} (not readable, so its sizes are not counted: {e})",
            path.display()
        )
    }))
}

impl PretrainedSizes {
    /// Push the model, optimiser, frozen-prefix and batch parts of a pretrained policy and
    /// return the run's work (module docs, "Pretrained models"). `n` is every split's pairs,
    /// `len` and `lr` the sequence and response lengths, `max_head` the largest latent head.
    #[allow(clippy::too_many_arguments)]
    fn push_parts(
        &self,
        s: &Scenario,
        parts: &mut Vec<Part>,
        model_fields: &[String],
        n: f64,
        len: f64,
        lr: f64,
        max_head: f64,
    ) -> f64 {
        let c = &self.config;
        let (d, f, v) = (c.d_model as f64, c.d_ff as f64, c.vocab as f64);
        let (layers, heads) = (c.n_layers as f64, c.n_heads as f64);
        let d_kv = d * c.n_kv_heads as f64 / heads;
        let b = s.train.batch_size as f64;
        let frozen = layers - self.trainable_blocks;
        parts.push(Part {
            name: "model",
            bytes: 4.0 * (self.params + 2.0 * self.trainable + 4.0 * max_head),
            on_device: true,
            fields: model_fields.to_vec(),
        });
        parts.push(Part {
            name: "optimiser",
            bytes: 12.0 * (self.trainable + max_head),
            on_device: true,
            fields: model_fields.to_vec(),
        });
        if frozen > 0.0 {
            parts.push(Part {
                name: "prefix",
                bytes: 4.0 * 2.0 * n * len * d,
                on_device: false,
                fields: vec![
                    format!(
                        "model.trainable = {}",
                        s.model.trainable.as_deref().unwrap_or("all")
                    ),
                    format!("data.max_prompt_tokens = {}", s.data.max_prompt_tokens()),
                    format!(
                        "data.max_response_tokens = {}",
                        s.data.max_response_tokens()
                    ),
                ],
            });
        }
        // The head's `[rows x Lr, V]` logits and log-softmax dominate: the largest of a
        // reference-scoring chunk, an evaluation chunk, and a training step (with gradients).
        let eval_pairs = (s.data.eval_pairs + s.data.val_pairs()) as f64;
        let ref_rows = (2.0 * n).min(crate::model::reference::SCORE_CHUNK as f64);
        let eval_rows = 2.0 * eval_pairs.min(crate::train::EVAL_CHUNK as f64);
        let act = len * (12.0 * d + 2.0 * f) + 2.0 * heads * len * len;
        let inference = 8.0 * ref_rows.max(eval_rows) * lr * v;
        let train = 4.0 * 4.0 * 2.0 * b * lr * v + 8.0 * 2.0 * b * self.trainable_blocks * act;
        parts.push(Part {
            name: "batches",
            bytes: inference.max(train),
            on_device: true,
            fields: vec![
                format!("train.batch_size = {}", s.train.batch_size),
                format!(
                    "data.max_response_tokens = {}",
                    s.data.max_response_tokens()
                ),
                format!("model vocabulary = {}", c.vocab),
            ],
        });
        // Work: every sequence once through the whole model (reference log-probs and the
        // frozen prefix), then each method's steps and evaluations through the trained part.
        let block = 2.0 * d * d + 2.0 * d * d_kv + 3.0 * d * f + 2.0 * len * d;
        let head = lr * d * v;
        let full = len * layers * block + head;
        let trained = len * self.trainable_blocks * block + head;
        let methods: f64 = s
            .methods
            .iter()
            .map(|spec| {
                let st = method_steps(s, spec.steps);
                let evals = (st / s.train.eval_every.max(1) as u64 + 1) as f64;
                st as f64 * 2.0 * b * 3.0 * trained + evals * eval_pairs * 2.0 * trained
            })
            .sum();
        2.0 * n * full + methods
    }
}

/// Memory a run may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Host memory available to the run, bytes.
    pub host: f64,
    /// Where `host` came from (the environment variable, `/proc/meminfo` or the fallback).
    pub host_source: String,
    /// Device memory available to a CUDA run, bytes.
    pub device: f64,
    /// Where `device` came from (the environment variable or the fallback).
    pub device_source: String,
}

/// Parse `123`, `4096KiB`, `512MiB`, `4GiB`, `2G`, `1.5TiB` (binary units; `K`, `M`, `G`, `T`
/// alone mean the same) into bytes.
pub fn parse_bytes(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().ok()?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => GIB * 1024.0,
        _ => return None,
    };
    (v.is_finite() && v > 0.0).then_some(v * scale)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes, if the file says.
pub fn mem_available() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

/// The memory budget of this machine (see the module docs). A malformed limit variable is an
/// error naming it.
pub fn memory_budget() -> Result<Budget> {
    let env = |name: &str| -> Result<Option<f64>> {
        match std::env::var(name) {
            Ok(v) => parse_bytes(&v).map(Some).ok_or_else(|| {
                Error::msg(format!(
                    "{name} = '{v}' is not a size (write bytes, or e.g. 512MiB, 4GiB)"
                ))
            }),
            Err(_) => Ok(None),
        }
    };
    let (host, host_source) = match env(MEMORY_LIMIT_ENV)? {
        Some(b) => (b, MEMORY_LIMIT_ENV.to_string()),
        None => match mem_available() {
            Some(b) => (b, "MemAvailable in /proc/meminfo".to_string()),
            None => (
                FALLBACK_MEMORY_CAP,
                format!("fallback cap, no /proc/meminfo; set {MEMORY_LIMIT_ENV}"),
            ),
        },
    };
    let (device, device_source) = match env(DEVICE_MEMORY_LIMIT_ENV)? {
        Some(b) => (b, DEVICE_MEMORY_LIMIT_ENV.to_string()),
        None => (
            FALLBACK_DEVICE_CAP,
            format!("fallback cap; set {DEVICE_MEMORY_LIMIT_ENV}"),
        ),
    };
    Ok(Budget {
        host,
        host_source,
        device,
        device_source,
    })
}

/// Refuse a run whose estimate exceeds the budget: the error names the total, the budget and
/// its source, and the largest parts with the fields that set them.
pub fn check_fits(name: &str, est: &Estimate, budget: &Budget) -> Result<()> {
    let over = |total: f64, limit: f64, source: &str, where_: &str, device: bool| -> Result<()> {
        if total <= limit {
            return Ok(());
        }
        let mut parts: Vec<&Part> = est
            .parts
            .iter()
            .filter(|p| (est.cuda && p.on_device) == device)
            .collect();
        parts.sort_by(|a, b| b.bytes.total_cmp(&a.bytes));
        let largest: Vec<String> = parts
            .iter()
            .take(2)
            .map(|p| {
                format!(
                    "{} {} ({})",
                    p.name,
                    human_bytes(p.bytes),
                    p.fields.join(", ")
                )
            })
            .collect();
        Err(Error::msg(format!(
            "scenario '{name}' needs about {} of {where_} memory, more than the {} available \
             ({source}); largest parts: {}. Lower those fields (or, if the machine really has \
             the memory, set {})",
            human_bytes(total),
            human_bytes(limit),
            largest.join("; "),
            if device {
                DEVICE_MEMORY_LIMIT_ENV
            } else {
                MEMORY_LIMIT_ENV
            }
        )))
    };
    over(
        est.host_bytes(),
        budget.host,
        &budget.host_source,
        "host",
        false,
    )?;
    if est.cuda {
        over(
            est.device_bytes(),
            budget.device,
            &budget.device_source,
            "device",
            true,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(text: &str) -> crate::scenario::CheckedScenario {
        Scenario::from_toml_str(text, "t").unwrap()
    }

    #[test]
    fn units_parse() {
        assert_eq!(parse_bytes("123"), Some(123.0));
        assert_eq!(parse_bytes("2KiB"), Some(2048.0));
        assert_eq!(parse_bytes("4G"), Some(4.0 * GIB));
        assert_eq!(parse_bytes("1.5 GiB"), Some(1.5 * GIB));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes("0"), None);
    }

    #[test]
    fn pairs_part_follows_its_formula() {
        // N (136 + 4 (Lp + 2 Lr)) with N = 400 + 60 + 40 (train, validation, held-out),
        // Lp = 4, Lr = 4: 500 · 184 bytes.
        let s = scenario(
            "[world]\nprompt_len = 4\nresponse_len = 4\n[data]\ntrain_pairs = 400\nval_pairs = 60\neval_pairs = 40",
        );
        let e = estimate(&s);
        let pairs = e.parts.iter().find(|p| p.name == "pairs").unwrap();
        assert_eq!(pairs.bytes, 500.0 * 184.0);
        assert!(pairs.fields.contains(&"data.train_pairs = 400".to_string()));
    }

    #[test]
    fn default_scenario_fits_in_a_gigabyte() {
        let e = estimate(&scenario(""));
        assert!(e.host_bytes() < GIB, "{}", human_bytes(e.host_bytes()));
        assert!(e.work > 1e10 && e.work < 1e13, "{:e}", e.work);
    }

    #[test]
    fn long_prompts_are_refused_with_fields_and_numbers() {
        let s = scenario("[world]\nprompt_len = 60000\n[data]\ntrain_pairs = 400");
        let budget = Budget {
            host: 16.0 * GIB,
            host_source: "test".into(),
            device: GIB,
            device_source: "test".into(),
        };
        let err = check_fits(&s.name, &estimate(&s), &budget)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("world.prompt_len = 60000") && err.contains("16.0 GiB"),
            "{err}"
        );
        assert!(check_fits("t", &estimate(&scenario("")), &budget).is_ok());
    }

    #[test]
    fn bounds_name_field_and_bound() {
        let e = Scenario::from_toml_str("[data]\ntrain_pairs = 1000000000000", "t")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.train_pairs must be <= 10000000") && e.contains("1000000000000"),
            "{e}"
        );
        let e = Scenario::from_toml_str(
            "[train]\nepochs = 1000\n[data]\ntrain_pairs = 10000000\n",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("train.epochs gives"), "{e}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(format_duration(8.24), "8.2s");
        // 192 s = 3 min 12 s.
        assert_eq!(format_duration(192.0), "3m12s");
        // 7500 s = 125 min = 2 h 05 min.
        assert_eq!(format_duration(7500.0), "2h05m");
        assert_eq!(format_duration(-1.0), "0.0s");
    }

    #[test]
    fn the_estimate_is_affine_in_cost() {
        // The formula of `estimated_seconds`: overhead at zero cost, slope per unit.
        assert_eq!(estimated_seconds(0.0), CALIBRATION_OVERHEAD_S);
        let (a, b) = (estimated_seconds(1e9), estimated_seconds(3e9));
        assert!((b - a - 2e9 * CALIBRATION_SECONDS_PER_UNIT).abs() < 1e-12);
    }
}
