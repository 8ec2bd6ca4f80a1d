//! One experiment: train every method of a scenario on the same pairs and score it on the same
//! held-out pairs, then write the result folder (see `results` for the files). The `run`, `eval`
//! and `sweep` commands call [`run_scenario`] and its parts; nothing here reads command-line
//! arguments.
//!
//! The pipeline: data (a synthetic world, or real files) → world statistics and ceilings →
//! the shared starting policy (a supervised fit to pi_ref) → cached reference log-probs → for
//! each method: train, select the checkpoint, score (accuracy, latent recovery, policy quality,
//! steering) → files written atomically.

pub mod generate;
pub mod sweep;
pub mod validate;

use crate::data::batch::FixedShape;
use crate::data::{PreferenceData, PreferencePair};
use crate::evaluate::{self, PairPredictions, argmax};
use crate::model::backbone::{Policy, PolicyConfig, hidden_at_separator};
use crate::model::latent::one_hot_weights;
use crate::model::pretrained::{PretrainedPolicy, Trainable};
use crate::model::reference::{kl_ref_to_policy, warmup};
use crate::model::sampling::sample_responses;
use crate::results;
use crate::results::metrics_row::{
    Ceilings, MethodBound, MethodScores, MetricsRow, PolicyColumns, RunColumns, TrainingColumns,
    WorldStats, write_metrics,
};
use crate::results::rows::{CodeRow, CurveRow, SteeringRow, TimingRow, WhenEmpty, write_rows};
use crate::rng::{derive_seed, stream};
use crate::scenario::{CheckedScenario, LatentKind, ObjectiveKind, ResolvedMethod, Scenario};
use crate::synth::{self, World};
use crate::train::{
    self, CodeChoice, ContextPool, CurvePoint, MethodContext, MethodModel, ReferenceCache,
    TrainStatus,
};
use crate::{Error, Result};
use burn::module::{AutodiffModule, Module};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};
use std::path::{Path, PathBuf};

/// Prompts sampled for the policy-quality scores.
pub const POLICY_PROMPTS: usize = 500;
/// Prompts sampled per code for the steering table.
pub const STEERING_PROMPTS: usize = 200;
/// Training pairs whose posterior codes learn the code ↔ type match.
pub const MATCH_PAIRS: usize = 4000;

/// The files a run writes into its output folder.
pub const RUN_FILES: [&str; 8] = [
    "scenario.resolved.toml",
    "world.json",
    "metrics.csv",
    "curves.csv",
    "codes.csv",
    "steering.csv",
    "summary.md",
    "timing.csv",
];

/// The files a real-data run writes besides [`RUN_FILES`]: the load table and the baselines.
pub const REAL_DATA_RUN_FILES: [&str; 2] = ["load.md", "baselines.csv"];

/// Sub-folder of a run folder that `lpc-bench eval` writes.
pub const RESCORED_DIR: &str = "rescored";
/// The files `lpc-bench eval` writes into it.
pub const RESCORED_FILES: [&str; 2] = ["metrics.csv", "summary.md"];

/// Options of a run beyond the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Replace existing result files.
    pub force: bool,
    /// No progress bars or tables.
    pub quiet: bool,
    /// Skip malformed lines of real data files (counted) instead of failing.
    pub skip_invalid: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Number of methods trained.
    pub methods: usize,
    /// Labels of the methods whose loss stopped being finite.
    pub diverged: Vec<String>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// The folder the results were written to.
    pub out_dir: PathBuf,
}

/// The plan of a run as text: what it would train, the resource estimate, and whether it fits
/// this machine's budget (`Err` with the refusal when it does not). Reads nothing but the
/// budget; allocates nothing proportional to the scenario's sizes.
pub fn plan_text(scenario: &CheckedScenario, budget: &crate::plan::Budget) -> Result<String> {
    let est = crate::plan::estimate(scenario);
    let mut lines = vec![format!("plan of scenario '{}':", scenario.name)];
    let data = if scenario.is_real_data() {
        format!(
            "  data        real: {} file(s), at most {} train / {} eval pairs",
            scenario.data.files.len(),
            scenario.data.train_pairs,
            scenario.data.eval_pairs
        )
    } else {
        let w = scenario.world();
        format!(
            "  data        synthetic world: {} types, {} sources, vocab {}, {} train / {} eval pairs",
            w.types, w.sources, w.vocab, scenario.data.train_pairs, scenario.data.eval_pairs
        )
    };
    lines.push(data);
    let device = crate::device::DeviceChoice::parse(&scenario.train.device)?;
    lines.push(match device {
        crate::device::DeviceChoice::Cuda(_) => format!(
            "  device      {} (kernel fusion {}, precision {})",
            scenario.train.device,
            if scenario.train.fusion { "on" } else { "off" },
            scenario.train.precision.as_str()
        ),
        crate::device::DeviceChoice::Cpu => format!("  device      {}", scenario.train.device),
    });
    lines.extend(est.lines("", budget));
    crate::plan::check_fits(&scenario.name, &est, budget)?;
    lines.push("  fits        yes".to_string());
    Ok(lines.join("\n"))
}

