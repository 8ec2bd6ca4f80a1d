//! Loading SmolLM2-135M-Instruct from its GGUF file as the policy, and scoring the reference
//! log-probs of preference pairs with it (issue 14's acceptance item 3: load + reference
//! log-probs of 1000 pairs in at most 5 minutes on 2 cores).
//!
//! Not a criterion bench: a load runs once, so this prints wall-clock times of
//! - `load`: [`PretrainedPolicy::load`] (read and parse the 98 MB file, dequantise to f32, copy
//!   the trainable tail to the device);
//! - `score`: [`ReferenceCache::compute`] over `PAIRS` pairs shaped like the CPU scenario
//!   `scenarios/real/hh-helpful-vs-harmless-smollm2.toml` (40 prompt tokens, 24-token responses),
//!   with `trainable = "last:2"`, the path a run takes: the 28 frozen blocks once per sequence
//!   (memoised), then the 2 tail blocks and the log-softmax over the 49152-word vocabulary at
//!   the response positions; and the implied time for 1000 pairs.
//!
//! Needs the model (`scripts/fetch-model.sh`); without it, prints how to fetch it and exits 0.
//! Run: `cargo bench --bench smollm2` (`SMOLLM2_PAIRS=N` to score N pairs instead of 32).

use lpc_bench::data::PreferencePair;
use lpc_bench::data::real::model_tokenizer;
use lpc_bench::model::{CpuBackend, Policy, PretrainedPolicy, Trainable};
use lpc_bench::rng::splitmix64;
use lpc_bench::train::ReferenceCache;
use std::path::Path;
use std::time::Instant;

const PROMPT: usize = 40;
const RESPONSE: usize = 24;

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        println!(
            "{} absent: run scripts/fetch-model.sh first",
            path.display()
        );
        return;
    }
    let pairs_n: usize = std::env::var("SMOLLM2_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    // The chat separator the loader uses (the template's newline token).
    let (_, sep) = model_tokenizer(&path).expect("the model's tokenizer builds");
    let sep = sep.expect("a chat separator");
    let device = Default::default();
    let t = Instant::now();
    let policy = Policy::Pretrained(
        PretrainedPolicy::<CpuBackend>::load(
            &path,
            Trainable::Last {
                blocks: 2,
                head: false,
            },
            PROMPT + 1 + RESPONSE,
            sep,
            &device,
        )
        .expect("model loads"),
    );
    let load = t.elapsed().as_secs_f64();
    // Deterministic ids (splitmix64 of the pair and position), no special tokens; every pair's
    // prompt and responses are distinct (a multiplicative hash repeated them every 48 pairs, and
    // the memo then skipped the repeats).
    let tok = |i: usize| 200 + (splitmix64(i as u64) % 48_000) as u32;
    let pairs: Vec<PreferencePair> = (0..pairs_n)
        .map(|p| PreferencePair {
            prompt: (0..PROMPT).map(|i| tok(p * 1000 + i)).collect(),
            chosen: (0..RESPONSE).map(|i| tok(p * 1000 + 100 + i)).collect(),
            rejected: (0..RESPONSE).map(|i| tok(p * 1000 + 200 + i)).collect(),
            group: 0,
            source: 0,
            annotator: 0,
            truth: None,
        })
        .collect();
    let distinct: std::collections::HashSet<&Vec<u32>> = pairs.iter().map(|p| &p.prompt).collect();
    assert_eq!(distinct.len(), pairs_n, "every pair has its own prompt");
    let t = Instant::now();
    let refs = ReferenceCache::compute(&policy, &pairs, sep);
    let score = t.elapsed().as_secs_f64();
    std::hint::black_box(refs);
    // Again, with every sequence's frozen-prefix states memoised: the tail blocks and the head.
    let t = Instant::now();
    std::hint::black_box(ReferenceCache::compute(&policy, &pairs, sep));
    let memoised = t.elapsed().as_secs_f64();
    println!("again with the prefix memoised (2 tail blocks + head): {memoised:.2} s");
    let per_pair = score / pairs_n as f64;
    println!(
        "load {load:.2} s; reference log-probs of {pairs_n} pairs ({PROMPT}-token prompts, \
         {RESPONSE}-token responses, last:2): {score:.2} s, {per_pair:.3} s per pair; \
         load + 1000 pairs ~ {:.0} s",
        load + 1000.0 * per_pair
    );
}
