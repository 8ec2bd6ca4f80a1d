//! `lpc-bench eval DIR`: rescore the checkpoints a run saved, without training.
//!
//! The run folder's `scenario.resolved.toml` rebuilds the same data (same seed, same pairs);
//! `checkpoints/reference.mpk` is the frozen reference and `checkpoints/<method>.mpk` each
//! method's selected model. Scores go to `DIR/rescored/metrics.csv` and `summary.md`; they equal
//! the run's own scores for the same build on the same backend.

use crate::Result;
use crate::cli::EvalArgs;
use crate::experiment::{
    RESCORED_DIR, RESCORED_FILES, RunOptions, load_data, score_model, world_scores,
};
use crate::model::CpuBackend;
use crate::model::backbone::Policy;
use crate::results;
use crate::results::metrics_row::{MetricsRow, RunColumns, write_metrics};
use crate::scenario::Scenario;
use crate::train::{MethodModel, ReferenceCache};
use burn::module::Module;
use std::path::Path;

/// Rescore every method checkpoint in `args.dir`.
pub fn run(args: &EvalArgs) -> Result<()> {
    let dir = &args.dir;
    let scenario = Scenario::load(&dir.join("scenario.resolved.toml"))?;
    // Rescoring holds what a run holds (on the CPU): refuse it before any work if too large.
    let mut on_cpu = scenario.clone().into_inner();
    on_cpu.train.device = "cpu".into();
    crate::plan::check_fits(
        &scenario.name,
        &crate::plan::estimate(&on_cpu),
        &crate::plan::memory_budget()?,
    )?;
    let out = dir.join(RESCORED_DIR);
    results::prepare_out_dir(&out, args.force, &RESCORED_FILES)?;
    let device = Default::default();
    let opts = RunOptions {
        quiet: args.quiet,
        ..Default::default()
    };
    let run = load_data(&scenario, &opts)?;
    let data = &run.data;
    // The run's fixed batch shape (as `run` uses it).
    let _shapes = crate::data::batch::fix_shapes(crate::data::batch::FixedShape::of(data));
    let ckpt = dir.join("checkpoints");
    let skeleton = crate::experiment::initial_policy::<CpuBackend>(&scenario, data, &device)?;
    let reference: Policy<CpuBackend> = load(skeleton, &ckpt.join("reference"), &device)?;
    // A pretrained reference also gives the baselines that read it (as `run` writes them).
    let pretrained = matches!(reference, Policy::Pretrained(_));
    let refs = |pairs| {
        ReferenceCache::compute_with_progress(
            &reference,
            pairs,
            data.separator(),
            pretrained,
            |_| {},
        )
    };
    let train_refs = refs(&data.train);
    let eval_refs = refs(&data.eval);
    let (ceilings, world_stats) = world_scores(run.world.as_ref(), &data.eval);
    let mut metrics = Vec::new();
    let mut codes = Vec::new();
    for method in scenario.resolved_methods() {
        let path = ckpt.join(&method.label);
        if !path.with_extension("mpk").exists() {
            if !args.quiet {
                eprintln!(
                    "{}: no checkpoint (the method diverged or was not run); skipped",
                    path.display()
                );
            }
            continue;
        }
        let skeleton = MethodModel::init(&method, &reference, scenario.data.seed, &device);
        let stored = load(skeleton.into_checkpoint(), &path, &device)?;
        let model = stored.into_model(method.name.latent).ok_or_else(|| {
            crate::Error::msg(format!(
                "{}: the checkpoint's latent heads are not those of method '{}'",
                path.with_extension("mpk").display(),
                method.label
            ))
        })?;
        let scored = score_model(
            &model,
            &method,
            &run,
            &eval_refs,
            &train_refs,
            scenario.data.seed,
            &device,
        );
        codes.extend(scored.code_rows);
        metrics.push(MetricsRow {
            run: RunColumns {
                method: method.label.clone(),
                kind: method.name.canonical(),
                status: "rescored".into(),
            },
            training: None,
            scores: Some(scored.scores),
            bound: Some(crate::experiment::method_bound(
                run.world.as_ref(),
                data,
                &method,
                scenario.data.seed,
            )),
            ceilings: Some(ceilings.clone()),
            world: world_stats.clone(),
            nmi_null: None,
        });
    }
    let reference = run.load.as_ref().map(|load| {
        crate::baselines::add_nmi_nulls(&mut metrics, &codes, scenario.data.seed);
        crate::baselines::RealReference::new(&run.data, load)
            .with_pretrained(&run.data, pretrained.then_some((&train_refs, &eval_refs)))
    });
    write_metrics(&out.join("metrics.csv"), &metrics)?;
    let summary = crate::report::run_summary_with(&scenario, &metrics, reference.as_ref());
    results::write_atomic(&out.join("summary.md"), summary.as_bytes())?;
    if !args.quiet {
        println!("{summary}");
    }
    Ok(())
}

fn load<M: Module<CpuBackend>>(
    skeleton: M,
    path: &Path,
    device: &burn::tensor::Device<CpuBackend>,
) -> Result<M> {
    crate::checkpoint::load(skeleton, path, device)
}
