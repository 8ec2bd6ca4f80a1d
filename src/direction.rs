//! Where does DPO's first full-batch step point? A diagnostic of a real-data scenario with a
//! pretrained policy (docs/RESULTS.md §6, pilots 9 and 9b; `examples/dpo_direction.rs` writes
//! its rows).
//!
//! At pi_ref it computes the gradient `G` of the mean DPO loss over **all** training pairs (in
//! chunks of `train.batch_size`, no clipping), then scores the validation pairs (never the
//! held-out ones) after one step along it:
//! - [`StepKind::Gd`]: `theta - a G / rms(G)` (gradient descent, scaled so `a` is the
//!   root-mean-square movement per trainable coordinate);
//! - [`StepKind::Sign`]: `theta - a sign(G)` (Adam's first step on a full batch,
//!   `m / sqrt(v) = sign(G)`, up to the project's Adam epsilon of 1e-8: `G / (|G| + 1e-8)`);
//!
//! and `a = 0` ([`StepKind::None`]), with the loss on the first [`TRAIN_CHECK`] training pairs
//! (which are among those `G` is taken over) as a check that the step descends. Beside them:
//! the linear probe on the frozen features ([`crate::probe`]) and its infinite-L2 limit, the
//! centroid `w = sum_i (f_w - f_l) / s`, on the same validation pairs. `corr_with_probe` is the
//! Pearson correlation of a row's validation margins with the probe's (NaN for `a = 0`, where
//! every margin is 0).
//!
//! `G` is read as the difference that one plain SGD step of learning rate 1 makes to the f32
//! parameters, so a coordinate whose gradient is below half the rounding step of its value
//! reads as 0 (and does not move in the sign step, where Adam would move it).

use crate::data::batch::{FixedShape, fix_shapes};
use crate::data::context::ContextPool;
use crate::experiment::{RunOptions, initial_policy, load_data};
use crate::metrics::{mean, observed_accuracy};
use crate::model::CodeChoice;
use crate::probe::Probe;
use crate::rng::stream;
use crate::scenario::CheckedScenario;
use crate::train::{
    MethodContext, MethodModel, ReferenceCache, evaluate, forward_pairs, pair_loss,
};
use crate::{Error, Result};
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer, SgdConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use std::collections::HashMap;

type B = crate::model::CpuAutodiff;
type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

/// Training pairs whose loss checks that a step descends.
pub const TRAIN_CHECK: usize = 256;

/// The header of [`DirectionRow::csv_line`]'s rows.
pub const CSV_HEADER: &str =
    "seed,direction,alpha,val_accuracy,val_loss,train_loss,mean_abs_val_margin,corr_with_probe";

/// What a row scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// The linear probe (`alpha` is its L2 weight).
    Probe,
    /// The probe's infinite-L2 limit, the centroid of the scaled differences (`alpha` = inf).
    Centroid,
    /// No step: pi_ref itself.
    None,
    /// `theta - a G / rms(G)`.
    Gd,
    /// `theta - a sign(G)`.
    Sign,
}

impl StepKind {
    /// The name in the CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Probe => "probe",
            StepKind::Centroid => "centroid",
            StepKind::None => "none",
            StepKind::Gd => "gd",
            StepKind::Sign => "sign",
        }
    }
}

/// One row: a step (or a probe) scored on the validation pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectionRow {
    /// The data seed.
    pub seed: u64,
    /// What was scored.
    pub kind: StepKind,
    /// The step size `a` (the L2 weight for the probe, infinity for the centroid).
    pub alpha: f64,
    /// Accuracy on the validation pairs (a tie counts 1/2).
    pub val_accuracy: f64,
    /// Mean DPO loss on the validation pairs (steps only).
    pub val_loss: Option<f64>,
    /// Mean DPO loss on the first [`TRAIN_CHECK`] training pairs (steps only).
    pub train_loss: Option<f64>,
    /// Mean |margin| on the validation pairs (steps only).
    pub mean_abs_val_margin: Option<f64>,
    /// Pearson correlation of the validation margins with the probe's.
    pub corr_with_probe: f64,
}

impl DirectionRow {
    /// The row as a line of [`CSV_HEADER`]'s CSV.
    pub fn csv_line(&self) -> String {
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
        format!(
            "{},{},{},{:.4},{},{},{},{:.4}",
            self.seed,
            self.kind.as_str(),
            self.alpha,
            self.val_accuracy,
            opt(self.val_loss, &|v| format!("{v:.5}")),
            opt(self.train_loss, &|v| format!("{v:.5}")),
            opt(self.mean_abs_val_margin, &|v| format!("{v:.3e}")),
            self.corr_with_probe
        )
    }
}

