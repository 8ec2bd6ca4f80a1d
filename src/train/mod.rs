//! The training loop: one method, from the shared warmed-up start to a selected checkpoint.
//!
//! A step is: build the batch of pairs, run the backbone once over the 2N stacked chosen and
//! rejected sequences, read the prior and posterior heads from the same hidden states, draw the
//! code (Gumbel-softmax over the posterior, mixed toward the prior by the schedule g), compute the
//! policy's log-probabilities under the code, apply the objective (plus lambda KL for LPC),
//! backward, Adam step. The frozen reference's log-probabilities are cached once per run
//! ([`ReferenceCache`]), so they cost nothing per step.
//!
//! This module trains and evaluates; it formats nothing (see `experiment` and `results`).

pub mod schedule;

pub use crate::data::context::ContextPool;

use crate::data::batch::PairBatch;
use crate::data::{PreferenceData, PreferencePair};
use crate::model::backbone::{Policy, hidden_at_separator};
use crate::model::gaussian::GaussianHeads;
use crate::model::gumbel::Relaxation;
pub use crate::model::head::CodeChoice;
use crate::model::head::{KlInputs, LatentHead, PairReads};
use crate::model::latent::{
    LatentHeads, mean_pool_groups, pool_context, posterior_features, posterior_features_mean,
};
use crate::model::reference::score_and_pool;
use crate::objective::{LogpForm, Lpc, Objective, PairLogps, PreferenceObjective};
use crate::rng::{SeededRng, derive_seed, stream};
use crate::scenario::{
    CheckpointSelect, ContextBatches, LatentKind, PosteriorPool, ResolvedMethod, Scenario,
    TrainSpec,
};
use burn::grad_clipping::GradientClippingConfig;
use burn::module::{AutodiffModule, Module};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{Adam, AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use rand::RngExt;
use rand::seq::SliceRandom;

/// Pairs per forward pass when evaluating (no gradients): every chunk of an [`evaluate`] call
/// has `min(EVAL_CHUNK, n)` pairs (the last one padded), so a call builds one batch shape.
pub const EVAL_CHUNK: usize = 256;

/// A policy plus whatever latent machinery its method uses.
#[derive(Module, Debug)]
pub struct MethodModel<B: Backend> {
    /// The causal transformer that scores responses.
    pub policy: Policy<B>,
    /// The method's latent head: none, LPC's codebook, the oracle's, or the Gaussian ablation.
    pub head: LatentHead<B>,
}

impl<B: Backend> MethodModel<B> {
    /// The method's model: a copy of the shared starting policy plus freshly initialised heads
    /// (seeded by `init/<label>`, so adding a method never changes another's initialisation).
    /// The heads are drawn on the host CPU backend and copied to `device`
    /// ([`crate::device::init_on_host`]), so they are the same on every device; the backend's
    /// own generator is seeded with the same seed (it drives dropout, if any).
    pub fn init(method: &ResolvedMethod, start: &Policy<B>, seed: u64, device: &B::Device) -> Self {
        let init_seed = derive_seed(seed, &format!("init/{}", method.label));
        B::seed(device, init_seed);
        let head = LatentHead::init(
            method.name.latent,
            start.d_model(),
            method.codebook,
            method.latent_dim,
            init_seed,
            device,
        );
        MethodModel {
            policy: start.clone(),
            head,
        }
    }

    /// The model in its checkpoint shape ([`MethodCheckpoint`]).
    pub fn into_checkpoint(self) -> MethodCheckpoint<B> {
        let (latent, gaussian) = match self.head {
            LatentHead::None(_) => (None, None),
            LatentHead::Discrete(heads) | LatentHead::Oracle(heads) => (Some(heads), None),
            LatentHead::Gaussian(heads) => (None, Some(heads)),
        };
        MethodCheckpoint {
            policy: self.policy,
            latent,
            gaussian,
        }
    }
}

/// A [`MethodModel`] as its checkpoint stores it: the record of the fields the model had before
/// its head became one [`LatentHead`], so checkpoints written before and after load alike.
#[derive(Module, Debug)]
pub struct MethodCheckpoint<B: Backend> {
    /// The policy.
    pub policy: Policy<B>,
    /// The codebook heads (LPC and the oracle).
    pub latent: Option<LatentHeads<B>>,
    /// The Gaussian heads.
    pub gaussian: Option<GaussianHeads<B>>,
}

impl<B: Backend> MethodCheckpoint<B> {
    /// The model of a method of latent family `kind`, or `None` when the stored heads are not
    /// that family's (a checkpoint of another scenario).
    pub fn into_model(self, kind: LatentKind) -> Option<MethodModel<B>> {
        let head = match (kind, self.latent, self.gaussian) {
            (LatentKind::None, None, None) => LatentHead::None(std::marker::PhantomData),
            (LatentKind::Lpc, Some(heads), None) => LatentHead::Discrete(heads),
            (LatentKind::Oracle, Some(heads), None) => LatentHead::Oracle(heads),
            (LatentKind::Gaussian, None, Some(heads)) => LatentHead::Gaussian(heads),
            _ => return None,
        };
        Some(MethodModel {
            policy: self.policy,
            head,
        })
    }
}

/// Cached `log pi_ref` (summed over response tokens) of every pair's chosen and rejected
/// response. The reference is frozen, so this is computed once per run.
#[derive(Debug, Clone)]
pub struct ReferenceCache {
    /// `log pi_ref(chosen | prompt)` per pair.
    pub chosen: Vec<f64>,
    /// `log pi_ref(rejected | prompt)` per pair.
    pub rejected: Vec<f64>,
    /// Each response's mean final hidden state under the reference, when asked for
    /// ([`crate::model::score_and_pool`]): the features of [`crate::probe`].
    pub features: Option<PairFeatures>,
}

/// Per-pair feature vectors of the chosen and rejected responses.
#[derive(Debug, Clone, PartialEq)]
pub struct PairFeatures {
    /// Features of each pair's chosen response.
    pub chosen: Vec<Vec<f32>>,
    /// Features of each pair's rejected response.
    pub rejected: Vec<Vec<f32>>,
}

impl PairFeatures {
    /// Each pair's feature difference `f(y_w) - f(y_l)`, in f64: what [`crate::probe`] fits.
    pub fn diffs(&self) -> Vec<Vec<f64>> {
        self.chosen
            .iter()
            .zip(&self.rejected)
            .map(|(c, r)| {
                c.iter()
                    .zip(r)
                    .map(|(a, b)| *a as f64 - *b as f64)
                    .collect()
            })
            .collect()
    }
}

impl ReferenceCache {
    /// Score every pair with the frozen reference.
    pub fn compute<B: Backend>(
        reference: &Policy<B>,
        pairs: &[PreferencePair],
        separator: u32,
    ) -> Self {
        Self::compute_with_progress(reference, pairs, separator, false, |_| {})
    }

    /// [`ReferenceCache::compute`], with the responses' pooled features when `features` is set,
    /// calling `progress(pairs scored so far)` after each pass.
    pub fn compute_with_progress<B: Backend>(
        reference: &Policy<B>,
        pairs: &[PreferencePair],
        separator: u32,
        features: bool,
        mut progress: impl FnMut(usize),
    ) -> Self {
        // Each pair's chosen and rejected sequences side by side in one pass, so a pretrained
        // policy's frozen prefix sees their common prompt together and runs it once.
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = pairs
            .iter()
            .flat_map(|p| {
                [
                    (p.prompt.clone(), p.chosen.clone()),
                    (p.prompt.clone(), p.rejected.clone()),
                ]
            })
            .collect();
        let scores = score_and_pool(reference, &seqs, separator, features, |n| progress(n / 2));
        let split =
            |v: &[f64], at: usize| -> Vec<f64> { v.iter().skip(at).step_by(2).copied().collect() };
        ReferenceCache {
            chosen: split(&scores.sums, 0),
            rejected: split(&scores.sums, 1),
            features: scores.pooled.map(|f| {
                let mut it = f.into_iter();
                let (mut chosen, mut rejected) = (Vec::new(), Vec::new());
                while let (Some(c), Some(r)) = (it.next(), it.next()) {
                    chosen.push(c);
                    rejected.push(r);
                }
                PairFeatures { chosen, rejected }
            }),
        }
    }
}

/// What one forward pass over a batch of pairs produced.
pub struct PairForward<B: Backend> {
    /// Per-pair log-probabilities of both responses under the policy.
    pub logps: PairLogps<B>,
    /// The distributions of the latent head's KL term.
    pub kl: KlInputs<B>,
}

/// Everything a method's loop needs besides the model.
pub struct MethodContext<'a> {
    /// The resolved method.
    pub method: &'a ResolvedMethod,
    /// The method's objective: its base objective inside [`Lpc`] (KL weight `method.lambda`).
    pub objective: Lpc<Objective>,
    /// Token id of the prompt/response separator.
    pub separator: u32,
    /// `context_batches = "fresh"`: the training pairs' context pools and the stream
    /// `context/<label>` the draws come from.
    fresh_context: Option<(ContextPool<'a>, std::cell::RefCell<SeededRng>)>,
}

impl<'a> MethodContext<'a> {
    /// The context of `method` on `data` (with the fresh context pools it needs, if any).
    pub fn new(method: &'a ResolvedMethod, data: &'a PreferenceData) -> Self {
        let fresh_context = (method.context > 0 && method.context_batches == ContextBatches::Fresh)
            .then(|| {
                (
                    ContextPool::new(&data.train, &data.train, true, method.context),
                    std::cell::RefCell::new(stream(0, &format!("context/{}", method.label))),
                )
            });
        MethodContext {
            method,
            objective: Lpc::from_method(method),
            separator: data.separator(),
            fresh_context,
        }
    }

    /// Seed the fresh-context stream from the run's master seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        if let Some((_, rng)) = &mut self.fresh_context {
            *rng.get_mut() = stream(seed, &format!("context/{}", self.method.label));
        }
        self
    }

    /// Whether the base objective consumes reference log-probabilities.
    pub fn needs_reference(&self) -> bool {
        self.objective.needs_reference()
    }
}

