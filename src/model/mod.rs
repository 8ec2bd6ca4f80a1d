//! The learning machinery's models: the policy backbone, the LPC latent heads, the Gaussian
//! ablation, the frozen reference and its warm-up, and sampling.
//!
//! This module owns every parameter of every method (METHOD.md §1) and the read-outs a training
//! step needs; it computes no loss (see `objective`) and runs no training schedule (see `train`).
//! Everything is generic over burn's `B: Backend` (or `B: AutodiffBackend` where gradients are
//! taken); [`CpuBackend`] and [`CpuAutodiff`] name the CPU backends the crate uses by default.
//!
//! One training step of LPC-DPO in the calls it makes (`train::train_step`, whose forward pass
//! is `train::forward_pairs`), from ONE backbone pass over the stacked pair batch
//! (`B: AutodiffBackend`; the model is a `train::MethodModel` holding the policy and its
//! [`LatentHead`], whose `code_and_kl` makes `q`, `p` and `z` below):
//!
//! ```text
//! lp_ref = ReferenceCache::compute(&reference, &pairs, ..)    once per run: frozen pi_ref
//!                                                              log-probs of every pair [host]
//! batch  = PairBatch::new(&pairs, sep, &device)                 2N rows: chosen, then rejected
//! h      = policy.hidden(batch.seqs.ids.clone())                [2N, L, d]
//! q      = heads.posterior_logits(posterior_features(h.clone(), &batch))     [N, K]
//!          (annotator context: mean_pool_groups / pool_context of those features)
//! p      = heads.prior_logits(prior_features(h.clone(), &batch))            [N, K]
//! w      = gumbel_softmax(q, tau, relaxation, gumbel_noise(rng, N, K, &device))
//! z      = mix_codes(heads.code(w), heads.code(softmax(p)), g)               [N, d]
//! lp     = policy.log_probs(h, &batch.seqs, Some(batch.stack_codes(z)))      .sum / .mean [2N]
//! loss   = objective.loss(lp_w, lp_l, lp_ref, q, p, lambda)  (+ diversity term, if set)
//! model  = Adam.step(lr, model, GradientsParams::from_grads(loss.backward(), &model))
//! ```
//!
//! Variants (the variants of [`LatentHead`]): DPO passes `z = None`; the oracle uses a
//! `Codebook` of K = T codes with `one_hot_weights(&groups, T)`; the Gaussian ablation swaps the
//! heads for [`GaussianHeads`] (`reparameterise` + `project`, KL from [`gaussian_kl`]). At
//! inference `z = heads.code(prior_code_weights(p, mode, rng))` (`LatentHead::prompt_code`);
//! validation and scoring run the same forward pass on the inner (non-autodiff) backend. `policy` is either family of [`Policy`]:
//! the scratch transformer or a pretrained Llama read from a GGUF file ([`PretrainedPolicy`]).

pub mod backbone;
pub mod flops;
pub mod gaussian;
pub mod gumbel;
pub mod head;
pub mod latent;
pub mod llama;
pub mod pretrained;
pub mod reference;
pub mod sampling;

pub use backbone::{
    Policy, PolicyConfig, ScratchPolicy, SeqLogProbs, gather_rows, hidden_at_last,
    hidden_at_separator,
};
pub use flops::{MatmulFlops, forward_matmul_flops, matmul_flops_per_step};
pub use gaussian::{
    DiagGaussian, GaussianConfig, GaussianHeads, GaussianPrior, gaussian_kl, reparameterise,
    standard_normal_noise,
};
pub use gumbel::{Relaxation, annealed_tau, gumbel_noise, gumbel_softmax, one_hot_argmax};
pub use head::{CodeChoice, HeadOutput, KlInputs, LatentHead, PairReads};
pub use latent::{
    Codebook, LatentConfig, LatentHeads, Mlp, MlpConfig, mean_pool_groups, mix_codes,
    one_hot_weights, pool_context, posterior_features, prior_code_weights, prior_features,
};
pub use llama::{Llama, LlamaConfig};
pub use pretrained::{PretrainedPolicy, Trainable};
pub use reference::{
    Reference, ResponseScores, kl_ref_to_policy, score_and_pool, score_responses, warmup,
};
pub use sampling::sample_responses;

/// The pure-Rust CPU backend (burn's `Flex`), for evaluation without gradients.
#[cfg(feature = "flex")]
pub type CpuBackend = burn::backend::Flex;

/// [`CpuBackend`] with automatic differentiation, for training.
#[cfg(feature = "flex")]
pub type CpuAutodiff = burn::backend::Autodiff<CpuBackend>;