/// Checkpoint stems a run of `scenario` owns: `reference` and every method label.
pub fn checkpoint_stems(scenario: &Scenario) -> Vec<String> {
    std::iter::once(crate::checkpoint::REFERENCE.to_string())
        .chain(scenario.methods.iter().map(|m| m.label()))
        .collect()
}

/// Make `out_dir` ready for a run: the overwrite guard covers every file a run writes, its
/// checkpoints included (`checkpoints/*.mpk`); with `force`, checkpoints of methods the scenario
/// no longer lists are removed (they would otherwise sit beside the new results). Returns the
/// removed files, relative to `out_dir`.
pub fn prepare_run_dir(scenario: &Scenario, out_dir: &Path, force: bool) -> Result<Vec<String>> {
    let mut owned: Vec<String> = RUN_FILES.iter().map(|f| f.to_string()).collect();
    if scenario.is_real_data() {
        owned.extend(REAL_DATA_RUN_FILES.iter().map(|f| f.to_string()));
    }
    owned.extend(crate::checkpoint::existing(out_dir));
    let owned: Vec<&str> = owned.iter().map(String::as_str).collect();
    results::prepare_out_dir(out_dir, force, &owned)?;
    if !force {
        return Ok(Vec::new());
    }
    let mut stale = crate::checkpoint::stale(out_dir, &checkpoint_stems(scenario));
    // `eval`'s rescoring of the checkpoints this run replaces.
    stale.extend(
        RESCORED_FILES
            .iter()
            .map(|f| format!("{}/{f}", RESCORED_DIR))
            .filter(|rel| out_dir.join(rel).exists()),
    );
    crate::checkpoint::remove(out_dir, &stale)
}

/// Run `scenario` into `out_dir` on the device the scenario names.
/// The scenario is checked ([`CheckedScenario`]: overrides applied after loading, such as
/// `--device` or a sweep cell's values, were checked with it).
pub fn run_scenario(
    scenario: &CheckedScenario,
    out_dir: &Path,
    opts: &RunOptions,
) -> Result<RunOutcome> {
    let device = crate::device::DeviceChoice::parse(&scenario.train.device)?;
    // Resource limits before any work: nothing is written or allocated for a refused run.
    let estimate = crate::plan::estimate(scenario);
    crate::plan::check_fits(&scenario.name, &estimate, &crate::plan::memory_budget()?)?;
    device.check_available()?;
    // Training seeds burn's process-global generator and draws from it throughout.
    let _rng = crate::rng::backend_rng_lock();
    let removed = prepare_run_dir(scenario, out_dir, opts.force)?;
    if !removed.is_empty() {
        eprintln!(
            "{}: --force removed stale files (checkpoints of methods no longer listed, earlier \
             rescoring): {}",
            scenario.name,
            removed.join(", ")
        );
    }
    crate::device::dispatch(
        device,
        scenario.train.fusion,
        Run {
            scenario,
            out_dir,
            opts,
        },
    )?
}

/// [`run_scenario`]'s work, handed to [`crate::device::dispatch`], which picks the backend.
struct Run<'a> {
    scenario: &'a CheckedScenario,
    out_dir: &'a Path,
    opts: &'a RunOptions,
}

impl crate::device::OnBackend for Run<'_> {
    type Output = Result<RunOutcome>;
    fn on<B: AutodiffBackend>(self, device: B::Device, compiles_kernels: bool) -> Self::Output {
        RunOn::<B> {
            device,
            compiles_kernels,
        }
        .run(self.scenario, self.out_dir, self.opts)
    }
}

/// The data of a run: a synthetic world and its pairs, or real pairs.
pub struct RunData {
    /// The synthetic world (None for real data).
    pub world: Option<World>,
    /// The train, validation and held-out pairs.
    pub data: PreferenceData,
    /// Real data: what the loader read, kept, dropped and warned about.
    pub load: Option<crate::data::real::LoadReport>,
}

/// Build the run's data from the scenario.
pub fn load_data(scenario: &Scenario, opts: &RunOptions) -> Result<RunData> {
    if scenario.is_real_data() {
        let (data, report) =
            crate::data::real::load_real_data(scenario, Path::new("."), opts.skip_invalid)?;
        if !opts.quiet {
            eprintln!("{report}");
        } else {
            for w in &report.warnings {
                eprintln!("warning: {w}");
            }
        }
        Ok(RunData {
            world: None,
            data,
            load: Some(report),
        })
    } else {
        let (world, data) = synth::synthetic_data(scenario);
        Ok(RunData {
            world: Some(world),
            data,
            load: None,
        })
    }
}