/// One forward pass of `model` over `pairs` (and, for annotator context, `context` pairs).
///
/// `ref_logps`: cached reference log-probs (chosen, rejected) of these pairs, summed.
#[allow(clippy::too_many_arguments)]
pub fn forward_pairs<B: Backend>(
    model: &MethodModel<B>,
    ctx: &MethodContext,
    pairs: &[&PreferencePair],
    context: &[&PreferencePair],
    ref_logps: (&[f64], &[f64]),
    choice: &CodeChoice,
    rng: &mut SeededRng,
    device: &B::Device,
) -> PairForward<B> {
    let method = ctx.method;
    let n = pairs.len();
    let batch = PairBatch::<B>::new(pairs, ctx.separator, device);
    let hidden = model.policy.hidden(batch.seqs.ids.clone());
    let prompt_state = || {
        let h = hidden_at_separator(hidden.clone(), &batch.seqs);
        h.narrow(0, 0, n)
    };
    let read = |h: Tensor<B, 3>, b: &PairBatch<B>| match method.posterior_pool {
        PosteriorPool::Last => posterior_features(h, b),
        PosteriorPool::Mean => posterior_features_mean(h, b),
    };
    let features = || {
        let own = read(hidden.clone(), &batch);
        if method.context == 0 {
            return own;
        }
        if context.is_empty() {
            // Annotator-grouped training batch: consecutive runs of C + 1 pairs share an
            // annotator, and each pair's posterior reads the mean over its run.
            let group = method.context + 1;
            assert!(
                n.is_multiple_of(group),
                "{n} pairs do not form annotator groups of {group}"
            );
            let [_, f] = own.dims();
            let pooled = mean_pool_groups(own, group);
            return pooled
                .unsqueeze_dim::<3>(1)
                .repeat_dim(1, group)
                .reshape([n, f]);
        }
        let cbatch = PairBatch::<B>::new(context, ctx.separator, device);
        // Context pairs are read, not trained on: no gradient flows into the backbone through
        // them (the posterior head still learns from them).
        let chidden = model.policy.hidden(cbatch.seqs.ids.clone()).detach();
        pool_context(own, read(chidden, &cbatch), method.context)
    };
    let out = model.head.code_and_kl(
        choice,
        PairReads {
            pairs,
            prompt_state: &prompt_state,
            features: &features,
        },
        method.inference,
        rng,
        device,
    );
    let lp = model
        .policy
        .log_probs(hidden, &batch.seqs, out.code.map(|z| batch.stack_codes(z)));
    let per_seq = match ctx.objective.logp_form() {
        LogpForm::Sum => lp.sum,
        LogpForm::MeanPerToken => lp.mean,
    };
    let (pc, pr) = batch.split(per_seq);
    let logps = if ctx.needs_reference() {
        let rc = host_tensor::<B>(ref_logps.0, device);
        let rr = host_tensor::<B>(ref_logps.1, device);
        PairLogps::with_reference(pc, pr, rc, rr)
    } else {
        PairLogps::reference_free(pc, pr)
    };
    PairForward { logps, kl: out.kl }
}

