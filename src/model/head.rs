//! A method's latent head: none, the LPC codebook, the oracle's codebook, or the Gaussian
//! ablation, behind one type that yields its own code and the distributions of its KL term.
//!
//! This module owns the choice between the latent families of METHOD.md §1 and what each does
//! with one batch of pairs:
//!
//! ```text
//! None      z = none                                   no KL term
//! Discrete  q, p = posterior / prior logits            z = code(gumbel_softmax(q)) mixed toward
//!                                                        code(softmax(p)) by g (training), ...
//! Oracle    z = code(one_hot(true type))               no KL term (nothing is inferred)
//! Gaussian  q, p = posterior / prior Gaussians         z = P (mu_q + sigma_q eps) mixed toward
//!                                                        P mu_p by g (training), ...
//! ```
//!
//! ([`CodeChoice`] lists every way a code is chosen.) The KL between the returned distributions
//! and every loss live in `objective`; the training step lives in `train`.

use super::gaussian::{
    DiagGaussian, GaussianConfig, GaussianHeads, GaussianPrior, reparameterise,
    standard_normal_noise,
};
use super::gumbel::{Relaxation, gumbel_noise, gumbel_softmax};
use super::latent::{LatentConfig, LatentHeads, mix_codes, one_hot_weights, prior_code_weights};
use crate::data::PreferencePair;
use crate::scenario::{InferenceMode, LatentKind};
use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use rand::Rng;
use std::marker::PhantomData;

/// How the code fed to the policy is chosen for a forward pass.
#[derive(Debug, Clone)]
pub enum CodeChoice {
    /// Training: Gumbel-softmax sample of the posterior at temperature `tau`, mixed toward the
    /// prior's expectation by `g`: `z = (1 - g) w_q E + g p E`.
    Train {
        /// Gumbel-softmax temperature.
        tau: f64,
        /// Soft or straight-through relaxation.
        relaxation: Relaxation,
        /// Prior mixing weight in `[0, 1]`.
        g: f64,
    },
    /// Inference: the code from the prior (expectation, argmax or sample).
    Prior,
    /// The posterior's point estimate, deterministic: the argmax code of q (discrete), the
    /// posterior mean (Gaussian), the true type (oracle). Used for the validation objective.
    Posterior,
    /// A fixed code index per pair (steering with e_k; the oracle's true type).
    Fixed(Vec<usize>),
}

/// The latent machinery of one method, beside its policy.
#[derive(Module, Debug)]
pub enum LatentHead<B: Backend> {
    /// No latent: the bare objective (DPO and the other baselines). (burn's `Module` derive
    /// takes no unit variants, hence the marker.)
    None(PhantomData<B>),
    /// LPC: a codebook with prior and posterior heads.
    Discrete(LatentHeads<B>),
    /// The oracle: a K = T codebook indexed by the true type (its prior and posterior heads are
    /// never read).
    Oracle(LatentHeads<B>),
    /// The continuous ablation: Gaussian posterior and learned prior, projected to width d.
    Gaussian(GaussianHeads<B>),
}

/// What a batch of pairs gives a head to read, each computed only if the head reads it.
pub struct PairReads<'a, B: Backend> {
    /// The pairs (the oracle reads their true types).
    pub pairs: &'a [&'a PreferencePair],
    /// The prompt states `h_x` `[N, d]`, the prior's input.
    pub prompt_state: &'a dyn Fn() -> Tensor<B, 2>,
    /// The pair features `[N, 2d]` (pooled with annotator context where the method has it),
    /// the posterior's input.
    pub features: &'a dyn Fn() -> Tensor<B, 2>,
}

