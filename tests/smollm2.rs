//! The pretrained policy, SmolLM2-135M-Instruct read from its GGUF file, against llama.cpp.
//!
//! Oracle: `tests/fixtures/smollm2/*.json`, written once by `scripts/parity/make_fixture.py`
//! with llama.cpp (through llama-cpp-python) reading the same file: an independent reader,
//! dequantiser, tokeniser and forward pass. The model file itself is not in git; these tests
//! need `scripts/fetch-model.sh` (CI runs it) and say so, and pass vacuously, when it is absent.
//!
//! Tolerance: llama.cpp multiplies with Q4_1 / Q8_0 weights and 8-bit-quantised activations,
//! while lpc-bench dequantises the weights and computes in f32, so the logits differ by more
//! than float rounding; a second fixture runs llama.cpp on an all-F32 copy of the file, where the
//! bound is tight. [`LOGIT_TOL_F32`] and [`LOGIT_TOL_Q4`] are the stated bounds (measured worst
//! cases in docs/PERFORMANCE.md).

use burn::tensor::{Int, Tensor, TensorData};
use lpc_bench::gguf::GgufFile;
use lpc_bench::model::{CpuBackend, Llama, LlamaConfig};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Largest |logit_ours - logit_llama.cpp| allowed at the last position (over the reference's
/// top-32 ids and 256 fixed ids per prompt) against llama.cpp computing in f32.
const LOGIT_TOL_F32: f32 = 1e-3;

/// The same against llama.cpp on the Q4_1 file (quantised activations, F16 KV cache).
const LOGIT_TOL_Q4: f32 = 1.0;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The model file, or `None` (with a printed reason) when it has not been fetched.
fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("LPC_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"));
    let path = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is absent; run scripts/fetch-model.sh to fetch it (CI does)",
            path.display()
        );
        None
    }
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/smollm2").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// The file's header, as the issue states it (oracle: `gguf` metadata read by llama.cpp's
/// `gguf-dump`, quoted in issue 14): llama, 30 blocks, d 576, FFN 1536, 9 heads / 3 KV heads,
/// RoPE base 100000 over 64 dims, vocab 49152; tensor types 210 Q4_1, 61 F32, 1 Q8_0.
#[test]
fn smollm2_header_as_documented() {
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    let cfg = LlamaConfig::from_gguf(&file).unwrap();
    assert_eq!(
        (
            cfg.n_layers,
            cfg.d_model,
            cfg.d_ff,
            cfg.n_heads,
            cfg.n_kv_heads
        ),
        (30, 576, 1536, 9, 3)
    );
    assert_eq!(
        (cfg.rope_base, cfg.rope_dim, cfg.vocab),
        (100_000.0, 64, 49_152)
    );
    assert!((cfg.rms_eps - 1e-5).abs() < 1e-9);
    let count = |name: &str| {
        file.tensors
            .iter()
            .filter(|t| t.ggml_type.name() == name)
            .count()
    };
    assert_eq!((count("Q4_1"), count("F32"), count("Q8_0")), (210, 61, 1));
    assert_eq!(file.meta_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert_eq!(
        file.meta_array("tokenizer.ggml.merges").unwrap().len(),
        48_900
    );
}

/// Worst-case agreement of this crate's logits with one llama.cpp fixture.
struct Parity {
    /// Largest |logit diff| at the last position over the compared ids, all prompts.
    worst: f32,
    /// Positions (all prompts) where the top-1 token agrees, and how many there are.
    agree: usize,
    positions: usize,
    /// Prompts whose last-position top-1 differs while llama.cpp's top-1 margin exceeds
    /// `margin` (ties closer than that may flip between implementations).
    top1_failures: Vec<String>,
}

/// Run the model on each prompt's token ids (llama.cpp's, so the tokeniser is not involved)
/// and compare with `fixture`; prints one line per prompt.
fn parity(model: &Llama<CpuBackend>, fixture_name: &str, margin: f32) -> Parity {
    let device = Default::default();
    let fx = fixture(fixture_name);
    let fixed_ids = u32s(&fx["fixed_ids"]);
    let v = model.vocab();
    let argmax = |row: &[f32]| {
        row.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap()
    };
    let mut out = Parity {
        worst: 0.0,
        agree: 0,
        positions: 0,
        top1_failures: vec![],
    };
    for p in fx["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let ids = u32s(&p["ids"]);
        let l = ids.len();
        let input = Tensor::<CpuBackend, 2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i64).collect(), [1, l]),
            &device,
        );
        let logits: Vec<f32> = model.logits(input).unwrap().into_data().to_vec().unwrap();
        for (pos, &r) in u32s(&p["top1_per_position"]).iter().enumerate() {
            out.positions += 1;
            out.agree += usize::from(argmax(&logits[pos * v..(pos + 1) * v]) == r);
        }
        let last = &logits[(l - 1) * v..l * v];
        let top_ids = u32s(&p["last_top_ids"]);
        let top_logits = f32s(&p["last_top_logits"]);
        let pairs: Vec<(u32, f32)> = top_ids
            .iter()
            .copied()
            .zip(top_logits.iter().copied())
            .chain(fixed_ids.iter().copied().zip(f32s(&p["last_fixed_logits"])))
            .collect();
        let diff = pairs
            .iter()
            .map(|&(id, want)| (last[id as usize] - want).abs())
            .fold(0f32, f32::max);
        out.worst = out.worst.max(diff);
        let ours = argmax(last);
        let ref_margin = top_logits[0] - top_logits[1];
        println!(
            "{fixture_name} {name}: top-1 ours {ours}, llama.cpp {} (margin {ref_margin:.3}); \
             max |diff| {diff:.5}",
            top_ids[0]
        );
        if ours != top_ids[0] && ref_margin > margin {
            out.top1_failures.push(format!(
                "{name}: top-1 {ours} here, {} in llama.cpp (margin {ref_margin})",
                top_ids[0]
            ));
        }
    }
    println!(
        "{fixture_name}: max |logit diff| {:.5}; top-1 agrees at {}/{} positions",
        out.worst, out.agree, out.positions
    );
    out
}

