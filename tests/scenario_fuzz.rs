//! Scenario fuzzing (issue 12): mutate the shipped scenario files (random keys and sections,
//! values of every type, huge and negative numbers, truncation, random bytes) and check that
//! reading, `validate` and `run --dry-run` planning return a plan or a clean error: never a
//! panic, and never more than [`ALLOC_BOUND`] bytes allocated at once (the planning path
//! allocates nothing proportional to the scenario's size fields).
//!
//! The library functions are called directly (no subprocess), so 10,000 cases take seconds.
//! Allocation is measured by a counting global allocator, per thread.

use lpc_bench::experiment::plan_text;
use lpc_bench::experiment::validate::check_text;
use lpc_bench::plan::Budget;
use lpc_bench::scenario::{Scenario, text_of};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Most bytes one case may hold allocated at once, above what it held when it started.
const ALLOC_BOUND: usize = 64 << 20;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Every shipped scenario file (path, bytes).
fn corpus() -> &'static [(PathBuf, Vec<u8>)] {
    static FILES: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|e| e == "toml") {
                    out.push((p.clone(), std::fs::read(&p).unwrap()));
                }
            }
        }
        let mut out = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"),
            &mut out,
        );
        assert!(out.len() >= 10, "shipped scenarios: {}", out.len());
        out
    })
}

/// A fixed budget, so the result does not depend on the machine.
fn budget() -> Budget {
    Budget {
        host: 16.0 * (1u64 << 30) as f64,
        host_source: "fuzz".into(),
        device: 80.0 * (1u64 << 30) as f64,
        device_source: "fuzz".into(),
    }
}

const VALUES: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "7",
    "64",
    "1024",
    "65536",
    "65537",
    "1000000",
    "10000000",
    "10000001",
    "1000000000",
    "1000000000000",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "0.0",
    "-0.5",
    "0.5",
    "1.5",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "\"\"",
    "\"x\"",
    "\"cuda\"",
    "\"cpu\"",
    "\"bf16\"",
    "\"lpc-dpo\"",
    "\"bigram\"",
    "\"markov\"",
    "[]",
    "[1, 2, 3]",
    "[0.0, 1.0]",
    "[[1], [2]]",
    "[\"a\", 1]",
    "{}",
    "{ a = 1 }",
    "1979-05-27T07:32:00Z",
    "'''x'''",
    "[1000000000]",
    "[0, 1000000000000]",
];

const KEYS: &[&str] = &[
    "name",
    "description",
    "vocab",
    "prompt_len",
    "response_len",
    "response_len_min",
    "sources",
    "types",
    "type_weights",
    "source_weights",
    "coupling",
    "reward",
    "feature_dim",
    "reward_scale",
    "distance",
    "length_weight",
    "bt_temperature",
    "reference",
    "prompt_concentration",
    "markov_concentration",
    "annotators",
    "flip_rate",
    "train_pairs",
    "eval_pairs",
    "seed",
    "eval_fraction",
    "max_prompt_tokens",
    "max_response_tokens",
    "tokenizer",
    "d_model",
    "layers",
    "heads",
    "d_ff",
    "dropout",
    "warmup_steps",
    "warmup_lr",
    "steps",
    "epochs",
    "batch_size",
    "lr",
    "lr_warmup_steps",
    "schedule",
    "grad_clip",
    "eval_every",
    "select",
    "device",
    "threads",
    "precision",
    "method",
    "label",
    "beta",
    "gamma",
    "eps",
    "lambda",
    "codebook",
    "tau",
    "tau_end",
    "hard",
    "inference",
    "context",
    "latent_dim",
    "world.distance",
    "methods.codebook",
    "world.prompt_len",
    "data.train_pairs",
    "model.d_model",
    "train.steps",
    "bogus",
    "world.bogus",
    "\"quoted.key\"",
];

const HEADERS: &[&str] = &[
    "[world]",
    "[noise]",
    "[data]",
    "[model]",
    "[train]",
    "[[methods]]",
    "[sweep]",
    "[sweep.world]",
    "[[data.files]]",
    "[world.extra]",
    "[methods]",
    "[[world]]",
    "[",
];