/// The distributions a head's KL term compares, as the objective takes them.
pub enum KlInputs<B: Backend> {
    /// No posterior: no KL term (baselines, the oracle).
    None,
    /// Posterior and prior logits `[N, K]` of the discrete code.
    Categorical {
        /// Posterior logits `[N, K]`.
        posterior: Tensor<B, 2>,
        /// Prior logits `[N, K]`.
        prior: Tensor<B, 2>,
    },
    /// Posterior and prior diagonal Gaussians `[N, m]`.
    Gaussian {
        /// `q(u | x, yw > yl)`.
        posterior: DiagGaussian<B>,
        /// `p(u | x)`.
        prior: DiagGaussian<B>,
    },
}

/// A head's reading of a batch of pairs: the code to condition the policy on and what its KL
/// term is computed from.
pub struct HeadOutput<B: Backend> {
    /// The code `z` `[N, d]`, or `None` without a latent.
    pub code: Option<Tensor<B, 2>>,
    /// The KL term's distributions.
    pub kl: KlInputs<B>,
}

impl<B: Backend> LatentHead<B> {
    /// The head of a method of latent family `kind`, freshly initialised for backbone width
    /// `d_model`: a `codebook`-code [`LatentHeads`] (LPC, oracle) or a `latent_dim` Gaussian
    /// with a learned prior. The parameters are drawn on the host CPU backend seeded with
    /// `seed` ([`crate::device::init_on_host`]), so they are the same on every device.
    pub fn init(
        kind: LatentKind,
        d_model: usize,
        codebook: usize,
        latent_dim: usize,
        seed: u64,
        device: &B::Device,
    ) -> Self {
        let discrete = || {
            let config = LatentConfig::new(d_model, codebook);
            crate::device::init_on_host(
                seed,
                config.init::<B>(device),
                |cpu| config.init(cpu),
                device,
            )
        };
        match kind {
            LatentKind::None => LatentHead::None(PhantomData),
            LatentKind::Lpc => LatentHead::Discrete(discrete()),
            LatentKind::Oracle => LatentHead::Oracle(discrete()),
            LatentKind::Gaussian => {
                let config =
                    GaussianConfig::new(d_model, latent_dim).with_prior(GaussianPrior::Learned);
                LatentHead::Gaussian(crate::device::init_on_host(
                    seed,
                    config.init::<B>(device),
                    |cpu| config.init(cpu),
                    device,
                ))
            }
        }
    }

    /// The latent family of this head.
    pub fn kind(&self) -> LatentKind {
        match self {
            LatentHead::None(_) => LatentKind::None,
            LatentHead::Discrete(_) => LatentKind::Lpc,
            LatentHead::Oracle(_) => LatentKind::Oracle,
            LatentHead::Gaussian(_) => LatentKind::Gaussian,
        }
    }

    /// The codebook heads (LPC and the oracle), which steering indexes with one code.
    pub fn codebook(&self) -> Option<&LatentHeads<B>> {
        match self {
            LatentHead::Discrete(heads) | LatentHead::Oracle(heads) => Some(heads),
            LatentHead::None(_) | LatentHead::Gaussian(_) => None,
        }
    }

