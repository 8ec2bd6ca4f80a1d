//! Training-loop integration tests: the real binary on tiny worlds (seconds each, release).
//!
//! Oracles: exact equality where the method's definition makes two runs identical (K = 1,
//! lambda = 0 LPC is DPO; the same seed is the same run), ln 2 as DPO's loss at zero margin, and
//! the world's exact noiseless preference for accuracy.

use lpc_bench::experiment::{RunOptions, run_scenario};
use lpc_bench::scenario::Scenario;
use std::path::Path;
use std::process::Command;

fn lpc_bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lpc-bench"))
        .args(args)
        .output()
        .expect("run lpc-bench")
}

/// A tiny T = 2 world (coupling 1, d = 1) and model; `methods` is TOML for the methods list.
fn tiny_scenario(methods: &str, steps: usize) -> String {
    format!(
        r#"
name = "tiny"
[world]
vocab = 8
prompt_len = 3
response_len = 4
reward_scale = 24.0
[data]
train_pairs = 256
val_pairs = 128
eval_pairs = 128
[model]
d_model = 16
layers = 1
heads = 2
warmup_steps = 20
[train]
steps = {steps}
batch_size = 32
eval_every = 10
lr_warmup_steps = 2
lr = 3e-3
{methods}
"#
    )
}

fn read_csv(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .zip(rec.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn run_tiny(text: &str, out: &Path) {
    let scenario = Scenario::from_toml_str(text, "tiny").unwrap();
    let opts = RunOptions {
        quiet: true,
        ..Default::default()
    };
    run_scenario(&scenario, out, &opts).unwrap();
}

/// Issue 4, target 5: with one code the (centred) code is exactly 0 and with lambda = 0 the KL
/// term vanishes, so lpc-dpo must reproduce dpo's curves and scores bit for bit.
#[test]
fn lpc_with_one_code_and_no_kl_reproduces_dpo_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 1\nlambda = 0.0\n",
        30,
    );
    run_tiny(&text, dir.path());
    let curves = read_csv(&dir.path().join("curves.csv"));
    let dpo: Vec<_> = curves.iter().filter(|r| r["method"] == "dpo").collect();
    let lpc: Vec<_> = curves.iter().filter(|r| r["method"] == "lpc-dpo").collect();
    assert_eq!(dpo.len(), 3);
    assert_eq!(dpo.len(), lpc.len());
    for (a, b) in dpo.iter().zip(&lpc) {
        for col in [
            "step",
            "train_loss",
            "val_loss",
            "val_accuracy",
            "val_objective",
        ] {
            assert_eq!(a[col], b[col], "{col} differs at step {}", a["step"]);
        }
        assert_eq!(b["val_kl"], "0", "one code: KL(q||p) is exactly 0");
    }
    let metrics = read_csv(&dir.path().join("metrics.csv"));
    for col in [
        "acc_obs",
        "acc_noiseless",
        "eval_loss",
        "policy_reward",
        "policy_kl_ref",
    ] {
        assert_eq!(metrics[0][col], metrics[1][col], "{col}");
    }
}

/// The same scenario and seed give byte-identical result files (all but timing.csv).
#[test]
fn same_seed_gives_identical_result_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let text = tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 4\n",
        20,
    );
    run_tiny(&text, a.path());
    run_tiny(&text, b.path());
    for f in [
        "metrics.csv",
        "curves.csv",
        "codes.csv",
        "steering.csv",
        "summary.md",
        "world.json",
        "scenario.resolved.toml",
    ] {
        let x = std::fs::read(a.path().join(f)).unwrap();
        let y = std::fs::read(b.path().join(f)).unwrap();
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f} differs between two runs of the same seed");
    }
}

/// A method whose loss stops being finite is recorded as diverged with its step, and the other
/// methods still train and are scored.
#[test]
fn diverging_method_is_recorded_and_the_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("diverge.toml");
    // lr 1e30: Adam moves every weight by ~1e30 on the first step, so activations overflow.
    let text = tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\nlabel = \"dpo-explodes\"\nlr = 1e30\n[[methods]]\nmethod = \"dpo\"\n",
        20,
    );
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let run = lpc_bench(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("dpo-explodes") && stderr.contains("diverged"),
        "{stderr}"
    );
    let metrics = read_csv(&out.join("metrics.csv"));
    assert!(
        metrics[0]["status"].starts_with("diverged@"),
        "{:?}",
        metrics[0]
    );
    assert_eq!(metrics[1]["status"], "ok");
    assert!(!metrics[1]["acc_obs"].is_empty());
}