/// Tight parity: llama.cpp on an all-F32 copy of the file (dequantised by gguf-py, F32 KV
/// cache), so both sides compute in f32 from the same weights. Top-1 equal at the last position
/// of every prompt, at least 97% of all positions, and every compared logit within
/// [`LOGIT_TOL_F32`].
#[test]
fn smollm2_logits_match_llama_cpp_f32() {
    check_parity("logits-f32.json", 0.0, LOGIT_TOL_F32, 97);
}

/// Loose parity: llama.cpp on the Q4_1 file itself, with its quantised-activation matmuls and
/// F16 KV cache. Every compared logit within [`LOGIT_TOL_Q4`]; the last-position top-1 equal
/// wherever llama.cpp's own top-1 margin exceeds that tolerance; at least 95% of positions agree.
#[test]
fn smollm2_logits_near_llama_cpp_q4_1() {
    check_parity("logits.json", LOGIT_TOL_Q4, LOGIT_TOL_Q4, 95);
}

/// Load the model (skipping when it is absent) and compare it with a llama.cpp fixture: no
/// top-1 failure, every compared logit within `tol`, top-1 agreement at `min_agree_pct` % of
/// the positions or more.
fn check_parity(fixture: &str, margin: f32, tol: f32, min_agree_pct: usize) {
    let Some(path) = model_path() else { return };
    let (model, _) = Llama::<CpuBackend>::load(&path, &Default::default()).unwrap();
    let p = parity(&model, fixture, margin);
    assert!(p.top1_failures.is_empty(), "{}", p.top1_failures.join("\n"));
    assert!(p.worst <= tol, "max |logit diff| {} > {tol}", p.worst);
    assert!(
        p.agree * 100 >= p.positions * min_agree_pct,
        "top-1 agrees at {}/{}",
        p.agree,
        p.positions
    );
}