/// Per-pair losses and diagnostics of a forward pass.
pub struct PairLoss<B: Backend> {
    /// Tracked per-pair losses `[N]`.
    pub losses: Tensor<B, 1>,
    /// Detached per-pair base-objective losses `[N]`.
    pub base_losses: Tensor<B, 1>,
    /// Detached implicit-reward margin `r(y_w) - r(y_l)` `[N]`.
    pub margins: Tensor<B, 1>,
    /// Detached per-pair KL(q||p) `[N]`, for latent methods with a posterior.
    pub kl: Option<Tensor<B, 1>>,
    /// Detached posterior and prior probabilities `[N, K]` (discrete LPC).
    pub probs: Option<(Tensor<B, 2>, Tensor<B, 2>)>,
}

/// Apply the method's objective (plus lambda KL for latent methods) to a forward pass.
pub fn pair_loss<B: Backend>(
    ctx: &MethodContext,
    fwd: PairForward<B>,
    lambda_now: f64,
) -> PairLoss<B> {
    match fwd.kl {
        KlInputs::Categorical { posterior, prior } => {
            let out = ctx.objective.loss(&fwd.logps, posterior, prior, lambda_now);
            PairLoss {
                losses: out.losses,
                base_losses: out.base_losses,
                margins: out.chosen_rewards - out.rejected_rewards,
                kl: Some(out.kl),
                probs: Some((out.posterior_probs, out.prior_probs)),
            }
        }
        KlInputs::Gaussian { posterior, prior } => {
            let out = ctx.objective.loss_gaussian(
                &fwd.logps,
                posterior.mean,
                posterior.log_var,
                prior.mean,
                prior.log_var,
                lambda_now,
            );
            PairLoss {
                losses: out.losses,
                base_losses: out.base_losses,
                margins: out.chosen_rewards - out.rejected_rewards,
                kl: Some(out.kl),
                probs: None,
            }
        }
        KlInputs::None => {
            let out = ctx.objective.base.loss(&fwd.logps);
            PairLoss {
                base_losses: out.losses.clone().detach(),
                losses: out.losses,
                margins: out.chosen_rewards - out.rejected_rewards,
                kl: None,
                probs: None,
            }
        }
    }
}

/// A host vector as a `[n]` float tensor.
pub fn host_tensor<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 1> {
    let v: Vec<f32> = values.iter().map(|x| *x as f32).collect();
    Tensor::from_data(TensorData::new(v, [values.len()]), device)
}

/// A `[n]` tensor to host f64s.
pub fn to_host<B: Backend>(t: Tensor<B, 1>) -> Vec<f64> {
    t.into_data().convert::<f64>().iter::<f64>().collect()
}

/// A `[n, k]` tensor to host rows of f64s.
pub fn rows_to_host<B: Backend>(t: Tensor<B, 2>) -> Vec<Vec<f64>> {
    let [_, k] = t.dims();
    let flat: Vec<f64> = t.into_data().convert::<f64>().iter::<f64>().collect();
    flat.chunks(k.max(1)).map(<[f64]>::to_vec).collect()
}

/// Results of a model on a split of pairs with one code choice.
#[derive(Debug, Clone, Default)]
pub struct EvalResult {
    /// Mean base-objective loss with the chosen code.
    pub loss: f64,
    /// Mean training objective with the chosen code: base loss plus lambda KL(q||p) for latent
    /// methods (the base loss for baselines).
    pub objective: f64,
    /// Accuracy against observed labels (margin > 0; ties count 1/2).
    pub accuracy: f64,
    /// Mean KL(q||p) (latent methods), else NaN.
    pub kl: f64,
    /// Perplexity of the argmax-posterior code usage (discrete LPC), else NaN.
    pub code_perplexity: f64,
    /// Per-pair margins with the inference code.
    pub margins: Vec<f64>,
    /// Per-pair posterior and prior probabilities (discrete LPC).
    pub posterior: Option<Vec<Vec<f64>>>,
    /// Prior probabilities per pair (discrete LPC).
    pub prior: Option<Vec<Vec<f64>>>,
    /// Per-pair KL(q||p).
    pub kl_per_pair: Option<Vec<f64>>,
}