/// Issue 3's learning check: a short DPO run lowers the held-out loss below ln 2 (its value at
/// zero margin) and moves the policy toward the chosen responses on held-out pairs: held-out
/// accuracy against the noiseless type preference well above chance.
#[test]
fn dpo_learns_on_held_out_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_scenario("[[methods]]\nmethod = \"dpo\"\n", 120);
    run_tiny(&text, dir.path());
    let curves = read_csv(&dir.path().join("curves.csv"));
    let last = curves.last().unwrap();
    let val_loss: f64 = last["val_loss"].parse().unwrap();
    assert!(
        val_loss < std::f64::consts::LN_2 - 0.05,
        "validation loss {val_loss}"
    );
    let first: f64 = curves[0]["val_loss"].parse().unwrap();
    assert!(val_loss < first, "loss did not fall: {first} -> {val_loss}");
    let metrics = read_csv(&dir.path().join("metrics.csv"));
    let eval_loss: f64 = metrics[0]["eval_loss"].parse().unwrap();
    assert!(
        eval_loss < std::f64::consts::LN_2 - 0.05,
        "held-out loss {eval_loss}"
    );
    let metrics = read_csv(&dir.path().join("metrics.csv"));
    let acc: f64 = metrics[0]["acc_noiseless"].parse().unwrap();
    assert!(
        acc > 0.7,
        "held-out accuracy vs the noiseless preference {acc}"
    );
}

/// A re-run into a folder with results refuses, names a file, and changes nothing.
#[test]
fn rerun_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(&file, tiny_scenario("[[methods]]\nmethod = \"dpo\"\n", 10)).unwrap();
    let out = dir.path().join("out");
    let args = [
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    assert!(lpc_bench(&args).status.success());
    let before = std::fs::read(out.join("metrics.csv")).unwrap();
    let again = lpc_bench(&args);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(out.join("metrics.csv")).unwrap(), before);
}

/// `lpc-bench eval` rescoring the saved checkpoints gives the run's own scores.
#[test]
fn eval_rescores_checkpoints_to_the_same_scores() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 4\n",
        20,
    );
    run_tiny(&text, dir.path());
    let run = lpc_bench(&["eval", dir.path().to_str().unwrap(), "--quiet"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let a = read_csv(&dir.path().join("metrics.csv"));
    let b = read_csv(&dir.path().join("rescored/metrics.csv"));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        for col in [
            "acc_obs",
            "acc_noiseless",
            "prior_nmi",
            "post_nmi",
            "mean_kl",
            "policy_reward",
        ] {
            assert_eq!(x[col], y[col], "{} {col}", x["method"]);
        }
    }
}

/// The README's main job: `lpc-bench run scenarios/smoke.toml` writes every result file with the
/// documented columns.
#[test]
fn smoke_run_writes_every_file_with_its_columns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("smoke");
    let smoke = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/smoke.toml");
    let run = lpc_bench(&["run", smoke, "--out", out.to_str().unwrap(), "--quiet"]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in lpc_bench::experiment::RUN_FILES {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let metrics = read_csv(&out.join("metrics.csv"));
    let methods: Vec<&str> = metrics.iter().map(|r| r["method"].as_str()).collect();
    assert_eq!(methods, ["dpo", "lpc-dpo"]);
    for col in [
        "status",
        "acc_obs",
        "acc_noiseless",
        "acc_obs_type0",
        "acc_noiseless_type1",
        "steered_acc_noiseless",
        "post_nmi",
        "post_ari",
        "post_purity",
        "post_matched_acc",
        "post_perplexity",
        "post_active_codes",
        "prior_nmi",
        "mean_kl",
        "policy_reward",
        "policy_winrate_vs_ref",
        "policy_kl_ref",
        "policy_kl_opt",
        "ceil_type_obs",
        "ceil_prompt_obs",
        "ceil_population_obs",
        "ceil_type_noiseless",
        "bound_nmi",
        "bound_acc",
    ] {
        assert!(metrics[0].contains_key(col), "metrics.csv lacks {col}");
    }
    // Baselines get blanks, not zeros, for code scores; LPC gets numbers.
    assert_eq!(metrics[0]["prior_nmi"], "");
    assert!(metrics[1]["prior_nmi"].parse::<f64>().is_ok());
    let codes = read_csv(&out.join("codes.csv"));
    assert_eq!(
        codes.len(),
        200,
        "one row per held-out pair for the one LPC method"
    );
    let steering = read_csv(&out.join("steering.csv"));
    assert!(steering.iter().any(|r| r["matched"] == "1"));
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("| lpc-dpo | ok |"), "{summary}");
}