/// The tokeniser built from the GGUF vocabulary and merges gives llama.cpp's ids on 300
/// HH-RLHF strings and a dozen edge cases (digits, Unicode, whitespace runs, contractions), on
/// 24 HH prompts rendered with the chat template, and on the logit fixtures' prompts (special
/// tokens matched whole).
#[cfg(feature = "hf-tokenizer")]
#[test]
fn smollm2_tokenizer_matches_llama_cpp() {
    use lpc_bench::data::gguf_tokenizer::tokenizer_from_gguf;
    let Some(path) = model_path() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tok = tokenizer_from_gguf(&file).unwrap();
    assert_eq!(tok.vocab_size(), 49_152);
    let fx = fixture("tokenizer.json");
    let cases = fx["cases"].as_array().unwrap();
    let mut mismatches = Vec::new();
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let got = tok.encode(text).unwrap();
        if got != u32s(&c["ids"]) {
            mismatches.push(format!(
                "{text:?}: ours {got:?}, llama.cpp {:?}",
                u32s(&c["ids"])
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} strings tokenise differently:\n{}",
        mismatches.len(),
        cases.len(),
        mismatches.join("\n")
    );
    // Chat renderings of HH prompts (special tokens matched whole), from chat.json.
    for c in fixture("chat.json")["cases"].as_array().unwrap() {
        let text = c["rendered"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), u32s(&c["ids"]), "{text:?}");
    }
    for p in fixture("logits.json")["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), u32s(&p["ids"]), "{text:?}");
        // Byte-level BPE is lossless: the ids decode back to the text, special tokens included.
        assert_eq!(tok.decode(&u32s(&p["ids"])), text);
    }
}

/// HH-RLHF prompts as chat messages, rendered by SmolLM2's template: `hh_messages` gives the
/// fixture's messages and `chat_prompt` the text that jinja2 renders from the file's own
/// `tokenizer.chat_template` (oracle: `tests/fixtures/smollm2/chat.json`, 24 prompts). Needs no
/// model file.
#[test]
fn hh_prompts_render_like_the_files_chat_template() {
    use lpc_bench::data::gguf_tokenizer::{Role, chat_prompt, hh_messages};
    let fx = fixture("chat.json");
    for c in fx["cases"].as_array().unwrap() {
        let (messages, open) = hh_messages(c["prompt"].as_str().unwrap());
        assert!(open, "an HH prompt ends with an open assistant turn");
        let want: Vec<(Role, String)> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let role = match m["role"].as_str().unwrap() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => panic!("unexpected role {other}"),
                };
                (role, m["content"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(messages, want);
        assert_eq!(
            chat_prompt(&messages, true),
            c["rendered"].as_str().unwrap()
        );
    }
}

/// A missing model file names the fix (oracle: the rule in issue 14's acceptance item 4).
#[test]
fn missing_model_says_how_to_fetch() {
    let e = Llama::<CpuBackend>::load("models/absent.gguf", &Default::default())
        .expect_err("an absent file must not load")
        .to_string();
    assert!(e.contains("scripts/fetch-model.sh"), "{e}");
}

/// Largest `|a_i - b_i|` over the common length of two slices.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// The pretrained policy is the model: with `trainable = "last:2"` (frozen prefix on the host,
/// memoised, plus two blocks) and with `"all"`, its hidden states and output logits equal
/// [`Llama::hidden`] and [`Llama::logits_from_hidden`] of the whole model (oracle: the model
/// itself, whose logits the parity tests above tie to llama.cpp), to f32 rounding. A second
/// pass at a longer padded length reads the memo and must give the same states at the real
/// positions (oracle: causal attention; right padding never changes an earlier position).
/// Two rows share their first 9 tokens, so the prefix runs those once and the rest of each row
/// reads their cached keys and values: the states must still equal the whole model's.
#[test]
fn pretrained_policy_equals_the_whole_model() {
    use burn::module::Module;
    use lpc_bench::model::{Policy, PretrainedPolicy, Trainable};
    let Some(path) = model_path() else { return };
    let device = Default::default();
    let (llama, _) = Llama::<CpuBackend>::load(&path, &device).unwrap();
    let rows: Vec<Vec<u32>> = vec![
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        vec![42, 4000, 17, 198, 2, 198, 198, 198, 198, 198],
        // Shares its first 9 tokens with the first row: the prefix computes them once.
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 11],
    ];
    let pad = 198u32;
    let ids = |len: usize| {
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|r| {
                let mut r: Vec<i64> = r.iter().map(|&t| i64::from(t)).collect();
                r.resize(len, i64::from(pad));
                r
            })
            .collect();
        Tensor::<CpuBackend, 2, Int>::from_data(TensorData::new(flat, [rows.len(), len]), &device)
    };
    let want: Vec<f32> = llama.hidden(ids(10)).unwrap().into_data().to_vec().unwrap();
    let want_logits: Vec<f32> = llama.logits(ids(10)).unwrap().into_data().to_vec().unwrap();
    let last2 = Trainable::Last {
        blocks: 2,
        head: false,
    };
    let mut tail_params = None;
    for trainable in [last2, last2.with_head(true), Trainable::All] {
        let policy = Policy::Pretrained(
            PretrainedPolicy::<CpuBackend>::load(&path, trainable, 16, pad, &device).unwrap(),
        );
        let h = policy.hidden(ids(10));
        let got: Vec<f32> = h.clone().into_data().to_vec().unwrap();
        let worst = max_abs_diff(&got, &want);
        assert!(worst < 1e-4, "{trainable:?}: hidden differs by {worst}");
        let Policy::Pretrained(p) = &policy else {
            unreachable!()
        };
        let logits: Vec<f32> = p
            .head_logits(h.reshape([30, 576]))
            .into_data()
            .to_vec()
            .unwrap();
        let worst = max_abs_diff(&logits, &want_logits);
        assert!(worst < 1e-3, "{trainable:?}: logits differ by {worst}");
        // Padded to 14: the first 10 positions of each row are unchanged.
        let longer: Vec<f32> = policy.hidden(ids(14)).into_data().to_vec().unwrap();
        for r in 0..rows.len() {
            let a = &longer[r * 14 * 576..(r * 14 + 10) * 576];
            let b = &got[r * 10 * 576..(r + 1) * 10 * 576];
            let worst = max_abs_diff(a, b);
            assert!(
                worst < 1e-4,
                "{trainable:?}: padding changed row {r} by {worst}"
            );
        }
        if let Some(f) = p.frozen() {
            assert_eq!(
                (f.blocks(), f.memoised()),
                (28, 3),
                "one memo entry per sequence"
            );
        }
        // What trains, by count (oracle: the GGUF header's shapes): the last two blocks and
        // the final norm, plus the 49152 x 576 head when it trains.
        assert_eq!(p.trains_head(), trainable.trains_head(), "{trainable:?}");
        if trainable == last2 {
            tail_params = Some(p.num_params());
        } else if trainable == last2.with_head(true) {
            assert_eq!(Some(p.num_params()), tail_params.map(|n| n + 49152 * 576));
        }
    }
}