/// Evaluate `model` on `pairs` with `choice` (usually [`CodeChoice::Prior`]), without gradients.
/// Context methods read each pair's annotator context from `pool` ([`ContextPool`] over the same
/// `pairs`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate<B: Backend>(
    model: &MethodModel<B>,
    ctx: &MethodContext,
    pairs: &[PreferencePair],
    refs: &ReferenceCache,
    choice: impl Fn(&[PreferencePair]) -> CodeChoice,
    pool: &ContextPool,
    rng: &mut SeededRng,
    device: &B::Device,
) -> EvalResult {
    let mut margins = Vec::with_capacity(pairs.len());
    let mut base = Vec::with_capacity(pairs.len());
    let mut objective = Vec::with_capacity(pairs.len());
    let mut kl: Option<Vec<f64>> = None;
    let mut post: Option<Vec<Vec<f64>>> = None;
    let mut prior: Option<Vec<Vec<f64>>> = None;
    // One batch shape per call: every chunk has `rows` pairs, the last one padded with copies
    // of its last pair (and that pair's context) whose results are dropped.
    let rows = crate::data::batch::chunk_rows(pairs.len(), EVAL_CHUNK);
    for start in (0..pairs.len()).step_by(rows) {
        let end = (start + rows).min(pairs.len());
        let real = end - start;
        let mut chunk: Vec<&PreferencePair> = pairs[start..end].iter().collect();
        let mut ctx_pairs: Vec<&PreferencePair> = if ctx.method.context > 0 {
            (start..end).flat_map(|i| pool.draw(i, rng)).collect()
        } else {
            Vec::new()
        };
        let mut code_choice = choice(&pairs[start..end]);
        // A prior *sample* draws from `rng` once per row: padded rows would move the stream
        // every later draw reads, so that one case keeps its short last chunk.
        let sampled = matches!(code_choice, CodeChoice::Prior)
            && ctx.method.inference == crate::scenario::InferenceMode::Sample;
        let pad = if sampled { 0 } else { rows - real };
        if pad > 0 {
            chunk.resize(rows, &pairs[end - 1]);
            let per_pair = ctx_pairs.len() / real;
            let tail = ctx_pairs[ctx_pairs.len() - per_pair..].to_vec();
            for _ in 0..pad {
                ctx_pairs.extend_from_slice(&tail);
            }
            if let CodeChoice::Fixed(idx) = &mut code_choice {
                let last = idx[idx.len() - 1];
                idx.resize(rows, last);
            }
        }
        let padded = |v: &[f64]| {
            let mut v = v.to_vec();
            v.resize(real + pad, v[real - 1]);
            v
        };
        let (rc, rr) = (
            padded(&refs.chosen[start..end]),
            padded(&refs.rejected[start..end]),
        );
        let fwd = forward_pairs(
            model,
            ctx,
            &chunk,
            &ctx_pairs,
            (&rc, &rr),
            &code_choice,
            rng,
            device,
        );
        let out = pair_loss(ctx, fwd, ctx.method.lambda);
        let keep = |mut v: Vec<f64>| {
            v.truncate(real);
            v
        };
        margins.extend(keep(to_host(out.margins)));
        base.extend(keep(to_host(out.base_losses)));
        objective.extend(keep(to_host(out.losses.detach())));
        if let Some(k) = out.kl {
            kl.get_or_insert_with(Vec::new).extend(keep(to_host(k)));
        }
        if let Some((q, p)) = out.probs {
            let keep_rows = |mut v: Vec<Vec<f64>>| {
                v.truncate(real);
                v
            };
            post.get_or_insert_with(Vec::new)
                .extend(keep_rows(rows_to_host(q)));
            prior
                .get_or_insert_with(Vec::new)
                .extend(keep_rows(rows_to_host(p)));
        }
    }
    let n = pairs.len().max(1) as f64;
    let accuracy = margins
        .iter()
        .map(|m| {
            if *m > 0.0 {
                1.0
            } else if *m < 0.0 {
                0.0
            } else {
                0.5
            }
        })
        .sum::<f64>()
        / n;
    let code_perplexity = post.as_ref().map_or(f64::NAN, |rows| {
        let codes: Vec<usize> = rows.iter().map(|r| crate::evaluate::argmax(r)).collect();
        crate::metrics::code_perplexity(&codes)
    });
    EvalResult {
        loss: base.iter().sum::<f64>() / n,
        objective: objective.iter().sum::<f64>() / n,
        accuracy,
        kl: kl.as_ref().map_or(f64::NAN, |v| v.iter().sum::<f64>() / n),
        code_perplexity,
        margins,
        posterior: post,
        prior,
        kl_per_pair: kl,
    }
}

/// One row of the training curves: the validation pairs' numbers at one step (the held-out
/// pairs are never read during training).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    /// Optimiser steps taken.
    pub step: usize,
    /// Mean training loss over the steps since the previous point.
    pub train_loss: f64,
    /// Validation base loss with the inference (prior) code.
    pub val_loss: f64,
    /// Validation accuracy against observed labels with the inference code.
    pub val_accuracy: f64,
    /// Validation training objective with the posterior's point code: base loss plus lambda
    /// KL(q||p) (the base loss for baselines). The `best-val` selection criterion.
    pub val_objective: f64,
    /// Validation mean KL(q||p) (blank for baselines).
    pub val_kl: Option<f64>,
    /// Validation argmax-posterior code perplexity (blank without a codebook).
    pub code_perplexity: Option<f64>,
    /// NMI of the validation pairs' argmax posterior codes against their true types / groups.
    pub val_post_nmi: Option<f64>,
    /// NMI of the validation pairs' argmax prior codes against their true types / groups.
    pub val_prior_nmi: Option<f64>,
}

impl CurvePoint {
    /// The value `select` minimises (`None` for `last`).
    pub fn criterion(&self, select: CheckpointSelect) -> Option<f64> {
        match select {
            CheckpointSelect::Last => None,
            CheckpointSelect::BestVal => Some(self.val_objective),
            CheckpointSelect::BestValLoss => Some(self.val_loss),
        }
    }
}

/// How a method's training ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainStatus {
    /// Every step ran with a finite loss.
    Completed,
    /// The loss became NaN or infinite at this step.
    Diverged {
        /// The first step with a non-finite loss.
        step: usize,
    },
}

