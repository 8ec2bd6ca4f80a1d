//! Loading SmolLM2-135M-Instruct from its GGUF file, and scoring sequences with it (issue 14's
//! acceptance item 3: load + reference log-probs of 1000 pairs in at most 5 minutes on 2 cores).
//!
//! Not a criterion bench: a load runs once, so this prints wall-clock times of
//! - `read+parse`: [`GgufFile::open`] (98 MB read, metadata and tensor infos parsed);
//! - `build`: dequantisation to f32, host transposes and upload ([`Llama::from_gguf`]);
//! - `score`: one no-grad forward pass over `[4, 256]` token ids with the response log-probs
//!   read out (log-softmax over the 49152-word vocabulary at 128 response positions per row),
//!   repeated 3 times, the minimum kept; and the implied time for 2000 sequences (1000 pairs).
//!
//! Needs the model (`scripts/fetch-model.sh`); without it, prints how to fetch it and exits 0.
//! Run: `cargo bench --bench smollm2`.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use lpc_bench::gguf::GgufFile;
use lpc_bench::model::{CpuBackend, Llama, LlamaConfig};
use std::path::Path;
use std::time::Instant;

const ROWS: usize = 4;
const LEN: usize = 256;
const RESPONSE: usize = 128;

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        println!(
            "{} absent: run scripts/fetch-model.sh first",
            path.display()
        );
        return;
    }
    let device = Default::default();
    let t = Instant::now();
    let file = GgufFile::open(&path).expect("model file parses");
    let read = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let cfg = LlamaConfig::from_gguf(&file).expect("llama config");
    let model = Llama::<CpuBackend>::from_gguf(&file, &cfg, &device).expect("model builds");
    let build = t.elapsed().as_secs_f64();
    println!("read+parse {read:.2} s, build {build:.2} s");
    // Deterministic ids (a multiplicative hash), no special tokens.
    let ids: Vec<i64> = (0..ROWS * LEN)
        .map(|i| 17 + (i as i64 * 2_654_435_761) % 49_000)
        .collect();
    let targets: Vec<i64> = ids.clone();
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let input = Tensor::<CpuBackend, 2, Int>::from_data(
            TensorData::new(ids.clone(), [ROWS, LEN]),
            &device,
        );
        let h = model.hidden(input).expect("within context");
        let d = model.d_model();
        // Response positions P-1 .. L-2 predict the response tokens P .. L-1.
        let h = h
            .narrow(1, LEN - RESPONSE - 1, RESPONSE)
            .reshape([ROWS * RESPONSE, d]);
        let logp = log_softmax(model.logits_from_hidden(h), 1);
        let tgt: Vec<i64> = (0..ROWS)
            .flat_map(|r| targets[r * LEN + LEN - RESPONSE..(r + 1) * LEN].to_vec())
            .collect();
        let tgt = Tensor::<CpuBackend, 2, Int>::from_data(
            TensorData::new(tgt, [ROWS * RESPONSE, 1]),
            &device,
        );
        let sum = logp.gather(1, tgt).sum().into_scalar();
        std::hint::black_box(sum);
        best = best.min(t.elapsed().as_secs_f64());
    }
    let per_seq = best / ROWS as f64;
    // Matmul FLOPs per sequence: the blocks' projections (2 d (2 d + 2 d_kv + 3 d_ff) per token
    // and layer), attention (2 x 2 L d per token and layer, the full L x L square), and the
    // output projection (2 d V) at the response positions.
    let (d, kv, ff, layers) = (
        cfg.d_model,
        cfg.n_kv_heads * cfg.head_dim(),
        cfg.d_ff,
        cfg.n_layers,
    );
    let per_token = (2 * d * (2 * d + 2 * kv + 3 * ff) + 4 * LEN * d) * layers;
    let flops = (LEN * per_token + RESPONSE * 2 * d * cfg.vocab) as f64;
    println!(
        "score [{ROWS}, {LEN}] (response {RESPONSE}): {best:.2} s, {per_seq:.3} s per sequence \
         ({:.1} GFLOP each, {:.1} GFLOP/s); 1000 pairs (2000 sequences) ~ {:.0} s; \
         load + 1000 pairs ~ {:.0} s",
        flops / 1e9,
        flops * ROWS as f64 / best / 1e9,
        2000.0 * per_seq,
        read + build + 2000.0 * per_seq
    );
}