/// Everything scored about the world itself: the ceilings and bound (blank for real data) and,
/// for a synthetic world, its statistics.
pub fn world_scores(
    world: Option<&World>,
    eval: &[PreferencePair],
) -> (Ceilings, Option<WorldStats>) {
    let Some(world) = world else {
        return (Ceilings::default(), None);
    };
    let s = synth::world_stats(world, eval);
    let bound = synth::bayes_argmax_types(world, eval);
    let truth: Vec<usize> = eval.iter().map(|p| p.group).collect();
    let acc =
        bound.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / truth.len().max(1) as f64;
    let ceilings = Ceilings {
        ceil_type_obs: Some(s.type_oracle_acc_observed),
        ceil_prompt_obs: Some(s.prompt_oracle_acc_observed),
        ceil_population_obs: Some(s.population_oracle_acc_observed),
        ceil_type_noiseless: Some(s.type_oracle_acc_noiseless),
        ceil_prompt_noiseless: Some(s.prompt_oracle_acc_noiseless),
        ceil_population_noiseless: Some(s.population_oracle_acc_noiseless),
        bound_nmi: Some(crate::metrics::nmi(&bound, &truth)),
        bound_acc: Some(acc),
    };
    let stats = WorldStats {
        ceil_type_exp_obs: Some(s.type_oracle_exp_observed),
        ceil_prompt_exp_obs: Some(s.prompt_oracle_exp_observed),
        ceil_population_exp_obs: Some(s.population_oracle_exp_observed),
        ceil_type_exp_noiseless: Some(s.type_oracle_exp_noiseless),
        ceil_prompt_exp_noiseless: Some(s.prompt_oracle_exp_noiseless),
        ceil_population_exp_noiseless: Some(s.population_oracle_exp_noiseless),
        world_label_agreement: Some(s.label_agreement),
        world_disagreement_rate: s.disagreement_rate,
        world_js_bits: s.js_bits_mean,
        world_cosine_mean: s.cosine_mean,
    };
    (ceilings, Some(stats))
}

/// Monte Carlo draws of the annotator context for the context bound.
pub const CONTEXT_BOUND_REPS: usize = 5;

/// The identifiability bound for the evidence `method` reads (synthetic worlds): the Bayes
/// posterior over the type given the pair alone (`context = 0`, the `bound_nmi` of the world)
/// or the pair plus `C` context pairs of its annotator, drawn as the method draws them
/// ([`synth::context_bound`]). Columns `bound_nmi_method`, `bound_nmi_method_se`,
/// `bound_acc_method`, `bound_nmi_method_unseen`; blank for real data and for methods without
/// a posterior (baselines, the oracle).
pub fn method_bound(
    world: Option<&World>,
    data: &PreferenceData,
    method: &ResolvedMethod,
    seed: u64,
) -> MethodBound {
    let reads_posterior = matches!(method.name.latent, LatentKind::Lpc | LatentKind::Gaussian);
    let Some(world) = world.filter(|_| reads_posterior) else {
        return MethodBound::default();
    };
    let b = synth::context_bound(
        world,
        &data.train,
        &data.eval,
        method.context,
        seed,
        CONTEXT_BOUND_REPS,
    );
    MethodBound {
        bound_nmi_method: Some(b.nmi),
        bound_nmi_method_se: Some(b.nmi_se),
        bound_acc_method: Some(b.acc),
        bound_nmi_method_unseen: b.nmi_unseen,
    }
}

/// A `(prompt, response)` pair of token ids.
pub type Sequence = (Vec<u32>, Vec<u32>);
/// A `(prompt, response, log pi_ref(response | prompt, length))` triple.
pub type ScoredSequence = (Vec<u32>, Vec<u32>, f64);

/// Pairs of (prompt, response) drawn from pi_ref for the warm-up, and held-out ones with their
/// exact token log-probability given the length (synthetic worlds); real data fits the chosen
/// responses of the training pairs and has no held-out KL.
pub fn warmup_samples(scenario: &Scenario, run: &RunData) -> (Vec<Sequence>, Vec<ScoredSequence>) {
    let n = (scenario.model.warmup_steps * scenario.train.batch_size).clamp(1, 100_000);
    match &run.world {
        Some(world) => {
            let seed = scenario.data.seed;
            let mut rng = stream(seed, "warmup");
            let samples: Vec<(Vec<u32>, Vec<u32>)> = world
                .pairs(&mut rng)
                .take(n.div_ceil(2))
                .flat_map(|p| [(p.prompt.clone(), p.chosen), (p.prompt, p.rejected)])
                .collect();
            let mut rng = stream(seed, "warmup/heldout");
            let heldout = world
                .pairs(&mut rng)
                .take(500)
                .map(|p| {
                    let lp = world.reference_log_prob(p.source, &p.prompt, &p.chosen)
                        - log_length_prob(world, p.chosen.len());
                    (p.prompt, p.chosen, lp)
                })
                .collect();
            (samples, heldout)
        }
        None => {
            let samples = run
                .data
                .train
                .iter()
                .map(|p| (p.prompt.clone(), p.chosen.clone()))
                .collect();
            (samples, Vec::new())
        }
    }
}

/// ln P(|y| = len) under the world's reference: lengths are uniform on `[lo, hi]`.
pub fn log_length_prob(world: &World, len: usize) -> f64 {
    let (lo, hi) = world.response_lengths();
    if (lo..=hi).contains(&len) {
        -((hi - lo + 1) as f64).ln()
    } else {
        f64::NEG_INFINITY
    }
}