/// The outcome of training one method.
pub struct TrainedMethod<B: AutodiffBackend> {
    /// The selected checkpoint's model.
    pub model: MethodModel<B>,
    /// The validation curve, one point per `train.eval_every` steps.
    pub curve: Vec<CurvePoint>,
    /// Completed or diverged.
    pub status: TrainStatus,
    /// Steps actually taken.
    pub steps_done: usize,
    /// Step of the checkpoint kept (after `steps_done` steps for `select = last`).
    pub selected_step: usize,
    /// Wall-clock seconds of training.
    pub seconds: f64,
    /// Wall-clock seconds of the first optimiser step alone (on a GPU: kernel compilation and
    /// autotuning; part of `seconds`).
    pub first_step_seconds: f64,
}

/// Observer of a method's training: progress display and logging hook in here.
pub trait TrainObserver {
    /// Before the first optimiser step (on a GPU it compiles the step's kernels).
    fn on_first_step(&mut self) {}
    /// After every optimiser step.
    fn on_step(&mut self, _step: usize, _loss: f64) {}
    /// After every held-out evaluation.
    fn on_eval(&mut self, _point: &CurvePoint) {}
}

/// An observer that does nothing.
pub struct Silent;
impl TrainObserver for Silent {}

/// Number of optimiser steps for a method: its `steps`, or `ceil(epochs * train / batch)`.
pub fn total_steps(scenario: &Scenario, method: &ResolvedMethod, train_pairs: usize) -> usize {
    match scenario.train.epochs {
        Some(e) => (e * train_pairs).div_ceil(scenario.train.batch_size).max(1),
        None => method.steps,
    }
}

/// Batches for a posterior with annotator context `C` (METHOD.md §4): each step holds
/// `floor(batch_size / (C + 1))` runs of `C + 1` training pairs labelled by one annotator, so
/// every pair's context is the rest of its run and costs no extra backbone pass. Annotators are
/// drawn in proportion to how many pairs they labelled (the annotator of a uniformly drawn pair),
/// pairs within a run without replacement while the annotator has enough (stream
/// `batches/annotators`).
pub fn annotator_batch_order(
    train: &[PreferencePair],
    batch_size: usize,
    context: usize,
    steps: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = stream(seed, "batches/annotators");
    let group = context + 1;
    let runs = (batch_size / group).max(1);
    let n_annotators = train.iter().map(|p| p.annotator + 1).max().unwrap_or(0);
    let mut by_annotator = vec![Vec::new(); n_annotators];
    for (i, p) in train.iter().enumerate() {
        by_annotator[p.annotator].push(i);
    }
    (0..steps)
        .map(|_| {
            let mut batch = Vec::with_capacity(runs * group);
            for _ in 0..runs {
                let a = train[rng.random_range(0..train.len())].annotator;
                let pool = &mut by_annotator[a];
                if pool.len() >= group {
                    let (chosen, _) = pool.partial_shuffle(&mut rng, group);
                    batch.extend_from_slice(chosen);
                } else {
                    batch.extend((0..group).map(|_| pool[rng.random_range(0..pool.len())]));
                }
            }
            batch
        })
        .collect()
}

/// The batch order shared by every method of a run: pass after pass over a fresh shuffle of the
/// training pairs (stream `batches`), `batch_size` pairs per step, the last partial batch of a
/// pass dropped.
pub fn batch_order(
    train_pairs: usize,
    batch_size: usize,
    steps: usize,
    seed: u64,
) -> Vec<Vec<usize>> {
    let mut rng = stream(seed, "batches");
    let b = batch_size.min(train_pairs).max(1);
    let mut order: Vec<usize> = Vec::new();
    let mut cursor = 0;
    (0..steps)
        .map(|_| {
            if cursor + b > order.len() {
                order = (0..train_pairs).collect();
                order.shuffle(&mut rng);
                cursor = 0;
            }
            cursor += b;
            order[cursor - b..cursor].to_vec()
        })
        .collect()
}

/// The optimiser every method trains with: Adam (beta 0.9/0.999, eps 1e-8 as in PyTorch and
/// the original paper; burn's default is 1e-5) with the scenario's gradient-norm clip
/// (`train.grad_clip`, 0 = off). burn clips **per parameter tensor**: each tensor's gradient
/// is rescaled to norm <= `grad_clip` on its own, not the global norm over all tensors.
pub fn method_optimizer<B: AutodiffBackend>(
    train: &TrainSpec,
) -> OptimizerAdaptor<Adam, MethodModel<B>, B> {
    let mut cfg = AdamConfig::new().with_epsilon(1e-8);
    if train.grad_clip > 0.0 {
        cfg = cfg.with_grad_clipping(Some(GradientClippingConfig::Norm(train.grad_clip as f32)));
    }
    cfg.init::<B, MethodModel<B>>()
}

/// The schedules' values at one step (all pure functions of the step, see [`schedule`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSchedule {
    /// Gumbel-softmax temperature ([`schedule::temperature`]).
    pub tau: f64,
    /// Posterior→prior mixing weight g ([`schedule::prior_mix`]).
    pub g: f64,
    /// KL weight lambda ([`schedule::kl_weight`]).
    pub kl_weight: f64,
    /// Code-diversity weight ([`schedule::diversity_weight`]; 0 unless the method sets one).
    pub diversity: f64,
    /// Learning rate ([`schedule::learning_rate`]).
    pub lr: f64,
}

impl StepSchedule {
    /// The values at `step` (0-based) of `total` steps of `method` in `scenario`.
    pub fn at(scenario: &Scenario, method: &ResolvedMethod, step: usize, total: usize) -> Self {
        StepSchedule {
            tau: schedule::temperature(method, step, total),
            g: schedule::prior_mix(method, step, total),
            kl_weight: schedule::kl_weight(method, step, total),
            diversity: schedule::diversity_weight(method, step, total),
            lr: schedule::learning_rate(
                method.lr,
                scenario.train.lr_warmup_steps,
                method.schedule,
                step,
                total,
            ),
        }
    }
}