/// A prompt and response rendered for the pretrained policy, joined by the separator, are the
/// tokens of the whole conversation rendered by the chat template with the answer as the last
/// assistant turn (oracle: `chat_prompt` of the full conversation, tokenised at once).
#[test]
fn chat_rendered_pairs_join_into_the_template() {
    use lpc_bench::data::gguf_tokenizer::{Role, chat_prompt, hh_messages, tokenizer_from_gguf};
    use lpc_bench::data::real::model_tokenizer;
    let Some(path) = model_path() else { return };
    let (tok, sep) = model_tokenizer(&path).unwrap();
    let sep = sep.unwrap();
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(
        tokenizer_from_gguf(&file).unwrap().encode("\n").unwrap(),
        vec![sep]
    );
    let transcript =
        "\n\nHuman: How do I bake bread?\n\nAssistant: With flour.\n\nHuman: And?\n\nAssistant:";
    let answer = " Water, yeast, and an oven.";
    let (mut messages, open) = hh_messages(transcript);
    assert!(open);
    let mut prompt = tok.encode(&chat_prompt(&messages, true)).unwrap();
    assert_eq!(prompt.pop(), Some(sep));
    let response = tok.encode(&format!("{}<|im_end|>", answer.trim())).unwrap();
    messages.push((Role::Assistant, answer.trim().to_string()));
    let whole = tok.encode(&chat_prompt(&messages, false)).unwrap();
    let joined: Vec<u32> = prompt
        .iter()
        .copied()
        .chain([sep])
        .chain(response.iter().copied())
        .collect();
    // The template ends the turn with "<|im_end|>\n"; the response stops at <|im_end|>.
    assert_eq!(&whole[..whole.len() - 1], joined.as_slice());
}