/// The policy a scenario's `[model]` names, untrained: the pretrained model of
/// `model.pretrained` (read from its GGUF file; a relative path resolves against the current
/// directory, like the data files), or the scratch transformer, drawn on the host from the
/// stream `init/policy` so it is the same on every device.
pub fn initial_policy<B: Backend>(
    scenario: &Scenario,
    data: &PreferenceData,
    device: &B::Device,
) -> Result<Policy<B>> {
    let init_seed = derive_seed(scenario.data.seed, "init/policy");
    B::seed(device, init_seed);
    if let Some(path) = &scenario.model.pretrained {
        let trainable = scenario.model.trainable().unwrap_or(Trainable::All);
        let path = crate::data::real::resolve_path(Path::new("."), path);
        let policy = PretrainedPolicy::load(
            &path,
            trainable,
            data.max_seq_len(),
            data.separator(),
            device,
        )?;
        return Ok(Policy::Pretrained(policy));
    }
    let config = PolicyConfig::from_spec(&scenario.model, data.model_vocab(), data.max_seq_len());
    Ok(crate::device::init_on_host(
        init_seed,
        config.init::<B>(device),
        |cpu| config.init(cpu),
        device,
    )
    .with_precision(scenario.train.precision))
}

/// The scratch policy's supervised warm-up to pi_ref: the starting policy, its frozen copy (the
/// reference) and, where the world gives held-out reference samples, KL(pi_ref || pi_start) on
/// them.
fn warm_start<B: AutodiffBackend>(
    scenario: &Scenario,
    run: &RunData,
    policy: Policy<B>,
    note: &dyn Fn(&str),
    quiet: bool,
) -> (Policy<B>, Policy<B::InnerBackend>, Option<f64>) {
    let data = &run.data;
    let seed = scenario.data.seed;
    let (samples, heldout) = warmup_samples(scenario, run);
    note(&format!(
        "{}: warm-up on {} reference samples ({} steps)",
        scenario.name,
        samples.len(),
        scenario.model.warmup_steps
    ));
    // On a GPU the first warm-up steps compile their kernels: say so while they run.
    let ticker = crate::progress::Ticker::start(
        format!(
            "{}: warm-up (the first steps compile kernels)",
            scenario.name
        ),
        None,
        quiet,
    );
    let (start, warm_losses) = warmup(
        policy,
        &samples,
        data.separator(),
        scenario.model.warmup_steps,
        scenario.model.warmup_lr,
        scenario.train.batch_size,
        &mut stream(seed, "warmup/order"),
    );
    drop(ticker);
    let reference = start.valid();
    let warm_kl =
        (!heldout.is_empty()).then(|| kl_ref_to_policy(&reference, &heldout, data.separator()));
    if let Some(kl) = warm_kl {
        note(&format!(
            "{}: KL(pi_ref || pi_start) = {kl:.4} nats on {} held-out reference samples (final warm-up loss {:.4})",
            scenario.name,
            heldout.len(),
            warm_losses.last().copied().unwrap_or(f32::NAN)
        ));
    }
    (start, reference, warm_kl)
}

/// A run on backend `B` (CPU or CUDA), chosen at run time from `train.device`.
pub struct RunOn<B: AutodiffBackend> {
    /// The device every tensor of the run lives on.
    pub device: B::Device,
    /// Whether the backend JIT-compiles kernels (a GPU), which the first step's progress says.
    pub compiles_kernels: bool,
}