    /// The code of a batch of pairs under `choice` and the distributions of its KL term.
    ///
    /// `rng` supplies the training noise (Gumbel for the discrete code, `eps` for the Gaussian)
    /// and the prior's sample in `inference = "sample"` mode; nothing else draws from it.
    pub fn code_and_kl(
        &self,
        choice: &CodeChoice,
        reads: PairReads<'_, B>,
        inference: InferenceMode,
        rng: &mut impl Rng,
        device: &B::Device,
    ) -> HeadOutput<B> {
        let n = reads.pairs.len();
        match self {
            LatentHead::None(_) => HeadOutput {
                code: None,
                kl: KlInputs::None,
            },
            LatentHead::Oracle(heads) => {
                let idx: Vec<usize> = match choice {
                    CodeChoice::Fixed(k) => k.clone(),
                    CodeChoice::Train { .. } | CodeChoice::Prior | CodeChoice::Posterior => reads
                        .pairs
                        .iter()
                        .map(|p| p.group.min(heads.codebook_size() - 1))
                        .collect(),
                };
                HeadOutput {
                    code: Some(heads.code(one_hot_weights(&idx, heads.codebook_size(), device))),
                    kl: KlInputs::None,
                }
            }
            LatentHead::Discrete(heads) => {
                let prior_logits = heads.prior_logits((reads.prompt_state)());
                let post_logits = heads.posterior_logits((reads.features)());
                let k = heads.codebook_size();
                let z = match choice {
                    CodeChoice::Train { tau, relaxation, g } => {
                        let noise = gumbel_noise::<B>(rng, n, k, device);
                        let w_q = gumbel_softmax(post_logits.clone(), *tau, *relaxation, noise);
                        let z_q = heads.code(w_q);
                        if *g > 0.0 {
                            let z_p = heads.code(softmax(prior_logits.clone(), 1));
                            mix_codes(z_q, z_p, *g)
                        } else {
                            z_q
                        }
                    }
                    CodeChoice::Prior => {
                        heads.code(prior_code_weights(prior_logits.clone(), inference, rng))
                    }
                    CodeChoice::Posterior => {
                        let idx = argmax_rows(post_logits.clone());
                        heads.code(one_hot_weights(&idx, k, device))
                    }
                    CodeChoice::Fixed(idx) => heads.code(one_hot_weights(idx, k, device)),
                };
                HeadOutput {
                    code: Some(z),
                    kl: KlInputs::Categorical {
                        posterior: post_logits,
                        prior: prior_logits,
                    },
                }
            }
            LatentHead::Gaussian(heads) => {
                let q = heads.posterior((reads.features)());
                let p = heads.prior((reads.prompt_state)());
                let z = match choice {
                    CodeChoice::Train { g, .. } => {
                        let eps = standard_normal_noise::<B>(rng, n, heads.latent_dim(), device);
                        let z_q = heads.project(reparameterise(&q, eps));
                        if *g > 0.0 {
                            let z_p = heads.project(p.mean.clone());
                            mix_codes(z_q, z_p, *g)
                        } else {
                            z_q
                        }
                    }
                    CodeChoice::Posterior => heads.project(q.mean.clone()),
                    // Inference and steering use the prior mean (a Gaussian has no code index).
                    CodeChoice::Prior | CodeChoice::Fixed(_) => heads.project(p.mean.clone()),
                };
                HeadOutput {
                    code: Some(z),
                    kl: KlInputs::Gaussian {
                        posterior: q,
                        prior: p,
                    },
                }
            }
        }
    }

    /// The inference code of prompts alone (no responses): the prior's code in `inference`
    /// mode (discrete), the prior mean (Gaussian), the true type `types` (oracle), or `None`
    /// without a latent. `prompt_state` (`h_x` `[N, d]`) is computed only by heads with a
    /// prior; `rng` is drawn from only in `inference = "sample"` mode.
    pub fn prompt_code(
        &self,
        prompt_state: impl FnOnce() -> Tensor<B, 2>,
        types: &[usize],
        inference: InferenceMode,
        rng: &mut impl Rng,
        device: &B::Device,
    ) -> Option<Tensor<B, 2>> {
        match self {
            LatentHead::None(_) => None,
            LatentHead::Oracle(heads) => {
                Some(heads.code(one_hot_weights(types, heads.codebook_size(), device)))
            }
            LatentHead::Discrete(heads) => {
                let w = prior_code_weights(heads.prior_logits(prompt_state()), inference, rng);
                Some(heads.code(w))
            }
            LatentHead::Gaussian(heads) => Some(heads.project(heads.prior(prompt_state()).mean)),
        }
    }
}

/// The argmax column of each row of `[N, K]` (ties to the first), read on the host.
fn argmax_rows<B: Backend>(t: Tensor<B, 2>) -> Vec<usize> {
    let [_, k] = t.dims();
    let flat: Vec<f64> = t.into_data().convert::<f64>().iter::<f64>().collect();
    flat.chunks(k.max(1)).map(crate::evaluate::argmax).collect()
}