/// Issue 6: the whole pipeline on a slice of the shipped HH-RLHF data (40 helpful-base + 40
/// harmless-base records, byte tokens): groups are the files, per-group accuracy and code-group
/// NMI are reported, and the world-only scores (ceilings, true rewards) are blank.
#[test]
fn real_data_slice_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let text = format!(
        r#"
name = "hh-slice"
[data]
eval_fraction = 0.25
max_prompt_tokens = 24
max_response_tokens = 16
[[data.files]]
path = "{fixtures}/hh-helpful-base-40.jsonl.gz"
format = "hh-rlhf"
group = "helpful"
[[data.files]]
path = "{fixtures}/hh-harmless-base-40.jsonl.gz"
format = "hh-rlhf"
group = "harmless"
[model]
d_model = 16
layers = 1
heads = 2
warmup_steps = 5
[train]
steps = 6
batch_size = 8
eval_every = 3
[[methods]]
method = "dpo"
[[methods]]
method = "lpc-simpo"
codebook = 2
"#
    );
    let file = dir.path().join("hh.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("out");
    let run = lpc_bench(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let metrics = read_csv(&out.join("metrics.csv"));
    assert_eq!(metrics.len(), 2);
    for r in &metrics {
        assert_eq!(r["status"], "ok");
        for col in ["acc_obs", "acc_obs_helpful", "acc_obs_harmless"] {
            let v: f64 = r[col]
                .parse()
                .unwrap_or_else(|_| panic!("{col} = {:?}", r[col]));
            assert!((0.0..=1.0).contains(&v), "{col} = {v}");
        }
        for col in [
            "acc_noiseless",
            "ceil_type_obs",
            "bound_nmi",
            "policy_reward",
        ] {
            assert_eq!(
                r[col], "",
                "{col} needs a synthetic world and must be blank"
            );
        }
    }
    let nmi: f64 = metrics[1]["post_nmi"].parse().unwrap();
    assert!((0.0..=1.0).contains(&nmi));
    assert_eq!(metrics[0]["post_nmi"], "", "a baseline has no codes");
}

/// Unseen annotators end to end (issue 10): with `data.heldout_annotators`, a context method is
/// scored on held-out pairs of annotators that never appear in training, whose context comes
/// from their own other held-out pairs; the metrics carry the `_unseen` columns and the context
/// bound beside the method, and a baseline gets no bound.
#[test]
fn unseen_annotators_are_scored_with_their_own_context() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_scenario(
        "[[methods]]\nmethod = \"dpo\"\n[[methods]]\nmethod = \"lpc-dpo\"\ncodebook = 2\nlambda = 0.05\ncontext = 3\n",
        20,
    )
    .replace("reward_scale = 24.0", "reward_scale = 24.0\nannotators = 20\ncoupling = 0.0")
    .replace("\nval_pairs = 128", "\nval_pairs = 64\nheldout_annotators = 0.25");
    run_tiny(&text, dir.path());
    let metrics = read_csv(&dir.path().join("metrics.csv"));
    let n: f64 = metrics[1]["n_unseen"].parse().unwrap();
    assert!(n > 0.0, "some held-out pairs come from unseen annotators");
    for col in [
        "post_nmi_unseen",
        "acc_noiseless_unseen",
        "bound_nmi_method",
        "bound_nmi_method_unseen",
    ] {
        assert!(!metrics[1][col].is_empty(), "{col} is blank");
    }
    assert!(
        metrics[0]["bound_nmi_method"].is_empty(),
        "a baseline has no posterior bound"
    );
    let summary = std::fs::read_to_string(dir.path().join("summary.md")).unwrap();
    assert!(summary.contains("never seen in training"));
}