impl<B: AutodiffBackend> RunOn<B> {
    /// The whole run on this backend.
    pub fn run(
        &self,
        scenario: &CheckedScenario,
        out_dir: &Path,
        opts: &RunOptions,
    ) -> Result<RunOutcome> {
        let clock = std::time::Instant::now();
        let device = &self.device;
        let seed = scenario.data.seed;
        let run = load_data(scenario, opts)?;
        let data = &run.data;
        // Every batch of the run has the data's longest (L, R) (issue 11: few, fixed shapes).
        let _shapes = crate::data::batch::fix_shapes(FixedShape::of(data));
        let (ceilings, world_stats) = world_scores(run.world.as_ref(), &data.eval);

        let note = |m: &str| {
            if !opts.quiet {
                eprintln!("{m}");
            }
        };
        let policy = initial_policy::<B>(scenario, data, device)?;
        let (start, reference, warm_kl) = if let Policy::Pretrained(p) = &policy {
            note(&format!(
                "{}: pretrained policy {} ({} trainable blocks{}, head {}); it is pi_ref, so no \
                 warm-up",
                scenario.name,
                scenario
                    .model
                    .pretrained
                    .as_deref()
                    .unwrap_or(Path::new(""))
                    .display(),
                p.trainable_blocks(),
                p.frozen()
                    .map_or(String::new(), |f| format!(", {} frozen", f.blocks())),
                if p.trains_head() { "trains" } else { "frozen" },
            ));
            let reference = policy.valid();
            (policy, reference, None)
        } else {
            warm_start(scenario, &run, policy, &note, opts.quiet)
        };
        let ref_clock = std::time::Instant::now();
        note(&format!(
            "{}: reference log-probs of {} training, {} validation and {} held-out pairs",
            scenario.name,
            data.train.len(),
            data.val.len(),
            data.eval.len()
        ));
        let ticker = crate::progress::Ticker::start(
            format!("{}: reference log-probs", scenario.name),
            None,
            opts.quiet,
        );
        let total = data.train.len() + data.val.len() + data.eval.len();
        let mut scored = 0;
        // A pretrained policy's training and held-out pairs also keep their responses'
        // features, for the linear-probe baseline (`baselines::probe_baseline`).
        let pretrained = matches!(start, Policy::Pretrained(_));
        let mut refs = |pairs: &[crate::data::PreferencePair], features: bool| {
            let cache = ReferenceCache::compute_with_progress(
                &reference,
                pairs,
                data.separator(),
                features,
                |n| {
                    if n < pairs.len() {
                        note(&format!(
                            "{}: reference log-probs {}/{total} pairs, {:.0}s",
                            scenario.name,
                            scored + n,
                            ref_clock.elapsed().as_secs_f64()
                        ));
                    }
                },
            );
            scored += pairs.len();
            cache
        };
        let train_refs = refs(&data.train, pretrained);
        let val_refs = refs(&data.val, false);
        let eval_refs = refs(&data.eval, pretrained);
        drop(ticker);
        note(&format!(
            "{}: reference log-probs in {:.1}s",
            scenario.name,
            ref_clock.elapsed().as_secs_f64()
        ));
        let ckpt_dir = out_dir.join("checkpoints");
        std::fs::create_dir_all(&ckpt_dir).map_err(|e| Error::io(&ckpt_dir, e))?;
        save_module(start.clone(), &ckpt_dir.join("reference"))?;

        let mut metrics: Vec<MetricsRow> = Vec::new();
        let mut curves: Vec<CurveRow> = Vec::new();
        let mut codes: Vec<CodeRow> = Vec::new();
        let mut steering: Vec<SteeringRow> = Vec::new();
        let mut timing: Vec<TimingRow> = Vec::new();
        let mut diverged = Vec::new();
        let methods = scenario.resolved_methods();
        for (mi, method) in methods.iter().enumerate() {
            // Phase markers (scripts/gpu-check.sh counts compiled kernels per phase by them).
            note(&format!(
                "{}: training {} ({} steps)",
                scenario.name,
                method.label,
                train::total_steps(scenario, method, data.train.len())
            ));
            let mut observer = crate::progress::MethodProgress::new(
                &method.label,
                train::total_steps(scenario, method, data.train.len()),
                opts.quiet,
                self.compiles_kernels,
            );
            let trained = train::train_method(
                scenario,
                method,
                data,
                &start,
                &train_refs,
                &val_refs,
                &mut observer,
                device,
            );
            observer.finish(&trained.status);
            timing.push(TimingRow::new(
                &method.label,
                trained.steps_done,
                trained.seconds,
                trained.first_step_seconds,
            ));
            curves.extend(trained.curve.iter().map(|p| curve_row(&method.label, p)));
            let mut row = MetricsRow {
                run: RunColumns {
                    method: method.label.clone(),
                    kind: method.name.canonical(),
                    status: "ok".into(),
                },
                training: Some(TrainingColumns {
                    steps: trained.steps_done,
                    selected_step: trained.selected_step,
                    warmup_kl_ref_start: warm_kl,
                }),
                ..MetricsRow::default()
            };
            match trained.status {
                TrainStatus::Diverged { step } => {
                    let msg = format!(
                        "{}: method '{}' diverged (loss not finite) at step {step}; recorded as diverged, other methods go on",
                        scenario.name, method.label
                    );
                    eprintln!("warning: {msg}");
                    diverged.push(method.label.clone());
                    row.run.status = format!("diverged@{step}");
                    metrics.push(row);
                    continue;
                }
                TrainStatus::Completed => {}
            }
            save_module(
                trained.model.clone().into_checkpoint(),
                &ckpt_dir.join(&method.label),
            )?;
            let model = trained.model.valid();
            note(&format!(
                "{}: scoring {} on {} held-out pairs",
                scenario.name,
                method.label,
                data.eval.len()
            ));
            let scored = score_model(&model, method, &run, &eval_refs, &train_refs, seed, device);
            row.scores = Some(scored.scores);
            row.bound = Some(method_bound(run.world.as_ref(), data, method, seed));
            row.ceilings = Some(ceilings.clone());
            row.world = world_stats.clone();
            metrics.push(row);
            codes.extend(scored.code_rows);
            steering.extend(scored.steering_rows);
            let _ = mi;
        }
        if run.load.is_some() {
            crate::baselines::add_nmi_nulls(&mut metrics, &codes, seed);
        }
        // A pretrained policy's own preference is a baseline; a warmed-up scratch policy's is not.
        let pretrained_refs = pretrained.then_some((&train_refs, &eval_refs));
        write_outputs(
            scenario,
            &run,
            out_dir,
            &metrics,
            &curves,
            &codes,
            &steering,
            pretrained_refs,
        )?;
        // Wall-clock times are the one non-reproducible output, so they live in their own file.
        write_rows(&out_dir.join("timing.csv"), &timing, WhenEmpty::Nothing)?;
        // A method that diverged saved no checkpoint: one left by an earlier (--force) run of
        // the same label would sit beside results it did not produce.
        let old: Vec<String> = diverged
            .iter()
            .map(|l| format!("{}/{l}.{}", crate::checkpoint::DIR, crate::checkpoint::EXT))
            .filter(|rel| out_dir.join(rel).exists())
            .collect();
        if !old.is_empty() {
            crate::checkpoint::remove(out_dir, &old)?;
            eprintln!(
                "{}: removed checkpoints of an earlier run of the diverged method(s): {}",
                scenario.name,
                old.join(", ")
            );
        }
        let outcome = RunOutcome {
            methods: methods.len(),
            diverged,
            seconds: clock.elapsed().as_secs_f64(),
            out_dir: out_dir.to_path_buf(),
        };
        if !opts.quiet {
            eprintln!(
                "{}: {} method(s) in {:.1}s; results in {}",
                scenario.name,
                outcome.methods,
                outcome.seconds,
                out_dir.display()
            );
        }
        Ok(outcome)
    }
}