/// The resource estimate of a pretrained scenario counts the model's own sizes, read from its
/// GGUF header, not the scratch model's `model.*` fields.
///
/// Oracle: peak resident memory measured with `/usr/bin/time -v` (maximum resident set size):
/// the shipped CPU scenario end to end, seed 0, 6,076,824 kB (docs/PERFORMANCE.md), and pilot
/// 6 of docs/RESULTS.md §6 (responses cut at 64 tokens, 256 validation and 32 held-out pairs,
/// DPO only), 14,271,308 kB, and pilot 7 (24-token responses, the head training too, seed 3),
/// 6,505,116 kB, and pilot 8 (every parameter training, seed 3), 10,553,132 kB (the estimate's
/// 8.8 GiB is 12 % low there, the largest gap). The estimate must land within 15 % of each;
/// before, it counted a 64-wide byte model and said about 600 MiB for the first two.
#[test]
fn the_estimate_of_a_pretrained_scenario_tracks_measured_peaks() {
    if model_path().is_none() {
        return;
    }
    let shipped =
        std::fs::read_to_string(root().join("scenarios/real/hh-helpful-vs-harmless-smollm2.toml"))
            .unwrap();
    let small_eval = |t: &str| {
        t.replace("val_pairs = 64", "val_pairs = 256")
            .replace("eval_pairs = 256", "eval_pairs = 32")
    };
    // Pilot 6 (docs/RESULTS.md §6): 64-token responses.
    let pilot6 =
        small_eval(&shipped.replace("max_response_tokens = 24", "max_response_tokens = 64"));
    // Pilot 7: the head trains too.
    let pilot7 = small_eval(&shipped.replace(
        "trainable = \"last:2\"",
        "trainable = \"last:2\"\ntrain_head = true",
    ));
    // Pilot 8: every parameter trains.
    let pilot8 = small_eval(&shipped.replace("trainable = \"last:2\"", "trainable = \"all\""));
    assert!(
        pilot6 != shipped
            && pilot7.contains("train_head")
            && pilot7.contains("eval_pairs = 32")
            && pilot8.contains("\"all\""),
        "the shipped scenario's fields moved"
    );
    // Relative paths in the scenario resolve against the package root, where cargo runs tests.
    // Peaks: maximum resident set size from `/usr/bin/time -v lpc-bench run ...`.
    // Parameters that train, from the GGUF header's shapes: the last two blocks and the final
    // norm 7.1M, plus the 49152 x 576 head (28.3M) = 35.4M, and all of them 134.5M.
    for (text, measured_kb, training) in [
        (&shipped, 6_076_824.0, "7.1M"),
        (&pilot6, 14_271_308.0, "7.1M"),
        (&pilot7, 6_505_116.0, "35.4M"),
        (&pilot8, 10_553_132.0, "134.5M"),
    ] {
        let s = lpc_bench::scenario::Scenario::from_toml_str(text, "t").unwrap();
        let est = lpc_bench::plan::estimate(&s);
        let measured = measured_kb * 1024.0;
        let ratio = est.host_bytes() / measured;
        assert!(
            (0.85..=1.15).contains(&ratio),
            "estimate {:.2} GiB against a measured {:.2} GiB peak",
            est.host_bytes() / (1u64 << 30) as f64,
            measured / (1u64 << 30) as f64
        );
        let model = est.parts.iter().find(|p| p.name == "model").unwrap();
        assert!(
            model.fields[0].contains(&format!("134.5M parameters, {training} training")),
            "{:?}",
            model.fields
        );
    }
}