/// What one optimiser step returns.
pub struct StepOutcome<B: AutodiffBackend> {
    /// The model after the step (unchanged when the loss was not finite).
    pub model: MethodModel<B>,
    /// The mean training loss of the batch, before the update. Not finite means diverged: no
    /// gradient was taken and the model is returned as it came.
    pub loss: f64,
}

/// One optimiser step of a method on the training pairs `idx` (indices into `train`):
///
/// ```text
/// fwd   = forward_pairs(model, pairs, context, cached ref log-probs, Gumbel code at (tau, g))
/// loss  = mean_n pair_loss(fwd, lambda).losses          (read back to the host, one scalar)
///         + alpha_now code_diversity_loss(posterior logits)   (only with `diversity > 0`)
/// model = Adam(lr).step(model, grad loss)               (skipped when loss is not finite)
/// ```
///
/// Methods with annotator context (`context > 0`) get `idx` as runs of C + 1 pairs by one
/// annotator (`annotator_batch_order`); the Gumbel noise comes from `noise_rng`. This is exactly the body of [`train_method`]'s loop, public so
/// that benches time the real step.
#[allow(clippy::too_many_arguments)]
pub fn train_step<B: AutodiffBackend, O: Optimizer<MethodModel<B>, B>>(
    model: MethodModel<B>,
    optim: &mut O,
    ctx: &MethodContext,
    train: &[PreferencePair],
    refs: &ReferenceCache,
    idx: &[usize],
    plan: &StepSchedule,
    noise_rng: &mut SeededRng,
    device: &B::Device,
) -> StepOutcome<B> {
    let pairs: Vec<&PreferencePair> = idx.iter().map(|&i| &train[i]).collect();
    let rc: Vec<f64> = idx.iter().map(|&i| refs.chosen[i]).collect();
    let rr: Vec<f64> = idx.iter().map(|&i| refs.rejected[i]).collect();
    let choice = CodeChoice::Train {
        tau: plan.tau,
        relaxation: Relaxation::from_hard(ctx.method.hard),
        g: plan.g,
    };
    // Grouped context batches (`annotator_batch_order`) are their own context, so no extra
    // pairs are passed; fresh context draws C training pairs of each pair's annotator.
    let context: Vec<&PreferencePair> = match &ctx.fresh_context {
        Some((pool, rng)) => {
            let mut rng = rng.borrow_mut();
            idx.iter().flat_map(|&i| pool.draw(i, &mut rng)).collect()
        }
        None => Vec::new(),
    };
    let fwd = forward_pairs(
        &model,
        ctx,
        &pairs,
        &context,
        (&rc, &rr),
        &choice,
        noise_rng,
        device,
    );
    let diversity = match &fwd.kl {
        KlInputs::Categorical { posterior, .. } if plan.diversity > 0.0 => Some(
            crate::objective::code_diversity_loss(posterior.clone()).mul_scalar(plan.diversity),
        ),
        _ => None,
    };
    let out = pair_loss(ctx, fwd, plan.kl_weight);
    let loss = match diversity {
        Some(d) => out.losses.mean() + d,
        None => out.losses.mean(),
    };
    let loss_value = to_host(loss.clone().reshape([1]))[0];
    if !loss_value.is_finite() {
        return StepOutcome {
            model,
            loss: loss_value,
        };
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    StepOutcome {
        model: optim.step(plan.lr, model, grads),
        loss: loss_value,
    }
}

/// Validation numbers of `model` at one step: one pass with the inference (prior) code
/// (loss, accuracy, KL, code use, NMI) and, for methods with a posterior, one with the
/// posterior's point code (the training objective).
#[allow(clippy::too_many_arguments)]
pub fn validate_point<B: Backend>(
    model: &MethodModel<B>,
    ctx: &MethodContext,
    data: &PreferenceData,
    val_refs: &ReferenceCache,
    step: usize,
    train_loss: f64,
    seed: u64,
    device: &B::Device,
) -> CurvePoint {
    let pool = ContextPool::new(&data.train, &data.val, false, ctx.method.context);
    let mut rng = stream(seed, &format!("val/{}/{step}", ctx.method.label));
    let prior = evaluate(
        model,
        ctx,
        &data.val,
        val_refs,
        |_| CodeChoice::Prior,
        &pool,
        &mut rng,
        device,
    );
    let has_posterior = matches!(
        ctx.method.name.latent,
        LatentKind::Lpc | LatentKind::Gaussian
    );
    let objective = if has_posterior {
        let mut rng = stream(seed, &format!("val/{}/{step}/posterior", ctx.method.label));
        evaluate(
            model,
            ctx,
            &data.val,
            val_refs,
            |_| CodeChoice::Posterior,
            &pool,
            &mut rng,
            device,
        )
        .objective
    } else {
        prior.objective
    };
    let truth: Vec<usize> = data.val.iter().map(|p| p.group).collect();
    let nmi = |rows: &Option<Vec<Vec<f64>>>| {
        rows.as_ref().map(|r| {
            let codes: Vec<usize> = r.iter().map(|x| crate::evaluate::argmax(x)).collect();
            crate::metrics::nmi(&codes, &truth)
        })
    };
    CurvePoint {
        step,
        train_loss,
        val_loss: prior.loss,
        val_accuracy: prior.accuracy,
        val_objective: objective,
        val_kl: prior.kl.is_finite().then_some(prior.kl),
        code_perplexity: prior
            .code_perplexity
            .is_finite()
            .then_some(prior.code_perplexity),
        val_post_nmi: nmi(&prior.posterior),
        val_prior_nmi: nmi(&prior.prior),
    }
}

/// Train one method from `start` on `data.train`, evaluating on the validation pairs
/// `data.val` every `train.eval_every` steps and after the last step, and keep the checkpoint
/// `train.select` picks from those validation numbers. The held-out pairs `data.eval` are never
/// read here. With no validation pairs, the last step is kept.
#[allow(clippy::too_many_arguments)]
pub fn train_method<B: AutodiffBackend>(
    scenario: &Scenario,
    method: &ResolvedMethod,
    data: &PreferenceData,
    start: &Policy<B>,
    train_refs: &ReferenceCache,
    val_refs: &ReferenceCache,
    observer: &mut dyn TrainObserver,
    device: &B::Device,
) -> TrainedMethod<B> {
    let seed = scenario.data.seed;
    let clock = std::time::Instant::now();
    let ctx = MethodContext::new(method, data).with_seed(seed);
    let total = total_steps(scenario, method, data.train.len());
    let batches = if method.context > 0 && method.context_batches == ContextBatches::Grouped {
        annotator_batch_order(
            &data.train,
            scenario.train.batch_size,
            method.context,
            total,
            seed,
        )
    } else {
        batch_order(data.train.len(), scenario.train.batch_size, total, seed)
    };
    let mut model = MethodModel::init(method, start, seed, device);
    let mut optim = method_optimizer::<B>(&scenario.train);
    let mut noise_rng = stream(seed, &format!("gumbel/{}", method.label));
    let mut curve = Vec::new();
    let mut best: Option<(f64, usize, MethodModel<B>)> = None;
    let mut status = TrainStatus::Completed;
    let mut since_eval = (0.0, 0usize);
    let mut steps_done = 0;
    let eval_every = scenario.train.eval_every;
    let select = if data.val.is_empty() {
        CheckpointSelect::Last
    } else {
        scenario.train.select
    };

    let mut first_step_seconds = 0.0;
    for (step, idx) in batches.iter().enumerate() {
        let plan = StepSchedule::at(scenario, method, step, total);
        if step == 0 {
            observer.on_first_step();
        }
        let step_clock = std::time::Instant::now();
        let out = train_step(
            model,
            &mut optim,
            &ctx,
            &data.train,
            train_refs,
            idx,
            &plan,
            &mut noise_rng,
            device,
        );
        model = out.model;
        let loss_value = out.loss;
        if step == 0 {
            first_step_seconds = step_clock.elapsed().as_secs_f64();
        }
        if !loss_value.is_finite() {
            status = TrainStatus::Diverged { step };
            break;
        }
        steps_done = step + 1;
        since_eval = (since_eval.0 + loss_value, since_eval.1 + 1);
        observer.on_step(step, loss_value);
        if (steps_done % eval_every == 0 || steps_done == total) && !data.val.is_empty() {
            let train_loss = since_eval.0 / since_eval.1.max(1) as f64;
            let point = validate_point(
                &model.valid(),
                &ctx,
                data,
                val_refs,
                steps_done,
                train_loss,
                seed,
                device,
            );
            since_eval = (0.0, 0);
            observer.on_eval(&point);
            if !point.val_loss.is_finite() || !point.val_objective.is_finite() {
                status = TrainStatus::Diverged { step };
                curve.push(point);
                break;
            }
            if let Some(c) = point.criterion(select)
                && best.as_ref().is_none_or(|(b, _, _)| c < *b)
            {
                best = Some((c, steps_done, model.clone()));
            }
            curve.push(point);
        }
    }
    let (model, selected_step) = match best {
        Some((_, s, m)) => (m, s),
        None => (model, steps_done),
    };
    TrainedMethod {
        model,
        curve,
        status,
        steps_done,
        selected_step,
        seconds: clock.elapsed().as_secs_f64(),
        first_step_seconds,
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use crate::model::CpuAutodiff;
    use crate::model::backbone::PolicyConfig;
    use crate::scenario::CheckedScenario;

    type A = CpuAutodiff;

    /// The smoke scenario (`scenarios/smoke.toml`) with `steps` steps and one method.
    fn smoke(method: &str, steps: usize) -> (CheckedScenario, PreferenceData, Policy<A>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
        let scenario = Scenario::load(&path)
            .unwrap()
            .amend(|scenario| {
                scenario.methods = vec![crate::scenario::MethodSpec::named(method)];
                scenario.train.steps = steps;
                scenario.train.eval_every = steps;
            })
            .unwrap();
        let (_, data) = crate::synth::synthetic_data(&scenario);
        let device = Default::default();
        A::seed(&device, 5);
        let start =
            PolicyConfig::from_spec(&scenario.model, data.model_vocab(), data.max_seq_len())
                .init::<A>(&device);
        (scenario, data, start)
    }

    /// Summed log-probs of the first eval pairs' chosen responses under a model's policy.
    fn fingerprint(model: &MethodModel<A>, data: &PreferenceData) -> Vec<f64> {
        let seqs: Vec<(Vec<u32>, Vec<u32>)> = data.eval[..8]
            .iter()
            .map(|p| (p.prompt.clone(), p.chosen.clone()))
            .collect();
        crate::model::score_responses(&model.policy.valid(), &seqs, data.separator())
    }

    #[test]
    fn train_method_is_a_loop_of_train_step() {
        let _rng = crate::rng::backend_rng_lock();
        // train_method must be exactly: batch_order, then train_step at StepSchedule::at(step)
        // with the streams gumbel/<label> and context/<label>; replaying that by hand from the
        // same start gives bit-identical parameters.
        let (scenario, data, start) = smoke("lpc-dpo", 7);
        let method = &scenario.resolved_methods()[0];
        let device = Default::default();
        let reference = start.valid();
        let refs = ReferenceCache::compute(&reference, &data.train, data.separator());
        let val_refs = ReferenceCache::compute(&reference, &data.val, data.separator());
        let scenario_last = scenario
            .clone()
            .amend(|s| s.train.select = CheckpointSelect::Last)
            .unwrap();
        let trained = train_method(
            &scenario_last,
            method,
            &data,
            &start,
            &refs,
            &val_refs,
            &mut Silent,
            &device,
        );
        assert_eq!(trained.steps_done, 7);

        let seed = scenario.data.seed;
        let ctx = MethodContext::new(method, &data);
        let mut model = MethodModel::init(method, &start, seed, &device);
        let mut optim = method_optimizer::<A>(&scenario.train);
        let mut noise = stream(seed, &format!("gumbel/{}", method.label));
        let batches = batch_order(data.train.len(), scenario.train.batch_size, 7, seed);
        for (step, idx) in batches.iter().enumerate() {
            let plan = StepSchedule::at(&scenario, method, step, 7);
            let out = train_step(
                model,
                &mut optim,
                &ctx,
                &data.train,
                &refs,
                idx,
                &plan,
                &mut noise,
                &device,
            );
            assert!(out.loss.is_finite());
            model = out.model;
        }
        assert_eq!(
            fingerprint(&model, &data),
            fingerprint(&trained.model, &data)
        );
        // And the steps did move the policy away from the start.
        let start_model = MethodModel::init(method, &start, seed, &device);
        assert_ne!(fingerprint(&start_model, &data), fingerprint(&model, &data));
    }

    /// Model selection never reads the held-out pairs: swapping the labels of every held-out
    /// pair (and reversing their order) leaves the selected step and every validation number of
    /// the curve unchanged, bit for bit; changing the validation labels does change them.
    #[test]
    fn held_out_labels_cannot_influence_selection() {
        let _rng = crate::rng::backend_rng_lock();
        let (scenario, data, start) = smoke("lpc-dpo", 40);
        let scenario = scenario.amend(|s| s.train.eval_every = 10).unwrap();
        let method = &scenario.resolved_methods()[0];
        let device = Default::default();
        let reference = start.valid();
        let refs = ReferenceCache::compute(&reference, &data.train, data.separator());
        let val_refs = ReferenceCache::compute(&reference, &data.val, data.separator());
        let run = |d: &PreferenceData, val_refs: &ReferenceCache| {
            let t = train_method(
                &scenario,
                method,
                d,
                &start,
                &refs,
                val_refs,
                &mut Silent,
                &device,
            );
            let curve = serde_json::to_string(&t.curve).unwrap();
            // Weights compared on the original held-out prompts.
            (t.selected_step, curve, fingerprint(&t.model, &data))
        };
        let base = run(&data, &val_refs);
        let mut permuted = data.clone();
        permuted.eval.reverse();
        for p in &mut permuted.eval {
            std::mem::swap(&mut p.chosen, &mut p.rejected);
        }
        let after = run(&permuted, &val_refs);
        assert_eq!(base.0, after.0, "selected step");
        assert_eq!(base.1, after.1, "validation curve");
        assert_eq!(base.2, after.2, "selected weights");
        let mut swapped_val = data.clone();
        for p in &mut swapped_val.val {
            std::mem::swap(&mut p.chosen, &mut p.rejected);
        }
        let swapped_refs = ReferenceCache {
            chosen: val_refs.rejected.clone(),
            rejected: val_refs.chosen.clone(),
            features: None,
        };
        let other = run(&swapped_val, &swapped_refs);
        assert_ne!(base.1, other.1, "validation labels must matter");
    }

    #[test]
    fn every_latent_head_round_trips_through_its_checkpoint_shape() {
        let _rng = crate::rng::backend_rng_lock();
        // Oracle: a model saved in its checkpoint shape and loaded into a differently
        // initialised skeleton of the same method encodes to the same bytes (same weights, same
        // parameter ids) and keeps its head's family; loaded as another family it is refused.
        let (_, _, start) = smoke("dpo", 1);
        let device = Default::default();
        let dir = tempfile::tempdir().unwrap();
        for name in ["dpo", "lpc-dpo", "oracle-dpo", "lpc-dpo-gaussian"] {
            let (scenario, _, _) = smoke(name, 1);
            let method = &scenario.resolved_methods()[0];
            let model = MethodModel::<A>::init(method, &start, 1, &device);
            let skeleton = MethodModel::<A>::init(method, &start, 2, &device);
            let path = dir.path().join(name);
            crate::checkpoint::save(model.clone().into_checkpoint(), &path).unwrap();
            let stored =
                crate::checkpoint::load(skeleton.into_checkpoint(), &path, &device).unwrap();
            let other = match method.name.latent {
                LatentKind::Gaussian => LatentKind::Lpc,
                _ => LatentKind::Gaussian,
            };
            assert!(stored.clone().into_model(other).is_none(), "{name}");
            let back = stored.into_model(method.name.latent).unwrap();
            assert_eq!(back.head.kind(), method.name.latent, "{name}");
            let bytes = |m: MethodModel<A>| crate::checkpoint::encode::<A, _>(m.into_checkpoint());
            assert_eq!(bytes(back).unwrap(), bytes(model).unwrap(), "{name}");
        }
    }

    #[test]
    fn a_non_finite_loss_takes_no_step() {
        let _rng = crate::rng::backend_rng_lock();
        // A NaN reference log-prob makes the DPO loss NaN: train_step reports it and returns
        // the model untouched (the loop then records the divergence).
        let (scenario, data, start) = smoke("dpo", 1);
        let method = &scenario.resolved_methods()[0];
        let device = Default::default();
        let mut refs = ReferenceCache::compute(&start.valid(), &data.train, data.separator());
        let idx: Vec<usize> = (0..scenario.train.batch_size).collect();
        refs.chosen[idx[0]] = f64::NAN;
        let model = MethodModel::init(method, &start, 0, &device);
        let before = fingerprint(&model, &data);
        let out = train_step(
            model,
            &mut method_optimizer::<A>(&scenario.train),
            &MethodContext::new(method, &data),
            &data.train,
            &refs,
            &idx,
            &StepSchedule::at(&scenario, method, 0, 1),
            &mut stream(0, "noise"),
            &device,
        );
        assert!(out.loss.is_nan());
        assert_eq!(fingerprint(&out.model, &data), before);
    }
}