fn curve_row(label: &str, p: &CurvePoint) -> CurveRow {
    CurveRow {
        method: label.to_string(),
        step: p.step,
        train_loss: p.train_loss,
        val_loss: p.val_loss,
        val_accuracy: p.val_accuracy,
        val_objective: p.val_objective,
        val_kl: p.val_kl,
        code_perplexity: p.code_perplexity,
        val_post_nmi: p.val_post_nmi,
        val_prior_nmi: p.val_prior_nmi,
    }
}

/// Save a module with burn's compact recorder to `<path>.mpk`, atomically (see
/// [`crate::checkpoint`]).
pub fn save_module<B: Backend, M: Module<B>>(module: M, path: &Path) -> Result<()> {
    crate::checkpoint::save(module, path)
}

/// Scores and per-pair rows of one trained model.
pub struct ScoredModel {
    /// Scores of the model on the held-out pairs (part of one `metrics.csv` row).
    pub scores: MethodScores,
    /// Per-pair rows for `codes.csv`.
    pub code_rows: Vec<CodeRow>,
    /// Rows for `steering.csv`.
    pub steering_rows: Vec<SteeringRow>,
}

/// Score a trained model on the held-out pairs (METHOD.md §3).
pub fn score_model<B: Backend>(
    model: &MethodModel<B>,
    method: &ResolvedMethod,
    run: &RunData,
    eval_refs: &ReferenceCache,
    train_refs: &ReferenceCache,
    seed: u64,
    device: &B::Device,
) -> ScoredModel {
    let data = &run.data;
    let ctx = MethodContext::new(method, data);
    let mut rng = stream(seed, "score");
    let eval_pool = ContextPool::new(&data.train, &data.eval, false, method.context);
    let prior_eval = train::evaluate(
        model,
        &ctx,
        &data.eval,
        eval_refs,
        |_| CodeChoice::Prior,
        &eval_pool,
        &mut rng,
        device,
    );
    let latent = method.name.latent;
    // The code matched to each true type, learned from the posterior's argmax on training pairs
    // (oracle: the identity).
    let matched: Option<Vec<usize>> = match latent {
        LatentKind::Oracle => Some((0..data.groups).collect()),
        LatentKind::Lpc => {
            let n = data.train.len().min(MATCH_PAIRS);
            let sub = &data.train[..n];
            let sub_refs = ReferenceCache {
                chosen: train_refs.chosen[..n].to_vec(),
                rejected: train_refs.rejected[..n].to_vec(),
                features: None,
            };
            let sub_pool = ContextPool::new(&data.train, sub, true, method.context);
            let res = train::evaluate(
                model,
                &ctx,
                sub,
                &sub_refs,
                |_| CodeChoice::Prior,
                &sub_pool,
                &mut rng,
                device,
            );
            res.posterior.map(|post| {
                let codes: Vec<usize> = post.iter().map(|r| argmax(r)).collect();
                let truth: Vec<usize> = sub.iter().map(|p| p.group).collect();
                matched_codes(&codes, &truth, data.groups)
            })
        }
        _ => None,
    };
    let steered = matched.as_ref().map(|m| {
        train::evaluate(
            model,
            &ctx,
            &data.eval,
            eval_refs,
            |chunk| CodeChoice::Fixed(chunk.iter().map(|p| m[p.group]).collect()),
            &eval_pool,
            &mut rng,
            device,
        )
    });
    let preds = PairPredictions {
        margin: prior_eval.margins.clone(),
        steered_margin: steered.as_ref().map(|s| s.margins.clone()),
        posterior: prior_eval.posterior.clone(),
        prior: prior_eval.prior.clone(),
        kl: prior_eval.kl_per_pair.clone(),
    };
    let mut scores = evaluate::score_method(&data.eval, &preds, &data.group_names);
    scores.loss.eval_loss = Some(prior_eval.loss);
    // Held-out pairs whose annotator never appears in training (`data.heldout_annotators`).
    let unseen: Vec<usize> = (0..data.eval.len())
        .filter(|&i| eval_pool.is_unseen(i))
        .collect();
    scores.unseen = evaluate::unseen_scores(&data.eval, &preds, &unseen);

    // Per-pair codes.
    let mut code_rows = Vec::new();
    if let (Some(post), Some(prior)) = (&prior_eval.posterior, &prior_eval.prior) {
        for (i, p) in data.eval.iter().enumerate() {
            code_rows.push(CodeRow {
                method: method.label.clone(),
                pair: i,
                ty: p.group,
                source: p.source,
                annotator: p.annotator,
                prior_code: argmax(&prior[i]),
                posterior_code: argmax(&post[i]),
                kl: prior_eval.kl_per_pair.as_ref().map(|k| k[i]),
                prior_probs: prior[i].clone(),
                posterior_probs: post[i].clone(),
            });
        }
    }

    // Policy quality and steering need the world's true rewards.
    let mut steering_rows = Vec::new();
    if let Some(world) = &run.world {
        let q = policy_quality(
            model,
            method,
            world,
            &data.eval,
            data.separator(),
            seed,
            device,
        );
        let [
            policy_reward,
            ref_reward,
            policy_winrate_vs_ref,
            policy_kl_ref,
            policy_kl_opt,
        ] = q;
        scores.policy = PolicyColumns {
            policy_reward,
            ref_reward,
            policy_winrate_vs_ref,
            policy_kl_ref,
            policy_kl_opt,
        };
        if let Some(m) = &matched {
            let k = match latent {
                LatentKind::Oracle => data.groups,
                _ => method.codebook,
            };
            let table = steering_table(model, world, &data.eval, data.separator(), k, seed, device);
            for (code, rewards) in table.iter().enumerate() {
                for (t, r) in rewards.iter().enumerate() {
                    steering_rows.push(SteeringRow {
                        method: method.label.clone(),
                        code,
                        ty: t,
                        mean_reward: Some(*r),
                        matched: m.get(t) == Some(&code),
                        steered_acc_noiseless: None,
                    });
                }
            }
        }
    }
    if let (Some(m), Some(s)) = (&matched, &steered) {
        // The matched table: per type, its code and the type-steered accuracy.
        let acc = evaluate::accuracy_scores(&data.eval, &s.margins, &data.group_names);
        for (t, (_, group)) in acc.groups.iter().enumerate() {
            let a = group.acc_noiseless;
            steering_rows.push(SteeringRow {
                method: method.label.clone(),
                code: m[t],
                ty: t,
                mean_reward: None,
                matched: true,
                steered_acc_noiseless: a,
            });
        }
    }
    ScoredModel {
        scores,
        code_rows,
        steering_rows,
    }
}

