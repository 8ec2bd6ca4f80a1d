//! Where does DPO's first full-batch step point? A diagnostic for a real-data scenario with a
//! pretrained policy (docs/RESULTS.md §6).
//!
//! ```text
//! cargo run --release --example dpo_direction -- SCENARIO SEED THREADS OUT.csv [GD_STEPS [SIGN_STEPS]]
//! ```
//!
//! The scenario's first method must be DPO. At pi_ref it computes the gradient `G` of the mean
//! DPO loss over **all** training pairs (in chunks of `train.batch_size`, no clipping), then
//! scores the validation pairs (never the held-out ones) after one step along it:
//! - `gd`: `theta - a G / rms(G)` (gradient descent, scaled so `a` is the root-mean-square
//!   movement per trainable coordinate);
//! - `sign`: `theta - a sign(G)` (Adam's first step on a full batch, `m / sqrt(v) = sign(G)`,
//!   up to the project's Adam epsilon of 1e-8: `G / (|G| + 1e-8)`);
//!
//! for each `a` of the comma-separated GD_STEPS (default `1e-6,1e-5,1e-4,1e-3`) and SIGN_STEPS
//! (default `1e-5,1e-4,1e-3`), and `a = 0`, with the loss on the first 256 training pairs
//! (which are among those `G` is taken over) as a check that the step descends. Beside them:
//! the linear probe on the frozen features (`lpc_bench::probe`) and its infinite-L2 limit, the
//! centroid `w = sum_i (f_w - f_l) / s`, on the same validation pairs. Rows go to OUT.csv;
//! `corr_with_probe` is the Pearson correlation of a row's validation margins with the
//! probe's (NaN for `a = 0`, where every margin is 0). The root-mean-square of `G` and the
//! number of coordinates it moves are printed to stderr.
//!
//! `G` is read as the difference that one plain SGD step of learning rate 1 makes to the f32
//! parameters, so a coordinate whose gradient is below half the rounding step of its value
//! reads as 0 (and does not move in the `sign` step, where Adam would move it).

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use lpc_bench::data::batch::{FixedShape, fix_shapes};
use lpc_bench::data::context::ContextPool;
use lpc_bench::experiment::{RunOptions, initial_policy, load_data};
use lpc_bench::metrics::{margin_prediction, preference_credit};
use lpc_bench::model::CodeChoice;
use lpc_bench::probe::Probe;
use lpc_bench::rng::stream;
use lpc_bench::scenario::Scenario;
use lpc_bench::train::{
    MethodContext, MethodModel, ReferenceCache, evaluate, forward_pairs, pair_loss,
};
use std::collections::HashMap;
use std::path::PathBuf;

type B = lpc_bench::model::CpuAutodiff;
type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

const GD_STEPS: &str = "1e-6,1e-5,1e-4,1e-3";
const SIGN_STEPS: &str = "1e-5,1e-4,1e-3";
const TRAIN_CHECK: usize = 256;

/// Every float parameter's values by id.
struct Collect(HashMap<ParamId, Vec<f32>>);

impl<Bk: Backend> ModuleVisitor<Bk> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        let v = param.val().into_data().convert::<f32>().to_vec::<f32>();
        self.0.insert(param.id, v.expect("f32 parameter"));
    }
}

/// Adds `step[id]` to each float parameter that has one.
struct AddStep<'a>(&'a HashMap<ParamId, Vec<f32>>);