/// The rows and the gradient's size.
#[derive(Debug, Clone, PartialEq)]
pub struct Directions {
    /// Probe, centroid, `a = 0`, then each gd and each sign step, in the order asked.
    pub rows: Vec<DirectionRow>,
    /// Root-mean-square of `G` over the coordinates it moves.
    pub rms: f64,
    /// Coordinates `G` moves.
    pub coordinates: usize,
    /// Parameter tensors `G` moves.
    pub tensors: usize,
}

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

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Measure DPO's first full-batch step on `scenario` (its data seed; CPU backend), for the step
/// sizes `gd` and `sign`, calling `say` with progress. The scenario must name a pretrained
/// policy (a scratch policy's pi_ref is its warm-up's result, which this does not run) and
/// have DPO as its first method.
pub fn first_steps(
    scenario: &CheckedScenario,
    gd: &[f64],
    sign: &[f64],
    say: &dyn Fn(&str),
) -> Result<Directions> {
    let name = &scenario.name;
    if scenario.model.pretrained.is_none() {
        return Err(Error::msg(format!(
            "{name}: model.pretrained must be set (a pretrained policy is pi_ref)"
        )));
    }
    let seed = scenario.data.seed;
    // initial_policy seeds burn's process-global generator, as a run does under this lock.
    let _rng = crate::rng::backend_rng_lock();
    let run = load_data(
        scenario,
        &RunOptions {
            quiet: true,
            ..RunOptions::default()
        },
    )?;
    let data = &run.data;
    let _shapes = fix_shapes(FixedShape::of(data));
    let device = Default::default();
    let policy = initial_policy::<B>(scenario, data, &device)?;
    let reference = policy.valid();
    let sep = data.separator();
    let train_refs =
        ReferenceCache::compute_with_progress(&reference, &data.train, sep, true, |_| {});
    say(&format!("reference of {} training pairs", data.train.len()));
    let val_refs = ReferenceCache::compute_with_progress(&reference, &data.val, sep, true, |_| {});
    say(&format!("reference of {} validation pairs", data.val.len()));

    let mut rows = Vec::new();
    // The probe and its centroid limit on the validation pairs.
    let no_features = "the reference pass returned no response features";
    let (train_f, val_f) = (
        train_refs
            .features
            .as_ref()
            .ok_or_else(|| Error::msg(no_features))?,
        val_refs
            .features
            .as_ref()
            .ok_or_else(|| Error::msg(no_features))?,
    );
    let train_diffs = train_f.diffs();
    let probe = Probe::train(&train_diffs)
        .ok_or_else(|| Error::msg(format!("{name}: no training pairs")))?;
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
    for (kind, alpha, m) in [
        (StepKind::Probe, probe.lambda, &probe_margins),
        (StepKind::Centroid, f64::INFINITY, &centroid_margins),
    ] {
        rows.push(DirectionRow {
            seed,
            kind,
            alpha,
            val_accuracy: observed_accuracy(m),
            val_loss: None,
            train_loss: None,
            mean_abs_val_margin: None,
            corr_with_probe: pearson(m, &probe_margins),
        });
    }
    say(&format!("probe: {}", rows[0].csv_line()));

    // The full-batch gradient of the mean DPO loss at pi_ref.
    let methods = scenario.resolved_methods();
    let method = methods
        .first()
        .filter(|m| m.name.canonical() == "dpo")
        .ok_or_else(|| {
            Error::msg(format!(
                "{name}: the first of [[methods]] must be method = \"dpo\""
            ))
        })?;
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
        return Err(Error::msg(format!(
            "{name}: no trainable parameter has a gradient: nothing to step along"
        )));
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
    let runs = std::iter::once((StepKind::None, 0.0))
        .chain(gd.iter().map(|a| (StepKind::Gd, *a)))
        .chain(sign.iter().map(|a| (StepKind::Sign, *a)));
    for (direction, a) in runs {
        let step: HashMap<ParamId, Vec<f32>> = neg_g
            .iter()
            .map(|(id, d)| {
                let s = d
                    .iter()
                    .map(|x| match direction {
                        StepKind::Gd => (a * *x as f64 / rms) as f32,
                        _ if *x == 0.0 || a == 0.0 => 0.0,
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
        let mean_abs = mean(&val.margins.iter().map(|m| m.abs()).collect::<Vec<_>>());
        rows.push(DirectionRow {
            seed,
            kind: direction,
            alpha: a,
            val_accuracy: val.accuracy,
            val_loss: Some(val.loss),
            train_loss: Some(train.loss),
            mean_abs_val_margin: Some(mean_abs),
            corr_with_probe: pearson(&val.margins, &probe_margins),
        });
        say(&rows[rows.len() - 1].csv_line());
        if direction == StepKind::Gd && gd_first.is_none() {
            gd_first = Some(val.margins);
        }
    }
    if let Some(m) = gd_first {
        say(&format!(
            "gd at its smallest step: corr with the centroid {:.4}",
            pearson(&m, &centroid_margins)
        ));
    }
    Ok(Directions {
        rows,
        rms,
        coordinates: count,
        tensors: neg_g.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_of_a_line_is_one_and_of_its_mirror_minus_one() {
        let a = [1.0, 2.0, 4.0, 7.0];
        let b: Vec<f64> = a.iter().map(|x| 3.0 * x - 1.0).collect();
        let c: Vec<f64> = a.iter().map(|x| -0.5 * x).collect();
        assert!((pearson(&a, &b) - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &c) + 1.0).abs() < 1e-12);
    }

    /// The first expected line is seed 3's gd 1e-6 row of
    /// results/real-smollm2-cpu/direction/seed3.csv, which the example wrote; the second pins
    /// the empty fields and the infinite alpha of a probe-kind row.
    #[test]
    fn rows_print_as_the_committed_csv_does() {
        let row = DirectionRow {
            seed: 3,
            kind: StepKind::Gd,
            alpha: 1e-6,
            val_accuracy: 0.5078125,
            val_loss: Some(0.693_021),
            train_loss: Some(0.691_81),
            mean_abs_val_margin: Some(8.105e-3),
            corr_with_probe: 0.14,
        };
        assert_eq!(
            row.csv_line(),
            "3,gd,0.000001,0.5078,0.69302,0.69181,8.105e-3,0.1400"
        );
        let probe = DirectionRow {
            kind: StepKind::Centroid,
            alpha: f64::INFINITY,
            val_loss: None,
            train_loss: None,
            mean_abs_val_margin: None,
            corr_with_probe: 0.98871,
            ..row
        };
        assert_eq!(probe.csv_line(), "3,centroid,inf,0.5078,,,,0.9887");
    }
}