/// For each true type, the code its training pairs most often get as argmax posterior (a type
/// no training pair has maps to code 0).
pub fn matched_codes(codes: &[usize], truth: &[usize], types: usize) -> Vec<usize> {
    let by_type = crate::metrics::contingency(truth, codes).majority_map();
    (0..types)
        .map(|t| by_type.get(&t).copied().unwrap_or(0))
        .collect()
}

/// The code each prompt gets at inference, `[N, d]`, or `None` for a baseline.
pub fn inference_codes<B: Backend>(
    model: &MethodModel<B>,
    method: &ResolvedMethod,
    prompts: &[Vec<u32>],
    types: &[usize],
    separator: u32,
    rng: &mut crate::rng::SeededRng,
    device: &B::Device,
) -> Option<Tensor<B, 2>> {
    let prompt_state = || {
        let empty: Vec<(Vec<u32>, Vec<u32>)> =
            prompts.iter().map(|p| (p.clone(), Vec::new())).collect();
        let batch = crate::data::batch::SeqBatch::<B>::from_owned(&empty, separator, device);
        hidden_at_separator(model.policy.hidden(batch.ids.clone()), &batch)
    };
    model
        .head
        .prompt_code(prompt_state, types, method.inference, rng, device)
}

/// Policy quality with the inference code (METHOD.md §3): mean true reward under each pair's
/// type, the reference's mean reward on the same prompts, win rate against pi_ref samples of the
/// same length, Monte-Carlo KL(pi || pi_ref) and, for DPO-family objectives, KL(pi || pi*_type)
/// at the method's beta times the label temperature (exact log pi* from the world), for the DPO
/// objective on worlds without label flips (blank elsewhere: pi* is not its optimum).
pub fn policy_quality<B: Backend>(
    model: &MethodModel<B>,
    method: &ResolvedMethod,
    world: &World,
    eval: &[PreferencePair],
    separator: u32,
    seed: u64,
    device: &B::Device,
) -> [Option<f64>; 5] {
    let pairs = &eval[..eval.len().min(POLICY_PROMPTS)];
    let mut rng = stream(seed, "policy");
    let prompts: Vec<Vec<u32>> = pairs.iter().map(|p| p.prompt.clone()).collect();
    let types: Vec<usize> = pairs.iter().map(|p| p.group).collect();
    let refs: Vec<Vec<u32>> = pairs
        .iter()
        .map(|p| world.sample_reference(p.source, &p.prompt, &mut rng))
        .collect();
    let lens: Vec<usize> = refs.iter().map(Vec::len).collect();
    let z = inference_codes(model, method, &prompts, &types, separator, &mut rng, device);
    let (ys, logp) = sample_responses(&model.policy, &prompts, &lens, z, separator, &mut rng);
    let n = pairs.len().max(1) as f64;
    let mut reward = 0.0;
    let mut ref_reward = 0.0;
    let mut wins = 0.0;
    let mut kl_ref = 0.0;
    let mut kl_opt = 0.0;
    // pi* = pi_ref exp(r / (beta tau_bt)) / Z is the optimum of the DPO loss only when the
    // labels are Bradley-Terry in r / tau_bt without extra flips; IPO, SimPO and the
    // noise-aware variants have other optima. Elsewhere the column is blank.
    let dpo_family = method.name.objective == ObjectiveKind::Dpo && world.flip_rate() == 0.0;
    let beta_eff = method.beta * world.bt_temperature();
    for (i, p) in pairs.iter().enumerate() {
        let r = world.reward(p.group, &p.prompt, &ys[i]);
        let rr = world.reward(p.group, &p.prompt, &refs[i]);
        reward += r;
        ref_reward += rr;
        wins += if r > rr {
            1.0
        } else if r == rr {
            0.5
        } else {
            0.0
        };
        let len_lp = log_length_prob(world, ys[i].len());
        kl_ref += logp[i] - (world.reference_log_prob(p.source, &p.prompt, &ys[i]) - len_lp);
        if dpo_family
            && let Some(opt) =
                world.optimal_log_prob(p.group, p.source, &p.prompt, &ys[i], beta_eff)
        {
            kl_opt += logp[i] + len_lp - opt;
        }
    }
    let linear = world.spec().reward == crate::scenario::RewardFamily::Linear;
    [
        Some(reward / n),
        Some(ref_reward / n),
        Some(wins / n),
        Some(kl_ref / n),
        (dpo_family && linear).then_some(kl_opt / n),
    ]
}