impl<Bk: Backend> ModuleMapper<Bk> for AddStep<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<Bk, D>>) -> Param<Tensor<Bk, D>> {
        let (id, tensor, mapper) = param.consume();
        let tensor = match self.0.get(&id) {
            Some(step) => {
                let shape = tensor.shape();
                let device = tensor.device();
                tensor + Tensor::from_data(TensorData::new(step.clone(), shape), &device)
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}

fn params<Bk: Backend, M: Module<Bk>>(m: &M) -> HashMap<ParamId, Vec<f32>> {
    let mut c = Collect(HashMap::new());
    m.visit(&mut c);
    c.0
}

/// Accuracy of margins against "chosen wins" (a tie counts 1/2), as the run scores it.
fn accuracy(margins: &[f64]) -> f64 {
    let credit = |m: &f64| preference_credit(margin_prediction(*m), 1.0);
    margins.iter().map(credit).sum::<f64>() / margins.len() as f64
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: dpo_direction SCENARIO SEED THREADS OUT.csv [GD_STEPS [SIGN_STEPS]]";
    let (Some([path, seed, threads, out]), rest) = (args.first_chunk::<4>(), args.get(4..)) else {
        return Err(usage.into());
    };
    let grid = |k: usize, default: &str| -> Result<Vec<f64>, std::num::ParseFloatError> {
        let text = rest.and_then(|r| r.get(k)).map_or(default, String::as_str);
        text.split(',').map(str::parse).collect()
    };
    let steps = [("gd", grid(0, GD_STEPS)?), ("sign", grid(1, SIGN_STEPS)?)];
    let (seed, threads): (u64, usize) = (seed.parse()?, threads.parse()?);
    let scenario = Scenario::load(&PathBuf::from(path))?.amend(|s| {
        s.data.seed = seed;
        s.train.threads = threads;
    })?;
    if scenario.model.pretrained.is_none() {
        // A scratch policy's pi_ref is its warm-up's result, which this diagnostic does not run.
        return Err(format!(
            "{path}: model.pretrained must be set (a pretrained policy is pi_ref)"
        )
        .into());
    }
    lpc_bench::device::set_cpu_threads(threads);
    let run = load_data(&scenario, &RunOptions::default())?;
    let data = &run.data;
    let _shapes = fix_shapes(FixedShape::of(data));
    let device = Default::default();
    let clock = std::time::Instant::now();
    let say = |m: &str| eprintln!("[{:6.0}s] {m}", clock.elapsed().as_secs_f64());

    let policy = initial_policy::<B>(&scenario, data, &device)?;
    let reference = policy.valid();
    let sep = data.separator();
    let train_refs =
        ReferenceCache::compute_with_progress(&reference, &data.train, sep, true, |_| {});
    say(&format!("reference of {} training pairs", data.train.len()));
    let val_refs = ReferenceCache::compute_with_progress(&reference, &data.val, sep, true, |_| {});
    say(&format!("reference of {} validation pairs", data.val.len()));

    let mut rows = vec![
        "seed,direction,alpha,val_accuracy,val_loss,train_loss,mean_abs_val_margin,corr_with_probe"
            .to_string(),
    ];
    // The probe and its centroid limit on the validation pairs.
    let no_features = "the reference pass returned no response features";
    let (train_f, val_f) = (
        train_refs.features.as_ref().ok_or(no_features)?,
        val_refs.features.as_ref().ok_or(no_features)?,
    );
    let train_diffs = train_f.diffs();
    let probe = Probe::train(&train_diffs).ok_or("no training pairs")?;
    let probe_margins: Vec<f64> = (0..data.val.len())
        .map(|i| probe.margin(&val_f.chosen[i], &val_f.rejected[i]))
        .collect();
    let dim = probe.scale.len();
    let centroid = Probe {
        weights: (0..dim)
            .map(|j| train_diffs.iter().map(|d| d[j] / probe.scale[j]).sum())
            .collect(),
        ..probe.clone()
    };
    let centroid_margins: Vec<f64> = (0..data.val.len())
        .map(|i| centroid.margin(&val_f.chosen[i], &val_f.rejected[i]))
        .collect();
    for (name, m) in [("probe", &probe_margins), ("centroid", &centroid_margins)] {
        rows.push(format!(
            "{seed},{name},{},{:.4},,,,{:.4}",
            if name == "probe" {
                probe.lambda
            } else {
                f64::INFINITY
            },
            accuracy(m),
            pearson(m, &probe_margins)
        ));
    }
    say(&format!("probe: {}", rows[1]));

    // The full-batch gradient of the mean DPO loss at pi_ref.
    let methods = scenario.resolved_methods();
    let method = methods
        .first()
        .filter(|m| m.name.canonical() == "dpo")
        .ok_or_else(|| format!("{path}: the first of [[methods]] must be method = \"dpo\""))?;
    let ctx = MethodContext::new(method, data).with_seed(seed);
    let model = MethodModel::init(method, &policy, seed, &device);
    let mut rng = stream(seed, "dpo_direction");
    let mut acc = GradientsAccumulator::<MethodModel<B>>::new();
    let n = data.train.len();
    let idx: Vec<usize> = (0..n).collect();
    for (k, chunk) in idx.chunks(scenario.train.batch_size).enumerate() {
        let pairs: Vec<_> = chunk.iter().map(|&i| &data.train[i]).collect();
        let rc: Vec<f64> = chunk.iter().map(|&i| train_refs.chosen[i]).collect();
        let rr: Vec<f64> = chunk.iter().map(|&i| train_refs.rejected[i]).collect();
        let fwd = forward_pairs(
            &model,
            &ctx,
            &pairs,
            &[],
            (&rc, &rr),
            &CodeChoice::Prior,
            &mut rng,
            &device,
        );
        let loss = pair_loss(&ctx, fwd, 0.0).losses.sum().div_scalar(n as f64);
        acc.accumulate(&model, GradientsParams::from_grads(loss.backward(), &model));
        if k % 10 == 9 {
            say(&format!("gradient: {} of {n} pairs", (k + 1) * chunk.len()));
        }
    }
    let grads = acc.grads();
    let theta0 = model.valid();
    let before = params(&theta0);
    let stepped = SgdConfig::new()
        .init::<B, MethodModel<B>>()
        .step(1.0, model, grads)
        .valid();
    // -G per trainable parameter (frozen tensors do not move, so their difference is zero).
    let neg_g: HashMap<ParamId, Vec<f32>> = params(&stepped)
        .into_iter()
        .filter_map(|(id, after)| {
            let d: Vec<f32> = after.iter().zip(&before[&id]).map(|(a, b)| a - b).collect();
            d.iter().any(|x| *x != 0.0).then_some((id, d))
        })
        .collect();
    let count: usize = neg_g.values().map(Vec::len).sum();
    if count == 0 {
        return Err("no trainable parameter has a gradient: nothing to step along".into());
    }
    let rms = (neg_g
        .values()
        .flatten()
        .map(|x| (*x as f64).powi(2))
        .sum::<f64>()
        / count as f64)
        .sqrt();
    say(&format!(
        "G over {count} trainable coordinates in {} tensors, rms {rms:.3e}",
        neg_g.len()
    ));

    let pool_val = ContextPool::new(&data.train, &data.val, false, 0);
    let check = &data.train[..TRAIN_CHECK.min(n)];
    let check_refs = ReferenceCache {
        chosen: train_refs.chosen[..check.len()].to_vec(),
        rejected: train_refs.rejected[..check.len()].to_vec(),
        features: None,
    };
    let pool_train = ContextPool::new(&data.train, check, false, 0);
    let mut gd_first: Option<Vec<f64>> = None;
    let runs = std::iter::once(("none", 0.0)).chain(
        steps
            .iter()
            .flat_map(|(d, grid)| grid.iter().map(move |a| (*d, *a))),
    );
    for (direction, a) in runs {
        let step: HashMap<ParamId, Vec<f32>> = neg_g
            .iter()
            .map(|(id, d)| {
                let s = d
                    .iter()
                    .map(|x| match direction {
                        "gd" => (a * *x as f64 / rms) as f32,
                        _ if *x == 0.0 => 0.0,
                        _ => a.copysign(*x as f64) as f32,
                    })
                    .collect();
                (*id, s)
            })
            .collect();
        let moved: MethodModel<Inner> = theta0.clone().map(&mut AddStep(&step));
        let val = evaluate(
            &moved,
            &ctx,
            &data.val,
            &val_refs,
            |_| CodeChoice::Prior,
            &pool_val,
            &mut rng,
            &device,
        );
        let train = evaluate(
            &moved,
            &ctx,
            check,
            &check_refs,
            |_| CodeChoice::Prior,
            &pool_train,
            &mut rng,
            &device,
        );
        let mean_abs = val.margins.iter().map(|m| m.abs()).sum::<f64>() / val.margins.len() as f64;
        rows.push(format!(
            "{seed},{direction},{a},{:.4},{:.5},{:.5},{mean_abs:.3e},{:.4}",
            val.accuracy,
            val.loss,
            train.loss,
            pearson(&val.margins, &probe_margins)
        ));
        say(rows.last().expect("row"));
        if direction == "gd" && gd_first.is_none() {
            gd_first = Some(val.margins);
        }
    }
    if let Some(m) = gd_first {
        say(&format!(
            "gd at its smallest step: corr with the centroid {:.4}",
            pearson(&m, &centroid_margins)
        ));
    }
    std::fs::write(out, rows.join("\n") + "\n")?;
    Ok(())
}
