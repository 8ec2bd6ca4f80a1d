//! Shape discipline (issue 11): on a GPU every new tensor shape is a new autotune key and a new
//! set of fused kernels, so a run must build its batches in few, fixed shapes.
//!
//! Oracle: the bound stated in `src/data/batch.rs` and docs/PERFORMANCE.md ("GPU kernel caches
//! and shapes"): every batch of a run has the data's longest sequence `L = max_seq_len()` and
//! longest response `R`, its row counts are drawn from a fixed list that depends on the
//! scenario's batch size and the chunk constants only (never on how many batches a split
//! fills), and there are at most [`MAX_SHAPES`] of them.

use lpc_bench::data::batch::{BuiltShape, recording_shapes};
use lpc_bench::experiment::{RunOptions, run_scenario};
use lpc_bench::scenario::{CheckedScenario, Scenario};
use std::collections::BTreeSet;

/// The bound: distinct `(rows, L, R)` shapes a whole run (warm-up, reference caching, training
/// of two methods, validation, held-out scoring, policy sampling, steering) may build.
const MAX_SHAPES: usize = 8;

/// A world whose responses vary in length (2..=6 tokens, so batches' own longest rows vary),
/// with splits larger than the scoring chunks (512 sequences, 256 pairs) so that last chunks
/// are short and must be padded.
fn scenario(train: usize, heldout: usize, steps: usize) -> CheckedScenario {
    let text = format!(
        r#"
name = "shapes"
[world]
vocab = 8
prompt_len = 3
response_len = 6
response_len_min = 2
types = 2
[data]
train_pairs = {train}
val_pairs = {heldout}
eval_pairs = {heldout}
[model]
d_model = 16
layers = 1
heads = 2
warmup_steps = 5
[train]
steps = {steps}
batch_size = 16
eval_every = 5
[[methods]]
method = "dpo"
[[methods]]
method = "lpc-dpo"
codebook = 2
"#
    );
    Scenario::from_toml_str(&text, "shapes").unwrap()
}

fn shapes_of(s: &CheckedScenario) -> BTreeSet<BuiltShape> {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    let (out, seen) = recording_shapes(|| run_scenario(s, dir.path(), &opts));
    out.unwrap();
    seen
}

#[test]
fn a_run_builds_few_fixed_batch_shapes() {
    let small = shapes_of(&scenario(600, 520, 10));
    let large = shapes_of(&scenario(1300, 700, 20));
    println!("small: {small:?}\nlarge: {large:?}");
    // L = prompt 3 + separator + longest response 6; R = 6.
    for (rows, l, r) in small.iter().chain(&large) {
        assert_eq!(
            (*l, *r),
            (10, 6),
            "a batch of {rows} rows left the fixed (L, R)"
        );
    }
    assert!(
        small.len() <= MAX_SHAPES,
        "{} shapes: {small:?}",
        small.len()
    );
    // Row counts, each from the scenario or a constant: warm-up 16 sequences (batch_size),
    // training 2 x 16 pairs, steering 200 prompts (STEERING_PROMPTS), policy quality 500
    // prompts (POLICY_PROMPTS), evaluation 2 x 256 pairs (EVAL_CHUNK) and reference caching
    // 512 sequences (SCORE_CHUNK), the same number. Both splits exceed every constant, so
    // none of these depends on the split sizes.
    let rows: Vec<usize> = small.iter().map(|s| s.0).collect();
    assert_eq!(rows, vec![16, 32, 200, 500, 512]);
    assert_eq!(
        small, large,
        "more pairs and more steps must reuse the same shapes, not add new ones"
    );
}