/// The steering table: for each code k, the mean true reward of every type over responses
/// sampled with `z = e_k` (codes are centred, see `model::latent`), on the first
/// `STEERING_PROMPTS` held-out prompts. Rows are codes, columns types.
#[allow(clippy::too_many_arguments)]
pub fn steering_table<B: Backend>(
    model: &MethodModel<B>,
    world: &World,
    eval: &[PreferencePair],
    separator: u32,
    k: usize,
    seed: u64,
    device: &B::Device,
) -> Vec<Vec<f64>> {
    let Some(heads) = model.head.codebook() else {
        return Vec::new();
    };
    let pairs = &eval[..eval.len().min(STEERING_PROMPTS)];
    let prompts: Vec<Vec<u32>> = pairs.iter().map(|p| p.prompt.clone()).collect();
    let types = world.types();
    (0..k)
        .map(|code| {
            let mut rng = stream(seed, &format!("steer/{code}"));
            let lens: Vec<usize> = pairs
                .iter()
                .map(|p| world.sample_reference(p.source, &p.prompt, &mut rng).len())
                .collect();
            let z = heads.code(one_hot_weights(&vec![code; pairs.len()], k, device));
            let (ys, _) =
                sample_responses(&model.policy, &prompts, &lens, Some(z), separator, &mut rng);
            (0..types)
                .map(|t| {
                    pairs
                        .iter()
                        .zip(&ys)
                        .map(|(p, y)| world.reward(t, &p.prompt, y))
                        .sum::<f64>()
                        / pairs.len().max(1) as f64
                })
                .collect()
        })
        .collect()
}

/// Write every result file atomically. `pretrained_refs`: a pretrained policy's training and
/// held-out reference caches, for the baselines that read them.
#[allow(clippy::too_many_arguments)]
fn write_outputs(
    scenario: &Scenario,
    run: &RunData,
    out_dir: &Path,
    metrics: &[MetricsRow],
    curves: &[CurveRow],
    codes: &[CodeRow],
    steering: &[SteeringRow],
    pretrained_refs: Option<(&ReferenceCache, &ReferenceCache)>,
) -> Result<()> {
    results::write_atomic(
        &out_dir.join("scenario.resolved.toml"),
        scenario.to_toml()?.as_bytes(),
    )?;
    let world_json = match &run.world {
        Some(w) => serde_json::to_string_pretty(&serde_json::json!({
            "world": w,
            "stats": synth::world_stats(w, &run.data.eval),
        })),
        None => serde_json::to_string_pretty(&serde_json::json!({
            "real_data": true,
            "groups": run.data.group_names,
            "train_pairs": run.data.train.len(),
            "eval_pairs": run.data.eval.len(),
        })),
    }
    .map_err(|e| Error::msg(format!("world.json: {e}")))?;
    results::write_atomic(&out_dir.join("world.json"), world_json.as_bytes())?;
    write_metrics(&out_dir.join("metrics.csv"), metrics)?;
    write_rows(&out_dir.join("curves.csv"), curves, WhenEmpty::Nothing)?;
    write_rows(&out_dir.join("codes.csv"), codes, WhenEmpty::Header)?;
    write_rows(&out_dir.join("steering.csv"), steering, WhenEmpty::Header)?;
    let reference = run.load.as_ref().map(|load| {
        crate::baselines::RealReference::new(&run.data, load)
            .with_pretrained(&run.data, pretrained_refs)
    });
    if let (Some(load), Some(r)) = (&run.load, &reference) {
        results::write_atomic(&out_dir.join("load.md"), load.to_markdown().as_bytes())?;
        crate::results::rows::write_baselines(&out_dir.join("baselines.csv"), &r.baselines_rows())?;
    }
    let summary = crate::report::run_summary_with(scenario, metrics, reference.as_ref());
    results::write_atomic(&out_dir.join("summary.md"), summary.as_bytes())?;
    Ok(())
}