/// One mutation of a file: which, where, and with what.
#[derive(Debug, Clone)]
enum Mutation {
    /// Replace the number on the `line`-th `key = number` line by another of its kind (an
    /// integer by an integer, a float by a float): reaches the value rules, the bounds and the
    /// estimate rather than the parser.
    Number { line: usize, int: i64, float: f64 },
    /// Replace the value of the `line`-th `key = value` line.
    Value { line: usize, value: String },
    /// Insert `key = value` (or a header) before the `line`-th line.
    Insert { line: usize, text: String },
    /// Keep only the first `at` (a share of the length) bytes.
    Truncate { at: f64 },
    /// Overwrite bytes at shares of the length.
    Bytes { at: Vec<(f64, u8)> },
    /// Remove or repeat a line.
    Line { line: usize, repeat: bool },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let value = prop_oneof![
        3 => proptest::sample::select(VALUES).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|v| v.to_string()),
        1 => any::<f64>().prop_map(|v| format!("{v:?}")),
        1 => (0u64..20_000_000).prop_map(|v| v.to_string()),
    ];
    let line = 0usize..200;
    let int = prop_oneof![
        2 => proptest::sample::select(&[
            0i64, 1, 2, 3, 8, 64, 255, 256, 1024, 1025, 4096, 16_384, 16_385, 65_536, 65_537,
            262_144, 1_000_000, 1_000_001, 10_000_000, 10_000_001, 1_000_000_000,
            1_000_000_000_000, i64::MAX, -1, i64::MIN,
        ][..]),
        1 => 0i64..100_000,
        1 => any::<i64>(),
    ];
    let float = prop_oneof![
        2 => proptest::sample::select(&[
            0.0f64, -0.0, 0.5, 1.0, 1.0000001, -1.0, 1e-300, 1e300, f64::MAX, f64::MIN_POSITIVE,
            f64::NAN, f64::INFINITY, f64::NEG_INFINITY,
        ][..]),
        1 => any::<f64>(),
    ];
    prop_oneof![
        6 => (line.clone(), int, float).prop_map(|(line, int, float)| Mutation::Number { line, int, float }),
        4 => (line.clone(), value.clone()).prop_map(|(line, value)| Mutation::Value { line, value }),
        2 => (line.clone(), proptest::sample::select(KEYS), value)
            .prop_map(|(line, k, v)| Mutation::Insert { line, text: format!("{k} = {v}") }),
        1 => (line.clone(), proptest::sample::select(HEADERS))
            .prop_map(|(line, h)| Mutation::Insert { line, text: h.to_string() }),
        1 => (0.0f64..1.0).prop_map(|at| Mutation::Truncate { at }),
        1 => proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..4)
            .prop_map(|at| Mutation::Bytes { at }),
        1 => (line, any::<bool>()).prop_map(|(line, repeat)| Mutation::Line { line, repeat }),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let n = lines.len().max(1);
    match m {
        Mutation::Number { line, int, float } => {
            let numbers: Vec<(usize, String, bool)> = (0..lines.len())
                .filter_map(|i| {
                    let l = lines[i].trim_start();
                    if l.starts_with('#') || l.starts_with('[') {
                        return None;
                    }
                    let (key, rest) = lines[i].split_once('=')?;
                    let value = rest.split('#').next()?.trim();
                    if value.parse::<i64>().is_ok() {
                        Some((i, key.to_string(), true))
                    } else if value.parse::<f64>().is_ok() {
                        Some((i, key.to_string(), false))
                    } else {
                        None
                    }
                })
                .collect();
            if let Some((i, key, is_int)) = numbers.get(line % numbers.len().max(1)) {
                let v = if *is_int {
                    int.to_string()
                } else if float.is_finite() {
                    format!("{float:?}")
                } else if float.is_nan() {
                    "nan".to_string()
                } else if *float > 0.0 {
                    "inf".to_string()
                } else {
                    "-inf".to_string()
                };
                lines[*i] = format!("{key}= {v}");
            }
        }
        Mutation::Value { line, value } => {
            let assignments: Vec<usize> = (0..lines.len())
                .filter(|&i| {
                    let l = lines[i].trim_start();
                    !l.starts_with('#') && !l.starts_with('[') && l.contains('=')
                })
                .collect();
            if let Some(&i) = assignments.get(line % assignments.len().max(1)) {
                let key = lines[i].split('=').next().unwrap_or("").to_string();
                lines[i] = format!("{key}= {value}");
            }
        }
        Mutation::Insert { line, text } => {
            lines.insert(line % (n + 1).min(lines.len() + 1), text.clone())
        }
        Mutation::Truncate { at } => {
            let cut = (bytes.len() as f64 * at) as usize;
            return bytes[..cut.min(bytes.len())].to_vec();
        }
        Mutation::Bytes { at } => {
            let mut b = bytes.to_vec();
            for (share, byte) in at {
                if !b.is_empty() {
                    let i = ((b.len() as f64 * share) as usize).min(b.len() - 1);
                    b[i] = *byte;
                }
            }
            return b;
        }
        Mutation::Line { line, repeat } => {
            if !lines.is_empty() {
                let i = line % lines.len();
                if *repeat {
                    let l = lines[i].clone();
                    lines.insert(i, l);
                } else {
                    lines.remove(i);
                }
            }
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

/// What a case did; any panic inside fails the property.
fn check(bytes: Vec<u8>) -> Result<(), String> {
    let budget = budget();
    let path = Path::new("fuzz.toml");
    let text = match text_of(bytes) {
        Ok(t) => t,
        Err(e) => return Err(e.to_string()),
    };
    let report = check_text(&text, "fuzz", path, &budget).map_err(|e| e.to_string());
    if let Ok(s) = Scenario::from_file_text(&text, "fuzz")
        && s.sweep.is_none()
    {
        // `run --dry-run` planning.
        let _ = plan_text(&s, &budget).map_err(|e| e.to_string());
    }
    report.map(|_| ())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Oracle: no panic (proptest reports one as a failure), an error message that is one or
    /// more non-empty lines without "panicked", and a peak allocation under ALLOC_BOUND.
    #[test]
    fn mutated_scenarios_plan_or_fail_cleanly(
        file in 0usize..1000,
        mutations in proptest::collection::vec(mutation(), 1..3),
    ) {
        let files = corpus();
        let (_, original) = &files[file % files.len()];
        let mut bytes = original.clone();
        for m in &mutations {
            bytes = apply(&bytes, m);
        }
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let outcome = check(bytes);
        let peak = PEAK.with(Cell::get) - start;
        prop_assert!(
            peak < ALLOC_BOUND as isize,
            "peak allocation {peak} bytes for {mutations:?}"
        );
        if let Err(e) = outcome {
            prop_assert!(!e.trim().is_empty() && !e.contains("panicked"), "{e}");
        }
    }
}

/// The corpus itself plans cleanly (no mutation): every shipped scenario is valid.
#[test]
fn shipped_scenarios_validate_and_plan() {
    for (path, bytes) in corpus() {
        let text = text_of(bytes.clone()).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy();
        check_text(&text, &stem, path, &budget())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

/// Every shipped single-run scenario (sweep files aside) resolves to a `scenario.resolved.toml`
/// that loads again and resolves to itself: `lpc-bench eval` reloads that file. Oracle: the
/// validation rules themselves (a resolved pretrained scenario once named its tokenizer, which
/// `data.tokenizer must be left unset with model.pretrained` refuses).
#[test]
fn shipped_scenarios_resolve_to_files_that_load_again() {
    let mut checked = 0;
    for (path, bytes) in corpus() {
        let text = text_of(bytes.clone()).unwrap();
        if text.contains("[sweep]") {
            continue;
        }
        let stem = path.file_stem().unwrap().to_string_lossy();
        let resolved = Scenario::from_file_text(&text, &stem)
            .and_then(|s| s.to_toml())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let again = Scenario::from_toml_str(&resolved, "x")
            .unwrap_or_else(|e| panic!("{}: resolved file refused: {e}", path.display()));
        assert_eq!(again.to_toml().unwrap(), resolved, "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 20, "{checked} scenarios");
}

/// Deep nesting and very long lines do not overflow the stack or take long.
#[test]
fn pathological_toml_is_a_clean_error() {
    for text in [
        format!("a = {}", "[".repeat(100_000)),
        format!("a = {}1{}", "[".repeat(5000), "]".repeat(5000)),
        format!("a = {}", "{ b = ".repeat(10_000)),
        format!("name = \"{}\"", "x".repeat(1 << 20)),
    ] {
        let _ = check(text.into_bytes());
    }
}