/// A tiny pretrained DPO scenario (24 training pairs, the last block training) written into
/// `dir`, and its path.
fn tiny_scenario(dir: &Path, model: &Path) -> PathBuf {
    let data = root().join("data/hh-rlhf");
    let scenario = dir.join("tiny.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "tiny-smollm2"
[data]
seed = 5
max_prompt_tokens = 12
max_response_tokens = 6
train_pairs = 24
val_pairs = 4
eval_pairs = 24
[[data.files]]
path = "{h}/helpful-base/test.jsonl.gz"
format = "hh-rlhf"
group = "helpful"
[[data.files]]
path = "{h}/harmless-base/test.jsonl.gz"
format = "hh-rlhf"
group = "harmless"
[model]
pretrained = "{m}"
trainable = "last:1"
[train]
steps = 2
batch_size = 4
[[methods]]
method = "dpo"
"#,
            h = data.display(),
            m = model.display()
        ),
    )
    .unwrap();
    scenario
}

/// A tiny pretrained run end to end, then `lpc-bench eval` of its folder: both summaries carry
/// the three baselines that read the pretrained model, with the same held-out accuracies (the
/// rescoring rebuilds the same pairs and the same reference, so the probe is refitted to the
/// same features). Oracle: `run` and `eval` compute them independently from the checkpoint.
#[test]
fn a_pretrained_run_and_its_rescoring_report_the_model_baselines() {
    let Some(model) = model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = tiny_scenario(dir.path(), &model);
    let out = dir.path().join("run");
    let exe = env!("CARGO_BIN_EXE_lpc-bench");
    let status = |args: &[&str]| {
        let o = std::process::Command::new(exe).args(args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let out_s = out.to_str().unwrap();
    status(&[
        "run",
        scenario.to_str().unwrap(),
        "--out",
        out_s,
        "--quiet",
        "--threads",
        "1",
    ]);
    status(&["eval", out_s, "--quiet"]);
    let rows = |path: PathBuf| -> Vec<String> {
        let text = std::fs::read_to_string(&path).unwrap();
        [
            "zero-shot log-prob (sum)",
            "zero-shot log-prob (per token)",
            "linear probe on frozen features (train)",
        ]
        .iter()
        .map(|name| {
            text.lines()
                .find(|l| l.starts_with(&format!("| {name} |")))
                .unwrap_or_else(|| panic!("{name} missing from {}:\n{text}", path.display()))
                .to_string()
        })
        .collect()
    };
    let ran = rows(out.join("summary.md"));
    assert_eq!(ran, rows(out.join("rescored/summary.md")));
    assert!(
        ran[2].contains("fitted to the 24 training pairs"),
        "{}",
        ran[2]
    );
}

/// Pilot 9's measurement (`lpc_bench::direction`) on the tiny scenario, with its oracles: at
/// a = 0 the policy is pi_ref, so every margin is exactly 0 (accuracy 1/2, DPO loss ln 2 on
/// both sets); a small step against the gradient lowers the loss on the training pairs the
/// gradient was taken over (first-order descent: -G·G < 0, and -sign(G)·G < 0).
#[test]
fn a_small_step_against_the_full_batch_dpo_gradient_descends() {
    use lpc_bench::direction::{StepKind, first_steps};
    let Some(model) = model_path() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = lpc_bench::scenario::Scenario::load(&tiny_scenario(dir.path(), &model)).unwrap();
    let found = first_steps(&scenario, &[1e-6, 1e-5], &[1e-5], &|_| {}).unwrap();
    let kinds: Vec<StepKind> = found.rows.iter().map(|r| r.kind).collect();
    use StepKind::*;
    assert_eq!(kinds, [Probe, Centroid, None, Gd, Gd, Sign]);
    assert!(found.coordinates > 0 && found.rms > 0.0, "{found:?}");
    let ln2 = std::f64::consts::LN_2;
    let none = &found.rows[2];
    assert_eq!(none.val_accuracy, 0.5, "{none:?}");
    assert_eq!(none.mean_abs_val_margin, Some(0.0), "{none:?}");
    for loss in [none.val_loss, none.train_loss] {
        // The loss is computed in f32: ln 2 to f32's rounding (a relative 6e-8).
        assert!((loss.unwrap() - ln2).abs() < 1e-7, "{none:?}");
    }
    for row in &found.rows[3..] {
        assert!(row.train_loss.unwrap() < ln2, "no descent: {row:?}");
        assert!(row.mean_abs_val_margin.unwrap() > 0.0, "{row:?}");
    }
}
